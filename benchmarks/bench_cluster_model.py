"""Benchmark: the proxy model fitted on a cluster-randomized history, against exact truth.

Per seed: the workspace world (:func:`proxyscope.simulate.workspace`, randomized by
workspace, each workspace's users spread over the segment cells) and the
user-randomized streaming world of the same seed, users and potential outcomes.
Fits of the default ``ProxyModel`` (4 chains x (``--draws`` + ``--tune``)):

- ``clustered``: the workspace world's cells with the joint cluster-robust
  covariance and the part an experiment's cells share (``shared_cov``), which the
  model integrates as one error per experiment; ``clustered_no_shared_term``
  drops ``shared_cov`` (cells' errors taken as independent); ``user_level``: the
  user-level covariance of the same direct effect;
- ``user_randomized``: the streaming world's cells (``bench_truth.py``'s baseline);
- ``shared_noise`` / ``shared_noise_no_term`` / ``independent_noise``: the
  streaming cells plus noise the size of the workspace baselines' part of an
  effect (per experiment ``sum_w (n_w / N_arm)^2`` times the baselines'
  covariance), one draw per experiment shared by its cells (told to the model as
  ``shared_cov``, or not) or one draw per cell; ``noise_cov`` gains it in all three;
- ``*_noseg``: clustered, user_level and user_randomized with one cell per experiment.

Scores (``bench_truth.py``'s definitions): fragility (MAE and 90% coverage of
``flip_prob`` against each cell's population flip rate, also over cells whose truth
is above 0); transport (coverage and width of the 90% predictive interval over
2,000 new experiments, 60% of users in the failure cohort's cell); the cells
(coverage of ``effect +- 1.645 se``, the within-experiment error correlation); the
recovered cells (coverage of each cell's true long-term effect; the sd of the
recovered experiment effects).

Rows go to ``benchmarks/_results/cluster_model.csv`` (a rerun skips the (seed, fit)
pairs already there unless ``--fresh``) and the table is printed. Run
``python benchmarks/bench_cluster_model.py [--seeds 5]``.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import ndtri

import proxyscope as ps
from proxyscope._io import write_atomic
from proxyscope.simulate import population
from proxyscope.simulate.scenario import LOWER_IS_BETTER, METRICS, SEGMENT_COLUMNS, cell_labels

sys.path.insert(0, str(Path(__file__).parent))
from bench_truth import PROXIES, TARGET_SHARE  # scored as the user-randomized benchmark

RESULTS = Path(__file__).parent / "_results" / "cluster_model.csv"
USER_ID = "user_id"
CI = 0.9
Z90 = float(ndtri(0.5 + CI / 2))
N_NEW = 2000
LATENT_DRAWS = 200


@dataclass(frozen=True)
class Variant:
    """One fit of the benchmark: which world, which covariance, whether segmented, and
    workspace-sized noise added to the user-randomized cells ("shared" by an
    experiment's cells or "independent" per cell; "" for none)."""

    name: str
    world: str  # "workspace" or "streaming"
    covariance: str  # "clustered" or "user"
    segmented: bool
    noise: str = ""
    shared_term: bool = True  # False: the cells' shared_cov is dropped before the fit


VARIANTS = (
    Variant("clustered", "workspace", "clustered", True),
    Variant("clustered_no_shared_term", "workspace", "clustered", True, shared_term=False),
    Variant("user_level", "workspace", "user", True),
    Variant("user_randomized", "streaming", "user", True),
    Variant("shared_noise", "streaming", "user", True, "shared"),
    Variant("shared_noise_no_term", "streaming", "user", True, "shared", shared_term=False),
    Variant("independent_noise", "streaming", "user", True, "independent"),
    Variant("clustered_noseg", "workspace", "clustered", False),
    Variant("user_level_noseg", "workspace", "user", False),
    Variant("user_randomized_noseg", "streaming", "user", False),
)


def worlds(seed: int, n_experiments: int, n_workspaces: int) -> dict[str, Any]:
    """The workspace world of ``seed`` and the user-randomized world of its users."""
    ws = ps.simulate.workspace(n_experiments=n_experiments, n_workspaces=n_workspaces, seed=seed)
    stream = ps.simulate.streaming(
        n_users=len(ws.users), n_experiments=n_experiments, seed=seed, cohort=ws.config.cohort
    )
    return {"workspace": ws, "streaming": stream}


def summarize(pair: dict[str, Any], variant: Variant, seed: int) -> ps.CellEffects:
    """The cells of ``variant`` (DuckDB, one thread)."""
    world = pair[variant.world]
    users = world.users
    if variant.world == "workspace":
        roles = world.column_roles()
        if variant.covariance == "user":
            users = users.assign(**{USER_ID: np.arange(len(users))})  # a copy
            roles["cluster"] = USER_ID
    else:
        roles = ps.simulate.column_roles()
    if not variant.segmented:
        roles["segments"] = ()
    effects = ps.summarize(users, engine="duckdb", **roles)
    if variant.noise:
        effects = with_noise(effects, workspace_noise(pair["workspace"]), variant.noise, seed)
    if not variant.shared_term and "shared_cov" in effects.data:
        effects = ps.CellEffects(effects.data.drop_vars("shared_cov"))
    return effects


def workspace_noise(world: Any) -> np.ndarray:
    """Per experiment, the covariance (good directions) of the workspace baselines' part
    of an effect: the difference of the arms' user-weighted mean baselines, which every
    cell of the experiment shares when its workspaces spread evenly over the cells."""
    table = world.workspaces
    arm_users = table.groupby(["experiment", "treatment"])["users"].transform("sum")
    squares = ((table["users"] / arm_users) ** 2).groupby(table["experiment"]).sum()
    sd = world.baseline_sd.loc[list(METRICS)].to_numpy()
    sd = sd * np.array([-1.0 if m in LOWER_IS_BETTER else 1.0 for m in METRICS])
    cov = world.config.baseline_correlation() * np.outer(sd, sd)
    return squares.to_numpy()[:, None, None] * cov


def with_noise(effects: ps.CellEffects, cov: np.ndarray, how: str, seed: int) -> ps.CellEffects:
    """``effects`` plus noise of covariance ``cov[experiment]``: one draw per experiment
    added to all its cells (``"shared"``) or one per cell (``"independent"``); each
    cell's ``noise_cov`` gains ``cov[experiment]`` either way."""
    rng = np.random.default_rng([seed, 23])
    experiment = np.asarray(effects.experiment, dtype=int)
    chol = np.linalg.cholesky(cov)
    if how == "shared":
        per_exp = np.einsum("emk,ek->em", chol, rng.standard_normal(cov.shape[:2]))
        noise = per_exp[experiment]
    else:
        noise = np.einsum("cmk,ck->cm", chol[experiment], rng.standard_normal(effects.effect.shape))
    data = effects.data.copy()
    data["effect"] = data["effect"] + noise
    data["noise_cov"] = data["noise_cov"] + cov[experiment]
    if how == "shared":  # the part the cells share, which the model can be told
        data["shared_cov"] = (("cell", "metric", "metric_"), cov[experiment])
    return ps.CellEffects(data)


def cell_truth(world: Any, effects: ps.CellEffects) -> np.ndarray:
    """The exact in-sample effect (cell, metric) of every cell of ``effects``."""
    metrics = list(effects.metrics)
    keys = pd.DataFrame({"experiment": effects.experiment})
    if effects.segments:
        table = world.truth["cell_effect"].sel(metric=metrics)
        for col in SEGMENT_COLUMNS:
            keys[col] = np.asarray(effects.data[col].values, dtype=str)
    else:
        table = world.truth["experiment_effect"].sel(metric=metrics)
    wide = table.to_dataframe().reset_index()
    wide = wide.pivot_table(index=list(keys.columns), columns="metric", values=table.name)
    wide = wide.reset_index()
    for col in keys.columns[1:]:
        wide[col] = wide[col].astype(str)
    merged = keys.merge(wide, on=list(keys.columns), how="left", validate="one_to_one")
    return merged[metrics].to_numpy(dtype=float)


def cell_scores(effects: ps.CellEffects, truth: np.ndarray) -> dict[str, float]:
    """Coverage of each cell's 90% interval per metric, and the within-experiment
    correlation of the standardized errors (pairs of cells of one experiment)."""
    se = np.sqrt(np.einsum("cmm->cm", effects.noise_cov))
    z = (effects.effect - truth) / se
    out: dict[str, float] = {}
    for j, metric in enumerate(effects.metrics):
        out[f"cell_cover90_{metric}"] = float(np.mean(np.abs(z[:, j]) <= Z90))
        out[f"cell_z2_{metric}"] = float(np.mean(z[:, j] ** 2))
        out[f"cell_se_{metric}"] = float(np.mean(se[:, j]))
    if effects.segments:
        frame = pd.DataFrame(z).assign(experiment=effects.experiment)
        sums = frame.groupby("experiment").sum()
        squares = (frame.set_index("experiment") ** 2).groupby("experiment").sum()
        counts = frame.groupby("experiment").size().to_numpy()[:, None]
        pairs = (sums.to_numpy() ** 2 - squares.to_numpy()).sum(axis=0)
        n_pairs = (counts * (counts - 1)).sum()
        corr = pairs / n_pairs / np.mean(z**2, axis=0)
        for j, metric in enumerate(effects.metrics):
            out[f"cell_error_corr_{metric}"] = float(corr[j])
    return out


def flip_scores(fit: ps.ProxyFit, world: Any) -> dict[str, Any]:
    """bench_truth's fragility scores; without segments, the mix's one flip rate."""
    frag = ps.fragility(fit, warn=False)
    if fit.segments:
        truth = world.truth["pop_flip_prob"].to_dataframe().reset_index()
        frag = frag.merge(truth, on=[*SEGMENT_COLUMNS, "proxy"])
    else:
        accuracy = world.truth["pop_decision_accuracy"].to_series()
        frag = frag.assign(pop_flip_prob=1.0 - frag.proxy.map(accuracy).astype(float))
    out: dict[str, Any] = {}
    for proxy in PROXIES:
        q = frag[frag.proxy == proxy]
        key = proxy.removeprefix("early_")
        held = (q.flip_lo <= q.pop_flip_prob) & (q.pop_flip_prob <= q.flip_hi)
        positive = q.pop_flip_prob > 0
        out[f"{key}_mae"] = float((q.flip_prob - q.pop_flip_prob).abs().mean())
        out[f"{key}_cover90"] = float(held.mean())
        out[f"{key}_cover90_positive"] = float(held[positive].mean())
        out[f"{key}_zero_truth_cells"] = int((~positive).sum())
        out[f"{key}_width"] = float((q.flip_hi - q.flip_lo).mean())
    return out


def transport_scores(fit: ps.ProxyFit, world: Any, seed: int) -> dict[str, float]:
    """Coverage and width of the 90% predictive interval of a new experiment's effect."""
    mix = world.config.mix
    target = None
    if fit.segments:
        cohort = world.config.cohort
        cell = (str(cohort.region), str(cohort.device), str(cohort.tenure))
        mix = mix.concentrated(cell, TARGET_SHARE)
        target = dict(zip(cell_labels(), mix.cell_probabilities().tolist(), strict=True))
    result = ps.transport(fit, target, random_seed=seed)
    lo, hi = np.quantile(result.draws, [(1 - CI) / 2, (1 + CI) / 2])
    new = population.new_experiment_effects(world.mechanism, N_NEW, mix, seed + 1)
    truth = new.loc[new.scope == "mix", fit.outcome].to_numpy()
    t_lo, t_hi = np.quantile(truth, [(1 - CI) / 2, (1 + CI) / 2])
    return {
        "transport_cover90": float(np.mean((truth >= lo) & (truth <= hi))),
        "transport_width": float(hi - lo),
        "transport_true_width": float(t_hi - t_lo),
    }


def latent_scores(fit: ps.ProxyFit, truth: np.ndarray, seed: int) -> dict[str, float]:
    """Coverage of the fit's 90% intervals of each cell's true long-term effect, and the
    posterior mean of the experiment effects' sd per metric."""
    draws = fit.latent_effects(n_draws=LATENT_DRAWS, random_seed=seed).values[..., 0]
    lo, hi = np.quantile(draws, [(1 - CI) / 2, (1 + CI) / 2], axis=0)
    out = {
        "latent_cover90": float(np.mean((truth[:, 0] >= lo) & (truth[:, 0] <= hi))),
        "latent_width": float(np.mean(hi - lo)),
    }
    post = fit.posterior
    for name, metric in (("eta_outcome", fit.outcome), *(("eta", p) for p in fit.proxies)):
        if name not in post:
            continue
        eta = post[name] if name == "eta_outcome" else post[name].sel(proxy=metric)
        sd = eta.std(dim="experiment").mean(dim=("chain", "draw"))
        out[f"eta_sd_{metric}"] = float(sd)
    return out


def one_fit(
    seed: int, variant: Variant, pair: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    """Summarize, fit and score one variant of one seed."""
    t0 = time.perf_counter()
    world = pair[variant.world]
    effects = summarize(pair, variant, seed)
    truth = cell_truth(world, effects)
    t1 = time.perf_counter()
    fit = ps.ProxyModel().fit(
        effects,
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        random_seed=seed,
        progress=False,
    )
    t_fit = time.perf_counter() - t1
    diag = fit.diagnostics()
    row: dict[str, Any] = {
        "seed": seed,
        "fit": variant.name,
        "world": variant.world,
        "covariance": variant.covariance,
        "segmented": variant.segmented,
        "users": len(world.users),
        "cells": effects.n_cells,
        "fit_seconds": round(t_fit, 1),
        "passed": bool(diag.passed),
        "max_rhat": float(diag.table["r_hat"].max()),
        "min_ess_bulk": float(diag.table["ess_bulk"].min()),
        "divergences": int(diag.divergences),
    }
    row |= cell_scores(effects, truth)
    row |= flip_scores(fit, world)
    row |= transport_scores(fit, world, seed)
    row |= latent_scores(fit, truth, seed)
    row["seconds"] = round(time.perf_counter() - t0, 1)
    return row


def _mean(group: pd.DataFrame, column: str, fmt: str = ".2f") -> str:
    if column not in group or group[column].isna().all():
        return "-"
    return format(group[column].mean(), fmt)


def summarize_results(frame: pd.DataFrame) -> pd.DataFrame:
    """One column per fit, means over seeds."""
    out = {}
    for variant in VARIANTS:
        group = frame[frame.fit == variant.name]
        if group.empty:
            continue
        n = len(group)
        col: dict[str, str] = {
            "seeds": str(n),
            "cells (mean)": _mean(group, "cells", ".0f"),
            "fits passing diagnostics": f"{int(group.passed.sum())}/{n}",
        }
        for metric in ("long_retained", "early_watch_min", "early_starts"):
            col[f"cell 90% coverage: {metric}"] = _mean(group, f"cell_cover90_{metric}")
        col["cell mean se: long_retained"] = _mean(group, "cell_se_long_retained", ".4f")
        col["cell mean z^2: long_retained"] = _mean(group, "cell_z2_long_retained")
        col["within-experiment error correlation: long_retained"] = _mean(
            group, "cell_error_corr_long_retained"
        )
        col["within-experiment error correlation: early_watch_min"] = _mean(
            group, "cell_error_corr_early_watch_min"
        )
        for key in ("watch_min", "starts"):
            col[f"{key}: flip MAE"] = _mean(group, f"{key}_mae", ".3f")
            col[f"{key}: flip 90% coverage"] = _mean(group, f"{key}_cover90")
            col[f"{key}: flip coverage, truth > 0"] = _mean(group, f"{key}_cover90_positive")
            col[f"{key}: flip interval width"] = _mean(group, f"{key}_width", ".3f")
        col["transport 90% coverage"] = _mean(group, "transport_cover90")
        col["transport interval width"] = _mean(group, "transport_width", ".4f")
        col["true 90% range of new experiments"] = _mean(group, "transport_true_width", ".4f")
        col["latent long-term 90% coverage (cells)"] = _mean(group, "latent_cover90")
        col["latent long-term interval width"] = _mean(group, "latent_width", ".4f")
        col["experiment-effect sd: long_retained"] = _mean(group, "eta_sd_long_retained", ".4f")
        col["experiment-effect sd: early_watch_min"] = _mean(group, "eta_sd_early_watch_min", ".3f")
        col["fit seconds (median)"] = format(group.fit_seconds.median(), ".0f")
        out[variant.name] = col
    return pd.DataFrame(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--experiments", type=int, default=30)
    parser.add_argument("--workspaces", type=int, default=60)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--tune", type=int, default=500)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument(
        "--fits", default=",".join(v.name for v in VARIANTS), help="fits to run (list)"
    )
    parser.add_argument("--fresh", action="store_true", help="ignore rows already in --out")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    chosen = [v for v in VARIANTS if v.name in args.fits.split(",")]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = pd.read_csv(args.out) if args.out.exists() and not args.fresh else pd.DataFrame()
    start = time.perf_counter()
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        todo = [
            v
            for v in chosen
            if not (len(done) and ((done.seed == seed) & (done.fit == v.name)).any())
        ]
        if not todo:
            continue
        pair = worlds(seed, args.experiments, args.workspaces)
        for variant in todo:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                row = one_fit(seed, variant, pair, args)
            print(
                f"seed {seed:3d} {variant.name:22} cells={row['cells']:4d} "
                f"cell cover(long)={row['cell_cover90_long_retained']:.2f} "
                f"watch mae={row['watch_min_mae']:.3f} "
                f"cover+={row['watch_min_cover90_positive']:.2f} "
                f"starts mae={row['starts_mae']:.3f} cover+={row['starts_cover90_positive']:.2f} "
                f"transport cover={row['transport_cover90']:.2f} "
                f"width={row['transport_width']:.4f} "
                f"latent cover={row['latent_cover90']:.2f} passed={row['passed']} "
                f"| fit {row['fit_seconds']:.0f}s, {row['seconds']:.0f}s",
                flush=True,
            )
            done = pd.concat([done, pd.DataFrame([row])], ignore_index=True)
            write_atomic(args.out, lambda path, frame=done: frame.to_csv(path, index=False))
    print(f"total {time.perf_counter() - start:.0f}s")
    table = summarize_results(done)
    try:
        print(table.to_markdown())
    except ImportError:
        print(table.to_string())


if __name__ == "__main__":
    main()

"""Benchmark: proxyscope's posterior answers against the simulator's exact truth, many seeds.

For every seed, a default-size world (250k users, 50 experiments) is simulated,
summarized and fitted with the default ``ProxyModel``; then, for
early_watch_min and early_starts:

- fragility: is the truly most fragile segment (largest population flip rate
  of a new experiment) ranked first? mean absolute error of ``flip_prob``
  against the population flip rate, and the share of the 24 cells whose 90%
  interval holds it; that share again over the cells whose truth is above 0,
  and how many cells have a truth of exactly 0 (a segment whose long-term and
  proxy effects cross zero at the same experiment strength never flips: the
  lower end of an equal-tailed interval of a posterior with no point mass at
  0 is above 0, so such a cell is never held, and with z of the 24 cells at 0
  no such interval can hold more than (24 - z) / 24 of them). The restated
  calibration targets read those cells out: coverage over the cells whose
  truth is above 0 >= 0.85, and a mean absolute error within 10% of the
  semi-oracle's of ``bench_flip_floor.py`` on the same fit (``*_oracle_mae``:
  a posterior that knows the world's lock-step structure, with the fit's
  uncertainty about the segment means);
- the seed's baseline on the same data: sign counting (cell proxy sign vs the
  experiment's long-term sign) at the seed's filter (cells >= 400 users) and
  without it: is the most fragile segment shown, ranked first; its MAE;
- recommendation: is the proxy with the best true decision accuracy ranked
  first among the single proxies (proxyscope vs the seed's reliability
  score)? error of each decision-accuracy estimate;
- transport to a target mix with most users (60%) in the failure cohort's cell:
  coverage of the 90% predictive interval over 2,000 new experiments' exact
  effects; with the proxy readings of 40 new experiments run on that mix
  (a shifted world), RMSE of the conditional prediction against naive pooled
  OLS of long-term on proxy effect estimates across past experiments (all
  proxies; and early_watch_min alone).

``--moved N`` adds N seeds whose failure cohort sits in another, randomly
chosen cell (nothing in proxyscope knows where it is).

Run ``python benchmarks/bench_truth.py --seeds 30 --moved 10``; rows are
appended to ``benchmarks/_results/truth.csv`` as they finish (a rerun skips
seeds already there), and the summary table is printed at the end.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import proxyscope as ps
from proxyscope._io import write_atomic
from proxyscope.analyses.backtest import mix_effects
from proxyscope.analyses.baseline import (
    SEED_MIN_COUNT,
    experiment_effects,
    reliability_scores,
    sign_counting,
)
from proxyscope.errors import DataWarning
from proxyscope.simulate import FailureCohort, column_roles
from proxyscope.simulate.scenario import LEVELS, cell_labels

sys.path.insert(0, str(Path(__file__).parent))
import bench_flip_floor  # the semi-oracle, scored on the same fit

ROLES: dict[str, Any] = column_roles()
PROXIES = ("early_watch_min", "early_starts")
RESULTS = Path(__file__).parent / "_results" / "truth.csv"
TARGET_SHARE = 0.6


def moved_cohort(seed: int) -> FailureCohort:
    """A cohort in a random cell other than the default one."""
    rng = np.random.default_rng(10_000 + seed)
    default = FailureCohort()
    while True:
        cell = {c: str(rng.choice(levels)) for c, levels in LEVELS.items()}
        if any(cell[c] != getattr(default, c) for c in LEVELS):
            return FailureCohort(**cell)


def one_seed(
    seed: int, moved: bool, draws: int, tune: int, chains: int, followups: int = 2
) -> dict[str, Any]:
    t0 = time.perf_counter()
    cohort = moved_cohort(seed) if moved else FailureCohort()
    world = ps.simulate.streaming(n_users=250_000, n_experiments=50, seed=seed, cohort=cohort)
    effects = ps.summarize(world.users, engine="duckdb", **ROLES)
    fit = ps.ProxyModel(followups=followups).fit(
        effects, draws=draws, tune=tune, chains=chains, random_seed=seed, progress=False
    )
    t_fit = time.perf_counter() - t0
    diag = fit.diagnostics()
    row: dict[str, Any] = {
        "seed": seed,
        "cohort": f"{cohort.region} / {cohort.device} / {cohort.tenure}",
        "moved": moved,
        "fit_seconds": round(t_fit, 1),
        "passed": bool(diag.passed),
        "max_rhat": float(diag.table["r_hat"].max()),
        "min_ess_bulk": float(diag.table["ess_bulk"].min()),
        "divergences": int(diag.divergences),
    }
    truth = world.truth["pop_flip_prob"].to_dataframe().reset_index()
    frag = ps.fragility(fit, warn=False).merge(truth, on=["region", "device", "tenure", "proxy"])
    oracle = {r["proxy"]: r for r in bench_flip_floor.floor_rows(world, fit, seed, 200, 2000)}
    base0 = sign_counting(effects, min_count=0).merge(
        truth, on=["region", "device", "tenure", "proxy"]
    )
    with warnings.catch_warnings():
        # The seed's filter hides small segments (the cohort among them); the
        # columns *_base_filter_shown record exactly that, so no warning here.
        warnings.simplefilter("ignore", DataWarning)
        base_f = sign_counting(effects, min_count=SEED_MIN_COUNT)
    for proxy in PROXIES:
        q = frag[frag.proxy == proxy]
        worst = q.loc[q.pop_flip_prob.idxmax(), "segment"]
        top = q.sort_values("flip_prob", ascending=False).iloc[0]
        key = proxy.removeprefix("early_")
        row[f"{key}_top_ok"] = bool(top.segment == worst)
        row[f"{key}_flagged_ok"] = bool(q.loc[q.segment == worst, "flagged"].iloc[0])
        row[f"{key}_mae"] = float((q.flip_prob - q.pop_flip_prob).abs().mean())
        held = (q.flip_lo <= q.pop_flip_prob) & (q.pop_flip_prob <= q.flip_hi)
        positive = q.pop_flip_prob > 0
        row[f"{key}_cover90"] = float(held.mean())
        row[f"{key}_cover90_positive"] = float(held[positive].mean())
        row[f"{key}_zero_truth_cells"] = int((~positive).sum())
        row[f"{key}_zero_truth_held"] = int(held[~positive].sum())
        row[f"{key}_oracle_mae"] = float(oracle[proxy]["oracle_mae"])
        row[f"{key}_oracle_cover90_positive"] = float(oracle[proxy]["oracle_cover90_positive"])
        b = base0[base0.proxy == proxy].sort_values("flip_rate", ascending=False)
        row[f"{key}_base_top_ok"] = bool(b.iloc[0].segment == worst)
        row[f"{key}_base_mae"] = float((b.flip_rate - b.pop_flip_prob).abs().mean())
        bf = base_f[base_f.proxy == proxy].sort_values("flip_rate", ascending=False)
        row[f"{key}_base_filter_shown"] = bool((bf.segment == worst).any())
        row[f"{key}_base_filter_top_ok"] = bool(len(bf) and bf.iloc[0].segment == worst)

    # decision accuracy on the historical mix
    acc_true = world.truth["pop_decision_accuracy"].to_series()
    best_true = str(acc_true.idxmax())
    rec = ps.recommend(fit)
    singles = rec[rec.proxy.isin(list(acc_true.index))].reset_index(drop=True)
    row["best_proxy_true"] = best_true
    row["rank_ok"] = bool(singles.iloc[0].proxy == best_true)
    row["composite_first"] = bool(rec.iloc[0].proxy not in set(acc_true.index))
    row["base_rank_ok"] = bool(reliability_scores(effects).iloc[0].proxy == best_true)
    est = singles.set_index("proxy")["decision_accuracy"]
    for proxy in PROXIES:
        key = proxy.removeprefix("early_")
        row[f"{key}_acc_true"] = float(acc_true[proxy])
        row[f"{key}_acc_err"] = float(est[proxy] - acc_true[proxy])
    row["acc_max_abs_err"] = float(max(abs(est[p] - acc_true[p]) for p in acc_true.index))

    # transport to a mix concentrated in the cohort cell
    cell = (str(cohort.region), str(cohort.device), str(cohort.tenure))
    mix = world.config.mix.concentrated(cell, TARGET_SHARE)
    shares = mix.cell_probabilities().tolist()
    target = dict(zip(cell_labels(), shares, strict=True))
    result = ps.transport(fit, target, random_seed=seed)
    lo, hi = np.quantile(result.draws, [0.05, 0.95])
    new = world.new_experiment_effects(2000, mix, seed=seed + 1)
    truth_mix = new.loc[new.scope == "mix", "long_retained"].to_numpy()
    row["transport_cover90"] = float(np.mean((truth_mix >= lo) & (truth_mix <= hi)))
    row["transport_mean"] = float(result.draws.mean())
    row["transport_true_mean"] = float(
        world.population_truth(mix)["pop_mix_effect_mean"].sel(metric="long_retained")
    )

    # conditional prediction from proxy readings of new experiments on the target
    shifted = world.shifted(mix, n_users=200_000, n_experiments=40, seed=seed + 2)
    new_effects = ps.summarize(shifted.users, engine="duckdb", **ROLES)
    readings = mix_effects(new_effects)
    proxies = list(effects.proxies)
    idx = [list(new_effects.metrics).index(p) for p in proxies]
    true_long = shifted.truth["experiment_effect"].sel(metric="long_retained").to_series()
    past = experiment_effects(effects)
    design = np.column_stack([np.ones(len(past)), past[proxies].to_numpy()])
    coef, *_ = np.linalg.lstsq(design, past[effects.outcome].to_numpy(), rcond=None)
    first = proxies.index(PROXIES[0])
    slope, intercept = np.polyfit(past[PROXIES[0]].to_numpy(), past[effects.outcome].to_numpy(), 1)
    err_model, err_naive, err_single = [], [], []
    for experiment, effect, noise in zip(
        readings.experiments, readings.effect, readings.noise_cov, strict=True
    ):
        obs = dict(zip(proxies, effect[idx], strict=True))
        cov = noise[np.ix_(idx, idx)]
        cond = ps.transport(fit, target, proxy_effects=obs, proxy_cov=cov, random_seed=seed)
        truth_e = float(true_long.loc[experiment])
        err_model.append(float(cond.draws.mean()) - truth_e)
        err_naive.append(float(coef[0] + coef[1:] @ effect[idx]) - truth_e)
        err_single.append(float(intercept + slope * effect[idx][first]) - truth_e)
    row["cond_rmse"] = float(np.sqrt(np.mean(np.square(err_model))))
    row["naive_rmse"] = float(np.sqrt(np.mean(np.square(err_naive))))
    row["naive_watch_rmse"] = float(np.sqrt(np.mean(np.square(err_single))))
    row["rmse_ratio"] = row["cond_rmse"] / row["naive_rmse"]
    row["rmse_ratio_watch"] = row["cond_rmse"] / row["naive_watch_rmse"]
    row["seconds"] = round(time.perf_counter() - t0, 1)
    return row


def summarize_results(frame: pd.DataFrame) -> pd.DataFrame:
    """One column per group of seeds (default cohort, moved cohort)."""
    out = {}
    for moved, group in frame.groupby("moved"):
        n = len(group)
        col = {
            "seeds": n,
            "fits passing diagnostics": f"{int(group.passed.sum())}/{n}",
        }
        for key in ("watch_min", "starts"):
            col[f"{key}: most fragile ranked first (proxyscope)"] = (
                f"{int(group[f'{key}_top_ok'].sum())}/{n}"
            )
            col[f"{key}: ... flagged (proxyscope)"] = f"{int(group[f'{key}_flagged_ok'].sum())}/{n}"
            col[f"{key}: shown at seed filter (baseline)"] = (
                f"{int(group[f'{key}_base_filter_shown'].sum())}/{n}"
            )
            col[f"{key}: ranked first, no filter (baseline)"] = (
                f"{int(group[f'{key}_base_top_ok'].sum())}/{n}"
            )
            col[f"{key}: flip MAE (proxyscope)"] = f"{group[f'{key}_mae'].mean():.3f}"
            col[f"{key}: flip MAE (baseline)"] = f"{group[f'{key}_base_mae'].mean():.3f}"
            if f"{key}_oracle_mae" in group:
                ratio = group[f"{key}_mae"].mean() / group[f"{key}_oracle_mae"].mean()
                col[f"{key}: semi-oracle MAE (ratio, target <= 1.1)"] = (
                    f"{group[f'{key}_oracle_mae'].mean():.3f} ({ratio:.2f})"
                )
            col[f"{key}: 90% interval coverage"] = f"{group[f'{key}_cover90'].mean():.2f}"
            col[f"{key}: coverage, truth > 0 (target >= 0.85)"] = (
                f"{group[f'{key}_cover90_positive'].mean():.2f}"
            )
            if f"{key}_oracle_cover90_positive" in group:
                col[f"{key}: coverage, truth > 0, semi-oracle"] = (
                    f"{group[f'{key}_oracle_cover90_positive'].mean():.2f}"
                )
            col[f"{key}: cells with truth exactly 0 (held)"] = (
                f"{group[f'{key}_zero_truth_cells'].mean():.1f} "
                f"({group[f'{key}_zero_truth_held'].mean():.1f})"
            )
            col[f"{key}: decision-accuracy error (mean |err|)"] = (
                f"{group[f'{key}_acc_err'].abs().mean():.3f}"
            )
        col["best proxy ranked first (proxyscope)"] = f"{int(group.rank_ok.sum())}/{n}"
        col["best proxy ranked first (baseline reliability)"] = (
            f"{int(group.base_rank_ok.sum())}/{n}"
        )
        col["seeds with all |accuracy error| <= 0.05"] = (
            f"{int((group.acc_max_abs_err <= 0.05).sum())}/{n}"
        )
        col["transport 90% interval coverage (mean)"] = f"{group.transport_cover90.mean():.2f}"
        col["conditional RMSE / naive OLS RMSE (median)"] = f"{group.rmse_ratio.median():.2f}"
        col["conditional RMSE / naive OLS on early_watch_min alone (median)"] = (
            f"{group.rmse_ratio_watch.median():.2f}"
        )
        col["fit seconds (median)"] = f"{group.fit_seconds.median():.0f}"
        out["moved cohort" if moved else "default cohort"] = col
    return pd.DataFrame(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--moved", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--tune", type=int, default=500)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument(
        "--followups", type=int, default=2, help="ProxyModel(followups=...) (0: one run per fit)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = pd.read_csv(args.out) if args.out.exists() else pd.DataFrame()
    jobs = [(s, False) for s in range(args.first_seed, args.first_seed + args.seeds)]
    jobs += [(s, True) for s in range(args.first_seed, args.first_seed + args.moved)]
    for seed, moved in jobs:
        if len(done) and ((done.seed == seed) & (done.moved == moved)).any():
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            row = one_seed(seed, moved, args.draws, args.tune, args.chains, args.followups)
        print(
            f"seed {seed:3d} moved={moved!s:5} cohort={row['cohort']:24} "
            f"watch top={row['watch_min_top_ok']} mae={row['watch_min_mae']:.3f} "
            f"cover={row['watch_min_cover90']:.2f} cover+={row['watch_min_cover90_positive']:.2f} "
            f"oracle mae={row['watch_min_oracle_mae']:.3f} | starts top={row['starts_top_ok']} "
            f"mae={row['starts_mae']:.3f} cover+={row['starts_cover90_positive']:.2f} "
            f"oracle mae={row['starts_oracle_mae']:.3f} | rank_ok={row['rank_ok']} "
            f"transport cover={row['transport_cover90']:.2f} rmse ratio={row['rmse_ratio']:.2f} "
            f"| {row['seconds']:.0f}s",
            flush=True,
        )
        done = pd.concat([done, pd.DataFrame([row])], ignore_index=True)
        write_atomic(args.out, lambda path, frame=done: frame.to_csv(path, index=False))
    print(summarize_results(done).to_markdown() if _has_tabulate() else summarize_results(done))


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    main()

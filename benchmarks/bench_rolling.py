"""Benchmark: rolling-origin backtest of the drifting model against the static one, many seeds.

Issue 25 point 5 (and point 7's last target): fit on the experiments up to
each origin T, judge the experiments after T. For every seed two worlds are
drawn with :func:`proxyscope.simulate.from_model` over 8 quarters, 60
experiments (7-8 a quarter), 4 segment levels, two proxies:

- drifting: proxy_1's slope falls by 15% a quarter, 0.8 -> 0.26 over the
  history (to a third), while proxy_2's stays at 0.4;
- static: the same draws without the drift (its twin: same seed).

Why this world. The question is whether following the drift changes
decisions about future experiments. It does only when the sign of the
long-term effect depends on how the proxies are weighed: the long-term means
are 0 in every segment (nu = 0), so an experiment ships on the sign of
beta' eta, and both proxies move as much across experiments (sd_e = 1, 1), so
they often disagree. The strong proxy's slope falls below the steady one's
in the middle of the history: early on proxy_1 decides, at the end proxy_2
does, and a relation averaged over the history weighs proxy_1 about twice as
much as it deserves in the quarters being judged. A drift on a proxy that
stays dominant (or on a weak one) moves the predicted size, not its sign.

Per seed and world :func:`proxyscope.rolling_backtest` runs with its default
origins (4th to 7th quarter: 4 origins, 74 judged predictions) and scores
against the world's TRUE mix-level long-term effect: decision accuracy, RMSE
and 90% interval coverage of the posterior predictive, and the adaptive
weights' decision accuracy and RMSE, per model (pooled over origins), and the
difference drifting - static per seed. Why they differ: ``slope_err_*``, the
fitted global slopes (the drifting fit's latest period) minus the true slopes
at the origin and over the judged periods, averaged over origins. Target (issue 25, point 7): on the
drifting world the drifting model's decision accuracy beats the static
model's; on the static world it costs at most 0.01.

Run ``python benchmarks/bench_rolling.py --seeds 10`` (15-50 s a seed and
world on 2 cores at 4 x (500 + 500): 8 fits; the 10 seeds took 10 minutes). Rows are appended to
``benchmarks/_results/rolling.csv`` as each seed finishes (a rerun skips the
seeds already there); the tables are printed at the end. ``--quick``: one
seed, two origins, 2 x (300 + 300), to check that it runs.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import proxyscope as ps
from proxyscope._io import write_atomic
from proxyscope.analyses.backtest.rolling import rolling_backtest
from proxyscope.core.draws import flat

RESULTS = Path(__file__).parent / "_results" / "rolling.csv"
#: proxy_1's slope falls by this share a quarter (0.8 -> 0.8 * 0.85^7 = 0.26).
DRIFT_RATE = 0.15
WORLD: dict[str, Any] = {
    "n_experiments": 60,
    "periods": 8,
    "nu": (0.0, 0.0, 0.0, 0.0),
    "mu": ((1.0, 0.5), (0.5, 1.0), (1.5, 0.0), (0.0, 0.8)),
    "beta": (0.8, 0.4),
    "sd_e": (1.0, 1.0),
    "sd_c": (0.3, 0.3),
}
WORLDS = ("drifting", "static")


def world(seed: int, drifting: bool) -> tuple[ps.CellEffects, Any]:
    """One seed's world (with start dates) and its truth."""
    drift = {0: DRIFT_RATE} if drifting else None
    cells, truth = ps.simulate.from_model(seed=seed, drift=drift, **WORLD)
    return cells, truth  # from_model's cells over periods carry their start dates


def one_seed(
    seed: int, name: str, draws: int, tune: int, chains: int, origins: int | None
) -> pd.DataFrame:
    """Scores per model and method (pooled over origins) on one world."""
    start = time.perf_counter()
    cells, truth = world(seed, name == "drifting")
    chosen = None
    if origins is not None:
        chosen = cells.periods[len(cells.periods) - 1 - origins : len(cells.periods) - 1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence is recorded in the rows
        res = rolling_backtest(
            cells,
            chosen,
            truth=truth,
            draws=draws,
            tune=tune,
            chains=chains,
            random_seed=seed,
        )
    out = res.summary().reset_index(drop=True)
    out.insert(0, "world", name)
    out.insert(1, "seed", seed)
    trust = pd.Series(res.trustworthy)
    out["trustworthy"] = [bool(trust.xs(m, level=1).all()) for m in out["model"]]
    out["origins"] = len(res.origins)
    for model, errors in slope_errors(res, truth).items():
        for col, value in errors.items():
            out.loc[out["model"] == model, col] = value
    out["seconds"] = time.perf_counter() - start
    return out


def slope_errors(res: Any, truth: Any) -> dict[str, dict[str, float]]:
    """Why decisions differ: per model, the fitted global slopes (the drifting fit's
    latest period) minus the true slopes at the origin and in the judged periods
    (mean over the judged experiments), averaged over origins."""
    labels = list(truth.period_labels)
    out: dict[str, dict[str, float]] = {}
    for model in ("drifting", "static"):
        at_origin, ahead = [], []
        for t in res.origins:
            fitted = flat(res.fits[(t, model)].posterior["beta_global"]).mean(axis=0)
            cut = labels.index(t)
            judged = truth.experiment_period[truth.experiment_period > cut]
            at_origin.append(fitted - truth.beta_path[cut])
            ahead.append(fitted - truth.beta_path[judged].mean(axis=0))
        out[model] = {}
        for k in range(truth.beta_path.shape[1]):
            out[model][f"slope_err_origin_proxy_{k + 1}"] = float(
                np.mean([a[k] for a in at_origin])
            )
            out[model][f"slope_err_ahead_proxy_{k + 1}"] = float(np.mean([a[k] for a in ahead]))
    return out


def differences(frame: pd.DataFrame) -> pd.DataFrame:
    """Per world, seed and method: drifting - static (accuracy, RMSE, coverage)."""
    cols = ["decision_accuracy", "rmse", "coverage"]
    wide = frame.pivot_table(index=["world", "seed", "method"], columns="model", values=cols)
    out = pd.DataFrame(
        {f"{c}_diff": wide[(c, "drifting")] - wide[(c, "static")] for c in cols}
    ).reset_index()
    return out


def tables(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The per-model means over seeds, and the differences drifting - static."""
    means = (
        frame.groupby(["world", "model", "method"], sort=False)
        .agg(
            seeds=("seed", "nunique"),
            decision_accuracy=("decision_accuracy", "mean"),
            correct=("n_correct", "sum"),
            n=("n", "sum"),
            rmse=("rmse", "mean"),
            coverage=("coverage", "mean"),
            width=("interval_width", "mean"),
            trustworthy=("trustworthy", "sum"),
            slope_err_origin_1=("slope_err_origin_proxy_1", "mean"),
            slope_err_ahead_1=("slope_err_ahead_proxy_1", "mean"),
            slope_err_ahead_2=("slope_err_ahead_proxy_2", "mean"),
        )
        .reset_index()
    )
    diff = differences(frame)
    summary = (
        diff.groupby(["world", "method"], sort=False)
        .agg(
            seeds=("seed", "nunique"),
            accuracy_diff=("decision_accuracy_diff", "mean"),
            accuracy_diff_min=("decision_accuracy_diff", "min"),
            accuracy_diff_max=("decision_accuracy_diff", "max"),
            drifting_better=("decision_accuracy_diff", lambda d: int((d > 0).sum())),
            drifting_worse=("decision_accuracy_diff", lambda d: int((d < 0).sum())),
            rmse_diff=("rmse_diff", "mean"),
            coverage_diff=("coverage_diff", "mean"),
        )
        .reset_index()
    )
    return means, summary


def _seeds(pp: pd.DataFrame, name: str) -> str:
    row = pp.loc[name]
    return (
        f" (drifting better in {int(row['drifting_better'])}, worse in "
        f"{int(row['drifting_worse'])} of {int(row['seeds'])} seeds)"
    )


def verdict(summary: pd.DataFrame) -> list[str]:
    """The targets of issue 25 point 7 (posterior predictive decisions)."""
    pp = summary[summary["method"] == "posterior_predictive"].set_index("world")
    lines = []
    if "drifting" in pp.index:
        d = float(pp.at["drifting", "accuracy_diff"])
        lines.append(
            f"drifting world: drifting - static decision accuracy {d:+.3f} (target > 0): "
            f"{'MET' if d > 0 else 'MISSED'}{_seeds(pp, 'drifting')}"
        )
    if "static" in pp.index:
        d = float(pp.at["static", "accuracy_diff"])
        lines.append(
            f"static world: drifting - static decision accuracy {d:+.3f} (target >= -0.01): "
            f"{'MET' if d >= -0.01 else 'MISSED'}{_seeds(pp, 'static')}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--tune", type=int, default=500)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument(
        "--origins", type=int, default=None, help="the last N origins only (default: all 4)"
    )
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 origins, 2 x (300 + 300)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.draws, args.tune, args.chains, args.origins = 1, 300, 300, 2, 2
        args.out = args.out.with_name("rolling_quick.csv")
    done = pd.read_csv(args.out) if args.out.exists() else pd.DataFrame()
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for name in WORLDS:
            if len(done) and ((done["seed"] == seed) & (done["world"] == name)).any():
                continue
            rows = one_seed(seed, name, args.draws, args.tune, args.chains, args.origins)
            pp = rows[rows["method"] == "posterior_predictive"].set_index("model")
            acc = pp["decision_accuracy"]
            print(
                f"seed {seed:3d} {name:8s}: accuracy drifting {acc['drifting']:.3f}"
                f" static {acc['static']:.3f}; coverage drifting "
                f"{pp.at['drifting', 'coverage']:.3f} static {pp.at['static', 'coverage']:.3f}; "
                f"trustworthy {bool(rows['trustworthy'].all())}; {rows['seconds'].iloc[0]:.0f} s",
                flush=True,
            )
            done = pd.concat([done, rows], ignore_index=True)
            write_atomic(args.out, lambda path, frame=done: frame.to_csv(path, index=False))
    frame = done[done["seed"].between(args.first_seed, args.first_seed + args.seeds - 1)]
    means, summary = tables(frame)
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print("\nPer model and method, mean over seeds (pooled over origins within a seed):")
        print(means.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        print("\nDrifting - static, per seed:")
        print(summary.to_string(index=False, float_format=lambda v: f"{v:+.3f}"))
    for line in verdict(summary):
        print(line)


if __name__ == "__main__":
    main()

"""Benchmark: a history of A/B tests and real design estimators recovers the proxy slopes.

Worlds: :func:`proxyscope.simulate.designed_history` with bench_designs' WORLD
(the proxy model's cells at known parameters, 60 experiments x 4 segments, two
proxies with true slopes 0.8 and 0.15). Half the experiments are A/B tests
(from_model's cells as they are); each of did, rdd, ipw and synthetic_control
has 12.5% of them, whose cells are what that estimator reads from unit data
simulated around the cells' true effects (confounded so that a naive
difference in means is biased; :mod:`proxyscope.simulate.designed_units`).
No bias is planted: the estimators are unbiased by construction.

Per seed, four fits of the default model (bias term on; 4 chains x (``--draws``
+ ``--tune``), random_seed = seed):

- ``designed``: every cell;
- ``ab_only``: the A/B experiments of the same history only (the baseline);
- ``naive_as_ab``: the quasi-experimental cells replaced by naive differences in
  means of the same units with their own covariance, every cell labelled ``ab``
  (:func:`~proxyscope.simulate.designed_naive.naive_effects`);
- ``confounded_as_ab``: the naive effects with the estimators' covariance
  (biased estimates that claim the designs' precision), labelled ``ab``: the
  check must fail here.

Per fit and proxy: whether the 90% interval of the global slope holds the true
slope, the error of its posterior mean, the interval's width, whether the fit
passed its diagnostics; for ``designed`` also the posterior mean of each
design's bias sd relative to its cells' median sampling sd (outcome, in
``bias_ratio_<design>``: near 0 when the model sees no bias). Rows go to
``benchmarks/_results/design_slopes.csv`` and the summary table is printed.
Run ``python benchmarks/bench_design_slopes.py --seeds 10``.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from bench_designs import WORLD, score

import proxyscope as ps
from proxyscope._io import write_atomic
from proxyscope.simulate.designed import designed_history
from proxyscope.simulate.designed_naive import naive_effects

OUT = Path(__file__).parent / "_results" / "design_slopes.csv"


def bias_ratios(fit: ps.ProxyFit) -> dict[str, float]:
    """Per biased design: the posterior mean bias sd of the outcome / median sampling sd."""
    report = ps.design_bias(fit, refit=False)
    table = report.bias[report.bias["metric"] == fit.effects.outcome]
    return {
        f"bias_ratio_{row['design']}": float(row["mean"] / row["noise_sd"])
        for _, row in table.iterrows()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--tune", type=int, default=500)
    parser.add_argument("--ci", type=float, default=0.9)
    args = parser.parse_args()
    rows: list[dict] = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        start = time.perf_counter()
        history = designed_history(seed=seed, **WORLD)
        simulate_s = time.perf_counter() - start
        truth = np.asarray(history.truth.beta)
        ab = history.experiment_design.index[history.experiment_design == "ab"]
        variants = {
            "designed": history.effects,
            "ab_only": history.effects.subset(ab),
            "naive_as_ab": naive_effects(history),
            "confounded_as_ab": naive_effects(history, covariance="estimator"),
        }
        for label, effects in variants.items():
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit = ps.ProxyModel().fit(
                    effects, draws=args.draws, tune=args.tune, random_seed=seed, progress=False
                )
            seconds = time.perf_counter() - start
            extra = bias_ratios(fit) if label == "designed" else {}
            for row in score(fit, truth, label, seed, args.ci):
                row.update(seconds=seconds, simulate_seconds=simulate_s, **extra)
                row["cells"] = effects.n_cells
                row["estimator_warnings"] = len(history.warnings)
                rows.append(row)
            print(
                f"seed {seed} {label:16s} "
                + "  ".join(
                    f"{r['proxy']}: {r['mean']:.3f} [{r['lower']:.3f}, {r['upper']:.3f}]"
                    f" truth {r['truth']:.2f}"
                    for r in rows[-len(fit.proxies) :]
                )
                + f"  ({seconds:.0f} s, passed {fit.trustworthy})"
                + "".join(f"  {k[11:]} {v:.2f}" for k, v in extra.items()),
                flush=True,
            )
    table = pd.DataFrame(rows)
    OUT.parent.mkdir(exist_ok=True)
    write_atomic(OUT, lambda tmp: table.to_csv(tmp, index=False))
    summary = (
        table.groupby(["fit", "proxy"], sort=False)
        .agg(
            seeds=("seed", "nunique"),
            covered=("covered", "sum"),
            mean_error=("error", "mean"),
            rmse=("error", lambda e: float(np.sqrt(np.mean(np.square(e))))),
            mean_width=("width", "mean"),
            passed=("passed", "sum"),
            fit_s=("seconds", "mean"),
        )
        .reset_index()
    )
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    ratios = [c for c in table.columns if c.startswith("bias_ratio_")]
    if ratios:
        designed = table[table["fit"] == "designed"].drop_duplicates("seed")
        print("bias sd / sampling sd (outcome, posterior mean), mean over seeds:")
        print(designed[ratios].mean().to_string(float_format=lambda v: f"{v:.3f}"))
    print(f"rows: {OUT}")


if __name__ == "__main__":
    main()

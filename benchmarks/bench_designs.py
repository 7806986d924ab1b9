"""Benchmark: does the design-bias term keep the slopes honest on a history of many designs?

Worlds: :func:`proxyscope.simulate.mixed_history` (the proxy model's own cells at
known parameters, two proxies with true slopes 0.8 and 0.15: a strong and a weak
one; experiments of the designs ab, cluster, did, ipw, rdd and synthetic_control
in the default shares; every cell of a non-randomized design biased by b ~ N(0,
Sigma_d), sd ``--bias`` (6) times the sampling sd, correlation 0.8 between every
pair of metrics), with the bias either each cell's own (``--shared 0``, as the
model assumes) or shared by all cells of an experiment (``--shared 1``:
confounding that comes with how an experiment was assigned; the model's per-cell
term only approximates it). Per seed and sharing, four fits of the default model
(4 chains x (``--draws`` + ``--tune``), seed = seed):

- ``bias_term``: the cells as they are (each non-randomized design gets its
  Sigma_d);
- ``as_unbiased``: the same cells with every design relabelled ``ab`` (what
  proxyscope did before designs existed: every estimate taken as unbiased);
- ``no_bias_world``: a world of the same seed whose non-randomized cells carry
  no bias (``bias_sd_multiple=0``), fitted with the bias term: what the term
  costs when it is not needed (compared with ``no_bias_world_as_unbiased``).

Per fit and proxy: whether the 90% interval of the global slope holds the true
slope, the error of its posterior mean, the interval's width, and whether the
fit passed its diagnostics. Rows go to ``benchmarks/_results/designs.csv`` and
the summary table is printed. Run ``python benchmarks/bench_designs.py --seeds 10``.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import proxyscope as ps
from proxyscope import dims
from proxyscope._io import write_atomic
from proxyscope.analyses.designs import slope_draws

OUT = Path(__file__).parent / "_results" / "designs.csv"
WORLD = {
    "n_experiments": 60,
    "beta": (0.8, 0.15),
    "mu": ((1.0, 0.5), (0.5, 1.0), (1.5, 0.0), (0.0, 0.8)),
    "sd_e": (1.0, 0.8),
    "sd_c": (0.3, 0.3),
}


def as_unbiased(effects: ps.CellEffects) -> ps.CellEffects:
    """The same cells, every one labelled a user-randomized A/B test."""
    design = np.full(effects.n_cells, "ab", dtype=object)
    return ps.CellEffects(effects.data.assign_coords({dims.DESIGN: (dims.CELL, design)}))


def score(fit: ps.ProxyFit, truth: np.ndarray, label: str, seed: int, ci: float) -> list[dict]:
    draws = slope_draws(fit)
    lo, hi = np.quantile(draws, [(1 - ci) / 2, (1 + ci) / 2], axis=0)
    mean = draws.mean(axis=0)
    return [
        {
            "seed": seed,
            "fit": label,
            "proxy": proxy,
            "truth": float(truth[j]),
            "mean": float(mean[j]),
            "lower": float(lo[j]),
            "upper": float(hi[j]),
            "covered": bool(lo[j] <= truth[j] <= hi[j]),
            "error": float(mean[j] - truth[j]),
            "width": float(hi[j] - lo[j]),
            "passed": bool(fit.trustworthy),
        }
        for j, proxy in enumerate(fit.proxies)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--bias", type=float, default=6.0, help="bias sd / sampling sd")
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--tune", type=int, default=500)
    parser.add_argument("--ci", type=float, default=0.9)
    parser.add_argument(
        "--shared", default="0,1", help="bias shares shared by an experiment's cells (list)"
    )
    args = parser.parse_args()
    rows: list[dict] = []
    shares = [float(s) for s in args.shared.split(",")]
    for seed, shared in (
        (s, h) for h in shares for s in range(args.first_seed, args.first_seed + args.seeds)
    ):
        worlds = {
            "": ps.simulate.mixed_history(
                seed=seed, bias_sd_multiple=args.bias, bias_shared=shared, **WORLD
            ),
            "no_bias_world": ps.simulate.mixed_history(seed=seed, bias_sd_multiple=0.0, **WORLD),
        }
        for prefix, world in worlds.items():
            if prefix and shared != shares[0]:
                continue  # the no-bias world does not depend on the sharing
            truth = np.asarray(world.truth.beta)
            variants = {"bias_term": world.effects, "as_unbiased": as_unbiased(world.effects)}
            for name, effects in variants.items():
                label = f"{prefix}_{name}".strip("_") if prefix else name
                if prefix and name == "bias_term":
                    label = prefix
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    fit = ps.ProxyModel().fit(
                        effects, draws=args.draws, tune=args.tune, random_seed=seed, progress=False
                    )
                seconds = time.perf_counter() - start
                for row in score(fit, truth, label, seed, args.ci):
                    row["seconds"] = seconds
                    row["shared"] = np.nan if prefix else shared
                    rows.append(row)
                print(
                    f"seed {seed} {label:28s} "
                    + "  ".join(
                        f"{r['proxy']}: {r['mean']:.3f} [{r['lower']:.3f}, {r['upper']:.3f}]"
                        f" truth {r['truth']:.2f}"
                        for r in rows[-len(fit.proxies) :]
                    )
                    + f"  ({seconds:.0f} s, passed {fit.trustworthy})",
                    flush=True,
                )
    table = pd.DataFrame(rows)
    OUT.parent.mkdir(exist_ok=True)
    write_atomic(OUT, lambda tmp: table.to_csv(tmp, index=False))
    summary = (
        table.groupby(["shared", "fit", "proxy"], sort=False, dropna=False)
        .agg(
            seeds=("seed", "nunique"),
            covered=("covered", "sum"),
            mean_error=("error", "mean"),
            rmse=("error", lambda e: float(np.sqrt(np.mean(np.square(e))))),
            mean_width=("width", "mean"),
            passed=("passed", "sum"),
        )
        .reset_index()
    )
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"rows: {OUT}")


if __name__ == "__main__":
    main()

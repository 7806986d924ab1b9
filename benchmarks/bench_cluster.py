"""Benchmark: are the cell effects' covariances of cluster-randomized experiments honest?

Worlds: :func:`proxyscope.simulate.workspace` (the streaming scenario randomized by
workspace, workspace baselines at an intra-class correlation of 0.3, spillover to a
quarter of the control users, an exposure column), ``--worlds`` seeds of
``--experiments`` experiments with ``--workspaces`` workspaces each (so at least 200
cluster-randomized experiments). Each world is summarized twice with the
exposure-aware direct effect (direct vs pure control):

- ``clustered``: ``summarize(..., cluster="workspace", exposure="exposure")``, the
  joint cluster-robust covariance;
- ``user_level``: the same call with every user a cluster of its own, i.e. the
  covariance of independent users (up to N / (N - 1)) on the same data.

Per metric, over every cell: the share of 90% intervals (effect +/- 1.645 se) that
hold the cell's true direct effect (the simulator's exact in-sample truth), and the
mean of the squared whitened joint errors L^-1 (d - truth) per component (S = L L',
metrics in the order outcome, proxies: component j is metric j given the ones before
it), which is 1 for an honest joint covariance; ``whitened_pooled`` whitens with
each cell's SEs and the correlations averaged over the world's cells, which
separates noise in each cell's estimated correlations from a wrong cross-metric
block. Spillover: the same for the spillover
effect against its truth. Rows go to ``benchmarks/_results/cluster.csv``. Run
``python benchmarks/bench_cluster.py`` (4 worlds x 50 experiments x 200 workspaces).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from _calibration import scores

import proxyscope as ps
from proxyscope import dims
from proxyscope._io import write_atomic
from proxyscope.data import designs

OUT = Path(__file__).parent / "_results" / "cluster.csv"


def truth_of(effects: ps.CellEffects, truth: np.ndarray, segments: list[str], coords) -> np.ndarray:
    """The truth array (experiment, segments..., metric) at every cell, (C, M)."""
    cells = effects.cells()
    index = [pd.Index(coords[dims.EXPERIMENT]).get_indexer(effects.experiment)]
    for s in segments:
        index.append(pd.Index(coords[s].astype(str)).get_indexer(cells[s].astype(str)))
    return truth[tuple(index)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", type=int, default=4)
    parser.add_argument("--experiments", type=int, default=50)
    parser.add_argument("--workspaces", type=int, default=200)
    parser.add_argument("--first-seed", type=int, default=1)
    args = parser.parse_args()
    rows: list[dict] = []
    for seed in range(args.first_seed, args.first_seed + args.worlds):
        start = time.perf_counter()
        world = ps.simulate.workspace(
            n_experiments=args.experiments, n_workspaces=args.workspaces, seed=seed
        )
        roles = world.column_roles()
        users = world.users.copy()
        users["user_id"] = np.arange(len(users))
        segments = list(roles["segments"])
        coords = world.truth.coords
        truth = world.truth["cell_effect"].transpose(dims.EXPERIMENT, *segments, dims.METRIC)
        spill = world.spillover_truth["spillover_effect"].transpose(
            dims.EXPERIMENT, *segments, dims.METRIC
        )
        for label, cluster in (("clustered", roles["cluster"]), ("user_level", "user_id")):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                effects = ps.summarize(users, **{**roles, "cluster": cluster})
            metrics = list(effects.metrics)
            t = truth_of(effects, truth.values, segments, coords)
            for row in scores(effects.effect, effects.noise_cov, t, metrics):
                rows.append({"seed": seed, "covariance": label, "effect": "direct", **row})
            s_eff = effects.variable(designs.SPILLOVER)
            s_cov = effects.variable(designs.SPILLOVER_COV)
            ok = np.isfinite(s_eff).all(axis=1) & np.isfinite(s_cov).all(axis=(1, 2))
            t_s = truth_of(effects, spill.values, segments, spill.coords)[ok]
            for row in scores(s_eff[ok], s_cov[ok], t_s, metrics):
                rows.append({"seed": seed, "covariance": label, "effect": "spillover", **row})
        seconds = time.perf_counter() - start
        print(f"world {seed}: {len(users):,} users, {seconds:.0f} s", flush=True)
    table = pd.DataFrame(rows)
    OUT.parent.mkdir(exist_ok=True)
    write_atomic(OUT, lambda tmp: table.to_csv(tmp, index=False))
    weights = table["cells"]
    summary = (
        table.assign(
            c=table["coverage_90"] * weights,
            z=table["mean_z2"] * weights,
            w=table["whitened_chi2"] * weights,
            p=table["whitened_pooled"] * weights,
        )
        .groupby(["effect", "covariance", "metric"], sort=False)
        .agg(cells=("cells", "sum"), c=("c", "sum"), z=("z", "sum"), w=("w", "sum"), p=("p", "sum"))
    )
    named = (
        ("c", "coverage_90"),
        ("z", "mean_z2"),
        ("w", "whitened_chi2"),
        ("p", "whitened_pooled"),
    )
    for col, name in named:
        summary[name] = summary[col] / summary["cells"]
    summary = summary.drop(columns=["c", "z", "w", "p"]).reset_index()
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"experiments: {args.worlds * args.experiments}; rows: {OUT}")


if __name__ == "__main__":
    main()

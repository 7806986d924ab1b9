"""Benchmark: are the cell effects' joint covariances of sharp RD estimates honest?

Worlds: :func:`proxyscope.simulate.threshold_world.threshold` (the streaming
scenario's users and metrics behind a routing rule at a score threshold of 0.85,
scores Beta(5, 2), satisfaction and engagement moving smoothly with the score),
``--worlds`` seeds of ``--experiments`` threshold rules with ``--users`` users each,
cells by tenure (2 per rule). Each world is read with :func:`proxyscope.data.rdd.rdd`
twice:

- ``mserd``: every cell at its MSE-optimal bandwidth for the outcome (the default);
- ``half_mserd``: every cell at half the world's median MSE-optimal bandwidth (less
  smoothing bias, more variance), given as ``bandwidth=``.

Per metric, over every cell: the share of 90% intervals (effect +/- 1.645 se) that
hold the cell's exact effect at the cutoff (the simulator's truth), the mean z², and
the mean of the squared whitened joint errors L^-1 (d - truth) per component (S = L
L', metrics in the order outcome, proxies: component j is metric j given the ones
before it), which is 1 for an honest joint covariance; ``whitened_pooled`` whitens
with each cell's SEs and the correlations averaged over the world's cells. The
conventional interval ignores the smoothing bias, which at the MSE-optimal bandwidth
is of the order of the standard error, so some undercoverage there is the design's,
not the covariance's. Rows go to ``benchmarks/_results/rdd.csv``. Run
``python benchmarks/bench_rdd.py`` (25 worlds x 10 rules x 20,000 users: 500 cells).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from _calibration import scores

from proxyscope import dims
from proxyscope._io import write_atomic
from proxyscope.data.rdd import rdd
from proxyscope.simulate.threshold_world import threshold

OUT = Path(__file__).parent / "_results" / "rdd.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", type=int, default=25)
    parser.add_argument("--experiments", type=int, default=10)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--first-seed", type=int, default=1)
    args = parser.parse_args()
    rows: list[dict] = []
    for seed in range(args.first_seed, args.first_seed + args.worlds):
        start = time.perf_counter()
        world = threshold(n_experiments=args.experiments, n_users=args.users, seed=seed)
        roles = world.column_roles()
        truth = world.truth_for()
        segments = list(roles["segments"])
        fits = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fits["mserd"] = rdd(world.rows, **roles)
            h = float(np.median([c["bandwidth"] for c in fits["mserd"].meta["rdd"]["cells"]]))
            fits["half_mserd"] = rdd(world.rows, **roles, bandwidth=h / 2)
        for label, effects in fits.items():
            cells = effects.cells()
            index = [pd.Index(truth[dims.EXPERIMENT].values).get_indexer(effects.experiment)]
            for s in segments:
                index.append(pd.Index(truth[s].values).get_indexer(cells[s].astype(str)))
            t = truth.values[tuple(index)]
            for row in scores(effects.effect, effects.noise_cov, t, list(effects.metrics)):
                rows.append({"seed": seed, "bandwidth": label, **row})
        print(f"world {seed}: {len(world.rows):,} rows, {time.perf_counter() - start:.0f} s")
    table = pd.DataFrame(rows)
    OUT.parent.mkdir(exist_ok=True)
    write_atomic(OUT, lambda tmp: table.to_csv(tmp, index=False))
    named = ("coverage_90", "mean_z2", "whitened_chi2", "whitened_pooled")
    weighted = table.assign(**{n: table[n] * table["cells"] for n in named})
    summary = weighted.groupby(["bandwidth", "metric"], sort=False)[["cells", *named]].sum()
    for n in named:
        summary[n] = summary[n] / summary["cells"]
    summary = summary.reset_index()
    print(summary.to_markdown(index=False, floatfmt=".3f"))
    print(f"\ncells per bandwidth rule: {int(summary['cells'].iloc[0])}; rows: {OUT}")


if __name__ == "__main__":
    main()

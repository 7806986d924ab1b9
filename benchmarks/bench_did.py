"""Benchmark: are the difference-in-differences cell effects' covariances honest?

Worlds: :func:`proxyscope.simulate.did_world.rollout` (the streaming scenario rolled
out to markets in two waves, periods 0-7, waves at 4 and 6, 40% of the units never
treated, unit baselines correlated with the wave order, a common trend, AR(1) unit
shocks), ``--worlds`` seeds of ``--experiments`` rollouts with ``--units`` units each
(120: about 24-42 units per region; 400: 80-140); cells are rollout x region. Each world
is estimated with both comparison groups (``control="never"`` and ``"not_yet"``).

Per metric, over every cell: the share of 90% intervals (effect +/- 1.645 se) that hold
the cell's exact truth (the mean over the cell's treated unit-periods of the users'
Y(1) - Y(0)), the mean squared z, and the mean of the squared whitened joint errors
L^-1 (d - truth) per component (S = L L', metrics in the order outcome, proxies:
component j is metric j given the ones before it), which is 1 for an honest joint
covariance; ``whitened_pooled`` whitens with each cell's SEs and the correlations
averaged over the world's cells, which separates noise in each cell's estimated
correlations (G clusters estimate a 5 x 5 matrix) from a wrong cross-metric block.
``pretrend_rejected`` is the share of cells whose pre-trend check fails at 5%.

The first ``--violation-worlds`` seeds are also drawn with ``violation=--violation``
(ever-treated units drift by that many unit-period sds per period), to show the check
firing and the intervals failing. Rows go to ``benchmarks/_results/did.csv``. Run
``nice -n 10 python benchmarks/bench_did.py`` (200 worlds x 5 rollouts, 120 and 400
units; 20 worlds also with violation=0.25).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from _calibration import scores as calibration

from proxyscope._io import write_atomic
from proxyscope.data.cells import CellEffects
from proxyscope.data.did import did
from proxyscope.simulate.did_world import DidWorld, rollout

OUT = Path(__file__).parent / "_results" / "did.csv"


def truth_of(world: DidWorld, effects: CellEffects) -> np.ndarray:
    """The world's cell truth at every cell of ``effects``, (C, M)."""
    cell = {
        "experiment": xr.DataArray(np.asarray(effects.experiment), dims="cell"),
        "region": xr.DataArray(effects.cells()["region"].astype(str).to_numpy(), dims="cell"),
    }
    return np.asarray(world.truth["cell_effect"].sel(cell).values)


def scores(effects: CellEffects, t: np.ndarray) -> list[dict]:
    """The calibration scores per metric, with the share of cells whose pre-trend check fails."""
    rejected = np.mean(
        [
            r["pretrend_p_cell"] is not None and r["pretrend_p_cell"] < 0.05
            for r in effects.meta["did"]["cells"]
        ]
    )
    rows = calibration(effects.effect, effects.noise_cov, t, list(effects.metrics))
    return [{**row, "pretrend_rejected": float(rejected)} for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", type=int, default=200)
    parser.add_argument("--experiments", type=int, default=5)
    parser.add_argument("--units", type=int, nargs="+", default=[120, 400])
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--violation", type=float, default=0.25)
    parser.add_argument("--violation-worlds", type=int, default=20)
    args = parser.parse_args()
    rows: list[dict] = []
    start = time.perf_counter()
    for units in args.units:
        for i, seed in enumerate(range(args.first_seed, args.first_seed + args.worlds)):
            for violation in (0.0, args.violation) if i < args.violation_worlds else (0.0,):
                world = rollout(
                    n_experiments=args.experiments, n_units=units, violation=violation, seed=seed
                )
                for control in ("never", "not_yet"):
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        effects = did(world.panel, **world.column_roles(), control=control)
                    for row in scores(effects, truth_of(world, effects)):
                        rows.append(
                            {
                                "units": units,
                                "seed": seed,
                                "violation": violation,
                                "control": control,
                                **row,
                            }
                        )
            if (i + 1) % 50 == 0:
                print(f"{units} units: {i + 1} worlds, {time.perf_counter() - start:.0f} s")
    table = pd.DataFrame(rows)
    OUT.parent.mkdir(exist_ok=True)
    write_atomic(OUT, lambda tmp: table.to_csv(tmp, index=False))
    named = ["coverage_90", "mean_z2", "whitened_chi2", "whitened_pooled", "pretrend_rejected"]
    weighted = table.assign(**{c: table[c] * table["cells"] for c in named})
    summary = weighted.groupby(["units", "violation", "control", "metric"], sort=False)[
        ["cells", *named]
    ].sum()
    for c in named:
        summary[c] = summary[c] / summary["cells"]
    summary = summary.reset_index()
    print(summary.to_markdown(index=False, floatfmt=".3f"))
    print(
        f"worlds: {args.worlds} ({args.violation_worlds} also with violation={args.violation}); "
        f"{time.perf_counter() - start:.0f} s; rows: {OUT}"
    )


if __name__ == "__main__":
    main()

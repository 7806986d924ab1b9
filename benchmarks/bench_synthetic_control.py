"""Benchmark: are the synthetic-control cell effects' placebo covariances honest?

Worlds: :func:`proxyscope.simulate.launch_world.launch` (one launched market per
launch among ``--markets`` markets, a factor model with a market level and two AR(1)
factors, the streaming scenario's effects and user covariances, 20 + 8 weeks),
``--worlds`` seeds of ``--experiments`` launches, each read by
``synthetic_control(world.panel, **world.column_roles())``. A second, smaller run
uses ``--markets-large`` markets per launch, to show how the number of placebos
moves the joint calibration.

Per metric over every cell: the share of 90% intervals (effect +/- 1.645 se) holding
the exact truth, the mean z^2, and the mean squared whitened joint error
L^-1 (d - truth) per component (S = L L', metrics in the order outcome, proxies),
1 for an honest joint covariance; ``whitened_pooled`` whitens with each cell's SEs
and the correlations averaged over the world's cells, which removes the noise of
each cell's estimated correlations. With J placebos V is (up to the
placebo/treated difference) a Wishart mean of J draws, so even an exact procedure
gives E[z^2] = J/(J - 2) for a metric and J/(J - p - 1) for the mean whitened
component over p metrics; ``expected_*`` columns print those. Rows go to
``benchmarks/_results/synthetic_control.csv``. Run
``nice -n 10 python benchmarks/bench_synthetic_control.py``.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import pandas as pd
from _calibration import scores

from proxyscope._io import write_atomic
from proxyscope.data.synthetic_control import synthetic_control
from proxyscope.errors import DataWarning
from proxyscope.simulate.launch_world import launch

OUT = Path(__file__).parent / "_results" / "synthetic_control.csv"


def run(label: str, markets: int, seeds: range, experiments: int) -> list[dict]:
    rows: list[dict] = []
    for seed in seeds:
        start = time.perf_counter()
        world = launch(n_experiments=experiments, n_markets=markets, seed=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataWarning)
            eff = synthetic_control(world.panel, **world.column_roles())
        truth = world.truth["cell_effect"].values[eff.experiment]
        poor = sum(c["poor_fit"] for c in eff.meta["synthetic_control"]["cells"])
        for row in scores(eff.effect, eff.noise_cov, truth, list(eff.metrics)):
            rows.append(
                {"config": label, "donors": markets - 1, "seed": seed, "poor_fit": poor, **row}
            )
        print(f"{label} world {seed}: {time.perf_counter() - start:.1f} s", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", type=int, default=12)
    parser.add_argument("--experiments", type=int, default=20)
    parser.add_argument("--markets", type=int, default=25)
    parser.add_argument("--worlds-large", type=int, default=3)
    parser.add_argument("--markets-large", type=int, default=49)
    parser.add_argument("--first-seed", type=int, default=1)
    args = parser.parse_args()
    first = args.first_seed
    rows = run("default", args.markets, range(first, first + args.worlds), args.experiments)
    large = range(first + 10_000, first + 10_000 + args.worlds_large)
    rows += run("more_donors", args.markets_large, large, args.experiments)
    table = pd.DataFrame(rows)
    OUT.parent.mkdir(exist_ok=True)
    write_atomic(OUT, lambda tmp: table.to_csv(tmp, index=False))

    w = table["cells"]
    parts = {
        k: table[k] * w for k in ("coverage_90", "mean_z2", "whitened_chi2", "whitened_pooled")
    }
    summary = (
        table.assign(**parts)
        .groupby(["config", "donors", "metric"], sort=False)[["cells", *parts]]
        .sum()
        .reset_index()
    )
    for k in parts:
        summary[k] = summary[k] / summary["cells"]
    j = summary["donors"].astype(float)
    summary["expected_z2"] = j / (j - 2)
    summary["expected_whitened_mean"] = j / (j - 5 - 1)
    print(summary.to_markdown(index=False, floatfmt=".3f"))
    flagged = table.drop_duplicates(["config", "seed"]).groupby("config")["poor_fit"].sum()
    cells = table.drop_duplicates(["config", "seed"]).groupby("config")["cells"].sum()
    for cfg in flagged.index:
        print(f"{cfg}: {int(flagged[cfg])} of {int(cells[cfg])} cells flagged poor_fit")
    print(f"rows: {OUT}")


if __name__ == "__main__":
    main()

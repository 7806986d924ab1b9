"""Benchmark: are the doubly robust (AIPW) cell effects of opt-in launches and their joint
covariances honest?

Worlds: :func:`proxyscope.simulate.optin_world.optin` (the streaming scenario's users,
who opt into an assistant with a probability that rises with their prior engagement;
``--experiments`` experiments of ``--users`` users each, cells device x tenure), seeds
``--first-seed`` onwards, ``--worlds`` replications. Each world is read by
:func:`proxyscope.data.ipw.ipw` with its defaults (logistic propensity model, linear
outcome models, 5 folds, propensities clipped to [0.01, 0.99]) for the ATE and the ATT,
against the world's exact in-sample truth. ``--confounded`` more worlds add a hidden
confounder (``hidden_confounding=1``: latent satisfaction, which raises every metric,
also drives opting in) to show the bias the design cannot remove.

Per metric, over every cell: the share of 90% intervals (effect +/- 1.645 se) that hold
the truth, the mean squared z-score, the mean error (estimate - truth, good direction),
and the mean of the squared whitened joint errors L^-1 (d - truth) per component
(S = L L', metrics in the order outcome, proxies: component j is metric j given the ones
before it), which is 1 for an honest joint covariance and so checks the cross-metric
blocks. Rows go to ``benchmarks/_results/ipw.csv``. Run
``nice -n 10 python benchmarks/bench_ipw.py`` (200 worlds x 10 experiments x 4000 users,
plus 20 confounded worlds).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from _calibration import Z90, whiten

from proxyscope import dims
from proxyscope._io import write_atomic
from proxyscope.data.ipw import ipw
from proxyscope.simulate.optin_world import optin

OUT = Path(__file__).parent / "_results" / "ipw.csv"


def truth_at(effects, truth, segments: list[str]) -> np.ndarray:
    """The truth (experiment, segments..., metric) at every cell of ``effects``, (C, M)."""
    cells = effects.cells()
    index = [pd.Index(truth.coords[dims.EXPERIMENT].values).get_indexer(effects.experiment)]
    for s in segments:
        index.append(pd.Index(truth.coords[s].values).get_indexer(cells[s].astype(str)))
    return truth.transpose(dims.EXPERIMENT, *segments, dims.METRIC).values[tuple(index)]


def scores(d: np.ndarray, cov: np.ndarray, t: np.ndarray, metrics: list[str]) -> list[dict]:
    se = np.sqrt(np.einsum("cii->ci", cov))
    err = d - t
    white = whiten(cov, err)
    return [
        {
            "metric": m,
            "cells": len(d),
            "coverage_90": float(np.mean(np.abs(err[:, j]) <= Z90 * se[:, j])),
            "mean_z2": float(np.mean((err[:, j] / se[:, j]) ** 2)),
            "whitened_chi2": float(np.mean(white[:, j] ** 2)),
            "mean_error": float(np.mean(err[:, j])),
            "mean_se": float(np.mean(se[:, j])),
        }
        for j, m in enumerate(metrics)
    ]


def run(seed: int, args: argparse.Namespace, confounding: float) -> list[dict]:
    world = optin(
        n_experiments=args.experiments,
        users_per_experiment=args.users,
        hidden_confounding=confounding,
        seed=seed,
    )
    roles = world.column_roles()
    rows = []
    for estimand in ("ate", "att"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # dropped cells, overlap: counted in the table
            effects = ipw(world.users, **roles, estimand=estimand)
        t = truth_at(effects, world.cell_truth(estimand), list(roles["segments"]))
        label = "hidden_confounder" if confounding else "observables"
        for row in scores(effects.effect, effects.noise_cov, t, list(effects.metrics)):
            rows.append({"seed": seed, "world": label, "estimand": estimand, **row})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", type=int, default=200)
    parser.add_argument("--confounded", type=int, default=20)
    parser.add_argument("--experiments", type=int, default=10)
    parser.add_argument("--users", type=int, default=4000)
    parser.add_argument("--first-seed", type=int, default=1)
    args = parser.parse_args()
    rows: list[dict] = []
    start = time.perf_counter()
    plan = [(s, 0.0) for s in range(args.first_seed, args.first_seed + args.worlds)]
    plan += [(10_000 + s, 1.0) for s in range(args.confounded)]
    for i, (seed, confounding) in enumerate(plan, start=1):
        rows.extend(run(seed, args, confounding))
        if i % 20 == 0 or i == len(plan):
            print(f"{i}/{len(plan)} worlds, {time.perf_counter() - start:.0f} s", flush=True)
    table = pd.DataFrame(rows)
    write_atomic(OUT, lambda tmp: table.to_csv(tmp, index=False))
    named = ["coverage_90", "mean_z2", "whitened_chi2", "mean_error", "mean_se"]
    weighted = table.assign(**{c: table[c] * table["cells"] for c in named})
    summary = weighted.groupby(["world", "estimand", "metric"], sort=False)[["cells", *named]].sum()
    for c in named:
        summary[c] = summary[c] / summary["cells"]
    print(summary.reset_index().to_markdown(index=False, floatfmt=".3f"))
    print(f"worlds: {len(plan)}; rows: {OUT}")


if __name__ == "__main__":
    main()

"""Benchmark: simulation-based calibration (SBC) of the proxy model (Talts et al. 2018).

Each replication draws the model's parameters from its PRIOR (the PyMC
model's own prior, ``pm.sample_prior_predictive`` on the model
``ProxyModel`` builds, read back with the code that reads posterior draws),
simulates cell effects from the model at those parameters
(:func:`proxyscope.simulate.model_draws.simulate_cells`), fits the default
``ProxyModel`` (nutpie, 2 chains x (500 tune + 1000 draws), no follow-up
runs) and records the rank of each true value among L = 99 posterior draws
thinned by the effective sample size (min of bulk and tail ESS: every
ceil(N / ESS)-th draw, then 99 evenly spaced ones; if fewer than 99 are left,
99 evenly spaced from all draws, counted in ``n_short``). If the posterior is
right, each rank is uniform on 0..99.

World: one segment column with 3 levels, 2 proxies, 16 experiments (48
cells), the same sampling covariance in every cell (sd 0.5 in the priors'
unit, correlation 0.3 between metrics), 500 users per arm; effects are
reported in units (0.02, 5, 0.3) so that the conversion back to original
units is checked too. Quantities: per segment nu, mu, beta, sigma; the
globals; sd_e, sd_c, corr_e, sd_e_outcome; and what users read: the flip
probability per segment and proxy and for the historical mix
(:mod:`proxyscope.analyses.fragility`), trial-level R^2 (all proxies and per
proxy for the mix, all proxies per segment; :mod:`~proxyscope.analyses.surrogacy`),
and the weight of proxy_1 (mix and per segment; :mod:`~proxyscope.analyses.weights`).
The true derived values come from the true parameters through the same joint
Gaussian of a new experiment's effects (:mod:`proxyscope.model.segments`).

The priors' unit is data-dependent, and SBC needs a prior that is not. The
model divides each metric by ``metric_scales`` (the method-of-moments spread
of its true cell effects, from the data) before its priors apply, so its
prior in data units is the nominal prior scaled by a function of the data,
while SBC assumes the data are drawn from the prior the posterior uses. Two
modes:

- ``conditioned`` (default, the SBC proper): keep only the prior draws whose
  simulated data have ``metric_scales`` within +-5% of 1 for every metric
  (rejection on a function of the data alone). Conditioning the joint
  p(theta) p(d | theta) on an event about d leaves p(theta | d) unchanged,
  and on those data the model's prior is the nominal one (to within 5%), so
  the ranks must be uniform; any departure is the sampler's, the likelihood's
  or the coordinates'. The prior predictive spread is rarely 1 (median 1.54
  for the outcome and 1.2 for the proxies, 5-95% ranges 0.75-3.4 and
  0.5-2.3 on this world), so about 1 prior draw in 2,300 is kept: draws are
  screened in chunks of 20,000, vectorised, before anything is fitted.
  (PyMC draws the prior from children of its seed's SeedSequence, so the
  simulation's generator, seeded with the same integer, is independent.)
- ``free``: every prior draw, data in the prior's units; the model rescales
  them by its own data-dependent unit. Non-uniform ranks here, with uniform
  ones in ``conditioned``, measure what the data-dependent scaling does to
  calibration.
- ``lockstep`` (not SBC: the truth is not drawn from the prior): as
  ``conditioned``, but every draw moved to the boundary the seed (streaming)
  world sits on (``sbc.lockstep``: sigma_s = 0, no outcome-only experiment
  effect, Omega_C = 0, Omega_E of rank 1), so that the long-term and proxy
  effects move in lock-step. ``outer10_share`` is then the share of truths
  outside the central 90% of the posterior draws (0.1 if calibrated): it
  measures what that boundary does to the flip probabilities and R^2 on the
  model's own kind of world (``bench_flip_gap.py`` measures it on the seed
  world).

Uniformity (per quantity, over replications): Pearson's chi-square on the
ranks in 20 bins of 5 (19 df) and a Kolmogorov-Smirnov test of the ranks
jittered to continuous (rank + U(0, 1)) / 100 against U(0, 1); p-values are
per quantity, to be read against a Bonferroni level over the quantities.
Pooled over quantities, per replication: the share of ranks in the outer
10% (0-4 and 95-99, exactly 0.1 under uniformity), with its standard error
across replications (robust to the dependence between the quantities of one
replication). The same tests on ranks from each posterior shrunk 0.7x about
its mean (too narrow) show that they can fail.

Run ``python benchmarks/bench_sbc.py --replications 200`` (``--mode free``
or ``--mode lockstep`` for the others); rows are appended to
``benchmarks/_results/sbc.csv`` (``sbc_<mode>.csv``) per replication and a
rerun skips the done ones; the table goes to ``benchmarks/_results/sbc.json``
(one entry per mode) and rank histograms to ``benchmarks/_results/sbc_*.png``.
``tests/test_sbc.py`` runs a small version of the first.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import stats

from proxyscope._io import write_atomic

sys.path.insert(0, str(Path(__file__).parent))
import sbc

RESULTS = Path(__file__).parent / "_results"


def figures(frame: pd.DataFrame, table: pd.DataFrame, stem: str, out: Path) -> list[Path]:
    """Rank histograms per group of quantities, with the band that holds 99% of a
    bin's count under uniformity; one figure per group."""
    n = len(frame)
    lo, hi = stats.binom.ppf([0.005, 0.995], n, 1 / sbc.BINS)
    paths = []
    for group, rows in table.groupby("group", sort=False):
        cols = 6
        nrow = int(np.ceil(len(rows) / cols))
        fig, axes = plt.subplots(nrow, cols, figsize=(2.3 * cols, 1.9 * nrow), squeeze=False)
        for ax, r in zip(axes.flat, rows.itertuples(), strict=False):
            ranks = frame[f"rank__{r.quantity}"].to_numpy()
            ax.axhspan(lo, hi, color="0.85")
            ax.axhline(n / sbc.BINS, color="0.5", lw=0.8)
            ax.hist(
                ranks, bins=np.arange(0, sbc.RANKS + 2, (sbc.RANKS + 1) // sbc.BINS), color="C0"
            )
            ax.set_title(f"{r.quantity}\nchi2 p={r.chi2_p:.2g}", fontsize=8)
            ax.set_xticks([0, 50, 100])
            ax.tick_params(labelsize=7)
        for ax in list(axes.flat)[len(rows) :]:
            ax.axis("off")
        fig.suptitle(f"SBC rank histograms: {group} ({n} replications; band: 99% per bin)")
        fig.tight_layout()
        path = out / f"{stem}_{group.replace(' ', '_')}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    return paths


def report(frame: pd.DataFrame, mode: str, config: sbc.Config, out: Path) -> dict[str, Any]:
    """The uniformity table and figures of ``frame``'s ranks, into ``out``/sbc.json
    (one entry per mode) and ``out``/sbc[_free]_<group>.png."""
    stem = "sbc" if mode == "conditioned" else f"sbc_{mode}"
    table = sbc.uniformity_table(frame)
    shrunk = sbc.uniformity_table(frame, "shrunk__")
    paths = figures(frame, table, stem, out)
    entry = {
        "mode": mode,
        "config": dataclasses.asdict(config),
        "replications": len(frame),
        "tests": (
            "per quantity: Pearson chi-square of the ranks 0..99 in 20 bins of 5 (19 df), and "
            "Kolmogorov-Smirnov of (rank + U(0,1)) / 100 against U(0,1); read p-values against "
            "0.01 / (number of quantities) (Bonferroni). pooled: share of ranks in the outer 10% "
            "per replication, mean and standard error across replications, z against 0.1."
        ),
        "fits": {
            "passed_diagnostics": int(frame.passed.sum()),
            "divergent_fits": int((frame.divergences > 0).sum()),
            "median_fit_seconds": float(frame.fit_seconds.median()),
            "quantities_short_of_99_independent_draws": int(frame.n_short.sum()),
            "max_scale_gap_to_1": float(
                np.abs(frame[[c for c in frame.columns if c.startswith("scale_")]] - 1).max().max()
            ),
        },
        "pooled_outer10": sbc.pooled_outer(frame),
        "failures": sbc.verdict(frame),
        "quantities": table.round(4).to_dict(orient="records"),
        "shrunk_0.7": {
            "pooled_outer10": sbc.pooled_outer(frame, "shrunk__"),
            "failures": sbc.verdict(frame, "shrunk__"),
            "quantities": shrunk.round(4).to_dict(orient="records"),
        },
        "figures": [str(p.relative_to(out.parent.parent)) for p in paths],
    }
    path = out / "sbc.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[mode] = entry
    write_atomic(path, lambda p: Path(p).write_text(json.dumps(data, indent=1, default=float)))
    level = 0.01 / len(table)
    print(table.round(3).to_string(index=False))
    print(f"\nBonferroni level per quantity: {level:.2g}; failures: {entry['failures'] or 'none'}")
    print(f"pooled outer-10% share: {entry['pooled_outer10']}")
    print(
        f"0.7x-shrunk posterior, failures: {len(entry['shrunk_0.7']['failures'])}; pooled "
        f"{entry['shrunk_0.7']['pooled_outer10']}"
    )
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replications", type=int, default=200)
    parser.add_argument("--mode", choices=sbc.MODES, default="conditioned")
    parser.add_argument("--report-only", action="store_true", help="tables and figures only")
    args = parser.parse_args()
    config = sbc.Config()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / ("sbc.csv" if args.mode == "conditioned" else f"sbc_{args.mode}.csv")
    done = pd.read_csv(path) if path.exists() else pd.DataFrame()
    if not args.report_only:
        t0 = time.perf_counter()
        for row in sbc.run(config, args.mode, args.replications, done):
            done = pd.concat([done, pd.DataFrame([row])], ignore_index=True)
            write_atomic(path, lambda p, frame=done: frame.to_csv(p, index=False))
            print(
                f"rep {row['rep']:4d} prior draw {row['prior_index']:8d} "
                f"passed={row['passed']!s:5} rhat={row['max_rhat']:.3f} "
                f"ess={row['min_ess_bulk']:.0f} div={row['divergences']} short={row['n_short']} "
                f"{row['seconds']:.1f}s (total {time.perf_counter() - t0:.0f}s)",
                flush=True,
            )
    report(done.sort_values("rep").reset_index(drop=True), args.mode, config, RESULTS)


if __name__ == "__main__":
    main()

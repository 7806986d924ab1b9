"""Benchmark: how close can any calibrated posterior get to the flip truth on these data?

``bench_truth.py`` compares ``fragility``'s segment flip probabilities with the
simulator's population flip rates. This script asks what a *semi-oracle*
would score on the same worlds: a posterior that knows the world's structure
exactly (long-term and proxy effects move in lock-step across experiments,
correlation 1), so that a segment's flip probability is exactly
``|Phi(z_tau) - Phi(z_theta)|`` with ``z = mean / sd`` of the effect across
new experiments, and whose only uncertainty is these standardized positions
of the segment's means, with the spread the real fit's posterior gives them:

- per segment, the joint posterior sd and correlation of ``(z_tau, z_theta)``
  are read from the fitted model's draws;
- the semi-oracle's estimate is the truth plus one draw of that error, its
  posterior is that estimate plus draws of the same spread (a calibrated
  posterior by construction);
- its posterior mean and equal-tailed 90% interval of the flip probability are
  scored as ``bench_truth.py`` scores the model (mean absolute error, share of
  cells whose interval holds the truth), averaged over ``--replicates``;
- the coverage over the cells whose truth is above 0 (``*_cover90_positive``):
  an equal-tailed interval of a positive quantity never holds a truth of 0;
- the coverage of the 90% highest-density interval is reported as well
  (``*_cover90_hdi``): a flip probability whose truth is 0 or near it has a
  right-skewed posterior, and an equal-tailed interval of a positive quantity
  never holds a truth of exactly 0, while the shortest interval can come close.

If the semi-oracle misses a target, no calibrated posterior with that much
information about the segment means reaches it with that kind of interval.
The model's own scores on the same fits are printed alongside.

Run ``python benchmarks/bench_flip_floor.py [--seeds 5] [--draws 500]``; the per-seed
rows go to ``benchmarks/_results/flip_floor.csv``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import ndtr

import proxyscope as ps
from proxyscope._io import write_atomic
from proxyscope.analyses.fragility import segment_flip_draws
from proxyscope.model.segments import fitted_segments
from proxyscope.simulate import column_roles
from proxyscope.simulate.population import Mechanism
from proxyscope.simulate.scenario import PROXIES, cell_labels

ROLES: dict[str, Any] = column_roles()
RESULTS = Path(__file__).parent / "_results" / "flip_floor.csv"
SCORED = ("early_watch_min", "early_starts")


def hdi(draws: np.ndarray, prob: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """Shortest interval holding ``prob`` of the draws, per column of ``draws`` (n, m)."""
    x = np.sort(draws, axis=0)
    n = x.shape[0]
    inside = int(np.floor(prob * n))
    start = np.argmin(x[inside:] - x[: n - inside], axis=0)
    cols = np.arange(x.shape[1])
    return x[start, cols], x[start + inside, cols]


def _score(
    mean: np.ndarray, lo: np.ndarray, hi: np.ndarray, truth: np.ndarray
) -> tuple[float, float]:
    return float(np.abs(mean - truth).mean()), float(((lo <= truth) & (truth <= hi)).mean())


def fit_world(seed: int, draws: int) -> tuple[Any, Any]:
    """The seed's default world and its default fit (the fit ``bench_truth.py`` makes
    with ``--draws`` = ``--tune``)."""
    world = ps.simulate.streaming(n_users=250_000, n_experiments=50, seed=seed)
    effects = ps.summarize(world.users, engine="duckdb", **ROLES)
    fit = ps.ProxyModel().fit(
        effects, draws=draws, tune=draws, chains=4, random_seed=seed, progress=False
    )
    return world, fit


def one_seed(seed: int, draws: int, replicates: int, n_post: int) -> list[dict[str, Any]]:
    world, fit = fit_world(seed, draws)
    return floor_rows(world, fit, seed, replicates, n_post)


def floor_rows(
    world: Any, fit: Any, seed: int, replicates: int, n_post: int
) -> list[dict[str, Any]]:
    """The semi-oracle's and the model's scores on one world and its fit."""
    labels = [" / ".join(c) for c in cell_labels()]
    order = [list(fit.structure.labels).index(lab) for lab in labels]
    mom = fitted_segments(fit).segment_moments()
    z_tau = mom["mean_tau"][:, order] / np.sqrt(mom["var_tau"][:, order])
    var_theta = np.einsum("nskk->nsk", mom["cov_theta"])
    frag = ps.fragility(fit, warn=False).set_index(["segment", "proxy"])
    model_flips = segment_flip_draws(fit)[0][:, order]
    mean_true, sd_true = Mechanism.of(world.config).moments()
    rng = np.random.default_rng(seed)
    rows = []
    for proxy in SCORED:
        k = list(fit.posterior["proxy"].values).index(proxy)
        j = 1 + list(PROXIES).index(proxy)
        z_theta = mom["mean_theta"][:, order, k] / np.sqrt(var_theta[:, order, k])
        zt, zh = mean_true[:, 0] / sd_true[:, 0], mean_true[:, j] / sd_true[:, j]
        lockstep = np.abs(ndtr(zt) - ndtr(zh))
        pop = world.truth["pop_flip_prob"].sel(proxy=proxy).values.reshape(-1)
        # The semi-oracle's error spread: the fit's posterior covariance of (z_tau, z_theta).
        st, sh = z_tau.std(axis=0), z_theta.std(axis=0)
        r = np.array([np.corrcoef(z_tau[:, s], z_theta[:, s])[0, 1] for s in range(len(order))])
        scores = []
        for _ in range(replicates):
            e1, e2 = rng.standard_normal((2, len(order)))
            est_t, est_h = zt + st * e1, zh + sh * (r * e1 + np.sqrt(1 - r**2) * e2)
            f1, f2 = rng.standard_normal((2, n_post, len(order)))
            flips = np.abs(
                ndtr(est_t + st * f1) - ndtr(est_h + sh * (r * f1 + np.sqrt(1 - r**2) * f2))
            )
            lo, hi = np.quantile(flips, [0.05, 0.95], axis=0)
            h_lo, h_hi = hdi(flips)
            mae, cover = _score(flips.mean(axis=0), lo, hi, lockstep)
            pos = lockstep > 0
            cover_pos = _score(flips.mean(axis=0)[pos], lo[pos], hi[pos], lockstep[pos])[1]
            scores.append(
                (mae, cover, _score(flips.mean(axis=0), h_lo, h_hi, lockstep)[1], cover_pos)
            )
        model = frag.loc[[(lab, proxy) for lab in labels]]
        m_lo, m_hi = hdi(model_flips[:, :, k])
        m_mae, m_cov = _score(
            model["flip_prob"].to_numpy(),
            model["flip_lo"].to_numpy(),
            model["flip_hi"].to_numpy(),
            pop,
        )
        pos = pop > 0
        m_cov_pos = _score(
            model["flip_prob"].to_numpy()[pos],
            model["flip_lo"].to_numpy()[pos],
            model["flip_hi"].to_numpy()[pos],
            pop[pos],
        )[1]
        rows.append(
            {
                "seed": seed,
                "proxy": proxy,
                "lockstep_vs_pop_mae": float(np.abs(lockstep - pop).mean()),
                "oracle_mae": float(np.mean([s[0] for s in scores])),
                "oracle_cover90": float(np.mean([s[1] for s in scores])),
                "oracle_cover90_hdi": float(np.mean([s[2] for s in scores])),
                "oracle_cover90_positive": float(np.mean([s[3] for s in scores])),
                "model_mae": m_mae,
                "model_cover90": m_cov,
                "model_cover90_positive": m_cov_pos,
                "model_cover90_hdi": float(np.mean((m_lo <= pop) & (pop <= m_hi))),
                "median_sd_z_tau": float(np.median(st)),
                "median_sd_z_theta": float(np.median(sh)),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--replicates", type=int, default=200)
    parser.add_argument("--posterior-draws", type=int, default=2000)
    args = parser.parse_args()
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        t0 = time.perf_counter()
        got = one_seed(seed, args.draws, args.replicates, args.posterior_draws)
        rows += got
        line = " | ".join(
            f"{g['proxy']}: oracle MAE {g['oracle_mae']:.3f} cover {g['oracle_cover90']:.2f} "
            f"(HDI {g['oracle_cover90_hdi']:.2f}), model MAE {g['model_mae']:.3f} "
            f"cover {g['model_cover90']:.2f} (HDI {g['model_cover90_hdi']:.2f})"
            for g in got
        )
        print(f"seed {seed:3d} {line} | {time.perf_counter() - t0:.0f}s", flush=True)
    frame = pd.DataFrame(rows)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(RESULTS, lambda path: frame.to_csv(path, index=False))
    table = frame.groupby("proxy")[
        [
            "oracle_mae",
            "oracle_cover90",
            "oracle_cover90_hdi",
            "oracle_cover90_positive",
            "model_mae",
            "model_cover90",
            "model_cover90_hdi",
            "model_cover90_positive",
            "lockstep_vs_pop_mae",
            "median_sd_z_tau",
            "median_sd_z_theta",
        ]
    ].mean()
    print(f"\nmeans over {args.seeds} seeds (targets: MAE <= 0.10, coverage >= 0.80)")
    print(table.round(3).to_string())


if __name__ == "__main__":
    main()

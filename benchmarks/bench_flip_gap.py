"""Benchmark: why fragility's intervals miss on the seed world when SBC passes.

``bench_sbc.py`` shows the model's posteriors are calibrated on worlds drawn
from its own prior. The seed (streaming) world is not one: per segment cell,
every metric's effect is a smooth monotone function of ONE experiment
strength t (the long-term effect also scales with a bias b), so the
long-term and proxy effects move in lock-step across experiments. This
script fits the default model on seed worlds (the fit ``bench_truth.py``
makes: 4 chains x (500 + 500), the default follow-ups, ``random_seed`` =
seed) and takes the flip probability of early_watch_min and early_starts
apart, per cell and posterior draw, into its three ingredients: a flip is the
bivariate normal orthant probability P(sign tau != sign theta) =
f(z_tau, z_theta, rho), with z = mean / sd of the effect across new
experiments and rho = corr(tau, theta).

Per seed and proxy it reports, over the 24 cells (coverage of equal-tailed
90% intervals over the cells whose truth is above 0):

- the restated scores: MAE against the population truth and coverage; the
  semi-oracle's of ``bench_flip_floor.py`` on the same fit;
- the world's own ingredients, by quadrature over (t, b): z_tau, z_theta, rho
  (rho about 1: lock-step), and the Gaussian formula at them against the
  population truth (``gauss_vs_pop_mae``, what non-Gaussian effects cost);
- per ingredient: 90% coverage of its truth and the mean of
  (posterior mean - truth) / posterior sd (``*_bias_z``; a calibrated
  posterior gives about 0 and coverage 0.9);
- ablations: the flip probability recomputed per draw with one ingredient
  replaced by its truth (``rho_true``, ``z_tau_true``, ``z_theta_true``,
  ``z_true``: both z), scored as above. The ingredient whose replacement
  closes the gap is where the seed world breaks the model's assumptions;
- what keeps rho below 1: per draw Var(tau) = b'Wb + sigma_s^2 + omega0^2
  (``share_proxies``, ``share_sigma``, ``share_outcome_sd``: posterior medians
  of each share) and corr(tau, theta_k)^2 = share_proxies x
  ``single_proxy_r2`` ((Wb)_k^2 / (W_kk b'Wb), below 1 when the proxies are
  not perfectly correlated with each other); and the flips with sigma_s, or
  omega0, or both removed from Var(tau) (``no_sigma``, ``no_outcome_sd``,
  ``no_resid``), keeping the rest of each draw.

Fits are cached in ``.cache/bench-fits/`` (by seed) so a rerun is cheap; rows
go to ``benchmarks/_results/flip_gap.csv``. Run
``python benchmarks/bench_flip_gap.py --seeds 8``.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import proxyscope as ps
from proxyscope._io import write_atomic
from proxyscope.core.bvn import prob_opposite_signs
from proxyscope.model.segments import fitted_segments
from proxyscope.simulate._quadrature import hermite
from proxyscope.simulate.population import Mechanism
from proxyscope.simulate.scenario import cell_labels

sys.path.insert(0, str(Path(__file__).parent))
import bench_flip_floor as floor

RESULTS = Path(__file__).parent / "_results" / "flip_gap.csv"
CACHE = Path(__file__).resolve().parents[1] / ".cache" / "bench-fits"
SCORED = floor.SCORED


def world_and_fit(seed: int, draws: int) -> tuple[Any, Any]:
    """The seed world and its default fit, from the cache when it is there."""
    path = CACHE / f"seed-world-{seed}-{draws}.nc"
    if path.exists():
        world = ps.simulate.streaming(n_users=250_000, n_experiments=50, seed=seed)
        return world, ps.load(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        world, fit = floor.fit_world(seed, draws)
    CACHE.mkdir(parents=True, exist_ok=True)
    fit.save(path)
    return world, fit


def true_ingredients(world: Any) -> dict[str, np.ndarray]:
    """Per cell (24) and scored proxy: z_tau, z_theta, rho of a new experiment's
    population effects, by Gauss-Hermite quadrature over (t, b)."""
    mech = Mechanism.of(world.config)
    zt, wt = hermite(64)
    zb, wb = hermite(48)
    t, b = zt * mech.exp_tau_sd, zb * mech.exp_bias_sd
    w2 = np.outer(wt, wb)
    long = mech.long_effect(t[:, None], b[None, :])  # (nt, nb, 24)
    m_tau = np.einsum("tb,tbs->s", w2, long)
    d_tau = long - m_tau
    v_tau = np.einsum("tb,tbs->s", w2, d_tau**2)
    out: dict[str, np.ndarray] = {"z_tau": np.broadcast_to(m_tau / np.sqrt(v_tau), (2, 24))}
    z_theta, rho = [], []
    for proxy in SCORED:
        x = mech.watch_effect(t) if proxy == "early_watch_min" else mech.starts_effect(t)
        m_x = wt @ x
        v_x = wt @ (x - m_x) ** 2
        cov = np.einsum("tb,tbs,ts->s", w2, d_tau, x - m_x)
        z_theta.append(m_x / np.sqrt(v_x))
        rho.append(cov / np.sqrt(v_tau * v_x))
    out["z_theta"], out["rho"] = np.array(z_theta), np.array(rho)
    return out


def flip(z_tau: Any, z_theta: Any, rho: Any) -> np.ndarray:
    return np.asarray(prob_opposite_signs(z_tau, z_theta, 1.0, 1.0, rho))


def _scores(draws: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """MAE of the posterior mean and 90% coverage over the cells whose truth is above 0."""
    lo, hi = np.quantile(draws, [0.05, 0.95], axis=0)
    held = (lo <= truth) & (truth <= hi)
    pos = truth > 0
    return {
        "mae": float(np.abs(draws.mean(axis=0) - truth).mean()),
        "cover90": float(held.mean()),
        "cover90_positive": float(held[pos].mean()),
        "missed_above": float(((truth < lo) & pos).sum()),  # posterior too high
        "missed_below": float(((truth > hi) & pos).sum()),
    }


def one_seed(seed: int, draws: int) -> list[dict[str, Any]]:
    world, fit = world_and_fit(seed, draws)
    labels = [" / ".join(c) for c in cell_labels()]
    order = [list(fit.structure.labels).index(lab) for lab in labels]
    seg = fitted_segments(fit)
    mom = seg.segment_moments()
    sd_tau = np.sqrt(mom["var_tau"][:, order])
    # var_tau = b'Wb + sigma_s^2 + omega0^2: what the proxies carry, the residual,
    # and the experiments' long-term effect no proxy carries.
    bwb = mom["var_tau"][:, order] - seg.sigma2[:, order] - seg.omega_y[:, None]
    sig2, omy = seg.sigma2[:, order], np.broadcast_to(seg.omega_y[:, None], bwb.shape)
    z_tau_d = mom["mean_tau"][:, order] / sd_tau
    var_theta = np.einsum("nskk->nsk", mom["cov_theta"])[:, order]
    truth = true_ingredients(world)
    floor_rows = {r["proxy"]: r for r in floor.floor_rows(world, fit, seed, 200, 2000)}
    diag = fit.diagnostics()
    rows = []
    for p, proxy in enumerate(SCORED):
        k = list(fit.proxies).index(proxy)
        z_th_d = mom["mean_theta"][:, order, k] / np.sqrt(var_theta[:, :, k])
        rho_d = mom["cov_tau_theta"][:, order, k] / (sd_tau * np.sqrt(var_theta[:, :, k]))
        pop = world.truth["pop_flip_prob"].sel(proxy=proxy).values.reshape(-1)
        zt, zh, r = truth["z_tau"][p], truth["z_theta"][p], truth["rho"][p]
        row: dict[str, Any] = {
            "seed": seed,
            "proxy": proxy,
            "passed": bool(diag.passed),
            "zero_truth_cells": int((pop <= 0).sum()),
            "true_rho_min": float(r.min()),
            "gauss_vs_pop_mae": float(np.abs(flip(zt, zh, r) - pop).mean()),
            "oracle_mae": floor_rows[proxy]["oracle_mae"],
            "oracle_cover90_positive": floor_rows[proxy]["oracle_cover90_positive"],
        }
        c_k = mom["cov_tau_theta"][:, order, k]
        sd_k = np.sqrt(var_theta[:, :, k])

        def rho_without(*parts: np.ndarray, c: Any = c_k, sd: Any = sd_k) -> np.ndarray:
            return np.asarray(c / (sd * np.sqrt(mom["var_tau"][:, order] - sum(parts))))

        row["share_proxies"] = float(np.median(bwb / mom["var_tau"][:, order]))
        row["share_sigma"] = float(np.median(sig2 / mom["var_tau"][:, order]))
        row["share_outcome_sd"] = float(np.median(omy / mom["var_tau"][:, order]))
        row["single_proxy_r2"] = float(np.median(c_k**2 / (sd_k**2 * bwb)))
        variants = {
            "model": flip(z_tau_d, z_th_d, rho_d),
            "rho_true": flip(z_tau_d, z_th_d, r),
            "no_sigma": flip(z_tau_d, z_th_d, rho_without(sig2)),
            "no_outcome_sd": flip(z_tau_d, z_th_d, rho_without(omy)),
            "no_resid": flip(z_tau_d, z_th_d, rho_without(sig2, omy)),
            "z_tau_true": flip(zt, z_th_d, rho_d),
            "z_theta_true": flip(z_tau_d, zh, rho_d),
            "z_true": flip(zt, zh, rho_d),
        }
        for name, draws_ in variants.items():
            row.update({f"{name}_{key}": v for key, v in _scores(draws_, pop).items()})
        for name, d, t_ in (("z_tau", z_tau_d, zt), ("z_theta", z_th_d, zh), ("rho", rho_d, r)):
            lo, hi = np.quantile(d, [0.05, 0.95], axis=0)
            row[f"{name}_cover90"] = float(((lo <= t_) & (t_ <= hi)).mean())
            row[f"{name}_bias_z"] = float(np.mean((d.mean(axis=0) - t_) / d.std(axis=0)))
        row["rho_post_median"] = float(np.median(rho_d))
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--draws", type=int, default=500)
    args = parser.parse_args()
    done = pd.read_csv(RESULTS) if RESULTS.exists() else pd.DataFrame()
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        if len(done) and (done.seed == seed).any():
            continue
        t0 = time.perf_counter()
        rows = one_seed(seed, args.draws)
        done = pd.concat([done, pd.DataFrame(rows)], ignore_index=True)
        write_atomic(RESULTS, lambda path, frame=done: frame.to_csv(path, index=False))
        for r in rows:
            print(
                f"seed {seed:3d} {r['proxy']:16} model MAE {r['model_mae']:.3f} "
                f"cover+ {r['model_cover90_positive']:.2f} | oracle MAE {r['oracle_mae']:.3f} "
                f"cover+ {r['oracle_cover90_positive']:.2f} | rho_true cover+ "
                f"{r['rho_true_cover90_positive']:.2f} no_resid cover+ "
                f"{r['no_resid_cover90_positive']:.2f} | {time.perf_counter() - t0:.0f}s",
                flush=True,
            )
    cols = [c for c in done.columns if c not in ("seed", "proxy", "passed")]
    print(f"\nmeans over {done.seed.nunique()} seeds")
    print(done.groupby("proxy")[cols].mean().T.round(3).to_string())


if __name__ == "__main__":
    main()

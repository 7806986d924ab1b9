"""Simulation-based calibration of the proxy model: worlds, fits, ranks, uniformity.

The machinery of ``benchmarks/bench_sbc.py`` (whose docstring explains the
design) and ``tests/test_sbc.py``: prior draws of the model's parameters,
simulated worlds, the ranked quantities, ranks of the truth among thinned
posterior draws, and tests of their uniformity.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
import warnings
from collections.abc import Iterator
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
from scipy import stats

import proxyscope as ps
from proxyscope.analyses.composite import weight_draws
from proxyscope.analyses.fragility import segment_flip_draws
from proxyscope.analyses.implied import proxy_flips
from proxyscope.analyses.surrogacy import r2_single
from proxyscope.data.cells import CellEffects
from proxyscope.model import sampling
from proxyscope.model.builder import build_model
from proxyscope.model.fitdata import SIGNAL_FLOOR, metric_scales, model_effects
from proxyscope.model.posterior import std_parameters
from proxyscope.model.priors import Priors
from proxyscope.model.segments import SegmentDraws, fitted_segments, historical_mix
from proxyscope.model.setup import model_info, prepare
from proxyscope.simulate.model_draws import ModelParameters, SimulatedCells, simulate_cells

RANKS = 99  # L: posterior draws per rank, ranks 0..L
BINS = 20
SHRINK = 0.7  # the deliberately wrong posterior: every posterior shrunk about its mean
MODES = ("conditioned", "free", "lockstep")


@dataclasses.dataclass(frozen=True)
class Config:
    """The SBC world and fit settings."""

    levels: tuple[str, ...] = ("a", "b", "c")
    n_proxies: int = 2
    n_experiments: int = 16
    noise_sd: float = 0.5
    noise_corr: float = 0.3
    units: tuple[float, ...] = (0.02, 5.0, 0.3)
    users_per_arm: int = 500
    tolerance: float = 0.05
    chunk: int = 20_000
    chains: int = 2
    tune: int = 500
    draws: int = 1000
    seed: int = 2018


def _template(config: Config) -> CellEffects:
    k, n_lev = config.n_proxies, len(config.levels)
    eye = np.eye(k)[None]
    params = ModelParameters(
        config.levels,
        np.zeros((1, n_lev)),
        np.zeros((1, n_lev, k)),
        np.zeros((1, n_lev, k)),
        np.ones((1, n_lev)),
        eye,
        eye,
        np.ones(1),
    )
    sim = simulate_cells(params, n_experiments=config.n_experiments, noise_sd=config.noise_sd)
    return sim.cells(0)[0]


@functools.lru_cache(maxsize=4)
def _prior_model(config: Config) -> tuple[Any, Any, list[str]]:
    template = _template(config)
    built = build_model(template, "additive", Priors())
    info = model_info(prepare(template, "additive", Priors(), "shared", "moderated"), template)
    return built, info, sampling.draw_names(built.model)


def prior_draws(config: Config, n: int, seed: int) -> ModelParameters:
    """``n`` draws of the model's parameters from its prior (standardized units)."""
    built, info, names = _prior_model(config)
    with built.model, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prior = pm.sample_prior_predictive(draws=n, var_names=names, random_seed=seed).prior
    p = std_parameters(prior, info)
    labels = built.structure.labels
    order = [labels.index(lv) for lv in config.levels]
    pe = p.chol_e[:, 1:, 1:]
    return ModelParameters(
        config.levels,
        p.loc[:, 0, order],
        np.swapaxes(p.loc[:, 1:, order], 1, 2),
        np.swapaxes(p.slope[:, :, order], 1, 2),
        np.sqrt(p.sig2[:, order]),
        pe @ np.swapaxes(pe, 1, 2),
        p.chol_c @ np.swapaxes(p.chol_c, 1, 2),
        p.chol_e[:, 0, 0],
    )


def screen_scales(sim: SimulatedCells) -> np.ndarray:
    """(N, M) the model's unit of each world's metrics (``metric_scales``, vectorised;
    with the same noise in every cell the moderated noise is the given one)."""
    observed = sim.effect.var(axis=1, ddof=1)
    signal = np.maximum(observed - np.diag(sim.noise), SIGNAL_FLOOR**2 * observed)
    return np.asarray(np.sqrt(signal))


def lockstep(params: ModelParameters) -> ModelParameters:
    """The same draws moved to the boundary the seed world sits on: no residual
    (sigma_s = 0), no experiment effect on the outcome that no proxy carries,
    no within-cell deviation (Omega_C = 0), and proxies that move together
    across experiments (Omega_E of rank 1, the drawn sds and the drawn
    correlation's sign), so that tau and each theta_k are perfectly correlated."""
    sd = np.sqrt(np.einsum("nkk->nk", params.omega_e))
    sign = np.sign(params.omega_e)
    sign[sign == 0] = 1.0
    return dataclasses.replace(
        params,
        sigma=np.zeros_like(params.sigma),
        sd_e_outcome=np.zeros_like(params.sd_e_outcome),
        omega_c=np.zeros_like(params.omega_c),
        omega_e=sign * sd[:, :, None] * sd[:, None, :],
    )


def worlds(config: Config, mode: str) -> Iterator[tuple[int, SimulatedCells, int, np.ndarray]]:
    """The replications' worlds in order: (prior index, chunk, index in it, unit)."""
    for j in range(10**6):
        params = prior_draws(config, config.chunk, seed=config.seed * 1000 + j)
        if mode == "lockstep":
            params = lockstep(params)
        sim = simulate_cells(
            params,
            n_experiments=config.n_experiments,
            noise_sd=config.noise_sd,
            noise_corr=config.noise_corr,
            seed=config.seed * 1000 + j,
        )
        scales = screen_scales(sim)
        keep = np.ones(len(scales), dtype=bool)
        if mode != "free":
            keep = np.all(np.abs(scales - 1.0) <= config.tolerance, axis=1)
        for i in np.flatnonzero(keep):
            yield j * config.chunk + int(i), sim, int(i), scales[i]


def r2_all(moments: dict[str, np.ndarray]) -> np.ndarray:
    """R^2 of all proxies jointly, c' V^+ c / var(tau): ``surrogacy.r2_all`` with a
    pseudo-inverse, so that a true Var(theta) of rank 1 (``lockstep``) has one."""
    c, v = moments["cov_tau_theta"], moments["cov_theta"]
    sol = np.einsum("...kl,...l->...k", np.linalg.pinv(v, hermitian=True), c)
    return np.asarray(np.einsum("...k,...k->...", c, sol) / moments["var_tau"])


def quantities(
    seg: SegmentDraws, shares: np.ndarray, globals_: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Every ranked quantity, per draw, from segment draws (N draws, S segments)."""
    out: dict[str, np.ndarray] = {}
    k = seg.mu.shape[-1]
    for s, lab in enumerate(seg.labels):
        out[f"nu_{lab}"] = seg.nu[:, s]
        out[f"sigma_{lab}"] = np.sqrt(seg.sigma2[:, s])
        for j in range(k):
            out[f"mu_{lab}_{j + 1}"] = seg.mu[:, s, j]
            out[f"beta_{lab}_{j + 1}"] = seg.beta[:, s, j]
    out.update(globals_)
    sd_e = np.sqrt(np.einsum("nkk->nk", seg.omega_e))
    for j in range(k):
        out[f"sd_e_{j + 1}"] = sd_e[:, j]
        out[f"sd_c_{j + 1}"] = np.sqrt(seg.omega_c[:, j, j])
    if k > 1:
        out["corr_e"] = seg.omega_e[:, 0, 1] / (sd_e[:, 0] * sd_e[:, 1])
    out["sd_e_outcome"] = np.sqrt(seg.omega_y)
    sm, mix = seg.segment_moments(), seg.mix_moments(shares)
    flips, flips_mix = proxy_flips(sm), proxy_flips(mix)
    r2_seg, r2_mix, r2_one = r2_all(sm), r2_all(mix), r2_single(mix)
    bbar = np.einsum("s,nsk->nk", shares, seg.beta)
    w_mix, w_seg = weight_draws(bbar, seg.omega), weight_draws(seg.beta, seg.omega)
    for j in range(k):
        out[f"flip_mix_{j + 1}"] = flips_mix[:, j]
        out[f"r2_mix_{j + 1}"] = r2_one[:, j]
    out["r2_mix"] = r2_mix
    out["weight_mix_1"] = w_mix[:, 0]
    for s, lab in enumerate(seg.labels):
        for j in range(k):
            out[f"flip_{lab}_{j + 1}"] = flips[:, s, j]
        out[f"r2_{lab}"] = r2_seg[:, s]
        out["weight_" + lab + "_1"] = w_seg[:, s, 0]
    return out


def group_of(name: str) -> str:
    head = name.split("_")[0]
    if head in ("nu", "mu"):
        return "locations"
    if head in ("beta", "sigma"):
        return "slopes and residual sd"
    if head in ("sd", "corr"):
        return "experiment and cell sds"
    return "derived"


def true_quantities(truth: ModelParameters, shares: np.ndarray) -> dict[str, float]:
    """The ranked quantities at the true parameters (one draw, original units)."""
    seg = SegmentDraws(
        labels=truth.levels,
        nu=truth.nu,
        mu=truth.mu,
        beta=truth.beta,
        sigma2=truth.sigma**2,
        omega_e=truth.omega_e,
        omega_c=truth.omega_c,
        omega_y=truth.sd_e_outcome**2,
        extrapolated=np.zeros(len(truth.levels), dtype=bool),
    )
    # Sum-to-zero main effects: a global value is the mean over the levels
    # (of log sigma for sigma).
    with np.errstate(divide="ignore"):  # sigma_s = 0 (lockstep): log 0 = -inf, exp -> 0
        log_sigma = np.log(truth.sigma).mean(axis=1)
    globals_ = {"nu_global": truth.nu.mean(axis=1), "sigma_global": np.exp(log_sigma)}
    for j in range(truth.n_proxies):
        globals_[f"mu_global_{j + 1}"] = truth.mu[:, :, j].mean(axis=1)
        globals_[f"beta_global_{j + 1}"] = truth.beta[:, :, j].mean(axis=1)
    return {key: float(v[0]) for key, v in quantities(seg, shares, globals_).items()}


def posterior_quantities(
    fit: Any, levels: tuple[str, ...]
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The ranked quantities per posterior draw (chains, draws), and the mix shares."""
    seg = fitted_segments(fit)
    order = [list(seg.labels).index(lv) for lv in levels]
    seg = dataclasses.replace(
        seg,
        labels=levels,
        nu=seg.nu[:, order],
        mu=seg.mu[:, order],
        beta=seg.beta[:, order],
        sigma2=seg.sigma2[:, order],
        extrapolated=seg.extrapolated[order],
    )
    shares = historical_mix(fit).reindex(list(levels)).to_numpy()
    post = fit.posterior

    def flat(name: str) -> np.ndarray:
        arr = post[name].transpose("chain", "draw", ...).values
        return np.asarray(arr.reshape(-1, *arr.shape[2:]), dtype=float)

    globals_ = {"nu_global": flat("nu_global"), "sigma_global": np.exp(flat("log_sigma_global"))}
    for j in range(seg.mu.shape[-1]):
        globals_[f"mu_global_{j + 1}"] = flat("mu_global")[:, j]
        globals_[f"beta_global_{j + 1}"] = flat("beta_global")[:, j]
    chains = post.sizes["chain"]
    # A check that the model's own flip code agrees with the joint Gaussian used here.
    flips = segment_flip_draws(fit)[0][:, order]
    got = quantities(seg, shares, globals_)
    assert np.allclose(flips[:, 0, 0], got[f"flip_{levels[0]}_1"])
    return {key: v.reshape(chains, -1) for key, v in got.items()}, shares


def rank_of(draws: np.ndarray, truth: float, rng: np.random.Generator) -> tuple[int, int, bool]:
    """Rank of ``truth`` among L draws thinned by the ESS; with the 0.7x-shrunk rank."""
    total = draws.size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ess = min(float(az.ess(draws)), float(az.ess(draws, method="tail")))
    thin = max(1, math.ceil(total / ess)) if np.isfinite(ess) and ess > 0 else total
    kept = draws[:, ::thin].reshape(-1)
    short = kept.size < RANKS
    pool = draws.reshape(-1) if short else kept
    pick = pool[np.linspace(0, pool.size - 1, RANKS).round().astype(int)]
    centre = float(draws.mean())
    shrunk = centre + SHRINK * (pick - centre)

    def rank(x: np.ndarray) -> int:
        below, ties = int(np.sum(x < truth)), int(np.sum(x == truth))
        return below + int(rng.integers(0, ties + 1))

    return rank(pick), rank(shrunk), short


def one_replication(
    config: Config, rep: int, world: tuple[int, SimulatedCells, int, np.ndarray]
) -> dict[str, Any]:
    """Fit one world and rank every quantity's truth among the posterior draws."""
    index, sim, i, screened = world
    t0 = time.perf_counter()
    cells, truth = sim.cells(i, units=config.units, users_per_arm=config.users_per_arm)
    scales = metric_scales(model_effects(cells, "moderated")) / np.asarray(config.units)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = ps.ProxyModel(followups=0).fit(
            cells,
            draws=config.draws,
            tune=config.tune,
            chains=config.chains,
            random_seed=config.seed + rep,
            progress=False,
        )
    fit_seconds = time.perf_counter() - t0
    diag = fit.diagnostics()
    post, shares = posterior_quantities(fit, config.levels)
    true = true_quantities(truth, shares)
    rng = np.random.default_rng([config.seed, rep])
    row: dict[str, Any] = {
        "rep": rep,
        "prior_index": index,
        **{f"scale_{j}": float(s) for j, s in enumerate(scales)},
        "screen_gap": float(np.abs(scales - screened).max()),
        "passed": bool(diag.passed),
        "max_rhat": float(diag.table["r_hat"].max()),
        "min_ess_bulk": float(diag.table["ess_bulk"].min()),
        "divergences": int(diag.divergences),
        "fit_seconds": round(fit_seconds, 2),
    }
    shorts = 0
    for name, draws in post.items():
        r, r07, short = rank_of(draws, true[name], rng)
        row[f"rank__{name}"], row[f"shrunk__{name}"] = r, r07
        shorts += int(short)
    row["n_short"] = shorts
    row["seconds"] = round(time.perf_counter() - t0, 2)
    return row


def run(
    config: Config, mode: str, replications: int, done: pd.DataFrame | None = None
) -> Iterator[dict[str, Any]]:
    """Rows of the replications not in ``done`` (by ``rep``), in order."""
    seen = set() if done is None or not len(done) else set(done["rep"].astype(int))
    for rep, world in zip(range(replications), worlds(config, mode), strict=False):
        if rep not in seen:
            yield one_replication(config, rep, world)


def outer_share(ranks: np.ndarray) -> np.ndarray:
    """Per rank: in the outer 10% of 0..L (the lowest 5 or highest 5 of 100 values)."""
    tail = (RANKS + 1) // 20
    return (ranks < tail) | (ranks > RANKS - tail)


def uniformity(ranks: np.ndarray, seed: int = 0) -> dict[str, float]:
    """Chi-square (20 bins of 5 ranks) and KS (jittered ranks) tests of uniformity on 0..L."""
    r = np.asarray(ranks, dtype=int)
    counts = np.bincount(r // ((RANKS + 1) // BINS), minlength=BINS)
    chi2, chi2_p = stats.chisquare(counts)
    u = (r + np.random.default_rng(seed).random(r.size)) / (RANKS + 1)
    ks = stats.kstest(u, "uniform")
    return {
        "replications": int(r.size),
        "chi2": float(chi2),
        "chi2_df": BINS - 1,
        "chi2_p": float(chi2_p),
        "ks": float(ks.statistic),
        "ks_p": float(ks.pvalue),
        "mean_rank_u": float(np.mean((r + 0.5) / (RANKS + 1))),
        "outer10_share": float(outer_share(r).mean()),
    }


def uniformity_table(frame: pd.DataFrame, prefix: str = "rank__") -> pd.DataFrame:
    """One row per quantity: its group and the uniformity tests of its ranks."""
    rows = []
    for col in [c for c in frame.columns if c.startswith(prefix)]:
        name = col.removeprefix(prefix)
        rows.append(
            {"quantity": name, "group": group_of(name), **uniformity(frame[col].to_numpy())}
        )
    return pd.DataFrame(rows)


def pooled_outer(frame: pd.DataFrame, prefix: str = "rank__") -> dict[str, float]:
    """Share of ranks in the outer 10% over all quantities, per replication: mean,
    standard error across replications, and z against 0.1."""
    cols = [c for c in frame.columns if c.startswith(prefix)]
    per_rep = outer_share(frame[cols].to_numpy()).mean(axis=1)
    se = float(per_rep.std(ddof=1) / np.sqrt(len(per_rep))) if len(per_rep) > 1 else float("nan")
    mean = float(per_rep.mean())
    return {"share": mean, "se": se, "z": (mean - 0.1) / se if se > 0 else float("nan")}


def verdict(frame: pd.DataFrame, prefix: str = "rank__", alpha: float = 0.01) -> list[str]:
    """Why the ranks are not uniform (empty if they pass): any quantity whose
    chi-square or KS p-value is below ``alpha`` / (number of quantities)
    (Bonferroni), or a pooled outer-10% share more than 3.5 standard errors
    from 0.1."""
    table = uniformity_table(frame, prefix)
    level = alpha / max(1, len(table))
    bad = table[(table.chi2_p < level) | (table.ks_p < level)]
    out = [
        f"{r.quantity}: chi2 p = {r.chi2_p:.2g}, KS p = {r.ks_p:.2g} (level {level:.2g})"
        for r in bad.itertuples()
    ]
    pooled = pooled_outer(frame, prefix)
    if not abs(pooled["z"]) <= 3.5:
        out.append(
            f"pooled outer-10% share {pooled['share']:.3f} (se {pooled['se']:.3f}, z "
            f"{pooled['z']:.1f}): ranks pile up at the edges (too narrow) or the middle (too wide)"
        )
    return out

"""Surrogacy strength: trial-level R^2 and the surrogate threshold effect (STE).

Trial-level R^2 (the clinical meta-analysis measure of surrogacy): the share
of the variance of a new experiment's true long-term effect, across
experiments, that its true proxy effects explain. Per draw, for a joint
Gaussian (tau, theta): R^2 = c' V^-1 c / var(tau) with c = Cov(tau, theta),
V = Var(theta); for one proxy it is corr(tau, theta_k)^2.

STE: the smallest proxy effect x for which the posterior predictive
probability that the long-term effect is positive, given the proxy effect is
x, reaches ``probability`` (default 0.95):
P(tau > 0 | theta_k = x) = mean over draws of Phi(E[tau | x] / sd[tau | x]).
Below it, a positive proxy reading is not enough evidence of a long-term win.

A fit with time is read in one period (the latest by default, or ``period=``;
DESIGN.md §9), which the result names in ``attrs["period"]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.special import ndtr

from proxyscope.analyses.arguments import check_fit, check_unit
from proxyscope.analyses.composite import mix_composite, project
from proxyscope.core.draws import check_ci, interval
from proxyscope.model.periods import resolve_period
from proxyscope.model.segments import fitted_segments, historical_mix
from proxyscope.options import DEFAULT_CI

if TYPE_CHECKING:
    from proxyscope.model.fit import ProxyFit

#: Posterior draws used to evaluate the posterior predictive for the STE.
STE_DRAWS = 600


def r2_all(moments: dict[str, np.ndarray]) -> np.ndarray:
    """R^2 of all proxies jointly, per draw (and segment)."""
    c = moments["cov_tau_theta"]
    v = moments["cov_theta"]
    sol = np.linalg.solve(v, c[..., None])[..., 0]
    return np.asarray(np.einsum("...k,...k->...", c, sol) / moments["var_tau"])


def r2_single(moments: dict[str, np.ndarray]) -> np.ndarray:
    """corr(tau, theta_k)^2 per draw (and segment) and proxy."""
    var_theta = np.einsum("...kk->...k", moments["cov_theta"])
    return np.asarray(moments["cov_tau_theta"] ** 2 / (var_theta * moments["var_tau"][..., None]))


def threshold_effect(
    mean_tau: np.ndarray,
    var_tau: np.ndarray,
    mean_x: np.ndarray,
    var_x: np.ndarray,
    cov: np.ndarray,
    probability: float,
) -> float:
    """Smallest x with mean_n P_n(tau > 0 | X = x) >= probability (NaN if never).

    Inputs are per-draw moments (N,) of tau and of the proxy (or index) X.
    """
    slope = cov / var_x
    cond_sd = np.sqrt(np.maximum(var_tau - cov * slope, 1e-300))
    centre = float(np.mean(mean_x))
    spread = float(np.sqrt(np.mean(var_x)))
    if not np.isfinite(spread) or spread <= 0:
        return float("nan")

    def prob(x: np.ndarray) -> np.ndarray:
        z = (mean_tau[:, None] + slope[:, None] * (x[None, :] - mean_x[:, None])) / cond_sd[:, None]
        return np.asarray(ndtr(z).mean(axis=0))

    grid = centre + spread * np.linspace(-12.0, 12.0, 481)
    p = prob(grid)
    hits = np.flatnonzero(p >= probability)
    if hits.size == 0 or hits[0] == 0:
        # Never reached, or reached already at the far left: the long-term
        # effect does not rise with this proxy in a way a threshold captures.
        return float("nan")
    lo, hi = grid[hits[0] - 1], grid[hits[0]]
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        if prob(np.array([mid]))[0] >= probability:
            hi = mid
        else:
            lo = mid
    return float(hi)


def _subsample(n: int, limit: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, limit)).astype(int))


def surrogacy(
    fit: ProxyFit,
    ci: float = DEFAULT_CI,
    probability: float = 0.95,
    period: str | None = None,
) -> pd.DataFrame:
    """Trial-level R^2 and STE, overall, per proxy, per segment and for the composite.

    Parameters
    ----------
    fit : ProxyFit
    ci : float
        Width of the equal-tailed intervals.
    probability : float
        Level of the surrogate threshold effect.
    period : str, optional
        For a fit with time: the period whose relation to read (one of
        ``fit.info.periods``; default the latest). A static fit takes none.

    Returns
    -------
    DataFrame
        Rows: ``overall`` (all proxies jointly, historical mix), ``composite``
        (the fixed composite proxy), each proxy at the historical mix, each
        segment (all proxies), and each segment x proxy. Columns: ``scope``,
        ``segment`` ("overall" or a segment label), ``proxy`` ("all",
        "composite" or a proxy name), ``r2`` (posterior median), ``r2_lo``,
        ``r2_hi``, ``ste`` (surrogate threshold effect in the proxy's units —
        for the composite, the surrogate index, in long-term units — NaN where
        it is not reached or not defined). The first row is ``overall``.
        ``attrs``: ``ci``, ``probability``, ``trustworthy`` and ``period`` (the
        period described; None for a static fit).

    Raises
    ------
    ParameterError
        ``period`` for a static fit, or a period the fit does not have.
    """
    fit = check_fit(fit, "surrogacy")
    ci = check_ci(ci, "surrogacy")
    probability = check_unit(probability, "probability", "surrogacy")
    period = resolve_period(fit, period, "surrogacy")
    fit.warn_if_untrustworthy("surrogacy")
    seg = fitted_segments(fit, period)
    shares = historical_mix(fit).to_numpy()
    mix = seg.mix_moments(shares)
    comp = mix_composite(seg, shares)
    picks = _subsample(seg.n_draws, STE_DRAWS)
    rows: list[dict[str, object]] = []

    def add(scope: str, segment: str, proxy: str, draws: np.ndarray, ste: float) -> None:
        lo, hi = interval(draws, ci)
        rows.append(
            {
                "scope": scope,
                "segment": segment,
                "proxy": proxy,
                "r2": float(np.median(draws)),
                "r2_lo": float(lo),
                "r2_hi": float(hi),
                "ste": ste,
            }
        )

    add("overall", "overall", "all", r2_all(mix), float("nan"))
    m_i, v_i, c_i = project(mix, comp)
    add(
        "composite",
        "overall",
        "composite",
        c_i**2 / (v_i * mix["var_tau"]),
        threshold_effect(
            mix["mean_tau"][picks],
            mix["var_tau"][picks],
            m_i[picks],
            v_i[picks],
            c_i[picks],
            probability,
        ),
    )
    single = r2_single(mix)
    var_theta = np.einsum("nkk->nk", mix["cov_theta"])
    for k, proxy in enumerate(fit.proxies):
        ste = threshold_effect(
            mix["mean_tau"][picks],
            mix["var_tau"][picks],
            mix["mean_theta"][picks, k],
            var_theta[picks, k],
            mix["cov_tau_theta"][picks, k],
            probability,
        )
        add(proxy, "overall", proxy, single[:, k], ste)
    sm = seg.segment_moments()
    seg_all = r2_all(sm)
    seg_single = r2_single(sm)
    seg_var = np.einsum("nskk->nsk", sm["cov_theta"])
    for s, label in enumerate(fit.structure.labels):
        add(label, label, "all", seg_all[:, s], float("nan"))
        for k, proxy in enumerate(fit.proxies):
            ste = threshold_effect(
                sm["mean_tau"][picks, s],
                sm["var_tau"][picks, s],
                sm["mean_theta"][picks, s, k],
                seg_var[picks, s, k],
                sm["cov_tau_theta"][picks, s, k],
                probability,
            )
            add(f"{label}: {proxy}", label, proxy, seg_single[:, s, k], ste)
    out = pd.DataFrame(rows)
    out.attrs.update(ci=ci, probability=probability, trustworthy=fit.trustworthy, period=period)
    return out

"""Moderated sampling covariances: small cells borrow their noise level from their segment.

A cell's ``noise_cov`` is the Neyman estimate ``Sigma_T / n_T + Sigma_C / n_C``
from the users in the cell. In a cell with a few dozen users the user-level
(co)variances are themselves noisy, and a likelihood that treats them as
known is biased: cells whose variance happens to be underestimated get too
much weight and their residuals look like extra between-cell variance. On
the simulated world the standardized errors of the long-term effect against
the exact truth had variance 1.07-1.13 instead of 1 (1.2-1.4 in cells under
100 users), which the model read as "what the proxies miss" (sigma_s) and
turned into inflated flip probabilities.

The remedy is the empirical-Bayes moderation of Smyth (2004, "Linear models
and empirical Bayes methods for assessing differential expression in
microarray experiments", Statistical Applications in Genetics and Molecular
Biology 3(1), article 3), applied to whole covariance matrices. Per cell the
user-level covariance is ``U_c = noise_cov_c / (1/n_T + 1/n_C)`` with
``nu_c = n_T + n_C - 2`` degrees of freedom; the prior is the df-weighted
mean ``U_s`` of the cells of the same segment (across experiments), with
``d0`` prior degrees of freedom estimated from the data. The moderated
covariance is

    U~_c = (d0 U_s + nu_c U_c) / (d0 + nu_c),   noise_cov~_c = U~_c (1/n_T + 1/n_C).

``d0`` comes from Smyth's moment equation for log variances: for each
metric, ``var(log s2_c / U_s) - mean(trigamma(nu_c / 2)) = trigamma(d0 / 2)``
(after removing the bias ``digamma(nu/2) - log(nu/2)`` of each log variance).
When the spread of the log variances is no larger than sampling alone
explains, ``d0`` is infinite and each cell takes its segment's covariance.
One ``d0`` serves all metrics, the smallest of the per-metric estimates
(least pooling), so each moderated matrix stays a positive-definite
combination of two covariance matrices.

Large cells are left almost unchanged (``nu_c >> d0``); segments with a
single cell are left exactly unchanged.

Only cells of user-randomized A/B tests (design ``ab``) are moderated: the
method rests on each covariance being a user-level one divided by the arms'
sizes, with n_T + n_C - 2 degrees of freedom. A clustered covariance (its
degrees of freedom come from the clusters), an estimate made elsewhere or by
a quasi-experimental design is kept exactly as given and takes no part in
the segments' priors.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import xarray as xr
from scipy import optimize, special

from proxyscope import dims
from proxyscope.data import designs
from proxyscope.data.cells import CellEffects
from proxyscope.errors import DataError

#: How ``noise_cov`` enters the model: moderated (default) or exactly as given.


@dataclasses.dataclass(frozen=True)
class Moderation:
    """The moderated effects and what was estimated.

    ``prior_df`` is d0 (``inf``: full pooling within segment); ``metric_df``
    the per-metric estimates it is the minimum of.
    """

    effects: CellEffects
    prior_df: float
    metric_df: dict[str, float]


def _solve_trigamma(target: float) -> float:
    """x with trigamma(x) = target (target > 0)."""
    # trigamma is decreasing from +inf to 0 on (0, inf).
    hi = 1.0
    while special.polygamma(1, hi) > target:
        hi *= 2.0
        if hi > 1e12:
            return float("inf")
    lo = hi / 2.0 if hi > 1.0 else 1e-8
    return float(optimize.brentq(lambda x: special.polygamma(1, x) - target, lo, hi))


def prior_df(log_ratio: np.ndarray, df: np.ndarray) -> float:
    """Smyth's moment estimate of the prior degrees of freedom d0 (may be ``inf``).

    ``log_ratio`` is ``log(s2_c / s2_prior_c)`` and ``df`` the cells' degrees
    of freedom; both 1-D of the same length.
    """
    if log_ratio.size < 3:
        return float("inf")
    half = df / 2.0
    centred = log_ratio - (special.digamma(half) - np.log(half))
    excess = float(np.var(centred, ddof=1) - np.mean(special.polygamma(1, half)))
    if not np.isfinite(excess) or excess <= 0:
        return float("inf")
    return 2.0 * _solve_trigamma(excess)


def moderate_noise(effects: CellEffects) -> Moderation:
    """``effects`` with every cell's ``noise_cov`` moderated toward its segment's.

    Returns a new :class:`CellEffects` (the input is not changed) and the
    estimated prior degrees of freedom. See the module docstring for the
    method.

    Raises
    ------
    DataError
        When an A/B cell's arm counts give fewer than one degree of freedom.
    """
    ab = effects.design == designs.AB
    if not ab.any():
        return Moderation(effects=effects, prior_df=float("nan"), metric_df={})
    if not ab.all():
        part = _moderate(effects.subset_cells(np.flatnonzero(ab)))
        cov = effects.noise_cov.copy()
        cov[ab] = part.effects.noise_cov
        data = effects.data.copy()
        data[dims.NOISE_COV] = xr.DataArray(cov, dims=data[dims.NOISE_COV].dims)
        return Moderation(CellEffects(data), part.prior_df, part.metric_df)
    return _moderate(effects)


def _moderate(effects: CellEffects) -> Moderation:
    n_t = effects.data[dims.N_TREAT].to_numpy().astype(float)
    n_c = effects.data[dims.N_CONTROL].to_numpy().astype(float)
    df = n_t + n_c - 2.0
    if np.any(n_t < 1) or np.any(n_c < 1) or np.any(df < 1):
        bad = int(np.flatnonzero((n_t < 1) | (n_c < 1) | (df < 1))[0])
        raise DataError(
            f"Cell {bad} has {int(n_t[bad])} treated and {int(n_c[bad])} control users; "
            "moderating its noise needs at least one user per arm and three in all. "
            "Drop such cells (summarize's min_users_per_arm) or fit with noise='as_given'."
        )
    factor = 1.0 / n_t + 1.0 / n_c
    # Only each cell's own part is a user-level sampling covariance; a part its
    # experiment's cells share (shared_cov) is kept as it is.
    shared = effects.variable(designs.SHARED_COV) if designs.SHARED_COV in effects.data else 0.0
    cov = effects.noise_cov - shared
    user = cov / factor[:, None, None]
    _, segment = np.unique(np.asarray(effects.segment_label, dtype=str), return_inverse=True)
    segment = segment.reshape(-1)
    n_seg = int(segment.max()) + 1
    weight_sum = np.bincount(segment, weights=df, minlength=n_seg)
    m = cov.shape[1]
    pooled = np.empty((n_seg, m, m))
    for i in range(m):
        for j in range(m):
            pooled[:, i, j] = (
                np.bincount(segment, weights=df * user[:, i, j], minlength=n_seg) / weight_sum
            )
    prior = pooled[segment]

    metric_df: dict[str, float] = {}
    for j, name in enumerate(effects.metrics):
        s2, s0 = user[:, j, j], prior[:, j, j]
        ok = (s2 > 0) & (s0 > 0)
        metric_df[name] = prior_df(np.log(s2[ok] / s0[ok]), df[ok])
    d0 = min(metric_df.values())

    if np.isinf(d0):
        moderated_user = prior
    else:
        moderated_user = (d0 * prior + df[:, None, None] * user) / (d0 + df)[:, None, None]
    # A segment with one cell has its own covariance as prior: keep it exactly.
    alone = np.bincount(segment, minlength=n_seg)[segment] == 1
    moderated = np.where(alone[:, None, None], cov, moderated_user * factor[:, None, None])
    moderated = 0.5 * (moderated + np.swapaxes(moderated, 1, 2)) + shared

    data = effects.data.copy()
    data[dims.NOISE_COV] = xr.DataArray(moderated, dims=data[dims.NOISE_COV].dims)
    return Moderation(effects=CellEffects(data), prior_df=float(d0), metric_df=metric_df)

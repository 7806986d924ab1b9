"""Local polynomial fits at a cutoff and the MSE-optimal common bandwidth (``mserd``).

The regression-discontinuity design (:mod:`proxyscope.data.rdd`) fits a weighted
polynomial on each side of the cutoff. This module holds those fits and the
bandwidth selector of Calonico, Cattaneo and Titiunik (2014), written out
here because rdrobust may not be a runtime dependency. It follows rdrobust
2.1's ``rdbwselect(y, x, c, p=1, q=2, bwselect="mserd", vce="hc1")`` step
for step (``cluster=`` gives its ``vce="cr1"``), so the bandwidths agree to
rounding error (the tests measure it):

1. x and y are divided by their sds (ddof = 1); the pilot bandwidth is
   ``c_bw = C_K · min(1, IQR(x)/(1.349 sd(x))) · M^(-1/5)`` (``C_K`` = 2.576
   triangular, 2.34 Epanechnikov, 1.843 uniform; M distinct values of x;
   IQR from type-2 quantiles), at most ``bw_max`` = the farthest x from the
   cutoff. With 20% or more repeated values on a side (mass points), every
   pilot is at least the distance that holds 10 distinct values per side.
2. Per side s and stage (o, ν, o_B), with ``h_V = c_bw``: a degree-o fit at
   ``h_V`` gives the variance ``V_s = (2ν+1) h_V^(2ν+1) Var(β̂_ν)`` and the
   bias constant ``B_s = √(2(o+1−ν)) · [h_V^j (G⁻¹ R'W((x−c)/h_V)^(o+1))_j]_ν ·
   β̂^B_{o+1}`` with ``β̂^B`` from a degree-o_B fit at the previous stage's
   bandwidth; the regularization ``R_s = 2(o+1−ν) · 3 · const² · Var(β̂^B_{o+1})``.
3. Stages: (3, 3, 4) at the whole range of each side (no regularization) gives
   d = ((V_l+V_r)/(B_r−B_l)²)^(1/9); (2, 2, 3) at d gives b =
   ((V_l+V_r)/((B_r−B_l)² + R_l + R_r))^(1/7); (1, 0, 2) at b gives h with the
   exponent 1/5. Each is capped at ``bw_max``; h is returned on the scale of x.

Variances are sandwich variances of the weighted least squares fit with the
residual factor of HC1, n/(n−k) (k = o+1 coefficients, n observations with
positive weight), or, with clusters, CR1: (n−1)/(n−k) · g/(g−1).

:func:`jump` is the estimate itself: the local linear jump of every metric at
the cutoff at one bandwidth, with its joint covariance from per-unit influence
functions (formulas in :mod:`proxyscope.data.rdd`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import linalg

#: Kernel name -> the constant of the pilot bandwidth (rdrobust's C_c).
KERNELS: dict[str, float] = {"triangular": 2.576, "epanechnikov": 2.34, "uniform": 1.843}
#: A side with at least this share of repeated running values has mass points.
MASS_SHARE = 0.2
#: Distinct values per side the pilots keep when there are mass points.
MASS_CHECK = 10
_PAD = 1.0 + math.sqrt(np.finfo(float).eps)


def kernel_weights(u: np.ndarray, h: float, kernel: str) -> np.ndarray:
    """K((x − c)/h)/h for ``u = x − c`` (rdrobust's scaling; it cancels in every estimate)."""
    t = u / h
    inside = np.abs(t) <= 1
    if kernel == "uniform":
        return np.asarray(0.5 * inside / h)
    if kernel == "epanechnikov":
        return np.asarray(0.75 * (1 - t**2) * inside / h)
    return np.asarray((1 - np.abs(t)) * inside / h)


def vander(u: np.ndarray, order: int) -> np.ndarray:
    """Columns 1, u, u², …, u^order (built by successive products, as rdrobust does)."""
    out = np.empty((u.size, order + 1))
    out[:, 0] = 1.0
    for j in range(1, order + 1):
        out[:, j] = out[:, j - 1] * u
    return out


@dataclass(frozen=True)
class SideFit:
    """A weighted polynomial fit on one side: the rows it uses and what it gives.

    ``keep`` marks the side's rows with positive weight; ``design`` (R),
    ``weight`` (w), ``inv_gram`` ((R'WR)⁻¹), ``beta`` (per column of y),
    ``resid`` (y − Rβ̂) are over those rows.
    """

    keep: np.ndarray
    design: np.ndarray
    weight: np.ndarray
    inv_gram: np.ndarray
    beta: np.ndarray
    resid: np.ndarray


def side_fit(u: np.ndarray, y: np.ndarray, h: float, order: int, kernel: str) -> SideFit | None:
    """Weighted least squares of y (n × m) on (1, u, …, u^order) with kernel weights at h.

    None when fewer distinct u than coefficients have positive weight.
    """
    w = kernel_weights(u, h, kernel)
    keep = w > 0
    eu = u[keep]
    if np.unique(eu).size < order + 1:
        return None
    ew = w[keep]
    r = vander(eu, order)
    root = r * np.sqrt(ew)[:, None]
    gram = root.T @ root
    try:
        inv_gram = linalg.cho_solve(linalg.cho_factor(gram, lower=True), np.eye(order + 1))
    except linalg.LinAlgError:
        inv_gram = np.linalg.pinv(gram)
    ey = y[keep]
    beta = inv_gram @ ((r * ew[:, None]).T @ ey)
    return SideFit(keep, r, ew, inv_gram, beta, ey - r @ beta)


def small_sample_factor(n: int, k: int, clusters: int | None) -> float:
    """HC1 n/(n−k), or with clusters CR1 (n−1)/(n−k) · g/(g−1) (NaN when undefined)."""
    if clusters is None:
        return n / (n - k) if n > k else math.nan
    if clusters < 2 or n <= k:
        return math.nan
    return (n - 1) / (n - k) * clusters / (clusters - 1)


def fit_variance(fit: SideFit, cluster: np.ndarray | None, column: int = 0) -> np.ndarray:
    """The HC1 (or CR1) sandwich covariance of one column's coefficients."""
    k = fit.design.shape[1]
    score = fit.design * (fit.weight * fit.resid[:, column])[:, None]
    n = score.shape[0]
    if cluster is None:
        meat = score.T @ score
        factor = small_sample_factor(n, k, None)
    else:
        codes, index = np.unique(cluster[fit.keep], return_inverse=True)
        summed = np.zeros((codes.size, k))
        np.add.at(summed, index, score)
        meat = summed.T @ summed
        factor = small_sample_factor(n, k, codes.size)
    return np.asarray(factor * fit.inv_gram @ meat @ fit.inv_gram)


@dataclass(frozen=True)
class Jump:
    """The estimate at one bandwidth: effects, covariance and the rows it uses."""

    effect: np.ndarray
    cov: np.ndarray
    n_below: int
    n_above: int
    clusters_below: int | None
    clusters_above: int | None


def jump(
    u: np.ndarray, y: np.ndarray, h: float, kernel: str, cluster: np.ndarray | None
) -> Jump | None:
    """Local linear jump at u = 0 of every column of y, with the joint covariance.

    ``u`` is x − c. None when a side has fewer than two distinct values of u
    with positive weight, or its small-sample factor is undefined.
    """
    effect = np.zeros(y.shape[1])
    psi_parts: list[np.ndarray] = []
    unit_parts: list[np.ndarray] = []
    counts: list[int] = []
    groups: list[int | None] = []
    for sign, mask in ((-1.0, u < 0), (1.0, u >= 0)):
        fit = side_fit(u[mask], y[mask], h, 1, kernel)
        if fit is None:
            return None
        n = int(fit.keep.sum())
        side_cluster = None if cluster is None else cluster[mask][fit.keep]
        g = None if side_cluster is None else int(np.unique(side_cluster).size)
        factor = small_sample_factor(n, 2, g)
        if not math.isfinite(factor):
            return None
        lever = (fit.design * fit.weight[:, None]) @ fit.inv_gram[0]
        psi_parts.append(sign * math.sqrt(factor) * lever[:, None] * fit.resid)
        if side_cluster is not None:
            unit_parts.append(side_cluster)
        effect += sign * fit.beta[0]
        counts.append(n)
        groups.append(g)
    psi = np.concatenate(psi_parts)
    if cluster is None:
        cov = psi.T @ psi
    else:
        _, index = np.unique(np.concatenate(unit_parts), return_inverse=True)
        score = np.zeros((int(index.max()) + 1, psi.shape[1]))
        np.add.at(score, index, psi)
        cov = score.T @ score
    return Jump(effect, cov, counts[0], counts[1], groups[0], groups[1])


def _stage(
    u: np.ndarray,
    y: np.ndarray,
    cluster: np.ndarray | None,
    o: int,
    nu: int,
    o_b: int,
    h_v: float,
    h_b: float,
    regularize: bool,
    kernel: str,
) -> tuple[float, float, float]:
    """(V, B, R) of one side and stage (rdrobust's ``rdrobust_bw``); NaNs when not identified."""
    nan = (math.nan, math.nan, math.nan)
    fit_v = side_fit(u, y, h_v, o, kernel)
    if fit_v is None or not (math.isfinite(h_b) and h_b > 0):
        return nan
    var_v = fit_variance(fit_v, cluster)[nu, nu]
    ew = fit_v.weight
    v = (fit_v.design * ew[:, None]).T @ ((u[fit_v.keep] / h_v) ** (o + 1))
    const = float((h_v ** np.arange(o + 1) * (fit_v.inv_gram @ v))[nu])
    fit_b = side_fit(u, y, h_b, o_b, kernel)
    if fit_b is None:
        return nan
    reg = 0.0
    if regularize:
        reg = 3 * const**2 * fit_variance(fit_b, cluster)[-1, -1]
    bias = math.sqrt(2 * (o + 1 - nu)) * const * float(fit_b.beta[-1, 0])
    variance = (2 * nu + 1) * h_v ** (2 * nu + 1) * var_v
    return float(variance), bias, float(2 * (o + 1 - nu) * reg)


def quantile_type2(x: np.ndarray, prob: float) -> float:
    """Hyndman–Fan type-2 quantile (R's ``quantile(type=2)``, as rdrobust uses)."""
    s = np.sort(x)
    pos = s.size * prob
    j = math.floor(pos)
    if pos == j:
        return float(0.5 * (s[j - 1] + s[j]))
    return float(s[j])


def mserd_bandwidth(
    x: np.ndarray,
    y: np.ndarray,
    cutoff: float,
    *,
    kernel: str = "triangular",
    cluster: np.ndarray | None = None,
) -> float:
    """The MSE-optimal common bandwidth of the sharp RD estimate of y's jump at ``cutoff``.

    Parameters
    ----------
    x, y : 1-d float arrays
        Running variable and outcome of every row of the cell (both sides).
    cutoff : float
        Rows with x >= cutoff are treated.
    kernel : {"triangular", "epanechnikov", "uniform"}
    cluster : int array, optional
        Cluster codes per row (CR1 variances instead of HC1).

    Returns
    -------
    float
        The bandwidth on the scale of x; NaN when a pilot fit is not identified
        (too few distinct values of x) or the variances are degenerate.
    """
    x_sd = float(np.std(x, ddof=1))
    y_sd = float(np.std(y, ddof=1))
    if not (x_sd > 0) or not math.isfinite(x_sd):
        return math.nan
    iqr = quantile_type2(x, 0.75) - quantile_type2(x, 0.25)
    bwp = min(1.0, (iqr / x_sd) / 1.349)
    xs = x / x_sd
    ys = (y / y_sd if y_sd > 0 else y).reshape(-1, 1)
    c = cutoff / x_sd
    left = xs < c
    if left.all() or not left.any():
        return math.nan
    u = xs - c
    sides = [
        (u[mask], ys[mask], None if cluster is None else cluster[mask]) for mask in (left, ~left)
    ]
    distinct = [np.unique(s[0]) for s in sides]
    m_total = distinct[0].size + distinct[1].size
    bw_max = max(abs(c - float(xs.min())), abs(c - float(xs.max())))
    bw_min = 0.0
    mass = any(1 - d.size / s[0].size >= MASS_SHARE for d, s in zip(distinct, sides, strict=True))
    if mass:
        bw_min = max(
            float(np.sort(np.abs(d))[min(MASS_CHECK, d.size) - 1]) * _PAD for d in distinct
        )
    c_bw = min(KERNELS[kernel] * bwp * m_total ** (-1 / 5), bw_max)
    c_bw = max(c_bw, bw_min)
    ranges = [float(np.abs(s[0]).max()) * _PAD for s in sides]

    def combine(terms: list[tuple[float, float, float]], rate: float, reg: bool) -> float:
        (v_l, b_l, r_l), (v_r, b_r, r_r) = terms
        denom = (b_r - b_l) ** 2 + (r_l + r_r if reg else 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = float(np.float64(v_l + v_r) / np.float64(denom)) ** rate
        return min(out, bw_max)

    terms = [
        _stage(s[0], s[1], s[2], 3, 3, 4, c_bw, r, False, kernel)
        for s, r in zip(sides, ranges, strict=True)
    ]
    d_bw = max(combine(terms, 1 / 9, False), bw_min)
    terms = [_stage(s[0], s[1], s[2], 2, 2, 3, c_bw, d_bw, True, kernel) for s in sides]
    b_bw = combine(terms, 1 / 7, True)
    terms = [_stage(s[0], s[1], s[2], 1, 0, 2, c_bw, b_bw, True, kernel) for s in sides]
    h_bw = combine(terms, 1 / 5, True)
    h = x_sd * h_bw
    return h if math.isfinite(h) and h > 0 else math.nan

"""The relation's random walk over periods in the compiled log posterior (DESIGN.md §9).

With time, each family of relation parameters (locations nu and mu: M rows;
slopes beta: K rows; log sigma: 1 row) moves between the P periods of the
history as a Gaussian random walk with drift, the same shift for every
segment (on top of the segment pooling). From period p to p + 1 row r moves
by ``s_r z_p + d_r``: a step z_p ~ N(0, 1) (non-centred) of scale s_r ~
HalfNormal(step sd of the family), sampled as its logarithm, plus a drift
d_r ~ N(0, drift sd of the family), the row's steady change per period (a
proxy whose link decays period after period). In the sampler the walk is
anchored at the MIDDLE period c = (P - 1) // 2: the segment values of the
flat vector are period c's, and period p adds

    w[r, p] = sum of the steps from c to p (p > c), minus those from p to c (p < c),

w[r, c] = 0. Anchored at an end, the drift and the end's value trade off
along a long ridge (the drift times the history's length), which a diagonal
mass matrix follows only with many more leapfrog steps; anchored in the
middle they are nearly uncorrelated, as a centred covariate's slope and
intercept are. What users read is the latest period's relation: the
posterior's segment values are period c's plus w[P - 1]
(:mod:`proxyscope.model.time_paths`).

A family whose step sd and drift sd are both 0 does not move (its rows are
absent from ``x``); with only one of them 0, that part is absent.

The likelihood kernel then sees P x S "virtual segments", v = p * S + s,
each with its segment's values plus its period's shift:
:func:`time_forward` expands the per-segment arrays, :func:`time_back` folds
the gradients back onto the segments and the walk.

Layout in ``ints``: ``ints[H_TIME_P]`` the number of periods (0: no time),
``ints[H_TIME]`` the int offset of a table of :data:`TIME_RECORD` ints per
family (in the order locations, slopes, log sigma): the offset in x of the
rows' log step scales, of their (rows, P - 1) steps, the float offset of the
step sd, the offset in x of the rows' drifts, the float offset of the drift
sd; -1 for a part the family does not have.
"""

from __future__ import annotations

import math

import numpy as np

from proxyscope.core.density import H_TIME, H_TIME_P, LOG_2PI, _half_normal_log, _jit, _normal_log

#: Ints per family in the walk's table (see the module docstring).
TIME_RECORD = 5


def anchor(p_n: int) -> int:
    """The period whose values the segment parameters hold in the sampler: the middle
    one, (P - 1) // 2 (see the module docstring)."""
    return (p_n - 1) // 2


@_jit
def _walk(
    x: np.ndarray, grad: np.ndarray, ints: np.ndarray, floats: np.ndarray, rows: int, f: int
) -> tuple[float, np.ndarray]:
    """Family ``f``'s shifts (rows, P) from the anchor period, and the log prior of its
    scales, steps and drifts."""
    p_n = ints[H_TIME_P]
    c = (p_n - 1) // 2
    rec = ints[H_TIME] + TIME_RECORD * f
    off_s, off_z, fl_sd, off_d, fl_d = (
        ints[rec], ints[rec + 1], ints[rec + 2], ints[rec + 3], ints[rec + 4]
    )  # fmt: skip
    walk = np.zeros((rows, p_n))
    lp = 0.0
    for r in range(rows):
        scale = 0.0
        if off_s >= 0:
            v, d = _half_normal_log(x[off_s + r], floats[fl_sd])
            lp += v
            grad[off_s + r] += d
            scale = math.exp(x[off_s + r])
        drift = 0.0
        if off_d >= 0:
            drift = x[off_d + r]
            v, d = _normal_log(drift, floats[fl_d])
            lp += v
            grad[off_d + r] += d
        steps = np.full(p_n - 1, drift)  # from period q to q + 1
        if off_s >= 0:
            for q in range(p_n - 1):
                z = x[off_z + r * (p_n - 1) + q]
                lp -= 0.5 * (LOG_2PI + z * z)
                grad[off_z + r * (p_n - 1) + q] -= z
                steps[q] += scale * z
        acc = 0.0
        for p in range(c + 1, p_n):
            acc += steps[p - 1]
            walk[r, p] = acc
        acc = 0.0
        for p in range(c - 1, -1, -1):
            acc += steps[p]
            walk[r, p] = -acc
    return lp, walk


@_jit
def _walk_back(
    x: np.ndarray, grad: np.ndarray, ints: np.ndarray, g_walk: np.ndarray, f: int
) -> None:
    """Add the gradient of a function of family ``f``'s shifts (given as ``g_walk``)."""
    p_n = ints[H_TIME_P]
    c = (p_n - 1) // 2
    rec = ints[H_TIME] + TIME_RECORD * f
    off_s, off_z, off_d = ints[rec], ints[rec + 1], ints[rec + 3]
    for r in range(g_walk.shape[0]):
        # The step from q to q + 1 enters w[p] with sign +1 for p > q >= c and -1
        # for p <= q < c: its gradient is the sum of those g_walk[p], signed.
        g_step = np.zeros(p_n - 1)
        acc = 0.0
        for q in range(p_n - 2, c - 1, -1):
            acc += g_walk[r, q + 1]
            g_step[q] = acc
        acc = 0.0
        for q in range(c):
            acc += g_walk[r, q]
            g_step[q] = -acc
        if off_d >= 0:
            g_drift = 0.0
            for q in range(p_n - 1):
                g_drift += g_step[q]
            grad[off_d + r] += g_drift
        if off_s < 0:
            continue
        scale = math.exp(x[off_s + r])
        g_lam = 0.0
        for q in range(p_n - 1):
            z = x[off_z + r * (p_n - 1) + q]
            grad[off_z + r * (p_n - 1) + q] += scale * g_step[q]
            g_lam += g_step[q] * scale * z
        grad[off_s + r] += g_lam


@_jit
def time_forward(
    x: np.ndarray,
    grad: np.ndarray,
    ints: np.ndarray,
    floats: np.ndarray,
    loc: np.ndarray,
    slope: np.ndarray,
    log_sigma: np.ndarray,
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """The walk's log prior (gradient added to ``grad``) and the virtual segments' values.

    ``loc`` (M, S), ``slope`` (K, S), ``log_sigma`` (S,) per segment; returns
    them per virtual segment v = p * S + s: (M, P S), (K, P S), (P S,).
    """
    p_n = ints[H_TIME_P]
    m, s_n = loc.shape
    k = slope.shape[0]
    lp_l, w_loc = _walk(x, grad, ints, floats, m, 0)
    lp_b, w_slope = _walk(x, grad, ints, floats, k, 1)
    lp_s, w_sig = _walk(x, grad, ints, floats, 1, 2)
    loc_v = np.empty((m, p_n * s_n))
    slope_v = np.empty((k, p_n * s_n))
    ls_v = np.empty(p_n * s_n)
    for p in range(p_n):
        for s in range(s_n):
            v = p * s_n + s
            for i in range(m):
                loc_v[i, v] = loc[i, s] + w_loc[i, p]
            for i in range(k):
                slope_v[i, v] = slope[i, s] + w_slope[i, p]
            ls_v[v] = log_sigma[s] + w_sig[0, p]
    return lp_l + lp_b + lp_s, loc_v, slope_v, ls_v


@_jit
def time_back(
    x: np.ndarray,
    grad: np.ndarray,
    ints: np.ndarray,
    g_loc_v: np.ndarray,
    g_slope_v: np.ndarray,
    g_ls_v: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fold the virtual segments' gradients onto the segments and the walk.

    Returns the gradients with respect to ``loc`` (M, S), ``slope`` (K, S)
    and ``log_sigma`` (S,); the walk's are added to ``grad``.
    """
    p_n = ints[H_TIME_P]
    m = g_loc_v.shape[0]
    k = g_slope_v.shape[0]
    s_n = g_loc_v.shape[1] // p_n
    g_loc = np.zeros((m, s_n))
    g_slope = np.zeros((k, s_n))
    g_ls = np.zeros(s_n)
    gw_loc = np.zeros((m, p_n))
    gw_slope = np.zeros((k, p_n))
    gw_sig = np.zeros((1, p_n))
    for p in range(p_n):
        for s in range(s_n):
            v = p * s_n + s
            for i in range(m):
                g_loc[i, s] += g_loc_v[i, v]
                gw_loc[i, p] += g_loc_v[i, v]
            for i in range(k):
                g_slope[i, s] += g_slope_v[i, v]
                gw_slope[i, p] += g_slope_v[i, v]
            g_ls[s] += g_ls_v[v]
            gw_sig[0, p] += g_ls_v[v]
    _walk_back(x, grad, ints, gw_loc, 0)
    _walk_back(x, grad, ints, gw_slope, 1)
    _walk_back(x, grad, ints, gw_sig, 2)
    return g_loc, g_slope, g_ls


def walk_from(
    scale: np.ndarray | None, steps: np.ndarray | None, drift: np.ndarray | None, p_n: int
) -> np.ndarray:
    """A family's shifts (..., R, P) from the anchor period (:func:`anchor`), from its
    step scales (..., R), steps (..., R, P - 1) and drifts (..., R) (None for a part it
    does not have; not all None): the numpy twin of :func:`_walk`, for reading draws."""
    parts = []
    if scale is not None and steps is not None:
        parts.append(scale[..., None] * steps)
    if drift is not None:
        parts.append(np.broadcast_to(drift[..., None], (*drift.shape, p_n - 1)))
    forward = parts[0] if len(parts) == 1 else parts[0] + parts[1]
    level = np.concatenate([np.zeros((*forward.shape[:-1], 1)), np.cumsum(forward, axis=-1)], -1)
    c = anchor(p_n)
    return np.asarray(level - level[..., c : c + 1])

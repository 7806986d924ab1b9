"""The relation's random walk over periods in the compiled log posterior (DESIGN.md §9).

With time, each family of relation parameters (locations nu and mu: M rows;
slopes beta: K rows; log sigma: 1 row) moves between the P periods of the
history as a Gaussian random walk, the same shift for every segment (on top
of the segment pooling). The walk is anchored at the LAST period: the segment
values the rest of the model describes are those of the latest period, and an
earlier period p adds

    w[r, p] = s_r * (z[r, p] + z[r, p + 1] + ... + z[r, P - 2]),  w[r, P - 1] = 0,

with z ~ N(0, 1) the steps (non-centred) and s_r ~ HalfNormal(step sd of the
family) the step scale of row r, sampled as its logarithm. A family whose
step sd is 0 does not move (its rows are absent from ``x``).

The likelihood kernel then sees P x S "virtual segments", v = p * S + s,
each with its segment's values plus its period's shift:
:func:`time_forward` expands the per-segment arrays, :func:`time_back` folds
the gradients back onto the segments and the walk.

Layout in ``ints``: ``ints[H_TIME_P]`` the number of periods (0: no time),
``ints[H_TIME]`` the int offset of a table of three (scale offset in x,
steps' offset in x, float offset of the step sd) records, one per family in
the order locations, slopes, log sigma; -1 offsets for a static family.
"""

from __future__ import annotations

import math

import numpy as np

from proxyscope.core.density import H_TIME, H_TIME_P, LOG_2PI, _half_normal_log, _jit


@_jit
def _walk(
    x: np.ndarray, grad: np.ndarray, ints: np.ndarray, floats: np.ndarray, rows: int, f: int
) -> tuple[float, np.ndarray]:
    """Family ``f``'s shifts (rows, P) and the log prior of its scales and steps."""
    p_n = ints[H_TIME_P]
    rec = ints[H_TIME] + 3 * f
    off_s, off_z, fl_sd = ints[rec], ints[rec + 1], ints[rec + 2]
    walk = np.zeros((rows, p_n))
    if off_s < 0:
        return 0.0, walk
    lp = 0.0
    sd = floats[fl_sd]
    for r in range(rows):
        v, d = _half_normal_log(x[off_s + r], sd)
        lp += v
        grad[off_s + r] += d
        scale = math.exp(x[off_s + r])
        acc = 0.0
        for q in range(p_n - 2, -1, -1):
            z = x[off_z + r * (p_n - 1) + q]
            lp -= 0.5 * (LOG_2PI + z * z)
            grad[off_z + r * (p_n - 1) + q] -= z
            acc += z
            walk[r, q] = scale * acc
    return lp, walk


@_jit
def _walk_back(
    x: np.ndarray, grad: np.ndarray, ints: np.ndarray, g_walk: np.ndarray, f: int
) -> None:
    """Add the gradient of a function of family ``f``'s shifts (given as ``g_walk``)."""
    p_n = ints[H_TIME_P]
    rec = ints[H_TIME] + 3 * f
    off_s, off_z = ints[rec], ints[rec + 1]
    if off_s < 0:
        return
    for r in range(g_walk.shape[0]):
        scale = math.exp(x[off_s + r])
        acc_g = 0.0  # sum over p <= q of the shifts' gradients
        g_lam = 0.0
        # w[p] = scale * sum_{q >= p} z[q]: dw[p]/dz[q] = scale for p <= q;
        # dw[p]/dlog(scale) = w[p].
        tail = 0.0
        for q in range(p_n - 2, -1, -1):
            tail += x[off_z + r * (p_n - 1) + q]
            g_lam += g_walk[r, q] * scale * tail
        for q in range(p_n - 1):
            acc_g += g_walk[r, q]
            grad[off_z + r * (p_n - 1) + q] += scale * acc_g
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


def walk_from(scale: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """The shifts (..., R, P) of a family from its step scales (..., R) and steps
    (..., R, P - 1): the numpy twin of :func:`_walk`, for reading draws."""
    tail = np.flip(np.cumsum(np.flip(steps, axis=-1), axis=-1), axis=-1)
    zero = np.zeros((*tail.shape[:-1], 1))
    return np.asarray(np.concatenate([scale[..., None] * tail, zero], axis=-1))

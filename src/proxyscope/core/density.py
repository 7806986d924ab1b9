"""The proxy model's log prior and coordinate maps, with their gradient, compiled once.

The sampler moves one flat vector ``x``. This module maps it to the arrays
the likelihood kernel takes (segment means ``loc[M, S]``, slopes
``slope[K, S]``, ``log sigma[S]``, the Cholesky factor of Omega_C and that
of the experiment effects' covariance, diag(sd of the outcome's own
experiment effect, factor of the proxies' Omega_E)), returns the log prior
density of ``x`` (every Jacobian included), and pushes the likelihood's
gradient with respect to those arrays back to ``x``. The code is generic: it
reads the model's structure from two arrays (``ints``, ``floats``, built by
:mod:`proxyscope.model.layout`), so it is compiled once per machine for every
model; only the likelihood kernel is generated per number of proxies.

Each family (locations: R = M rows, slopes: R = K, log sigma: R = 1) is a
sum of blocks: a global value, one main effect per segment column (values @
the column's sum-to-zero design), an interaction (one value per segment),
or with no pooling one value per segment. A block of R x C values ``b`` is
sampled as ``u`` with

    b[:, c] = diag(scale ** w[:, c]) @ A @ u[:, c]

where ``A`` is the family's orthogonal rotation (the identity except for the
slopes), ``scale`` the block's learned scale (absent for a fixed prior sd)
and ``w`` in [0, 1] how far each entry is non-centred: 1 is the non-centred
form (``u`` a standard variate), 0 the centred one (``b`` itself). The
prior is evaluated at ``b``; the log Jacobian of the map is
``sum(w * log scale)``. Scales (HalfNormal) are sampled as their logarithm
and the canonical partial correlations of the LKJ matrices (Beta) as the
logit of ``(z + 1) / 2``, with those Jacobians. Every choice of ``w`` and
``A`` is the same model in other coordinates.
"""

from __future__ import annotations

import math

import numba
import numpy as np

_jit = numba.njit(cache=True, nogil=True, error_model="numpy")
# Small helpers are inlined into their callers' numba IR: each separately
# compiled function would be optimised and code-generated again in every
# function that links it, which is most of a cold compile's time.
_inline = numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")

LOG_2PI = math.log(2.0 * math.pi)
#: log of the HalfNormal density's constant sqrt(2 / pi).
HALF_NORMAL_CONST = 0.5 * math.log(2.0 / math.pi)

# --- the int header -------------------------------------------------------
H_K, H_S, H_FREE = 0, 1, 2
H_SD_E, H_CPC_E, H_SD_C, H_CPC_C, H_NDIM = 3, 4, 5, 6, 7
H_FL_ROT, H_FL_CONST, H_FL_CPC = 8, 9, 10
H_FAMILIES = 11  # three (first block record, number of records) pairs from here
#: Offset in x of the log sd of the outcome's own experiment effect; -1 when
#: the model has none (no experiment with two cells to tell it from sigma).
H_SD_Y = 17
#: The design-bias terms (:func:`bias_forward`): how many designs have one (0:
#: none, and the rest of this header is unused), the offset in x of the first
#: design's block (M log sds, then M (M - 1) / 2 logit CPCs; one block per
#: design), the float offset of their constants (the sds' HalfNormal scale,
#: then the LKJ shapes for M), and the int offset of the kernel segments'
#: table (their number n, then each one's segment, then each one's design:
#: 0 for an unbiased one, 1..D for the biased designs).
H_BIAS_N, H_BIAS, H_FL_BIAS, H_KSEG = 18, 19, 20, 21
#: The relation's walk over periods (:mod:`proxyscope.core.timewalk`): the
#: number of periods (0: no time) and the int offset of its table.
H_TIME_P, H_TIME = 22, 23
HEADER = 24
#: A block record: where its u sits, its shape, its learned scale (offset in
#: x, or -1 for a fixed prior sd), its weights (float offset; one per row or
#: per entry), the float offset of its prior sd (the value's sd when fixed,
#: the scale's HalfNormal sd when learned), rotated (1) or not, the float
#: offset of its design (S x C: main effects, interaction axes; -1: the block
#: is added to every segment, C = 1, or per segment, C = S), and its kind
#: (VALUE, or LOG_HALF_NORMAL: x is the log of a HalfNormal variable and the
#: block's value).
B_U, B_R, B_C, B_SCALE, B_W, B_W_ROW, B_SD, B_ROT, B_DESIGN, B_KIND = range(10)
RECORD = 12
VALUE, LOG_HALF_NORMAL = 0, 1
LOC, SLOPE, LOG_SIGMA = 0, 1, 2
# Float constants: experiment_sd, cell_sd, experiment_outcome_sd.
K_EXP_SD, K_CELL_SD, K_EXP_Y_SD = 0, 1, 2


@_inline
def _softplus(y: float) -> float:
    if y > 0.0:
        return y + math.log1p(math.exp(-y))
    return math.log1p(math.exp(y))


@_inline
def _half_normal_log(lam: float, sd: float) -> tuple[float, float]:
    """log HalfNormal(exp(lam); sd) + lam, and its derivative in lam."""
    s2 = math.exp(2.0 * lam) / (sd * sd)
    return HALF_NORMAL_CONST - math.log(sd) - 0.5 * s2 + lam, 1.0 - s2


@_inline
def _normal_log(b: float, sd: float) -> tuple[float, float]:
    """log N(b; 0, sd) and its derivative in b."""
    z = b / sd
    return -0.5 * (LOG_2PI + z * z) - math.log(sd), -z / sd


@_inline
def _rotate(a: np.ndarray, u: np.ndarray, rotated: bool, back: bool) -> np.ndarray:
    """``a @ u`` (R, C) when ``rotated``, else a copy of ``u``; with ``back``,
    ``a.T @ u`` (the gradient with respect to ``u`` of a function of ``a @ u``)."""
    out = u.copy()
    if rotated:
        r, c = u.shape
        for i in range(r):
            for j in range(c):
                acc = 0.0
                for q in range(r):
                    acc += (a[q, i] if back else a[i, q]) * u[q, j]
                out[i, j] = acc
    return out


@_jit
def _block_values(x: np.ndarray, ints: np.ndarray, floats: np.ndarray, rec: int) -> np.ndarray:
    """The values (R, C) of the block described by record ``rec``."""
    off_u, r, c = ints[rec + B_U], ints[rec + B_R], ints[rec + B_C]
    k = ints[H_K]
    fl_rot = ints[H_FL_ROT]
    rot = floats[fl_rot : fl_rot + k * k].reshape((k, k))
    u = x[off_u : off_u + r * c].reshape((r, c))
    b = _rotate(rot, u, ints[rec + B_ROT] == 1, False)
    off_scale = ints[rec + B_SCALE]
    if off_scale >= 0:
        fl_w, per_row = ints[rec + B_W], ints[rec + B_W_ROW] == 1
        for i in range(r):
            lam = x[off_scale + i]
            for j in range(c):
                w = floats[fl_w + i] if per_row else floats[fl_w + i * c + j]
                b[i, j] *= math.exp(w * lam)
    return b


@_jit
def _block(
    x: np.ndarray, grad: np.ndarray, ints: np.ndarray, floats: np.ndarray, rec: int
) -> tuple[float, np.ndarray]:
    """A block's values (R, C) and log prior (Jacobians included); adds its gradient.

    With a fixed prior sd (no learned scale) the values are N(0, sd). With a
    learned scale ``exp(lam)`` (HalfNormal) they are N(0, scale), sampled as
    ``scale ** w`` times the rotated ``u``.
    """
    off_u, r, c = ints[rec + B_U], ints[rec + B_R], ints[rec + B_C]
    sd = floats[ints[rec + B_SD]]
    lp = 0.0
    if ints[rec + B_KIND] == LOG_HALF_NORMAL:
        b = np.empty((r, c))
        for i in range(r):
            for j in range(c):
                v, d = _half_normal_log(x[off_u + i * c + j], sd)
                lp += v
                grad[off_u + i * c + j] += d
                b[i, j] = x[off_u + i * c + j]
        return lp, b
    b = _block_values(x, ints, floats, rec)
    h = np.empty((r, c))  # d log prior / d b, times d b / d (rotated u)
    off_scale = ints[rec + B_SCALE]
    if off_scale < 0:
        for i in range(r):
            for j in range(c):
                v, d = _normal_log(b[i, j], sd)
                lp += v
                h[i, j] = d
    else:
        fl_w, per_row = ints[rec + B_W], ints[rec + B_W_ROW] == 1
        for i in range(r):
            lam = x[off_scale + i]
            v, d = _half_normal_log(lam, sd)
            lp += v
            dscale = d
            scale = math.exp(lam)
            for j in range(c):
                w = floats[fl_w + i] if per_row else floats[fl_w + i * c + j]
                v, d = _normal_log(b[i, j], scale)
                lp += v + w * lam
                h[i, j] = d * math.exp(w * lam)
                dscale += (1.0 - w) * (-1.0 - d * b[i, j])
            grad[off_scale + i] += dscale
    _add_rotated_back(grad, ints, floats, rec, h)
    return lp, b


@_jit
def _add_rotated_back(
    grad: np.ndarray, ints: np.ndarray, floats: np.ndarray, rec: int, h: np.ndarray
) -> None:
    """Add ``A' h`` (or ``h`` for an unrotated block) to the gradient of its u."""
    off_u, r, c = ints[rec + B_U], ints[rec + B_R], ints[rec + B_C]
    k = ints[H_K]
    fl_rot = ints[H_FL_ROT]
    rot = floats[fl_rot : fl_rot + k * k].reshape((k, k))
    gu = _rotate(rot, h, ints[rec + B_ROT] == 1, True)
    for i in range(r):
        for j in range(c):
            grad[off_u + i * c + j] += gu[i, j]


@_jit
def _block_back(
    x: np.ndarray, grad: np.ndarray, ints: np.ndarray, floats: np.ndarray, rec: int,
    gb: np.ndarray,
) -> None:  # fmt: skip
    """Add the gradient of a function of a block's values (given as ``gb``, (R, C))."""
    r, c = ints[rec + B_R], ints[rec + B_C]
    off_u = ints[rec + B_U]
    if ints[rec + B_KIND] == LOG_HALF_NORMAL:
        for i in range(r):
            for j in range(c):
                grad[off_u + i * c + j] += gb[i, j]
        return
    off_scale = ints[rec + B_SCALE]
    if off_scale < 0:
        _add_rotated_back(grad, ints, floats, rec, gb)
        return
    b = _block_values(x, ints, floats, rec)
    fl_w, per_row = ints[rec + B_W], ints[rec + B_W_ROW] == 1
    scaled = np.empty((r, c))
    for i in range(r):
        lam = x[off_scale + i]
        acc = 0.0
        for j in range(c):
            w = floats[fl_w + i] if per_row else floats[fl_w + i * c + j]
            scaled[i, j] = gb[i, j] * math.exp(w * lam)
            acc += w * b[i, j] * gb[i, j]
        grad[off_scale + i] += acc
    _add_rotated_back(grad, ints, floats, rec, scaled)


@_jit
def _family(
    x: np.ndarray, grad: np.ndarray, ints: np.ndarray, floats: np.ndarray, f: int
) -> tuple[float, np.ndarray]:
    """Segment values (R, S) of family ``f`` and the log prior of its blocks."""
    s_n = ints[H_S]
    first, n_rec = ints[H_FAMILIES + 2 * f], ints[H_FAMILIES + 2 * f + 1]
    r = ints[first + B_R]
    out = np.zeros((r, s_n))
    lp = 0.0
    for t in range(n_rec):
        rec = first + t * RECORD
        v, b = _block(x, grad, ints, floats, rec)
        lp += v
        c = ints[rec + B_C]
        fl_d = ints[rec + B_DESIGN]
        for i in range(r):
            for s in range(s_n):
                if fl_d >= 0:  # a main effect: values @ design'
                    acc = 0.0
                    for q in range(c):
                        acc += b[i, q] * floats[fl_d + s * c + q]
                    out[i, s] += acc
                elif c == s_n:  # one value per segment
                    out[i, s] += b[i, s]
                else:  # one value for every segment
                    out[i, s] += b[i, 0]
    return lp, out


@_jit
def _family_back(
    x: np.ndarray, grad: np.ndarray, ints: np.ndarray, floats: np.ndarray, f: int, g: np.ndarray
) -> None:
    """Add the gradient of a function of family ``f``'s values (given as ``g``, (R, S))."""
    s_n = ints[H_S]
    first, n_rec = ints[H_FAMILIES + 2 * f], ints[H_FAMILIES + 2 * f + 1]
    for t in range(n_rec):
        rec = first + t * RECORD
        r, c = ints[rec + B_R], ints[rec + B_C]
        fl_d = ints[rec + B_DESIGN]
        gb = np.zeros((r, c))
        for i in range(r):
            for s in range(s_n):
                if fl_d >= 0:
                    for q in range(c):
                        gb[i, q] += g[i, s] * floats[fl_d + s * c + q]
                elif c == s_n:
                    gb[i, s] += g[i, s]
                else:
                    gb[i, 0] += g[i, s]
        _block_back(x, grad, ints, floats, rec, gb)


@_jit
def _corr_cholesky(z: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Lower Cholesky factor of the correlation matrix with CPCs ``z``, and the
    remainders ``rem[i, j]`` (1 minus the squares of row i's first j entries)."""
    low = np.zeros((k, k))
    rem = np.ones((k, k + 1))
    low[0, 0] = 1.0
    t = 0
    for i in range(1, k):
        for j in range(i):
            low[i, j] = z[t] * math.sqrt(rem[i, j])
            rem[i, j + 1] = rem[i, j] - low[i, j] * low[i, j]
            t += 1
        low[i, i] = math.sqrt(rem[i, i])
    return low, rem


@_jit
def _corr_cholesky_back(z: np.ndarray, k: int, rem: np.ndarray, g_low: np.ndarray) -> np.ndarray:
    """Gradient with respect to the CPCs ``z`` of a function of the factor (given as ``g_low``)."""
    gz = np.zeros(z.shape[0])
    t = k * (k - 1) // 2
    for i in range(k - 1, 0, -1):
        t -= i
        g_rem = g_low[i, i] * 0.5 / math.sqrt(rem[i, i]) if rem[i, i] > 0.0 else 0.0
        for j in range(i - 1, -1, -1):
            root = math.sqrt(rem[i, j])
            low_ij = z[t + j] * root
            g_l = g_low[i, j] - 2.0 * low_ij * g_rem
            gz[t + j] = g_l * root
            g_rem = g_rem + (g_l * z[t + j] * 0.5 / root if root > 0.0 else 0.0)
    return gz


@_jit
def _lkj(
    x: np.ndarray, grad: np.ndarray, floats: np.ndarray, off: int, k: int, fl_shapes: int
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """Correlation factor from logit CPCs at ``x[off:]``; log prior and its gradient.

    Returns the log prior, the factor, the CPCs z and the remainders.
    """
    n = k * (k - 1) // 2
    z = np.empty(n)
    lp = 0.0
    for t in range(n):
        y = x[off + t]
        a = floats[fl_shapes + t]
        log_u = -_softplus(-y)
        log_1mu = -_softplus(y)
        u = math.exp(log_u)
        lp += (
            a * log_u + a * log_1mu + math.lgamma(2.0 * a) - 2.0 * math.lgamma(a)
        )  # Beta(a, a) on u, with the logit's Jacobian u (1 - u)
        grad[off + t] += a * (1.0 - u) - a * u
        z[t] = 2.0 * u - 1.0
    low, rem = _corr_cholesky(z, k)
    return lp, low, z, rem


@_jit
def prior_forward(
    x: np.ndarray, grad: np.ndarray, ints: np.ndarray, floats: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Log prior of ``x`` (its gradient is written to ``grad``) and the likelihood's inputs.

    Returns ``lp, loc (M, S), slope (K, S), log_sigma (S,), chol_c (K, K),
    chol_e (M, M)``; ``chol_e`` is diag(sd of the outcome's own experiment
    effect, factor of the proxies' Omega_E), the outcome first.
    """
    for i in range(grad.shape[0]):
        grad[i] = 0.0
    k = ints[H_K]
    consts = ints[H_FL_CONST]
    lp = 0.0
    values = []
    for f in range(3):  # locations, slopes, log sigma
        v, value = _family(x, grad, ints, floats, f)
        lp += v
        values.append(value)
    loc, slope, ls = values[0], values[1], values[2]
    sd_e = np.empty(k)
    sd_c = np.empty(k)
    for i in range(k):
        v, d = _half_normal_log(x[ints[H_SD_E] + i], floats[consts + K_EXP_SD])
        lp += v
        grad[ints[H_SD_E] + i] += d
        sd_e[i] = math.exp(x[ints[H_SD_E] + i])
        v, d = _half_normal_log(x[ints[H_SD_C] + i], floats[consts + K_CELL_SD])
        lp += v
        grad[ints[H_SD_C] + i] += d
        sd_c[i] = math.exp(x[ints[H_SD_C] + i])
    low_e = np.ones((1, 1))
    low_c = np.ones((1, 1))
    if k > 1:
        v, low_e, _, _ = _lkj(x, grad, floats, ints[H_CPC_E], k, ints[H_FL_CPC])
        lp += v
        low_c = low_e
        if ints[H_FREE] == 1:
            v, low_c, _, _ = _lkj(x, grad, floats, ints[H_CPC_C], k, ints[H_FL_CPC])
            lp += v
    chol_e = np.zeros((k + 1, k + 1))
    chol_c = np.empty((k, k))
    for i in range(k):
        for j in range(k):
            chol_e[i + 1, j + 1] = sd_e[i] * low_e[i, j]
            chol_c[i, j] = sd_c[i] * low_c[i, j]
    off_y = ints[H_SD_Y]
    if off_y >= 0:
        v, d = _half_normal_log(x[off_y], floats[consts + K_EXP_Y_SD])
        lp += v
        grad[off_y] += d
        chol_e[0, 0] = math.exp(x[off_y])
    return lp, loc, slope, ls[0].copy(), chol_c, chol_e


@_jit
def likelihood_back(
    x: np.ndarray,
    grad: np.ndarray,
    ints: np.ndarray,
    floats: np.ndarray,
    g_loc: np.ndarray,
    g_slope: np.ndarray,
    g_log_sigma: np.ndarray,
    g_chol_c: np.ndarray,
    g_chol_e: np.ndarray,
) -> None:
    """Add to ``grad`` the gradient with respect to ``x`` of a function of the
    likelihood's inputs, given its gradients with respect to them (lower
    triangles for the Cholesky factors; ``g_chol_e`` is (M, M), the outcome first)."""
    k = ints[H_K]
    off_y = ints[H_SD_Y]
    if off_y >= 0:
        grad[off_y] += g_chol_e[0, 0] * math.exp(x[off_y])
    gs = [g_loc, g_slope, g_log_sigma.reshape((1, -1))]
    for f in range(3):
        _family_back(x, grad, ints, floats, f, np.ascontiguousarray(gs[f]))
    scratch = np.zeros(x.shape[0])
    low_e = np.ones((1, 1))
    low_c = np.ones((1, 1))
    z_e = np.zeros(0)
    z_c = np.zeros(0)
    rem_e = np.ones((1, 2))
    rem_c = np.ones((1, 2))
    if k > 1:
        _, low_e, z_e, rem_e = _lkj(x, scratch, floats, ints[H_CPC_E], k, ints[H_FL_CPC])
        low_c, z_c, rem_c = low_e, z_e, rem_e
        if ints[H_FREE] == 1:
            _, low_c, z_c, rem_c = _lkj(x, scratch, floats, ints[H_CPC_C], k, ints[H_FL_CPC])
    g_low_e = np.zeros((k, k))
    g_low_c = np.zeros((k, k))
    for i in range(k):
        sd_e = math.exp(x[ints[H_SD_E] + i])
        sd_c = math.exp(x[ints[H_SD_C] + i])
        acc_e = 0.0
        acc_c = 0.0
        for j in range(i + 1):
            acc_e += g_chol_e[i + 1, j + 1] * low_e[i, j]
            acc_c += g_chol_c[i, j] * low_c[i, j]
            g_low_e[i, j] = sd_e * g_chol_e[i + 1, j + 1]
            g_low_c[i, j] = sd_c * g_chol_c[i, j]
        grad[ints[H_SD_E] + i] += acc_e * sd_e
        grad[ints[H_SD_C] + i] += acc_c * sd_c
    if k > 1:
        if ints[H_FREE] == 1:
            gz_c = _corr_cholesky_back(z_c, k, rem_c, g_low_c)
            _cpc_back(grad, ints[H_CPC_C], z_c, gz_c)
        else:
            g_low_e += g_low_c
        gz_e = _corr_cholesky_back(z_e, k, rem_e, g_low_e)
        _cpc_back(grad, ints[H_CPC_E], z_e, gz_e)


@_inline
def _cpc_back(grad: np.ndarray, off: int, z: np.ndarray, gz: np.ndarray) -> None:
    # z = 2 u - 1, u = logistic(y): dz/dy = 2 u (1 - u) = (1 - z^2) / 2
    for t in range(z.shape[0]):
        grad[off + t] += gz[t] * 0.5 * (1.0 - z[t] * z[t])

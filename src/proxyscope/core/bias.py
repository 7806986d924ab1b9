"""The design-bias terms of the compiled log posterior (DESIGN.md §8).

A design whose estimates may be biased (not ``ab`` or ``cluster``) has, per
cell, a bias b_c ~ N(0, Sigma_d), integrated out by adding Sigma_d to the
cell's covariance. Sigma_d = L L' with L = diag(sd_d) L_corr: per-metric
scales sampled as their logarithm (HalfNormal prior) and an LKJ correlation
from canonical partial correlations (the same maps as
:mod:`proxyscope.core.density` uses for Omega_E and Omega_C). The likelihood
kernel sees "kernel segments", one per (segment, design group) present in
the data: :func:`bias_forward` gives each the parameters of its segment and
the Sigma of its design, :func:`bias_back` folds the gradients back. The
layout of these parameters is in the header of ``ints``
(:data:`proxyscope.core.density.H_BIAS_N` and after).
"""

from __future__ import annotations

import math

import numpy as np

from proxyscope.core.density import (
    H_BIAS,
    H_BIAS_N,
    H_FL_BIAS,
    H_K,
    H_KSEG,
    H_S,
    H_TIME_P,
    _corr_cholesky_back,
    _cpc_back,
    _half_normal_log,
    _jit,
    _lkj,
)


@_jit
def bias_forward(
    x: np.ndarray,
    grad: np.ndarray,
    ints: np.ndarray,
    floats: np.ndarray,
    loc: np.ndarray,
    slope: np.ndarray,
    sig2: np.ndarray,
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The design-bias covariances and the kernel's inputs per kernel segment.

    A biased design d has Sigma_d = L L', L = diag(sd_d) L_corr, sd_d ~
    HalfNormal (scale ``floats[fl]``), L_corr ~ LKJ (shapes after it): the
    bias b_c ~ N(0, Sigma_d) of its cells is integrated out by adding Sigma_d
    to their covariance. The kernel sees "kernel segments", one per (segment,
    design group) present in the data, each with its segment's parameters and
    Sigma of its design (0 for the randomized ones) as ``v_add``.

    Returns the log prior of the bias parameters (its gradient is added to
    ``grad``), ``loc``, ``slope`` and ``sig2`` per kernel segment and
    ``v_add`` (packed lower triangle, (M (M + 1) / 2, n)).
    """
    k = ints[H_K]
    m = k + 1
    n_bias = ints[H_BIAS_N]
    fl = ints[H_FL_BIAS]
    per = m + m * (m - 1) // 2
    lp = 0.0
    sigmas = np.zeros((n_bias + 1, m, m))
    for g in range(n_bias):
        off = ints[H_BIAS] + g * per
        sd = np.empty(m)
        for i in range(m):
            v, d = _half_normal_log(x[off + i], floats[fl])
            lp += v
            grad[off + i] += d
            sd[i] = math.exp(x[off + i])
        v, low, _, _ = _lkj(x, grad, floats, off + m, m, fl + 1)
        lp += v
        for i in range(m):
            for j in range(i + 1):
                acc = 0.0
                for q in range(j + 1):
                    acc += low[i, q] * low[j, q]
                sigmas[g + 1, i, j] = sd[i] * sd[j] * acc
    kt = ints[H_KSEG]
    n_k = ints[kt]
    loc_k = np.empty((loc.shape[0], n_k))
    slope_k = np.empty((slope.shape[0], n_k))
    sig2_k = np.empty(n_k)
    v_add = np.zeros((m * (m + 1) // 2, n_k))
    for t in range(n_k):
        b = ints[kt + 1 + t]
        g = ints[kt + 1 + n_k + t]
        for i in range(loc.shape[0]):
            loc_k[i, t] = loc[i, b]
        for i in range(slope.shape[0]):
            slope_k[i, t] = slope[i, b]
        sig2_k[t] = sig2[b]
        if g > 0:
            for i in range(m):
                for j in range(i + 1):
                    v_add[i * (i + 1) // 2 + j, t] = sigmas[g, i, j]
    return lp, loc_k, slope_k, sig2_k, v_add


@_jit
def bias_back(
    x: np.ndarray,
    grad: np.ndarray,
    ints: np.ndarray,
    floats: np.ndarray,
    g_loc_k: np.ndarray,
    g_slope_k: np.ndarray,
    g_sig2_k: np.ndarray,
    g_v: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fold the kernel segments' gradients back onto the segments; add Sigma_d's to ``grad``.

    ``g_v`` is the likelihood's gradient with respect to each kernel segment's
    covariance (packed, entry (i, j) the gradient at (i, j) and at (j, i));
    returns the gradients with respect to ``loc``, ``slope`` and ``sig2`` per
    segment.
    """
    k = ints[H_K]
    m = k + 1
    # Segments as the kernel segments index them: virtual (period, segment)
    # pairs when the relation moves over time (proxyscope.core.timewalk).
    n_seg = ints[H_S] * max(ints[H_TIME_P], 1)
    n_bias = ints[H_BIAS_N]
    fl = ints[H_FL_BIAS]
    per = m + m * (m - 1) // 2
    kt = ints[H_KSEG]
    n_k = ints[kt]
    g_loc = np.zeros((g_loc_k.shape[0], n_seg))
    g_slope = np.zeros((g_slope_k.shape[0], n_seg))
    g_sig2 = np.zeros(n_seg)
    g_sigma = np.zeros((n_bias + 1, g_v.shape[0]))
    for t in range(n_k):
        b = ints[kt + 1 + t]
        g = ints[kt + 1 + n_k + t]
        for i in range(g_loc_k.shape[0]):
            g_loc[i, b] += g_loc_k[i, t]
        for i in range(g_slope_k.shape[0]):
            g_slope[i, b] += g_slope_k[i, t]
        g_sig2[b] += g_sig2_k[t]
        for q in range(g_v.shape[0]):
            g_sigma[g, q] += g_v[q, t]
    scratch = np.zeros(x.shape[0])
    for g in range(n_bias):
        off = ints[H_BIAS] + g * per
        _, low, z, rem = _lkj(x, scratch, floats, off + m, m, fl + 1)
        sd = np.empty(m)
        for i in range(m):
            sd[i] = math.exp(x[off + i])
        # Sigma = L L' with L = diag(sd) low: d/dL = 2 G L (G symmetric).
        full = np.empty((m, m))
        for i in range(m):
            for j in range(i + 1):
                full[i, j] = g_sigma[g + 1, i * (i + 1) // 2 + j]
                full[j, i] = full[i, j]
        g_low = np.zeros((m, m))
        for i in range(m):
            acc_sd = 0.0
            for j in range(i + 1):
                gl = 0.0
                for q in range(m):
                    gl += 2.0 * full[i, q] * sd[q] * low[q, j]
                acc_sd += gl * low[i, j]
                g_low[i, j] = sd[i] * gl
            grad[off + i] += acc_sd * sd[i]
        if m > 1:
            gz = _corr_cholesky_back(z, m, rem, g_low)
            _cpc_back(grad, off + m, z, gz)
    return g_loc, g_slope, g_sig2

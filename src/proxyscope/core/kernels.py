"""Compiled kernels for the model's likelihood: many small Gaussians at once.

Model (standardized units; M = K + 1 metrics, outcome first). For a cell
c = (e, s) with observed effects d_c and sampling covariance S_c:

    theta_c = mu_s + eta_e + zeta_c,        zeta_c ~ N(0, Omega_C)
    tau_c   = nu_s + beta_s'(theta_c - mu_s) + eps_c,   eps_c ~ N(0, sigma_s^2)
    d_c     ~ N((tau_c, theta_c), S_c),     eta_e = L_E z_e,  z_e ~ N(0, I_K)

Integrating zeta_c and eps_c out gives, given eta_e,

    d_c | eta_e ~ N(m_s + H_s eta_e, A_c),  m_s = (nu_s, mu_s),  H_s = [beta_s' ; I_K]
    A_c = V_s + S_c,   V_s = [[beta' Oc beta + sigma^2, (Oc beta)'], [Oc beta, Oc]]

and integrating eta_e out gives the likelihood of experiment e:

    log p(d_e) = sum_c log N(r_c; 0, A_c) + bt' Q^-1 bt / 2 - log det Q / 2
    r_c = d_c - m_s,  W_c = A_c^-1,  P = sum_c H' W_c H,  b = sum_c H' W_c r_c,
    Q = I + L_E' P L_E,  bt = L_E' b.

Gradients come from the identity log p(d) = log p(d | z*) + log p(z*) -
log p(z* | d) at the posterior mode z*, whose first two terms are stationary
in z*. With eta* = L_E z*, x_c = W_c (r_c - H eta*), G_c = W_c H and
R = L_E Q^-1 L_E' (the posterior covariance of eta_e):

    d/dr_c = -x_c,      d/dA_c = (x_c x_c' - W_c + G_c R G_c') / 2
    d/dH_c = x_c eta*' - G_c R,   d/dL_E = (b - P eta*) z*' - P L_E Q^-1

and the chain rule through A_c = V_s + S_c, r_c = d_c - m_s and V_s(beta_s,
sigma_s^2, Oc = L_C L_C') back to the segment parameters happens here too, so
the PyTensor graph around the kernel stays tiny (fast to compile).

Layout: cell arrays are "structure of arrays", cell axis last (d[M, C],
S[M, M, C]); every step of the small-matrix algebra is a loop over cells that
the compiler vectorises. Done cell by cell the chain of divisions and square
roots of a 5 x 5 Cholesky is latency-bound and several times slower, and
gathers/scatters are written with the cell loop innermost so that memory is
read contiguously.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np

LOG_2PI = math.log(2.0 * math.pi)

# "numpy" error model: no zero-division branch in every division, which would
# stop LLVM from vectorising the cell loops. Fast-math is limited to
# reassociation and contraction (so sums over cells vectorise); NaN and inf
# keep their IEEE meaning because the kernels test for them.
_jit = numba.njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract", "nsz"})


@_jit
def _factor_all(a: np.ndarray, low: np.ndarray, inv_diag: np.ndarray, bad: np.ndarray) -> None:
    """Lower Cholesky factors of every cell's matrix (cells last).

    Cells whose matrix is not positive definite are flagged in ``bad`` and
    factored as if their failing pivot were 1, so the loops stay branch-free.
    """
    m = a.shape[0]
    n = a.shape[2]
    s = np.empty(n)
    for j in range(m):
        for c in range(n):
            s[c] = a[j, j, c]
        for k in range(j):
            for c in range(n):
                s[c] -= low[j, k, c] * low[j, k, c]
        for c in range(n):
            v = s[c]
            if not v > 0.0:  # also catches NaN
                bad[c] = True
                v = 1.0
            d = math.sqrt(v)
            low[j, j, c] = d
            inv_diag[j, c] = 1.0 / d
        for i in range(j + 1, m):
            for c in range(n):
                s[c] = a[i, j, c]
            for k in range(j):
                for c in range(n):
                    s[c] -= low[i, k, c] * low[j, k, c]
            for c in range(n):
                low[i, j, c] = s[c] * inv_diag[j, c]


@_jit
def _small_cholesky(a: np.ndarray, out: np.ndarray) -> bool:
    n = a.shape[0]
    for j in range(n):
        s = a[j, j]
        for k in range(j):
            s -= out[j, k] * out[j, k]
        if not s > 0.0:
            return False
        d = math.sqrt(s)
        out[j, j] = d
        for i in range(j + 1, n):
            t = a[i, j]
            for k in range(j):
                t -= out[i, k] * out[j, k]
            out[i, j] = t / d
        for i in range(j):
            out[i, j] = 0.0
    return True


@_jit
def _small_inverse(low: np.ndarray, out: np.ndarray) -> float:
    """Inverse of ``low low'`` into ``out``; returns its log determinant."""
    n = low.shape[0]
    work = np.zeros((n, n))
    logdet = 0.0
    for j in range(n):
        logdet += 2.0 * math.log(low[j, j])
        work[j, j] = 1.0 / low[j, j]
        for i in range(j + 1, n):
            t = 0.0
            for k in range(j, i):
                t -= low[i, k] * work[k, j]
            work[i, j] = t / low[i, i]
    for i in range(n):
        for j in range(i + 1):
            t = 0.0
            for k in range(i, n):
                t += work[k, i] * work[k, j]
            out[i, j] = t
            out[j, i] = t
    return logdet


@_jit
def segment_covariances(
    beta: np.ndarray, sig2: np.ndarray, chol_c: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``V[M, M, S]`` of every segment and ``Oc = L_C L_C'``."""
    k, n_seg = beta.shape
    m = k + 1
    oc = chol_c @ chol_c.T
    v = np.empty((m, m, n_seg))
    for s in range(n_seg):
        vyy = sig2[s]
        for i in range(k):
            t = 0.0
            for j in range(k):
                t += oc[i, j] * beta[j, s]
            v[0, i + 1, s] = t
            v[i + 1, 0, s] = t
            vyy += beta[i, s] * t
            for j in range(k):
                v[i + 1, j + 1, s] = oc[i, j]
        v[0, 0, s] = vyy
    return v, oc


def n_packed(m: int) -> int:
    """Length of a packed lower triangle of an m x m matrix."""
    return m * (m + 1) // 2


@_jit
def reduce_experiments(
    cexp: np.ndarray, n_exp: int, o1: np.ndarray, r_quad: int, r_bc: int, r_pc: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sum the cells' pass-1 outputs per experiment (cells sorted by experiment).

    ``o1`` rows (see :func:`proxyscope.core.codegen.layout`): -r'Wr/2 at
    ``r_quad``, then 1/sqrt(det A), the ok flag; H'Wr at ``r_bc``; packed
    H'WH at ``r_pc``. Returns lp (E,) at eta = 0, b = sum H'Wr (E, K),
    P = sum H'WH (E, K, K) and a flag per experiment holding a failed cell.
    """
    n = cexp.shape[0]  # o1 may be padded past the last cell
    k = r_pc - r_bc
    lp = np.zeros(n_exp)
    b_sum = np.zeros((n_exp, k))
    p_sum = np.zeros((n_exp, k, k))
    exp_bad = np.zeros(n_exp, dtype=np.bool_)
    const = -0.5 * (k + 1) * LOG_2PI
    cell_lp = np.empty(n)
    for c in range(n):
        cell_lp[c] = o1[r_quad, c] + math.log(o1[r_quad + 1, c]) + const
    t0 = 0
    while t0 < n:
        e = cexp[t0]
        t1 = t0 + 1
        while t1 < n and cexp[t1] == e:
            t1 += 1
        acc = 0.0
        for c in range(t0, t1):
            acc += cell_lp[c]
            if o1[r_quad + 2, c] == 0.0:
                exp_bad[e] = True
        lp[e] += acc
        for i in range(k):
            acc = 0.0
            for c in range(t0, t1):
                acc += o1[r_bc + i, c]
            b_sum[e, i] += acc
            for j in range(i + 1):
                acc = 0.0
                q = r_pc + i * (i + 1) // 2 + j
                for c in range(t0, t1):
                    acc += o1[q, c]
                p_sum[e, i, j] += acc
                if j != i:
                    p_sum[e, j, i] += acc
        t0 = t1
    return lp, b_sum, p_sum, exp_bad


@_jit
def experiment_step(
    p_sum: np.ndarray,
    b_sum: np.ndarray,
    chol_e: np.ndarray,
    lp: np.ndarray,
    exp_bad: np.ndarray,
    want_grad: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integrate eta_e out of every experiment (adds to ``lp`` in place).

    Returns eta* (E, K), R = L Q^-1 L' (E, K, K) and d/dL_E of sum(lp).
    """
    n_exp, k = b_sum.shape
    eta = np.zeros((n_exp, k))
    rr = np.zeros((n_exp, k, k))
    g_chol_e = np.zeros((k, k))
    pl = np.empty((k, k))
    q = np.empty((k, k))
    lq = np.empty((k, k))
    qinv = np.empty((k, k))
    bt = np.empty(k)
    z = np.empty(k)
    lqinv = np.empty((k, k))
    for e in range(n_exp):
        if exp_bad[e]:
            lp[e] = -np.inf
            continue
        for i in range(k):
            for j in range(k):
                acc = 0.0
                for s in range(k):
                    acc += p_sum[e, i, s] * chol_e[s, j]
                pl[i, j] = acc
        for i in range(k):
            for j in range(k):
                acc = 1.0 if i == j else 0.0
                for s in range(k):
                    acc += chol_e[s, i] * pl[s, j]
                q[i, j] = acc
        if not _small_cholesky(q, lq):
            lp[e] = -np.inf
            exp_bad[e] = True
            continue
        logdet_q = _small_inverse(lq, qinv)
        for i in range(k):
            acc = 0.0
            for s in range(k):
                acc += chol_e[s, i] * b_sum[e, s]
            bt[i] = acc
        quad = 0.0
        for i in range(k):
            acc = 0.0
            for j in range(k):
                acc += qinv[i, j] * bt[j]
            z[i] = acc
            quad += bt[i] * acc
        lp[e] += 0.5 * quad - 0.5 * logdet_q
        if not want_grad:
            continue
        for i in range(k):
            acc = 0.0
            for s in range(k):
                acc += chol_e[i, s] * z[s]
            eta[e, i] = acc
        for i in range(k):
            for j in range(k):
                acc = 0.0
                for s in range(k):
                    acc += chol_e[i, s] * qinv[s, j]
                lqinv[i, j] = acc
        for i in range(k):
            for j in range(k):
                acc = 0.0
                for s in range(k):
                    acc += lqinv[i, s] * chol_e[j, s]
                rr[e, i, j] = acc
        # d/dL = (b - P eta*) z*' - P L Q^-1
        for i in range(k):
            acc = b_sum[e, i]
            for s in range(k):
                acc -= p_sum[e, i, s] * eta[e, s]
            for j in range(i + 1):
                u = 0.0
                for s in range(k):
                    u += pl[i, s] * qinv[s, j]
                g_chol_e[i, j] += acc * z[j] - u
    return eta, rr, g_chol_e


@_jit
def reduce_segments(
    seg: np.ndarray, n_seg: int, o2: np.ndarray, m: int, nw: int, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sum pass-2 outputs into segments: d/dloc (M, S), packed d/dV (S), d/dbeta (K, S)."""
    n = seg.shape[0]  # o2 may be padded past the last cell
    g_loc = np.zeros((m, n_seg))
    g_v = np.zeros((nw, n_seg))
    g_beta = np.zeros((k, n_seg))
    for i in range(m):
        for c in range(n):
            g_loc[i, seg[c]] += o2[i, c]
    for q in range(nw):
        for c in range(n):
            g_v[q, seg[c]] += o2[m + q, c]
    for j in range(k):
        for c in range(n):
            g_beta[j, seg[c]] += o2[m + nw + j, c]
    return g_loc, g_v, g_beta


@_jit
def chain_rule(
    g_v: np.ndarray,
    g_beta: np.ndarray,
    beta: np.ndarray,
    v_seg: np.ndarray,
    oc: np.ndarray,
    chol_c: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Push d/dV_s back to beta_s (in place), sigma_s^2 and L_C.

    ``g_v`` is packed: entry (i, j), j <= i, is the (symmetric) gradient with
    respect to the full matrix V_s at (i, j) and (j, i).
    """
    k, n_seg = beta.shape
    g_sig2 = np.zeros(n_seg)
    g_oc = np.zeros((k, k))
    for s in range(n_seg):
        gvyy = g_v[0, s]
        g_sig2[s] = gvyy
        for i in range(k):
            # w = Oc beta sits at V[0, i+1] and V[i+1, 0]
            gw_i = 2.0 * g_v[(i + 1) * (i + 2) // 2, s]
            # V00 = beta' Oc beta + sig2
            g_beta[i, s] += 2.0 * gvyy * v_seg[0, i + 1, s]
            for j in range(k):
                g_beta[j, s] += oc[j, i] * gw_i
                g_oc[i, j] += gvyy * beta[i, s] * beta[j, s] + gw_i * beta[j, s]
                a, b = (i + 1, j + 1) if j <= i else (j + 1, i + 1)
                g_oc[i, j] += g_v[a * (a + 1) // 2 + b, s]
    # Oc = L L':  d/dL = (G + G') L, lower triangle only.
    g_chol_c = np.zeros((k, k))
    for i in range(k):
        for j in range(i + 1):
            acc = 0.0
            for s in range(k):
                acc += (g_oc[i, s] + g_oc[s, i]) * chol_c[s, j]
            g_chol_c[i, j] = acc
    return g_sig2, g_chol_c


def pack_cells(d: np.ndarray, s_cov: np.ndarray) -> np.ndarray:
    """Constant per-cell data in the kernel's layout.

    ``d[M, C]`` and ``s_cov[M, M, C]`` become one array whose first rows are
    the packed lower triangle of each S_c and whose last M rows are d_c.
    """
    m, n = d.shape
    rows = [s_cov[i, j] for i in range(m) for j in range(i + 1)]
    return np.ascontiguousarray(np.vstack([np.asarray(rows).reshape(-1, n), d]), dtype=np.float64)


def proxy_model_logp(
    dat: np.ndarray,
    seg: np.ndarray,
    cexp: np.ndarray,
    n_exp: int,
    loc: np.ndarray,
    beta: np.ndarray,
    sig2: np.ndarray,
    chol_c: np.ndarray,
    chol_e: np.ndarray,
    want_grad: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Log likelihood per experiment and the gradient of its sum.

    Parameters
    ----------
    dat : (M (M + 1) / 2 + M, C) data from :func:`pack_cells`.
    seg, cexp : (C,) int64 segment and experiment index of every cell; cells
        must be sorted by experiment (``cexp`` non-decreasing).
    n_exp : number of experiments.
    loc : (M, S) segment means, row 0 the long-term effect nu_s, then mu_s.
    beta : (K, S) segment slopes.
    sig2 : (S,) residual variances sigma_s^2.
    chol_c, chol_e : (K, K) lower Cholesky factors of Omega_C and Omega_E.
    want_grad : compute the gradients (otherwise zeros).

    Returns
    -------
    lp (E,), then the gradients of ``lp.sum()`` with respect to loc (M, S),
    beta (K, S), sig2 (S,), chol_c (K, K) and chol_e (K, K) (lower
    triangles). An experiment with a cell whose covariance is not positive
    definite gets ``-inf``.
    """
    return logp_kernel(beta.shape[0])(
        dat, seg, cexp, n_exp, loc, beta, sig2, chol_c, chol_e, want_grad
    )


def logp_kernel(k: int) -> Any:
    """The compiled likelihood kernel for K proxies (same signature as
    :func:`proxy_model_logp`, callable from numba code)."""
    from proxyscope.core.codegen import load_kernel_module

    return load_kernel_module(k).logp


@_jit
def cell_logp(r: np.ndarray, a: np.ndarray) -> np.ndarray:
    """log N(r_c; 0, a_c) for every cell; ``r[M, C]``, ``a[M, M, C]``.

    ``-inf`` where a cell's matrix is not positive definite.
    """
    m, n = r.shape
    low = np.empty((m, m, n))
    inv_diag = np.empty((m, n))
    bad = np.zeros(n, dtype=np.bool_)
    _factor_all(a, low, inv_diag, bad)
    out = np.full(n, -0.5 * m * LOG_2PI)
    zz = np.empty((m, n))
    for i in range(m):
        for c in range(n):
            zz[i, c] = r[i, c]
        for s in range(i):
            for c in range(n):
                zz[i, c] -= low[i, s, c] * zz[s, c]
        for c in range(n):
            zz[i, c] *= inv_diag[i, c]
            out[c] += -0.5 * zz[i, c] * zz[i, c] + math.log(inv_diag[i, c])
    for c in range(n):
        if bad[c]:
            out[c] = -np.inf
    return out

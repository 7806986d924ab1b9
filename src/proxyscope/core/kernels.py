"""Compiled kernels for the model's likelihood: many small Gaussians at once.

Model (standardized units; M = K + 1 metrics, outcome first). For a cell
c = (e, s) with observed effects d_c and sampling covariance S_c:

    theta_c = mu_s + eta_e + zeta_c,        zeta_c ~ N(0, Omega_C)
    tau_c   = nu_s + eta0_e + beta_s'(theta_c - mu_s) + eps_c,   eps_c ~ N(0, sigma_s^2)
    d_c     ~ N((tau_c, theta_c), S_c)

The experiment effect has J = K + 1 dims, (eta0_e, eta_e) = L_E z_e with
z_e ~ N(0, I_J): eta0_e is the experiment's long-term effect that no proxy
carries, shared by its cells, independent of the proxies' eta_e, so L_E =
diag(omega0, L_proxies) (:func:`experiment_cholesky`). Integrating zeta_c and
eps_c out gives, given the experiment effect,

    d_c | eta_e ~ N(m_s + H_s (eta0_e, eta_e), A_c),  m_s = (nu_s, mu_s),
    H_s = [e_0, (beta_s' ; I_K)]  (M x J),
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

Layout: the per-cell work arrays are blocks of ``LANES`` cells, (blocks,
rows, LANES), so that one quantity of a block's cells is one SIMD register;
the per-cell loops are generated for each K (:mod:`proxyscope.core.codegen`).
Measured on the default world (1,182 cells, K = 4), one log density and
gradient: 270 us with the cell axis last and scalar code, 110 us blocked.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np

LOG_2PI = math.log(2.0 * math.pi)

#: Cells per block of the generated loops' work arrays, laid out
#: (blocks, rows, LANES); see :mod:`proxyscope.core.codegen`.
LANES = 4

# "numpy" error model: no zero-division branch in every division, which would
# stop LLVM from vectorising the cell loops. No fast-math: with reassociation
# or contraction allowed, LLVM may round differently where a kernel is inlined
# into the caller compiled in the same process than where the caller links
# the cached object code, so the first fit after a compile differed from
# later same-seed fits (measured: cold run != warm runs; with strict IEEE
# all equal, at the same speed since the blocked layout needs no
# reassociation to vectorise).
_FLAGS: dict[str, Any] = {
    "cache": True,
    "error_model": "numpy",
    "fastmath": False,
}
_jit = numba.njit(**_FLAGS)
#: For the orchestration of the generated kernels: inlined into the caller's
#: numba IR, so the one function a sampler calls links every compiled piece
#: once (each separately compiled caller in a chain optimises and
#: code-generates everything it links again).
_inline_jit = numba.njit(inline="always", **_FLAGS)


def lanes_jit(signature: str) -> Any:
    """Compile the generated per-block loops now, for one signature, with SLP on.

    Numba leaves LLVM's superword-level vectoriser off by default (numba issue
    #8705, a miscompilation in other code); the generated loops need it to pack
    the lanes of a block into SIMD instructions (see ``codegen.LANES``). It is
    switched on only while these two functions are compiled, under numba's
    compiler lock so that no other compilation sees it; the eager signature
    keeps them from being compiled again later without it, and their on-disk
    cache entries are only ever written from this path. The kernel tests
    compare the result with an independent dense computation.
    """

    def decorate(func: Any) -> Any:
        from numba.core.compiler_lock import global_compiler_lock

        with global_compiler_lock:
            old = numba.config.SLP_VECTORIZE
            numba.config.SLP_VECTORIZE = 1
            try:
                return numba.njit(signature, **_FLAGS)(func)
            finally:
                numba.config.SLP_VECTORIZE = old

    return decorate


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
    """Constant per-cell data in the kernel's layout: (blocks, rows, LANES).

    Cell c sits in block c // LANES, lane c % LANES. Its rows are the packed
    lower triangle of S_c (``d[M, C]``, ``s_cov[M, M, C]``), then d_c. Lanes
    past the last cell hold an identity S and a zero d, so every lane's
    matrix is positive definite; they are never reduced.
    """
    m, n = d.shape
    nw = m * (m + 1) // 2
    n_blocks = (n + LANES - 1) // LANES
    flat = np.zeros((nw + m, n_blocks * LANES))
    for i in range(m):
        flat[i * (i + 1) // 2 + i, n:] = 1.0
        for j in range(i + 1):
            flat[i * (i + 1) // 2 + j, :n] = s_cov[i, j]
        flat[nw + i, :n] = d[i]
    return np.ascontiguousarray(flat.reshape(nw + m, n_blocks, LANES).transpose(1, 0, 2))


def experiment_cholesky(sd_outcome: float | np.ndarray, chol_proxies: np.ndarray) -> np.ndarray:
    """The (K + 1) x (K + 1) factor diag(sd_outcome, chol_proxies) the kernel takes.

    ``sd_outcome`` is the sd of the outcome's own experiment effect (0 where
    the model has none), ``chol_proxies`` the lower Cholesky factor of the
    proxies' Omega_E; with any leading (draw) axes.
    """
    chol = np.asarray(chol_proxies, dtype=float)
    k = chol.shape[-1]
    out = np.zeros((*chol.shape[:-2], k + 1, k + 1))
    out[..., 0, 0] = sd_outcome
    out[..., 1:, 1:] = chol
    return out


@_jit
def cell_logliks(
    d: np.ndarray,
    s_cov: np.ndarray,
    seg: np.ndarray,
    cexp: np.ndarray,
    loc: np.ndarray,
    beta: np.ndarray,
    sig2: np.ndarray,
    chol_c: np.ndarray,
    eta: np.ndarray,
    bias: np.ndarray,
    group: np.ndarray,
    offset: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Per draw and cell: log N(d_c; m_c, A_c) and the outcome's conditional log density.

    ``d[M, C]``, ``s_cov[M, M, C]``; per draw ``loc[N, M, S]``,
    ``beta[N, K, S]``, ``sig2[N, S]``, ``chol_c[N, K, K]``, ``eta[N, E, M]``
    (the outcome's own experiment effect first, then the proxies').
    ``bias[N, G, M, M]`` holds each design group's bias covariance (group 0,
    the randomized designs, zeros) and ``group[C]`` each cell's group.
    ``offset[N, E, M]`` (or an empty array: none) is subtracted from the
    estimates of each experiment's cells (the experiments' shared errors).
    The cell's mean is m_c = m_s + H_s eta_e and A_c = V_s + S_c + bias. The matrix
    is factored with the proxies first and the outcome last, so the last
    pivot is the outcome's variance given the proxy estimates and the last
    term of the forward solve its standardized residual: one factorization
    gives both log N(d_c) (returned first, (N, C)) and log p(d^y_c | d^theta_c)
    (second). A matrix that is not positive definite gives ``-inf`` in both.
    """
    n_draw = loc.shape[0]
    m, n = d.shape
    k = m - 1
    full = np.empty((n_draw, n))
    outcome = np.empty((n_draw, n))
    perm = np.empty(m, dtype=np.int64)
    for i in range(k):
        perm[i] = i + 1
    perm[k] = 0
    a = np.empty((m, m))
    low = np.empty((m, m))
    r = np.empty(m)
    z = np.empty(m)
    has_offset = offset.shape[0] > 0
    for t in range(n_draw):
        v_seg, _ = segment_covariances(beta[t], sig2[t], chol_c[t])
        for c in range(n):
            s = seg[c]
            e = cexp[c]
            shift = eta[t, e, 0]
            for j in range(k):
                shift += beta[t, j, s] * eta[t, e, j + 1]
            for i in range(m):
                pi = perm[i]
                mean = loc[t, pi, s] + (shift if pi == 0 else eta[t, e, pi])
                r[i] = d[pi, c] - mean
                if has_offset:
                    r[i] -= offset[t, e, pi]
                for j in range(i + 1):
                    pj = perm[j]
                    a[i, j] = v_seg[pi, pj, s] + s_cov[pi, pj, c] + bias[t, group[c], pi, pj]
            ok = _small_cholesky(a, low)
            if not ok:
                full[t, c] = -np.inf
                outcome[t, c] = -np.inf
                continue
            quad = 0.0
            logdet = 0.0
            for i in range(m):
                acc = r[i]
                for j in range(i):
                    acc -= low[i, j] * z[j]
                z[i] = acc / low[i, i]
                quad += z[i] * z[i]
                logdet += math.log(low[i, i])
            full[t, c] = -0.5 * (quad + m * LOG_2PI) - logdet
            outcome[t, c] = -0.5 * (z[k] * z[k] + LOG_2PI) - math.log(low[k, k])
    return full, outcome

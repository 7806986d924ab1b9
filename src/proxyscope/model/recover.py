"""What the sampler integrated out, recovered per posterior draw.

The sampler never sees the experiment effects eta_e or the per-cell latent
effects: both are integrated out analytically. Given a draw of the other
parameters their conditionals are Gaussian, so they are recovered exactly:

- eta_e | d, params ~ N(eta*_e, R_e) (from the likelihood kernel);
- the latent true effects of a cell, (tau_c, theta_c) | d_c, eta_e, params
  ~ N(m + V (V + S)^-1 (d - m), V - V (V + S)^-1 V) with m = m_s + H_s eta_e,
  V = V_s, S = S_c (+ Sigma_d for a cell of a design whose estimates may be
  biased: the bias is part of the estimate's error, not of the true effect).

Log likelihoods for model comparison come from the same algebra: per cell,
log N(d_c; m_s + H_s eta_e, V_s + S_c) given the recovered eta_e; per
experiment, the marginal log p(d_e | params) with eta_e integrated out.

When an experiment's cells share part of their errors (``FitData.shared_cov``,
U_e), the kernel integrates the shared error u_e ~ N(0, U_e) with eta_e, and
its conditional is recovered with eta_e's: the draws then carry (eta_e, u_e),
2M values per experiment, and each cell is read given both, with d_c - u_e
in place of d_c and its own part S_c - U_e in place of S_c.
"""

from __future__ import annotations

import numpy as np

from proxyscope.core.codegen import load_kernel_module
from proxyscope.core.kernels import cell_logliks, pack_cells, segment_covariances
from proxyscope.model.fitdata import FitData
from proxyscope.model.posterior import StdParameters


def experiment_conditionals(
    params: StdParameters, data: FitData
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per draw: marginal log likelihood per experiment and eta's conditional.

    Returns lp (N, E), the mean (N, E, J) and covariance (N, E, J, J) of the
    experiment effect (eta0_e, eta_e), all in standardized units; J = M, or
    2M with the experiments' shared errors u_e after them (see the module
    docstring).
    """
    k = params.slope.shape[1]
    chol_u = data.chol_u
    module = load_kernel_module(k, chol_u is not None)
    biased = has_bias(params, data)
    dat = pack_cells(data.d, data.own_cov)
    v_add = np.zeros(((k + 1) * (k + 2) // 2, params.loc.shape[2]))
    n, e = params.n_draws, data.n_experiments
    j = (k + 1) * (1 if chol_u is None else 2)
    lp = np.empty((n, e))
    mean = np.empty((n, e, j))
    cov = np.empty((n, e, j, j))
    for i in range(n):
        if biased:
            dat = pack_cells(data.d, error_cov(params, data, i))
        args = [
            dat,
            data.param_segment,
            data.cell_experiment,
            e,
            params.loc[i],
            params.slope[i],
            params.sig2[i],
            params.chol_c[i],
            params.chol_e[i],
        ]
        if chol_u is not None:
            args.append(chol_u)
        lp[i], mean[i], cov[i] = module.experiment_posterior(*args, v_add)
    return lp, mean, cov


def has_bias(params: StdParameters, data: FitData) -> bool:
    """Whether some cell's design has a bias term."""
    return bool(params.bias_cov.shape[1] > 1 and np.any(data.groups > 0))


def error_cov(params: StdParameters, data: FitData, i: int) -> np.ndarray:
    """Each cell's own estimation error covariance (M, M, C) at draw ``i``: S_c +
    Sigma_d(c), less the experiment's shared part when there is one."""
    bias = params.bias_cov[i][data.groups]  # (C, M, M)
    return np.ascontiguousarray(data.own_cov + np.moveaxis(bias, 0, -1))


def split_shared(eta: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Draws of (eta0_e, eta_e) and of the shared errors u_e (None without them)
    from draws of the experiment's latent (..., E, M or 2M)."""
    if eta.shape[-1] == m:
        return eta, None
    return np.ascontiguousarray(eta[..., :m]), np.ascontiguousarray(eta[..., m:])


def draw_gaussian(mean: np.ndarray, cov: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw from each N(mean[..., :], cov[..., :, :])."""
    k = mean.shape[-1]
    jitter = 1e-12 * np.eye(k)
    low = np.linalg.cholesky(0.5 * (cov + np.swapaxes(cov, -1, -2)) + jitter)
    z = rng.standard_normal(mean.shape)
    return np.asarray(mean + np.einsum("...ij,...j->...i", low, z))


def _cell_prior(
    params: StdParameters, i: int, data: FitData, eta: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Mean (M, C) and covariance V_s (M, M, C) of cell c's true effects given
    the experiment effects ``eta`` (E, M), the outcome's own first."""
    loc, slope = params.loc[i], params.slope[i]
    v_seg, _ = segment_covariances(slope, params.sig2[i], params.chol_c[i])
    seg, cexp = data.param_segment, data.cell_experiment
    eta_c = eta[cexp].T  # (M, C)
    mean = loc[:, seg].copy()
    mean[0] += eta_c[0] + np.sum(slope[:, seg] * eta_c[1:], axis=0)
    mean[1:] += eta_c[1:]
    return mean, v_seg[:, :, seg]


def logliks(
    params: StdParameters, data: FitData, eta: np.ndarray, shared: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Both per-cell log likelihoods, per draw and cell (N, C), original units.

    First log N(d_c; m_c, V_s + S_c) given the experiment effects (N, E, M)
    (and the shared errors ``shared`` (N, E, M), which shift d_c, with each cell's
    own S_c - U_e: the cell's density given everything its experiment shares); second the long-term
    estimate's density given the cell's proxy estimates, log p(d^y_c | d^theta_c),
    the conditional of the same Gaussian: it scores how well the proxies
    predict the long-term effect, so it is comparable across models with
    different proxy sets. In standardized units the densities differ from the
    original-units ones by the constants log |diag(scales)| and log(scale_y),
    which are added so values are comparable across fits of the same data.
    One compiled pass over draws and cells (:func:`cell_logliks`).
    """
    full, outcome = cell_logliks(
        np.ascontiguousarray(data.d, dtype=np.float64),
        np.ascontiguousarray(data.own_cov, dtype=np.float64),
        np.ascontiguousarray(data.param_segment, dtype=np.int64),
        np.ascontiguousarray(data.cell_experiment, dtype=np.int64),
        np.ascontiguousarray(params.loc, dtype=np.float64),
        np.ascontiguousarray(params.slope, dtype=np.float64),
        np.ascontiguousarray(params.sig2, dtype=np.float64),
        np.ascontiguousarray(params.chol_c, dtype=np.float64),
        np.ascontiguousarray(eta, dtype=np.float64),
        np.ascontiguousarray(params.bias_cov, dtype=np.float64),
        np.ascontiguousarray(data.groups, dtype=np.int64),
        np.zeros((0, 0, 0)) if shared is None else np.ascontiguousarray(shared, dtype=np.float64),
    )
    full -= float(np.sum(np.log(data.scales)))
    outcome -= float(np.log(data.scales[0]))
    return full, outcome


def latent_moments(
    params: StdParameters,
    data: FitData,
    eta: np.ndarray,
    i: int,
    shared: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean (C, M) and covariance (C, M, M) of every cell's true effects.

    For draw ``i`` (standardized units): the Gaussian conditional of
    (tau_c, theta_c) given d_c, eta_e, the experiment's shared error u_e
    (``shared`` (N, E, M); none without it) and the parameters.
    """
    mean, v = _cell_prior(params, i, data, eta[i])
    v = np.moveaxis(v, -1, 0)  # (C, M, M)
    s = np.moveaxis(error_cov(params, data, i) if has_bias(params, data) else data.own_cov, -1, 0)
    d = data.d if shared is None else data.d - shared[i][data.cell_experiment].T
    resid = (d - mean).T  # (C, M)
    total = v + s
    gain = np.linalg.solve(total, v).swapaxes(-1, -2)  # V (V + S)^-1, V and V+S symmetric
    post_mean = mean.T + np.einsum("cij,cj->ci", gain, resid)
    post_cov = v - gain @ v
    return post_mean, 0.5 * (post_cov + post_cov.swapaxes(-1, -2))

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
"""

from __future__ import annotations

import numpy as np

from proxyscope.core.codegen import load_kernel_module
from proxyscope.core.kernels import cell_logliks, pack_cells, segment_covariances
from proxyscope.model.posterior import StdParameters
from proxyscope.model.structure import FitData


def experiment_conditionals(
    params: StdParameters, data: FitData
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per draw: marginal log likelihood per experiment and eta's conditional.

    Returns lp (N, E), the mean (N, E, M) and covariance (N, E, M, M) of the
    experiment effect (eta0_e, eta_e), all in standardized units.
    """
    k = params.slope.shape[1]
    kernel = load_kernel_module(k).experiment_posterior
    biased = has_bias(params, data)
    dat = pack_cells(data.d, data.s_cov)
    v_add = np.zeros(((k + 1) * (k + 2) // 2, params.loc.shape[2]))
    n, e = params.n_draws, data.n_experiments
    lp = np.empty((n, e))
    mean = np.empty((n, e, k + 1))
    cov = np.empty((n, e, k + 1, k + 1))
    for i in range(n):
        if biased:
            dat = pack_cells(data.d, error_cov(params, data, i))
        lp[i], mean[i], cov[i] = kernel(
            dat,
            data.cell_segment,
            data.cell_experiment,
            e,
            params.loc[i],
            params.slope[i],
            params.sig2[i],
            params.chol_c[i],
            params.chol_e[i],
            v_add,
        )
    return lp, mean, cov


def has_bias(params: StdParameters, data: FitData) -> bool:
    """Whether some cell's design has a bias term."""
    return bool(params.bias_cov.shape[1] > 1 and np.any(data.groups > 0))


def error_cov(params: StdParameters, data: FitData, i: int) -> np.ndarray:
    """Each cell's estimation error covariance (M, M, C) at draw ``i``: S_c + Sigma_d(c)."""
    bias = params.bias_cov[i][data.groups]  # (C, M, M)
    return np.ascontiguousarray(data.s_cov + np.moveaxis(bias, 0, -1))


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
    seg, cexp = data.cell_segment, data.cell_experiment
    eta_c = eta[cexp].T  # (M, C)
    mean = loc[:, seg].copy()
    mean[0] += eta_c[0] + np.sum(slope[:, seg] * eta_c[1:], axis=0)
    mean[1:] += eta_c[1:]
    return mean, v_seg[:, :, seg]


def logliks(params: StdParameters, data: FitData, eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both per-cell log likelihoods, per draw and cell (N, C), original units.

    First log N(d_c; m_c, V_s + S_c) given the experiment effects (N, E, M); second the long-term
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
        np.ascontiguousarray(data.s_cov, dtype=np.float64),
        np.ascontiguousarray(data.cell_segment, dtype=np.int64),
        np.ascontiguousarray(data.cell_experiment, dtype=np.int64),
        np.ascontiguousarray(params.loc, dtype=np.float64),
        np.ascontiguousarray(params.slope, dtype=np.float64),
        np.ascontiguousarray(params.sig2, dtype=np.float64),
        np.ascontiguousarray(params.chol_c, dtype=np.float64),
        np.ascontiguousarray(eta, dtype=np.float64),
        np.ascontiguousarray(params.bias_cov, dtype=np.float64),
        np.ascontiguousarray(data.groups, dtype=np.int64),
    )
    full -= float(np.sum(np.log(data.scales)))
    outcome -= float(np.log(data.scales[0]))
    return full, outcome


def latent_moments(
    params: StdParameters, data: FitData, eta: np.ndarray, i: int
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean (C, M) and covariance (C, M, M) of every cell's true effects.

    For draw ``i`` (standardized units): the Gaussian conditional of
    (tau_c, theta_c) given d_c, eta_e and the parameters.
    """
    mean, v = _cell_prior(params, i, data, eta[i])
    v = np.moveaxis(v, -1, 0)  # (C, M, M)
    s = np.moveaxis(error_cov(params, data, i) if has_bias(params, data) else data.s_cov, -1, 0)
    resid = (data.d - mean).T  # (C, M)
    total = v + s
    gain = np.linalg.solve(total, v).swapaxes(-1, -2)  # V (V + S)^-1, V and V+S symmetric
    post_mean = mean.T + np.einsum("cij,cj->ci", gain, resid)
    post_cov = v - gain @ v
    return post_mean, 0.5 * (post_cov + post_cov.swapaxes(-1, -2))

"""The proxy model as a PyMC model: its declarative definition.

The parameters are the segment-level pieces (globals, sum-to-zero main
effects, interactions), the scales and correlations of the experiment
effects eta_e and of the within-cell effects zeta_c. Everything per cell and
per experiment is integrated out inside one Op
(:class:`proxyscope.model.ops.ProxyModelLogp`).

This model is what the prior predictive draws from and what the compiled log
posterior the samplers use (:mod:`proxyscope.core.density`,
:mod:`proxyscope.model.native`) is tested against: the same density, in the
natural non-centred coordinates written here (the samplers' coordinates
differ by an exact change of variables, :mod:`proxyscope.model.coordinates`).

Parameter names (standardized units, see :mod:`proxyscope.model.structure`):

``loc_*``        locations: row 0 the long-term mean nu_s, rows 1..K the proxy means mu_s
``slope_*``      slopes beta_s
``log_sigma_*``  log of the residual scale sigma_s
``*_global``, ``*_main__<column>``, ``*_main_sd__<column>``, ``*_int_sd``,
``*_int_z``      interactions: standard normal coordinates along the orthonormal
                 axes of what the global value and main effects cannot express
                 (:meth:`~proxyscope.model.structure.SegmentStructure.interaction_basis`),
                 to be scaled; ``*_int_raw`` the segment deviations they give
``sd_e``, ``cpc_e``, ``sd_c``, ``cpc_c``  scales and canonical partial correlations
                 (shifted to (0, 1)) of the LKJ covariances Omega_E and Omega_C.
``sd_e_outcome`` the sd of eta0_e, the experiment's long-term effect that no
                 proxy carries (only when some experiment has two or more cells).
"""

from __future__ import annotations

import dataclasses
from typing import Any, cast

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from proxyscope import dims
from proxyscope.core.kernels import pack_cells
from proxyscope.data.cells import CellEffects
from proxyscope.model import families
from proxyscope.model.fitdata import FitData, fit_data, model_effects
from proxyscope.model.layout import OUTCOME_SD
from proxyscope.model.ops import ProxyModelLogp
from proxyscope.model.priors import Priors
from proxyscope.model.structure import SegmentStructure

#: Name of the PyMC potential holding the marginal log likelihood.
LIKELIHOOD = "loglik"
INTERACTION_AXIS = dims.INTERACTION_AXIS


@dataclasses.dataclass
class BuiltModel:
    """A PyMC model with what is needed to read its draws back."""

    model: pm.Model
    structure: SegmentStructure
    data: FitData
    pooling: str
    priors: Priors
    centred: np.ndarray
    learned_main: tuple[bool, ...]
    metrics: tuple[str, ...]
    proxies: tuple[str, ...]
    cell_correlation: str = "shared"
    noise: str = "moderated"

    @property
    def n_proxies(self) -> int:
        return len(self.proxies)


def contrast_dim(column: str) -> str:
    return f"{column}_contrast"


def cpc_count(k: int) -> int:
    return k * (k - 1) // 2


def cpc_shapes(k: int, eta: float) -> np.ndarray:
    """Beta(b, b) shapes of the canonical partial correlations (row-major, i > j).

    With CPC z_ij = 2 u_ij - 1, u_ij ~ Beta(b_j, b_j), b_j = eta + (K - 2 - j) / 2,
    the correlation matrix built by :func:`corr_cholesky` is LKJ(eta)
    distributed (Lewandowski, Kurowicka and Joe, 2009, the vine method).
    """
    return np.array([eta + (k - 2 - j) / 2.0 for i in range(1, k) for j in range(i)])


def corr_cholesky(z: Any, k: int, xp: Any) -> Any:
    """Lower Cholesky factor of a correlation matrix from CPCs ``z`` (..., K(K-1)/2).

    Row i: L[i, j] = z_ij * sqrt(1 - sum_{q<j} L[i, q]^2), L[i, i] = the rest.
    ``xp`` is ``numpy`` or ``pytensor.tensor``.
    """
    if xp is np:
        one: Any = np.ones(z.shape[:-1])
        zero: Any = np.zeros(z.shape[:-1])
    else:
        one, zero = pt.constant(1.0), pt.constant(0.0)
    rows: list[list[Any]] = [[one] + [zero] * (k - 1)]
    t = 0
    for i in range(1, k):
        rem = one
        row = []
        for _ in range(i):
            value = z[..., t] * xp.sqrt(rem)
            t += 1
            rem = rem - value**2
            row.append(value)
        row.append(xp.sqrt(rem))
        row += [zero] * (k - 1 - i)
        rows.append(row)
    if xp is np:
        return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)
    return pt.stack([pt.stack(r) for r in rows])


def build_model(
    effects: CellEffects,
    pooling: str,
    priors: Priors,
    cell_correlation: str = "shared",
    form: str = "marginal",
    noise: str = "moderated",
    interaction_basis: np.ndarray | None = None,
) -> BuiltModel:
    """The PyMC model of ``effects`` under ``pooling`` and ``priors``.

    ``form="marginal"`` (what :class:`~proxyscope.ProxyModel` fits) integrates
    the per-experiment and per-cell latent effects out analytically.
    ``form="latent"`` writes the same model with every latent effect as an
    explicit (non-centred) parameter: eta_e, zeta_c, epsilon_c. It has the same
    posterior for the shared parameters and exists to measure what the
    marginalization buys (``benchmarks/bench_model.py``).

    ``cell_correlation="shared"``: the within-cell deviations zeta_c have their
    own scales but the correlation matrix of the experiment effects,
    Omega_C = diag(sd_c) R_E diag(sd_c). ``"free"``: a separate LKJ
    correlation. The data say little about how within-cell deviations of
    different proxies co-move (each cell is one noisy observation), so with a
    free matrix that correlation is set by the LKJ prior, which favours
    independence; sharing R_E instead carries over what the experiments show.

    ``noise="moderated"`` fits on :func:`proxyscope.data.noise.moderate_noise`
    of ``effects`` (small cells borrow their segment's noise level);
    ``"as_given"`` on ``noise_cov`` exactly.

    Interactions are i.i.d. standard normal coordinates ``*_int_z`` along an
    orthonormal basis of their space (``interaction_basis``, default
    :meth:`~proxyscope.model.structure.SegmentStructure.interaction_basis`
    unweighted), times their scale; any such basis gives the same prior for
    the segment deviations ``*_int_raw``, stored as a deterministic.
    """
    structure, cell_segment = SegmentStructure.from_effects(effects)
    data = fit_data(model_effects(effects, noise), cell_segment)
    metrics, proxies = effects.metrics, effects.proxies
    m, k, n_seg = len(metrics), len(proxies), structure.n_segments
    designs = structure.design()
    learned = priors.learned_main(structure.levels)
    additive = pooling == "additive" and bool(structure.columns)
    basis = structure.interaction_basis(pooling) if interaction_basis is None else interaction_basis
    interactions = basis.shape[1] > 0
    centred = np.zeros((m, n_seg), dtype=bool)
    coords: dict[str, Any] = {
        dims.METRIC: list(metrics),
        dims.PROXY: list(proxies),
        dims.SEGMENT: list(structure.labels),
        "cpc": list(range(cpc_count(k))),
        INTERACTION_AXIS: list(range(basis.shape[1])),
    }
    for j, col in enumerate(structure.columns):
        coords[contrast_dim(col)] = list(range(len(structure.levels[j]) - 1))

    with pm.Model(coords=coords) as model:
        # Data-dependent arrays are shared data, not graph constants, so the
        # compiled graph depends only on K, the pooling and the columns: a
        # second dataset of the same shape reuses the compiled code.
        design_data = [
            pm.Data(f"design__{col}", designs[j]) for j, col in enumerate(structure.columns)
        ]
        centred_data = np.zeros((m, n_seg))
        basis_data = pm.Data("interaction_basis", basis) if interactions else None
        zeros_k = np.zeros((k, n_seg))
        zeros_1 = np.zeros((1, n_seg))

        def family(
            prefix: str,
            row_dim: str | None,
            global_mu: float,
            global_sd: float,
            main_sd: float,
            int_sd: float,
            none_mu: float,
            none_sd: float,
            centred_rows: Any,
        ) -> Any:
            row_dims: tuple[str, ...] = (row_dim,) if row_dim else ()

            def normal(name: str, mu: float, sd: float, dims_: tuple[str, ...]) -> Any:
                return pm.Normal(name, mu, sd, dims=dims_)

            if pooling == "none":
                if prefix == "log_sigma":
                    sig = pm.HalfNormal("sigma_seg", none_sd, dims=dims.SEGMENT)
                    return pt.log(sig)[None, :]
                return normal(f"{prefix}_seg", none_mu, none_sd, (*row_dims, dims.SEGMENT))
            if prefix == "log_sigma":
                g = pt.log(pm.HalfNormal("sigma_global", global_sd))[None]
            else:
                g = normal(f"{prefix}_global", global_mu, global_sd, row_dims)
            mains = []
            if additive:
                for j, col in enumerate(structure.columns):
                    cdim = contrast_dim(col)
                    if learned[j]:
                        sd = pm.HalfNormal(
                            f"{prefix}_main_sd__{col}", main_sd, dims=row_dims or None
                        )
                        sd = sd if row_dim else sd[None]
                        raw = normal(f"{prefix}_main__{col}", 0.0, 1.0, (*row_dims, cdim))
                        raw = raw if row_dim else raw[None, :]
                        mains.append(raw * sd[:, None])
                    else:
                        raw = normal(f"{prefix}_main__{col}", 0.0, main_sd, (*row_dims, cdim))
                        mains.append(raw if row_dim else raw[None, :])
            int_raw = int_scale = None
            if interactions:
                int_scale = pm.HalfNormal(f"{prefix}_int_sd", int_sd, dims=row_dims or None)
                int_scale = int_scale if row_dim else int_scale[None]
                z = normal(f"{prefix}_int_z", 0.0, 1.0, (*row_dims, INTERACTION_AXIS))
                int_raw = pm.Deterministic(
                    f"{prefix}_int_raw",
                    pt.dot(z, cast(Any, basis_data).T),
                    dims=(*row_dims, dims.SEGMENT),
                )
                int_raw = int_raw if row_dim else int_raw[None, :]
            values = families.combine(
                lambda c, a, b: pt.where(pt.gt(c, 0.5), a, b),
                g,
                mains,
                design_data if additive else [],
                int_raw,
                int_scale,
                centred_rows,
            )
            return values + pt.zeros((1, n_seg))  # complete pooling: same value everywhere

        loc = family(
            "loc",
            dims.METRIC,
            0.0,
            priors.global_location_sd,
            priors.main_location_sd,
            priors.interaction_location_sd,
            0.0,
            priors.none_location_sd,
            centred_data,
        )
        slope = family(
            "slope",
            dims.PROXY,
            0.0,
            priors.global_slope_sd,
            priors.main_slope_sd,
            priors.interaction_slope_sd,
            0.0,
            priors.none_slope_sd,
            zeros_k,
        )
        log_sigma = family(
            "log_sigma",
            None,
            0.0,
            priors.sigma_sd,
            priors.main_log_sigma_sd,
            priors.interaction_log_sigma_sd,
            0.0,
            priors.none_log_sigma_sd,
            zeros_1,
        )[0]
        chol_e, corr_e = lkj_cholesky("e", k, priors.experiment_sd, priors.lkj_eta)
        if cell_correlation == "shared":
            sd_c = pm.HalfNormal("sd_c", priors.cell_sd, dims=dims.PROXY)
            chol_c = sd_c[:, None] * corr_e
        else:
            chol_c, _ = lkj_cholesky("c", k, priors.cell_sd, priors.lkj_eta)
        sd_y = (
            pm.HalfNormal(OUTCOME_SD, priors.experiment_outcome_sd)
            if data.has_outcome_experiment_effect
            else pt.as_tensor(0.0)
        )
        # (eta0_e, eta_e): the outcome's own experiment effect, then the proxies'.
        chol_full = pt.set_subtensor(pt.zeros((k + 1, k + 1))[0, 0], sd_y)
        chol_e = pt.set_subtensor(chol_full[1:, 1:], chol_e)

        if form == "latent":
            _latent_likelihood(data, k, loc, slope, pt.exp(log_sigma), chol_c, chol_e)
        else:
            dat = pm.Data("cell_data", pack_cells(data.d, data.s_cov))
            seg = pm.Data("cell_segment", data.cell_segment)
            cexp = pm.Data("cell_experiment", data.cell_experiment)
            outputs = ProxyModelLogp(k)(
                dat, seg, cexp, loc, slope, pt.exp(2.0 * log_sigma), chol_c, chol_e
            )
            loglik = cast(list[Any], outputs)[0]
            pm.Potential(LIKELIHOOD, loglik)

    return BuiltModel(
        model=model,
        structure=structure,
        data=data,
        pooling=pooling,
        priors=priors,
        centred=centred,
        learned_main=learned,
        metrics=metrics,
        proxies=proxies,
        cell_correlation=cell_correlation,
        noise=noise,
    )


def _latent_likelihood(
    data: FitData, k: int, loc: Any, slope: Any, sigma: Any, chol_c: Any, chol_e: Any
) -> None:
    """Explicit latent effects and the Gaussian likelihood of every cell's vector.

    theta_c = mu_s + eta_e + zeta_c,
    tau_c = nu_s + eta0_e + beta_s'(theta_c - mu_s) + sigma_s eps_c,
    d_c ~ N((tau_c, theta_c), S_c), written elementwise with the whitening
    factors of S_c computed once in numpy (no batched MvNormal). ``chol_e``
    is the (K + 1)-dim factor of (eta0_e, eta_e).
    """
    n_cells = data.d.shape[1]
    seg, cexp = data.cell_segment, data.cell_experiment
    eta = pm.Normal("latent_eta", 0.0, 1.0, shape=(data.n_experiments, k + 1)) @ chol_e.T
    zeta = pm.Normal("latent_zeta", 0.0, 1.0, shape=(n_cells, k)) @ chol_c.T
    eps = pm.Normal("latent_eps", 0.0, 1.0, shape=n_cells)
    mu = loc[1:, seg].T
    theta = mu + eta[cexp, 1:] + zeta
    tau = (
        loc[0, seg] + eta[cexp, 0] + (slope[:, seg].T * (theta - mu)).sum(axis=1) + sigma[seg] * eps
    )
    resid = pt.as_tensor(data.d.T) - pt.concatenate([tau[:, None], theta], axis=1)
    chol = np.linalg.cholesky(np.moveaxis(data.s_cov, -1, 0))
    whiten = np.linalg.inv(chol)  # (C, M, M), lower triangular
    z = (pt.as_tensor(whiten) * resid[:, None, :]).sum(axis=2)
    log_det = np.log(np.diagonal(chol, axis1=1, axis2=2)).sum()
    const = -0.5 * data.d.size * np.log(2 * np.pi) - log_det
    pm.Potential(LIKELIHOOD, -0.5 * (z**2).sum() + const)


def lkj_cholesky(suffix: str, k: int, sd_scale: float, eta: float) -> tuple[Any, Any]:
    """Cholesky factor diag(sd) L_corr with sd ~ HalfNormal and L_corr ~ LKJ(eta).

    Returns the factor and L_corr. Scales and correlations are separate
    parameters, so a scale near zero does not drag its correlations into a
    funnel (as a Cholesky-packed parameterisation does); with one proxy the
    factor is just the sd.
    """
    sd = pm.HalfNormal(f"sd_{suffix}", sd_scale, dims=dims.PROXY)
    if k == 1:
        return sd[:, None], pt.ones((1, 1))
    shapes = cpc_shapes(k, eta)
    u = pm.Beta(f"cpc_{suffix}", shapes, shapes, dims="cpc")
    corr = corr_cholesky(2.0 * u - 1.0, k, pt)
    return sd[:, None] * corr, corr

"""Prior predictive draws of a fitted model: what its priors imply for the cell effects."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import arviz as az
import numpy as np
import pymc as pm
import xarray as xr

from proxyscope import dims
from proxyscope.model import recover, sampling
from proxyscope.model.builder import build_model
from proxyscope.model.layout import (
    BIAS_CPC,
    FAMILY_PREFIX,
    PERIOD_STEP,
    bias_cpc_name,
    bias_sd_name,
    cpc_shapes,
    time_drift_name,
    time_step_name,
    time_z_name,
)
from proxyscope.model.posterior import ModelInfo, std_parameters
from proxyscope.model.priors import Priors

if TYPE_CHECKING:
    from proxyscope.model.fit import ProxyFit


def _with_bias_draws(
    prior: xr.Dataset, info: ModelInfo, priors: Priors, rng: np.random.Generator
) -> xr.Dataset:
    """The prior draws with each design's bias parameters drawn from their priors.

    (The PyMC model has no bias term; its priors are simple enough to draw
    here: per metric sd ~ HalfNormal(bias_sd), CPCs ~ Beta(b, b) as the LKJ.)
    """
    if not info.bias_designs:
        return prior
    m = len(info.metrics)
    shapes = cpc_shapes(m, priors.bias_lkj_eta)
    lead = (prior.sizes[dims.CHAIN], prior.sizes[dims.DRAW])
    cd = (dims.CHAIN, dims.DRAW)
    extra = {}
    for design in info.bias_designs:
        sd = np.abs(rng.normal(0.0, priors.bias_sd, (*lead, m)))
        u = rng.beta(shapes, shapes, (*lead, len(shapes)))
        extra[bias_sd_name(design)] = ((*cd, dims.METRIC), sd)
        extra[bias_cpc_name(design)] = ((*cd, BIAS_CPC), u)
    return prior.assign(extra)


def _with_time_draws(
    prior: xr.Dataset, info: ModelInfo, priors: Priors, rng: np.random.Generator
) -> xr.Dataset:
    """The prior draws with the relation's walk over periods drawn from its prior
    (step scales ~ HalfNormal(time_step_*_sd), steps ~ N(0, 1), drifts ~
    N(0, time_drift_*_sd); the PyMC model has no walk, as it has no bias term)."""
    p_n = len(info.periods)
    if p_n < 2:
        return prior
    lead = (prior.sizes[dims.CHAIN], prior.sizes[dims.DRAW])
    cd = (dims.CHAIN, dims.DRAW)
    k = len(info.proxies)
    extra = {}
    sds = zip(FAMILY_PREFIX, priors.time_step_sds(), priors.time_drift_sds(), strict=True)
    for prefix, sd, drift_sd in sds:
        row: tuple[str, ...] = ()
        rows: tuple[int, ...] = ()
        if prefix == "loc":
            row, rows = (dims.METRIC,), (k + 1,)
        elif prefix == "slope":
            row, rows = (dims.PROXY,), (k,)
        if sd > 0:
            scale = np.abs(rng.normal(0.0, sd, (*lead, *rows)))
            extra[time_step_name(prefix)] = ((*cd, *row), scale)
            extra[time_z_name(prefix)] = (
                (*cd, *row, PERIOD_STEP),
                rng.standard_normal((*lead, *rows, p_n - 1)),
            )
        if drift_sd > 0:
            drift = rng.normal(0.0, drift_sd, (*lead, *rows))
            extra[time_drift_name(prefix)] = ((*cd, *row), drift)
    return prior.assign(extra)


def prior_predictive(
    fit: ProxyFit, draws: int = 500, random_seed: int | None = None
) -> az.InferenceData:
    """Prior draws of the parameters and of the cell effects they imply."""
    built = build_model(
        fit.effects, fit.pooling, Priors(**fit.info.priors), fit.info.cell_correlation
    )
    names = sampling.draw_names(built.model)
    with built.model, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Potential.*")
        prior = pm.sample_prior_predictive(
            draws=draws, var_names=names, random_seed=random_seed
        ).prior
    info = fit.info
    rng = np.random.default_rng(random_seed)
    prior = _with_bias_draws(prior, info, Priors(**info.priors), rng)
    prior = _with_time_draws(prior, info, Priors(**info.priors), rng)
    params = std_parameters(prior, info)
    data = fit.data  # built.data, with each cell's period when the relation moves
    k = len(info.proxies)
    n = params.n_draws
    sims = np.empty((n, data.d.shape[1], k + 1))
    shared = data.chol_u
    for i in range(n):
        z = rng.standard_normal((data.n_experiments, k + 1))
        eta = z @ params.chol_e[i].T
        mean, v = recover._cell_prior(params, i, data, eta)
        noise = (
            recover.error_cov(params, data, i) if recover.has_bias(params, data) else data.own_cov
        )
        total = np.moveaxis(v + noise, -1, 0)
        low = np.linalg.cholesky(total)
        eps = np.einsum("cij,cj->ci", low, rng.standard_normal((data.d.shape[1], k + 1)))
        sims[i] = mean.T + eps
        if shared is not None:  # each experiment's cells share an error u_e ~ N(0, U_e)
            u = np.einsum("eij,ej->ei", shared, rng.standard_normal((data.n_experiments, k + 1)))
            sims[i] += u[data.cell_experiment]
    inv = np.empty_like(data.order)
    inv[data.order] = np.arange(len(inv))
    sims = sims[:, inv] * data.scales
    ppc = xr.Dataset(
        {
            "effect": (
                (dims.CHAIN, dims.DRAW, dims.CELL, dims.METRIC),
                sims.reshape(1, n, *sims.shape[1:]),
            )
        },
        coords={
            dims.CHAIN: [0],
            dims.DRAW: np.arange(n),
            dims.CELL: np.arange(sims.shape[1]),
            dims.METRIC: list(info.metrics),
        },
    )
    return az.InferenceData(
        prior=prior, prior_predictive=ppc, observed_data=fit.idata["observed_data"]
    )

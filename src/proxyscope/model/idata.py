"""The InferenceData of a fit: named posterior, the experiments' recovered effects, the
per-cell and per-experiment log likelihoods, the data and the attributes that identify
the fit (version, file format, configuration and its hash, data fingerprint)."""

from __future__ import annotations

import json
from typing import Any

import arviz as az
import numpy as np
import xarray as xr

from proxyscope import dims
from proxyscope._version import __version__
from proxyscope.data.cells import META_ATTR, CellEffects
from proxyscope.model import recover
from proxyscope.model.fitfile import FILE_FORMAT, SAMPLED_GROUP
from proxyscope.model.posterior import config_hash, named_posterior, std_parameters
from proxyscope.model.setup import Prepared, model_info


def _single(values: np.ndarray) -> np.ndarray:
    """Values rounded to single precision, kept as float64 for computing with."""
    return np.asarray(values, dtype=np.float32).astype(np.float64)


def assemble(
    prepared: Prepared,
    effects: CellEffects,
    raw: xr.Dataset,
    stats: xr.Dataset,
    sampler_record: dict[str, Any],
    seed: int,
) -> az.InferenceData:
    """InferenceData of a fit: named posterior, recovered eta, log likelihoods."""
    info = model_info(prepared, effects)
    data = prepared.data
    n_chain, n_draw = raw.sizes[dims.CHAIN], raw.sizes[dims.DRAW]
    params = std_parameters(raw, info)
    lp_e, eta_mean, eta_cov = recover.experiment_conditionals(params, data)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    latent = recover.draw_gaussian(eta_mean, eta_cov, rng)
    eta, shared = recover.split_shared(latent, len(data.scales))
    if not data.has_outcome_experiment_effect:
        eta[..., 0] = 0.0  # the model has no eta0_e (its variance is exactly 0)
    cell_ll, outcome_ll = recover.logliks(params, data, eta, shared)
    # Per-experiment marginal density in original units.
    cells_per_exp = np.bincount(data.cell_experiment, minlength=data.n_experiments)
    lp_e = lp_e - cells_per_exp * float(np.sum(np.log(data.scales)))
    inv = np.empty_like(data.order)
    inv[data.order] = np.arange(len(inv))
    cell_ll = cell_ll[:, inv]
    outcome_ll = outcome_ll[:, inv]

    eta4 = eta.reshape(n_chain, n_draw, *eta.shape[1:])
    shared4 = None if shared is None else shared.reshape(n_chain, n_draw, *shared.shape[1:])
    posterior = named_posterior(raw, info, eta4, shared4)
    cd = {dims.CHAIN: raw[dims.CHAIN].values, dims.DRAW: raw[dims.DRAW].values}
    cell_coords = {
        dims.CELL: np.arange(effects.n_cells),
        dims.EXPERIMENT: (dims.CELL, effects.experiment),
        dims.SEGMENT_LABEL: (dims.CELL, effects.segment_label),
    }
    # Per-cell log likelihoods are kept to single precision (ProxyFit.save writes them
    # as float32): in double they are two thirds of a fit file (77 of 111 MB for the
    # demo), random draws that zlib cannot shrink, and LOO needs nowhere near 16 digits
    # of them. Rounded here, so a fit and the same fit loaded from its file agree.
    log_likelihood = xr.Dataset(
        {
            "effect": (
                (dims.CHAIN, dims.DRAW, dims.CELL),
                _single(cell_ll.reshape(n_chain, n_draw, -1)),
            ),
            "experiment_effect": (
                (dims.CHAIN, dims.DRAW, dims.EXPERIMENT),
                lp_e.reshape(n_chain, n_draw, -1),
            ),
            "outcome": (
                (dims.CHAIN, dims.DRAW, dims.CELL),
                _single(outcome_ll.reshape(n_chain, n_draw, -1)),
            ),
        },
        coords={
            **cd,
            dims.CELL: np.arange(effects.n_cells),
            "cell_experiment": (dims.CELL, effects.experiment),
            dims.SEGMENT_LABEL: (dims.CELL, effects.segment_label),
            dims.EXPERIMENT: list(info.experiments),
        },
    )
    observed = xr.Dataset(
        {"effect": ((dims.CELL, dims.METRIC), effects.effect)},
        coords={**cell_coords, dims.METRIC: list(effects.metrics)},
    )
    constant = effects.data.copy()
    constant.attrs = {META_ATTR: effects.data.attrs[META_ATTR]}
    config = info.config()
    attrs = {
        "proxyscope_version": __version__,
        "proxyscope_file_format": FILE_FORMAT,
        "proxyscope_config": json.dumps(config, sort_keys=True),
        "proxyscope_config_hash": config_hash(config),
        "proxyscope_model_info": info.to_json(),
        "proxyscope_sampler": json.dumps(sampler_record, sort_keys=True, default=str),
        "proxyscope_data_fingerprint": effects.fingerprint(),
        "proxyscope_trustworthy": "true",
    }
    idata = az.InferenceData(
        posterior=posterior,
        sample_stats=stats,
        log_likelihood=log_likelihood,
        observed_data=observed,
        constant_data=constant,
    )
    idata.add_groups({SAMPLED_GROUP: raw})
    idata.attrs.update(attrs)
    return idata

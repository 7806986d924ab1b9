"""A history of many designs whose quasi-experimental cells come from the real estimators.

:func:`designed_history` draws the cells of :func:`~proxyscope.simulate.from_model`
(the proxy model at known parameters, so the true slopes are exact), gives
every experiment a design in fixed shares (``ab`` and the four
quasi-experimental designs ``did``, ``rdd``, ``ipw``, ``synthetic_control``)
and, for every experiment of a quasi-experimental design, replaces from_model's
estimates of its cells by what that design's estimator
(:func:`proxyscope.did`, :func:`proxyscope.rdd`, :func:`proxyscope.ipw`,
:func:`proxyscope.synthetic_control`, with their defaults) reads from unit-level
data simulated around the cells' true effects
(:mod:`proxyscope.simulate.designed_units`): in every cell the treatment adds
the cell's latent effect (tau_c, theta_c) of ``truth.latent`` to its treated
units, so the estimator's target is that effect exactly, while the unit data
are confounded so that a naive difference in means is not.

Unlike :func:`~proxyscope.simulate.mixed_history`, which adds an artificial
bias to from_model's estimates, no bias is planted: a model fitted on the
history should recover the true slopes with the estimators' own sampling
covariances; its bias term has nothing to learn (in
``benchmarks/bench_design_slopes.py`` each design's bias sd stays near its
prior, a posterior mean of 0.4-0.5 sampling sds).

Random streams: from_model's draws are its own (the A/B cells are from_model's
exactly); the designs of the experiments come from the stream
``[seed, key]``, and the unit data of design d from ``[seed, key, i]``, i
its position in :data:`proxyscope.data.designs.DESIGNS` (a stream per design).

Cost: a 60-experiment history (4 segments, two proxies, default shares) takes
5-12 s on a busy 2-core machine, most of it the synthetic-control placebos and
ipw's cross-fitting.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from proxyscope import dims
from proxyscope.data import designs as ds
from proxyscope.data.cellfile import META_ATTR
from proxyscope.data.cells import CellEffects
from proxyscope.data.did import did
from proxyscope.data.ipw import ipw
from proxyscope.data.rdd import rdd
from proxyscope.data.synthetic_control import synthetic_control
from proxyscope.errors import DataWarning, ParameterError, suggestion
from proxyscope.simulate import designed_units as du
from proxyscope.simulate.config import is_int
from proxyscope.simulate.mix import SUM_TOLERANCE, FrozenMapping, check_number
from proxyscope.simulate.mixed import MixedConfig
from proxyscope.simulate.model_world import ModelTruth, from_model

#: Stream key of the designs and the unit data (their draws never move from_model's).
_DESIGNED_KEY = 0xDE5_16ED
#: The quasi-experimental designs simulated from unit data, in the order of ``DESIGNS``.
QUASI: tuple[str, ...] = ("did", "rdd", "ipw", "synthetic_control")
#: Designs a history can have.
ALLOWED: tuple[str, ...] = (ds.AB, *QUASI)
#: Default share of experiments per design.
DEFAULT_SHARES: dict[str, float] = {
    ds.AB: 0.5,
    "did": 0.125,
    "rdd": 0.125,
    "ipw": 0.125,
    "synthetic_control": 0.125,
}
#: Name of the segment column in the unit data (from_model's ``segment`` is a name
#: reserved by CellEffects, which the estimators refuse; their cells are renamed back).
UNIT_SEGMENT = "level"
_OWNER = "designed_history"

_MODEL_OPTIONS = tuple(p for p in inspect.signature(from_model).parameters if p != "seed")

Generator = Callable[..., pd.DataFrame]


def _estimate(
    design: str, rows: pd.DataFrame, metrics: list[str], directions: dict[str, str]
) -> CellEffects:
    """Run ``design``'s estimator with its defaults on the unit data of its cells."""
    common: dict[str, Any] = {
        "experiment": dims.EXPERIMENT,
        "outcome": metrics[0],
        "proxies": metrics[1:],
        "segments": [UNIT_SEGMENT],
        "directions": directions,
    }
    if design == "did":
        return did(rows, unit=du.UNIT, period=du.PERIOD, first_treated=du.FIRST_TREATED, **common)
    if design == "rdd":
        return rdd(rows, running=du.SCORE, cutoff=0.0, **common)
    if design == "ipw":
        return ipw(
            rows,
            treatment=du.OPTED_IN,
            treated_value=1,
            covariates=list(du.IPW_COVARIATES),
            **common,
        )
    return synthetic_control(
        rows,
        unit=du.UNIT,
        period=du.PERIOD,
        treated=du.TREATED,
        treatment_start=du.SC_PRE,
        **common,
    )


#: The unit-data generator of each quasi-experimental design.
GENERATORS: dict[str, Generator] = {
    "did": du.did_panel,
    "rdd": du.rdd_rows,
    "ipw": du.ipw_rows,
    "synthetic_control": du.synthetic_panel,
}


@dataclasses.dataclass(frozen=True)
class DesignedHistory:
    """A simulated history read by the real estimators (see :func:`designed_history`).

    Attributes
    ----------
    effects : CellEffects
        The A/B cells (from_model's, unchanged) then each quasi-experimental
        design's cells as its estimator returned them (design, effect,
        noise_cov, counts and the estimator's metadata under
        ``meta["parts"]``), with segment column ``segment``.
    truth : ModelTruth
        from_model's parameters and realised effects, in from_model's cell
        order; ``truth.beta`` is the exact slope vector.
    latent : xarray.DataArray
        The true effect of every cell of ``effects``, dims (cell, metric), in
        the metrics' good directions, with the ``design`` coordinate.
    experiment_design : pandas.Series
        The design of each experiment.
    units : mapping of design to DataFrame
        The unit-level data each estimator read (segment column ``level``).
    warnings : tuple of str
        The estimators' DataWarnings, kept here instead of raised: their
        pre-trend (did) and density (rdd) checks fail by chance in about one
        cell in twenty when the design holds, as it does here.
    """

    effects: CellEffects
    truth: ModelTruth
    latent: xr.DataArray
    experiment_design: pd.Series
    units: Mapping[str, pd.DataFrame]
    warnings: tuple[str, ...]


def _shares(value: Any) -> dict[str, float]:
    """The checked shares of ``design_shares`` (designs left out: 0)."""
    name = f"The 'design_shares' parameter of {_OWNER}"
    if not isinstance(value, Mapping) or not value:
        raise ParameterError(
            f"{name} must be a mapping of design to share, e.g. {DEFAULT_SHARES}; got {value!r}."
        )
    for key in value:
        if key in ALLOWED:
            continue
        if key in ds.DESIGNS:
            raise ParameterError(
                f"{name}: design {key!r} is not simulated from unit data here; expected some "
                f"of {list(ALLOWED)} (mixed_history has the others)."
            )
        hint = suggestion(key, ALLOWED) if isinstance(key, str) else ""
        raise ParameterError(
            f"{name}: unknown design {key!r}; expected some of {list(ALLOWED)}.{hint}"
        )
    checked = {d: check_number(f"{name}[{d!r}]", value[d], 0.0, 1.0) for d in ALLOWED if d in value}
    total = math.fsum(checked.values())
    if abs(total - 1.0) > SUM_TOLERANCE:
        raise ParameterError(f"{name}: shares must sum to 1; got {total!r} for {checked}.")
    return checked


def _check(model: Mapping[str, Any], seed: Any) -> None:
    for key in model:
        if key not in _MODEL_OPTIONS:
            raise ParameterError(
                f"Unknown option {key!r} of {_OWNER}; expected 'design_shares', 'seed' or an "
                f"option of from_model {list(_MODEL_OPTIONS)}."
                + suggestion(key, [*_MODEL_OPTIONS, "design_shares", "seed"])
            )
    if not is_int(seed) or seed < 0:
        raise ParameterError(
            f"The 'seed' parameter of {_OWNER} must be an integer >= 0; got {seed!r}."
        )
    n_metrics = 1 + len(np.atleast_1d(np.asarray(model.get("beta", (0.5,)), dtype=object)))
    rho = model.get("noise_corr", -0.5)
    if isinstance(rho, int | float) and n_metrics > 2 and rho < -1.0 / (n_metrics - 1):
        raise ParameterError(
            f"The 'noise_corr' parameter of {_OWNER} must be >= {-1.0 / (n_metrics - 1):.4g} "
            f"for {n_metrics} metrics (a positive semi-definite correlation of the units' "
            f"noise); got {rho!r}."
        )


def _counts(shares: dict[str, float], n_experiments: int) -> dict[str, int]:
    """Experiments per design by largest remainder; each estimator needs two or none."""
    counts = MixedConfig(design_shares=FrozenMapping(shares)).counts(n_experiments)
    single = [d for d in QUASI if counts.get(d) == 1]
    if single:
        raise ParameterError(
            f"The 'design_shares' parameter of {_OWNER} gives {single[0]!r} one experiment of "
            f"{n_experiments}; its estimator needs at least two. Raise n_experiments or that "
            f"design's share (or set it to 0); counts: {counts}."
        )
    return counts


def with_segment_column(part: CellEffects, column: str) -> CellEffects:
    """``part`` (cells read from unit data) with its segment column ``UNIT_SEGMENT``
    named ``column``."""
    meta = part.meta
    meta["segments"] = [column]
    data = part.data.rename_vars({UNIT_SEGMENT: column})
    data.attrs = {META_ATTR: json.dumps(meta)}
    return CellEffects(data)


def designed_history(
    *,
    design_shares: Mapping[str, float] | None = None,
    seed: int = 0,
    **model: Any,
) -> DesignedHistory:
    """Simulate a history of A/B tests and quasi-experiments read by their real estimators.

    Parameters
    ----------
    design_shares : mapping of design to share, optional
        Share of experiments per design (``ab``, ``did``, ``rdd``, ``ipw``,
        ``synthetic_control``), each in [0, 1], summing to 1; counts by largest
        remainder as in :class:`~proxyscope.simulate.MixedConfig`. A
        quasi-experimental design needs 0 or at least 2 experiments. Default:
        ab 0.5, each quasi-experimental design 0.125.
    seed : int
        Seed of from_model's draws and of the designs' streams.
    **model
        Any other option of :func:`~proxyscope.simulate.from_model`
        (n_experiments, levels, nu, mu, beta, sigma, sd_e, sd_e_outcome, sd_c,
        corr_e, noise_sd, noise_corr, users_per_arm). ``noise_sd`` and
        ``noise_corr`` also set the units' noise (each design's standard
        errors are about ``noise_sd``; :mod:`~proxyscope.simulate.designed_units`).

    Returns
    -------
    DesignedHistory

    Raises
    ------
    ParameterError
        An unknown option, a bad share or seed, a design ('cluster',
        'external') that is not simulated here, a quasi-experimental design
        with one experiment, or a ``noise_corr`` below -1/(metrics - 1).

    Examples
    --------
    >>> from proxyscope import simulate
    >>> history = simulate.designed_history(n_experiments=16, seed=1)
    >>> history.effects.designs
    ['ab', 'did', 'rdd', 'ipw', 'synthetic_control']
    """
    _check(model, seed)
    shares = _shares(DEFAULT_SHARES if design_shares is None else design_shares)
    cells, truth = from_model(seed=seed, **model)
    experiments = cells.experiments
    counts = _counts(shares, len(experiments))
    rng = np.random.default_rng([seed, _DESIGNED_KEY])
    per_experiment = rng.permutation(np.repeat(list(counts), list(counts.values())))
    experiment_design = pd.Series(
        per_experiment, index=pd.Index(experiments, name=dims.EXPERIMENT), name=dims.DESIGN
    )
    design = experiment_design.reindex(cells.experiment).to_numpy()
    keys = cells.cells().drop(columns=dims.SEGMENT_LABEL)
    (segment,) = cells.segments
    metrics = list(cells.metrics)
    sign = np.array(
        [1.0] + [-1.0 if cells.directions[p] == "lower" else 1.0 for p in cells.proxies]
    )
    noise_sd = float(model.get("noise_sd", 0.5))
    noise_corr = float(model.get("noise_corr", -0.5))

    parts: list[CellEffects] = []
    if ds.AB in counts:
        parts.append(cells.subset(experiment_design.index[per_experiment == ds.AB]))
    units: dict[str, pd.DataFrame] = {}
    caught: list[str] = []
    for d in QUASI:
        if d not in counts:
            continue
        rows = np.flatnonzero(design == d)
        stream = np.random.default_rng([seed, _DESIGNED_KEY, ds.DESIGNS.index(d)])
        own = keys.iloc[rows].rename(columns={segment: UNIT_SEGMENT}).reset_index(drop=True)
        data = GENERATORS[d](
            own,
            truth.latent[rows] * sign,
            metrics,
            stream,
            noise_sd=noise_sd,
            noise_corr=noise_corr,
        )
        units[d] = data
        with warnings.catch_warnings(record=True) as got:
            warnings.simplefilter("always", DataWarning)
            part = _estimate(d, data, metrics, cells.directions)
        for w in got:
            if issubclass(w.category, DataWarning):
                caught.append(str(w.message))
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        parts.append(with_segment_column(part, segment))
    effects = CellEffects.concat(parts) if len(parts) > 1 else parts[0]

    where = pd.MultiIndex.from_frame(keys.astype({segment: str}))
    found = pd.MultiIndex.from_frame(effects.cells()[[dims.EXPERIMENT, segment]])
    latent = xr.DataArray(
        truth.latent[where.get_indexer(found)],
        dims=(dims.CELL, dims.METRIC),
        coords={
            dims.CELL: np.arange(effects.n_cells),
            dims.METRIC: metrics,
            dims.DESIGN: (dims.CELL, effects.design),
        },
        name="latent",
    )
    return DesignedHistory(effects, truth, latent, experiment_design, units, tuple(caught))

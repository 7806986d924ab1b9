"""A history of many designs: the proxy model's cells, the non-randomized ones biased.

:func:`mixed_history` draws the cells of :func:`~proxyscope.simulate.from_model`
(the model at known parameters, so the true slopes are exact), gives every
experiment a design (:mod:`proxyscope.data.designs`) in fixed shares, and adds to
the estimate of every cell of a non-randomized design d a confounding bias

    b_c ~ N(0, Sigma_d),  Sigma_d = D_d R_d D_d,

``D_d`` the bias sd of each metric, ``bias_sd_multiple[d]`` times the cell's
sampling sd, and ``R_d`` a correlation of ``bias_corr[d]`` between every pair of
metrics (positive: confounding moves the outcome and the proxies together).
The stored ``noise_cov`` is the sampling covariance S only: the bias is for the
model to learn. Randomized designs (``ab``, ``cluster``) get no bias.

The designs and the biases come from a random stream of their own (the
experiments' designs, then one standard normal vector per cell), so the
sampling draws are from_model's: a history without a biased design has
exactly from_model's effects, and every history's effects are from_model's
plus ``bias``.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from proxyscope import dims
from proxyscope.data import designs as ds
from proxyscope.data.cellbuild import build
from proxyscope.data.cells import CellEffects
from proxyscope.errors import ParameterError, suggestion
from proxyscope.simulate.config import is_int
from proxyscope.simulate.mix import SUM_TOLERANCE, FrozenMapping, check_number
from proxyscope.simulate.model_draws import psd_factor
from proxyscope.simulate.model_world import ModelTruth, from_model

#: Stream key of the designs and biases (their draws never move from_model's).
_MIXED_KEY = 0x0B1A5
#: Designs whose cells get a bias, in the order of ``designs.DESIGNS``.
BIASED: tuple[str, ...] = tuple(d for d in ds.DESIGNS if d not in ds.RANDOMIZED)
#: Default share of experiments per design.
DEFAULT_SHARES: dict[str, float] = {
    "ab": 0.5,
    "cluster": 0.1,
    "did": 0.1,
    "ipw": 0.1,
    "rdd": 0.1,
    "synthetic_control": 0.1,
}
_OWNER = "MixedConfig"
_MODEL_OPTIONS = tuple(p for p in inspect.signature(from_model).parameters if p != "seed")


def _check_design(name: str, key: Any, allowed: tuple[str, ...]) -> None:
    if key in allowed:
        return
    if key in ds.RANDOMIZED:
        raise ParameterError(
            f"{_OWNER}.{name}: {key!r} is a randomized design, whose estimates carry no bias; "
            f"expected some of {list(allowed)}."
        )
    hint = suggestion(key, allowed) if isinstance(key, str) else ""
    raise ParameterError(
        f"{_OWNER}.{name}: unknown design {key!r}; expected some of {list(allowed)}.{hint}"
    )


def _per_design(
    name: str, value: Any, default: float, low: float, high: float | None, *, open_low: bool
) -> FrozenMapping[str]:
    """One number per biased design from one number or a mapping (others: ``default``)."""
    if isinstance(value, Mapping):
        for key in value:
            _check_design(name, key, BIASED)
        given = {d: value.get(d, default) for d in BIASED}
    else:
        given = dict.fromkeys(BIASED, value)
    return FrozenMapping(
        {
            d: check_number(f"{_OWNER}.{name}[{d!r}]", v, low, high, open_low=open_low)
            for d, v in given.items()
        }
    )


def _value_of(values: float | Mapping[str, float], design: str) -> float:
    """The value of ``design`` in a per-design field (a mapping once normalized)."""
    if isinstance(values, Mapping):
        return float(values[design])
    return float(values)


@dataclasses.dataclass(frozen=True)
class MixedConfig:
    """Designs and biases of :func:`proxyscope.simulate.mixed_history`.

    Parameters
    ----------
    design_shares : mapping of design to share
        Share of experiments per design (``designs.DESIGNS``), each in [0, 1],
        summing to 1; the counts are the shares times the number of
        experiments, rounded by largest remainder (ties to the earlier design
        of ``designs.DESIGNS``). Default: ab 0.5, cluster 0.1 and 0.1 each for
        did, ipw, rdd and synthetic_control.
    bias_sd_multiple : float or mapping of design to float
        Sd of every metric's bias as a multiple of its sampling sd (>= 0), for
        every non-randomized design or per design (unnamed ones: 2.5).
    bias_corr : float or mapping of design to float
        Correlation of the biases of every pair of metrics, in (-1, 1]
        (unnamed designs: 0.8); it must also keep Sigma_d positive
        semi-definite for the number of metrics (>= -1 / (metrics - 1)).
    clusters_per_arm : int
        Clusters per arm recorded on ``cluster`` cells (>= 2).
    bias_shared : float
        Share in [0, 1] of each cell's bias variance that all cells of its
        experiment share: b_c = sqrt(s) A z_e + sqrt(1 - s) A z_c with A A' =
        Sigma_d, so every cell's bias is still N(0, Sigma_d). 0 (default): each
        cell's bias is its own, as the model assumes; 1: one bias per
        experiment (confounding that comes with how the experiment was
        assigned moves all its segments alike), which the model's per-cell
        term only approximates.

    Raises
    ------
    ParameterError
        Naming the field and the bad value.
    """

    design_shares: Mapping[str, float] = dataclasses.field(
        default_factory=lambda: FrozenMapping(DEFAULT_SHARES)
    )
    bias_sd_multiple: float | Mapping[str, float] = 2.5
    bias_corr: float | Mapping[str, float] = 0.8
    clusters_per_arm: int = 40
    bias_shared: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "bias_shared", check_number(f"{_OWNER}.bias_shared", self.bias_shared, 0.0, 1.0)
        )
        shares = self.design_shares
        if not isinstance(shares, Mapping) or not shares:
            raise ParameterError(
                f"{_OWNER}.design_shares: must be a mapping of design to share, e.g. "
                f"{DEFAULT_SHARES}; got {shares!r}."
            )
        for key in shares:
            _check_design("design_shares", key, ds.DESIGNS)
        checked = {
            d: check_number(f"{_OWNER}.design_shares[{d!r}]", shares[d], 0.0, 1.0)
            for d in ds.DESIGNS
            if d in shares
        }
        total = math.fsum(checked.values())
        if abs(total - 1.0) > SUM_TOLERANCE:
            raise ParameterError(
                f"{_OWNER}.design_shares: shares must sum to 1; got {total!r} for {checked}."
            )
        object.__setattr__(self, "design_shares", FrozenMapping(checked))
        multiple = _per_design(
            "bias_sd_multiple", self.bias_sd_multiple, 2.5, 0.0, None, open_low=False
        )
        object.__setattr__(self, "bias_sd_multiple", multiple)
        corr = _per_design("bias_corr", self.bias_corr, 0.8, -1.0, 1.0, open_low=True)
        object.__setattr__(self, "bias_corr", corr)
        value = self.clusters_per_arm
        if not is_int(value) or value < 2:
            raise ParameterError(
                f"{_OWNER}.clusters_per_arm: must be an integer >= 2; got {value!r}."
            )
        object.__setattr__(self, "clusters_per_arm", int(value))

    def counts(self, n_experiments: int) -> dict[str, int]:
        """Experiments per design (largest remainder; designs with a zero count omitted)."""
        names = list(self.design_shares)
        raw = np.array([self.design_shares[d] for d in names]) * n_experiments
        count = np.floor(raw + 1e-9).astype(int)
        extra = max(n_experiments - int(count.sum()), 0)
        order = np.argsort(-(raw - count), kind="stable")
        count[order[:extra]] += 1
        return {d: int(c) for d, c in zip(names, count, strict=True) if c > 0}

    def bias_cov(self, sampling_sd: np.ndarray, design: str) -> np.ndarray:
        """Sigma_d of ``design`` for metrics of sampling sds ``sampling_sd``."""
        multiple = _value_of(self.bias_sd_multiple, design)
        rho = _value_of(self.bias_corr, design)
        m = sampling_sd.size
        if m > 1 and rho < -1.0 / (m - 1):
            raise ParameterError(
                f"{_OWNER}.bias_corr[{design!r}]: must be >= {-1.0 / (m - 1):.4g} for {m} "
                f"metrics (a positive semi-definite Sigma_d); got {rho!r}."
            )
        corr = np.full((m, m), rho)
        np.fill_diagonal(corr, 1.0)
        sd = multiple * sampling_sd
        return np.asarray(corr * np.outer(sd, sd))


@dataclasses.dataclass(frozen=True)
class MixedHistory:
    """A simulated history of many designs (see :func:`proxyscope.simulate.mixed_history`).

    Attributes
    ----------
    effects : CellEffects
        The cells, with a ``design`` per cell; ``noise_cov`` is the sampling
        covariance only.
    truth : ModelTruth
        The model's parameters and realised effects (as :func:`from_model`);
        ``truth.latent`` holds each cell's true effect.
    bias_cov : xarray.DataArray
        The true Sigma_d, dims (design, metric, metric_), for the
        non-randomized designs present.
    bias : xarray.DataArray
        The drawn b_c, dims (cell, metric), 0 on randomized cells, with the
        ``design`` coordinate: ``effects.effect == from_model effect + bias``.
    experiment_design : pandas.Series
        The design of each experiment.
    config : MixedConfig
        The designs' settings.
    """

    effects: CellEffects
    truth: ModelTruth
    bias_cov: xr.DataArray
    bias: xr.DataArray
    experiment_design: pd.Series
    config: MixedConfig


def mixed_history(
    config: MixedConfig | None = None,
    *,
    design_shares: Mapping[str, float] | None = None,
    bias_sd_multiple: float | Mapping[str, float] | None = None,
    bias_corr: float | Mapping[str, float] | None = None,
    clusters_per_arm: int | None = None,
    bias_shared: float | None = None,
    seed: int = 0,
    **model: Any,
) -> MixedHistory:
    """Simulate a history of experiments of several designs, the non-randomized ones biased.

    Parameters
    ----------
    config : MixedConfig, optional
        The designs' settings at once; the keywords below replace its fields.
    design_shares, bias_sd_multiple, bias_corr, clusters_per_arm, bias_shared
        Fields of :class:`MixedConfig`.
    seed : int
        Seed of from_model's draws and of the designs' stream.
    **model
        Any other option of :func:`~proxyscope.simulate.from_model`
        (n_experiments, levels, nu, mu, beta, sigma, sd_e, sd_e_outcome, sd_c,
        corr_e, noise_sd, noise_corr, users_per_arm).

    Returns
    -------
    MixedHistory

    Raises
    ------
    ParameterError
        An unknown option or an invalid setting, naming it and the value.

    Examples
    --------
    >>> from proxyscope import simulate
    >>> history = simulate.mixed_history(n_experiments=20, seed=1)
    >>> history.effects.designs
    ['ab', 'cluster', 'did', 'rdd', 'ipw', 'synthetic_control']
    """
    for key in model:
        if key not in _MODEL_OPTIONS:
            raise ParameterError(
                f"Unknown option {key!r} of mixed_history; expected one of "
                f"{[f.name for f in dataclasses.fields(MixedConfig)]} "
                f"or an option of from_model {list(_MODEL_OPTIONS)}."
                + suggestion(
                    key, [*_MODEL_OPTIONS, *(f.name for f in dataclasses.fields(MixedConfig))]
                )
            )
    if config is not None and not isinstance(config, MixedConfig):
        raise ParameterError(
            f"config must be a MixedConfig; got {type(config).__name__} {config!r}."
        )
    if not is_int(seed) or seed < 0:
        raise ParameterError(
            f"The 'seed' parameter of mixed_history must be an integer >= 0; got {seed!r}."
        )
    given: dict[str, Any] = {
        "design_shares": design_shares,
        "bias_sd_multiple": bias_sd_multiple,
        "bias_corr": bias_corr,
        "clusters_per_arm": clusters_per_arm,
        "bias_shared": bias_shared,
    }
    given = {k: v for k, v in given.items() if v is not None}
    base = config if config is not None else MixedConfig()
    config = dataclasses.replace(base, **given) if given else base
    cells, truth = from_model(seed=seed, **model)

    experiments = cells.experiments
    counts = config.counts(len(experiments))
    rng = np.random.default_rng([seed, _MIXED_KEY])
    per_experiment = rng.permutation(np.repeat(list(counts), list(counts.values())))
    lookup = dict(zip(experiments.tolist(), per_experiment.tolist(), strict=True))
    design = np.array([lookup[e] for e in cells.experiment.tolist()], dtype=object)
    z = rng.standard_normal(cells.effect.shape)
    sampling_sd = np.sqrt(np.diag(cells.noise_cov[0]))
    present = [d for d in BIASED if d in counts]
    covs = {d: config.bias_cov(sampling_sd, d) for d in present}
    if config.bias_shared > 0:  # drawn after z, so a world without sharing keeps its draws
        exp_index = pd.Index(experiments).get_indexer(cells.experiment)
        z_e = rng.standard_normal((len(experiments), z.shape[1]))[exp_index]
        z = np.sqrt(config.bias_shared) * z_e + np.sqrt(1.0 - config.bias_shared) * z
    bias = np.zeros_like(cells.effect)
    for d in present:
        rows = design == d
        bias[rows] = z[rows] @ psd_factor(covs[d]).T

    variables: dict[str, np.ndarray] = {}
    if ds.CLUSTER in counts:
        n_clusters = np.where(design == ds.CLUSTER, config.clusters_per_arm, 0)
        variables = {ds.N_CLUSTERS_TREAT: n_clusters, ds.N_CLUSTERS_CONTROL: n_clusters}
    metrics = list(cells.metrics)
    effects = build(
        cells.cells().drop(columns=dims.SEGMENT_LABEL),
        cells.data[dims.N_TREAT].values,
        cells.data[dims.N_CONTROL].values,
        cells.effect + bias,
        cells.noise_cov,
        outcome=cells.outcome,
        proxies=cells.proxies,
        segments=cells.segments,
        directions=cells.directions,
        engine="simulate.mixed_history",
        design=design,
        variables=variables,
    )
    if truth.starts is not None:  # a world over periods keeps its start dates
        effects = effects.with_time(truth.starts, period=truth.period)
    bias_cov = xr.DataArray(
        np.array([covs[d] for d in present]).reshape(len(present), len(metrics), len(metrics)),
        dims=(dims.DESIGN, dims.METRIC, dims.METRIC_),
        coords={dims.DESIGN: present, dims.METRIC: metrics, dims.METRIC_: metrics},
        name="bias_cov",
    )
    bias_da = xr.DataArray(
        bias,
        dims=(dims.CELL, dims.METRIC),
        coords={
            dims.CELL: np.arange(len(design)),
            dims.METRIC: metrics,
            dims.DESIGN: (dims.CELL, design),
        },
        name="bias",
    )
    experiment_design = pd.Series(
        per_experiment, index=pd.Index(experiments, name=dims.EXPERIMENT), name=dims.DESIGN
    )
    return MixedHistory(effects, truth, bias_cov, bias_da, experiment_design, config)

"""Time in the simulated worlds: a calendar of periods, start dates, drift and its truth.

A world with ``periods = P`` spreads its E experiments evenly over P
consecutive calendar periods (weeks, months, quarters or years; experiment e
is in period ``floor(e P / E)``, so every period holds E/P experiments, give
or take one) and gives each a start date: the first day of its period plus a
whole number of days drawn uniformly within the period. Period labels are
those of :meth:`proxyscope.CellEffects.with_time`: "2024-W03", "2024-01",
"2024-Q1", "2024".

:func:`from_model` (:mod:`proxyscope.simulate.model_world`) uses
:func:`model_paths` for the per-period parameters of a drifting proxy model.
The streaming world's drifting watch proxy (``StreamingConfig.watch_drift``)
has its per-period truth here: :func:`population_slopes` and
:func:`time_truth`. The checks of the time settings live with the settings,
in :mod:`proxyscope.simulate.config`.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from proxyscope import dims
from proxyscope.errors import ParameterError, suggestion
from proxyscope.simulate import scenario as sc
from proxyscope.simulate.config import GROUPINGS, StreamingConfig, time_error
from proxyscope.simulate.mix import SegmentMix, is_real
from proxyscope.simulate.population import Mechanism, cell_array

#: Name of the experiments' start dates (a column of a streaming world's users).
START_COLUMN = "start_date"
#: Dim of per-period truth.
PERIOD = dims.PERIOD


def label(period: pd.Period, grouping: str) -> str:
    """The label of a calendar period: "2024-W03", "2024-01", "2024-Q1" or "2024"."""
    first = period.start_time
    if grouping == "week":
        year, week, _ = first.isocalendar()
        return f"{year}-W{week:02d}"
    if grouping == "month":
        return f"{first.year}-{first.month:02d}"
    if grouping == "quarter":
        return f"{first.year}-Q{first.quarter}"
    return f"{first.year}"


@dataclasses.dataclass(frozen=True)
class Calendar:
    """P consecutive periods: their labels and first days (``bounds`` has P + 1 entries;
    period p is ``[bounds[p], bounds[p + 1])``)."""

    grouping: str
    labels: tuple[str, ...]
    bounds: tuple[pd.Timestamp, ...]

    @classmethod
    def of(cls, start: pd.Timestamp, grouping: str, n_periods: int) -> Calendar:
        """The ``n_periods`` periods from the one that contains ``start``."""
        first = pd.Period(start, freq=GROUPINGS[grouping])
        periods = [first + p for p in range(n_periods + 1)]
        return cls(
            grouping,
            tuple(label(p, grouping) for p in periods[:-1]),
            tuple(p.start_time for p in periods),
        )

    @property
    def days(self) -> np.ndarray:
        """Length of each period in days."""
        return np.array([(b - a).days for a, b in itertools.pairwise(self.bounds)])


def spread(n_experiments: int, n_periods: int) -> np.ndarray:
    """Period of each experiment: ``floor(e P / E)`` (even, in experiment order)."""
    return np.arange(n_experiments) * n_periods // n_experiments


def draw_starts(
    rng: np.random.Generator, calendar: Calendar, experiment_period: np.ndarray
) -> pd.Series:
    """Start date of each experiment: its period's first day plus uniform whole days within it.

    Returns a Series indexed by experiment (0..E-1, named ``experiment``) of Timestamps.
    """
    offset = rng.integers(0, calendar.days[experiment_period])
    first = pd.DatetimeIndex(calendar.bounds)[experiment_period]
    starts = first + pd.to_timedelta(offset, unit="D")
    index = pd.RangeIndex(len(experiment_period), name=dims.EXPERIMENT)
    return pd.Series(np.asarray(starts, dtype="datetime64[ns]"), index=index, name="start")


@dataclasses.dataclass(frozen=True)
class Timeline:
    """The periods of a world and when each experiment started."""

    calendar: Calendar
    experiment_period: np.ndarray  # (E,) index into calendar.labels
    starts: pd.Series  # experiment -> Timestamp

    @classmethod
    def draw(
        cls,
        rng: np.random.Generator,
        start: pd.Timestamp,
        grouping: str,
        n_periods: int,
        n_experiments: int,
    ) -> Timeline:
        """Spread ``n_experiments`` over ``n_periods`` from ``start`` and draw their starts."""
        calendar = Calendar.of(start, grouping, n_periods)
        exp_period = spread(n_experiments, n_periods)
        return cls(calendar, exp_period, draw_starts(rng, calendar, exp_period))

    @property
    def experiment_labels(self) -> np.ndarray:
        """Period label of each experiment."""
        return np.asarray(self.calendar.labels, dtype=object)[self.experiment_period]


# -- from_model: per-period parameters -----------------------------------------------


def _drift_rates(drift: Any, proxies: Sequence[str]) -> np.ndarray:
    """Per-proxy slope drift rates from ``{proxy index or name: rate}``."""
    k = len(proxies)
    rates = np.zeros(k)
    if drift is None:
        return rates
    if not isinstance(drift, Mapping):
        raise time_error("from_model", "drift", "a mapping {proxy index or name: rate}", drift)
    for key, rate in drift.items():
        if isinstance(key, str) and key in proxies:
            j = proxies.index(key)
        elif isinstance(key, int | np.integer) and not isinstance(key, bool) and 0 <= key < k:
            j = int(key)
        else:
            hint = suggestion(key, proxies) if isinstance(key, str) else ""
            raise ParameterError(
                f"The 'drift' parameter of from_model: unknown proxy {key!r}; expected an index "
                f"in [0, {k}) or one of {list(proxies)}.{hint}"
            )
        if not is_real(rate) or not math.isfinite(float(rate)) or not float(rate) < 1:
            raise time_error("from_model", f"drift[{key!r}]", "a finite number < 1", rate)
        rates[j] = float(rate)
    return rates


def _step(name: str, step: Any, shape: tuple[int, ...]) -> np.ndarray:
    """A per-period additive step broadcast to ``shape`` (finite numbers)."""
    try:
        arr = np.array(step, dtype=float)
        out = np.broadcast_to(arr, shape)
    except (TypeError, ValueError):
        want = f"a number or an array broadcastable to {shape}"
        raise time_error("from_model", name, want, step) from None
    if not np.isfinite(out).all():
        raise time_error("from_model", name, "finite", step)
    return np.asarray(out, dtype=float)


@dataclasses.dataclass(frozen=True)
class ModelPaths:
    """The proxy model's parameters per period: ``nu`` (P, L), ``mu`` (P, L, K), ``beta`` (P, K)."""

    nu: np.ndarray
    mu: np.ndarray
    beta: np.ndarray


def model_paths(
    nu: np.ndarray,
    mu: np.ndarray,
    beta: np.ndarray,
    *,
    n_periods: int | None,
    drift: Any,
    nu_step: Any,
    mu_step: Any,
    proxies: Sequence[str],
) -> ModelPaths | None:
    """Per-period parameters: ``beta_p = beta (1 - rate)^p``, ``nu_p = nu + p nu_step``,
    ``mu_p = mu + p mu_step`` (p = 0..P-1; with no drift every period is exactly period 0).

    None without periods, where drift and steps must be left unset (ParameterError).
    """
    rates = _drift_rates(drift, proxies)
    nu_s = _step("nu_step", nu_step, nu.shape)
    mu_s = _step("mu_step", mu_step, mu.shape)
    if n_periods is None:
        for name, value, moves in (
            ("drift", drift, drift is not None),
            ("nu_step", nu_step, bool(nu_s.any())),
            ("mu_step", mu_step, bool(mu_s.any())),
        ):
            if moves:
                raise time_error("from_model", name, "left unset without periods", value)
        return None
    p = np.arange(n_periods, dtype=float)
    factor = (1.0 - rates)[None, :] ** p[:, None]  # exactly 1.0 where the rate is 0
    return ModelPaths(
        nu=nu[None, :] + p[:, None] * nu_s[None, :],
        mu=mu[None] + p[:, None, None] * mu_s[None],
        beta=beta[None, :] * factor,
    )


# -- the streaming world: per-period truth -----------------------------------------------

SLOPE_DESCRIPTIONS = {
    "pop_slope": "population regression slope of the cell's long-term effect on its proxy "
    "effect over new experiments of the period (NaN: the proxy's effect does not vary)",
    "pop_mix_slope": "the same for the mix-level effects",
    "watch_gamma": "sd (exp_tau units) of the period's watch-only push; 0 without drift",
    "experiment_start": "the experiment's start date",
    "experiment_period": "label of the period the experiment started in",
    "watch_push": "the experiment's watch-only push gamma_p g_e (exp_tau units; 0 when static)",
}


def population_slopes(config: StreamingConfig, mix: SegmentMix) -> xr.Dataset:
    """Per-period population slopes of a world with periods (:meth:`Mechanism.slopes`).

    Returns
    -------
    xarray.Dataset
        ``pop_slope`` [period, region, device, tenure, proxy], ``pop_mix_slope``
        [period, proxy] (NaN for the proxies whose effect does not vary) and
        ``watch_gamma`` [period].
    """
    if config.periods is None:
        raise ParameterError(
            "Population slopes per period need a world with time; StreamingConfig.periods is None."
        )
    labels = Calendar.of(pd.Timestamp(config.start), config.period, config.periods).labels
    gammas = config.watch_gammas()
    cell, mix_slope = Mechanism.of(config, 0).slopes(mix.cell_probabilities(), gammas)
    period = {PERIOD: list(labels)}
    proxy = {dims.PROXY: list(sc.PROXIES)}
    cells = [cell_array(cell[p], "pop_slope", proxy) for p in range(config.periods)]
    out = xr.Dataset(
        {
            "pop_slope": xr.concat(cells, dim=PERIOD).assign_coords(period),
            "pop_mix_slope": xr.DataArray(
                mix_slope, dims=(PERIOD, dims.PROXY), coords={**period, **proxy}
            ),
            "watch_gamma": xr.DataArray(gammas, dims=PERIOD, coords=period),
        }
    )
    return _describe(out)


def time_truth(
    config: StreamingConfig, timeline: Timeline, watch_push: np.ndarray, mix: SegmentMix
) -> xr.Dataset:
    """A world's time truth: each experiment's start, period and watch push, and the
    population slopes per period (:func:`population_slopes`)."""
    experiment = {dims.EXPERIMENT: np.arange(config.n_experiments)}
    out = population_slopes(config, mix)
    out["experiment_start"] = xr.DataArray(
        timeline.starts.to_numpy(), dims=dims.EXPERIMENT, coords=experiment
    )
    out["experiment_period"] = xr.DataArray(
        timeline.experiment_labels.astype(str), dims=dims.EXPERIMENT, coords=experiment
    )
    out["watch_push"] = xr.DataArray(watch_push, dims=dims.EXPERIMENT, coords=experiment)
    return _describe(out)


def _describe(out: xr.Dataset) -> xr.Dataset:
    for name in out.data_vars:
        out[name].attrs["description"] = SLOPE_DESCRIPTIONS[str(name)]
    return out

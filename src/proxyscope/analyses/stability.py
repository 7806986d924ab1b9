"""Stability over time: is each proxy's link to the long-term effect drifting? (DESIGN.md §9)

A fit with time (``ProxyModel(time=...)``) lets the relation move between
periods as a random walk (:mod:`proxyscope.core.timewalk`). For each proxy k
this reads, from the posterior:

- the slope's path: beta_k in every period (the global slope; per segment
  with ``segments=True``, or always with ``pooling="none"``), posterior mean
  and equal-tailed ``ci`` interval, and a forecast for the period after the
  last one (one more step of the walk, its drift and a step: its interval is
  wider);
- per pair of periods (a, b) (default: the first and the last): the change
  Delta = beta_k(b) - beta_k(a), its relative size Delta / beta_k(a) (median
  and interval over draws; undefined where beta_k(a)'s interval holds 0), and
  ``p_changed`` = max(P(Delta > 0), P(Delta < 0)): 0.5 is no evidence either
  way, values near 1 say the slope moved, in the direction of the change's
  sign. The walk moves every segment alike, so Delta is the same for every
  segment; its relative size is not.
- one line per proxy, e.g. "early_watch_min's link to long_retained has
  weakened by 40% [25%, 55%] since 2025-Q1; P(changed) = 0.99". A slope
  whose size moves toward 0 has "weakened", away from 0 "strengthened";
  below ``probability`` the line says the change is not clear.

Calibration against simulated worlds with a known drift and a static control
is measured in ``benchmarks/bench_stability.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from proxyscope import dims
from proxyscope.analyses.arguments import check_bool, check_fit, check_unit
from proxyscope.core.draws import check_ci, flat, interval
from proxyscope.errors import ParameterError
from proxyscope.model.periods import fit_periods, resolve_period
from proxyscope.model.segments import analysis_seed
from proxyscope.options import DEFAULT_CI

if TYPE_CHECKING:
    from proxyscope.model.fit import ProxyFit

OWNER = "stability"
#: The forecast's random stream beside the fit's seed (16: kept from when it was
#: the length of a parameter's name, so forecasts are unchanged).
_FORECAST_STREAM = 16
#: Segment label of the global (pooled) slope's rows.
ALL = "all segments (global)"


@dataclasses.dataclass(frozen=True)
class Stability:
    """What :func:`stability` found.

    Attributes
    ----------
    paths : DataFrame
        proxy, segment, period, mean, lower, upper, forecast (True for the
        period after the last, one walk step ahead).
    changes : DataFrame
        proxy, segment, from_period, to_period, change (mean), change_lower,
        change_upper, relative (median of Delta / beta(from)), relative_lower,
        relative_upper (NaN where beta(from)'s interval holds 0), p_changed,
        direction ("weakened", "strengthened").
    readings : list of str
        One line per proxy and pair of periods (global slope).
    ci, probability : float
    outcome : str
    """

    paths: pd.DataFrame
    changes: pd.DataFrame
    readings: list[str]
    ci: float
    probability: float
    outcome: str

    def summary(self) -> str:
        """The readings, one per line."""
        return "\n".join(self.readings)

    def to_dict(self) -> dict[str, Any]:
        """Plain types for JSON (the report's stability section)."""

        def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
            out = frame.astype(object).where(frame.notna(), None)
            return [{str(k): v for k, v in r.items()} for r in out.to_dict(orient="records")]

        return {
            "ci": self.ci,
            "probability": self.probability,
            "paths": records(self.paths),
            "changes": records(self.changes),
            "readings": list(self.readings),
        }


def _pairs(fit: ProxyFit, between: Any) -> list[tuple[str, str]]:
    periods = fit_periods(fit)
    if between is None:
        return [(periods[0], periods[-1])]
    if isinstance(between, str) or not hasattr(between, "__iter__"):
        # A single label is not a pair (list("2025-Q1") would be its characters).
        raise ParameterError(
            f"The 'between' parameter of {OWNER} must be a pair of periods or a list of "
            f"pairs, e.g. ('{periods[0]}', '{periods[-1]}'); got {between!r}."
        )
    items = list(between)
    if len(items) == 2 and all(isinstance(x, (str, int)) for x in items):
        items = [tuple(items)]
    out = []
    for item in items:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ParameterError(
                f"The 'between' parameter of {OWNER} must be a pair of periods or a list of "
                f"pairs, e.g. ('{periods[0]}', '{periods[-1]}'); got {item!r}."
            )
        a = resolve_period(fit, item[0], OWNER)
        b = resolve_period(fit, item[1], OWNER)
        if a == b:
            raise ParameterError(
                f"The 'between' parameter of {OWNER} needs two different periods; got {item!r}."
            )
        out.append((str(a), str(b)))
    return out


def _slope_paths(fit: ProxyFit, segments: bool) -> dict[str, np.ndarray]:
    """Per segment label: slope draws (N, P, K) over periods."""
    post = fit.posterior
    out: dict[str, np.ndarray] = {}
    if fit.pooling != "none":
        path = post["beta_global_path"].transpose(dims.CHAIN, dims.DRAW, dims.PERIOD, dims.PROXY)
        out[ALL] = flat(path)
    if segments or fit.pooling == "none":
        path = post["beta_path"].transpose(
            dims.CHAIN, dims.DRAW, dims.SEGMENT, dims.PERIOD, dims.PROXY
        )
        values = flat(path)
        for s, label in enumerate(post[dims.SEGMENT].values):
            out[str(label)] = values[:, s]
    return out


def _forecast(fit: ProxyFit, last: np.ndarray, seed: int) -> np.ndarray:
    """One more step of the walk from the last period's slopes (N, K): the drift
    plus a step of the walk's scale (either absent when the model has none)."""
    post = fit.posterior
    out = np.array(last, dtype=float)
    if "time_drift_beta" in post:
        out += flat(post["time_drift_beta"].transpose(dims.CHAIN, dims.DRAW, dims.PROXY))
    if "time_step_sd_beta" in post:
        step = flat(post["time_step_sd_beta"].transpose(dims.CHAIN, dims.DRAW, dims.PROXY))
        rng = np.random.default_rng([seed, _FORECAST_STREAM])
        out += step * rng.standard_normal(step.shape)
    return out


def _percent(x: float) -> str:
    return f"{abs(100.0 * x):.0f}%"


def _reading(row: Any, outcome: str, probability: float) -> str:
    link = f"{row.proxy}'s link to {outcome}"
    since = f"between {row.from_period} and {row.to_period}"
    p = f"P(changed) = {row.p_changed:.2f}"
    if row.p_changed < probability:
        return f"{link} shows no clear change {since}; {p}."
    if np.isfinite(row.relative):
        lo, hi = sorted((abs(row.relative_lower), abs(row.relative_upper)))
        if row.relative_lower < 0 < row.relative_upper:
            lo = 0.0
        size = f"{_percent(row.relative)} [{_percent(lo)}, {_percent(hi)}]"
    else:
        size = f"{abs(row.change):.3g} [{row.change_lower:.3g}, {row.change_upper:.3g}] per unit"
    return f"{link} has {row.direction} by {size} {since}; {p}."


def stability(
    fit: ProxyFit,
    between: Sequence[Any] | None = None,
    segments: bool = False,
    ci: float = DEFAULT_CI,
    probability: float = 0.95,
    random_seed: int | None = None,
) -> Stability:
    """How each proxy's slope moved over the periods of a fit with time.

    Parameters
    ----------
    fit : ProxyFit
        A fit of ``ProxyModel(time=...)``.
    between : pair of periods or list of pairs, optional
        The periods to compare (default: the first and the last).
    segments : bool, default False
        Also give each segment's path (the global slope's is always given,
        except with ``pooling="none"``, which has only segments).
    ci : float, default 0.9
        Interval level.
    probability : float, default 0.95
        ``p_changed`` from which a reading calls the change clear.
    random_seed : int, optional
        Seeds the forecast's walk step (default: the fit's seed).

    Returns
    -------
    Stability

    Raises
    ------
    ParameterError
        A static fit (no periods), an unknown period, a malformed pair.
    """
    fit = check_fit(fit, OWNER)
    ci = check_ci(ci, OWNER)
    probability = check_unit(probability, "probability", OWNER)
    segments = check_bool(segments, "segments", OWNER)
    periods = fit_periods(fit)
    if len(periods) < 2:
        raise ParameterError(
            f"{OWNER} needs a fit whose relation moves over time: ProxyModel(time=...) on "
            "cells with start dates in at least two periods; this fit "
            + ("is static." if not periods else f"has one period ({periods[0]!r}).")
        )
    pairs = _pairs(fit, between)
    seed = analysis_seed(fit, random_seed)
    proxies = list(fit.info.proxies)
    path_rows, change_rows = [], []
    for label, draws in _slope_paths(fit, segments).items():
        ahead = _forecast(fit, draws[:, -1], seed)
        for j, proxy in enumerate(proxies):
            series = np.column_stack([draws[:, :, j], ahead[:, j]])
            lo, hi = interval(series, ci)
            for p, name in enumerate([*periods, f"after {periods[-1]}"]):
                path_rows.append(
                    {
                        "proxy": proxy,
                        "segment": label,
                        dims.PERIOD: name,
                        "mean": float(series[:, p].mean()),
                        "lower": float(lo[p]),
                        "upper": float(hi[p]),
                        "forecast": p == len(periods),
                    }
                )
            for a, b in pairs:
                start = draws[:, periods.index(a), j]
                delta = draws[:, periods.index(b), j] - start
                c_lo, c_hi = interval(delta, ci)
                s_lo, s_hi = interval(start, ci)
                rel = rel_lo = rel_hi = np.nan
                if s_lo > 0 or s_hi < 0:
                    ratio = delta / start
                    rel = float(np.median(ratio))
                    rel_lo, rel_hi = (float(v) for v in interval(ratio, ci))
                mean = float(delta.mean())
                toward_zero = np.sign(mean) != np.sign(float(np.median(start)))
                change_rows.append(
                    {
                        "proxy": proxy,
                        "segment": label,
                        "from_period": a,
                        "to_period": b,
                        "change": mean,
                        "change_lower": float(c_lo),
                        "change_upper": float(c_hi),
                        "relative": rel,
                        "relative_lower": rel_lo,
                        "relative_upper": rel_hi,
                        "p_changed": float(max(np.mean(delta > 0), np.mean(delta < 0))),
                        "direction": "weakened" if toward_zero else "strengthened",
                    }
                )
    changes = pd.DataFrame(change_rows)
    top = changes[changes["segment"] == changes["segment"].iloc[0]]
    readings = [_reading(r, fit.info.outcome, probability) for r in top.itertuples()]
    return Stability(
        paths=pd.DataFrame(path_rows),
        changes=changes,
        readings=readings,
        ci=ci,
        probability=probability,
        outcome=fit.info.outcome,
    )

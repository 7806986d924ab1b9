"""Start dates and periods on a :class:`~proxyscope.data.cells.CellEffects`.

Storage (DESIGN.md §9). Two coordinates on ``cell``, equal in every cell of an
experiment:

- ``start`` (:data:`proxyscope.dims.START`): the experiment's start,
  datetime64[ns] (naive UTC) for dates or float64 for numbers;
- ``period`` (:data:`proxyscope.dims.PERIOD`): the label of its period (str);

and ``meta["time"]``: ``column`` (where the starts came from, or None),
``grouping`` ("week", "month", "quarter", "year", "bins" or "number"),
``periods`` (every period label in order, calendar-complete from the first
experiment's period to the last's), ``period_starts`` (where each begins: an
ISO date or a number) and, for bins, ``edges``. The periods follow from the
starts and the grouping (:mod:`proxyscope.data.time`), so they are derived again
whenever the cells change (a subset, a concatenation) and checked when a
CellEffects is built or loaded. Cells without time carry none of these and are
exactly as before. The methods CellEffects gives on them:
:mod:`proxyscope.data.time_methods`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from proxyscope import dims
from proxyscope.data.cellfile import META_ATTR
from proxyscope.data.time import (
    BINS,
    EXPECTED,
    GROUPINGS,
    Period,
    Start,
    Unparseable,
    as_array,
    assign,
    check_kinds,
    check_period,
    parse_start,
    resolve,
    show_start,
    table,
)
from proxyscope.data.validate import SHOW, scalar
from proxyscope.errors import ColumnError, DataError, DataTypeError, ParameterError

#: Coordinates on ``cell`` that hold no start (``with_time`` refuses them by name).
_NOT_STARTS = (dims.CELL, dims.EXPERIMENT, dims.SEGMENT_LABEL, dims.DESIGN, dims.START, dims.PERIOD)


def exp_key(value: Any) -> str:
    """An experiment id as a key that matches however it was typed (3, 3.0, "3")."""
    v = scalar(value)
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v)


def shown_id(value: Any) -> str:
    return repr(scalar(value))


def experiment_starts(data: xr.Dataset) -> pd.Series:
    """Each experiment's start, by experiment id in order of first appearance."""
    exp = pd.Series(np.asarray(data[dims.EXPERIMENT].values))
    first = ~exp.duplicated().to_numpy()
    starts = np.asarray(data[dims.START].values)[first]
    index = pd.Index(exp.to_numpy()[first], name=dims.EXPERIMENT)
    return pd.Series(starts, index=index, name=dims.START)


def attach(
    data: xr.Dataset,
    starts: Any,
    period: Any,
    *,
    column: str | None,
    owner: str,
) -> xr.Dataset:
    """``data`` (a CellEffects dataset) with the start of every cell's experiment and
    its period (see :meth:`TimeMixin.with_time`); ``column`` is recorded as where the
    starts came from (a coordinate's name when ``starts`` names one)."""
    meta = json.loads(data.attrs[META_ATTR])
    clash = [s for s in meta["segments"] if s in (dims.START, dims.PERIOD)]
    if clash:
        raise ColumnError(
            f"{owner}: the segment column {clash[0]!r} has the name of the time coordinate "
            f"{clash[0]!r}; rename the segment column to add start dates."
        )
    p = check_period(period, owner=owner)
    experiments = np.asarray(data[dims.EXPERIMENT].values)
    keys = [exp_key(e) for e in experiments]
    ids = dict(zip(keys, experiments, strict=True))
    if isinstance(starts, str):
        given = _from_coordinate(data, starts, keys, ids, owner=owner)
        column = starts
    elif isinstance(starts, Mapping | pd.Series):
        given = {}
        for k, v in starts.items():
            key = exp_key(k)
            if key in given and not _same(given[key], v):
                raise ParameterError(
                    f"The 'starts' parameter of {owner} gives experiment {key!r} twice "
                    f"({given[key]!r} and {v!r}, as {k!r})."
                )
            given[key] = v
    else:
        raise DataTypeError(
            f"The 'starts' parameter of {owner} must be a dict or Series {{experiment: "
            f"start}}, or the name of a coordinate on 'cell'; got {type(starts).__name__}."
        )
    source = f"column {column!r}" if column else f"the starts given to {owner}"
    absent = [k for k in ids if k not in given]
    if absent:
        shown = ", ".join(shown_id(ids[k]) for k in absent[:SHOW])
        more = f" and {len(absent) - SHOW} more" if len(absent) > SHOW else ""
        raise DataError(
            f"No start for {len(absent)} experiment(s) in {source}: {shown}{more}; every "
            "experiment needs one."
        )
    parsed: dict[str, Start] = {}
    for k in ids:
        parsed[k] = parse_or_raise(given[k], experiment=ids[k], source=source)
    dates = check_kinds({shown_id(ids[k]): s for k, s in parsed.items()}, source=source)
    p = resolve(p, dates, column=column)
    return store(data, meta, as_array([parsed[k] for k in keys]), p, column)


def parse_or_raise(value: Any, *, experiment: Any, source: str) -> Start:
    """A parsed start; a DataError naming the source, experiment and value otherwise."""
    try:
        got = parse_start(value)
    except Unparseable as exc:
        raise DataError(
            f"{source[0].upper()}{source[1:]} holds {scalar(value)!r} for experiment "
            f"{shown_id(experiment)}, which is {exc}; expected {EXPECTED}."
        ) from None
    if got is None:
        raise DataError(
            f"{source[0].upper()}{source[1:]} has no start (a missing value) for experiment "
            f"{shown_id(experiment)}; every experiment needs one."
        )
    return got


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(parse_start(a) == parse_start(b))
    except Unparseable:
        return False


def _from_coordinate(
    data: xr.Dataset, name: str, keys: Sequence[str], ids: Mapping[str, Any], *, owner: str
) -> dict[str, Any]:
    usable = [str(c) for c in data.coords if data[c].dims == (dims.CELL,) and c not in _NOT_STARTS]
    if name not in usable:
        raise ParameterError(
            f"The 'starts' parameter of {owner} names {name!r}, which is not a coordinate on "
            f"'cell' that can hold starts; such coordinates: {usable or 'none'}. Give a dict "
            "{experiment: start} instead."
        )
    values = np.asarray(data[name].values)
    by_key: dict[str, list[Any]] = {}
    for k, v in zip(keys, values, strict=True):
        seen = by_key.setdefault(k, [])
        if not any(_same(v, s) for s in seen):
            seen.append(v)
    several = {k: v for k, v in by_key.items() if len(v) > 1}
    if several:
        raise several_error(several, ids, f"coordinate {name!r}")
    return {k: v[0] for k, v in by_key.items()}


def several_error(
    several: Mapping[str, Sequence[Any]], ids: Mapping[str, Any], source: str
) -> DataError:
    """The error for experiments with more than one start (named, with their values)."""
    parts = []
    for k, values in list(several.items())[:SHOW]:
        shown = ", ".join(_show_value(v) for v in values[:3]) + (", ..." if len(values) > 3 else "")
        parts.append(f"{shown_id(ids.get(k, k))} ({shown})")
    more = f" and {len(several) - SHOW} more" if len(several) > SHOW else ""
    return DataError(
        f"{source[0].upper()}{source[1:]} must hold one start per experiment; "
        f"{len(several)} experiment(s) have several: {'; '.join(parts)}{more}. An "
        "experiment's start is one date: fix the rows, or split the experiment."
    )


def _show_value(v: Any) -> str:
    try:
        parsed = parse_start(v)
    except Unparseable:
        parsed = None
    return show_start(parsed) if parsed is not None else repr(scalar(v))


def store(
    data: xr.Dataset,
    meta: Mapping[str, Any],
    starts: np.ndarray,
    period: Period,
    column: str | None,
) -> xr.Dataset:
    """``data`` with the per-cell ``starts`` and their periods by ``period``, and
    ``meta`` with ``meta["time"]`` (the dataset's attributes hold it)."""
    experiments = np.asarray(data[dims.EXPERIMENT].values)
    who = [shown_id(e) for e in experiments]
    if starts.dtype.kind == "M":
        starts = starts.astype("datetime64[ns]")
    ordinals = assign(starts, period, who)
    low, high = int(ordinals.min()), int(ordinals.max())
    labels, begins = table(low, high, period)
    cell_labels = np.empty(len(ordinals), dtype=object)
    cell_labels[:] = [labels[o - low] for o in ordinals]
    out = data.assign_coords(
        {dims.START: (dims.CELL, starts), dims.PERIOD: (dims.CELL, cell_labels)}
    )
    time: dict[str, Any] = {
        "column": column,
        "grouping": period.grouping,
        "periods": labels,
        "period_starts": begins,
    }
    if period.grouping == BINS:
        time["edges"] = period.edges_json()
    new_meta = {**meta, "time": time}
    out.attrs = {**data.attrs, META_ATTR: json.dumps(new_meta)}
    return out


def period_of(time: Any) -> Period:
    """The grouping ``meta["time"]`` records (a DataError when it is malformed)."""
    grouping = time.get("grouping") if isinstance(time, Mapping) else None
    if grouping not in GROUPINGS:
        raise DataError(
            f"CellEffects metadata 'time' must give a 'grouping' among {list(GROUPINGS)}; "
            f"got {grouping!r}."
        )
    if grouping != BINS:
        return Period(grouping)
    try:
        p = check_period(time.get("edges"), owner="CellEffects")
    except ParameterError as exc:
        raise DataError(f"CellEffects metadata 'time' holds malformed bin edges: {exc}") from None
    assert p is not None
    return p


def restore(data: xr.Dataset) -> xr.Dataset:
    """``data`` with its periods derived again from its starts (after a subset or a
    concatenation); unchanged without time."""
    if dims.START not in data.coords:
        return data
    meta = json.loads(data.attrs[META_ATTR])
    time = meta.get("time") or {}
    starts = np.asarray(data[dims.START].values)
    return store(data, meta, starts, period_of(time), time.get("column"))


def check(data: xr.Dataset, meta: Mapping[str, Any]) -> None:
    """The time of a CellEffects dataset, when it has any, is whole and consistent:
    both coordinates and ``meta["time"]``, one start per experiment, and the periods
    that the starts and the grouping give.

    Raises
    ------
    DataError
        Naming what is missing or inconsistent.
    """
    # A segment column may be named "period" in cells without time: time is the
    # start coordinate or the metadata.
    if dims.START not in data.coords and meta.get("time") is None:
        return
    parts = {
        f"coordinate {dims.START!r}": dims.START in data.coords,
        f"coordinate {dims.PERIOD!r}": dims.PERIOD in data.coords,
        "metadata 'time'": meta.get("time") is not None,
    }
    if not all(parts.values()):
        have = [k for k, v in parts.items() if v]
        lack = [k for k, v in parts.items() if not v]
        raise DataError(
            f"CellEffects has the {' and '.join(have)} but lacks the {' and '.join(lack)}; "
            "start dates need all three (add them with CellEffects.with_time)."
        )
    for name in (dims.START, dims.PERIOD):
        if data[name].dims != (dims.CELL,):
            raise DataError(
                f"CellEffects coordinate {name!r} must have dims ('cell',); got {data[name].dims}."
            )
    starts = np.asarray(data[dims.START].values)
    if starts.dtype.kind not in "Mf":
        raise DataError(
            f"CellEffects coordinate {dims.START!r} must hold datetime64 or float64 starts; "
            f"got dtype {starts.dtype}."
        )
    bad = np.isnat(starts) if starts.dtype.kind == "M" else ~np.isfinite(starts)
    experiments = np.asarray(data[dims.EXPERIMENT].values)
    if bad.any():
        raise DataError(
            f"CellEffects coordinate {dims.START!r} has no start for experiment "
            f"{shown_id(experiments[int(np.flatnonzero(bad)[0])])} (NaT or NaN)."
        )
    frame = pd.DataFrame({"e": [exp_key(e) for e in experiments], "s": starts})
    counts = frame.drop_duplicates().groupby("e", sort=False)["s"].agg(list)
    several = {str(k): v for k, v in counts.items() if len(v) > 1}
    if several:
        ids = dict(zip(frame["e"], experiments, strict=True))
        raise several_error(several, ids, f"CellEffects coordinate {dims.START!r}")
    time = meta["time"]
    p = period_of(time)
    if p.dates != (starts.dtype.kind == "M"):
        raise DataError(
            f"CellEffects metadata 'time' groups {'dates' if p.dates else 'numbers'} by "
            f"{p.describe()!r}, but its starts are {'dates' if not p.dates else 'numbers'}."
        )
    expected = store(data, meta, starts, p, time.get("column"))
    stored = np.asarray(data[dims.PERIOD].values).astype(str)
    want = np.asarray(expected[dims.PERIOD].values).astype(str)
    if (stored != want).any():
        i = int(np.flatnonzero(stored != want)[0])
        raise DataError(
            f"CellEffects coordinate {dims.PERIOD!r} says {str(stored[i])!r} for experiment "
            f"{shown_id(experiments[i])}, but its start {show_start(starts[i])} falls in "
            f"{str(want[i])!r} by {p.describe()}."
        )
    derived = json.loads(expected.attrs[META_ATTR])["time"]
    for key in ("periods", "period_starts", "edges"):
        if time.get(key) != derived.get(key):
            raise DataError(
                f"CellEffects metadata 'time' gives {key} {time.get(key)!r}, but the starts "
                f"grouped by {p.describe()} give {derived.get(key)!r}."
            )


def check_parts(parts: Sequence[Any], owner: str) -> str | None:
    """Parts to concatenate all carry time, with one grouping, or none carries it.

    Returns the column the starts came from when every part names the same one.

    Raises
    ------
    ParameterError
        Naming the part that lacks start dates, or the two parts that group them
        differently.
    """
    have = [bool(p.has_time) for p in parts]
    if not any(have):
        return None
    if not all(have):
        lack, has = have.index(False), have.index(True)
        raise ParameterError(
            f"{owner}: part {lack} has no start dates but part {has} has; give every part "
            "start dates (summarize(..., time=...) or CellEffects.with_time) or none."
        )
    first = period_of(parts[0].meta["time"])
    for i, part in enumerate(parts[1:], start=1):
        other = period_of(part.meta["time"])
        if other != first:
            raise ParameterError(
                f"{owner}: part {i} groups its start dates by {other.describe()!r} but part 0 "
                f"by {first.describe()!r}; regroup one with CellEffects.with_periods."
            )
    columns = {p.meta["time"].get("column") for p in parts}
    return columns.pop() if len(columns) == 1 else None


def describe(data: xr.Dataset, meta: Mapping[str, Any]) -> str | None:
    """The repr's line about time, or None without it."""
    if dims.START not in data.coords:
        return None
    time = meta["time"]
    starts = experiment_starts(data)
    periods = list(time["periods"])
    used = set(np.asarray(data[dims.PERIOD].values).astype(str))
    empty = sum(1 for p in periods if p not in used)
    source = f" (column {time['column']!r})" if time.get("column") else ""
    span = periods[0] if len(periods) == 1 else f"{periods[0]} .. {periods[-1]}"
    gaps = f", {empty} without experiments" if empty else ""
    return (
        f"  time: starts {show_start(starts.min())} .. {show_start(starts.max())}{source}; "
        f"{len(periods)} period(s) by {period_of(time).describe()}: {span}{gaps}"
    )


def fingerprint(data: xr.Dataset, meta: Mapping[str, Any]) -> bytes | None:
    """What the time adds to a fingerprint (None without time)."""
    if dims.START not in data.coords:
        return None
    starts = np.asarray(data[dims.START].values)
    if starts.dtype.kind == "M":
        raw = starts.astype("datetime64[ns]").view(np.int64)
    else:
        raw = starts.astype(np.float64)
    labels = np.asarray(data[dims.PERIOD].values).astype(str).tolist()
    time = meta["time"]
    text = json.dumps([labels, time["grouping"], time.get("edges"), starts.dtype.kind])
    return np.ascontiguousarray(raw).tobytes() + text.encode()

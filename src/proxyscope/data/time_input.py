"""Reading experiments' start dates where the cells are built (``time=``, ``period=``).

:func:`~proxyscope.summarize` (every engine), :func:`~proxyscope.data.arms.from_arm_summaries`
and :func:`~proxyscope.from_estimates` take ``time=`` (a column) and ``period=``. The
column is read per experiment: each engine returns the distinct (experiment, value)
pairs, a few per experiment (:meth:`proxyscope.data.engines.Source.values_per_key`),
never the rows; here they are parsed (:func:`proxyscope.data.time.parse_start`) and
checked: every experiment has exactly one start. A missing start is an error even
with ``dropna=True``: the start belongs to the experiment, not to a row.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import pandas as pd

from proxyscope.data.tables import select_frame
from proxyscope.data.time import Period, Start, Unparseable, check_kinds, check_period, parse_start
from proxyscope.data.time_cells import attach, exp_key, parse_or_raise, several_error, shown_id
from proxyscope.data.validate import SHOW, Roles, column_name, is_missing
from proxyscope.errors import ColumnError, DataError, ParameterError, suggestion

#: Distinct values of the time column fetched per experiment (one is expected; a few
#: more show what is wrong, and catch values that differ in form but not in date).
PER_EXPERIMENT = 16

_Cells = TypeVar("_Cells")


@dataclasses.dataclass(frozen=True)
class TimedRoles(Roles):
    """The roles of a summarize call with a ``time`` column (read per experiment)."""

    time: str | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column read, each once (the time column last)."""
        return (*super().columns, *((self.time,) if self.time is not None else ()))

    def role_of(self, column: str) -> str:
        return "time" if column == self.time else super().role_of(column)


def check_args(time: Any, period: Any, *, owner: str) -> tuple[str | None, Period | None]:
    """The ``time`` column's name and the ``period`` grouping, checked before any data.

    Raises
    ------
    ParameterError
        ``period`` without ``time``, or a ``period`` that is not a grouping.
    DataTypeError
        ``time`` is not a column name.
    """
    if time is None:
        if period is not None:
            raise ParameterError(
                f"The 'period' parameter of {owner} needs 'time' too (the column with each "
                f"experiment's start); got period={period!r} and time=None."
            )
        return None, None
    return column_name(time, param="time", owner=owner), check_period(period, owner=owner)


def check_role(time: str | None, taken: Mapping[str, str]) -> None:
    """The time column plays no other role (``taken``: column -> its role)."""
    if time is not None and time in taken:
        raise ColumnError(
            f"Column {time!r} is given two roles: as {taken[time]!r} and 'time'; each column "
            "may play one role only."
        )


def with_time_role(roles: Roles, time: str | None) -> Roles:
    """``roles`` with the time column (itself without one)."""
    if time is None:
        return roles
    check_role(time, {c: roles.role_of(c) for c in roles.columns})
    kept = {f.name: getattr(roles, f.name) for f in dataclasses.fields(Roles)}
    return TimedRoles(**kept, time=time)


def time_of(roles: Roles) -> str | None:
    """The time column of ``roles`` (None without one)."""
    return roles.time if isinstance(roles, TimedRoles) else None


def read_starts(source: Any, roles: Roles, *, owner: str) -> dict[str, Start] | None:
    """Each experiment's start from an engine's source (None without a time column)."""
    time = time_of(roles)
    if time is None:
        return None
    pairs = source.values_per_key(roles.experiment, time, PER_EXPERIMENT)
    return starts_from_pairs(pairs, column=time)


def frame_starts(
    table: pd.DataFrame, *, experiment: str, time: str, owner: str
) -> dict[str, Start]:
    """Each experiment's start from a pandas table (per-arm summaries, estimates)."""
    available = [str(c) for c in table.columns]
    if time not in available:
        shown = ", ".join(repr(a) for a in available[:SHOW])
        raise ColumnError(
            f"Column {time!r} (given as 'time') is not in the table passed to {owner}."
            f"{suggestion(time, available)} Available columns: {shown}."
        )
    frame = select_frame(
        table,
        [experiment, time],
        where=f"the table passed to {owner}",
        role_of=lambda c: "time" if c == time else "experiment",
        case="none",
    )
    pairs = frame.drop_duplicates()
    return starts_from_pairs(
        zip(pairs[experiment].tolist(), pairs[time].tolist(), strict=True), column=time
    )


def starts_from_pairs(pairs: Iterable[tuple[Any, Any]], *, column: str) -> dict[str, Start]:
    """One start per experiment from distinct (experiment, value) pairs.

    Pairs with a missing experiment are skipped (the caller reports missing ids).

    Raises
    ------
    DataError
        A value that is not a start (column, experiment and value named), experiments
        with a missing start or with several (named, with their values).
    DataTypeError
        Starts that mix dates and numbers.
    """
    source = f"column {column!r} (given as 'time')"
    found: dict[str, list[Start]] = {}
    ids: dict[str, Any] = {}
    missing: list[str] = []
    for e, v in pairs:
        if is_missing(e):
            continue
        k = exp_key(e)
        ids.setdefault(k, e)
        seen = found.setdefault(k, [])
        try:
            s = parse_start(v)
        except Unparseable:
            s = parse_or_raise(v, experiment=e, source=source)  # raises, naming the value
        if s is None:
            missing.append(k)
        elif not any(s == x for x in seen):
            seen.append(s)
    if missing:
        shown = ", ".join(shown_id(ids[k]) for k in dict.fromkeys(missing[:SHOW]))
        n = len(set(missing))
        more = f" and {n - SHOW} more" if n > SHOW else ""
        raise DataError(
            f"Column {column!r} (given as 'time') is missing (NaN/NULL) in rows of {n} "
            f"experiment(s): {shown}{more}. Every row of an experiment needs its start (the "
            "start belongs to the experiment, so dropna does not drop these rows); fill them."
        )
    several = {k: v for k, v in found.items() if len(v) > 1}
    if several:
        raise several_error(several, ids, source)
    starts = {k: v[0] for k, v in found.items()}
    check_kinds({shown_id(ids[k]): s for k, s in starts.items()}, source=source)
    return starts


def add_time(
    cells: _Cells,
    starts: Mapping[str, Start] | None,
    period: Period | None,
    *,
    column: str | None,
    owner: str,
) -> _Cells:
    """``cells`` (a CellEffects) with the starts of its experiments (itself without)."""
    if starts is None:
        return cells
    data = attach(cells.data, starts, period, column=column, owner=owner)  # type: ignore[attr-defined]
    return type(cells)(data)  # type: ignore[call-arg]

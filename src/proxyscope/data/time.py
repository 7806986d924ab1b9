"""Time in the data: experiments' start dates, parsed, and grouped into periods.

DESIGN.md §9: the relation between proxies and outcome may move between periods,
so every experiment carries a start (a date, or a number such as a sprint or a
release) and the period it falls in. This module holds the numpy/pandas part:

- :func:`parse_start` reads one value: a datetime (``datetime64``, a Python
  ``date``/``datetime``, a pandas ``Timestamp``), an ISO date string
  (``"2025-03-01"``, ``"2025-03-01T00:00"``, ``"2025-03-01 12:30:00+02:00"``)
  or a number. A timezone-aware value is converted to UTC and stored without
  its zone (naive UTC).
- :func:`check_period` reads the ``period=`` argument: ``"week"`` (ISO weeks,
  Monday to Sunday, labelled ``"2025-W03"`` by their ISO year, so 2024-12-30
  is in ``"2025-W01"``), ``"month"`` (``"2025-01"``), ``"quarter"``
  (``"2025-Q1"``), ``"year"`` (``"2025"``), ``"number"`` (numeric starts: each
  integer is a period, labelled ``"3"``) or explicit bins: a sequence of at least
  two increasing edges (dates or numbers), bin i holding the starts in
  ``[edge_i, edge_{i+1})``, labelled ``"[2025-01-01, 2025-04-01)"``.
- :func:`assign` numbers each start's period (an ordinal: periods of one grouping
  are consecutive integers) and :func:`table` lists the periods from the first
  start's to the last's, CALENDAR-COMPLETE: a quarter in between without any
  experiment is listed too, so that a model over periods can interpolate it.

Where the starts are stored on a CellEffects: :mod:`proxyscope.data.time_cells`;
how they are read from the inputs: :mod:`proxyscope.data.time_input`.
"""

from __future__ import annotations

import datetime
import decimal
import math
import numbers
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from proxyscope.data.validate import SHOW, is_missing, scalar
from proxyscope.errors import DataError, DataTypeError, ParameterError, suggestion

#: Calendar groupings of dates.
CALENDAR = ("week", "month", "quarter", "year")
#: Numeric starts, each integer its own period.
NUMBER = "number"
#: Explicit edges (dates or numbers).
BINS = "bins"
#: What ``period=`` accepts by name (otherwise a sequence of edges).
PERIOD_NAMES = (*CALENDAR, NUMBER)
#: Every grouping a CellEffects may record (``meta["time"]["grouping"]``).
GROUPINGS = (*CALENDAR, BINS, NUMBER)
#: Most periods from the first start's to the last's: more is a mistake (numeric
#: starts that are timestamps in seconds, a weekly grouping over centuries).
MAX_PERIODS = 10_000
#: A Monday: ISO weeks are numbered from it.
_EPOCH_MONDAY = np.datetime64("1970-01-05", "D")
#: The ISO 8601 forms a string start may take (a date, with an optional time and zone).
_ISO = re.compile(
    r"\d{4}-\d{2}-\d{2}"
    r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
)
#: Numbers beyond this are not whole-number periods a float can tell apart.
_MAX_INT = 2**53
#: How a start is expected to look (messages).
EXPECTED = (
    "a date (datetime64, date or datetime), an ISO date string such as '2025-03-01' or "
    "'2025-03-01T00:00', or a number"
)

Start = pd.Timestamp | float


class Unparseable(ValueError):
    """A value that is not a start (the reason is the message); callers name where."""


def parse_start(value: Any) -> Start | None:
    """One start: a :class:`pandas.Timestamp` (ns, naive UTC), a float, or None if missing.

    Raises
    ------
    Unparseable
        The value is neither a date nor a finite number (a bool, an unreadable
        string, a date outside 1677-2262, ...).
    """
    if isinstance(value, np.datetime64):  # before .item(), which gives an int for ns
        return None if np.isnat(value) else _timestamp(value)
    v = value.item() if isinstance(value, np.generic) else value
    if isinstance(v, str):
        text = v.strip()
        if not text:
            return None
        if _ISO.fullmatch(text) is None:
            raise Unparseable("not an ISO date")
        return _timestamp(text)
    if is_missing(v):
        return None
    if isinstance(v, bool):
        raise Unparseable("a boolean, not a date or number")
    if isinstance(v, pd.Period):
        raise Unparseable("a pandas Period: give its start date (Series.dt.start_time)")
    if isinstance(v, datetime.date):  # datetime and pandas Timestamp included
        return _timestamp(v)
    if isinstance(v, numbers.Real | decimal.Decimal):
        x = float(v)
        if not math.isfinite(x):
            raise Unparseable("not a finite number")
        return x
    raise Unparseable(f"a {type(v).__name__}, not a date or number")


def _timestamp(value: Any) -> pd.Timestamp:
    try:
        ts = pd.Timestamp(value)
        if ts.tzinfo is not None:
            ts = ts.tz_convert("UTC").tz_localize(None)
        return ts.as_unit("ns")
    except (pd.errors.OutOfBoundsDatetime, OverflowError):
        raise Unparseable("a date outside 1677-09-22 .. 2262-04-11") from None
    except ValueError:  # day 31 of February, hour 25, ...
        raise Unparseable("not a valid date") from None


def is_date(start: Any) -> bool:
    """Whether a parsed start is a date (else a number)."""
    return isinstance(start, pd.Timestamp)


def show_start(start: Any) -> str:
    """A start (or an edge) as text: an ISO date (with the time when not midnight) or
    the shortest form of a number."""
    if isinstance(start, np.datetime64):
        start = pd.Timestamp(start)
    if isinstance(start, pd.Timestamp):
        if start == start.normalize():
            return start.date().isoformat()
        return start.isoformat()
    x = float(start)
    return str(int(x)) if x.is_integer() and abs(x) < _MAX_INT else repr(x)


def start_json(start: Any) -> Any:
    """A start as JSON: its ISO text, or a number (an int when whole)."""
    if isinstance(start, pd.Timestamp | np.datetime64):
        return show_start(start)
    x = float(start)
    return int(x) if x.is_integer() and abs(x) < _MAX_INT else x


@dataclass(frozen=True)
class Period:
    """A grouping of starts into periods: its name and, for bins, the edges."""

    grouping: str
    edges: tuple[Start, ...] = ()

    @property
    def dates(self) -> bool:
        """Whether it groups dates (else numbers)."""
        if self.grouping == BINS:
            return is_date(self.edges[0])
        return self.grouping in CALENDAR

    def edges_json(self) -> list[Any] | None:
        """The edges as JSON (None unless bins)."""
        return [start_json(e) for e in self.edges] if self.grouping == BINS else None

    def describe(self) -> str:
        """ "quarter", or "bins [2025-01-01, 2025-04-01, 2025-07-01]"."""
        if self.grouping != BINS:
            return self.grouping
        return "bins [" + ", ".join(show_start(e) for e in self.edges) + "]"


def check_period(period: Any, *, owner: str, param: str = "period") -> Period | None:
    """The ``period`` argument checked (None: the default for the starts' kind).

    Raises
    ------
    ParameterError
        An unknown name (with the closest one suggested), fewer than two edges,
        edges that are not all dates or all numbers, or not increasing.
    """
    if period is None or isinstance(period, Period):
        return period
    where = f"The {param!r} parameter of {owner}"
    want = (
        f"must be one of {{{', '.join(repr(p) for p in PERIOD_NAMES)}}} or a list of at least "
        "two increasing edges (dates or numbers)"
    )
    if isinstance(period, str):
        if period in PERIOD_NAMES:
            return Period(period)
        hint = suggestion(period, PERIOD_NAMES)
        if period == BINS:
            hint = " Give the bins as their edges, e.g. ['2025-01-01', '2025-07-01', '2026-01-01']."
        raise ParameterError(f"{where} {want}. Got {period!r} instead.{hint}")
    if isinstance(period, Mapping) or not isinstance(
        period, Sequence | np.ndarray | pd.Index | pd.Series
    ):
        raise ParameterError(f"{where} {want}. Got {type(period).__name__} {period!r} instead.")
    raw = [v if isinstance(v, np.datetime64) else scalar(v) for v in period]
    if len(raw) < 2:
        raise ParameterError(f"{where} {want}. Got {len(raw)} edge(s): {raw!r}.")
    edges: list[Start] = []
    for i, v in enumerate(raw):
        try:
            e = parse_start(v)
        except Unparseable as exc:
            raise ParameterError(
                f"{where} {want}; edge {i}, {v!r}, is {exc}. Expected {EXPECTED}."
            ) from None
        if e is None:
            raise ParameterError(f"{where} {want}; edge {i} is missing ({v!r}).")
        edges.append(e)
    if len({is_date(e) for e in edges}) > 1:
        raise ParameterError(
            f"{where} {want}; its edges mix dates and numbers: {[show_start(e) for e in edges]}."
        )
    for i in range(1, len(edges)):
        if not edges[i] > edges[i - 1]:  # type: ignore[operator]
            raise ParameterError(
                f"{where} {want}; edge {i} ({show_start(edges[i])}) is not after edge {i - 1} "
                f"({show_start(edges[i - 1])}): the edges must increase."
            )
    return Period(BINS, tuple(edges))


def resolve(period: Period | None, dates: bool, *, column: str | None) -> Period:
    """The grouping of starts of one kind: ``period``, or the default ("quarter" for
    dates, "number" for numbers).

    Raises
    ------
    ParameterError
        The grouping does not fit the starts (a calendar grouping of numbers, or
        ``"number"`` and number edges for dates).
    """
    if period is None:
        return Period("quarter" if dates else NUMBER)
    if period.dates == dates:
        return period
    source = f"column {column!r}" if column else "the given starts"
    if dates:
        raise ParameterError(
            f"The starts in {source} are dates, but period={period.describe()!r} groups "
            f"numbers; use one of {list(CALENDAR)} or date edges."
        )
    raise ParameterError(
        f"The starts in {source} are numbers, but period={period.describe()!r} groups "
        f"dates; use 'number' (each integer a period) or number edges."
    )


def assign(starts: np.ndarray, period: Period, who: Sequence[str]) -> np.ndarray:
    """The period ordinal of every start (int64; a grouping's periods are consecutive).

    ``starts`` is datetime64[ns] (dates) or float64 (numbers), of the kind of
    ``period``; ``who[i]`` names the experiment of start i in messages.

    Raises
    ------
    DataError
        A start outside the bins, or a non-integer number with ``"number"``.
    """
    g = period.grouping
    if g == BINS:
        edges = (
            np.asarray([e.to_datetime64() for e in period.edges], dtype="datetime64[ns]")  # type: ignore[union-attr]
            if period.dates
            else np.asarray(period.edges, dtype=np.float64)
        )
        ordinal = np.searchsorted(edges, starts, side="right").astype(np.int64) - 1
        outside = (ordinal < 0) | (ordinal >= len(edges) - 1)
        if outside.any():
            raise DataError(
                _listed(starts, outside, who)
                + f" outside the bins {period.describe()[5:]}; every start must fall in a bin "
                "[edge, next edge) (the last edge itself is outside). Add edges to cover them."
            )
        return ordinal
    if g == NUMBER:
        x = np.asarray(starts, dtype=np.float64)
        bad = (x != np.floor(x)) | (np.abs(x) >= _MAX_INT)
        if bad.any():
            raise DataError(
                _listed(starts, bad, who) + " not whole numbers; period='number' makes each "
                "integer a period: give the bins' edges as period=[...] for other numbers."
            )
        return x.astype(np.int64)
    idx = pd.DatetimeIndex(np.asarray(starts, dtype="datetime64[ns]"))
    year = np.asarray(idx.year, dtype=np.int64)
    month = np.asarray(idx.month, dtype=np.int64)
    if g == "week":
        days = (np.asarray(starts).astype("datetime64[D]") - _EPOCH_MONDAY).astype(np.int64)
        return days // 7
    if g == "month":
        return year * 12 + month - 1
    if g == "quarter":
        return year * 4 + (month - 1) // 3
    return year


def _listed(starts: np.ndarray, bad: np.ndarray, who: Sequence[str]) -> str:
    """ "The starts of experiments 'a' (2.5) and 'b' (3.5) are": up to SHOW of them."""
    seen: dict[str, str] = {}
    for i in np.flatnonzero(bad).tolist():
        seen.setdefault(who[i], show_start(starts[i]))
    items = [f"{w} ({s})" for w, s in list(seen.items())[:SHOW]]
    if len(seen) > SHOW:
        items.append(f"{len(seen) - SHOW} more")
    if len(items) == 1:
        return f"The start of experiment {items[0]} is"
    return f"The starts of experiments {', '.join(items[:-1])} and {items[-1]} are"


def table(low: int, high: int, period: Period) -> tuple[list[str], list[Any]]:
    """The label and the beginning (ISO date or number, as JSON) of every period
    from ordinal ``low`` to ``high``, calendar-complete.

    Raises
    ------
    DataError
        More than :data:`MAX_PERIODS` periods.
    """
    n = high - low + 1
    if n > MAX_PERIODS:
        raise DataError(
            f"The starts span {n:,} periods by {period.describe()} (from {label(low, period)} to "
            f"{label(high, period)}); at most {MAX_PERIODS:,} are allowed. Group by a longer "
            "period or by bins (and check that the starts are what you meant: numbers such as "
            "timestamps in seconds are not periods)."
        )
    ordinals = range(low, high + 1)
    return [label(o, period) for o in ordinals], [begins(o, period) for o in ordinals]


def label(ordinal: int, period: Period) -> str:
    """The label of the period with this ordinal."""
    g = period.grouping
    if g == "week":
        iso = begins_date(ordinal, period).isocalendar()
        return f"{iso.year:04d}-W{iso.week:02d}"
    if g == "month":
        y, m = divmod(ordinal, 12)
        return f"{y:04d}-{m + 1:02d}"
    if g == "quarter":
        y, q = divmod(ordinal, 4)
        return f"{y:04d}-Q{q + 1}"
    if g == "year":
        return f"{ordinal:04d}"
    if g == NUMBER:
        return str(ordinal)
    return f"[{show_start(period.edges[ordinal])}, {show_start(period.edges[ordinal + 1])})"


def begins_date(ordinal: int, period: Period) -> datetime.date:
    """The first day of a calendar period."""
    g = period.grouping
    if g == "week":
        day = _EPOCH_MONDAY + np.timedelta64(7 * ordinal, "D")
        return datetime.date.fromisoformat(str(day))
    if g == "month":
        y, m = divmod(ordinal, 12)
        return datetime.date(y, m + 1, 1)
    if g == "quarter":
        y, q = divmod(ordinal, 4)
        return datetime.date(y, 3 * q + 1, 1)
    return datetime.date(ordinal, 1, 1)


def begins(ordinal: int, period: Period) -> Any:
    """Where the period begins, as JSON: an ISO date, or a number."""
    if period.grouping in CALENDAR:
        return begins_date(ordinal, period).isoformat()
    if period.grouping == NUMBER:
        return ordinal
    return start_json(period.edges[ordinal])


def as_array(starts: Sequence[Start]) -> np.ndarray:
    """Parsed starts of one kind as datetime64[ns] (dates) or float64 (numbers)."""
    if starts and is_date(starts[0]):
        return np.asarray([s.to_datetime64() for s in starts], dtype="datetime64[ns]")  # type: ignore[union-attr]
    return np.asarray(starts, dtype=np.float64)


def check_kinds(starts: Mapping[str, Start], *, source: str) -> bool:
    """Whether the parsed starts (by experiment, as shown in messages) are dates (else
    numbers); they must be one kind.

    Raises
    ------
    DataTypeError
        Some are dates and some numbers (one of each is named).
    """
    date = next(((k, s) for k, s in starts.items() if is_date(s)), None)
    number = next(((k, s) for k, s in starts.items() if not is_date(s)), None)
    if date is not None and number is not None:
        raise DataTypeError(
            f"The starts in {source} mix dates and numbers: {show_start(date[1])} (experiment "
            f"{date[0]}) and {show_start(number[1])} (experiment {number[0]}); they must "
            "be all dates or all numbers."
        )
    return date is not None

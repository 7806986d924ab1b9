"""Validating ``[data].time`` and ``[data].period``: experiments' start dates (DESIGN.md §9).

::

    [data]
    kind = "users"
    path = "users.parquet"
    time = "start_date"      # the column with each experiment's start
    period = "quarter"       # "week", "month", "quarter", "year", "number",
                             # or bin edges: [2024-01-01, 2024-07-01, 2025-01-01]

``time`` applies to sources of kind "users" (also those a design reads),
"arm_summaries" and "estimates". ``period`` needs ``time``; left out, the data
decide: "quarter" for dates, "number" for numbers. Bin edges are at least two
increasing values, all numbers or all dates (TOML dates and datetimes, or ISO
strings such as "2024-01-01"), kept as written so the canonical form repeats
them. An extra source (``[[data.extra]]``) needs ``time`` when the main source
has it (and not otherwise) and takes the main source's ``period`` unless it
repeats it: the cells of all sources are grouped into one set of periods.
"""

from __future__ import annotations

import datetime
import math
import re
from typing import Any

from proxyscope.errors import suggestion
from proxyscope.spec.constants import PERIODS, TIME_KINDS
from proxyscope.spec.read import Table, show_set, type_word

#: The ISO date strings an edge may be (the data layer reads the same forms).
_ISO = re.compile(
    r"\d{4}-\d{2}-\d{2}"
    r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
)


def time_keys(t: Table, kind: str) -> tuple[str | None, str | tuple[Any, ...] | None]:
    """``time`` and ``period`` of one source (``[data]`` or an extra one) of ``kind``."""
    time = t.take_str("time", None)
    t.taken.append("period")
    raw = t.raw.get("period")
    if time is not None and kind not in TIME_KINDS:
        raise t.error(
            "time",
            f"applies to kind = {' or '.join(repr(k) for k in TIME_KINDS)}; got kind = {kind!r}.",
        )
    if raw is None:
        return time, None
    if time is None:
        raise t.error(
            "period", f"needs {t.path('time')} too (the column with each experiment's start)."
        )
    return time, _period(t, raw)


def _period(t: Table, v: Any) -> str | tuple[Any, ...]:
    want = (
        f"must be one of {show_set(PERIODS)} or an array of at least two increasing bin "
        "edges (numbers, or dates such as 2025-01-01)"
    )
    if isinstance(v, str):
        if v in PERIODS:
            return v
        raise t.error("period", f"{want}; got {v!r}.{suggestion(v, PERIODS)}")
    if not isinstance(v, list) or len(v) < 2:
        raise t.error("period", f"{want}; got {v!r} ({type_word(v)}).")
    values = [_edge(t, i, item) for i, item in enumerate(v)]
    if len({isinstance(x, float) for x in values}) > 1:
        raise t.error("period", f"{want}; its edges mix numbers and dates: {v!r}.")
    for i in range(1, len(values)):
        if not values[i] > values[i - 1]:  # type: ignore[operator]
            raise t.error(
                f"period[{i}]", f"must be after period[{i - 1}] (the edges increase); got {v[i]!r}."
            )
    return tuple(v)


def _edge(t: Table, i: int, v: Any) -> float | datetime.datetime:
    """An edge as a comparable value: a float, or a naive UTC datetime."""
    where = f"period[{i}]"
    if isinstance(v, bool) or not isinstance(v, int | float | str | datetime.date):
        raise t.error(where, f"must be a number or a date; got {v!r} ({type_word(v)}).")
    if isinstance(v, int | float):
        if not math.isfinite(v):
            raise t.error(where, f"must be a finite number; got {v!r}.")
        return float(v)
    if isinstance(v, str):
        text = v.strip()
        try:
            if _ISO.fullmatch(text) is None:
                raise ValueError(text)
            v = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise t.error(
                where, f"must be a number or a date such as '2025-01-01'; got {v!r}."
            ) from None
    if not isinstance(v, datetime.datetime):
        v = datetime.datetime(v.year, v.month, v.day)
    if v.tzinfo is not None:
        v = v.astimezone(datetime.UTC).replace(tzinfo=None)
    if not 1678 <= v.year <= 2261:  # the range of the stored (nanosecond) dates
        raise t.error(where, f"must be a date in the years 1678 to 2261; got {v.isoformat()!r}.")
    return v


def check_extra(
    t: Table, main_time: str | None, main_period: Any, time: str | None, period: Any
) -> Any:
    """An extra source's ``period``: the main source's unless it repeats it.

    Raises
    ------
    SpecError
        The extra source lacks ``time`` while the main source has it (or the
        reverse), or sets another ``period``.
    """
    if (main_time is None) != (time is None):
        if time is None:
            raise t.error(
                "time",
                "is required: [data].time gives the main source's experiments start dates, so "
                "every source's cells need theirs (name this source's column).",
            )
        raise t.error(
            "time",
            "applies only when [data].time is set too: the cells of all sources either carry "
            "start dates or none do.",
        )
    if period is None:
        return main_period
    if period != main_period:
        raise t.error(
            "period",
            f"must be [data].period ({main_period!r}) or left out: the cells of all sources are "
            f"grouped into one set of periods; got {period!r}.",
        )
    return period

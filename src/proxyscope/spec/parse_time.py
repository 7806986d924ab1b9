"""Validating the time keys of a spec (DESIGN.md §9): ``[data].time`` and ``[data].period``
(experiments' start dates), ``[model].time`` (a relation that moves over periods),
``[analysis].period`` and ``[analysis.stability]`` (which period the analyses read, and
which periods the stability analysis compares).

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

::

    [model]
    time = true              # the periods [data].period makes; or a grouping of the
                             # starts ("month", ...) or bin edges, as [data].period takes

    [analysis]
    period = "2025-Q1"       # every analysis reads this period (default: the latest)

    [analysis.stability]     # optional: ps.stability's settings (it runs without it)
    between = [["2024-Q1", "2025-Q4"]]   # pairs of periods (default: first and last)
    probability = 0.95
    segments = false

    [analysis.rolling_backtest]          # optional: fit up to each origin, judge the rest
    origins = ["2025-Q1", "2025-Q2"]     # default: the middle of the history on
    draws = 500                          # draws, tune, chains: default [sampler]'s

``[model].time`` needs ``[data].time`` (the fit reads each experiment's start);
``[analysis].period``, ``[analysis.stability]`` and ``[analysis.rolling_backtest]``
need ``[model].time``. The
periods they name are checked against the data's when the cells are built
(``proxyscope validate``, and ``run`` before the fit:
:func:`proxyscope.run.preflight.check_cells`).
"""

from __future__ import annotations

import datetime
import math
import re
from typing import Any

from proxyscope.errors import suggestion
from proxyscope.spec.constants import MAX_CHAINS, MAX_DRAWS, MAX_TUNE, PERIODS, TIME_KINDS
from proxyscope.spec.read import Table, show_set, type_word
from proxyscope.spec.sections import DataSpec, RollingSpec, StabilitySpec

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
    return time, grouping(t, "period", raw)


def grouping(t: Table, key: str, v: Any) -> str | tuple[Any, ...]:
    """A grouping of starts given as ``key``: a name of :data:`PERIODS`, or bin edges
    (kept as written; checked to be numbers or dates, all of one kind, increasing)."""
    want = (
        f"must be one of {show_set(PERIODS)} or an array of at least two increasing bin "
        "edges (numbers, or dates such as 2025-01-01)"
    )
    if isinstance(v, str):
        if v in PERIODS:
            return v
        raise t.error(key, f"{want}; got {v!r}.{suggestion(v, PERIODS)}")
    if not isinstance(v, list) or len(v) < 2:
        raise t.error(key, f"{want}; got {v!r} ({type_word(v)}).")
    values = [_edge(t, f"{key}[{i}]", item) for i, item in enumerate(v)]
    if len({isinstance(x, float) for x in values}) > 1:
        raise t.error(key, f"{want}; its edges mix numbers and dates: {v!r}.")
    for i in range(1, len(values)):
        if not values[i] > values[i - 1]:  # type: ignore[operator]
            shown = v[i].isoformat() if isinstance(v[i], datetime.date) else repr(v[i])
            raise t.error(
                f"{key}[{i}]", f"must be after {key}[{i - 1}] (the edges increase); got {shown}."
            )
    return tuple(v)


def _edge(t: Table, where: str, v: Any) -> float | datetime.datetime:
    """An edge (the key path ``where``) as a comparable value: a float, or a naive UTC
    datetime."""
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


# -- [model].time, [analysis].period, [analysis.stability] ------------------------


def time_value(t: Table) -> bool | str | tuple[Any, ...] | None:
    """The value of ``time`` in ``t`` (``[model]``, or the ``--time`` flag's): True (the
    periods the cells carry), a grouping name or bin edges (the cells regrouped); false
    or left out: a static relation (None)."""
    t.taken.append("time")
    if "time" not in t.raw or t.raw["time"] is False:
        return None
    v = t.raw["time"]
    if v is True:
        return True
    want = (
        "must be true (the periods of [data].period), false (a static relation), one of "
        f"{show_set(PERIODS)} or an array of bin edges"
    )
    if isinstance(v, str) and v not in PERIODS:
        raise t.error("time", f"{want}; got {v!r}.{suggestion(v, PERIODS)}")
    if isinstance(v, str | list):
        return grouping(t, "time", v)
    raise t.error("time", f"{want}; got {v!r} ({type_word(v)}).")


def model_time(t: Table, data: DataSpec) -> bool | str | tuple[Any, ...] | None:
    """``[model].time`` (:func:`time_value`), which needs start dates in the data.

    Raises
    ------
    SpecError
        Another value, or a model over time whose data give no start dates.
    """
    value = time_value(t)
    if value is not None and data.time is None:
        why = (
            "; kind = 'asos' carries none"
            if data.kind not in TIME_KINDS
            else " (name the column with each experiment's start)"
        )
        raise t.error(
            "time",
            "needs [data].time: a relation that moves over time is fitted on each "
            f"experiment's start date{why}.",
        )
    return value


def _label(t: Table, key: str, v: Any) -> str:
    """A period label: a string (or an integer, for periods numbered by ``number``)."""
    if isinstance(v, bool) or not isinstance(v, str | int) or (isinstance(v, str) and not v):
        raise t.error(key, f"must be a period label such as '2025-Q1'; got {v!r} ({type_word(v)}).")
    return str(v)


def analysis_period(t: Table, timed: bool) -> str | None:
    """``[analysis].period``: the period every analysis reads (None: the latest)."""
    t.taken.append("period")
    if "period" not in t.raw:
        return None
    if not timed:
        raise t.error(
            "period",
            "needs [model].time: only a relation that moves over time has periods to read.",
        )
    return _label(t, "period", t.raw["period"])


def stability_section(parent: Table, timed: bool) -> StabilitySpec | None:
    """``[analysis.stability]``: the pairs of periods to compare, the probability from
    which a change is called clear, and whether to give each segment's path."""
    t = parent.take_table("stability")
    if t is None:
        return None
    if not timed:
        raise t.error(
            None, "needs [model].time: only a relation that moves over time has a stability."
        )
    t.taken.append("between")
    pairs: list[tuple[str, str]] = []
    raw = t.raw.get("between", [])
    if isinstance(raw, list) and len(raw) == 2 and not any(isinstance(x, list) for x in raw):
        raw = [raw]  # one pair
    if not isinstance(raw, list) or (not raw and "between" in t.raw):
        raise t.error(
            "between",
            'must be a pair of periods or an array of pairs, e.g. [["2024-Q1", "2025-Q4"]]; '
            f"got {t.raw.get('between')!r}.",
        )
    for i, item in enumerate(raw):
        where = f"between[{i}]"
        if not isinstance(item, list) or len(item) != 2:
            raise t.error(
                where,
                f'must be a pair of periods such as ["2024-Q1", "2025-Q4"]; got {item!r}.',
            )
        a, b = _label(t, f"{where}[0]", item[0]), _label(t, f"{where}[1]", item[1])
        if a == b:
            raise t.error(where, f"must name two different periods; got {item!r}.")
        pairs.append((a, b))
    out = StabilitySpec(
        between=tuple(pairs),
        probability=float(
            t.take_float(
                "probability",
                StabilitySpec.probability,
                low=0.0,
                high=1.0,
                open_low=True,
                open_high=True,
            )
        ),
        segments=bool(t.take_bool("segments", False)),
    )
    t.done()
    return out


def rolling_section(parent: Table, timed: bool) -> RollingSpec | None:
    """``[analysis.rolling_backtest]``: its origins and the sampler's size for its fits."""
    t = parent.take_table("rolling_backtest")
    if t is None:
        return None
    if not timed:
        raise t.error(
            None,
            "needs [model].time: the backtest compares the model over time with the static one.",
        )
    t.taken.append("origins")
    raw = t.raw.get("origins", [])
    if not isinstance(raw, list) or ("origins" in t.raw and not raw):
        raise t.error(
            "origins", f'must be an array of period labels, e.g. ["2025-Q1"]; got {raw!r}.'
        )
    origins = tuple(_label(t, f"origins[{i}]", v) for i, v in enumerate(raw))
    if len(set(origins)) != len(origins):
        raise t.error("origins", f"repeats a period: {list(origins)}.")
    per_chain = "per chain"
    out = RollingSpec(
        origins=origins,
        draws=t.take_int("draws", None, minimum=1, maximum=MAX_DRAWS, why=per_chain),
        tune=t.take_int("tune", None, minimum=0, maximum=MAX_TUNE, why=per_chain),
        chains=t.take_int("chains", None, minimum=1, maximum=MAX_CHAINS),
    )
    t.done()
    return out

"""Time in the data (issue 25 point 1, DESIGN.md §9): start dates, periods, surfaces.

Labels are checked against hand-computed ones and against independent
computations (Python's ``date.isocalendar`` for ISO weeks, pandas ``Period`` for
months, quarters and years); the engines against each other; the inputs, the
subset / concat / save-load paths, the errors, the spec and the command line.
"""

from __future__ import annotations

import datetime
import json
import tomllib
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import ENGINES, ROLES, make_users

from proxyscope import dims
from proxyscope.cli import main
from proxyscope.data import CellEffects, from_arm_summaries, summarize
from proxyscope.data import time as timing
from proxyscope.data.cellfile import META_ATTR
from proxyscope.data.estimates import from_estimates
from proxyscope.errors import (
    ColumnError,
    DataError,
    DataTypeError,
    DataWarning,
    ParameterError,
    SpecError,
)
from proxyscope.spec import PERIODS, loads_spec

#: make_users' experiments are 3, 13 and 23; their starts (23's in another zone).
STARTS = {3: "2024-11-30", 13: "2025-07-02", 23: "2025-03-31T23:30:00-02:00"}
#: 23 starts at 2025-04-01 01:30 UTC: the second quarter, not the first.
UTC = {
    3: pd.Timestamp("2024-11-30"),
    13: pd.Timestamp("2025-07-02"),
    23: pd.Timestamp("2025-04-01 01:30"),
}


def estimates_table(starts: dict[Any, Any] | None = None) -> pd.DataFrame:
    """Three experiments, two metrics each, one row per (experiment, metric)."""
    rows = []
    for i, e in enumerate(["a", "b", "c"]):
        for j, m in enumerate(["ltv", "d7"]):
            rows.append({"exp": e, "metric": m, "est": 0.1 * (i + j), "se": 0.2 + 0.1 * j})
    table = pd.DataFrame(rows)
    if starts is not None:
        table["start"] = table["exp"].map(starts)
    return table


def cells_of(starts: dict[str, Any], period: Any = None) -> CellEffects:
    table = estimates_table()
    base = from_estimates(
        table,
        experiment="exp",
        metric="metric",
        estimate="est",
        se="se",
        outcome="ltv",
        proxies=["d7"],
        correlation=0.3,
    )
    return base.with_time(starts, period)


# -- groupings: labels and indices ------------------------------------------------


def test_iso_weeks_around_new_year_by_hand() -> None:
    # Mon 2024-12-30 is in ISO week 1 of 2025; Sun 2021-01-03 in week 53 of 2020.
    cells = cells_of({"a": "2024-12-30", "b": "2021-01-03", "c": "2021-01-04"}, "week")
    labels = dict(zip(cells.experiment, cells.data[dims.PERIOD].values.astype(str), strict=True))
    assert labels == {"a": "2025-W01", "b": "2020-W53", "c": "2021-W01"}
    periods = cells.periods
    assert periods[:3] == ("2020-W53", "2021-W01", "2021-W02")
    assert periods[-2:] == ("2024-W52", "2025-W01")
    # Every ISO week in between, once: 2021-2024 have 52 weeks each (2020 has 53).
    assert len(periods) == 1 + 4 * 52 + 1
    assert cells.meta["time"]["period_starts"][:2] == ["2020-12-28", "2021-01-04"]
    assert [periods[i] for i in cells.period_index] == ["2025-W01", "2020-W53", "2021-W01"]


@pytest.mark.parametrize("grouping", ["week", "month", "quarter", "year"])
def test_calendar_labels_match_independent_computations(grouping: str) -> None:
    rng = np.random.default_rng(4)
    days = rng.integers(0, 3 * 365, 40)
    dates = [datetime.date(2019, 12, 20) + datetime.timedelta(days=int(d)) for d in days]
    ordinals = timing.assign(
        timing.as_array([pd.Timestamp(d) for d in dates]),
        timing.Period(grouping),
        [repr(d) for d in dates],
    )
    low, high = int(ordinals.min()), int(ordinals.max())
    labels, begins = timing.table(low, high, timing.Period(grouping))
    got = [labels[o - low] for o in ordinals]
    if grouping == "week":
        iso = [d.isocalendar() for d in dates]
        want = [f"{y}-W{w:02d}" for y, w, _ in iso]
        monday = [d - datetime.timedelta(days=d.weekday()) for d in dates]
        assert [begins[o - low] for o in ordinals] == [m.isoformat() for m in monday]
    else:
        freq = {"month": "M", "quarter": "Q", "year": "Y"}[grouping]
        per = [pd.Period(d, freq=freq) for d in dates]
        fmt = {
            "month": "{p.year}-{p.month:02d}",
            "quarter": "{p.year}-Q{p.quarter}",
            "year": "{p.year}",
        }[grouping]
        want = [fmt.format(p=p) for p in per]
        assert [begins[o - low] for o in ordinals] == [p.start_time.date().isoformat() for p in per]
    assert got == want
    # Calendar-complete: consecutive and without repeats.
    assert len(set(labels)) == len(labels) == high - low + 1


def test_quarter_without_experiments_is_listed() -> None:
    cells = cells_of({"a": "2024-11-30", "b": "2025-07-02", "c": "2025-08-15"})
    assert cells.meta["time"]["grouping"] == "quarter"  # the default for dates
    assert cells.periods == ("2024-Q4", "2025-Q1", "2025-Q2", "2025-Q3")
    assert cells.period_index.tolist() == [0, 3, 3]
    assert cells.meta["time"]["period_starts"] == [
        "2024-10-01",
        "2025-01-01",
        "2025-04-01",
        "2025-07-01",
    ]
    month = cells.with_periods("month")
    assert month.periods[0] == "2024-11" and month.periods[-1] == "2025-08"
    assert len(month.periods) == 10
    assert cells.with_periods("year").periods == ("2024", "2025")


def test_bins_of_dates_and_of_numbers() -> None:
    edges = ["2024-01-01", datetime.date(2025, 3, 1), pd.Timestamp("2025-09-01"), "2026-01-01"]
    cells = cells_of({"a": "2024-11-30", "b": "2025-03-01", "c": "2024-01-01"}, edges)
    assert cells.periods == ("[2024-01-01, 2025-03-01)", "[2025-03-01, 2025-09-01)")
    assert cells.period_index.tolist() == [0, 1, 0]  # an edge starts its own bin
    assert cells.meta["time"]["edges"] == ["2024-01-01", "2025-03-01", "2025-09-01", "2026-01-01"]
    as_array = np.array(["2024-01-01", "2025-03-01", "2025-09-01"], dtype="datetime64[ns]")
    assert cells.with_periods(as_array).periods == cells.periods
    numbers = cells_of({"a": 2.5, "b": 0, "c": 19.99}, [0, 2.5, 10, 20])
    assert numbers.periods == ("[0, 2.5)", "[2.5, 10)", "[10, 20)")
    assert numbers.period_index.tolist() == [1, 0, 2]


def test_number_periods_each_integer_and_the_gaps() -> None:
    cells = cells_of({"a": 7, "b": 3, "c": np.int64(4)})
    assert cells.meta["time"]["grouping"] == "number"  # the default for numbers
    assert cells.periods == ("3", "4", "5", "6", "7")
    assert cells.period_index.tolist() == [4, 0, 1]
    assert cells.meta["time"]["period_starts"] == [3, 4, 5, 6, 7]
    assert cells.experiment_starts.dtype == np.float64


def test_parsing_of_start_values() -> None:
    parse = timing.parse_start
    assert parse(np.datetime64("2025-03-01T12:00:00.000000001")) == pd.Timestamp(
        "2025-03-01 12:00:00.000000001"
    )
    assert parse(datetime.date(2025, 3, 1)) == pd.Timestamp("2025-03-01")
    assert parse(" 2025-03-01T00:00 ") == pd.Timestamp("2025-03-01")
    assert parse("2025-03-01 23:30:00-02:00") == pd.Timestamp("2025-03-02 01:30")
    assert parse(pd.Timestamp("2025-03-01 09:00", tz="Asia/Tokyo")) == pd.Timestamp("2025-03-01")
    assert parse(np.int32(4)) == 4.0 and isinstance(parse(np.int32(4)), float)
    for missing in (None, np.nan, pd.NaT, np.datetime64("NaT"), pd.NA, ""):
        assert parse(missing) is None
    bad_values = ("03/01/2025", "2025-02-30", "soon", True, float("inf"), "9999-01-01", [1])
    for bad in (*bad_values, pd.Period("2025Q1")):
        with pytest.raises(timing.Unparseable):
            parse(bad)


# -- summarize on every engine ----------------------------------------------------


@pytest.fixture
def spark_if(request: pytest.FixtureRequest) -> Any:
    """The Spark session for the spark-parametrized cases, None otherwise."""
    if "spark" in request.node.keywords:
        return request.getfixturevalue("spark")
    return None


def _timed(users: pd.DataFrame, kind: str) -> pd.DataFrame:
    """``users`` with a start column of the given kind (a new frame)."""
    values = users["exp_id"].map(STARTS)
    if kind == "text":
        return users.assign(start=values)
    if kind == "aware":
        return users.assign(start=pd.to_datetime(values, utc=True, format="ISO8601"))
    if kind == "dates":
        utc = users["exp_id"].map({e: t.date() for e, t in UTC.items()})
        return users.assign(start=utc.astype(object))
    return users.assign(start=users["exp_id"] // 10 + 1)  # numbers 1, 2, 3


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", ["text", "aware", "dates", "numbers"])
def test_engines_read_one_start_per_experiment(
    engine: str, kind: str, users: pd.DataFrame, spark_if: Any
) -> None:
    frame = _timed(users, kind)
    before = frame.copy(deep=True)
    data = spark_if.createDataFrame(frame) if engine == "spark" else frame
    got = summarize(data, engine=engine, time="start", **ROLES)
    pd.testing.assert_frame_equal(frame, before)  # the caller's frame is not changed
    plain = summarize(data.drop("start") if engine == "spark" else users, engine=engine, **ROLES)
    np.testing.assert_array_equal(got.effect, plain.effect)  # time changes no number
    assert not plain.has_time and dims.START not in plain.data.coords
    starts = got.experiment_starts
    if kind == "numbers":
        assert starts.to_dict() == {3: 1.0, 13: 2.0, 23: 3.0}
        assert got.periods == ("1", "2", "3")
    elif kind == "dates":
        assert starts.to_dict() == {e: t.normalize() for e, t in UTC.items()}
        assert got.periods == ("2024-Q4", "2025-Q1", "2025-Q2", "2025-Q3")
    else:
        assert starts.to_dict() == UTC  # 23 converted to UTC: 2025-04-01 01:30
        assert got.periods == ("2024-Q4", "2025-Q1", "2025-Q2", "2025-Q3")
        assert dict(zip(got.experiment, got.data[dims.PERIOD].values.astype(str), strict=True)) == {
            3: "2024-Q4",
            13: "2025-Q3",
            23: "2025-Q2",
        }
    assert got.meta["time"]["column"] == "start"
    if engine != "pandas":
        ref = summarize(frame, engine="pandas", time="start", **ROLES)
        pd.testing.assert_series_equal(ref.experiment_starts, got.experiment_starts)
        assert ref.meta["time"] == got.meta["time"]
        assert ref.to_frame()[dims.PERIOD].tolist() == got.to_frame()[dims.PERIOD].tolist()


def test_duckdb_reads_parquet_files_with_time(users: pd.DataFrame, tmp_path: Path) -> None:
    frame = _timed(users, "aware")
    path = tmp_path / "users.parquet"
    frame.to_parquet(path)
    got = summarize(str(path), engine="duckdb", time="start", period="month", **ROLES)
    ref = summarize(frame, engine="duckdb", time="start", period="month", **ROLES)
    assert got.fingerprint() == ref.fingerprint()  # the same bits from the file
    assert got.periods[0] == "2024-11" and got.periods[-1] == "2025-07"


@pytest.mark.parametrize("engine", ["pandas", "duckdb"])
def test_several_start_dates_name_the_experiments(engine: str, users: pd.DataFrame) -> None:
    frame = _timed(users, "text")
    frame.loc[frame.index[frame["exp_id"] == 13][:5], "start"] = "2025-08-01"
    with pytest.raises(
        DataError,
        match=r"'start'.*one start per experiment.*13 \((2025-07-02, "
        r"2025-08-01|2025-08-01, 2025-07-02)\)",
    ) as info:
        summarize(frame, engine=engine, time="start", **ROLES)
    assert "1 experiment(s)" in str(info.value)


@pytest.mark.parametrize("engine", ["pandas", "duckdb"])
def test_start_errors_name_column_experiment_and_value(engine: str, users: pd.DataFrame) -> None:
    frame = _timed(users, "text")
    frame.loc[frame["exp_id"] == 23, "start"] = "03/31/2025"
    with pytest.raises(
        DataError,
        match=r"'start' \(given as 'time'\) holds '03/31/2025' for "
        r"experiment 23, which is not an ISO date",
    ):
        summarize(frame, engine=engine, time="start", **ROLES)
    holes = _timed(users, "text")
    holes.loc[holes.index[holes["exp_id"] == 13][:4], "start"] = None
    with pytest.raises(
        DataError,
        match=r"'start' \(given as 'time'\) is missing \(NaN/NULL\) "
        r"in rows of 1 experiment\(s\): 13\. .*dropna does not drop",
    ):
        summarize(holes, engine=engine, time="start", dropna=True, **ROLES)
    mixed = _timed(users, "text").assign(start=lambda f: f["start"].astype(object))
    mixed.loc[mixed["exp_id"] == 3, "start"] = 7
    with pytest.raises(
        DataTypeError,
        match=r"column 'start' \(given as 'time'\) mix dates and "
        r"numbers: \S+ \(experiment (13|23)\) and 7 \(experiment 3\)",
    ):
        summarize(mixed, engine="pandas", time="start", **ROLES)
    base = cells_of({"a": 1, "b": 2, "c": 3})
    with pytest.raises(
        DataTypeError,
        match=r"mix dates and numbers: 2025-01-01 \(experiment 'a'\) "
        r"and 2 \(experiment 'b'\)",
    ):
        base.with_time({"a": "2025-01-01", "b": 2, "c": 3})


def test_argument_errors(users: pd.DataFrame) -> None:
    frame = _timed(users, "text")
    with pytest.raises(
        ParameterError,
        match=r"'period' parameter of summarize must be one of "
        r"\{'week', 'month', 'quarter', 'year', 'number'\}.*Did you mean "
        r"'quarter'\?",
    ):
        summarize(frame, time="start", period="quartr", **ROLES)
    with pytest.raises(ParameterError, match=r"needs 'time' too"):
        summarize(frame, period="month", **ROLES)
    with pytest.raises(ColumnError, match=r"'strat' \(given as 'time'\).*Did you mean 'start'"):
        summarize(frame, time="strat", **ROLES)
    with pytest.raises(ColumnError, match=r"'region' is given two roles: as 'segments' and 'time'"):
        summarize(frame, time="region", **ROLES)
    with pytest.raises(ParameterError, match=r"edge 1 \(2024-01-01\) is not after edge 0"):
        summarize(frame, time="start", period=["2025-01-01", "2024-01-01"], **ROLES)
    with pytest.raises(ParameterError, match=r"mix dates and numbers"):
        summarize(frame, time="start", period=["2025-01-01", 3], **ROLES)
    with pytest.raises(ParameterError, match=r"Give the bins as their edges"):
        summarize(frame, time="start", period="bins", **ROLES)


def test_starts_outside_bins_and_non_integer_numbers(users: pd.DataFrame) -> None:
    frame = _timed(users, "text")
    with pytest.raises(
        DataError,
        match=r"start of experiment 13 \(2025-07-02\) is outside the "
        r"bins \[2024-01-01, 2025-07-01\]",
    ):
        summarize(frame, time="start", period=["2024-01-01", "2025-07-01"], **ROLES)
    halves = users.assign(start=users["exp_id"] / 2)  # 1.5, 6.5, 11.5
    with pytest.raises(DataError, match=r"1.5\).*not whole numbers; period='number'.*edges"):
        summarize(halves, time="start", **ROLES)
    got = summarize(halves, time="start", period=[0, 5, 10, 15], **ROLES)
    assert got.periods == ("[0, 5)", "[5, 10)", "[10, 15)")
    with pytest.raises(ParameterError, match=r"are numbers, but period='quarter' groups dates"):
        summarize(halves, time="start", period="quarter", **ROLES)
    with pytest.raises(ParameterError, match=r"are dates, but period='number' groups numbers"):
        summarize(frame, time="start", period="number", **ROLES)
    seconds = users.assign(start=users["exp_id"] * 1_000_000)
    with pytest.raises(DataError, match=r"span 20,000,001 periods by number"):
        summarize(seconds, time="start", **ROLES)


# -- the other inputs -------------------------------------------------------------


def test_from_arm_summaries_with_time() -> None:
    users = make_users(offset=0.0)
    keys = ["exp_id", "treatment"]
    metrics = ["retained", "watch_min"]
    table = (
        users.groupby(keys)
        .agg(
            n=("retained", "size"),
            **{f"mean_{m}": (m, "mean") for m in metrics},
            **{f"var_{m}": (m, "var") for m in metrics},
        )
        .reset_index()
    )
    table["launch"] = table["exp_id"].map({3: "2025-01-06", 13: "2025-01-12", 23: "2025-01-13"})
    before = table.copy(deep=True)
    args: dict[str, Any] = {
        "experiment": "exp_id",
        "arm": "treatment",
        "treated_value": 1,
        "outcome": "retained",
        "proxies": ["watch_min"],
        "count": "n",
        "mean": {m: f"mean_{m}" for m in metrics},
        "variance": {m: f"var_{m}" for m in metrics},
        "correlation": 0.2,
    }
    got = from_arm_summaries(table, time="launch", period="week", **args)
    pd.testing.assert_frame_equal(table, before)
    assert got.periods == ("2025-W02", "2025-W03")  # 6 and 12 Jan: one week; 13 Jan the next
    assert got.period_index.tolist() == [0, 0, 1]
    assert got.meta["time"]["column"] == "launch"
    np.testing.assert_array_equal(got.effect, from_arm_summaries(table, **args).effect)
    table.loc[table.index[0], "launch"] = "2025-02-01"
    with pytest.raises(DataError, match=r"'launch'.*one start per experiment.*3 \("):
        from_arm_summaries(table, time="launch", **args)
    with pytest.raises(ColumnError, match=r"'n' is given two roles: as 'count/mean"):
        from_arm_summaries(table, time="n", **args)
    with pytest.raises(ColumnError, match=r"'lunch' \(given as 'time'\).*Did you mean 'launch'"):
        from_arm_summaries(table, time="lunch", **args)


def test_from_estimates_with_time() -> None:
    table = estimates_table({"a": "2024-02-29", "b": datetime.date(2024, 5, 1), "c": "2024-12-31"})
    before = table.copy(deep=True)
    args: dict[str, Any] = {
        "experiment": "exp",
        "metric": "metric",
        "estimate": "est",
        "se": "se",
        "outcome": "ltv",
        "proxies": ["d7"],
        "correlation": 0.3,
    }
    got = from_estimates(table, time="start", period="month", **args)
    pd.testing.assert_frame_equal(table, before)
    assert got.periods[0] == "2024-02" and got.periods[-1] == "2024-12" and len(got.periods) == 11
    assert got.experiment_starts.to_dict() == {
        "a": pd.Timestamp("2024-02-29"),
        "b": pd.Timestamp("2024-05-01"),
        "c": pd.Timestamp("2024-12-31"),
    }
    with pytest.raises(ColumnError, match=r"'metric' is given two roles: as 'metric' and 'time'"):
        from_estimates(table, time="metric", **args)
    table.loc[table["exp"] == "b", "start"] = "May 1st"
    with pytest.raises(DataError, match=r"holds 'May 1st' for experiment 'b'"):
        from_estimates(table, time="start", **args)


def test_with_time_matches_ids_and_names_what_is_missing() -> None:
    base = cells_of({"a": 1, "b": 2, "c": 3})  # built with time, then replaced below
    again = base.with_time(
        pd.Series({"a": "2025-01-01", "b": "2025-01-02", "c": "2025-05-05", "zz": "1999-01-01"})
    )
    assert again.periods == ("2025-Q1", "2025-Q2") and again.meta["time"]["column"] is None
    assert base.periods == ("1", "2", "3")  # with_time returns new cells
    with pytest.raises(DataError, match=r"No start for 1 experiment\(s\) in the starts given "):
        base.with_time({"a": "2025-01-01", "b": "2025-01-02"})
    with pytest.raises(DataTypeError, match=r"dict or Series"):
        base.with_time(["2025-01-01"])  # type: ignore[arg-type]
    ints = summarize(make_users(), **ROLES)
    by_text = ints.with_time({"3": 1, 13.0: 2, np.int64(23): 2})  # ids as typed elsewhere
    assert by_text.experiment_starts.to_dict() == {3: 1.0, 13: 2.0, 23: 2.0}
    # A coordinate on cell that holds each cell's start.
    coord = ints.data.assign_coords(launch=(dims.CELL, np.asarray(ints.experiment) * 2.0))
    from_coord = CellEffects(coord).with_time("launch", period=[0, 10, 50])
    assert from_coord.meta["time"]["column"] == "launch"
    assert from_coord.periods == ("[0, 10)", "[10, 50)")
    with pytest.raises(ParameterError, match=r"'region', 'device', 'launch'|such coordinates"):
        ints.with_time("nope")


def test_cells_without_time_are_as_before() -> None:
    cells = summarize(make_users(), **ROLES)
    assert not cells.has_time
    assert "time" not in cells.meta
    assert {dims.START, dims.PERIOD}.isdisjoint(cells.data.coords)
    with pytest.raises(DataError, match=r"carry no start dates"):
        cells.periods  # noqa: B018
    with pytest.raises(DataError, match=r"carry no start dates"):
        cells.with_periods("month")
    assert "time:" not in repr(cells)


# -- subset, concat, save and load -----------------------------------------------


def test_subset_select_and_frame_keep_time() -> None:
    cells = cells_of({"a": "2024-01-10", "b": "2024-12-01", "c": "2024-05-05"})
    assert cells.periods == ("2024-Q1", "2024-Q2", "2024-Q3", "2024-Q4")
    sub = cells.subset(["a", "c"])
    assert sub.periods == ("2024-Q1", "2024-Q2")  # derived again: up to its last start
    assert sub.period_index.tolist() == [0, 1]
    assert cells.subset_cells([1]).periods == ("2024-Q4",)
    assert cells.select_proxies(["d7"]).meta["time"] == cells.meta["time"]
    frame = cells.to_frame()
    assert frame[dims.PERIOD].tolist() == ["2024-Q1", "2024-Q4", "2024-Q2"]
    assert frame[dims.START].tolist() == [
        pd.Timestamp(x) for x in ("2024-01-10", "2024-12-01", "2024-05-05")
    ]
    assert (
        "time: starts 2024-01-10 .. 2024-12-01; 4 period(s) by quarter: 2024-Q1 .. 2024-Q4, "
        "1 without experiments" in repr(cells)
    )


def test_concat_rederives_periods_on_the_union() -> None:
    a = cells_of({"a": "2024-01-10", "b": "2024-01-20", "c": "2024-02-01"})
    b_table = estimates_table().assign(exp=lambda t: t["exp"] + "2")
    b = from_estimates(
        b_table,
        experiment="exp",
        metric="metric",
        estimate="est",
        se="se",
        outcome="ltv",
        proxies=["d7"],
        correlation=0.3,
    ).with_time({"a2": "2024-10-01", "b2": "2024-11-01", "c2": "2024-12-01"})
    both = CellEffects.concat([a, b])
    assert a.periods == ("2024-Q1",) and b.periods == ("2024-Q4",)
    assert both.periods == ("2024-Q1", "2024-Q2", "2024-Q3", "2024-Q4")
    assert both.period_index.tolist() == [0, 0, 0, 3, 3, 3]
    no_time = from_estimates(
        b_table,
        experiment="exp",
        metric="metric",
        estimate="est",
        se="se",
        outcome="ltv",
        proxies=["d7"],
        correlation=0.3,
    )
    with pytest.raises(ParameterError, match=r"part 1 has no start dates but part 0 has"):
        CellEffects.concat([a, no_time])
    with pytest.raises(
        ParameterError,
        match=r"part 1 groups its start dates by 'month' but "
        r"part 0 by 'quarter'",
    ):
        CellEffects.concat([a, b.with_periods("month")])
    # One experiment in two parts (other segments) with two starts is refused.
    seg = estimates_table().assign(seg="x")
    args: dict[str, Any] = {
        "experiment": "exp",
        "metric": "metric",
        "estimate": "est",
        "se": "se",
        "outcome": "ltv",
        "proxies": ["d7"],
        "segments": ["seg"],
        "correlation": 0.3,
    }
    x = from_estimates(seg, **args).with_time(
        {"a": "2024-01-10", "b": "2024-01-20", "c": "2024-02-01"}
    )
    y = from_estimates(seg.assign(seg="y"), **args).with_time(
        {"a": "2024-03-01", "b": "2024-01-20", "c": "2024-02-01"}
    )
    with pytest.raises(
        DataError,
        match=r"one start per experiment; 1 experiment\(s\) have "
        r"several: 'a' \(2024-01-10, 2024-03-01\)",
    ):
        CellEffects.concat([x, y])
    same = CellEffects.concat(
        [x, y.with_time({"a": "2024-01-10", "b": "2024-01-20", "c": "2024-02-01"})]
    )
    assert same.periods == ("2024-Q1",) and same.n_cells == 6


def test_save_load_round_trip(tmp_path: Path) -> None:
    cells = cells_of({"a": "2024-01-10T06:30", "b": "2024-12-01", "c": "2024-05-05"}, "month")
    path = cells.save(tmp_path / "cells.nc")
    back = CellEffects.load(path)
    assert back.fingerprint() == cells.fingerprint()
    assert back.meta["time"] == cells.meta["time"]
    pd.testing.assert_series_equal(back.experiment_starts, cells.experiment_starts)
    assert back.periods == cells.periods
    numbers = cells_of({"a": 1, "b": 4, "c": 2}).save(tmp_path / "numbers.nc")
    assert CellEffects.load(numbers).periods == ("1", "2", "3", "4")
    assert cells.fingerprint() != cells.with_periods("quarter").fingerprint()


def test_inconsistent_time_is_refused_where_cells_are_built() -> None:
    cells = cells_of({"a": "2024-01-10", "b": "2024-12-01", "c": "2024-05-05"})
    wrong = cells.data.assign_coords({dims.PERIOD: (dims.CELL, np.array(["2024-Q2"] * 3, object))})
    with pytest.raises(
        DataError,
        match=r"says '2024-Q2' for experiment 'a', but its start "
        r"2024-01-10 falls in '2024-Q1' by quarter",
    ):
        CellEffects(wrong)
    meta = json.loads(cells.data.attrs[META_ATTR])
    meta["time"]["periods"] = ["2024-Q1"]
    edited = cells.data.copy()
    edited.attrs = {**cells.data.attrs, META_ATTR: json.dumps(meta)}
    with pytest.raises(DataError, match=r"gives periods \['2024-Q1'\], but the starts"):
        CellEffects(edited)
    two = cells.data.assign_coords(
        {
            dims.START: (
                dims.CELL,
                np.array(["2024-01-10", "2024-12-01", "2024-05-05"], dtype="datetime64[ns]"),
            )
        }
    )
    assert CellEffects(two).has_time
    lacking = cells.data.drop_vars(dims.PERIOD)
    with pytest.raises(DataError, match=r"lacks the coordinate 'period'"):
        CellEffects(lacking)


def test_clashing_segment_name_is_refused() -> None:
    users = make_users().assign(period=lambda f: f["region"])
    roles = {**ROLES, "segments": ["period"]}
    cells = summarize(users, **roles)
    with pytest.raises(ColumnError, match=r"segment column 'period' has the name of the time"):
        cells.with_time({3: 1, 13: 2, 23: 3})


# -- spec and command line --------------------------------------------------------

SPEC = """
name = "t"
[data]
path = "users.csv"
time = "start"
{period}
[columns]
experiment = "exp_id"
treatment = "treatment"
outcome = "retained"
proxies = ["watch_min", "starts"]
segments = ["region"]
"""


def test_spec_constants_mirror_the_data_layer() -> None:
    assert PERIODS == timing.PERIOD_NAMES


@pytest.mark.parametrize(
    "period",
    [
        'period = "month"',
        "period = [2024-01-01, 2025-01-01, 2026-01-01]",
        'period = ["2024-01-01", "2025-01-01T00:00"]',
        "period = [0, 2.5, 10]",
        "",
    ],
)
def test_spec_round_trips_time_keys(period: str) -> None:
    spec = loads_spec(SPEC.format(period=period), origin="x.toml")
    assert spec.data.time == "start"
    text = spec.dumps()
    again = loads_spec(text)
    assert again == spec and again.dumps() == text
    data = tomllib.loads(text)["data"]
    assert data["time"] == "start"
    assert ("period" in data) == bool(period)


@pytest.mark.parametrize(
    ("period", "needle"),
    [
        (
            'period = "quartr"',
            r"\[data\].period must be one of .*got 'quartr'. Did you mean "
            r"'quarter'\?",
        ),
        ("period = [2025-01-01]", r"\[data\].period must be one of"),
        ("period = [2025-01-01, 2024-01-01]", r"\[data\].period\[1\] must be after period\[0\]"),
        ('period = [1, "2025-01-01"]', r"mix numbers and dates"),
        (
            'period = ["03/01/2025", "2026-01-01"]',
            r"\[data\].period\[0\] must be a number or a "
            r"date",
        ),
        ("period = [true, 2]", r"\[data\].period\[0\] must be a number or a date"),
        ("period = [1000-01-01, 2000-01-01]", r"\[data\].period\[0\] must be a date in the years"),
    ],
)
def test_spec_errors_name_the_key(period: str, needle: str) -> None:
    with pytest.raises(SpecError, match=needle):
        loads_spec(SPEC.format(period=period), origin="x.toml")


def test_spec_period_needs_time_and_kinds() -> None:
    with pytest.raises(SpecError, match=r"\[data\].time names column 'start', which is already "):
        loads_spec(SPEC.format(period="").replace('segments = ["region"]', 'segments = ["start"]'))
    text = SPEC.format(period='period = "month"').replace('time = "start"\n', "")
    with pytest.raises(SpecError, match=r"\[data\].period needs \[data\].time too"):
        loads_spec(text, origin="x.toml")
    asos = 'name = "a"\n[data]\nkind = "asos"\ncorrelation = 0.5\ntime = "start"\n'
    with pytest.raises(SpecError, match=r"\[data\].time applies to kind = 'users'"):
        loads_spec(asos, origin="x.toml")
    extra = SPEC.format(period="") + '[[data.extra]]\npath = "more.csv"\n'
    with pytest.raises(SpecError, match=r"\[data.extra #1\].time is required"):
        loads_spec(extra, origin="x.toml")
    ok = loads_spec(
        SPEC.format(period='period = "month"')
        + '[[data.extra]]\npath = "more.csv"\ntime = "launch"\n'
    )
    assert ok.data.extra[0].data.time == "launch" and ok.data.extra[0].data.period == "month"
    with pytest.raises(SpecError, match=r"\[data.extra #1\].period must be \[data\].period"):
        loads_spec(
            SPEC.format(period='period = "month"')
            + '[[data.extra]]\npath = "m.csv"\ntime = "t"\nperiod = "week"\n'
        )


def _write_users(tmp_path: Path) -> Path:
    path = tmp_path / "users.csv"
    _timed(make_users(), "text").to_csv(path, index=False)
    return path


FLAGS = [
    "--experiment",
    "exp_id",
    "--treatment",
    "treatment",
    "--outcome",
    "retained",
    "--proxies",
    "watch_min,ctr",
]


def test_cli_summarize_with_time(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _write_users(tmp_path)
    out = tmp_path / "cells.nc"
    code = main(
        [
            "summarize",
            "--data",
            str(data),
            *FLAGS,
            "--time",
            "start",
            "--time-period",
            "month",
            "-o",
            str(out),
            "-q",
        ]
    )
    assert code == 0, capsys.readouterr().err
    cells = CellEffects.load(out)
    assert cells.periods[0] == "2024-11" and cells.periods[-1] == "2025-07"
    assert cells.meta["time"]["column"] == "start"
    assert "time: starts 2024-11-30 .. 2025-07-02 (column 'start')" in capsys.readouterr().out
    code = main(
        [
            "summarize",
            "--data",
            str(data),
            *FLAGS,
            "--time",
            "start",
            "--time-period",
            "2024-01-01,2025-04-01,2026-01-01",
            "-o",
            str(out),
            "-q",
        ]
    )
    assert code == 0
    assert CellEffects.load(out).periods == ("[2024-01-01, 2025-04-01)", "[2025-04-01, 2026-01-01)")
    capsys.readouterr()
    code = main(
        [
            "summarize",
            "--data",
            str(data),
            *FLAGS,
            "--time",
            "start",
            "--time-period",
            "quartr",
            "-o",
            str(out),
            "-q",
        ]
    )
    err = capsys.readouterr().err
    assert code != 0 and "--time-period must be one of" in err and "'quarter'" in err
    assert "Traceback" not in err


def test_cli_validate_reports_periods(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _write_users(tmp_path)
    code = main(["validate", "--data", str(data), *FLAGS, "--time", "start"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "periods: 4 by quarter, 2024-Q4 to 2025-Q3" in out
    assert "1 period(s) hold no experiment" in out and "2025-Q1" in out
    code = main(["validate", "--data", str(data), *FLAGS, "--time", "strt"])
    out = capsys.readouterr().out
    assert code != 0 and "'strt'" in out and "Did you mean 'start'" in out


def test_cli_spec_round_trips_time(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(period="period = [2024-01-01, 2025-01-01]"), encoding="utf-8")
    assert main(["spec", str(spec)]) == 0
    text = capsys.readouterr().out
    data = tomllib.loads(text)["data"]
    assert data["time"] == "start"
    assert data["period"] == [datetime.date(2024, 1, 1), datetime.date(2025, 1, 1)]


def test_estimates_from_spec_with_time(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = estimates_table({"a": "2024-02-29", "b": "2024-05-01", "c": "2024-12-31"})
    path = tmp_path / "est.csv"
    table.to_csv(path, index=False)
    out = tmp_path / "cells.nc"
    code = main(
        [
            "estimates",
            str(path),
            "--experiment",
            "exp",
            "--metric",
            "metric",
            "--estimate",
            "est",
            "--se",
            "se",
            "--outcome",
            "ltv",
            "--proxies",
            "d7",
            "--correlation",
            "0.3",
            "--time",
            "start",
            "--time-period",
            "year",
            "-o",
            str(out),
            "-q",
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert CellEffects.load(out).periods == ("2024",)


def test_spec_history_of_ab_and_did_sources_with_time(tmp_path: Path) -> None:
    from proxyscope import simulate
    from proxyscope.run.load import load_effects

    users = simulate.streaming(n_users=4000, n_experiments=3, seed=2).users
    users = users.assign(
        start=users["exp_id"].map({0: "2024-01-15", 1: "2024-02-01", 2: "2024-02-20"})
    )
    panel = simulate.rollout(n_experiments=3, seed=1).panel
    panel = panel.assign(exp_id=panel["exp_id"] + 100)
    launch = {100: datetime.date(2024, 6, 3), 101: datetime.date(2024, 6, 10), 102: None}
    panel = panel.assign(launch=panel["exp_id"].map(launch).astype(object))
    users.to_parquet(tmp_path / "ab.parquet", index=False)
    text = (
        'name = "joined"\n[data]\npath = "ab.parquet"\ntime = "start"\nperiod = "month"\n'
        '[columns]\nexperiment = "exp_id"\ntreatment = "treatment"\noutcome = "long_retained"\n'
        'proxies = ["early_watch_min"]\nsegments = ["region"]\n'
        '[[data.extra]]\npath = "panel.parquet"\ndesign = "did"\ntime = "launch"\n'
        'did = { unit = "unit", period = "period", first_treated = "first_treated" }\n'
    )
    spec = loads_spec(text, base_dir=tmp_path)
    assert loads_spec(spec.dumps(), base_dir=tmp_path) == spec
    panel.to_parquet(tmp_path / "panel.parquet", index=False)
    with warnings.catch_warnings():  # the did design warns about its pre-trend test
        warnings.simplefilter("ignore", DataWarning)
        with pytest.raises(DataError, match=r"'launch' \(given as 'time'\) is missing.*102"):
            load_effects(spec)
    launch[102] = datetime.date(2024, 9, 30)
    panel.assign(launch=panel["exp_id"].map(launch)).to_parquet(tmp_path / "panel.parquet")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        got = load_effects(spec).effects
    assert got.designs == ["ab", "did"]
    assert got.periods[0] == "2024-01" and got.periods[-1] == "2024-09" and len(got.periods) == 9
    starts = got.experiment_starts
    assert starts[101] == pd.Timestamp("2024-06-10") and starts[2] == pd.Timestamp("2024-02-20")
    assert got.meta["time"]["column"] is None  # two sources, two columns

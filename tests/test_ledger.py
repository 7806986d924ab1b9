"""The weights ledger: exact round trips, input checks, crashes and concurrent writers."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pytest
from _ledger_worker import expected_table

from proxyscope._version import __version__
from proxyscope.errors import (
    ColumnError,
    DataError,
    DataTypeError,
    IncompatibleFileError,
    ParameterError,
    ProxyscopeWarning,
)
from proxyscope.ledger import (
    HISTORY_COLUMNS,
    LedgerBusyError,
    connection,
    current_weights,
    override_weights,
    record_weights,
    store,
    weights_history,
)

WORKER = Path(__file__).with_name("_ledger_worker.py")
SRC = Path(__file__).resolve().parents[1] / "src"


def computed_table() -> pd.DataFrame:
    """A computed entry: two scopes, three proxies, deliberately unsorted rows."""
    return pd.DataFrame(
        {
            "scope": ["IN / Mobile / New"] * 3 + ["global"] * 3,
            "proxy": ["starts", "ctr", "watch_min"] * 2,
            "weight": [0.2, 0.1, 0.7, 0.3, 0.25, 0.45],
            "weight_lo": [0.1, 0.0, 0.5, 0.2, 0.15, 0.35],
            "weight_hi": [0.3, 0.2, 0.9, 0.4, 0.35, 0.55],
        }
    )


def rows_of(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    """Rows as plain tuples with NaN turned into None, for exact comparisons."""
    return [
        tuple(None if isinstance(v, float) and np.isnan(v) else v for v in row)
        for row in frame.itertuples(index=False, name=None)
    ]


# ----------------------------------------------------------------------------
# Round trips
# ----------------------------------------------------------------------------


def test_round_trip_has_exact_rows_metadata_and_order(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "ledger.duckdb"  # the folder is created too
    stamp = datetime(2024, 5, 1, 14, 30, tzinfo=timezone(timedelta(hours=2)))
    first = record_weights(
        path,
        computed_table(),
        data_fingerprint="data-1",
        config_hash="cfg-1",
        ci=0.9,
        note="nightly",
        timestamp=stamp,
    )
    before = datetime.now(UTC)
    second = override_weights(
        path, {"watch_min": 0.5, "ctr": 0.2, "starts": 0.3}, who="ana", why="launch review"
    )
    after = datetime.now(UTC)
    assert (first, second) == (1, 2)

    history = weights_history(path)
    assert list(history.columns) == list(HISTORY_COLUMNS)
    assert list(history.index) == list(range(9))
    assert history["entry_id"].dtype == np.int64
    assert str(history["timestamp"].dtype) == "datetime64[us, UTC]"
    for col in ("weight", "weight_lo", "weight_hi", "ci"):
        assert history[col].dtype == np.float64
    got = history[["entry_id", "kind", "scope", "proxy", "weight", "weight_lo", "weight_hi"]]
    assert rows_of(got) == [
        (1, "computed", "IN / Mobile / New", "ctr", 0.1, 0.0, 0.2),
        (1, "computed", "IN / Mobile / New", "starts", 0.2, 0.1, 0.3),
        (1, "computed", "IN / Mobile / New", "watch_min", 0.7, 0.5, 0.9),
        (1, "computed", "global", "ctr", 0.25, 0.15, 0.35),
        (1, "computed", "global", "starts", 0.3, 0.2, 0.4),
        (1, "computed", "global", "watch_min", 0.45, 0.35, 0.55),
        (2, "override", "global", "ctr", 0.2, None, None),
        (2, "override", "global", "starts", 0.3, None, None),
        (2, "override", "global", "watch_min", 0.5, None, None),
    ]
    meta = ["ci", "data_fingerprint", "config_hash", "who", "why", "note", "proxyscope_version"]
    by_entry = history.groupby("entry_id")[meta].nunique(dropna=False)
    assert (by_entry == 1).all().all()  # metadata repeats on every row of an entry
    assert rows_of(history.loc[[0, 6], meta]) == [
        (0.9, "data-1", "cfg-1", None, None, "nightly", __version__),
        (None, None, None, "ana", "launch review", None, __version__),
    ]
    # The given timestamp is kept (in UTC); an override is stamped with the write time.
    assert set(history.loc[history.entry_id == 1, "timestamp"]) == {
        pd.Timestamp("2024-05-01 12:30", tz="UTC")
    }
    written = history.loc[6, "timestamp"]
    assert pd.Timestamp(before) <= written <= pd.Timestamp(after)


def test_naive_timestamp_is_read_as_utc(tmp_path: Path) -> None:
    path = tmp_path / "l.duckdb"
    record_weights(path, computed_table(), timestamp=datetime(2023, 1, 2, 3, 4, 5, 678901))
    stamps = set(weights_history(path)["timestamp"])
    assert stamps == {pd.Timestamp("2023-01-02 03:04:05.678901", tz="UTC")}


def test_current_weights_follows_the_latest_entry_per_scope(tmp_path: Path) -> None:
    path = tmp_path / "l.duckdb"
    record_weights(path, computed_table())
    override_weights(path, {"watch_min": 0.5, "ctr": 0.2, "starts": 0.3}, who="a", why="b")

    glob = current_weights(path)
    assert rows_of(glob[["entry_id", "kind", "proxy", "weight"]]) == [
        (2, "override", "ctr", 0.2),
        (2, "override", "starts", 0.3),
        (2, "override", "watch_min", 0.5),
    ]
    assert list(glob.columns) == list(HISTORY_COLUMNS)
    assert list(glob.index) == [0, 1, 2]
    seg = current_weights(path, "IN / Mobile / New")
    assert rows_of(seg[["entry_id", "kind", "proxy", "weight"]]) == [
        (1, "computed", "ctr", 0.1),
        (1, "computed", "starts", 0.2),
        (1, "computed", "watch_min", 0.7),
    ]
    # A later computation takes over again; "latest" is the order of writing.
    old = datetime(2000, 1, 1, tzinfo=UTC)
    record_weights(path, computed_table().query("scope == 'global'"), timestamp=old)
    assert set(current_weights(path)["entry_id"]) == {3}
    assert set(current_weights(path, "IN / Mobile / New")["entry_id"]) == {1}
    with pytest.raises(
        ParameterError, match=r"'scope'.*'global'.*Did you mean 'IN / Mobile / New'"
    ):
        current_weights(path, "IN / Mobile / Nw")


def test_include_overrides_false_keeps_only_computed_entries(tmp_path: Path) -> None:
    path = tmp_path / "l.duckdb"
    record_weights(path, computed_table())
    override_weights(path, {"watch_min": 0.5, "ctr": 0.2, "starts": 0.3}, who="a", why="b")
    record_weights(path, computed_table())
    full = weights_history(path)
    computed = weights_history(path, include_overrides=False)
    assert list(full["entry_id"].unique()) == [1, 2, 3]
    assert list(computed["entry_id"].unique()) == [1, 3]
    assert set(computed["kind"]) == {"computed"}
    expected = full.loc[full.kind == "computed"].reset_index(drop=True)
    pd.testing.assert_frame_equal(computed, expected)


def test_history_is_append_only(tmp_path: Path) -> None:
    path = tmp_path / "l.duckdb"
    record_weights(path, computed_table())
    first = weights_history(path)
    override_weights(path, {"watch_min": 0.5, "ctr": 0.2, "starts": 0.3}, who="a", why="b")
    series = pd.Series({"watch_min": 0.6, "ctr": 0.1, "starts": 0.3})
    override_weights(path, series, who="a", why="c")
    later = weights_history(path)
    assert len(later) == len(first) + 6
    assert rows_of(later.loc[later.entry_id == 3, ["proxy", "weight"]]) == [
        ("ctr", 0.1),
        ("starts", 0.3),
        ("watch_min", 0.6),
    ]
    pd.testing.assert_frame_equal(later.iloc[: len(first)], first)


def test_override_accepts_a_frame_with_several_scopes(tmp_path: Path) -> None:
    path = tmp_path / "l.duckdb"
    record_weights(path, computed_table())
    frame = pd.DataFrame(
        {
            "scope": ["global", "global", "IN / Mobile / New", "IN / Mobile / New"],
            "proxy": ["watch_min", "starts", "watch_min", "starts"],
            "weight": [0.75, 0.25, 0.4, 0.6],
        },
        index=[10, 11, 12, 13],
    )
    snapshot = frame.copy(deep=True)
    with pytest.warns(ProxyscopeWarning, match=r"left out: \['ctr'\]") as caught:
        entry = override_weights(path, frame, who="bo", why="ctr is gamed")
    assert len(caught) == 2  # one caution per scope whose proxy set changed
    pd.testing.assert_frame_equal(frame, snapshot)
    rows = weights_history(path).query("entry_id == @entry")
    assert rows_of(rows[["scope", "proxy", "weight", "who", "why"]]) == [
        ("IN / Mobile / New", "starts", 0.6, "bo", "ctr is gamed"),
        ("IN / Mobile / New", "watch_min", 0.4, "bo", "ctr is gamed"),
        ("global", "starts", 0.25, "bo", "ctr is gamed"),
        ("global", "watch_min", 0.75, "bo", "ctr is gamed"),
    ]
    # A frame without a scope column takes the scope parameter.
    plain = pd.DataFrame({"proxy": ["a", "b"], "weight": [0.5, 0.5]})
    with pytest.warns(ProxyscopeWarning, match="no earlier entry"):
        entry = override_weights(path, plain, who="bo", why="new cohort", scope="EU")
    assert set(current_weights(path, "EU")["entry_id"]) == {entry}


def test_override_warns_on_an_unknown_scope_but_still_records(tmp_path: Path) -> None:
    path = tmp_path / "l.duckdb"
    record_weights(path, computed_table())
    with pytest.warns(ProxyscopeWarning, match=r"Did you mean 'IN / Mobile / New'\?"):
        entry = override_weights(
            path, {"watch_min": 1.0}, who="a", why="b", scope="IN / Mobile / Nw"
        )
    assert entry == 2
    assert len(weights_history(path)) == 7


def test_callers_frame_is_not_modified(tmp_path: Path) -> None:
    table = computed_table()
    table["extra"] = ["x"] * 6  # other columns are ignored
    table.index = pd.Index([5, 3, 9, 1, 7, 2], name="row")
    table["weight"] = table["weight"].astype(object)
    snapshot = table.copy(deep=True)
    record_weights(tmp_path / "l.duckdb", table)
    pd.testing.assert_frame_equal(table, snapshot)
    assert table.index.name == "row"


def test_an_empty_database_reads_as_an_empty_history(tmp_path: Path) -> None:
    path = tmp_path / "l.duckdb"
    duckdb.connect(str(path)).close()  # e.g. a first writer killed before it committed
    history = weights_history(path)
    assert history.empty
    assert list(history.columns) == list(HISTORY_COLUMNS)
    assert str(history["timestamp"].dtype) == "datetime64[us, UTC]"
    with pytest.raises(ParameterError, match="ledger is empty"):
        current_weights(path)
    assert record_weights(path, computed_table()) == 1


# ----------------------------------------------------------------------------
# Bad inputs and bad files
# ----------------------------------------------------------------------------


def _drop(col: str) -> pd.DataFrame:
    return computed_table().drop(columns=col)


def _with(col: str, row: int, value: Any) -> pd.DataFrame:
    table = computed_table()
    table[col] = table[col].astype(object)
    table.loc[row, col] = value
    return table


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"table": [1, 2]}, DataTypeError, r"'table' .* DataFrame.* Got list"),
        ({"table": _drop("weight")}, ColumnError, r"'table' .* missing column\(s\) 'weight'"),
        ({"table": computed_table().iloc[:0]}, DataError, r"'table' .* at least one row"),
        ({"table": _with("weight", 2, np.nan)}, DataError, r"'weight'.*'watch_min' has nan"),
        ({"table": _with("weight", 0, np.inf)}, DataError, r"'weight'.*'starts' has inf"),
        ({"table": _with("weight", 0, -0.1)}, DataError, r"in \[0, 1\].* has -0\.1"),
        ({"table": _with("weight_hi", 0, np.inf)}, DataError, r"'weight_hi'.* has inf"),
        (
            {"table": _with("weight_lo", 0, 0.5)},
            DataError,
            r"weight_lo <= weight_hi.*\[0\.5, 0\.3\]",
        ),
        ({"table": _with("weight", 1, "heavy")}, DataTypeError, r"'weight' column must be numeric"),
        ({"table": _with("proxy", 1, "")}, DataError, r"'proxy' column .* Found ''"),
        ({"table": _with("scope", 1, 3)}, DataError, r"'scope' column .* Found 3"),
        ({"table": _with("proxy", 1, "starts")}, DataError, r"'starts' appears more than once"),
        ({"kind": "overide"}, ParameterError, r"'kind' .* Got 'overide'.*Did you mean 'override'"),
        ({"kind": "override", "who": "a"}, ParameterError, r"'why' .* non-empty string. Got None"),
        (
            {"table": _with("weight", 0, 0.25), "kind": "override", "who": "a", "why": "b"},
            ParameterError,
            r"'table' .* sum to 1 .* scope 'IN / Mobile / New' sums to 1\.05 \(starts=0\.25",
        ),
        ({"ci": 1.5}, ParameterError, r"'ci' .* Got 1\.5"),
        ({"who": "  "}, ParameterError, r"'who' .* Got '  '"),
        ({"note": 7}, ParameterError, r"'note' .* Got 7"),
        ({"timestamp": "2024-01-01"}, DataTypeError, r"'timestamp' .* Got '2024-01-01'"),
        ({"timeout": -1}, ParameterError, r"'timeout' .* Got -1"),
    ],
)
def test_record_weights_rejects_bad_inputs(
    tmp_path: Path, kwargs: dict[str, Any], error: type[Exception], pattern: str
) -> None:
    path = tmp_path / "l.duckdb"
    args = {"table": computed_table(), **kwargs}
    table = args.pop("table")
    with pytest.raises(error, match=pattern) as info:
        record_weights(path, table, **args)
    assert "\n" not in str(info.value)
    assert not path.exists()  # nothing is written


@pytest.mark.parametrize(
    ("weights", "kwargs", "error", "pattern"),
    [
        (
            {"a": 0.5, "b": 0.4},
            {},
            ParameterError,
            r"'weights' .* sum to 1 .* sums to 0\.9 \(a=0\.5",
        ),
        ({"a": 1.5, "b": -0.5}, {}, DataError, r"'weight' values .* 'a' has 1\.5"),
        ({"a": float("nan"), "b": 1.0}, {}, DataError, r"'a' has nan"),
        ({"a": "0.5", "b": 0.5}, {}, DataTypeError, r"numbers. Got '0\.5' for proxy 'a'"),
        ({}, {}, ParameterError, r"'weights' .* at least one proxy"),
        ([("a", 1.0)], {}, DataTypeError, r"'weights' .* Got list"),
        ({"a": 1.0}, {"who": ""}, ParameterError, r"'who' .* non-empty string. Got ''"),
        ({"a": 1.0}, {"why": None}, ParameterError, r"'why' .* Got None"),
        ({"a": 1.0}, {"scope": ""}, ParameterError, r"'scope' .* Got ''"),
        (
            pd.DataFrame({"scope": ["x"], "proxy": ["a"], "weight": [1.0]}),
            {"scope": "y"},
            ParameterError,
            r"'scope' .* left at 'global' when the 'weights' frame has a 'scope' column",
        ),
        (
            pd.DataFrame({"proxy": ["a"], "weights": [1.0]}),
            {},
            ColumnError,
            r"missing 'weight' and has \['proxy', 'weights'\]\. Did you mean 'weights'\?",
        ),
    ],
)
def test_override_weights_rejects_bad_inputs(
    tmp_path: Path, weights: Any, kwargs: dict[str, Any], error: type[Exception], pattern: str
) -> None:
    path = tmp_path / "l.duckdb"
    args = {"who": "ana", "why": "review", **kwargs}
    with pytest.raises(error, match=pattern) as info:
        override_weights(path, weights, **args)
    assert "\n" not in str(info.value)
    assert not path.exists()


def test_override_sums_within_tolerance_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "l.duckdb"
    with pytest.warns(ProxyscopeWarning):
        override_weights(path, {"a": 0.1, "b": 0.2, "c": 0.7 + 5e-7}, who="a", why="b")
    assert weights_history(path)["weight"].sum() == pytest.approx(1 + 5e-7, abs=1e-12)


def test_missing_file_is_a_parameter_error_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.duckdb"
    for read in (weights_history, current_weights):
        with pytest.raises(ParameterError, match=r"'path' .*nowhere\.duckdb.* does not exist"):
            read(path)
    assert not path.exists()


def test_a_foreign_duckdb_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "other.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE sales AS SELECT 1 AS x")
    with pytest.raises(IncompatibleFileError, match=r"not a proxyscope weights ledger.*sales"):
        weights_history(path)
    with pytest.raises(IncompatibleFileError, match=r"not a proxyscope weights ledger"):
        record_weights(path, computed_table())
    with duckdb.connect(str(path), read_only=True) as con:
        tables = con.execute("SELECT table_name FROM information_schema.tables").fetchall()
    assert tables == [("sales",)]


def test_a_file_that_is_not_duckdb_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a database\n" * 50)
    with pytest.raises(IncompatibleFileError, match=r"notes\.txt.*not a DuckDB database"):
        weights_history(path)
    with pytest.raises(IncompatibleFileError, match=r"not a DuckDB database"):
        record_weights(path, computed_table())
    empty = tmp_path / "empty.duckdb"
    empty.touch()
    with pytest.raises(IncompatibleFileError, match=r"\(it is empty\)"):
        record_weights(empty, computed_table(), timeout=0.05)
    assert path.read_text() == "not a database\n" * 50
    assert empty.stat().st_size == 0


def test_a_ledger_caught_while_another_process_writes_its_header_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DuckDB found the file empty, but by the time the ledger looks it has a header."""
    path = tmp_path / "l.duckdb"
    record_weights(path, computed_table())
    real = duckdb.connect
    calls = []

    def connect_mid_creation(target: str, **kwargs: Any) -> Any:
        calls.append(target)
        if len(calls) == 1:
            raise duckdb.IOException(
                f'IO Error: The file "{target}" exists, but it is not a valid DuckDB database file!'
            )
        return real(target, **kwargs)

    monkeypatch.setattr(connection.duckdb, "connect", connect_mid_creation)
    history = weights_history(path)
    assert len(calls) == 2
    assert history["entry_id"].nunique() == 1
    # A file that is not DuckDB's is still refused at the first attempt.
    calls.clear()
    other = tmp_path / "notes.txt"
    other.write_text("not a database\n" * 50)
    with pytest.raises(IncompatibleFileError, match=r"not a DuckDB database"):
        weights_history(other)
    assert len(calls) == 1


def test_an_unknown_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "l.duckdb"
    record_weights(path, computed_table())
    with duckdb.connect(str(path)) as con:
        con.execute("UPDATE ledger_meta SET value = '2' WHERE key = 'schema_version'")
    with pytest.raises(IncompatibleFileError, match=r"schema version '2'.*reads schema version 1"):
        weights_history(path)
    with pytest.raises(IncompatibleFileError, match=r"Upgrade proxyscope"):
        record_weights(path, computed_table())
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM ledger_entries").fetchone() == (1,)


def test_schema_is_as_documented(tmp_path: Path) -> None:
    path = tmp_path / "l.duckdb"
    record_weights(path, computed_table())
    with duckdb.connect(str(path), read_only=True) as con:
        meta = dict(con.execute("SELECT key, value FROM ledger_meta").fetchall())
        entries = con.execute(
            "SELECT entry_id, kind, n_values, created_at <= now() FROM ledger_entries"
        ).fetchall()
        n_values = con.execute("SELECT count(*) FROM ledger_values").fetchone()
    assert meta == {
        "format": "proxyscope-weights-ledger",
        "schema_version": "1",
        "created_with": f"proxyscope {__version__}",
    }
    assert entries == [(1, "computed", 6, True)]
    assert n_values == (6,)


# ----------------------------------------------------------------------------
# Transactions, in process
# ----------------------------------------------------------------------------


def test_a_failed_write_leaves_no_partial_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "l.duckdb"
    record_weights(path, computed_table())
    insert = store._insert_values

    def insert_then_fail(con: Any, entry_id: int, rows: pd.DataFrame) -> None:
        insert(con, entry_id, rows.iloc[:2])  # half the values are in, then it fails
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(store, "_insert_values", insert_then_fail)
    with pytest.raises(RuntimeError, match="disk on fire"):
        record_weights(path, computed_table())
    monkeypatch.undo()
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM ledger_entries").fetchone() == (1,)
        assert con.execute("SELECT count(*) FROM ledger_values").fetchone() == (6,)
    assert record_weights(path, computed_table()) > 1


def test_threads_in_one_process_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "l.duckdb"
    errors: list[BaseException] = []

    def work(tag: str) -> None:
        try:
            for i in range(4):
                record_weights(path, expected_table(tag, i, 2, 3), note=f"{tag}:{i}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in ("a", "b", "c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    check_ledger(path, {f"{t}:{i}" for t in "abc" for i in range(4)}, n_scopes=2, n_proxies=3)


def test_reads_share_an_open_connection_of_the_same_process(tmp_path: Path) -> None:
    path = tmp_path / "l.duckdb"
    record_weights(path, computed_table())
    with duckdb.connect(str(path)) as con:  # the caller's own read-write connection
        assert len(weights_history(path)) == 6
        record_weights(path, computed_table())
        assert con.execute("SELECT count(*) FROM ledger_entries").fetchone() == (2,)
    assert len(weights_history(path)) == 12


def test_a_read_only_connection_of_the_same_process_blocks_writes_clearly(tmp_path: Path) -> None:
    path = tmp_path / "l.duckdb"
    record_weights(path, computed_table())
    with duckdb.connect(str(path), read_only=True):
        assert len(weights_history(path)) == 6
        start = time.monotonic()
        with pytest.raises(LedgerBusyError, match=r"this process already has it open"):
            record_weights(path, computed_table())
        assert time.monotonic() - start < 1.0  # no point waiting for ourselves
    assert record_weights(path, computed_table()) == 2


# ----------------------------------------------------------------------------
# Other processes: a lock holder, a killed writer, concurrent writers
# ----------------------------------------------------------------------------


class Worker:
    """A ``_ledger_worker.py`` subprocess whose stdout lines arrive on a queue."""

    def __init__(self, *args: str) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.err = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put(None)

    def next_line(self, timeout: float = 30.0) -> str | None:
        line = self.lines.get(timeout=timeout)
        if line is not None:
            self.seen.append(line)
        return line

    def wait_for(self, prefix: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            line = self.next_line(max(0.01, deadline - time.monotonic()))
            if line is None:
                self.drain()
                raise AssertionError(f"worker exited before {prefix!r}: {self.err}")
            if line.startswith(prefix):
                return line

    def drain(self) -> list[str]:
        """Every remaining line, after the process has ended; closes the pipes."""
        self.proc.wait(timeout=60)
        while self.next_line() is not None:
            pass
        self._reader.join(timeout=10)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.proc.stdout.close()
        if not self.proc.stderr.closed:
            self.err = self.proc.stderr.read()[-2000:]
            self.proc.stderr.close()
        return self.seen

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.drain()

    def stderr(self) -> str:
        return self.err if self.proc.poll() is not None else "(still running)"

    def committed(self) -> dict[int, str]:
        """entry_id -> "tag:i" for every entry the worker saw committed."""
        out = {}
        for line in self.seen:
            if line.startswith("committed "):
                _, entry_id, tag, i = line.split()
                out[int(entry_id)] = f"{tag}:{i}"
        return out


def check_ledger(path: Path, notes: set[str], *, n_scopes: int, n_proxies: int) -> pd.DataFrame:
    """The ledger holds exactly the entries ``notes``, each complete and exact."""
    history = weights_history(path, timeout=30)
    by_note = history.groupby("note", sort=False)
    assert set(history["note"]) == notes
    assert len(set(history["entry_id"])) == len(notes)  # no note written twice
    for note, rows in by_note:
        tag, i = str(note).split(":")
        expected = expected_table(tag, int(i), n_scopes, n_proxies)
        got = rows[["scope", "proxy", "weight", "weight_lo", "weight_hi"]].reset_index(drop=True)
        pd.testing.assert_frame_equal(got, expected, check_dtype=False)
        assert rows["entry_id"].nunique() == 1
    # Straight from the tables: no entry without all its values, no orphan values.
    with duckdb.connect(str(path), read_only=True) as con:
        n_entries, n_rows, declared = con.execute(
            "SELECT count(*), (SELECT count(*) FROM ledger_values), sum(n_values) "
            "FROM ledger_entries"
        ).fetchone()
    assert n_entries == len(notes)
    assert n_rows == declared == len(notes) * n_scopes * n_proxies
    return history


def test_lock_holder_makes_calls_wait_then_fail_or_succeed(tmp_path: Path) -> None:
    path = tmp_path / "l.duckdb"
    record_weights(path, computed_table())
    holder = Worker("hold", str(path), "3")
    try:
        holder.wait_for("holding")
        held_since = time.monotonic()
        for call in (
            lambda: record_weights(path, computed_table(), timeout=0.3),
            lambda: weights_history(path, timeout=0.3),
        ):
            start = time.monotonic()
            with pytest.raises(LedgerBusyError, match=r"l\.duckdb.*timeout=0\.3 s") as info:
                call()
            assert 0.3 <= time.monotonic() - start < 1.3
            assert isinstance(info.value, TimeoutError)
            assert "\n" not in str(info.value)
        entry = record_weights(path, computed_table(), timeout=30)
        assert time.monotonic() - held_since >= 2.9  # it waited for the holder
        assert entry == 2
    finally:
        holder.kill()
    assert "released" in holder.seen
    assert sorted(set(weights_history(path)["entry_id"])) == [1, 2]


def test_a_writer_killed_mid_write_leaves_every_committed_entry(tmp_path: Path) -> None:
    """SIGKILL writers inside a transaction, at random moments and before a checkpoint."""
    path = tmp_path / "l.duckdb"
    n_scopes, n_proxies = 40, 50  # 2,000 rows an entry: transactions take a while
    size = ["--scopes", str(n_scopes), "--proxies", str(n_proxies)]
    notes: set[str] = set()
    rng = np.random.default_rng(4)

    # Round 0: killed inside the very first transaction, which also creates the tables.
    worker = Worker("append", str(path), "r0", "-1", "--pause", "30", *size)
    inside = worker.wait_for("inside ")
    worker.kill()
    assert weights_history(path).empty  # the file exists and reads as an empty ledger
    assert inside == "inside 1 r0 0"

    # Round 1: killed while a transaction is open, after a few commits.
    worker = Worker("append", str(path), "r1", "-1", "--pause", "30", "--pause-at", "3", *size)
    for _ in range(3):
        worker.wait_for("committed ")
    inside = worker.wait_for("inside ")
    worker.kill()
    committed = worker.committed()
    assert len(committed) == 3
    notes |= set(committed.values())
    history = check_ledger(path, notes, n_scopes=n_scopes, n_proxies=n_proxies)
    assert set(history["entry_id"]) == set(committed)
    assert int(inside.split()[1]) not in set(history["entry_id"])  # the open one is gone

    # Rounds 2-4: killed at a random moment (in a transaction, a commit, a checkpoint...).
    for r in (2, 3, 4):
        worker = Worker("append", str(path), f"r{r}", "-1", *size)
        worker.wait_for("committed ")
        time.sleep(float(rng.uniform(0.05, 0.6)))
        worker.kill()
        committed = worker.committed()
        began = [line for line in worker.seen if line.startswith("begin ")]
        in_flight = {began[-1].split(" ", 1)[1].replace(" ", ":")} - set(committed.values())
        history = weights_history(path)
        present = set(history["note"])
        # Everything reported committed is there; the write in flight may or may not be.
        assert (
            notes | set(committed.values())
            <= present
            <= notes | set(committed.values()) | in_flight
        )
        notes = present
        check_ledger(path, notes, n_scopes=n_scopes, n_proxies=n_proxies)

    # Round 5: killed after COMMIT but before the checkpoint on close, so the
    # entry is only in the write-ahead log; a read-only reader must replay it.
    worker = Worker("append", str(path), "r5", "1", "--die-before-close", *size)
    entry_id = int(worker.wait_for("inside ").split()[1])
    worker.wait_for("closing")
    worker.drain()
    assert worker.proc.returncode == -signal.SIGKILL
    wal = Path(f"{path}.wal")
    assert wal.exists() and wal.stat().st_size > 0
    notes.add("r5:0")
    history = check_ledger(path, notes, n_scopes=n_scopes, n_proxies=n_proxies)
    assert set(history.loc[history.note == "r5:0", "entry_id"]) == {entry_id}

    # The ledger is still writable, and ids keep increasing.
    last = int(weights_history(path)["entry_id"].max())
    assert record_weights(path, expected_table("t", 0, 2, 2), note="t:0") > last


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    """Three processes append 12 entries each at once to a fresh ledger; a reader watches."""
    path = tmp_path / "l.duckdb"
    go = tmp_path / "go"
    n, n_scopes, n_proxies = 12, 20, 10
    tags = ("a", "b", "c")
    workers = [
        Worker("append", str(path), tag, str(n), "--scopes", str(n_scopes),
               "--proxies", str(n_proxies), "--go", str(go))
        for tag in tags
    ]  # fmt: skip
    try:
        for w in workers:
            w.wait_for("ready")
        go.touch()
        reads = 0
        while any(w.proc.poll() is None for w in workers):
            if path.exists():
                history = weights_history(path, timeout=30)  # every entry complete, mid-run
                counts = history.groupby("entry_id").size()
                assert (counts == n_scopes * n_proxies).all()
                reads += 1
            time.sleep(0.05)
        lines = [w.drain() for w in workers]
    finally:
        for w in workers:
            if w.proc.poll() is None:
                w.kill()
    for w, seen in zip(workers, lines, strict=True):
        assert w.proc.returncode == 0, w.stderr()
        assert seen[-1] == "done"
    history = check_ledger(
        path, {f"{t}:{i}" for t in tags for i in range(n)}, n_scopes=n_scopes, n_proxies=n_proxies
    )
    ids = sorted(set(history["entry_id"]))
    assert ids == list(range(1, 3 * n + 1))
    reported = {k: v for w in workers for k, v in w.committed().items()}
    assert len(reported) == 3 * n
    assert (history.groupby("entry_id")["note"].first().to_dict()) == reported
    retries = sum(
        int(line.split()[1]) for seen in lines for line in seen if line.startswith("retries")
    )
    assert retries > 0  # the writers really did collide on the lock
    assert reads > 0

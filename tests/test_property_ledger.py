"""Property tests of the weights ledger: damaged or foreign files, and hostile text.

A valid ledger of a few entries is written once; each example damages a copy
(truncates it, overwrites bytes after DuckDB's headers, appends garbage, or
replaces it with a file of another kind) and then reads the history and
writes a new entry. Each call must give exactly the entries the test wrote
(computed here from the test's own inputs) or refuse with a proxyscope error
naming the ledger's path; a refused write must leave the file as it was.

Whether DuckDB can still read a damaged copy cannot be known from the
mutation alone (a cut may fall where no block is in use), so it is decided
independently: raw DuckDB reads every table of another copy, and appends an
entry to a third.
"""

from __future__ import annotations

import math
import os
import shutil
import sqlite3
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
from _fuzz import judge
from hypothesis import given
from hypothesis import strategies as st

from proxyscope.errors import ProxyscopeWarning
from proxyscope.ledger import current_weights, override_weights, record_weights, weights_history

pytestmark = pytest.mark.fuzz

NO_EXTENSIONS = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}
HEADER = 3 * 4096  # DuckDB's main header and its two database headers
TIMEOUT = 0.2

# The ledger every example starts from: (kind, rows, who, why, note), in order.
Row = tuple[str, str, float, float | None, float | None]
ENTRIES: list[tuple[str, list[Row], str | None, str | None, str | None]] = [
    (
        "computed",
        [("global", "ctr", 0.25, 0.1, 0.4), ("global", "starts", 0.75, 0.6, 0.9)],
        None,
        None,
        "first",
    ),
    (
        "computed",
        [("EU / TV", "ctr", 0.5, None, None), ("global", "ctr", 0.125, 0.0, 0.5)],
        None,
        None,
        "zweite: ü",
    ),
    ("override", [("global", "ctr", 0.3, None, None), ("global", "starts", 0.7, None, None)],
     "ana", "review", None),
]  # fmt: skip
NEW_ROWS: list[Row] = [("global", "ctr", 0.0625, None, None), ("global", "starts", 0.9375, 1, 1)]
Record = tuple[Any, ...]  # entry_id, kind, scope, proxy, weight, lo, hi, who, why, note


def expected_records(entries: list[tuple[str, list[Row], Any, Any, Any]]) -> list[Record]:
    """The history rows of ``entries`` (ids from 1), sorted as the ledger sorts them."""
    out = []
    for entry_id, (kind, rows, who, why, note) in enumerate(entries, start=1):
        for scope, proxy, weight, lo, hi in rows:
            out.append((entry_id, kind, scope, proxy, weight, lo, hi, who, why, note))
    return sorted(out, key=lambda r: (r[0], r[2], r[3]))


EXPECTED = expected_records(ENTRIES)
AFTER_WRITE = expected_records([*ENTRIES, ("computed", NEW_ROWS, None, None, "new")])


def _none(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def package_records(frame: pd.DataFrame) -> list[Record]:
    cols = ["entry_id", "kind", "scope", "proxy", "weight", "weight_lo", "weight_hi"]
    cols += ["who", "why", "note"]
    return [tuple(_none(v) for v in row) for row in frame[cols].itertuples(index=False)]


def raw_records(path: Path) -> list[Record]:
    """Every table read in full by DuckDB itself (not through proxyscope)."""
    with duckdb.connect(str(path), read_only=True, config=NO_EXTENSIONS) as con:
        con.execute("SELECT * FROM ledger_meta").fetchall()
        entries = {r[0]: r for r in con.execute("SELECT * FROM ledger_entries").fetchall()}
        values = con.execute("SELECT * FROM ledger_values").fetchall()
    out = []
    for entry_id, scope, proxy, weight, lo, hi in values:
        e = entries[entry_id]
        out.append((entry_id, e[3], scope, proxy, weight, lo, hi, e[8], e[9], e[10]))
    return sorted(out, key=lambda r: (r[0], r[2], r[3]))


def raw_reads(path: Path, scratch: Path) -> bool:
    """DuckDB reads a copy of ``path`` whole, and it holds exactly the entries written."""
    copy = scratch / "oracle-read.duckdb"
    shutil.copy(path, copy)
    try:
        return raw_records(copy) == EXPECTED
    except duckdb.Error:
        return False


def raw_appends(path: Path, scratch: Path) -> bool:
    """DuckDB appends the new entry to a copy of ``path`` and reads back all entries."""
    copy = scratch / "oracle-write.duckdb"
    shutil.copy(path, copy)
    try:
        with duckdb.connect(str(copy), config=NO_EXTENSIONS) as con:
            con.execute("BEGIN TRANSACTION")
            con.execute(
                "INSERT INTO ledger_entries VALUES (nextval('ledger_entry_id'), now(), now(), "
                "'computed', 2, NULL, NULL, NULL, NULL, NULL, 'new', 'x')"
            )
            con.executemany(
                "INSERT INTO ledger_values VALUES (currval('ledger_entry_id'), ?, ?, ?, ?, ?)",
                [list(r) for r in NEW_ROWS],
            )
            con.execute("COMMIT")
        return raw_records(copy) == AFTER_WRITE
    except duckdb.Error:
        return False


def new_table() -> pd.DataFrame:
    cols = ["scope", "proxy", "weight", "weight_lo", "weight_hi"]
    return pd.DataFrame([[math.nan if v is None else v for v in r] for r in NEW_ROWS], columns=cols)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ledger") / "ledger.duckdb"
    for kind, rows, who, why, note in ENTRIES:
        frame = pd.DataFrame(rows, columns=["scope", "proxy", "weight", "weight_lo", "weight_hi"])
        if kind == "override":
            with pytest.warns(ProxyscopeWarning, match="different proxies"):
                override_weights(
                    path, frame.drop(columns=["weight_lo", "weight_hi"]), who=who, why=why
                )
        else:
            record_weights(path, frame, note=note)
    assert package_records(weights_history(path)) == EXPECTED
    assert not Path(f"{path}.wal").exists()
    return path


@contextmanager
def scratch_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="ledger-fuzz-") as name:
        yield Path(name)


# ----------------------------------------------------------------------------
# Damaged and foreign files
# ----------------------------------------------------------------------------

REPLACEMENTS = ("sqlite", "parquet", "empty", "zeros", "text", "directory", "dangling")

MUTATIONS = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0.0, 1.0, exclude_max=True)),
    st.tuples(st.just("overwrite"), st.floats(0.0, 1.0), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("append"), st.binary(min_size=1, max_size=4096)),
    st.tuples(st.just("replace"), st.sampled_from(REPLACEMENTS)),
)


def mutate(path: Path, mutation: tuple[Any, ...]) -> None:
    """Apply ``mutation`` to the ledger copy at ``path``."""
    what = mutation[0]
    size = path.stat().st_size
    if what == "truncate":
        with open(path, "r+b") as fh:
            fh.truncate(int(size * mutation[1]))
    elif what == "overwrite":
        offset = HEADER + int((size - HEADER - 1) * mutation[1])
        with open(path, "r+b") as fh:
            fh.seek(offset)
            fh.write(mutation[2])
    elif what == "append":
        with open(path, "ab") as fh:
            fh.write(mutation[1])
    else:
        path.unlink()
        kind = mutation[1]
        if kind == "sqlite":
            con = sqlite3.connect(path)
            con.execute("CREATE TABLE ledger_values (entry_id INTEGER, weight REAL)")
            con.commit()
            con.close()
        elif kind == "parquet":
            pd.DataFrame({"entry_id": [1], "weight": [0.5]}).to_parquet(path)
        elif kind == "empty":
            path.touch()
        elif kind == "zeros":
            path.write_bytes(bytes(size))
        elif kind == "text":
            path.write_text("entry_id,weight\n1,0.5\n")
        elif kind == "directory":
            path.mkdir()
        else:
            os.symlink(path.with_name("gone.duckdb"), path)


@given(mutation=MUTATIONS)
def test_a_damaged_or_foreign_ledger_is_read_exactly_or_refused(
    pristine: Path, mutation: tuple[Any, ...]
) -> None:
    with scratch_dir() as scratch:
        path = scratch / "ledger.duckdb"
        shutil.copy(pristine, path)
        mutate(path, mutation)
        replaced = mutation[0] == "replace"
        readable = not replaced and raw_reads(path, scratch)
        writable = readable and raw_appends(path, scratch)
        names = [str(path)]

        def exact_history(frame: pd.DataFrame) -> None:
            assert package_records(frame) == EXPECTED

        judge(
            "weights_history",
            lambda: weights_history(path, timeout=TIMEOUT),
            valid=readable,
            names=names,
            check=exact_history,
            detail=mutation,
        )
        before = path.read_bytes() if path.is_file() else None

        def appended(entry_id: int) -> None:
            assert entry_id == len(ENTRIES) + 1
            assert raw_records(path) == AFTER_WRITE  # every entry, and the new one whole

        written = judge(
            "record_weights",
            lambda: record_weights(path, new_table(), note="new", timeout=TIMEOUT),
            valid=writable,
            names=names,
            check=appended,
            detail=mutation,
        )
        if written is None and before is not None:
            assert path.read_bytes() == before, f"a refused write changed the file {mutation!r}"


# ----------------------------------------------------------------------------
# Hostile text in names and metadata
# ----------------------------------------------------------------------------

ANY_CHAR = st.characters(exclude_categories=())  # surrogates, NULs, controls included
SPECIAL = st.sampled_from(
    ["", " ", "\t\n", "\x00", "a\x00b", "\ud800", "x\udfff", "\u202eevil", "e\u0301", "\ufeff",
     "\U0001f600", "\ufffe\uffff", "'; DROP TABLE ledger_values; --", "global", "GLOBAL"]
)  # fmt: skip
LONG = st.builds(
    lambda s, n: s * n, st.text(ANY_CHAR, min_size=1, max_size=3), st.integers(1, 20_000)
)
TEXT = st.one_of(st.text(ANY_CHAR, max_size=40), SPECIAL, LONG)
FIELDS = ("scope", "proxy", "who", "why", "note", "data_fingerprint", "config_hash")


def storable(text: str) -> bool:
    """Non-blank and valid Unicode (UTF-8 has no form for a lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return text.strip() != ""


@given(field=st.sampled_from(FIELDS), text=TEXT)
def test_any_text_round_trips_exactly_or_is_refused(field: str, text: str) -> None:
    # Two rows whose (scope, proxy) differ whatever ``text`` is.
    rows = {"scope": ["global", "global"], "proxy": ["ctr", "starts"], "weight": [0.5, 0.5]}
    meta: dict[str, Any] = {}
    if field == "scope":
        rows["scope"] = [text, "global"]
    elif field == "proxy":
        rows["scope"], rows["proxy"] = ["global", "seg"], [text, "ctr"]
    else:
        meta[field] = text
    valid = storable(text)
    with scratch_dir() as scratch:
        path = scratch / "ledger.duckdb"
        table = pd.DataFrame({k: pd.Series(v, dtype=object) for k, v in rows.items()})

        def stored_exactly(entry_id: int) -> None:
            history = weights_history(path)
            assert entry_id == 1 and len(history) == 2
            pairs = sorted(zip(history["scope"], history["proxy"], strict=True))
            assert pairs == sorted(zip(rows["scope"], rows["proxy"], strict=True))
            if field not in ("scope", "proxy"):
                assert list(history[field]) == [text, text]
            assert list(history["weight"]) == [0.5, 0.5]

        judge(
            "record_weights",
            lambda: record_weights(path, table, **meta),
            valid=valid,
            names=[field],
            check=stored_exactly,
            detail=(field, text[:200]),
        )
        if not valid:
            assert not path.exists()  # nothing written
        elif field == "scope":
            mine = sorted(q for r, q in zip(rows["scope"], rows["proxy"], strict=True) if r == text)

            def scope_rows(frame: pd.DataFrame) -> None:
                assert set(frame["scope"]) == {text}
                assert sorted(frame["proxy"]) == mine

            judge(
                "current_weights",
                lambda: current_weights(path, text),
                valid=True,
                check=scope_rows,
                detail=(field, text[:200]),
            )


@given(text=TEXT)
def test_override_names_round_trip_exactly_or_are_refused(text: str) -> None:
    with scratch_dir() as scratch:
        path = scratch / "ledger.duckdb"

        def stored(entry_id: int) -> None:
            frame = current_weights(path)
            assert entry_id == 1
            assert list(frame["proxy"]) == [text]
            assert list(frame["who"]) == [text] and list(frame["why"]) == [text]

        with warnings.catch_warnings():
            # A first entry for a scope is worth a caution, not the subject of this test.
            warnings.simplefilter("ignore", ProxyscopeWarning)
            judge(
                "override_weights",
                lambda: override_weights(path, {text: 1.0}, who=text, why=text),
                valid=storable(text),
                names=["proxy", "who"],
                check=stored,
                detail=text[:200],
            )

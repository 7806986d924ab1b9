"""The weights ledger against damaged, foreign and altered files and hostile names.

One test per class of problem found by the hostile-input sweep (issue #22):
each ledger problem must end in one of proxyscope's errors naming the ledger
path and what is wrong, and must leave the file exactly as it was.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest

from proxyscope.errors import DataError, IncompatibleFileError, ParameterError
from proxyscope.ledger import (
    connection,
    current_weights,
    override_weights,
    record_weights,
    schema,
    store,
    weights_history,
)

DAMAGED = r"is damaged: DuckDB cannot read it .*has not changed the file.*backup"


def table(weight: float = 0.4) -> pd.DataFrame:
    return pd.DataFrame(
        {"scope": ["global", "global"], "proxy": ["a", "b"], "weight": [weight, 1 - weight]}
    )


@pytest.fixture(scope="module")
def good_ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ledger of three entries, written once; tests work on copies."""
    path = tmp_path_factory.mktemp("good") / "ledger.duckdb"
    for i in range(3):
        record_weights(path, table(0.1 * (i + 1)), note=f"n{i}")
    assert not Path(f"{path}.wal").exists()  # checkpointed: the file is the whole ledger
    return path


@pytest.fixture
def ledger(good_ledger: Path, tmp_path: Path) -> Path:
    path = tmp_path / "ledger.duckdb"
    shutil.copy(good_ledger, path)
    return path


def assert_refused(call: Any, error: type[Exception], pattern: str, path: Path) -> str:
    """``call`` raises ``error`` matching ``pattern``, in one line naming ``path``."""
    with pytest.raises(error, match=pattern) as info:
        call()
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message
    return message


def notes(path: Path) -> list[str]:
    return list(weights_history(path).groupby("entry_id")["note"].first())


# ----------------------------------------------------------------------------
# Damaged files
# ----------------------------------------------------------------------------


def test_a_truncated_ledger_is_refused_as_damaged_and_left_alone(ledger: Path) -> None:
    before = ledger.read_bytes()
    with open(ledger, "r+b") as fh:
        fh.truncate(len(before) // 10)
    cut = ledger.read_bytes()
    for call in (lambda: weights_history(ledger), lambda: record_weights(ledger, table())):
        assert_refused(call, IncompatibleFileError, DAMAGED + r".*move the damaged file", ledger)
    assert ledger.read_bytes() == cut  # never repaired, never rewritten


def test_a_write_to_a_ledger_damaged_where_no_entry_lives_is_refused(ledger: Path) -> None:
    """At 90% the entries still read back, but a write needs a lost block.

    DuckDB's own error used to be hidden behind "Current transaction is aborted";
    now the write is refused as damaged and adds nothing.
    """
    size = ledger.stat().st_size
    with open(ledger, "r+b") as fh:
        fh.truncate(int(size * 0.9))
    cut = ledger.read_bytes()
    try:
        readable = notes(ledger)
    except IncompatibleFileError as exc:
        assert "is damaged" in str(exc)
        readable = None
    assert readable in (None, ["n0", "n1", "n2"])
    message = assert_refused(
        lambda: record_weights(ledger, table()), IncompatibleFileError, DAMAGED, ledger
    )
    assert "transaction is aborted" not in message
    assert ledger.read_bytes() == cut


def test_random_bytes_after_the_header_are_refused_as_damaged(ledger: Path) -> None:
    with open(ledger, "r+b") as fh:
        fh.seek(3 * 4096 + 100)  # past DuckDB's main and two database headers
        fh.write(bytes(range(256)) * 8)
    hit = ledger.read_bytes()
    for call in (
        lambda: weights_history(ledger),
        lambda: current_weights(ledger),
        lambda: record_weights(ledger, table()),
    ):
        assert_refused(call, IncompatibleFileError, r"damaged: .*\(Corrupt database file", ledger)
    assert ledger.read_bytes() == hit


def test_a_damaged_header_that_looks_like_another_format_is_still_damaged(ledger: Path) -> None:
    """A DuckDB file starts with a checksum, which may happen to read like gzip's magic."""
    with open(ledger, "r+b") as fh:
        fh.write(b"\x1f\x8b")
    assert_refused(lambda: weights_history(ledger), IncompatibleFileError, DAMAGED, ledger)


def test_a_full_disk_during_a_write_is_reported_and_writes_nothing(
    ledger: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(con: Any, entry_id: int, rows: pd.DataFrame) -> None:
        raise duckdb.IOException('Could not write file "x": No space left on device')

    monkeypatch.setattr(store, "_insert_values", disk_full)
    assert_refused(
        lambda: record_weights(ledger, table()),
        ParameterError,
        r"'path' .* no space left on device\. Nothing was written",
        ledger,
    )
    monkeypatch.undo()
    assert notes(ledger) == ["n0", "n1", "n2"]


def test_garbage_appended_after_the_last_block_changes_nothing(ledger: Path) -> None:
    with open(ledger, "ab") as fh:
        fh.write(b"\xde\xad\xbe\xef" * 1000)
    assert notes(ledger) == ["n0", "n1", "n2"]
    assert record_weights(ledger, table(), note="n3") == 4
    assert notes(ledger) == ["n0", "n1", "n2", "n3"]


# ----------------------------------------------------------------------------
# Files in other formats: refused before DuckDB (or an extension) sees them
# ----------------------------------------------------------------------------


def _sqlite(path: Path) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE ledger_meta (key TEXT, value TEXT)")
    con.commit()
    con.close()


def _parquet(path: Path) -> None:
    table().to_parquet(path)


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (_sqlite, "a SQLite database"),
        (_parquet, "a Parquet file"),
        (lambda p: p.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(500)), "an HDF5"),
        (lambda p: p.write_bytes(b"PK\x03\x04" + bytes(500)), "a ZIP archive"),
    ],
)
def test_a_file_in_another_format_is_refused_without_opening_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make: Any, kind: str
) -> None:
    path = tmp_path / "ledger.db"
    make(path)
    content = path.read_bytes()
    calls: list[Any] = []
    monkeypatch.setattr(connection.duckdb, "connect", lambda *a, **k: calls.append(a))
    pattern = rf"not a proxyscope weights ledger: it is {kind}"
    for call in (lambda: weights_history(path), lambda: record_weights(path, table())):
        assert_refused(call, IncompatibleFileError, pattern, path)
    assert calls == []  # DuckDB never opened it, so it never looked for an extension
    assert path.read_bytes() == content


def test_duckdb_may_never_install_or_load_an_extension_for_a_ledger(ledger: Path) -> None:
    for read_only in (True, False):
        with connection.connect(ledger, read_only=read_only, timeout=1) as con:
            settings = con.execute(
                "SELECT current_setting('autoinstall_known_extensions'), "
                "current_setting('autoload_known_extensions')"
            ).fetchone()
        assert settings == (False, False)


# ----------------------------------------------------------------------------
# Ledgers altered outside proxyscope: the schema is checked on open
# ----------------------------------------------------------------------------


def _altered(path: Path, sql: str) -> None:
    """Apply ``sql`` to the ledger, or ("old -> new") create it anew with ``old``
    replaced by ``new`` in its schema (ledger_entries cannot be altered in place:
    ledger_values depends on it)."""
    if " -> " not in sql:
        with duckdb.connect(str(path)) as con:
            con.execute(sql)
        return
    old, new = sql.split(" -> ")
    path.unlink()
    with duckdb.connect(str(path)) as con:
        for statement in schema.SCHEMA:
            con.execute(statement.replace(old, new))
        con.execute(
            "INSERT INTO ledger_meta VALUES ('format', ?), ('schema_version', ?)",
            [schema.LEDGER_FORMAT, str(schema.SCHEMA_VERSION)],
        )


@pytest.mark.parametrize(
    ("sql", "pattern"),
    [
        (
            "ALTER TABLE ledger_values ALTER weight TYPE VARCHAR",
            r"column ledger_values\.weight has type VARCHAR, expected DOUBLE",
        ),
        (
            "ledger_entries: ci DOUBLE -> ci FLOAT",
            r"column ledger_entries\.ci has type FLOAT, expected DOUBLE",
        ),
        ("ledger_entries: note VARCHAR, -> ", r"ledger_entries has columns \[.*\]"),
        ("ALTER TABLE ledger_values ADD COLUMN extra INTEGER", r"ledger_values has columns"),
        (
            "ALTER TABLE ledger_values ALTER weight DROP NOT NULL",
            r"ledger_values\.weight may hold missing values",
        ),
        (
            "ledger_entries: kind VARCHAR NOT NULL -> kind VARCHAR",
            r"ledger_entries\.kind may hold missing values",
        ),
        ("DROP SEQUENCE ledger_entry_id", r"sequence ledger_entry_id is missing"),
        (
            "ALTER TABLE ledger_meta RENAME TO ledger_meta_old; "
            "CREATE VIEW ledger_meta AS SELECT * FROM ledger_meta_old",
            r"ledger_meta is a view, not a table",
        ),
    ],
)
def test_an_altered_ledger_is_refused_and_left_alone(ledger: Path, sql: str, pattern: str) -> None:
    _altered(ledger, sql.removeprefix("ledger_entries: "))
    altered = ledger.read_bytes()
    for call in (
        lambda: weights_history(ledger),
        lambda: current_weights(ledger),
        lambda: record_weights(ledger, table()),
        lambda: override_weights(ledger, {"a": 0.5, "b": 0.5}, who="w", why="y"),
    ):
        assert_refused(
            call, IncompatibleFileError, r"altered outside proxyscope: .*" + pattern, ledger
        )
    assert ledger.read_bytes() == altered


@pytest.mark.parametrize(
    ("sql", "pattern"),
    [
        ("DELETE FROM ledger_values WHERE entry_id = 2 AND proxy = 'a'", r"entry 2 declares 2 "),
        ("INSERT INTO ledger_values VALUES (9, 'global', 'a', 1, NULL, NULL)", r"entries \[9\]"),
    ],
)
def test_entries_and_weight_rows_that_do_not_match_are_refused(
    ledger: Path, sql: str, pattern: str
) -> None:
    # A ledger rebuilt by hand without the foreign key (the schema check sees columns only).
    _altered(ledger, "REFERENCES ledger_entries (entry_id) -> ")
    with duckdb.connect(str(ledger)) as con:
        con.execute("INSERT INTO ledger_entries SELECT range + 1, now(), now(), 'computed', 2, "
                    "NULL, NULL, NULL, NULL, NULL, NULL, 'x' FROM range(2)")  # fmt: skip
        con.execute("INSERT INTO ledger_values SELECT e, 'global', p, 0.5, NULL, NULL "
                    "FROM (VALUES (1), (2)) AS a(e), (VALUES ('a'), ('b')) AS b(p)")  # fmt: skip
        con.execute(sql)
    for call in (lambda: weights_history(ledger), lambda: record_weights(ledger, table())):
        assert_refused(call, DataError, r"is damaged: .*" + pattern + ".*backup", ledger)


def test_the_declared_schema_is_what_duckdb_reports_for_a_new_ledger(tmp_path: Path) -> None:
    path = tmp_path / "l.duckdb"
    record_weights(path, table())
    with duckdb.connect(str(path), read_only=True) as con:
        rows = con.execute(
            "SELECT table_name, column_name, data_type, is_nullable = 'YES' "
            "FROM information_schema.columns ORDER BY table_name, ordinal_position"
        ).fetchall()
    found: dict[str, list[tuple[str, str, bool]]] = {}
    for name, column, dtype, nullable in rows:
        found.setdefault(name, []).append((column, dtype, nullable))
    assert found == {name: list(cols) for name, cols in schema.COLUMNS.items()}


# ----------------------------------------------------------------------------
# Text that cannot be stored: lone surrogates
# ----------------------------------------------------------------------------


def _objects(**columns: list[Any]) -> pd.DataFrame:
    return pd.DataFrame({k: pd.Series(v, dtype=object) for k, v in columns.items()})


@pytest.mark.parametrize(
    ("call", "error", "pattern"),
    [
        (
            lambda p: record_weights(p, _objects(scope=["g\ud800"], proxy=["a"], weight=[1.0])),
            DataError,
            r"'table' parameter's 'scope' column must hold valid Unicode text.*position 1",
        ),
        (
            lambda p: override_weights(p, {"a\udc80": 1.0}, who="w", why="y"),
            DataError,
            r"'weights' parameter's 'proxy' column must hold valid Unicode text",
        ),
        (
            lambda p: override_weights(p, {"a": 1.0}, who="w", why="y", scope="seg \udfff"),
            ParameterError,
            r"'scope' parameter must be valid Unicode text.*lone surrogate '\\udfff'",
        ),
        (
            lambda p: record_weights(p, table(), note="x" * 500 + "\ud800"),
            ParameterError,
            r"'note' parameter must be valid Unicode text.*\(501 characters\).*position 500",
        ),
        (
            lambda p: override_weights(p, {"a": 1.0}, who="\udbff", why="y"),
            ParameterError,
            r"'who' parameter",
        ),
        (
            lambda p: current_weights(p, "glob\ud800al"),
            ParameterError,
            r"'scope' parameter must be valid Unicode text",
        ),
    ],
)
def test_text_with_a_lone_surrogate_is_refused_before_writing(
    ledger: Path, call: Any, error: type[Exception], pattern: str
) -> None:
    before = ledger.read_bytes()
    with pytest.raises(error, match=pattern) as info:
        call(ledger)
    assert "\n" not in str(info.value)
    assert ledger.read_bytes() == before


def test_nul_characters_and_long_text_round_trip_exactly(tmp_path: Path) -> None:
    path = tmp_path / "l.duckdb"
    long = "ü\x00" * 200_000
    frame = pd.DataFrame(
        {"scope": ["seg\x00a", "seg\x00a"], "proxy": ["p\x00", long], "weight": [0.5, 0.5]}
    )
    record_weights(path, frame, who="\x00", why=long, note="e\u0301 \U0001f600 \u202e")
    got = weights_history(path)
    assert list(got["proxy"]) == ["p\x00", long]
    assert set(got["scope"]) == {"seg\x00a"}
    assert set(got["who"]) == {"\x00"}
    assert set(got["why"]) == {long}
    assert set(got["note"]) == {"e\u0301 \U0001f600 \u202e"}
    assert list(current_weights(path, "seg\x00a")["proxy"]) == ["p\x00", long]


# ----------------------------------------------------------------------------
# Paths that are no ledger file
# ----------------------------------------------------------------------------


def test_a_path_whose_parent_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    path = tmp_path / "afile" / "deeper" / "l.duckdb"
    assert_refused(
        lambda: record_weights(path, table()),
        ParameterError,
        r"'path' .* in a folder.*afile' exists and is not a folder",
        path,
    )
    assert (tmp_path / "afile").read_text() == "x"


@pytest.mark.parametrize("loop", [False, True])
def test_a_dangling_or_looping_symlink_is_refused(tmp_path: Path, loop: bool) -> None:
    path = tmp_path / "l.duckdb"
    os.symlink(path if loop else tmp_path / "nothere.duckdb", path)
    for call in (lambda: weights_history(path), lambda: record_weights(path, table())):
        assert_refused(call, ParameterError, r"symbolic link to .* which does not exist", path)
    assert not (tmp_path / "nothere.duckdb").exists()  # nothing created behind the link


def test_a_symlink_to_a_ledger_works(ledger: Path, tmp_path: Path) -> None:
    link = tmp_path / "link.duckdb"
    os.symlink(ledger, link)
    assert record_weights(link, table(), note="n3") == 4
    assert notes(ledger) == ["n0", "n1", "n2", "n3"]


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("l\x00.duckdb", r"contains a NUL character"),
        ("l\udc80.duckdb", r"is not valid Unicode"),
        ("s3://bucket/l.duckdb", r"is a URL or a remote database name"),
        ("md:ledger", r"is a URL or a remote database name"),
        (":memory:ledger", r"must name a ledger file on disk"),
        ("x" * 300 + ".duckdb", r"the system can open.*File name too long"),
    ],
)
def test_a_path_duckdb_would_misread_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, pattern: str
) -> None:
    monkeypatch.chdir(tmp_path)
    for call in (lambda: weights_history(text), lambda: record_weights(text, table())):
        with pytest.raises(ParameterError, match=r"'path' .*" + pattern):
            call()
    assert list(tmp_path.iterdir()) == []  # nothing created, in memory or on disk


def test_a_relative_name_with_a_colon_is_a_local_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DuckDB reads "team:..." as an extension prefix; the ledger opens it as a file."""
    monkeypatch.chdir(tmp_path)
    assert record_weights("team:ledger.duckdb", table()) == 1
    assert len(weights_history("team:ledger.duckdb")) == 2
    assert (tmp_path / "team:ledger.duckdb").is_file()


def test_a_pipe_is_refused_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    for call in (lambda: weights_history(path), lambda: record_weights(path, table())):
        assert_refused(call, ParameterError, r"not a regular file", path)

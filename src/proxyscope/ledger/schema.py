"""The weights ledger's schema: creating it, and checking a file against it.

Four tables and a sequence in one DuckDB database file (see
:mod:`proxyscope.ledger.store` for what each column holds).

The period of an entry (which period of a fit with time its weights describe,
DESIGN.md §9) is in its own table, ``ledger_periods``, which ledgers written
before periods existed do not have. Such a ledger is still schema version 1 and
reads as it always did (every entry's period missing); the first entry with a
period adds the table, in that entry's transaction. Adding a table, rather than
a column, keeps the format readable both ways: proxyscope versions that predate
periods check and read only the three tables they know.

Damaged and altered ledgers
---------------------------
Every read and write first checks that the file is a ledger of this schema:
the format and version in ``ledger_meta``, then every table's columns, types
and nullability and the sequence, so a ledger altered outside proxyscope (a
retyped or dropped column, say) is refused instead of read or written wrongly.
A file DuckDB cannot read (truncated, overwritten, a checksum mismatch) is
refused with :class:`~proxyscope.errors.IncompatibleFileError` saying it is
damaged. What that means for the history: nothing a user wrote is given up
silently. proxyscope never repairs, rewrites or replaces a damaged or altered
ledger, not even to start a new one; the file stays byte-for-byte as it was,
and the error says how to recover: restore the file from a backup copy (the
ledger is one file, plus a ``.wal`` file beside it while a write is
unfinished), or move it aside to start a new ledger at that path. A read may
still succeed when the damage is where no entry lives (DuckDB checksums every
block it reads, so what it returns is what was written); a write then either
commits in full or fails with that error and leaves no partial entry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from proxyscope._version import __version__
from proxyscope.errors import DataError, IncompatibleFileError

LEDGER_FORMAT = "proxyscope-weights-ledger"
SCHEMA_VERSION = 1

PERIODS_SQL = """CREATE TABLE ledger_periods (
        entry_id BIGINT PRIMARY KEY REFERENCES ledger_entries (entry_id),
        period VARCHAR NOT NULL
    )"""
SCHEMA = (
    "CREATE SEQUENCE ledger_entry_id START 1",
    "CREATE TABLE ledger_meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)",
    """CREATE TABLE ledger_entries (
        entry_id BIGINT PRIMARY KEY,
        created_at TIMESTAMPTZ NOT NULL,
        entry_time TIMESTAMPTZ NOT NULL,
        kind VARCHAR NOT NULL CHECK (kind IN ('computed', 'override')),
        n_values INTEGER NOT NULL CHECK (n_values > 0),
        ci DOUBLE,
        data_fingerprint VARCHAR,
        config_hash VARCHAR,
        who VARCHAR,
        why VARCHAR,
        note VARCHAR,
        proxyscope_version VARCHAR NOT NULL
    )""",
    """CREATE TABLE ledger_values (
        entry_id BIGINT NOT NULL REFERENCES ledger_entries (entry_id),
        scope VARCHAR NOT NULL,
        proxy VARCHAR NOT NULL,
        weight DOUBLE NOT NULL,
        weight_lo DOUBLE,
        weight_hi DOUBLE,
        PRIMARY KEY (entry_id, scope, proxy)
    )""",
    PERIODS_SQL,
)
#: Tables every ledger has.
TABLES = frozenset({"ledger_meta", "ledger_entries", "ledger_values"})
#: The table of the entries' periods: in every new ledger; an older one gains it
#: with its first entry that has a period.
PERIODS = "ledger_periods"
SEQUENCE = "ledger_entry_id"

_STAMP = "TIMESTAMP WITH TIME ZONE"
# Each table's columns as DuckDB's information_schema reports them for SCHEMA:
# (name, type, nullable), in order. A ledger whose tables differ is refused.
COLUMNS: dict[str, tuple[tuple[str, str, bool], ...]] = {
    "ledger_meta": (("key", "VARCHAR", False), ("value", "VARCHAR", False)),
    "ledger_entries": (
        ("entry_id", "BIGINT", False),
        ("created_at", _STAMP, False),
        ("entry_time", _STAMP, False),
        ("kind", "VARCHAR", False),
        ("n_values", "INTEGER", False),
        ("ci", "DOUBLE", True),
        ("data_fingerprint", "VARCHAR", True),
        ("config_hash", "VARCHAR", True),
        ("who", "VARCHAR", True),
        ("why", "VARCHAR", True),
        ("note", "VARCHAR", True),
        ("proxyscope_version", "VARCHAR", False),
    ),
    "ledger_values": (
        ("entry_id", "BIGINT", False),
        ("scope", "VARCHAR", False),
        ("proxy", "VARCHAR", False),
        ("weight", "DOUBLE", False),
        ("weight_lo", "DOUBLE", True),
        ("weight_hi", "DOUBLE", True),
    ),
    PERIODS: (("entry_id", "BIGINT", False), ("period", "VARCHAR", False)),
}


def ledger_state(con: Any, target: Path) -> str:
    """``"ledger"`` for a valid ledger, ``"empty"`` for a database with no tables."""
    kinds: dict[str, str] = dict(
        con.execute(
            "SELECT table_name, table_type FROM information_schema.tables "
            "WHERE table_schema = 'main' AND table_catalog = current_database()"
        ).fetchall()
    )
    tables = set(kinds)
    if not tables:
        return "empty"
    if "ledger_meta" not in tables:
        shown = ", ".join(sorted(tables)[:5])
        raise IncompatibleFileError(
            f"The file {str(target)!r} is a DuckDB database but not a proxyscope weights ledger "
            f"(it has no ledger_meta table; its tables: {shown})."
        )
    meta = dict(con.execute("SELECT key, value FROM ledger_meta").fetchall())
    if meta.get("format") != LEDGER_FORMAT:
        raise IncompatibleFileError(
            f"The file {str(target)!r} is not a proxyscope weights ledger: its format is "
            f"{meta.get('format')!r}, expected {LEDGER_FORMAT!r}."
        )
    version = meta.get("schema_version")
    if version != str(SCHEMA_VERSION):
        newer = version is not None and version.isdigit() and int(version) > SCHEMA_VERSION
        hint = " Upgrade proxyscope to read it." if newer else ""
        raise IncompatibleFileError(
            f"The weights ledger {str(target)!r} has schema version {version!r}; proxyscope "
            f"{__version__} reads schema version {SCHEMA_VERSION} only.{hint}"
        )
    if not tables >= TABLES:
        raise IncompatibleFileError(
            f"The weights ledger {str(target)!r} is damaged: tables "
            f"{sorted(TABLES - tables)} are missing."
        )
    _check_schema(con, target, kinds)
    return "ledger"


def _check_schema(con: Any, target: Path, kinds: dict[str, str]) -> None:
    """The ledger's tables and sequence are exactly those proxyscope created.

    ``kinds``: table name to its ``information_schema`` table type.
    """
    found: dict[str, list[tuple[str, str, bool]]] = {name: [] for name in COLUMNS}
    for table, column, dtype, nullable in con.execute(
        "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns "
        "WHERE table_schema = 'main' AND table_catalog = current_database() "
        "ORDER BY table_name, ordinal_position"
    ).fetchall():
        if table in found:
            found[table].append((column, dtype, nullable == "YES"))
    present = [t for t in sorted(COLUMNS) if t in kinds or t != PERIODS]
    problems = [
        f"{table} is a {kinds[table].lower()}, not a table"
        for table in present
        if kinds.get(table) != "BASE TABLE"
    ]
    for table in present:
        problems += _column_problems(table, COLUMNS[table], found[table])
    (sequences,) = con.execute(
        "SELECT count(*) FROM duckdb_sequences() WHERE sequence_name = ? "
        "AND schema_name = 'main' AND database_name = current_database()",
        [SEQUENCE],
    ).fetchone()
    if sequences != 1:
        problems.append(f"the sequence {SEQUENCE} is missing")
    if problems:
        shown = "; ".join(problems[:4]) + ("; ..." if len(problems) > 4 else "")
        raise IncompatibleFileError(
            f"The weights ledger {str(target)!r} has been altered outside proxyscope: {shown}. "
            "proxyscope reads and writes only ledgers with the schema it created and has not "
            "changed the file; restore it from a backup copy."
        )


def _column_problems(
    table: str, expected: tuple[tuple[str, str, bool], ...], found: list[tuple[str, str, bool]]
) -> list[str]:
    """How one table's columns differ from what the ledger's schema declares."""
    names = [c[0] for c in found]
    if names != [c[0] for c in expected]:
        return [f"{table} has columns {names}, expected {[c[0] for c in expected]}"]
    out = []
    for (name, dtype, nullable), (_, got_type, got_nullable) in zip(expected, found, strict=True):
        if got_type != dtype:
            out.append(f"column {table}.{name} has type {got_type}, expected {dtype}")
        elif got_nullable != nullable:
            allowed = "may hold" if got_nullable else "may not hold"
            out.append(f"column {table}.{name} {allowed} missing values, unlike the schema")
    return out


def has_periods(con: Any) -> bool:
    """Whether the ledger has the table of the entries' periods (see the module's notes)."""
    (found,) = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'main' "
        "AND table_catalog = current_database() AND table_name = ?",
        [PERIODS],
    ).fetchone()
    return bool(found)


def add_periods(con: Any) -> None:
    """Add the table of the entries' periods to a ledger written before it existed
    (inside the caller's transaction)."""
    con.execute(PERIODS_SQL)


def check_intact(con: Any, target: Path) -> None:
    """Every stored value reads back, and entries and weight rows match one to one.

    Each entry must have exactly the weight rows it declares, every weight row an
    entry, and every period an entry (an altered file may lack the constraints that
    ensure it).

    Reading every column of every table makes DuckDB verify the checksum of
    every data block, so damage anywhere in the history is found now, not by a
    later read.
    """
    periods = has_periods(con)
    for table in sorted(TABLES | ({PERIODS} if periods else set())):
        con.execute(f"SELECT count(*), bit_xor(hash(COLUMNS(*))) FROM {table}").fetchall()
    broken = con.execute(
        "SELECT e.entry_id, e.n_values, count(v.entry_id) FROM ledger_entries AS e "
        "LEFT JOIN ledger_values AS v USING (entry_id) GROUP BY e.entry_id, e.n_values "
        "HAVING count(v.entry_id) <> e.n_values ORDER BY 1 LIMIT 1"
    ).fetchall()
    orphans = con.execute(
        "SELECT DISTINCT entry_id FROM ledger_values ANTI JOIN ledger_entries USING (entry_id) "
        "ORDER BY 1 LIMIT 3"
    ).fetchall()
    if orphans:
        raise DataError(
            f"The weights ledger {str(target)!r} is damaged: it has weight rows of entries "
            f"{[r[0] for r in orphans]} that do not exist. proxyscope has not changed the file; "
            "restore it from a backup copy."
        )
    lost = (
        con.execute(
            f"SELECT DISTINCT entry_id FROM {PERIODS} ANTI JOIN ledger_entries USING (entry_id) "
            "ORDER BY 1 LIMIT 3"
        ).fetchall()
        if periods
        else []
    )
    if lost:
        raise DataError(
            f"The weights ledger {str(target)!r} is damaged: it has periods of entries "
            f"{[r[0] for r in lost]} that do not exist. proxyscope has not changed the file; "
            "restore it from a backup copy."
        )
    if broken:
        entry_id, declared, found = broken[0]
        raise DataError(
            f"The weights ledger {str(target)!r} is damaged: entry {entry_id} declares "
            f"{declared} weight rows but has {found}. proxyscope has not changed the file; "
            "restore it from a backup copy."
        )


def create_schema(con: Any) -> None:
    """Create the ledger's tables, sequence and metadata (inside the caller's transaction)."""
    for statement in SCHEMA:
        con.execute(statement)
    con.executemany(
        "INSERT INTO ledger_meta VALUES (?, ?)",
        [
            ["format", LEDGER_FORMAT],
            ["schema_version", str(SCHEMA_VERSION)],
            ["created_with", f"proxyscope {__version__}"],
        ],
    )

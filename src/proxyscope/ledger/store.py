"""The weights ledger's DuckDB file: schema, appends and reads.

Storage
-------
Three tables and a sequence in one DuckDB database file::

    ledger_meta    (key VARCHAR PRIMARY KEY, value VARCHAR)
                   -- format = 'proxyscope-weights-ledger', schema_version = '1', created_with
    ledger_entries (entry_id BIGINT PRIMARY KEY   -- from the sequence ledger_entry_id
                    created_at TIMESTAMPTZ        -- when the ledger wrote the entry (UTC)
                    entry_time TIMESTAMPTZ        -- the entry's own timestamp (UTC)
                    kind VARCHAR                  -- 'computed' or 'override'
                    n_values INTEGER              -- how many value rows the entry has
                    ci DOUBLE, data_fingerprint, config_hash, who, why, note,
                    proxyscope_version VARCHAR)
    ledger_values  (entry_id BIGINT REFERENCES ledger_entries, scope VARCHAR,
                    proxy VARCHAR, weight DOUBLE, weight_lo DOUBLE, weight_hi DOUBLE,
                    PRIMARY KEY (entry_id, scope, proxy))

Safety
------
An entry and all its values are inserted in one transaction, so a reader never
sees an entry without its values, and a writer killed mid-write leaves every
earlier entry intact (DuckDB writes a transaction to its write-ahead log only
when it commits and replays the log on the next open). Opening the file,
waiting while another process holds it, is :mod:`proxyscope.ledger.connection`.
"""

from __future__ import annotations

import warnings
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from proxyscope._version import __version__
from proxyscope.errors import (
    DataError,
    IncompatibleFileError,
    ProxyscopeWarning,
    suggestion,
)
from proxyscope.ledger.connection import connect

LEDGER_FORMAT = "proxyscope-weights-ledger"
SCHEMA_VERSION = 1
DEFAULT_TIMEOUT = 60.0

HISTORY_COLUMNS = (
    "entry_id",
    "timestamp",
    "kind",
    "scope",
    "proxy",
    "weight",
    "weight_lo",
    "weight_hi",
    "ci",
    "data_fingerprint",
    "config_hash",
    "who",
    "why",
    "note",
    "proxyscope_version",
)
_FLOAT_COLUMNS = ("weight", "weight_lo", "weight_hi", "ci")

_SCHEMA = (
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
)
_TABLES = frozenset({"ledger_meta", "ledger_entries", "ledger_values"})

HISTORY_SQL = """
    SELECT e.entry_id, epoch_us(e.entry_time), e.kind, v.scope, v.proxy,
           v.weight, v.weight_lo, v.weight_hi, e.ci, e.data_fingerprint,
           e.config_hash, e.who, e.why, e.note, e.proxyscope_version
    FROM ledger_values AS v JOIN ledger_entries AS e USING (entry_id)
"""


def _ledger_state(con: Any, target: Path) -> str:
    """``"ledger"`` for a valid ledger, ``"empty"`` for a database with no tables."""
    tables = {
        row[0]
        for row in con.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'main' AND table_catalog = current_database()"
        ).fetchall()
    }
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
    if not tables >= _TABLES:
        raise IncompatibleFileError(
            f"The weights ledger {str(target)!r} is damaged: tables "
            f"{sorted(_TABLES - tables)} are missing."
        )
    return "ledger"


def _create_schema(con: Any) -> None:
    for statement in _SCHEMA:
        con.execute(statement)
    con.executemany(
        "INSERT INTO ledger_meta VALUES (?, ?)",
        [
            ["format", LEDGER_FORMAT],
            ["schema_version", str(SCHEMA_VERSION)],
            ["created_with", f"proxyscope {__version__}"],
        ],
    )


def _insert_values(con: Any, entry_id: int, rows: pd.DataFrame) -> None:
    """Insert an entry's value rows (inside the caller's transaction)."""
    frame = rows.assign(entry_id=entry_id)
    con.register("_proxyscope_ledger_rows", frame)
    try:
        con.execute(
            "INSERT INTO ledger_values (entry_id, scope, proxy, weight, weight_lo, weight_hi) "
            "SELECT entry_id, scope, proxy, weight, weight_lo, weight_hi "
            "FROM _proxyscope_ledger_rows"
        )
    finally:
        con.unregister("_proxyscope_ledger_rows")


def _previous_proxies(con: Any) -> dict[str, set[str]]:
    """The proxies of each scope's latest entry."""
    found = con.execute(
        "SELECT scope, proxy FROM ledger_values AS v WHERE entry_id = "
        "(SELECT max(entry_id) FROM ledger_values AS w WHERE w.scope = v.scope)"
    ).fetchall()
    out: dict[str, set[str]] = {}
    for scope, proxy in found:
        out.setdefault(scope, set()).add(proxy)
    return out


def _override_cautions(rows: pd.DataFrame, before: dict[str, set[str]]) -> list[str]:
    """Why an override deserves a second look: an unknown scope or a changed proxy set."""
    notes = []
    for key, group in rows.groupby("scope", sort=True):
        scope, given = str(key), set(group["proxy"])
        if scope not in before:
            notes.append(
                f"override_weights: scope {scope!r} had no earlier entry in the ledger; "
                f"check the label.{suggestion(scope, sorted(before))}"
            )
        elif given != before[scope]:
            extra, missing = sorted(given - before[scope]), sorted(before[scope] - given)
            notes.append(
                f"override_weights: the override of scope {scope!r} names different proxies "
                f"than its previous entry (new: {extra}; left out: {missing})."
            )
    return notes


def append_entry(
    target: Path,
    rows: pd.DataFrame,
    meta: dict[str, Any],
    entry_time: datetime | None,
    timeout: float,
) -> int:
    cautions: list[str] = []
    with connect(target, read_only=False, timeout=timeout) as con:
        con.execute("BEGIN TRANSACTION")
        try:
            fresh = _ledger_state(con, target) == "empty"
            if fresh:
                _create_schema(con)
            if meta["kind"] == "override":
                before = {} if fresh else _previous_proxies(con)
                cautions = _override_cautions(rows, before)
            now = datetime.now(UTC)
            entry_id = int(
                con.execute(
                    "INSERT INTO ledger_entries VALUES "
                    "(nextval('ledger_entry_id'), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "RETURNING entry_id",
                    [
                        now,
                        entry_time if entry_time is not None else now,
                        meta["kind"],
                        len(rows),
                        meta["ci"],
                        meta["data_fingerprint"],
                        meta["config_hash"],
                        meta["who"],
                        meta["why"],
                        meta["note"],
                        __version__,
                    ],
                ).fetchone()[0]
            )
            _insert_values(con, entry_id, rows)
            con.execute("COMMIT")
        except BaseException:
            with suppress(duckdb.Error):  # the connection's close rolls back anyway
                con.execute("ROLLBACK")
            raise
    for text in cautions:  # after the commit, so warnings-as-errors cannot undo the write
        warnings.warn(text, ProxyscopeWarning, stacklevel=3)
    return entry_id


def read_entries(
    target: Path, sql: str, params: list[Any], timeout: float, *, want_scopes: bool = False
) -> Any:
    with connect(target, read_only=True, timeout=timeout) as con:
        con.execute("BEGIN TRANSACTION")
        try:
            if _ledger_state(con, target) == "empty":
                records: list[tuple[Any, ...]] = []
                scopes: list[str] = []
            else:
                _check_complete(con, target)
                records = con.execute(sql, params).fetchall()
                scopes = (
                    [
                        r[0]
                        for r in con.execute(
                            "SELECT DISTINCT scope FROM ledger_values ORDER BY 1"
                        ).fetchall()
                    ]
                    if want_scopes
                    else []
                )
        finally:
            con.execute("ROLLBACK")
    frame = _history_frame(records)
    return (frame, scopes) if want_scopes else frame


def _check_complete(con: Any, target: Path) -> None:
    """Every entry has exactly the value rows it declares (transactions guarantee it)."""
    broken = con.execute(
        "SELECT e.entry_id, e.n_values, count(v.entry_id) FROM ledger_entries AS e "
        "LEFT JOIN ledger_values AS v USING (entry_id) GROUP BY e.entry_id, e.n_values "
        "HAVING count(v.entry_id) <> e.n_values ORDER BY 1 LIMIT 1"
    ).fetchall()
    if broken:
        entry_id, declared, found = broken[0]
        raise DataError(
            f"The weights ledger {str(target)!r} is damaged: entry {entry_id} declares "
            f"{declared} weight rows but has {found}."
        )


def _history_frame(records: list[tuple[Any, ...]]) -> pd.DataFrame:
    columns = list(zip(*records, strict=True)) if records else [()] * len(HISTORY_COLUMNS)
    data: dict[str, Any] = {}
    for name, values in zip(HISTORY_COLUMNS, columns, strict=True):
        if name == "entry_id":
            data[name] = np.asarray(values, dtype=np.int64)
        elif name == "timestamp":
            data[name] = pd.to_datetime(
                np.asarray(values, dtype=np.int64), unit="us", utc=True
            ).as_unit("us")
        elif name in _FLOAT_COLUMNS:
            data[name] = np.asarray([np.nan if v is None else v for v in values], dtype=float)
        else:
            data[name] = pd.Series(list(values), dtype=_STR_DTYPE)
    return pd.DataFrame(data, columns=list(HISTORY_COLUMNS))


# pandas >= 3 has a dedicated string dtype; older pandas keeps strings as object.
_STR_DTYPE: Any = "str" if int(pd.__version__.split(".")[0]) >= 3 else object

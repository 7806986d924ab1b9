"""The weights ledger's DuckDB file: schema, appends and reads.

Storage
-------
Four tables and a sequence in one DuckDB database file::

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
    ledger_periods (entry_id BIGINT PRIMARY KEY REFERENCES ledger_entries,
                    period VARCHAR)               -- the period of a fit with time the
                                                  -- entry's weights describe; entries
                                                  -- without one have no row, and
                                                  -- ledgers older than periods no table

Safety
------
An entry and all its values are inserted in one transaction, so a reader never
sees an entry without its values, and a writer killed mid-write leaves every
earlier entry intact (DuckDB writes a transaction to its write-ahead log only
when it commits and replays the log on the next open). Opening the file,
waiting while another process holds it, is :mod:`proxyscope.ledger.connection`;
checking that a file is a ledger of this schema (and what a damaged ledger
means for its history) is :mod:`proxyscope.ledger.schema`.
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
from proxyscope.errors import ProxyscopeWarning, suggestion
from proxyscope.ledger.connection import connect
from proxyscope.ledger.schema import (
    PERIODS,
    add_periods,
    check_intact,
    create_schema,
    has_periods,
    ledger_state,
)

DEFAULT_TIMEOUT = 60.0

HISTORY_COLUMNS = (
    "entry_id",
    "timestamp",
    "kind",
    "period",
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


def history_sql(periods: bool) -> str:
    """The query of :data:`HISTORY_COLUMNS` (``e``: entries, ``v``: values), to which a
    caller adds its WHERE and ORDER BY; ``periods``: the ledger has the periods table
    (a ledger older than it reads every period as missing)."""
    period, join = (
        ("p.period", f"LEFT JOIN {PERIODS} AS p ON p.entry_id = e.entry_id")
        if periods
        else ("CAST(NULL AS VARCHAR)", "")
    )
    return f"""
    SELECT e.entry_id, epoch_us(e.entry_time), e.kind, {period}, v.scope, v.proxy,
           v.weight, v.weight_lo, v.weight_hi, e.ci, e.data_fingerprint,
           e.config_hash, e.who, e.why, e.note, e.proxyscope_version
    FROM ledger_values AS v JOIN ledger_entries AS e ON e.entry_id = v.entry_id {join}
"""


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
        # After a failed insert the transaction is aborted and unregistering fails
        # too; that must not hide the error that explains why.
        with suppress(duckdb.Error):
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
            fresh = ledger_state(con, target) == "empty"
            if fresh:
                create_schema(con)
            else:
                # Never append to a ledger whose history cannot be read back: the
                # entry would be lost again when the user restores a backup.
                check_intact(con, target)
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
            if meta["period"] is not None:
                if not has_periods(con):  # a ledger written before periods existed
                    add_periods(con)
                con.execute(f"INSERT INTO {PERIODS} VALUES (?, ?)", [entry_id, meta["period"]])
            con.execute("COMMIT")
        except BaseException:
            with suppress(duckdb.Error):  # the connection's close rolls back anyway
                con.execute("ROLLBACK")
            raise
    for text in cautions:  # after the commit, so warnings-as-errors cannot undo the write
        warnings.warn(text, ProxyscopeWarning, stacklevel=3)
    return entry_id


def read_entries(
    target: Path, clauses: str, params: list[Any], timeout: float, *, want_scopes: bool = False
) -> Any:
    """The history's rows that ``clauses`` (WHERE and ORDER BY on :func:`history_sql`)
    select, as a frame of :data:`HISTORY_COLUMNS`; with ``want_scopes`` also every
    scope in the ledger."""
    with connect(target, read_only=True, timeout=timeout) as con:
        con.execute("BEGIN TRANSACTION")
        try:
            if ledger_state(con, target) == "empty":
                records: list[tuple[Any, ...]] = []
                scopes: list[str] = []
            else:
                check_intact(con, target)
                sql = f"{history_sql(has_periods(con))} {clauses}"
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
            with suppress(duckdb.Error):  # a failed read must report its own error
                con.execute("ROLLBACK")
    frame = _history_frame(records)
    return (frame, scopes) if want_scopes else frame


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

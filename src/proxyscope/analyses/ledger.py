"""The weights ledger: an append-only history of adaptive weights in a DuckDB file.

Every computation of adaptive weights (:func:`record_weights`, kind
``"computed"``) and every manual override (:func:`override_weights`, kind
``"override"``) becomes a new *entry*; nothing is ever updated or deleted, so
the file is an audit trail of which weights were in force when, who changed
them and why. :func:`weights_history` reads the whole trail back and
:func:`current_weights` the entry in force for one scope.

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
when it commits and replays the log on the next open). DuckDB lets one process
at a time hold a database file for writing, so each call opens the file only
for the duration of one read or write and, while another process holds it,
retries with jittered exponential backoff up to ``timeout`` seconds before
raising :class:`LedgerBusyError`.
"""

from __future__ import annotations

import math
import os
import random
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from numbers import Real
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from proxyscope._version import __version__
from proxyscope.errors import (
    ColumnError,
    DataError,
    DataTypeError,
    IncompatibleFileError,
    ParameterError,
    ProxyscopeError,
    ProxyscopeWarning,
    check_one_of,
    suggestion,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "HISTORY_COLUMNS",
    "KINDS",
    "LEDGER_FORMAT",
    "SCHEMA_VERSION",
    "LedgerBusyError",
    "current_weights",
    "override_weights",
    "record_weights",
    "weights_history",
]

LEDGER_FORMAT = "proxyscope-weights-ledger"
SCHEMA_VERSION = 1
KINDS = ("computed", "override")
DEFAULT_TIMEOUT = 60.0
SUM_TOLERANCE = 1e-6

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

_HISTORY_SQL = """
    SELECT e.entry_id, epoch_us(e.entry_time), e.kind, v.scope, v.proxy,
           v.weight, v.weight_lo, v.weight_hi, e.ci, e.data_fingerprint,
           e.config_hash, e.who, e.why, e.note, e.proxyscope_version
    FROM ledger_values AS v JOIN ledger_entries AS e USING (entry_id)
"""

# A fresh file is empty for an instant while the process that creates it writes
# its header; another process that opens it then sees "not a valid database",
# and by the time it looks at the file the header may be there. So that error
# is retried for this long while the file is empty or starts like a DuckDB
# file; any other file is refused at once.
_EMPTY_FILE_GRACE = 2.0
_DUCKDB_MAGIC = (8, b"DUCK")  # offset and bytes of the magic in a DuckDB file's header
_FIRST_DELAY = 0.005
_MAX_DELAY = 0.25

# DuckDB refuses two connections with different settings (read-only vs
# read-write) to one file inside a process; serialise this module's own access.
_PROCESS_LOCK = threading.Lock()


class LedgerBusyError(ProxyscopeError, TimeoutError):
    """The ledger file is held by another connection.

    Either another process held it for longer than the timeout, or this process
    has it open with other settings (read-only, say).
    """


# ----------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------


def record_weights(
    path: str | os.PathLike[str],
    table: pd.DataFrame,
    *,
    kind: str = "computed",
    data_fingerprint: str | None = None,
    config_hash: str | None = None,
    ci: float | None = None,
    who: str | None = None,
    why: str | None = None,
    note: str | None = None,
    timestamp: datetime | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> int:
    """Append one entry of weights to the ledger at ``path``.

    The entry and all its rows are written in one transaction: either the whole
    entry is in the ledger afterwards or none of it is. The file and its tables
    are created on first use.

    Parameters
    ----------
    path : str or os.PathLike
        The ledger file (a DuckDB database). Missing parent folders are created.
    table : pandas.DataFrame
        One row per (scope, proxy) with columns ``scope`` ("global" or a
        segment label such as "IN / Mobile / New"), ``proxy`` and ``weight``
        (finite, in [0, 1]); optional ``weight_lo`` and ``weight_hi`` (the
        interval; NaN when there is none). Other columns are ignored and the
        frame is not modified.
    kind : {"computed", "override"}, default "computed"
        What produced the weights. Overrides need ``who`` and ``why`` and
        weights summing to 1 in each scope; prefer :func:`override_weights`.
    data_fingerprint, config_hash : str, optional
        Identify the data and the model configuration behind the weights.
    ci : float, optional
        Probability mass of the interval ``[weight_lo, weight_hi]``, in (0, 1).
    who, why, note : str, optional
        Who recorded the entry, why, and any free text.
    timestamp : datetime, optional
        The entry's time; a naive datetime is read as UTC. Defaults to the
        time of the write, which the ledger also keeps separately.
    timeout : float, default 60
        Seconds to keep retrying while another process holds the file.

    Returns
    -------
    int
        The new entry's ``entry_id``; ids increase with every entry.

    Raises
    ------
    ColumnError, DataError, DataTypeError, ParameterError
        For invalid inputs; nothing is written.
    IncompatibleFileError
        If ``path`` is not a proxyscope ledger or has an unknown schema version.
    LedgerBusyError
        If another process held the file for longer than ``timeout``.
    """
    check_one_of(kind, KINDS, param="kind", owner="record_weights")
    rows = _checked_table(table, param="table")
    meta = _checked_meta(
        kind=kind,
        data_fingerprint=data_fingerprint,
        config_hash=config_hash,
        ci=ci,
        who=who,
        why=why,
        note=note,
    )
    if kind == "override":
        _check_sums(rows, param="table")
    entry_time = _checked_timestamp(timestamp)
    timeout = _checked_timeout(timeout)
    target = _checked_path(path, must_exist=False)
    return _append(target, rows, meta, entry_time, timeout)


def override_weights(
    path: str | os.PathLike[str],
    weights: Mapping[str, float] | pd.Series | pd.DataFrame,
    *,
    who: str,
    why: str,
    scope: str = "global",
    data_fingerprint: str | None = None,
    config_hash: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> int:
    """Record a manual override of the weights as a new ledger entry.

    History is never rewritten: the override is appended as an entry of kind
    ``"override"`` and becomes the :func:`current_weights` of its scopes until
    a later entry replaces it. A :class:`~proxyscope.errors.ProxyscopeWarning`
    says when the overridden proxies differ from those of the scope's previous
    entry, or when the scope has no earlier entry (often a misspelled label).

    Parameters
    ----------
    path : str or os.PathLike
        The ledger file; created on first use.
    weights : Mapping[str, float], pandas.Series or pandas.DataFrame
        Proxy name to weight, or a frame with columns ``proxy``, ``weight`` and
        optionally ``scope`` (to override several scopes in one entry). Weights
        must be finite, >= 0 and sum to 1 (within 1e-6) in each scope.
    who : str
        Who made the override (non-empty).
    why : str
        Why the computed weights were overridden (non-empty).
    scope : str, default "global"
        The scope of a mapping (or of a frame without a ``scope`` column).
    data_fingerprint, config_hash : str, optional
        The data and model configuration the override refers to.
    timeout : float, default 60
        Seconds to keep retrying while another process holds the file.

    Returns
    -------
    int
        The override's ``entry_id``.
    """
    meta = _checked_meta(
        kind="override",
        data_fingerprint=data_fingerprint,
        config_hash=config_hash,
        ci=None,
        who=who,
        why=why,
        note=None,
    )
    _check_text(scope, param="scope", required=True)
    rows = _checked_table(_override_frame(weights, scope), param="weights")
    _check_sums(rows, param="weights")
    timeout = _checked_timeout(timeout)
    target = _checked_path(path, must_exist=False)
    return _append(target, rows, meta, None, timeout)


def weights_history(
    path: str | os.PathLike[str],
    *,
    include_overrides: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
) -> pd.DataFrame:
    """Read the whole weights history back, one row per (entry, scope, proxy).

    Parameters
    ----------
    path : str or os.PathLike
        An existing ledger file.
    include_overrides : bool, default True
        Keep manual overrides; False keeps computed entries only.
    timeout : float, default 60
        Seconds to keep retrying while another process writes to the file.

    Returns
    -------
    pandas.DataFrame
        Columns ``entry_id``, ``timestamp`` (UTC), ``kind``, ``scope``,
        ``proxy``, ``weight``, ``weight_lo``, ``weight_hi``, ``ci``,
        ``data_fingerprint``, ``config_hash``, ``who``, ``why``, ``note`` and
        ``proxyscope_version``, ordered by entry_id, scope, proxy. Missing
        values are NaN.

    Raises
    ------
    ParameterError
        If there is no file at ``path``.
    IncompatibleFileError
        If the file is not a proxyscope ledger or has an unknown schema version.
    LedgerBusyError
        If a writer held the file for longer than ``timeout``.
    """
    if not isinstance(include_overrides, bool | np.bool_):
        raise DataTypeError(
            "The 'include_overrides' parameter of weights_history must be a bool. "
            f"Got {include_overrides!r} instead."
        )
    timeout = _checked_timeout(timeout)
    target = _checked_path(path, must_exist=True)
    where = "" if include_overrides else "WHERE e.kind = 'computed'"
    return _read(target, f"{_HISTORY_SQL} {where} ORDER BY 1, 4, 5", [], timeout)


def current_weights(
    path: str | os.PathLike[str],
    scope: str = "global",
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> pd.DataFrame:
    """The weights in force for one scope: its latest entry, computed or override.

    "Latest" follows the order of writing (``entry_id``), not the entries'
    timestamps, which a caller may set.

    Parameters
    ----------
    path : str or os.PathLike
        An existing ledger file.
    scope : str, default "global"
        "global" or a segment label.
    timeout : float, default 60
        Seconds to keep retrying while another process writes to the file.

    Returns
    -------
    pandas.DataFrame
        The rows of that entry for ``scope``, with the columns of
        :func:`weights_history`, ordered by proxy.

    Raises
    ------
    ParameterError
        If there is no file at ``path`` or no entry for ``scope``.
    """
    _check_text(scope, param="scope", required=True)
    timeout = _checked_timeout(timeout)
    target = _checked_path(path, must_exist=True)
    sql = (
        f"{_HISTORY_SQL} WHERE v.scope = ? AND v.entry_id = "
        "(SELECT max(entry_id) FROM ledger_values WHERE scope = ?) ORDER BY 5"
    )
    found = _read(target, sql, [scope, scope], timeout, want_scopes=True)
    frame, scopes = found
    if frame.empty:
        known = ", ".join(repr(s) for s in scopes) if scopes else "none: the ledger is empty"
        raise ParameterError(
            f"The 'scope' parameter of current_weights must name a scope in the ledger "
            f"{str(target)!r} (scopes: {known}). Got {scope!r} instead."
            f"{suggestion(scope, scopes)}"
        )
    return frame


# ----------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------


def _checked_path(path: Any, *, must_exist: bool) -> Path:
    if not isinstance(path, str | os.PathLike):
        raise DataTypeError(
            f"The 'path' parameter must be a file path (str or os.PathLike). "
            f"Got {type(path).__name__} instead."
        )
    text = os.fspath(path)
    if not isinstance(text, str) or not text.strip() or text.strip() == ":memory:":
        raise ParameterError(
            f"The 'path' parameter must name a ledger file on disk. Got {text!r} instead."
        )
    target = Path(text).expanduser()
    if target.is_dir():
        raise ParameterError(
            f"The 'path' parameter must name a ledger file. Got {text!r}, which is a directory."
        )
    if must_exist and not target.exists():
        raise ParameterError(
            f"The 'path' parameter must name an existing weights ledger. "
            f"Got {text!r}, which does not exist."
        )
    return target


def _checked_timeout(timeout: Any) -> float:
    ok = isinstance(timeout, Real) and not isinstance(timeout, bool)
    if not ok or not math.isfinite(float(timeout)) or float(timeout) < 0:
        raise ParameterError(
            f"The 'timeout' parameter must be a finite number of seconds >= 0. "
            f"Got {timeout!r} instead."
        )
    return float(timeout)


def _check_text(value: Any, *, param: str, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        need = "a non-empty string" if required else "a non-empty string or None"
        raise ParameterError(f"The {param!r} parameter must be {need}. Got {value!r} instead.")
    return value


def _checked_meta(
    *,
    kind: str,
    data_fingerprint: Any,
    config_hash: Any,
    ci: Any,
    who: Any,
    why: Any,
    note: Any,
) -> dict[str, Any]:
    override = kind == "override"
    if ci is not None:
        bad = not isinstance(ci, Real) or isinstance(ci, bool)
        if bad or not 0.0 < float(ci) < 1.0:
            raise ParameterError(
                f"The 'ci' parameter must be a probability in (0, 1) or None. Got {ci!r} instead."
            )
        ci = float(ci)
    return {
        "kind": kind,
        "ci": ci,
        "data_fingerprint": _check_text(data_fingerprint, param="data_fingerprint", required=False),
        "config_hash": _check_text(config_hash, param="config_hash", required=False),
        "who": _check_text(who, param="who", required=override),
        "why": _check_text(why, param="why", required=override),
        "note": _check_text(note, param="note", required=False),
    }


def _checked_timestamp(timestamp: Any) -> datetime | None:
    if timestamp is None:
        return None
    if not isinstance(timestamp, datetime) or pd.isna(timestamp):
        raise DataTypeError(
            f"The 'timestamp' parameter must be a datetime or None. Got {timestamp!r} instead."
        )
    if isinstance(timestamp, pd.Timestamp):
        timestamp = timestamp.to_pydatetime(warn=False)
    if timestamp.tzinfo is None or timestamp.utcoffset() is None:
        return timestamp.replace(tzinfo=UTC)
    return timestamp.astimezone(UTC)


def _override_frame(weights: Any, scope: str) -> pd.DataFrame:
    if isinstance(weights, pd.DataFrame):
        if "scope" in weights.columns:
            if scope != "global":
                raise ParameterError(
                    "The 'scope' parameter of override_weights must be left at 'global' when "
                    f"the 'weights' frame has a 'scope' column. Got {scope!r} instead."
                )
            return weights
        missing = [c for c in ("proxy", "weight") if c not in weights.columns]
        if missing:
            have = [str(c) for c in weights.columns]
            raise ColumnError(
                f"The 'weights' frame of override_weights must have columns proxy, weight "
                f"(and optionally scope); it is missing {', '.join(map(repr, missing))} "
                f"and has {have}.{''.join(suggestion(m, have) for m in missing)}"
            )
        return pd.DataFrame(
            {"scope": scope, "proxy": weights["proxy"].to_numpy(), "weight": weights["weight"]}
        )
    if isinstance(weights, pd.Series | Mapping):
        items = list(weights.items())
        if not items:
            raise ParameterError(
                "The 'weights' parameter of override_weights must give at least one proxy. "
                "Got an empty mapping."
            )
        for proxy, value in items:
            if not isinstance(value, Real) or isinstance(value, bool):
                raise DataTypeError(
                    f"The 'weights' parameter of override_weights must map proxy names to "
                    f"numbers. Got {value!r} for proxy {proxy!r}."
                )
        return pd.DataFrame(
            {
                "scope": [scope] * len(items),
                "proxy": [p for p, _ in items],
                "weight": [float(v) for _, v in items],
            }
        )
    raise DataTypeError(
        "The 'weights' parameter of override_weights must be a mapping of proxy to weight, "
        f"a pandas Series, or a DataFrame with columns proxy, weight[, scope]. "
        f"Got {type(weights).__name__} instead."
    )


def _checked_table(table: Any, *, param: str) -> pd.DataFrame:
    """A fresh, validated frame of value rows (never a view of the caller's)."""
    if not isinstance(table, pd.DataFrame):
        raise DataTypeError(
            f"The {param!r} parameter must be a pandas DataFrame with columns scope, proxy, "
            f"weight[, weight_lo, weight_hi]. Got {type(table).__name__} instead."
        )
    missing = [c for c in ("scope", "proxy", "weight") if c not in table.columns]
    if missing:
        have = [str(c) for c in table.columns]
        hints = "".join(suggestion(m, have) for m in missing)
        raise ColumnError(
            f"The {param!r} parameter is missing column(s) {', '.join(map(repr, missing))}; "
            f"it has {have}.{hints}"
        )
    if table.columns.duplicated().any():
        dup = sorted({str(c) for c in table.columns[table.columns.duplicated()]})
        raise ColumnError(f"The {param!r} parameter has duplicated column(s) {dup}.")
    if len(table) == 0:
        raise DataError(f"The {param!r} parameter must have at least one row. Got an empty frame.")

    out: dict[str, Any] = {}
    for col in ("scope", "proxy"):
        values = table[col].tolist()
        for value in values:
            if not isinstance(value, str) or not value.strip():
                raise DataError(
                    f"The {param!r} parameter's {col!r} column must hold non-empty strings. "
                    f"Found {value!r}."
                )
        out[col] = values
    labels = list(zip(out["scope"], out["proxy"], strict=True))
    for col in ("weight", "weight_lo", "weight_hi"):
        if col not in table.columns:
            out[col] = np.full(len(table), np.nan)
            continue
        try:
            numbers = pd.to_numeric(table[col], errors="raise").to_numpy(
                dtype=float, na_value=np.nan
            )
        except (TypeError, ValueError) as exc:
            raise DataTypeError(
                f"The {param!r} parameter's {col!r} column must be numeric. "
                f"Found dtype {table[col].dtype}."
            ) from exc
        out[col] = numbers.copy()
    weight, lo, hi = out["weight"], out["weight_lo"], out["weight_hi"]
    _check_range(weight, labels, param=param, col="weight", allow_nan=False)
    _check_range(lo, labels, param=param, col="weight_lo", allow_nan=True)
    _check_range(hi, labels, param=param, col="weight_hi", allow_nan=True)
    crossed = np.flatnonzero(lo > hi)
    if crossed.size:
        i = int(crossed[0])
        raise DataError(
            f"The {param!r} parameter must have weight_lo <= weight_hi; scope "
            f"{labels[i][0]!r}, proxy {labels[i][1]!r} has [{float(lo[i])!r}, {float(hi[i])!r}]."
        )
    seen: set[tuple[str, str]] = set()
    for label in labels:
        if label in seen:
            raise DataError(
                f"The {param!r} parameter must have one row per (scope, proxy); "
                f"scope {label[0]!r}, proxy {label[1]!r} appears more than once."
            )
        seen.add(label)
    return pd.DataFrame(out, columns=["scope", "proxy", "weight", "weight_lo", "weight_hi"])


def _check_range(
    values: np.ndarray, labels: list[tuple[str, str]], *, param: str, col: str, allow_nan: bool
) -> None:
    nan = np.isnan(values)
    bad = ~nan & ~((values >= 0.0) & (values <= 1.0))
    if not allow_nan:
        bad |= nan
    where = np.flatnonzero(bad)
    if where.size:
        i = int(where[0])
        allowed = "finite and in [0, 1] (or NaN)" if allow_nan else "finite and in [0, 1]"
        raise DataError(
            f"The {param!r} parameter's {col!r} values must be {allowed}; scope "
            f"{labels[i][0]!r}, proxy {labels[i][1]!r} has {float(values[i])!r}."
        )


def _check_sums(rows: pd.DataFrame, *, param: str) -> None:
    sums = rows.groupby("scope", sort=True)["weight"].sum()
    for scope, total in sums.items():
        if abs(float(total) - 1.0) > SUM_TOLERANCE:
            parts = rows.loc[rows["scope"] == scope]
            shown = ", ".join(
                f"{p}={w:g}" for p, w in zip(parts["proxy"], parts["weight"], strict=True)
            )
            raise ParameterError(
                f"The {param!r} parameter's weights must sum to 1 (within {SUM_TOLERANCE:g}) in "
                f"each scope; scope {scope!r} sums to {float(total):.10g} ({shown})."
            )


# ----------------------------------------------------------------------------
# Storage
# ----------------------------------------------------------------------------


_LOCK_MESSAGES = (
    "Could not set lock",  # POSIX advisory lock held by another process
    "Conflicting lock",
    "being used by another process",  # Windows sharing violation
)


def _is_lock_error(exc: BaseException) -> bool:
    text = str(exc)
    return isinstance(exc, duckdb.IOException) and any(m in text for m in _LOCK_MESSAGES)


def _is_config_clash(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.ConnectionException) and "different configuration" in str(exc)


def _file_kind(target: Path) -> tuple[bool, bool]:
    """(the file is empty, it starts with DuckDB's magic); False for a missing file."""
    offset, magic = _DUCKDB_MAGIC
    try:
        with open(target, "rb") as fh:
            head = fh.read(offset + len(magic))
    except OSError:
        return False, False
    return len(head) == 0, head[offset:] == magic


def _sleep(seconds: float) -> None:
    """Wait between attempts (a seam the tests use to count retries)."""
    time.sleep(seconds)


@contextmanager
def _connection(target: Path, *, read_only: bool, timeout: float) -> Iterator[Any]:
    """A connection to ``target`` held only for the ``with`` block.

    Retries while another process holds the file (DuckDB's file lock) with
    jittered exponential backoff until ``timeout`` seconds have passed.
    """
    with _PROCESS_LOCK:
        if not read_only:
            target.parent.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        delay = _FIRST_DELAY
        mode = read_only
        while True:
            try:
                con = duckdb.connect(str(target), read_only=mode)
                break
            except duckdb.Error as exc:
                waited = time.monotonic() - start
                if _is_config_clash(exc):
                    if mode:
                        # This process already has the file open read-write elsewhere
                        # (the caller's own connection): share that instance.
                        mode = False
                        continue
                    raise LedgerBusyError(
                        f"Could not open the weights ledger {str(target)!r}: this process "
                        "already has it open through a DuckDB connection with other settings "
                        "(read-only, say). Close that connection first."
                    ) from exc
                if "not a valid DuckDB database" in str(exc):
                    empty, duckdb_file = _file_kind(target)
                    being_created = empty or duckdb_file
                    if not (being_created and waited < min(timeout, _EMPTY_FILE_GRACE)):
                        raise IncompatibleFileError(
                            f"The file {str(target)!r} is not a proxyscope weights ledger: "
                            f"it is not a DuckDB database"
                            f"{' (it is empty)' if empty else ''}."
                        ) from exc
                elif not _is_lock_error(exc):
                    raise
                if waited >= timeout:
                    raise LedgerBusyError(
                        f"Could not open the weights ledger {str(target)!r}: another process "
                        f"held it for longer than timeout={timeout:g} s. Try again, or pass a "
                        f"larger 'timeout'. ({exc})"
                    ) from exc
                _sleep(max(0.0, min(random.uniform(0.5 * delay, delay), timeout - waited)))
                delay = min(2.0 * delay, _MAX_DELAY)
        try:
            yield con
        finally:
            con.close()


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


def _append(
    target: Path,
    rows: pd.DataFrame,
    meta: dict[str, Any],
    entry_time: datetime | None,
    timeout: float,
) -> int:
    cautions: list[str] = []
    with _connection(target, read_only=False, timeout=timeout) as con:
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


def _read(
    target: Path, sql: str, params: list[Any], timeout: float, *, want_scopes: bool = False
) -> Any:
    with _connection(target, read_only=True, timeout=timeout) as con:
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

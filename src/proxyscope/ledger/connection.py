"""Connections to the weights ledger's DuckDB file: locking, retries and refusals.

DuckDB lets one process at a time hold a database file for writing, so each
call opens the file only for the duration of one read or write and, while
another process holds it, retries with jittered exponential backoff up to
``timeout`` seconds before raising :class:`LedgerBusyError`. A file that is
not a DuckDB database is refused at once, except for the instant while
another process creates it; a file in a format DuckDB would hand to an
extension (SQLite, Parquet, ...) is refused before DuckDB sees it, and DuckDB
may never install or load an extension for a ledger (no network access).

This is the one place proxyscope touches the file, so it is also where
DuckDB's reports of an unreadable file (a short read, a checksum mismatch, a
catalog it cannot deserialise) become :class:`~proxyscope.errors.IncompatibleFileError`
saying the ledger is damaged, while or after it is opened.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from proxyscope.errors import IncompatibleFileError, ParameterError, ProxyscopeError

# A fresh file is empty for an instant while the process that creates it writes
# its header; another process that opens it then sees "not a valid database",
# and by the time it looks at the file the header may be there. So that error
# is retried for this long while the file is empty or starts like a DuckDB
# file; any other file is refused at once.
_EMPTY_FILE_GRACE = 2.0
_DUCKDB_MAGIC = (8, b"DUCK")  # offset and bytes of the magic in a DuckDB file's header
_FIRST_DELAY = 0.005
_MAX_DELAY = 0.25

# Never let DuckDB fetch or load an extension for a ledger: opening a foreign
# file (SQLite, say) would otherwise try to download one from the network.
_NO_EXTENSIONS = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}

# Formats DuckDB would open through an extension or as a read-only view (first
# bytes, and what to call them); anything else that is not DuckDB's is refused
# by DuckDB itself ("not a valid DuckDB database").
_FOREIGN_MAGIC = (
    (b"SQLite format 3\x00", "a SQLite database"),
    (b"PAR1", "a Parquet file"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 (or NetCDF-4) file"),
    (b"CDF\x01", "a NetCDF file"),
    (b"CDF\x02", "a NetCDF file"),
    (b"ARROW1", "an Arrow IPC file"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "a gzip file"),
)

# What DuckDB says when the file's bytes are not what its own header promised.
_DAMAGE_TYPES = (
    duckdb.IOException,
    duckdb.SerializationException,
    duckdb.InternalException,
    duckdb.FatalException,
)
_DAMAGE_MESSAGES = ("Corrupt database file", "checksum", "Could not read enough bytes")

# DuckDB refuses two connections with different settings (read-only vs
# read-write) to one file inside a process; serialise this module's own access.
_PROCESS_LOCK = threading.Lock()


class LedgerBusyError(ProxyscopeError, TimeoutError):
    """The ledger file is held by another connection.

    Either another process held it for longer than the timeout, or this process
    has it open with other settings (read-only, say).
    """


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


def _foreign_kind(target: Path) -> str | None:
    """What a file in a known non-DuckDB format is ("a SQLite database"), else None."""
    try:
        with open(target, "rb") as fh:
            head = fh.read(16)
    except OSError:
        return None
    offset, duck = _DUCKDB_MAGIC
    if head[offset : offset + len(duck)] == duck:  # a DuckDB file starts with a checksum
        return None
    return next((name for magic, name in _FOREIGN_MAGIC if head.startswith(magic)), None)


def _is_damage(exc: BaseException) -> bool:
    if isinstance(exc, _DAMAGE_TYPES) and not _is_lock_error(exc):
        return True
    return isinstance(exc, duckdb.Error) and any(m in str(exc) for m in _DAMAGE_MESSAGES)


def _damaged(target: Path, exc: BaseException) -> IncompatibleFileError:
    """The error for a ledger DuckDB cannot read (the file itself is left untouched)."""
    found = " ".join(str(exc).split())
    if len(found) > 300:
        found = found[:300] + "..."
    return IncompatibleFileError(
        f"The weights ledger {str(target)!r} is damaged: DuckDB cannot read it ({found}). "
        "proxyscope has not changed the file. Restore it from a backup copy; to start a new "
        "ledger instead, move the damaged file (and any .wal file beside it) aside."
    )


def _attempts(read_only: bool) -> list[tuple[bool, dict[str, Any] | None]]:
    """(read_only, config) to try in turn while DuckDB reports a configuration clash.

    A clash means this process already has the file open (the caller's own
    connection, with DuckDB's default settings): share that database instance,
    which is already known to be a DuckDB file, read-write if need be.
    """
    if read_only:
        return [(True, _NO_EXTENSIONS), (True, None), (False, None)]
    return [(False, _NO_EXTENSIONS), (False, None)]


def _sleep(seconds: float) -> None:
    """Wait between attempts (a seam the tests use to count retries)."""
    time.sleep(seconds)


@contextmanager
def connect(target: Path, *, read_only: bool, timeout: float) -> Iterator[Any]:
    """A connection to ``target`` held only for the ``with`` block.

    Retries while another process holds the file (DuckDB's file lock) with
    jittered exponential backoff until ``timeout`` seconds have passed. DuckDB's
    reports of a damaged file, from opening it or from the block, are raised as
    :class:`~proxyscope.errors.IncompatibleFileError`.
    """
    with _PROCESS_LOCK:
        if not read_only:
            _make_parent(target)
        con = _open(target, read_only=read_only, timeout=timeout)
        try:
            yield con
        except duckdb.Error as exc:
            error = _translated(target, exc)
            if error is None:
                raise
            raise error from exc
        finally:
            try:
                con.close()  # may checkpoint, which reads and writes the file
            except duckdb.Error as exc:
                error = _translated(target, exc)
                if error is None:
                    raise
                raise error from exc


def _make_parent(target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ParameterError(
            f"The 'path' parameter must name a ledger file in a folder that can be created. "
            f"Got {str(target)!r}: creating {str(target.parent)!r} failed "
            f"({exc.strerror or exc})."
        ) from exc


def _open(target: Path, *, read_only: bool, timeout: float) -> Any:
    """Open ``target`` with DuckDB, waiting while another process holds it."""
    foreign = _foreign_kind(target)
    if foreign is not None:
        raise IncompatibleFileError(
            f"The file {str(target)!r} is not a proxyscope weights ledger: it is {foreign}, "
            "not a DuckDB database."
        )
    # An absolute name, so that DuckDB never reads "name:rest" as an extension prefix.
    name = str(target.absolute())
    start = time.monotonic()
    delay = _FIRST_DELAY
    attempts = _attempts(read_only)
    step = 0
    while True:
        mode, config = attempts[step]
        try:
            if config is None:
                return duckdb.connect(name, read_only=mode)
            return duckdb.connect(name, read_only=mode, config=config)
        except duckdb.Error as exc:
            waited = time.monotonic() - start
            if _is_config_clash(exc):
                if step + 1 < len(attempts):
                    step += 1
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
                raise (_translated(target, exc) or _damaged(target, exc)) from exc
            if waited >= timeout:
                raise LedgerBusyError(
                    f"Could not open the weights ledger {str(target)!r}: another process "
                    f"held it for longer than timeout={timeout:g} s. Try again, or pass a "
                    f"larger 'timeout'. ({exc})"
                ) from exc
            _sleep(max(0.0, min(random.uniform(0.5 * delay, delay), timeout - waited)))
            delay = min(2.0 * delay, _MAX_DELAY)


def _translated(target: Path, exc: BaseException) -> ProxyscopeError | None:
    """proxyscope's error for what DuckDB reported about the file, or None if it is not
    about the file (a defect to surface as it is)."""
    text = str(exc)
    for reason in ("Permission denied", "Read-only file system", "No space left on device"):
        if reason in text:
            return ParameterError(
                f"The 'path' parameter must name a ledger file this process can open and "
                f"write. Got {str(target)!r}: {reason.lower()}. Nothing was written."
            )
    if "version number" in text or "storage version" in text:
        return IncompatibleFileError(
            f"The weights ledger {str(target)!r} was written by a DuckDB version that duckdb "
            f"{duckdb.__version__} cannot read ({' '.join(text.split())[:300]}). Upgrade duckdb."
        )
    if "xtension" in text:  # a format DuckDB would need an extension for
        return IncompatibleFileError(
            f"The file {str(target)!r} is not a proxyscope weights ledger: it is not a DuckDB "
            "database."
        )
    return _damaged(target, exc) if _is_damage(exc) else None

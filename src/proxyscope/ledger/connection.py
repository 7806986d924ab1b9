"""Connections to the weights ledger's DuckDB file: locking, retries and refusals.

DuckDB lets one process at a time hold a database file for writing, so each
call opens the file only for the duration of one read or write and, while
another process holds it, retries with jittered exponential backoff up to
``timeout`` seconds before raising :class:`LedgerBusyError`. A file that is
not a DuckDB database is refused at once, except for the instant while
another process creates it.
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

from proxyscope.errors import IncompatibleFileError, ProxyscopeError

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
def connect(target: Path, *, read_only: bool, timeout: float) -> Iterator[Any]:
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

"""Subprocess helper for tests/test_ledger.py: append to, or hold, a weights ledger.

Usage::

    python _ledger_worker.py append PATH TAG COUNT [--scopes S] [--proxies P]
                             [--pause SECONDS [--pause-at I]] [--go FILE]
                             [--die-before-close]
    python _ledger_worker.py hold PATH SECONDS

``append`` writes COUNT entries (forever when COUNT < 0) with
:func:`record_weights`; entry ``i`` of worker TAG has the exact content of
:func:`expected_table` and the note ``"TAG:i"``. It prints one flushed line per
event so the test knows what was committed when it kills the process::

    ready                      -- started (waits for --go FILE to exist, if given)
    begin TAG I                -- about to call record_weights for entry I
    inside ENTRY_ID TAG I      -- inside the transaction, values not yet inserted
    committed ENTRY_ID TAG I   -- record_weights returned: the entry is committed
    retries N                  -- how often it waited for another process's lock
    done

``--pause`` sleeps that long inside each transaction (between inserting the
entry row and its values; with ``--pause-at I`` only in entry I's), so a kill
can be aimed at an open transaction.
``--die-before-close`` makes the process SIGKILL itself right after its first
commit, before DuckDB checkpoints on close. ``hold`` opens the file read-write,
prints ``holding`` and keeps it locked.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def expected_table(tag: str, i: int, n_scopes: int, n_proxies: int) -> pd.DataFrame:
    """The exact value rows worker ``tag`` writes for its entry ``i`` (sorted)."""
    scopes = ["global"] + [f"seg {j:02d}" for j in range(1, n_scopes)]
    proxies = [f"proxy_{k:02d}" for k in range(n_proxies)]
    salt = sum(ord(c) for c in tag)
    rows = []
    for j, scope in enumerate(scopes):
        raw = np.array([(salt + 7 * i + 3 * j + 5 * k) % 17 + 1 for k in range(n_proxies)], float)
        weight = raw / raw.sum()
        for k, proxy in enumerate(proxies):
            rows.append((scope, proxy, weight[k], weight[k] * 0.5, min(1.0, weight[k] * 1.5)))
    return pd.DataFrame(rows, columns=["scope", "proxy", "weight", "weight_lo", "weight_hi"])


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _append(args: argparse.Namespace) -> None:
    from proxyscope import ledger
    from proxyscope.ledger import connection, store

    retries = 0
    sleep = connection._sleep

    def counting_sleep(seconds: float) -> None:
        nonlocal retries
        retries += 1
        sleep(seconds)

    connection._sleep = counting_sleep  # type: ignore[assignment]

    current = {"i": -1}
    insert = store._insert_values

    def slow_insert(con: Any, entry_id: int, rows: pd.DataFrame) -> None:
        _say(f"inside {entry_id} {args.tag} {current['i']}")
        if args.pause > 0 and args.pause_at in (-1, current["i"]):
            time.sleep(args.pause)
        insert(con, entry_id, rows)

    store._insert_values = slow_insert  # type: ignore[assignment]

    if args.die_before_close:
        # Die right after COMMIT, before DuckDB can checkpoint on close: the
        # committed entry then lives only in the write-ahead log.
        import os
        import signal

        connect = connection.duckdb.connect

        class DyingConnection:
            def __init__(self, con: Any) -> None:
                self._con = con

            def __getattr__(self, name: str) -> Any:
                return getattr(self._con, name)

            def close(self) -> None:
                _say("closing")
                os.kill(os.getpid(), signal.SIGKILL)

        connection.duckdb.connect = lambda *a, **k: DyingConnection(connect(*a, **k))  # type: ignore[assignment]

    _say("ready")
    if args.go:
        go = Path(args.go)
        while not go.exists():
            time.sleep(0.005)
    i = 0
    while args.count < 0 or i < args.count:
        current["i"] = i
        # Shuffle the row order so the ledger, not the writer, sorts the history.
        table = expected_table(args.tag, i, args.scopes, args.proxies).iloc[::-1]
        _say(f"begin {args.tag} {i}")
        entry_id = ledger.record_weights(
            args.path,
            table,
            note=f"{args.tag}:{i}",
            ci=0.9,
            data_fingerprint=f"data-{args.tag}",
            config_hash="cfg",
        )
        _say(f"committed {entry_id} {args.tag} {i}")
        i += 1
    _say(f"retries {retries}")
    _say("done")


def _hold(args: argparse.Namespace) -> None:
    import duckdb

    con = duckdb.connect(args.path)
    _say("holding")
    time.sleep(args.seconds)
    con.close()
    _say("released")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="mode", required=True)
    app = sub.add_parser("append")
    app.add_argument("path")
    app.add_argument("tag")
    app.add_argument("count", type=int)
    app.add_argument("--scopes", type=int, default=4)
    app.add_argument("--proxies", type=int, default=5)
    app.add_argument("--pause", type=float, default=0.0)
    app.add_argument("--pause-at", type=int, default=-1)
    app.add_argument("--go", default="")
    app.add_argument("--die-before-close", action="store_true")
    hold = sub.add_parser("hold")
    hold.add_argument("path")
    hold.add_argument("seconds", type=float)
    args = parser.parse_args(argv)
    if args.mode == "append":
        _append(args)
    else:
        _hold(args)


if __name__ == "__main__":
    main()

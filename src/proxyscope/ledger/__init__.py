"""The weights ledger: an append-only history of adaptive weights in a DuckDB file.

Every computation of adaptive weights (:func:`record_weights`, kind
``"computed"``) and every manual override (:func:`override_weights`, kind
``"override"``) becomes a new *entry*; nothing is ever updated or deleted, so
the file is an audit trail of which weights were in force when, who changed
them and why. A computed entry of a fit with time also records the period its
weights describe, so the history shows how the weights moved between periods.
:func:`weights_history` reads the whole trail back and :func:`current_weights`
the entry in force for one scope.

The package: this module (the four calls), :mod:`.checks` (their
inputs, checked where they enter), :mod:`.store` (the DuckDB file),
:mod:`.schema` (checking a file is an intact ledger; what a damaged one means)
and :mod:`.connection` (opening it while other processes use it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime

import numpy as np
import pandas as pd

from proxyscope.errors import (
    DataTypeError,
    ParameterError,
    check_one_of,
    suggestion,
)
from proxyscope.ledger.checks import (
    check_sums,
    check_text,
    checked_meta,
    checked_path,
    checked_table,
    checked_timeout,
    checked_timestamp,
    override_frame,
)
from proxyscope.ledger.connection import LedgerBusyError
from proxyscope.ledger.schema import LEDGER_FORMAT, SCHEMA_VERSION
from proxyscope.ledger.store import (
    DEFAULT_TIMEOUT,
    HISTORY_COLUMNS,
    append_entry,
    read_entries,
)
from proxyscope.options import LEDGER_KINDS

__all__ = [
    "DEFAULT_TIMEOUT",
    "HISTORY_COLUMNS",
    "LEDGER_FORMAT",
    "LEDGER_KINDS",
    "SCHEMA_VERSION",
    "LedgerBusyError",
    "current_weights",
    "override_weights",
    "record_weights",
    "weights_history",
]


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
    period: str | None = None,
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
    period : str, optional
        The period of a fit with time that the weights describe (e.g. "2025-Q4";
        :func:`proxyscope.weights` gives it); None for weights of a static fit.
        A ledger written before periods existed gains the table that holds them
        with its first entry that has one (see :mod:`proxyscope.ledger.schema`).

    Returns
    -------
    int
        The new entry's ``entry_id``; ids increase with every entry.

    Raises
    ------
    ColumnError, DataError, DataTypeError, ParameterError
        For invalid inputs (text that is not valid Unicode, a path that cannot be a
        ledger file); nothing is written.
    IncompatibleFileError
        If ``path`` is not a proxyscope ledger, has an unknown schema version, was
        altered outside proxyscope or is damaged; the file is left as it is (see
        :mod:`proxyscope.ledger.schema`).
    LedgerBusyError
        If another process held the file for longer than ``timeout``.
    """
    check_one_of(kind, LEDGER_KINDS, param="kind", owner="record_weights")
    rows = checked_table(table, param="table")
    meta = checked_meta(
        kind=kind,
        data_fingerprint=data_fingerprint,
        config_hash=config_hash,
        ci=ci,
        who=who,
        why=why,
        note=note,
        period=period,
    )
    if kind == "override":
        check_sums(rows, param="table")
    entry_time = checked_timestamp(timestamp)
    timeout = checked_timeout(timeout)
    target = checked_path(path, must_exist=False)
    return append_entry(target, rows, meta, entry_time, timeout)


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
    meta = checked_meta(
        kind="override",
        data_fingerprint=data_fingerprint,
        config_hash=config_hash,
        ci=None,
        who=who,
        why=why,
        note=None,
        period=None,
    )
    check_text(scope, param="scope", required=True)
    rows = checked_table(override_frame(weights, scope), param="weights")
    check_sums(rows, param="weights")
    timeout = checked_timeout(timeout)
    target = checked_path(path, must_exist=False)
    return append_entry(target, rows, meta, None, timeout)


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
        Columns ``entry_id``, ``timestamp`` (UTC), ``kind``, ``period`` (the
        period of a fit with time the weights describe: how the weights moved
        period by period; missing for a static fit's entries, overrides and
        entries written before periods were recorded), ``scope``, ``proxy``,
        ``weight``, ``weight_lo``, ``weight_hi``, ``ci``, ``data_fingerprint``,
        ``config_hash``, ``who``, ``why``, ``note`` and ``proxyscope_version``,
        ordered by entry_id, scope, proxy. Missing values are NaN.

    Raises
    ------
    ParameterError
        If there is no file at ``path`` (or it cannot be a ledger file).
    IncompatibleFileError
        If the file is not a proxyscope ledger, has an unknown schema version, was
        altered outside proxyscope or is damaged (see :mod:`proxyscope.ledger.schema`).
    LedgerBusyError
        If a writer held the file for longer than ``timeout``.
    """
    if not isinstance(include_overrides, bool | np.bool_):
        raise DataTypeError(
            "The 'include_overrides' parameter of weights_history must be a bool. "
            f"Got {include_overrides!r} instead."
        )
    timeout = checked_timeout(timeout)
    target = checked_path(path, must_exist=True)
    where = "" if include_overrides else "WHERE e.kind = 'computed'"
    return read_entries(target, f"{where} ORDER BY e.entry_id, v.scope, v.proxy", [], timeout)


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
    IncompatibleFileError
        As for :func:`weights_history`.
    """
    check_text(scope, param="scope", required=True)
    timeout = checked_timeout(timeout)
    target = checked_path(path, must_exist=True)
    clauses = (
        "WHERE v.scope = ? AND v.entry_id = "
        "(SELECT max(entry_id) FROM ledger_values WHERE scope = ?) ORDER BY v.proxy"
    )
    found = read_entries(target, clauses, [scope, scope], timeout, want_scopes=True)
    frame, scopes = found
    if frame.empty:
        known = ", ".join(repr(s) for s in scopes) if scopes else "none: the ledger is empty"
        raise ParameterError(
            f"The 'scope' parameter of current_weights must name a scope in the ledger "
            f"{str(target)!r} (scopes: {known}). Got {scope!r} instead."
            f"{suggestion(scope, scopes)}"
        )
    return frame

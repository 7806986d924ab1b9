"""Checks of the arguments and table of :func:`~proxyscope.data.estimates.from_estimates`.

The metric names (values of the metric column, not columns), the columns'
roles, the numbers (finite estimates, positive standard errors, whole counts),
the assumed correlations, the designs and counts per cell, and the units. Each
raises naming the parameter or column, what was expected and what was found.
The covariance itself is assembled in :mod:`~proxyscope.data.estimate_covariance`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from proxyscope import dims
from proxyscope.data import designs
from proxyscope.data.arm_checks import Pair, pairs_map, per_metric
from proxyscope.data.cellchecks import describe_cell
from proxyscope.data.validate import SHOW, check_chars, scalar
from proxyscope.errors import (
    ColumnError,
    DataError,
    DataTypeError,
    ParameterError,
    suggestion,
)

OWNER = "from_estimates"

Key = tuple[Any, ...]


def canonical(value: Any) -> Any:
    """An experiment id as cells are matched: whole numbers as int, else text."""
    v = scalar(value)
    if isinstance(v, numbers.Integral) and not isinstance(v, bool):
        return int(v)
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return str(v)


def cell_key(values: Sequence[Any]) -> Key:
    """A cell's key: its experiment id (:func:`canonical`), then its segment values as text."""
    return (canonical(values[0]), *(str(scalar(v)) for v in values[1:]))


def describe(key: Key) -> str:
    """A cell key for messages."""
    return describe_cell(key[0], dims.LABEL_SEP.join(key[1:]) or dims.ALL_SEGMENTS)


def metric_names(outcome: Any, proxies: Any, *, owner: str) -> tuple[str, ...]:
    """The outcome then the proxies: distinct non-empty strings (values of the metric column)."""
    if not isinstance(outcome, str) or not outcome:
        raise DataTypeError(
            f"The 'outcome' parameter of {owner} must be a metric name (a non-empty string, "
            f"a value of the metric column); got {outcome!r}."
        )
    if isinstance(proxies, str):
        proxies = [proxies]
    if not isinstance(proxies, Sequence) or isinstance(proxies, bytes):
        raise DataTypeError(
            f"The 'proxies' parameter of {owner} must be a list of metric names; "
            f"got {type(proxies).__name__}."
        )
    if not proxies:
        raise ParameterError(
            f"The 'proxies' parameter of {owner} needs at least one metric name; got an empty list."
        )
    names = [outcome, *proxies]
    for i, name in enumerate(names):
        param = "outcome" if i == 0 else "proxies"
        if not isinstance(name, str) or not name:
            raise DataTypeError(
                f"The {param!r} parameter of {owner} must hold non-empty strings; got {name!r}."
            )
        check_chars(name, param=param, owner=owner)
        if name in names[:i]:
            where = "is also the outcome" if names.index(name) == 0 else "appears twice"
            raise ParameterError(
                f"The 'proxies' parameter of {owner} names {name!r}, which {where}; each "
                "metric plays one role."
            )
    return tuple(names)


def check_correlation(value: Any, metrics: Sequence[str], *, owner: str) -> dict[Pair, float]:
    """The assumed correlation of every pair of metrics, each in (-1, 1).

    ``value`` is one number for every pair, or a mapping keyed by ``"a|b"`` or
    ``(a, b)`` that must give every pair (an unlisted pair would silently be
    taken as independent).
    """
    pairs = [
        (metrics[a], metrics[b]) for a in range(len(metrics)) for b in range(a + 1, len(metrics))
    ]
    where = f"The 'correlation' parameter of {owner}"
    if isinstance(value, Mapping):
        keyed: dict[Any, Any] = {}
        for k, v in value.items():
            if isinstance(k, str):
                a, sep, b = k.partition("|")
                if not sep:
                    raise ParameterError(
                        f"{where} must be keyed by metric pairs 'a|b' or (a, b); got {k!r}."
                        + suggestion(k, [f"{p}|{q}" for p, q in pairs])
                    )
                k = (a, b)
            keyed[k] = v
        given = pairs_map(keyed, metrics, param="correlation", owner=owner, kind="rho")
        absent = [f"{a}|{b}" for a, b in pairs if (a, b) not in given]
        if absent:
            raise ParameterError(
                f"{where} must give every pair of metrics (0 only if you mean independent "
                f"estimates); missing: {absent[:SHOW]}."
            )
        return {p: _rho(given[p], where=f"{where} for '{p[0]}|{p[1]}'") for p in pairs}
    rho = _rho(value, where=where)
    return dict.fromkeys(pairs, rho)


def _rho(value: Any, *, where: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(float(value))
        or not -1.0 < float(value) < 1.0
    ):
        raise ParameterError(
            f"{where} must be a correlation in (-1, 1) (at +-1 two estimates would be one). "
            f"Got {value!r} instead."
        )
    return float(value)


def check_rows(frame: pd.DataFrame, columns: Sequence[str], role_of: Callable[[str], str]) -> None:
    """No missing values in the used columns (named, with their counts)."""
    missing = {c: int(frame[c].isna().sum()) for c in columns}
    if any(missing.values()):
        shown = ", ".join(f"{c!r} ({role_of(c)}): {n}" for c, n in missing.items() if n)
        raise DataError(
            f"Missing values (NaN/NULL) in the estimates table: {shown} rows; expected none. "
            "Fill or drop those rows first."
        )


def claim(roles: dict[str, str], column: str, param: str) -> None:
    if column in roles:
        first = roles[column]
        where = f"twice in {param!r}" if first == param else f"as {first!r} and {param!r}"
        raise ColumnError(
            f"Column {column!r} is given two roles: it appears {where}; each column may play "
            "one role only."
        )
    roles[column] = param


def nonnumeric(column: str, role: str, found: str, example: Any) -> Exception:
    ex = "" if example is None else f" (e.g. the value {example!r})"
    return DataTypeError(
        f"Column {column!r} (given as {role!r}) must be numeric; found {found}{ex}."
    )


def check_numbers(frame: pd.DataFrame, column: str, values: np.ndarray, *, positive: bool) -> None:
    bad = ~np.isfinite(values)
    if positive:
        bad |= ~(values > 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        role, want = (
            ("se", "positive finite numbers (a standard error of 0 claims an exact estimate)")
            if positive
            else ("estimate", "finite numbers")
        )
        raise DataError(
            f"Column {column!r} (given as {role!r}) must hold {want}; found "
            f"{scalar(frame[column].iloc[i])!r} ({int(bad.sum())} such rows)."
        )


def per_cell_design(
    frame: pd.DataFrame,
    design: str,
    column: str | None,
    cell: np.ndarray,
    n_cells: int,
    keys: Sequence[Key],
) -> np.ndarray:
    if column is None:
        return designs.check_design(design, n_cells, owner=OWNER)
    values = np.asarray([str(scalar(v)) for v in frame[column]], dtype=object)
    bad = sorted(set(values) - set(designs.DESIGNS))
    if bad:
        raise DataError(
            f"Column {column!r} (given as 'design') holds {bad[0]!r}; a design is one of "
            f"{list(designs.DESIGNS)}.{suggestion(bad[0], designs.DESIGNS)}"
        )
    out = np.empty(n_cells, dtype=object)
    for c in range(n_cells):
        got = list(dict.fromkeys(values[cell == c]))
        if len(got) > 1:
            raise DataError(
                f"Column {column!r} (given as 'design') gives cell {describe(keys[c])} the "
                f"designs {got}; all rows of a cell must have one design."
            )
        out[c] = got[0]
    return out


def per_cell_count(
    frame: pd.DataFrame,
    column: str | None,
    cell: np.ndarray,
    n_cells: int,
    keys: Sequence[Key],
    *,
    param: str,
) -> np.ndarray:
    if column is None:
        return np.zeros(n_cells, dtype=np.int64)
    x = frame[column].to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(x) | (x < 0) | (x != np.floor(x)) | (x > 2**53)
    if bad.any():
        raise DataError(
            f"Column {column!r} (given as {param!r}) must hold whole numbers of units from 0 "
            f"to 2**53; found {frame[column].iloc[int(np.flatnonzero(bad)[0])]!r}."
        )
    lo = np.full(n_cells, np.inf)
    hi = np.full(n_cells, -np.inf)
    np.minimum.at(lo, cell, x)
    np.maximum.at(hi, cell, x)
    differ = np.flatnonzero(lo != hi)
    if len(differ):
        c = int(differ[0])
        raise DataError(
            f"Column {column!r} (given as {param!r}) differs between the rows of cell "
            f"{describe(keys[c])} ({lo[c]:g} and {hi[c]:g}); give each cell one count."
        )
    return hi.astype(np.int64)


def units_of(units: Any, metrics: Sequence[str], *, owner: str) -> dict[str, str] | None:
    """The unit of every metric (None when not given)."""
    if units is None:
        return None
    return per_metric(units, metrics, param="units", owner=owner, what="unit")

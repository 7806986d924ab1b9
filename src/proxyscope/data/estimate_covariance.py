"""The sampling covariance of each cell of :func:`~proxyscope.data.estimates.from_estimates`.

In one of three forms: an assumed correlation of the estimates' errors, a long
table of pairs (one row per cell and pair of metrics) or one matrix per cell.
Every cell's matrix is then checked positive definite; a failure names the
cell and the smallest eigenvalue.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from proxyscope.data.arm_checks import Pair
from proxyscope.data.estimate_checks import Key, cell_key, describe
from proxyscope.data.validate import SHOW, scalar, show_values
from proxyscope.errors import ColumnError, DataError, DataTypeError, ParameterError, suggestion

#: The columns of a long covariance table besides the cell's key columns.
METRIC_A, METRIC_B, COVARIANCE = "metric_a", "metric_b", "covariance"
#: Relative tolerance of a covariance's diagonal against the standard error squared
#: (and of a matrix's symmetry).
DIAGONAL_RTOL = 1e-6
#: A cell's covariance whose correlation matrix has an eigenvalue at or below this is
#: not positive definite (scale-free, so large and small metrics are judged alike).
MIN_EIGENVALUE = 1e-10


def assumed_covariance(
    rho: Mapping[Pair, float], metrics: Sequence[str], se: np.ndarray
) -> np.ndarray:
    """``(cells, M, M)``: ``rho_ab * se_a * se_b`` off the diagonal, ``se**2`` on it."""
    m = len(metrics)
    corr = np.eye(m)
    for (a, b), r in rho.items():
        i, j = metrics.index(a), metrics.index(b)
        corr[i, j] = corr[j, i] = r
    return corr[None, :, :] * se[:, :, None] * se[:, None, :]


def covariance_from_table(
    cov: pd.DataFrame,
    *,
    key_columns: Sequence[str],
    cells: Mapping[Key, int],
    metrics: Sequence[str],
    se: np.ndarray,
    owner: str,
) -> np.ndarray:
    """``(cells, M, M)`` from a long table of pairs: one row per (cell, metric_a, metric_b).

    The table has the cell's key columns (the experiment and segment columns, named
    as in the estimates table) and ``metric_a``, ``metric_b``, ``covariance``. Every
    pair of different metrics of every cell is required; a diagonal row
    (``metric_a == metric_b``) is optional and must equal the standard error squared.
    """
    where = f"the 'covariance' table passed to {owner}"
    wanted = [*key_columns, METRIC_A, METRIC_B, COVARIANCE]
    have = [str(c) for c in cov.columns]
    for name in wanted:
        if name not in have:
            shown = ", ".join(repr(h) for h in have[:SHOW])
            raise ColumnError(
                f"Column {name!r} is not in {where}.{suggestion(name, have)} It needs the cell's "
                f"columns {list(key_columns)} and {METRIC_A!r}, {METRIC_B!r}, {COVARIANCE!r}; "
                f"found: {shown}."
            )
    frame = cov.loc[:, [cov.columns[have.index(c)] for c in wanted]]
    frame.columns = pd.Index(wanted, dtype=object)
    missing = {name: int(frame[name].isna().sum()) for name in wanted}
    if any(missing.values()):
        shown = ", ".join(f"{name!r}: {n}" for name, n in missing.items() if n)
        raise DataError(f"Missing values in {where}: {shown} rows; expected none.")
    values = pd.to_numeric(frame[COVARIANCE], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"Column {COVARIANCE!r} of {where} must hold finite numbers; found "
            f"{frame[COVARIANCE].iloc[i]!r} ({int(bad.sum())} such rows)."
        )
    m = len(metrics)
    out = np.full((len(cells), m, m), np.nan)
    for k in range(len(cells)):
        np.fill_diagonal(out[k], se[k] ** 2)
    seen: set[tuple[int, int, int]] = set()
    keys = frame[list(key_columns)].itertuples(index=False, name=None)
    for row, (key_values, a, b, v) in enumerate(
        zip(keys, frame[METRIC_A], frame[METRIC_B], values, strict=True)
    ):
        key = cell_key(key_values)
        if key not in cells:
            raise DataError(
                f"Row {row} of {where} is for cell {describe(key)}, which the estimates "
                f"table does not have; cells are matched on {list(key_columns)}."
            )
        names = []
        for col, value in ((METRIC_A, a), (METRIC_B, b)):
            label = str(scalar(value))
            if label not in metrics:
                raise DataError(
                    f"Column {col!r} of {where} holds {label!r}, which is neither the outcome "
                    f"nor a proxy; metrics: {list(metrics)}.{suggestion(label, metrics)}"
                )
            names.append(metrics.index(label))
        c, i, j = cells[key], min(names), max(names)
        if (c, i, j) in seen:
            raise DataError(
                f"{where[0].upper()}{where[1:]} gives the pair {metrics[i]!r}, {metrics[j]!r} "
                f"of cell {describe(key)} twice (pairs are unordered); expected one row."
            )
        seen.add((c, i, j))
        if i == j:
            _check_diagonal(v, se[c, i], metrics[i], key, where=where)
            continue
        out[c, i, j] = out[c, j, i] = v
    _check_complete(out, cells, metrics, where=where)
    return out


def covariance_from_mapping(
    cov: Mapping[Any, Any],
    *,
    n_keys: int,
    cells: Mapping[Key, int],
    metrics: Sequence[str],
    se: np.ndarray,
    owner: str,
) -> np.ndarray:
    """``(cells, M, M)`` from ``{cell key: matrix}``.

    A key is the experiment id (no segment columns) or a tuple (experiment,
    segment values...). A matrix is an (M, M) array in the order outcome,
    proxies, or a DataFrame indexed (rows and columns) by the metric names.
    """
    where = f"the 'covariance' parameter of {owner}"
    m = len(metrics)
    out = np.full((len(cells), m, m), np.nan)
    for raw_key, matrix in cov.items():
        parts = raw_key if isinstance(raw_key, tuple) else (raw_key,)
        if len(parts) != n_keys:
            raise ParameterError(
                f"The 'covariance' parameter of {owner} must be keyed by cells: "
                + (
                    "the experiment id"
                    if n_keys == 1
                    else f"a tuple (experiment, {n_keys - 1} segment value(s))"
                )
                + f"; got the key {raw_key!r}."
            )
        key = cell_key(parts)
        if key not in cells:
            raise DataError(
                f"The 'covariance' parameter of {owner} has a matrix for cell {describe(key)}, "
                "which the estimates table does not have."
            )
        c = cells[key]
        if not np.isnan(out[c, 0, 0]):
            raise ParameterError(
                f"The 'covariance' parameter of {owner} gives cell {describe(key)} twice."
            )
        out[c] = _matrix(matrix, metrics, key, owner=owner)
        _check_symmetric(out[c], metrics, key, where=where)
        for i in range(m):
            _check_diagonal(out[c, i, i], se[c, i], metrics[i], key, where=where)
            out[c, i, i] = se[c, i] ** 2
    _check_complete(out, cells, metrics, where=where)
    return out


def _matrix(value: Any, metrics: Sequence[str], key: Key, *, owner: str) -> np.ndarray:
    m = len(metrics)
    where = f"The 'covariance' parameter of {owner} for cell {describe(key)}"
    if isinstance(value, pd.DataFrame):
        rows, cols = [str(i) for i in value.index], [str(c) for c in value.columns]
        for axis, names in (("index", rows), ("columns", cols)):
            if sorted(names) != sorted(metrics):
                raise ParameterError(
                    f"{where} must be a DataFrame whose {axis} are the metrics {list(metrics)}; "
                    f"got {names[:SHOW]}."
                )
        value = value.to_numpy()[
            np.ix_([rows.index(x) for x in metrics], [cols.index(x) for x in metrics])
        ]
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise DataTypeError(
            f"{where} must be a ({m}, {m}) matrix of numbers; got {type(value).__name__}."
        ) from None
    if arr.shape != (m, m):
        raise ParameterError(
            f"{where} must be a ({m}, {m}) matrix (outcome, then proxies {list(metrics[1:])}); "
            f"got shape {arr.shape}."
        )
    if not np.isfinite(arr).all():
        raise DataError(f"{where} holds a value that is not a finite number.")
    return arr


def _check_symmetric(c: np.ndarray, metrics: Sequence[str], key: Key, *, where: str) -> None:
    scale = np.sqrt(np.abs(np.outer(np.diag(c), np.diag(c))))
    bad = np.abs(c - c.T) > DIAGONAL_RTOL * scale + 1e-300
    if bad.any():
        i, j = (int(x) for x in np.argwhere(bad)[0])
        raise DataError(
            f"The covariance of cell {describe(key)} in {where} is not symmetric: "
            f"({metrics[i]}, {metrics[j]}) is {c[i, j]:g} but ({metrics[j]}, {metrics[i]}) "
            f"is {c[j, i]:g}."
        )


def _check_diagonal(value: float, se: float, metric: str, key: Key, *, where: str) -> None:
    var = float(se) ** 2
    if not abs(float(value) - var) <= DIAGONAL_RTOL * var:
        raise DataError(
            f"The variance of {metric!r} in cell {describe(key)} in {where} is {float(value):g}, "
            f"but its standard error squared is {var:g}; they must agree (within a relative "
            f"{DIAGONAL_RTOL:g})."
        )


def _check_complete(
    out: np.ndarray, cells: Mapping[Key, int], metrics: Sequence[str], *, where: str
) -> None:
    missing = np.isnan(out)
    if not missing.any():
        return
    keys = list(cells)
    c = int(np.flatnonzero(missing.any(axis=(1, 2)))[0])
    pairs = [
        f"{metrics[i]}|{metrics[j]}"
        for i in range(len(metrics))
        for j in range(i + 1, len(metrics))
        if missing[c, i, j]
    ]
    n = int(missing.any(axis=(1, 2)).sum())
    raise DataError(
        f"{where[0].upper()}{where[1:]} lacks the covariance of {show_values(pairs)} in cell "
        f"{describe(keys[c])} ({n} cell(s) lack some pair); give every pair of every cell "
        "(0 only if you mean independent estimates)."
    )


def check_positive_definite(
    noise: np.ndarray,
    cells: Sequence[Key],
    *,
    owner: str,
    assumed: bool,
) -> None:
    """Every cell's covariance is positive definite, else name the first cell that is not."""
    sd = np.sqrt(np.einsum("cii->ci", noise))
    corr = noise / (sd[:, :, None] * sd[:, None, :])
    low = np.linalg.eigvalsh(corr)[:, 0]
    bad = np.flatnonzero(~(low > MIN_EIGENVALUE))
    if not len(bad):
        return
    c = int(bad[0])
    smallest = float(np.linalg.eigvalsh(noise[c])[0])
    cause = (
        "the assumed correlations contradict each other"
        if assumed
        else "check that cell's covariances (a pair's covariance cannot exceed the product "
        "of the standard errors, and the pairs must be consistent with each other)"
    )
    raise DataError(
        f"{owner}: the covariance of cell {describe(cells[c])} is not positive definite: its "
        f"smallest eigenvalue is {smallest:.4g} (of its correlation matrix, {low[c]:.4g}); "
        f"{cause}." + (f" {len(bad)} cells are affected." if len(bad) > 1 else "")
    )

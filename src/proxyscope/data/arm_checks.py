"""Checks of the arguments and inputs of :func:`~proxyscope.data.arms.from_arm_summaries`.

The per-metric column maps (count, mean, variance), the metric pairs of the
covariance columns and assumed correlations, the table's columns, and the
assembled sampling covariance (positive semi-definite, else the assumed
correlations contradict each other). Each raises naming the parameter and
the value.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from proxyscope import dims
from proxyscope.data.cellchecks import describe_cell, nonfinite_error
from proxyscope.data.tables import check_values, select_frame
from proxyscope.data.validate import SHOW, Roles
from proxyscope.errors import (
    ColumnError,
    DataError,
    DataTypeError,
    ParameterError,
    suggestion,
)

Pair = tuple[str, str]


def per_metric(
    value: Any,
    metrics: Sequence[str],
    *,
    param: str,
    owner: str,
    allow_single: bool = False,
    what: str = "column",
) -> dict[str, str]:
    """``{metric: column}`` for every metric, from a dict (or one column name).

    ``what`` names the values in messages ("column", or e.g. "unit").
    """
    if allow_single and isinstance(value, str):
        return dict.fromkeys(metrics, value)
    if not isinstance(value, Mapping):
        want = f"a {what} name or " if allow_single else ""
        raise DataTypeError(
            f"The {param!r} parameter of {owner} must be {want}a dict {{metric: {what}}}; "
            f"got {type(value).__name__}."
        )
    unknown = [k for k in value if k not in metrics]
    if unknown:
        raise ParameterError(
            f"The {param!r} parameter of {owner} names {unknown[0]!r}, which is not the "
            f"outcome or a proxy; metrics: {list(metrics)}.{suggestion(str(unknown[0]), metrics)}"
        )
    absent = [m for m in metrics if m not in value]
    if absent:
        raise ParameterError(
            f"The {param!r} parameter of {owner} must give a {what} for every metric "
            f"{list(metrics)}; missing: {absent}."
        )
    for m in metrics:
        if not isinstance(value[m], str) or not value[m]:
            raise DataTypeError(
                f"The {param!r} parameter of {owner} must map each metric to a {what} name; "
                f"got {value[m]!r} for {m!r}."
            )
    return {m: str(value[m]) for m in metrics}


def _pair(key: Any, metrics: Sequence[str], *, param: str, owner: str) -> Pair:
    if (
        not isinstance(key, tuple)
        or len(key) != 2
        or key[0] not in metrics
        or key[1] not in metrics
        or key[0] == key[1]
    ):
        raise ParameterError(
            f"The {param!r} parameter of {owner} must be keyed by pairs of two different "
            f"metrics from {list(metrics)}, e.g. {(metrics[0], metrics[1])!r}; got {key!r}."
        )
    a, b = sorted(key, key=list(metrics).index)
    return (a, b)


def pairs_map(
    value: Any, metrics: Sequence[str], *, param: str, owner: str, kind: str
) -> dict[Pair, Any]:
    """A dict keyed by unordered metric pairs, keys put in metric order."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise DataTypeError(
            f"The {param!r} parameter of {owner} must be a dict {{(metric_a, metric_b): {kind}}}; "
            f"got {type(value).__name__}."
        )
    out: dict[Pair, Any] = {}
    for key, v in value.items():
        p = _pair(key, metrics, param=param, owner=owner)
        if p in out:
            raise ParameterError(
                f"The {param!r} parameter of {owner} gives the pair {p!r} twice "
                "(pairs are unordered)."
            )
        out[p] = v
    return out


def _rho(value: Any, *, where: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(float(value))
        or not -1.0 <= float(value) <= 1.0
    ):
        raise ParameterError(f"{where} must be a correlation in [-1, 1]. Got {value!r} instead.")
    return float(value)


def correlations(
    value: Any, metrics: Sequence[str], covs: Mapping[Pair, str], *, owner: str
) -> dict[Pair, float]:
    """The assumed correlation of every pair that has no covariance column."""
    open_pairs = [
        (metrics[a], metrics[b])
        for a in range(len(metrics))
        for b in range(a + 1, len(metrics))
        if (metrics[a], metrics[b]) not in covs
    ]
    where = f"The 'correlation' parameter of {owner}"
    if isinstance(value, Mapping):
        given = pairs_map(value, metrics, param="correlation", owner=owner, kind="rho")
        both = [p for p in given if p in covs]
        if both:
            raise ParameterError(
                f"{where} sets {both[0]!r}, which also has a covariance column; give one or "
                "the other."
            )
        return {p: _rho(given.get(p, 0.0), where=f"{where} for {p!r}") for p in open_pairs}
    rho = _rho(value, where=where)
    return dict.fromkeys(open_pairs, rho)


def check_columns(
    table: pd.DataFrame,
    roles: Roles,
    key_cols: Sequence[str],
    stat_cols: Sequence[str],
    *,
    owner: str,
) -> pd.DataFrame:
    """Every key and statistic column is in the table once, has one role, and is numeric.

    Returns the used columns, labelled by their names (the caller's table is
    not changed; labels that are not strings are used by their string form).
    """
    available = [str(c) for c in table.columns]
    for c in [*key_cols, *stat_cols]:
        if c not in available:
            shown = ", ".join(repr(a) for a in available[:SHOW])
            raise ColumnError(
                f"Column {c!r} is not in the table passed to {owner}."
                f"{suggestion(c, available)} Available columns: {shown}."
            )
    for c in stat_cols:
        if c in key_cols:
            raise ColumnError(
                f"Column {c!r} is given two roles: it is a key ({roles.role_of(c)!r}) and a "
                "count/mean/variance/covariance column."
            )

    def role_of(c: str) -> str:
        if c == roles.treatment:
            return "arm"
        return roles.role_of(c) if c in key_cols else "count/mean/variance/covariance"

    used = list(dict.fromkeys([*key_cols, *stat_cols]))
    where = f"the table passed to {owner}"
    frame = select_frame(table, used, where=where, role_of=role_of, case="none")
    for c in stat_cols:
        dt = frame[c].dtype
        if (
            not pd.api.types.is_numeric_dtype(dt)
            or pd.api.types.is_bool_dtype(dt)
            or pd.api.types.is_complex_dtype(dt)
        ):
            conv = pd.to_numeric(frame[c], errors="coerce")
            bad = frame[c][conv.isna() & frame[c].notna()]
            ex = f" (e.g. the value {bad.iloc[0]!r})" if len(bad) else ""
            raise DataTypeError(f"Column {c!r} must be numeric; found type {dt}{ex}.")
    check_values(frame, keys=key_cols, metrics=(), role_of=role_of, nonnumeric=_unused)
    return frame


def _unused(column: str, role: str, found: str, example: Any) -> Exception:
    raise AssertionError("no metric columns are checked here")


def check_psd(
    noise: np.ndarray,
    keep: np.ndarray,
    cells: Sequence[Any],
    rho: Mapping[Pair, float],
    *,
    metrics: Sequence[str],
    owner: str,
) -> None:
    """Assumed correlations can make an impossible covariance; say so.

    A covariance that overflowed (variances near 1e308) is named as such first,
    never blamed on the correlations.
    """
    idx = np.flatnonzero(keep)
    if not len(idx):
        return
    sub = noise[idx]
    err = nonfinite_error(
        np.zeros((len(idx), len(metrics))),
        sub,
        metrics,
        lambda i: _cell(cells[int(idx[i])]),
        owner=owner,
    )
    if err is not None:
        raise err
    scale = np.sqrt(np.einsum("cii->ci", sub))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = sub / (scale[:, :, None] * scale[:, None, :])
    corr = np.nan_to_num(corr, nan=0.0)
    low = np.linalg.eigvalsh(corr)[:, 0]
    bad = np.flatnonzero(low < -1e-9)
    if len(bad):
        where = cells[int(idx[bad[0]])]
        shown = ", ".join(f"{a}|{b}: {r:g}" for (a, b), r in rho.items()) or "none"
        raise DataError(
            f"{owner}: the sampling covariance of {len(bad)} cell(s), e.g. {where!r}, is not "
            f"positive semi-definite; the covariance columns or the assumed correlations "
            f"({shown}) are inconsistent with each other."
        )


def _cell(key: Sequence[Any]) -> str:
    """A cell key (experiment, segment values...) for messages."""
    label = dims.LABEL_SEP.join(str(v) for v in key[1:]) or dims.ALL_SEGMENTS
    return describe_cell(key[0], label)


#: Largest count accepted: every whole number up to 2**53 is exact as a float.
MAX_COUNT = 2**53


def check_counts(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    """Counts are whole numbers of users from 0 to 2**53 (an int64 cannot overflow)."""
    for c in dict.fromkeys(columns):
        x = frame[c].to_numpy(dtype=float)
        with np.errstate(invalid="ignore"):
            bad = np.flatnonzero((x < 0) | (x != np.floor(x)) | (x > MAX_COUNT))
        if len(bad):
            v = frame[c].iloc[int(bad[0])]
            v = v.item() if isinstance(v, np.generic) else v
            raise DataError(
                f"Column {c!r} (given in 'count') has {len(bad)} value(s) that are not a "
                f"number of users, e.g. {v!r}; counts must be whole numbers from 0 to 2**53."
            )

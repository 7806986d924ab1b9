"""Turn per-cell arrays into :class:`CellEffects`: the last step every input path shares.

:func:`proxyscope.data.summarize.summarize` (user-level rows) and
:func:`proxyscope.data.arms.from_arm_summaries` (per-arm statistics) both end
here, so cells are ordered, dropped, reported, signed and stored the same way.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from proxyscope import dims
from proxyscope.data import designs
from proxyscope.data.cellbuild import build
from proxyscope.data.cellchecks import describe_cell, nonfinite_error, segment_value_error
from proxyscope.data.cells import CellEffects, segment_labels
from proxyscope.data.validate import SHOW, scalar, show_values
from proxyscope.errors import DataError, DataWarning


def experiment_values(values: Sequence[Any]) -> np.ndarray:
    """Experiment ids as stored: whole numbers as int64, else strings.

    Whole-number floats (an integer column that pandas widened to float
    because of a missing value) become ints too. Ids are labels, kept exactly:
    whole numbers beyond int64 (ids >= 2**63, uint64 columns) are stored as
    uint64 when none is negative, else as strings.
    """
    vals = [scalar(v) for v in values]
    whole = all(
        (isinstance(v, numbers.Integral) and not isinstance(v, bool))
        or (isinstance(v, float) and v.is_integer())
        for v in vals
    )
    if whole:
        ints = [int(v) for v in vals]
        if all(INT64.min <= i <= INT64.max for i in ints):
            return np.asarray(ints, dtype=np.int64)
        if all(0 <= i <= UINT64.max for i in ints):
            return np.asarray(ints, dtype=np.uint64)
        vals = ints
    out = np.empty(len(vals), dtype=object)
    out[:] = [str(v) for v in vals]
    return out


INT64 = np.iinfo(np.int64)
UINT64 = np.iinfo(np.uint64)


def _sort_key(values: Sequence[Any]) -> list[Any]:
    """Numbers sort as numbers when a column holds only numbers; otherwise as text.

    Whole numbers stay Python ints, which compare exactly with each other and
    with floats (ids above 2**53 are not all distinct as floats).
    """
    vals = [scalar(v) for v in values]
    if all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in vals):
        return [v if isinstance(v, int) else float(v) for v in vals]
    return [str(v) for v in vals]


def cell_order(keys: pd.DataFrame) -> np.ndarray:
    """Positions that sort cells by experiment, then each segment column."""
    cols = [_sort_key(list(keys[c])) for c in keys.columns]
    rows = list(zip(*cols, strict=True)) if cols else []
    return np.asarray(sorted(range(len(keys)), key=lambda i: rows[i]), dtype=np.int64)


def finish(
    keys: pd.DataFrame,
    n_treat: np.ndarray,
    n_control: np.ndarray,
    effect: np.ndarray,
    noise_cov: np.ndarray,
    drop_reason: Sequence[str | None],
    *,
    outcome: str,
    proxies: Sequence[str],
    segments: Sequence[str],
    directions: Mapping[str, str],
    engine: str,
    min_users_per_arm: int,
    owner: str,
    experiment_column: str,
    extra: Mapping[str, Any] | None = None,
    assumed_correlation: Mapping[str, float] | None = None,
    pre_dropped: Sequence[Mapping[str, Any]] = (),
    stacklevel: int = 4,
    design: str | Sequence[str] | np.ndarray = designs.AB,
    variables: Mapping[str, np.ndarray] | None = None,
    units: Mapping[str, str] | None = None,
) -> CellEffects:
    """Order cells, drop and report the flagged ones, sign proxies, and build.

    Parameters
    ----------
    keys : DataFrame
        One row per cell: column ``experiment`` then the segment columns.
    n_treat, n_control, effect, noise_cov : arrays
        Per cell, in the metrics' natural direction (signs are applied here).
    drop_reason : sequence of str or None
        Why each cell is dropped, or None to keep it.
    pre_dropped : sequence of dict
        Cells an adapter dropped before this step (reported with the rest).
    design, variables, units
        As in :func:`~proxyscope.data.cellbuild.build`; per-cell ``design`` values and
        ``variables`` are aligned with ``keys`` (ordered, dropped and, for
        variables over metrics, signed here like the effects).
    """
    exp = experiment_values(list(keys[dims.EXPERIMENT]))
    keys = keys.copy()
    keys[dims.EXPERIMENT] = exp
    order = cell_order(keys)
    keys = keys.iloc[order].reset_index(drop=True)
    n_treat = np.asarray(n_treat)[order]
    n_control = np.asarray(n_control)[order]
    effect = np.asarray(effect, dtype=float)[order]
    noise_cov = np.asarray(noise_cov, dtype=float)[order]
    reasons = [drop_reason[i] for i in order]
    per_cell = designs.check_design(design, len(order), owner=owner)[order]
    variables = {k: np.asarray(v)[order] for k, v in (variables or {}).items()}
    keep = np.asarray([r is None for r in reasons], dtype=bool)
    bad_value = segment_value_error(keys, segments)
    if bad_value is not None:
        raise bad_value

    dropped: list[dict[str, Any]] = [dict(r) for r in pre_dropped]
    for i in np.flatnonzero(~keep):
        row: dict[str, Any] = {dims.EXPERIMENT: scalar(keys[dims.EXPERIMENT].iloc[i])}
        for s in segments:
            row[s] = str(scalar(keys[s].iloc[i]))
        row["n_treat"] = int(n_treat[i])
        row["n_control"] = int(n_control[i])
        row["reason"] = reasons[i]
        dropped.append(row)
    if dropped:
        why: dict[str, int] = {}
        for r in dropped:
            why[str(r["reason"])] = why.get(str(r["reason"]), 0) + 1
        total = len(keys) + len(pre_dropped)
        shown = "; ".join(f"{n} {reason}" for reason, n in why.items())
        warnings.warn(
            f"{owner} dropped {len(dropped)} of {total} cells ({shown}); see CellEffects.dropped.",
            DataWarning,
            stacklevel=stacklevel,
        )

    if not keep.any():
        raise DataError(
            f"{owner}: no cell has at least min_users_per_arm={min_users_per_arm} users "
            f"in both arms ({len(keys)} cells checked); lower min_users_per_arm or use "
            "fewer segment columns."
        )
    kept_exp = pd.unique(pd.Series(keys[dims.EXPERIMENT][keep]))
    if len(kept_exp) < 2:
        raise DataError(
            f"{owner}: after dropping cells below min_users_per_arm={min_users_per_arm}, "
            f"only {len(kept_exp)} experiment ({show_values(list(kept_exp))}) of column "
            f"{experiment_column!r} remains; at least two are needed."
        )

    idx = np.flatnonzero(keep)
    labels = segment_labels(keys, segments)

    def describe(i: int) -> str:
        return describe_cell(keys[dims.EXPERIMENT].iloc[idx[i]], labels[idx[i]])

    err = nonfinite_error(effect[idx], noise_cov[idx], [outcome, *proxies], describe, owner=owner)
    if err is not None:
        raise err
    sign = np.asarray([1.0] + [-1.0 if directions[p] == "lower" else 1.0 for p in proxies])
    effect = effect * sign
    noise_cov = noise_cov * sign[:, None] * sign[None, :]
    signed = {}
    for name, values in variables.items():
        n_metric_axes = designs.OPTIONAL_VARIABLES[name][0].count(
            dims.METRIC
        ) + designs.OPTIONAL_VARIABLES[name][0].count(dims.METRIC_)
        if n_metric_axes == 1:
            values = values * sign
        elif n_metric_axes == 2:
            values = values * sign[:, None] * sign[None, :]
        signed[name] = values[idx]
    return build(
        keys.iloc[idx].reset_index(drop=True),
        n_treat[idx],
        n_control[idx],
        effect[idx],
        noise_cov[idx],
        outcome=outcome,
        proxies=list(proxies),
        segments=list(segments),
        directions=directions,
        engine=engine,
        min_users_per_arm=min_users_per_arm,
        dropped=dropped,
        assumed_correlation=assumed_correlation,
        extra=extra,
        design=per_cell[idx],
        variables=signed,
        units=units,
    )


def one_arm_error(
    experiments: Sequence[Any], *, experiment_column: str, arm_column: str
) -> DataError:
    return DataError(
        f"{len(experiments)} experiment(s) in column {experiment_column!r} have only one arm "
        f"(one value of {arm_column!r}): {show_values(list(experiments))}; each experiment "
        "needs both a treatment and a control arm."
    )


def too_few_experiments_error(experiments: Sequence[Any], *, experiment_column: str) -> DataError:
    shown = show_values(list(experiments)) if len(experiments) <= SHOW else ""
    return DataError(
        f"Column {experiment_column!r} (given as 'experiment') must hold at least two "
        f"experiments; found {len(experiments)} {shown}".rstrip()
        + "."
    )

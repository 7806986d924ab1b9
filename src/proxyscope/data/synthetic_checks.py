"""Checks and reshaping for :func:`proxyscope.data.synthetic_control.synthetic_control`.

Everything the estimator needs from a unit × period panel, checked where it
enters: the column roles, the types and values of the columns, one treated unit
per experiment, one launch period per experiment, and a balanced panel in every
(experiment × segment) cell. The result is one small array per cell,
``values[unit, period, metric]`` with the treated unit first, which is all the
estimator reads. The caller's DataFrame is never modified.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pandas as pd

from proxyscope.data.assemble import too_few_experiments_error
from proxyscope.data.cellchecks import describe_cell
from proxyscope.data.validate import (
    SHOW,
    Roles,
    check_roles,
    column_name,
    infinite_values_error,
    name_list,
    nonnumeric_error,
    plain,
    scalar,
    show_values,
)
from proxyscope.errors import (
    ColumnError,
    DataError,
    DataTypeError,
    ParameterError,
    suggestion,
)

#: Fewest pre-launch periods a cell may have (a fit error needs more than one).
MIN_PRE_PERIODS = 2


@dataclass(frozen=True)
class Cell:
    """One (experiment × segment cell) panel: the treated unit first, then the donors."""

    key: tuple[Any, ...]
    units: list[Any]
    periods: list[Any]
    n_pre: int
    values: np.ndarray  # (units, periods, metrics), raw directions
    reason: str | None  # why the cell is dropped, or None


@dataclass(frozen=True)
class Prepared:
    """The checked roles and the cells of a panel."""

    roles: Roles
    unit: str
    period: str
    start_column: str | None
    fit: tuple[int, ...]  # positions in roles.metrics of the metrics the weights match
    cells: list[Cell]
    starts: dict[Any, Any]  # experiment -> first treated period


def check_fit_metric(value: Any, metrics: Sequence[str], *, owner: str) -> tuple[int, ...]:
    """Positions of the metrics whose pre-launch paths the weights match (None: all)."""
    if value is None:
        return tuple(range(len(metrics)))
    names = name_list(value, param="fit_metric", owner=owner, allow_empty=False)
    for n in names:
        if n not in metrics:
            raise ParameterError(
                f"The 'fit_metric' parameter of {owner} must name the outcome or proxies "
                f"{list(metrics)}; got {n!r}.{suggestion(n, metrics)}"
            )
    if len(set(names)) != len(names):
        raise ParameterError(
            f"The 'fit_metric' parameter of {owner} names a metric twice: {list(names)}."
        )
    return tuple(metrics.index(n) for n in names)


def check_min_donors(value: Any, n_metrics: int, *, owner: str) -> int:
    """At least one donor more than metrics: J placebo gaps give a covariance of rank <= J."""
    low = n_metrics + 1
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < low:
        raise ParameterError(
            f"The 'min_donors' parameter of {owner} must be an integer >= {low} (one more "
            f"than the {n_metrics} metrics, so the placebo covariance can be of full rank). "
            f"Got {value!r} instead."
        )
    return int(value)


def prepare(
    panel: Any,
    *,
    experiment: Any,
    unit: Any,
    period: Any,
    treated: Any,
    treatment_start: Any,
    outcome: Any,
    proxies: Any,
    segments: Any,
    directions: Any,
    fit_metric: Any,
    min_donors: int,
    owner: str,
) -> Prepared:
    """Check the arguments and the panel; split it into cells (see the module docstring)."""
    if not isinstance(panel, pd.DataFrame):
        raise DataTypeError(
            f"The 'panel' parameter of {owner} must be a pandas DataFrame with one row per "
            f"unit and period; got {type(panel).__name__}."
        )
    roles = check_roles(
        experiment=experiment,
        treatment=treated,
        outcome=outcome,
        proxies=proxies,
        segments=segments,
        directions=directions,
        owner=owner,
        treatment_param="treated",
    )
    unit_col = column_name(unit, param="unit", owner=owner)
    period_col = column_name(period, param="period", owner=owner)
    start_col = treatment_start if isinstance(treatment_start, str) else None
    named = {c: roles.role_of(c) for c in roles.columns}
    named[roles.treatment] = "treated"
    for role, col in (("unit", unit_col), ("period", period_col), ("treatment_start", start_col)):
        if col is None:
            continue
        if col in named:
            raise ColumnError(
                f"Column {col!r} is given two roles: as {named[col]!r} and {role!r}; "
                "each column may play one role only."
            )
        named[col] = role
    fit = check_fit_metric(fit_metric, list(roles.metrics), owner=owner)
    _check_columns(panel, named)
    if len(panel) == 0:
        raise DataError(f"The panel passed to {owner} is empty: it has no rows.")
    _check_values(panel, roles, unit_col, period_col, start_col)

    keys = list(roles.keys)
    frame = panel[list(named)]  # a new frame: the caller's is never touched
    flag = _treated_flags(frame, roles.treatment)
    exp_units = frame[[roles.experiment, unit_col]].assign(_t=flag)
    by_unit = exp_units.groupby([roles.experiment, unit_col], sort=False, observed=True)["_t"]
    mixed = by_unit.nunique() > 1
    if mixed.any():
        e, u = cast(tuple[Any, Any], mixed[mixed].index[0])
        raise DataError(
            f"Column {roles.treatment!r} (given as 'treated') must be constant within each unit "
            f"of an experiment; {int(mixed.sum())} unit(s) have both values, e.g. unit "
            f"{plain(u)!r} of experiment {plain(e)!r}."
        )
    per_exp = by_unit.first().groupby(level=0, sort=False, observed=True).sum()
    wrong = per_exp[per_exp != 1]
    if len(wrong):
        shown = ", ".join(f"{plain(e)!r}: {int(n)}" for e, n in wrong.iloc[:SHOW].items())
        raise DataError(
            f"Each experiment needs exactly one treated unit (column {roles.treatment!r}, "
            f"given as 'treated'); {len(wrong)} experiment(s) have another number: {shown}."
        )
    if len(per_exp) < 2:
        raise too_few_experiments_error(list(per_exp.index), experiment_column=roles.experiment)
    treated_unit: dict[Any, Any] = {}  # experiment -> treated unit
    for pair, t in by_unit.first().items():
        if bool(t):
            e, u = cast(tuple[Any, Any], pair)
            treated_unit[e] = u
    starts = _starts(frame, roles.experiment, period_col, start_col, treatment_start, owner)

    dup = frame.duplicated([*keys, unit_col, period_col], keep=False)
    if dup.any():
        row = frame[dup].iloc[0]
        where = ", ".join(f"{c}={plain(row[c])!r}" for c in [*keys, unit_col, period_col])
        raise DataError(
            f"The panel has {int(dup.sum())} rows that repeat a (experiment, segments, unit, "
            f"period), e.g. {where}; each unit needs one row per period (aggregate first)."
        )
    metrics = list(roles.metrics)
    cells: list[Cell] = []
    for key, rows in frame.groupby(keys, sort=False, observed=True):
        key = key if isinstance(key, tuple) else (key,)
        cells.append(
            _cell(
                tuple(scalar(k) for k in key),
                rows,
                unit_col,
                period_col,
                metrics,
                treated_unit[key[0]],
                starts[key[0]],
                min_donors,
            )
        )
    return Prepared(roles, unit_col, period_col, start_col, fit, cells, starts)


def _check_columns(panel: pd.DataFrame, named: Mapping[str, str]) -> None:
    available = [str(c) for c in panel.columns]
    parts = [
        f"Column {c!r} (given as {role!r}) is not in the panel." + suggestion(c, available)
        for c, role in named.items()
        if c not in panel.columns
    ]
    if parts:
        shown = ", ".join(repr(a) for a in available[:SHOW])
        more = f", ... ({len(available)} in all)" if len(available) > SHOW else ""
        raise ColumnError(" ".join(parts) + f" Available columns: {shown}{more}.")
    counts = pd.Index(panel.columns).value_counts()
    twice = [c for c in named if counts.get(c, 0) > 1]
    if twice:
        raise ColumnError(f"Column {twice[0]!r} appears more than once in the panel.")


def _check_values(
    panel: pd.DataFrame, roles: Roles, unit: str, period: str, start: str | None
) -> None:
    """Numeric finite metrics, no missing values, an ordered period column."""
    for m in roles.metrics:
        col = panel[m]
        if not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)) or (
            pd.api.types.is_complex_dtype(col)
        ):
            bad = next((v for v in col if not isinstance(v, numbers.Real)), None)
            raise nonnumeric_error(m, roles.role_of(m), str(col.dtype), bad)
    used = [*roles.keys, roles.treatment, unit, period, *roles.metrics]
    if start is not None:
        used.append(start)
    missing = {c: int(panel[c].isna().sum()) for c in used}
    if any(missing.values()):
        shown = ", ".join(f"{c!r}: {n}" for c, n in missing.items() if n)
        raise DataError(
            f"Missing values (NaN/None) in the panel: {shown} rows; expected none. A "
            "synthetic control needs every unit in every period: fill or drop them first."
        )
    infinite = {m: int(np.isinf(panel[m].to_numpy(dtype=float)).sum()) for m in roles.metrics}
    if any(infinite.values()):
        raise infinite_values_error(infinite, roles)
    for name, role in ((period, "period"), (start, "treatment_start")):
        if name is None:
            continue
        kind = panel[name].dtype.kind
        if kind not in "iufmM" or kind == "b":
            raise DataTypeError(
                f"Column {name!r} (given as {role!r}) must hold ordered periods (numbers or "
                f"dates); found type {panel[name].dtype}."
            )


def _treated_flags(frame: pd.DataFrame, column: str) -> np.ndarray:
    values = pd.unique(frame[column])
    ok = all(
        isinstance(scalar(v), bool) or (isinstance(scalar(v), numbers.Real) and scalar(v) in (0, 1))
        for v in values
    )
    if not ok:
        raise DataError(
            f"Column {column!r} (given as 'treated') must hold True/False or 1/0 (True on "
            f"the treated unit's rows); found {show_values(list(values))}."
        )
    return np.asarray(frame[column].to_numpy() == 1, dtype=bool)


def _starts(
    frame: pd.DataFrame,
    experiment: str,
    period: str,
    column: str | None,
    value: Any,
    owner: str,
) -> dict[Any, Any]:
    """The first treated period of every experiment."""
    exps = [scalar(e) for e in pd.unique(frame[experiment])]
    if column is not None:
        per = frame.groupby(experiment, sort=False, observed=True)[column]
        varies = per.nunique() > 1
        if varies.any():
            raise DataError(
                f"Column {column!r} (given as 'treatment_start') must hold one period per "
                f"experiment; {int(varies.sum())} experiment(s) have several, e.g. "
                f"{plain(varies[varies].index[0])!r}."
            )
        starts = {scalar(e): scalar(s) for e, s in per.first().items()}
    elif isinstance(value, Mapping):
        absent = [e for e in exps if e not in value]
        if absent:
            raise ParameterError(
                f"The 'treatment_start' parameter of {owner} must give a first treated "
                f"period for every experiment; missing for {len(absent)}: "
                f"{show_values(absent)}."
            )
        starts = {e: value[e] for e in exps}
    else:
        if value is None or isinstance(value, bool | bytes | Sequence):
            raise ParameterError(
                f"The 'treatment_start' parameter of {owner} must be a column name, a dict "
                f"{{experiment: first treated period}} or one period for every experiment; "
                f"got {value!r}."
            )
        starts = dict.fromkeys(exps, value)
    sample = frame[period].iloc[0]
    for e, s in starts.items():
        try:
            bool(sample < s)
        except TypeError:
            raise ParameterError(
                f"The 'treatment_start' of experiment {plain(e)!r} is {s!r}, which cannot be "
                f"compared with the periods of column {period!r} (e.g. {plain(sample)!r})."
            ) from None
    return starts


def _cell(
    key: tuple[Any, ...],
    rows: pd.DataFrame,
    unit: str,
    period: str,
    metrics: list[str],
    treated_unit: Any,
    start: Any,
    min_donors: int,
) -> Cell:
    """The cell's balanced (unit, period, metric) array, treated unit first."""
    name = describe_cell(key[0], " / ".join(str(k) for k in key[1:]) or "all")
    units = list(pd.unique(rows[unit]))
    periods = sorted(pd.unique(rows[period]))
    empty = np.zeros((0, 0, len(metrics)))
    if not any(_same_unit(u, treated_unit) for u in units):
        return Cell(key, units, periods, 0, empty, "no rows of the treated unit")
    donors = [u for u in units if not _same_unit(u, treated_unit)]
    if len(donors) < min_donors:
        return Cell(key, units, periods, 0, empty, f"below min_donors={min_donors}")
    order = [treated_unit, *donors]
    grid = rows.pivot(index=unit, columns=period, values=metrics)
    counts = rows.groupby(unit, sort=False, observed=True)[period].count()
    short = counts[counts < len(periods)]
    if len(short):
        u = short.index[0]
        raise DataError(
            f"The panel of cell {name} is not balanced: {len(short)} unit(s) lack some of "
            f"the cell's {len(periods)} periods, e.g. unit {plain(u)!r} has "
            f"{int(short.iloc[0])}. A synthetic control needs every unit in every period."
        )
    values = np.stack(
        [
            cast(pd.DataFrame, grid[m]).reindex(index=order, columns=periods).to_numpy(float)
            for m in metrics
        ],
        axis=-1,
    )
    n_pre = int(sum(bool(p < start) for p in periods))
    if n_pre < MIN_PRE_PERIODS or n_pre == len(periods):
        raise DataError(
            f"Cell {name} has {n_pre} period(s) before its treatment_start {plain(start)!r} "
            f"and {len(periods) - n_pre} from it on; a synthetic control needs at least "
            f"{MIN_PRE_PERIODS} before and 1 after."
        )
    return Cell(key, order, periods, n_pre, values, None)


def _same_unit(a: Any, b: Any) -> bool:
    return bool(scalar(a) == scalar(b))

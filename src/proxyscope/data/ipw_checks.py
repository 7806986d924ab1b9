"""Inputs and diagnostics of :func:`proxyscope.data.ipw.ipw`.

Two halves: reading the caller's rows into arrays (every check of the
arguments and of the data, with messages that name the parameter or column),
and the overlap report of the fitted propensities (``meta["ipw"]`` and its
DataWarnings). The estimator itself is in :mod:`proxyscope.data.ipw`.

Overlap rules (each gives one DataWarning naming the cells or experiments):

- a cell where more than :data:`OUTSIDE_SHARE` (5%) of the units have an
  estimated propensity outside [:data:`BAND`, 1 − :data:`BAND`] = [0.05, 0.95]
  (the band the seed tutorial trims to): weights of 20 and more carry such a
  cell's estimate, and it leans on the outcome models where the arms do not
  overlap;
- an experiment where a covariate's standardized mean difference after
  weighting exceeds :data:`SMD_LIMIT` (0.1) in absolute value: the propensity
  model, fitted per experiment, does not balance it (misspecified: add
  interactions or use a more flexible model). Balance is judged per experiment,
  where the model is fitted and the SMD's noise is small; per-cell SMDs are
  reported too but do not warn (in a cell of 200 users their noise alone is
  about 0.15).

SMD = (weighted mean_T − weighted mean_C) / sqrt((s²_T + s²_C) / 2), with
s²_a the unweighted variance (ddof=0) of the covariate in arm a; "before" uses
unit weights, "after" the estimand's weights (ATE: 1/ê treated, 1/(1 − ê)
control; ATT: 1 treated, ê/(1 − ê) control; ê the clipped propensity).
Effective sample size per arm: (Σ w)² / Σ w² with the same weights.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse
from sklearn.base import clone, is_classifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from proxyscope import dims
from proxyscope.data.assemble import one_arm_error, too_few_experiments_error
from proxyscope.data.validate import (
    SHOW,
    Roles,
    _same,
    is_missing,
    name_list,
    plain,
    resolve_treated,
    scalar,
)
from proxyscope.errors import (
    ColumnError,
    DataError,
    DataTypeError,
    DataWarning,
    ParameterError,
    check_one_of,
    suggestion,
)

ESTIMANDS = ("ate", "att")
#: Propensities outside [BAND, 1 − BAND] count as outside the region of overlap.
BAND = 0.05
#: A cell with more than this share of its units outside the band: a DataWarning.
OUTSIDE_SHARE = 0.05
#: An experiment with a covariate's |SMD| after weighting above this: a DataWarning.
SMD_LIMIT = 0.1


def default_models() -> tuple[Any, Any]:
    """The default propensity model and outcome model (fresh, unfitted)."""
    propensity = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return propensity, LinearRegression()


@dataclass(frozen=True)
class Settings:
    estimand: str
    trim: float
    n_folds: int
    random_state: int
    propensity_model: Any
    outcome_model: Any


def check_settings(
    estimand: Any,
    trim: Any,
    n_folds: Any,
    random_state: Any,
    propensity_model: Any,
    outcome_model: Any,
    *,
    owner: str,
) -> Settings:
    """Every setting of ``ipw`` that is not a column, checked before the data is read."""
    check_one_of(estimand, ESTIMANDS, param="estimand", owner=owner)
    if (
        isinstance(trim, bool)
        or not isinstance(trim, numbers.Real)
        or not np.isfinite(float(trim))
        or not 0.0 <= float(trim) < 0.5
    ):
        raise ParameterError(
            f"The 'trim' parameter of {owner} must be a number in [0, 0.5): propensities are "
            f"clipped to [trim, 1 - trim]. Got {trim!r} instead."
        )
    for name, value, low in (("n_folds", n_folds, 2), ("random_state", random_state, 0)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            raise ParameterError(
                f"The {name!r} parameter of {owner} must be an integer >= {low}. "
                f"Got {value!r} instead."
            )
    ps_default, out_default = default_models()
    ps = ps_default if propensity_model is None else propensity_model
    out = out_default if outcome_model is None else outcome_model
    for name, model, method in (
        ("propensity_model", ps, "predict_proba"),
        ("outcome_model", out, "predict"),
    ):
        if not (hasattr(model, "fit") and hasattr(model, method) and hasattr(model, "get_params")):
            raise ParameterError(
                f"The {name!r} parameter of {owner} must be a scikit-learn estimator with "
                f"fit and {method}; got {type(model).__name__} {model!r}."
            )
        try:
            clone(model)
        except (TypeError, ValueError, RuntimeError) as err:
            raise ParameterError(
                f"The {name!r} parameter of {owner} cannot be cloned by scikit-learn: {err}"
            ) from err
    if not is_classifier(ps):
        raise ParameterError(
            f"The 'propensity_model' parameter of {owner} must be a classifier (e.g. "
            f"LogisticRegression); got {type(ps).__name__}."
        )
    if is_classifier(out):
        raise ParameterError(
            f"The 'outcome_model' parameter of {owner} must be a regressor (e.g. "
            f"LinearRegression): it predicts every metric, a binary one as a probability; "
            f"got the classifier {type(out).__name__}."
        )
    return Settings(str(estimand), float(trim), int(n_folds), int(random_state), ps, out)


@dataclass(frozen=True)
class Rows:
    """The caller's rows as arrays (one row per unit), in the data's row order.

    ``cell`` codes the (experiment, segments) cell of each row, ``cell_keys`` its
    key values (C × (1 + segments)); ``experiment`` codes the experiment (labels in
    ``experiment_labels``);
    ``treated`` is the arm; ``y`` the metrics (outcome first); ``x`` the
    covariates; ``features`` the covariates and the segment indicators (what the
    nuisance models see); ``cluster`` integer codes or None.
    """

    cell: np.ndarray
    cell_keys: np.ndarray
    experiment: np.ndarray
    experiment_labels: list[Any]
    treated: np.ndarray
    y: np.ndarray
    x: np.ndarray
    features: np.ndarray
    feature_names: list[str]
    cluster: np.ndarray | None
    treated_value: Any
    control_value: Any


def covariate_names(covariates: Any, roles: Roles, *, owner: str) -> tuple[str, ...]:
    """The covariate columns: names that play no other role."""
    names = name_list(covariates, param="covariates", owner=owner, allow_empty=False)
    for i, name in enumerate(names):
        if name in roles.columns or name in names[:i]:
            where = roles.role_of(name) if name in roles.columns else "covariates"
            raise ColumnError(
                f"Column {name!r} is given two roles: as {where!r} and 'covariates'; each "
                "column may play one role only (segments enter the models as indicators)."
            )
    return names


def read_rows(
    rows: Any, roles: Roles, covariates: Sequence[str], treated_value: Any, *, owner: str
) -> Rows:
    """Check the data and turn it into arrays; the caller's frame is only read.

    Raises
    ------
    DataTypeError
        ``rows`` is not a DataFrame; a metric or covariate column is not numeric.
    ColumnError
        A column is missing (the closest name suggested) or appears twice in the data.
    DataError
        No rows; missing or infinite values; a treatment column without exactly two
        values; an experiment with one arm; fewer than two experiments.
    ParameterError
        ``treated_value`` not in the data, or not inferable.
    """
    if not isinstance(rows, pd.DataFrame):
        raise DataTypeError(
            f"The 'rows' parameter of {owner} must be a pandas DataFrame with one row per "
            f"unit; got {type(rows).__name__}."
        )
    role = {c: roles.role_of(c) for c in roles.columns} | dict.fromkeys(covariates, "covariates")
    available = [str(c) for c in rows.columns]
    missing = [c for c in role if c not in available]
    if missing:
        shown = ", ".join(repr(a) for a in available[:SHOW])
        more = f", ... ({len(available)} in all)" if len(available) > SHOW else ""
        raise ColumnError(
            " ".join(
                f"Column {c!r} (given as {role[c]!r}) is not in the data."
                + suggestion(c, available)
                for c in missing
            )
            + f" Available columns: {shown}{more}."
        )
    twice = [c for c in role if available.count(c) > 1]
    if twice:
        raise ColumnError(f"Column {twice[0]!r} appears more than once in the data; rename one.")
    if not len(rows):
        raise DataError(f"The data passed to {owner} is empty: it has no rows.")
    frame = rows.set_axis(available, axis=1)
    numeric = [*roles.metrics, *covariates]
    for c in numeric:
        col = frame[c]
        ok = pd.api.types.is_bool_dtype(col) or (
            pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_complex_dtype(col)
        )
        if not ok:
            example = next((v for v in col if not isinstance(v, numbers.Real)), None)
            ex = "" if example is None else f" (e.g. the value {example!r})"
            raise DataTypeError(
                f"Column {c!r} (given as {role[c]!r}) must be numeric or boolean; found type "
                f"{col.dtype}{ex}."
            )
    values = {c: frame[c].to_numpy(dtype=float, na_value=np.nan) for c in numeric}
    missing_n = {c: int(frame[c].isna().sum()) for c in role if c not in values}
    missing_n |= {c: int(np.isnan(v).sum()) for c, v in values.items()}
    if any(missing_n.values()):
        shown = ", ".join(f"{c!r} ({role[c]}): {n}" for c, n in missing_n.items() if n)
        raise DataError(
            f"Missing values (NaN/None) in the data passed to {owner}: {shown} rows; expected "
            "none. Drop or fill those rows first."
        )
    infinite = {c: int(np.isinf(v).sum()) for c, v in values.items()}
    if any(infinite.values()):
        shown = ", ".join(f"{c!r} ({role[c]}): {n}" for c, n in infinite.items() if n)
        raise DataError(f"Infinite values in the data: {shown} rows; expected finite numbers.")

    arm_values = [scalar(v) for v in pd.unique(frame[roles.treatment]) if not is_missing(v)]
    treated, control = resolve_treated(
        arm_values[:5], treated_value, column=roles.treatment, more=len(arm_values) > 5, owner=owner
    )
    arm_code, arm_uniques = pd.factorize(frame[roles.treatment])
    is_t = np.asarray([_same(scalar(v), treated) for v in arm_uniques], dtype=bool)[arm_code]
    keys = pd.MultiIndex.from_frame(frame[list(roles.keys)])
    cell, uniques = keys.factorize()
    experiment, labels = pd.factorize(frame[roles.experiment])
    arms = np.zeros((len(labels), 2), dtype=np.int64)
    np.add.at(arms, (experiment, is_t.astype(np.int64)), 1)
    one_arm = [scalar(labels[int(e)]) for e in np.flatnonzero((arms == 0).any(axis=1))]
    if one_arm:
        raise one_arm_error(one_arm, experiment_column=roles.experiment, arm_column=roles.treatment)
    if len(labels) < 2:
        raise too_few_experiments_error(list(labels), experiment_column=roles.experiment)

    x = np.column_stack([values[c] for c in covariates])
    names = list(covariates)
    parts = [x]
    for s in roles.segments:  # indicators of each segment level but the first
        codes, levels = pd.factorize(frame[s], sort=False)
        for j in range(1, len(levels)):
            parts.append((codes == j).astype(float)[:, None])
            names.append(f"{s}={levels[j]}")
    cluster = None
    if roles.cluster is not None:
        cluster = np.asarray(pd.factorize(frame[roles.cluster])[0], dtype=np.int64)
    return Rows(
        cell=np.asarray(cell, dtype=np.int64),
        cell_keys=np.asarray(uniques.tolist(), dtype=object).reshape(len(uniques), -1),
        experiment=np.asarray(experiment, dtype=np.int64),
        experiment_labels=list(labels),
        treated=is_t,
        y=np.column_stack([values[m] for m in roles.metrics]),
        x=x,
        features=np.column_stack(parts),
        feature_names=names,
        cluster=cluster,
        treated_value=plain(treated),
        control_value=plain(control),
    )


# -- overlap report -----------------------------------------------------------------


def weights(treated: np.ndarray, e: np.ndarray, estimand: str) -> np.ndarray:
    """The estimand's inverse-probability weights (module docstring), e clipped."""
    if estimand == "ate":
        return np.where(treated, 1.0 / e, 1.0 / (1.0 - e))
    return np.where(treated, 1.0, e / (1.0 - e))


def _smd(group: np.ndarray, n_groups: int, t: np.ndarray, x: np.ndarray, w: np.ndarray) -> Any:
    """Per group and covariate: SMD with weights ``w`` (module docstring); NaN if sd is 0."""
    x = x - x.mean(axis=0)  # centred, so the variances below lose no digits
    mean, var = {}, {}
    for arm in (True, False):
        a = t == arm
        ind = scipy.sparse.csr_matrix(
            (np.ones(int(a.sum())), (group[a], np.arange(int(a.sum())))),
            shape=(n_groups, int(a.sum())),
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            mean[arm] = (ind @ (w[a, None] * x[a])) / (ind @ w[a])[:, None]
            n = (ind @ np.ones(int(a.sum())))[:, None]
            var[arm] = (ind @ x[a] ** 2) / n - ((ind @ x[a]) / n) ** 2
    sd = np.sqrt(np.maximum((var[True] + var[False]) / 2, 0.0))
    out = np.full(sd.shape, np.nan)
    np.divide(mean[True] - mean[False], sd, out=out, where=sd > 1e-12 * (1 + np.abs(x).max()))
    return out


def cell_name(cell: Mapping[str, Any]) -> str:
    return f"(experiment {cell[dims.EXPERIMENT]!r}, segment {cell['segment']!r})"


def overlap_report(
    data: Rows,
    e_raw: np.ndarray,
    e: np.ndarray,
    estimand: str,
    kept: np.ndarray,
    describe: Callable[[int], Mapping[str, Any]],
    covariates: Sequence[str],
    *,
    owner: str,
) -> dict[str, Any]:
    """``meta["ipw"]["cells"]`` and ``["experiments"]``, and the overlap DataWarnings.

    ``e_raw`` are the cross-fitted propensities, ``e`` the clipped ones; ``kept``
    marks the cells that are reported; ``describe(c)`` gives a cell's experiment
    and segment label.
    """
    t, n_cells, experiment_labels = data.treated, len(data.cell_keys), data.experiment_labels
    w = weights(t, e, estimand)
    one = np.ones_like(w)
    arm_cell = 2 * data.cell + t
    low, high = np.full(2 * n_cells, np.inf), np.full(2 * n_cells, -np.inf)
    np.minimum.at(low, arm_cell, e_raw)
    np.maximum.at(high, arm_cell, e_raw)
    with np.errstate(invalid="ignore", divide="ignore"):
        ess = np.bincount(arm_cell, w, 2 * n_cells) ** 2 / np.bincount(arm_cell, w**2, 2 * n_cells)
    outside = np.bincount(data.cell, weights=(e_raw < BAND) | (e_raw > 1 - BAND), minlength=n_cells)
    share = outside / np.bincount(data.cell, minlength=n_cells)
    before = _smd(data.cell, n_cells, t, data.x, one)
    after = _smd(data.cell, n_cells, t, data.x, w)
    n_exp = len(experiment_labels)
    exp_before = _smd(data.experiment, n_exp, t, data.x, one)
    exp_after = _smd(data.experiment, n_exp, t, data.x, w)

    def num(v: float) -> float | None:
        return float(v) if np.isfinite(v) else None

    def smd_rows(b: np.ndarray, a: np.ndarray) -> dict[str, dict[str, float | None]]:
        return {c: {"before": num(b[j]), "after": num(a[j])} for j, c in enumerate(covariates)}

    cells = []
    for c in np.flatnonzero(kept):
        arm = {}
        for name, flag in (("treated", True), ("control", False)):
            arm[name] = {
                "propensity_min": float(low[2 * c + flag]),
                "propensity_max": float(high[2 * c + flag]),
                "effective_n": float(ess[2 * c + flag]),
            }
        cells.append(
            {
                **describe(int(c)),
                **arm,
                "share_outside_band": float(share[c]),
                "smd": smd_rows(before[c], after[c]),
            }
        )
    experiments = [
        {dims.EXPERIMENT: plain(experiment_labels[e]), "smd": smd_rows(exp_before[e], exp_after[e])}
        for e in range(n_exp)
    ]
    poor = [int(c) for c in np.flatnonzero(kept & (share > OUTSIDE_SHARE))]
    worst = np.nanmax(np.abs(np.where(np.isfinite(exp_after), exp_after, 0.0)), axis=1)
    unbalanced = [int(e) for e in np.flatnonzero(worst > SMD_LIMIT)]
    if poor:
        shown = "; ".join(f"{cell_name(describe(c))}: {share[c]:.1%}" for c in poor[:5]) + (
            f"; ... ({len(poor)} cells in all)" if len(poor) > 5 else ""
        )
        warnings.warn(
            f"{owner}: poor overlap in {len(poor)} of {int(kept.sum())} cells, where more than "
            f"{OUTSIDE_SHARE:.0%} of the units have an estimated propensity outside "
            f"[{BAND}, {1 - BAND}] (share outside): {shown}. Their estimates rest on large "
            "weights and on the outcome models; see meta['ipw']['cells'].",
            DataWarning,
            stacklevel=3,
        )
    if unbalanced:
        shown = "; ".join(
            f"experiment {plain(experiment_labels[e])!r}: max |SMD| {worst[e]:.3f}"
            for e in unbalanced[:5]
        ) + (f"; ... ({len(unbalanced)} experiments in all)" if len(unbalanced) > 5 else "")
        warnings.warn(
            f"{owner}: the weights leave covariates unbalanced (|SMD| after weighting > "
            f"{SMD_LIMIT}) in {len(unbalanced)} of {n_exp} experiments: {shown}. The "
            "propensity model may be misspecified (add interactions or use a more flexible "
            "model); see meta['ipw']['experiments'].",
            DataWarning,
            stacklevel=3,
        )
    return {
        "cells": cells,
        "experiments": experiments,
        "poor_overlap_cells": [describe(c) for c in poor],
        "unbalanced_experiments": [plain(experiment_labels[e]) for e in unbalanced],
    }

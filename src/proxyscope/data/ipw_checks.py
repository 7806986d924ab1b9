"""Inputs of :func:`proxyscope.data.ipw.ipw`: its settings and the caller's rows.

Reading the caller's rows into arrays, with every check of the arguments and of
the data and messages that name the parameter or column. Also the thresholds of
the overlap report (:data:`BAND`, :data:`OUTSIDE_SHARE`, :data:`SMD_LIMIT`; the
rules are in :mod:`proxyscope.data.ipw_report`, which applies them, and
:mod:`proxyscope.reporting.design_diagnostics` reads them). The cross-fitting is
in :mod:`proxyscope.data.ipw_fit`, the estimator in :mod:`proxyscope.data.ipw`.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone, is_classifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from proxyscope.data.assemble import one_arm_error, too_few_experiments_error
from proxyscope.data.validate import (
    SHOW,
    Roles,
    is_missing,
    name_list,
    plain,
    resolve_treated,
    same_value,
    scalar,
)
from proxyscope.errors import (
    ColumnError,
    DataError,
    DataTypeError,
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
    is_t = np.asarray([same_value(scalar(v), treated) for v in arm_uniques], dtype=bool)[arm_code]
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

"""Inputs of :func:`proxyscope.data.ipw.ipw`: its settings and the caller's rows.

The settings, checked before any data is read; the messages of every check of
the rows, which each engine raises alike (:mod:`proxyscope.data.ipw_source` runs
the checks); the :class:`Plan` every experiment is read with, and one
experiment's rows as arrays (:func:`experiment_rows`). Also the thresholds of
the overlap report (:data:`BAND`, :data:`OUTSIDE_SHARE`, :data:`SMD_LIMIT`; the
rules are in :mod:`proxyscope.data.ipw_report`, which applies them, and
:mod:`proxyscope.reporting.design_diagnostics` reads them). The cross-fitting is
in :mod:`proxyscope.data.ipw_fit`, the estimator in :mod:`proxyscope.data.ipw`.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

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
    name_list,
    plain,
    resolve_treated,
    same_value,
    scalar,
)
from proxyscope.errors import (
    ColumnError,
    DataError,
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
    """One experiment's rows as arrays (one row per unit), in the data's row order.

    ``cell`` codes the experiment's (segments) cells in order of first
    appearance, ``cell_keys`` their key values (C × (1 + segments), the
    experiment first) and ``cell_first`` the position in the data of each cell's
    first row; ``experiment`` codes the experiment (0; label in
    ``experiment_labels``); ``treated`` is the arm; ``y`` the metrics (outcome
    first); ``x`` the covariates; ``features`` the covariates and the segment
    indicators (what the nuisance models see); ``cluster`` integer codes or None.
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
    cell_first: np.ndarray


@dataclass(frozen=True)
class Plan:
    """What every experiment's rows are read with: the experiments in order of first
    appearance, the treated and control values, and each segment column's levels in
    order of first appearance in the data (the features' indicators: all but the first)."""

    experiments: list[Any]
    treated: Any
    control: Any
    levels: dict[str, list[Any]]

    def feature_names(self, covariates: Sequence[str]) -> list[str]:
        names = list(covariates)
        for s, levels in self.levels.items():
            names += [f"{s}={v}" for v in levels[1:]]
        return names


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


def role_names(roles: Roles, covariates: Sequence[str]) -> dict[str, str]:
    """Every column read, and the parameter that names it."""
    return {c: roles.role_of(c) for c in roles.columns} | dict.fromkeys(covariates, "covariates")


def check_names(names: Sequence[str], role: Mapping[str, str]) -> None:
    """Every used column (``role``'s keys) is among the data's column ``names``, once."""
    available = list(names)
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


def empty_error(owner: str) -> DataError:
    return DataError(f"The data passed to {owner} is empty: it has no rows.")


def bad_values_error(
    missing: Mapping[str, int], infinite: Mapping[str, int], role: Mapping[str, str], owner: str
) -> DataError | None:
    """Missing values (any used column), else infinite ones (numbers); None when neither."""
    if any(missing.values()):
        shown = ", ".join(f"{c!r} ({role[c]}): {n}" for c, n in missing.items() if n)
        return DataError(
            f"Missing values (NaN/None) in the data passed to {owner}: {shown} rows; expected "
            "none. Drop or fill those rows first."
        )
    if any(infinite.values()):
        shown = ", ".join(f"{c!r} ({role[c]}): {n}" for c, n in infinite.items() if n)
        return DataError(f"Infinite values in the data: {shown} rows; expected finite numbers.")
    return None


def make_plan(
    arm_values: Sequence[Any],
    arm_rows: Sequence[tuple[Any, Any, int]],
    experiments: Sequence[Any],
    levels: Mapping[str, Sequence[Any]],
    roles: Roles,
    treated_value: Any,
    *,
    owner: str,
) -> Plan:
    """The :class:`Plan`, from what an engine found: the treatment column's distinct
    values (order of first appearance), rows per (experiment, arm value), the experiments
    and the segment levels (order of first appearance).

    Raises
    ------
    DataError
        A treatment column without exactly two values, an experiment with one arm,
        fewer than two experiments.
    ParameterError
        ``treated_value`` not in the data, or not inferable.
    """
    values = [scalar(v) for v in arm_values]
    treated, control = resolve_treated(
        values[:5], treated_value, column=roles.treatment, more=len(values) > 5, owner=owner
    )
    arms: dict[Any, set[bool]] = {scalar(e): set() for e in experiments}
    for e, arm, n in arm_rows:
        if n:
            arms[scalar(e)].add(same_value(scalar(arm), treated))
    one_arm = [e for e, a in arms.items() if len(a) < 2]
    if one_arm:
        raise one_arm_error(one_arm, experiment_column=roles.experiment, arm_column=roles.treatment)
    if len(experiments) < 2:
        raise too_few_experiments_error(list(experiments), experiment_column=roles.experiment)
    return Plan(list(experiments), treated, control, {s: list(v) for s, v in levels.items()})


def experiment_rows(
    chunk: pd.DataFrame,
    positions: np.ndarray,
    label: Any,
    plan: Plan,
    roles: Roles,
    covariates: Sequence[str],
) -> Rows:
    """The rows of experiment ``label`` (``chunk``, checked, in the data's order, at
    ``positions`` in the data) as arrays; the caller's frame is only read."""
    values = {
        c: chunk[c].to_numpy(dtype=float, na_value=np.nan) for c in (*roles.metrics, *covariates)
    }
    arm_code, arm_uniques = pd.factorize(chunk[roles.treatment])
    treated = [same_value(scalar(v), plan.treated) for v in arm_uniques]
    is_t = np.asarray(treated, dtype=bool)[arm_code]
    n = len(chunk)
    if roles.segments:
        cell, uniques = pd.MultiIndex.from_frame(chunk[list(roles.segments)]).factorize()
        keys = [(label, *cast(tuple, u)) for u in uniques.tolist()]
    else:
        cell, keys = np.zeros(n, dtype=np.int64), [(label,)]
    cell_keys = np.empty((len(keys), 1 + len(roles.segments)), dtype=object)
    cell_keys[:] = keys
    _, first = np.unique(cell, return_index=True)
    x = np.column_stack([values[c] for c in covariates])
    parts = [x]
    for s in roles.segments:  # indicators of each segment level but the first
        code = pd.Index(plan.levels[s], dtype=object).get_indexer(chunk[s].to_numpy(dtype=object))
        parts += [(code == j).astype(float)[:, None] for j in range(1, len(plan.levels[s]))]
    cluster = None
    if roles.cluster is not None:
        cluster = np.asarray(pd.factorize(chunk[roles.cluster])[0], dtype=np.int64)
    return Rows(
        cell=np.asarray(cell, dtype=np.int64),
        cell_keys=cell_keys,
        experiment=np.zeros(n, dtype=np.int64),
        experiment_labels=[label],
        treated=is_t,
        y=np.column_stack([values[m] for m in roles.metrics]),
        x=x,
        features=np.column_stack(parts),
        feature_names=plan.feature_names(covariates),
        cluster=cluster,
        treated_value=plain(plan.treated),
        control_value=plain(plan.control),
        cell_first=np.asarray(positions)[first],
    )

"""Opt-in features: doubly robust (AIPW) effects of every metric and their joint covariance.

When users choose to turn a feature on, the users who opt in differ from those
who do not (heavier users click every toggle), so a difference in means mixes
the feature's effect with the selection. This design reads such an experiment
by augmented inverse-probability weighting (AIPW): a propensity model
ê(X) = P(opt in | X) reweights the arms to look alike on the covariates X, and
outcome models ĝ_a(X) = E[Y | X, arm a] adjust what the weights leave over.

Assumptions, and how they break:

- unconfoundedness: every variable that drives opting in and moves a metric is
  among the covariates. An unmeasured one (users who read release notes opt in
  and retain better anyway) biases every metric, typically in the same
  direction, and nothing in the data shows it;
- overlap: every unit could have opted in or not (0 < e(X) < 1). Near 0 or 1
  the weights explode; propensities are clipped to [trim, 1 − trim] and the
  overlap report (:mod:`proxyscope.data.ipw_report`) flags cells with many
  extreme propensities;
- no interference: one user's opting in does not move another's metrics
  (teammates adopting together violate it; use ``cluster=`` for their
  standard errors, but the effect then includes spillover);
- doubly robust: the estimate is consistent when either the propensity model
  or the outcome models are right; balance after weighting
  (``meta["ipw"]``) checks the former.

Estimator (per experiment, per cell c of its units). Nuisance models are
cross-fitted (:mod:`proxyscope.data.ipw_fit`): the experiment's units are
split into ``n_folds`` folds (:func:`~proxyscope.data.ipw_fit.folds`), and each
unit's ê, ĝ_0, ĝ_1 come from models fitted on the other folds: one propensity
model per experiment (features: the covariates and an indicator of each
segment level but the first, so that selection may differ by segment), and one
outcome model per metric and arm. With ê clipped
to [trim, 1 − trim] (no unit is dropped; DoubleML's "truncate" rule), T the
arm and y the metric vector of a unit:

- ATE: b_i = ĝ_1 − ĝ_0 + T (y − ĝ_1)/ê − (1 − T)(y − ĝ_0)/(1 − ê);
  θ_c = mean over the cell of b_i; ψ_i = (b_i − θ_c) / n_c;
- ATT: a_i = T (y − ĝ_0) − ê (1 − T)(y − ĝ_0)/(1 − ê); θ_c = Σ a_i / n_T,c;
  ψ_i = (a_i − T θ_c) / n_T,c;
- covariance: s_g = Σ_{i in g ∩ c} ψ_i over the independent units g (each unit,
  or each value of ``cluster``), V_c = f · Σ_g s_g s_gᵀ, every metric in one
  matrix (the same ê for all metrics is what correlates them).

Small-sample factor f. Without ``cluster``: f = 1, DoubleML's convention
(``DoubleMLIRM``: σ² = mean(ψ²)/(n J²) with J = −1 for both scores), so per
metric the effect and standard error equal DoubleML's on the cell's units with
the same learners and folds. With ``cluster``: f = G/(G − 1) (CR1), G the
distinct clusters in the cell, and folds split clusters. DoubleML's clustered
IRM, with folds of equal numbers of clusters, gives Σ_g s_g² without the
factor, so V is G/(G − 1) times its variance.

Cells are experiment × segment cells; the nuisance models use the whole
experiment, so a cell's θ_c is the mean of the experiment's doubly robust
scores over the cell. Units in different cells are independent, except when a
cluster spans cells: then ``shared_cov`` holds the part of the errors an
experiment's cells share, as for cluster-randomized tests
(:mod:`proxyscope.data.shared_noise`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from proxyscope import dims
from proxyscope.data import designs
from proxyscope.data.assemble import experiment_values, finish
from proxyscope.data.cells import CellEffects, segment_labels
from proxyscope.data.clustered import Clustered, check_clusters
from proxyscope.data.design_source import check_engine_options, choose_engine
from proxyscope.data.ipw_checks import check_settings, covariate_names
from proxyscope.data.ipw_fit import combine, fit_experiment
from proxyscope.data.ipw_report import cell_name, overlap_report
from proxyscope.data.ipw_source import ENGINES, NO_SPARK, open_table
from proxyscope.data.shared_noise import experiment_codes, shared_noise
from proxyscope.data.validate import check_min_users, check_roles, plain
from proxyscope.errors import DataError

OWNER = "ipw"


def ipw(
    data: Any,
    *,
    experiment: str,
    treatment: str,
    outcome: str,
    proxies: Sequence[str] | str,
    covariates: Sequence[str] | str,
    segments: Sequence[str] | str = (),
    directions: Mapping[str, str] | None = None,
    estimand: str = "ate",
    trim: float = 0.01,
    n_folds: int = 5,
    propensity_model: Any = None,
    outcome_model: Any = None,
    cluster: str | None = None,
    treated_value: Any = None,
    min_users_per_arm: int = 10,
    random_state: int = 0,
    engine: str | None = None,
    memory_limit: str | None = None,
    threads: int | None = None,
) -> CellEffects:
    """Doubly robust (AIPW) effects of an opt-in feature per experiment × segment cell.

    See the module docstring for the assumptions, the formulas and the
    small-sample factor.

    Parameters
    ----------
    data : DataFrame, path, list of paths, glob, or pyarrow Table
        One row per unit (user) of one or many experiments. Engine "pandas": a
        pandas DataFrame, or Parquet/CSV path(s) read into one. Engine
        "duckdb": a pandas DataFrame or pyarrow Table (scanned in place), or
        Parquet/CSV path(s), directories or globs, read out of core. The row
        order matters (the folds follow it): files are read in the order given
        (a glob's or directory's in sorted order), rows in file order. Not
        modified.
    experiment, treatment, outcome, proxies, segments, directions
        As in :func:`proxyscope.summarize`: the experiment id, the arm (opted
        in or not; exactly two values), the long-term outcome, the proxies,
        the segment columns (cells are their crossing within each experiment)
        and each proxy's good direction ("higher" or "lower"; a "lower" proxy
        is negated so every effect reads "positive is better").
    covariates : list of str
        Numeric (or boolean) columns measured before the choice that drive it
        and the metrics (one-hot encode categorical ones first). The nuisance
        models see them and an indicator of each segment level but the first
        to appear in ``rows``.
    estimand : {"ate", "att"}, default "ate"
        The average effect over the cell's units, or over its treated (opted
        in) units.
    trim : float in [0, 0.5), default 0.01
        Propensities are clipped to [trim, 1 − trim] (DoubleML's
        ``trimming_threshold``); no unit is dropped. With 0, a propensity of
        exactly 0 or 1 is an error.
    n_folds : int >= 2, default 5
        Cross-fitting folds (:func:`~proxyscope.data.ipw_fit.folds`).
    propensity_model : scikit-learn classifier, optional
        Default: ``make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))``.
        Cloned and fitted once per experiment and fold.
    outcome_model : scikit-learn regressor, optional
        Default: ``LinearRegression()``. Cloned and fitted per experiment, fold,
        arm and metric (LinearRegression and Ridge once per arm for all metrics,
        which gives the same fits).
    cluster : str, optional
        Column of independent units (workspace, team) when units within them
        are correlated: scores are summed within each cluster and cell, f is
        G/(G − 1), folds split clusters (not units); cells get
        ``n_clusters_treat``, ``n_clusters_control``, ``n_clusters_shared`` and,
        with segments, ``shared_cov``. Fewer than 30 clusters in an arm of a
        cell: a DataWarning; fewer than 2: a DataError.
    treated_value : object, optional
        The treatment column's value for opted-in units, as in ``summarize``.
    min_users_per_arm : int, default 10
        Cells with fewer units in an arm are dropped (listed in
        ``CellEffects.dropped``, a DataWarning); their units still train the
        nuisance models.
    random_state : int, default 0
        Seed of the folds.
    engine : {"pandas", "duckdb"}, optional
        Where the rows are checked and read (:mod:`proxyscope.data.ipw_source`).
        Default: "pandas" for a pandas DataFrame, "duckdb" for paths and Arrow
        tables. DuckDB checks the rows with aggregations and passes them to the
        models one batch of experiments at a time (about 2M rows), so memory
        holds one batch, never the whole table; both engines give the same
        results, bit for bit, for the same rows. (No "spark": the work is the
        models' fitting, and Spark does not keep the rows' order.)
    memory_limit : str, optional
        DuckDB only: the connection's memory limit, e.g. "1GB".
    threads : int, optional
        DuckDB only: worker threads; by default one (as in ``summarize``).

    Returns
    -------
    CellEffects
        Design "ipw"; ``effect`` the AIPW estimates (outcome first, proxies in
        their good direction), ``noise_cov`` V_c, ``n_treat`` / ``n_control`` the
        cell's treated and control units. ``meta["ipw"]``: the settings, the
        features, the small-sample factor, and the overlap report of
        :mod:`proxyscope.data.ipw_report` (per cell: propensity range and
        effective sample size per arm, share of propensities outside
        [0.05, 0.95], SMD of each covariate before and after weighting; per
        experiment: the SMDs; the cells and experiments that warned).

    Raises
    ------
    ParameterError
        An unknown estimand; ``trim``, ``n_folds``, ``random_state`` or
        ``min_users_per_arm`` out of range; a model that is not a scikit-learn
        classifier (propensity) or regressor (outcome); ``treated_value``.
    ColumnError, DataTypeError, DataError
        Data the engine does not read; missing, duplicated or non-numeric
        columns; missing or infinite values;
        an experiment with one arm or fewer units (clusters) than folds; a fold
        without both arms to train on; a model that fails to fit (named).
    """
    roles = check_roles(
        experiment=experiment,
        treatment=treatment,
        outcome=outcome,
        proxies=proxies,
        segments=segments,
        directions=directions,
        owner=OWNER,
        cluster=cluster,
    )
    covs = covariate_names(covariates, roles, owner=OWNER)
    settings = check_settings(
        estimand, trim, n_folds, random_state, propensity_model, outcome_model, owner=OWNER
    )
    min_users = check_min_users(min_users_per_arm, owner=OWNER)
    engine = choose_engine(engine, data, owner=OWNER, engines=ENGINES, why=NO_SPARK)
    check_engine_options(engine, memory_limit, threads, None, owner=OWNER)
    table = open_table(
        engine, data, roles, covs, owner=OWNER, memory_limit=memory_limit, threads=threads
    )
    scored = roles.cluster is not None and bool(roles.segments)
    try:
        plan = table.plan(treated_value)
        parts = [
            fit_experiment(rows, settings, owner=OWNER, keep_scores=scored)
            for rows in table.experiments(plan)
        ]
    finally:
        table.close()
    extreme = sum(p.extreme for p in parts)
    if settings.trim == 0.0 and extreme:
        raise DataError(
            f"{OWNER}: {extreme} propensities are exactly 0 or 1 "
            "with trim=0; pass trim > 0 (e.g. 0.01) to clip them."
        )
    got, theta, cell_keys, stats = combine(parts)
    n_t, n_c = got.users[:, 0], got.users[:, 1]
    reasons: list[str | None] = [
        None if (a >= min_users and b >= min_users) else f"below min_users_per_arm={min_users}"
        for a, b in zip(n_t, n_c, strict=True)
    ]
    kept = np.asarray([r is None for r in reasons], dtype=bool)
    keys = pd.DataFrame({dims.EXPERIMENT: experiment_values(list(cell_keys[:, 0]))})
    for i, s in enumerate(roles.segments, start=1):
        keys[s] = cell_keys[:, i]
    named = [
        {dims.EXPERIMENT: plain(e), dims.SEGMENT_LABEL: str(label)}
        for e, label in zip(
            keys[dims.EXPERIMENT], segment_labels(keys, roles.segments), strict=True
        )
    ]
    describe = named.__getitem__

    meta: dict[str, Any] = {
        "estimand": settings.estimand,
        "trim": settings.trim,
        "trim_rule": "clip: propensities clipped to [trim, 1 - trim]; no unit dropped",
        "n_folds": settings.n_folds,
        "random_state": settings.random_state,
        "propensity_model": repr(settings.propensity_model),
        "outcome_model": repr(settings.outcome_model),
        "covariates": list(covs),
        "features": plan.feature_names(covs),
        "cluster": roles.cluster,
        "small_sample_factor": (
            "1: V = sum_i psi_i psi_i' (DoubleML IRM)"
            if roles.cluster is None
            else "CR1: G/(G-1), G = distinct clusters in the cell"
        ),
    }
    variables: dict[str, np.ndarray] | None = None
    if roles.cluster is not None:
        variables, extra = _cluster_parts(got, cell_keys, kept, roles, describe)
        meta.update(extra)
    meta.update(overlap_report(stats, plan.experiments, kept, describe, covs, owner=OWNER))
    extra_meta = {
        OWNER: meta,
        "columns": {"experiment": roles.experiment, "treatment": roles.treatment},
        "treated_value": plain(plan.treated),
        "control_value": plain(plan.control),
        "n_rows": sum(p.n_rows for p in parts),
    }
    return finish(
        keys,
        n_t,
        n_c,
        theta,
        got.cov[:, 0],
        reasons,
        outcome=roles.outcome,
        proxies=roles.proxies,
        segments=roles.segments,
        directions=roles.directions,
        engine=engine,
        min_users_per_arm=min_users,
        owner=OWNER,
        experiment_column=roles.experiment,
        extra=extra_meta,
        stacklevel=3,
        design="ipw",
        variables=variables,
    )


def _cluster_parts(
    got: Clustered, cell_keys: np.ndarray, kept: np.ndarray, roles: Any, describe: Any
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Cluster counts (and ``shared_cov`` with segments) per cell; the cluster checks."""
    check_clusters(
        got.n_clusters[:, :2],
        kept,
        np.arange(len(kept)),
        lambda c: cell_name(describe(c)),
        roles,
        None,
        OWNER,
        stacklevel=4,
    )
    variables = {
        designs.N_CLUSTERS_TREAT: got.n_clusters[:, 0],
        designs.N_CLUSTERS_CONTROL: got.n_clusters[:, 1],
        designs.N_CLUSTERS_SHARED: got.shared,
    }
    meta: dict[str, Any] = {"shared_clusters": int(got.shared[kept].sum())}
    if roles.segments:
        noise = shared_noise(
            got.score,
            got.pair_cell,
            got.pair_cluster,
            got.cov[:, 0],
            experiment_codes(cell_keys[:, 0]),
            kept,
        )
        variables[designs.SHARED_COV] = noise.cov
        meta["shared_noise"] = noise.summary()
    return variables, meta

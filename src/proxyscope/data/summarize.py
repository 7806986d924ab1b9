"""``summarize``: user-level rows → per-(experiment × segment cell) effect summaries.

The one entry point for user-level data, on three engines with one contract
(pandas in memory, DuckDB in process and out of core, Spark distributed).

Numerics. Per cell and arm the engine computes the count, the mean of each
metric and the sample covariance (ddof=1) of every pair of metrics, with SQL
``avg`` / ``var_samp`` / ``covar_samp`` (or the two-pass equivalent in
pandas), never raw sums of squares. Every metric is first shifted by a
reference value taken from the data (its first finite value, in row order):
the shift cancels in the difference of means and covariances do not depend
on it, but a metric that sits near 1e9 keeps all its digits — the difference
of two means of ~1e9 would otherwise lose about nine of them.

Checks run as engine queries whose results are a few rows: the schema, a few
distinct treatment values, counts of missing or infinite values (only when
the aggregate shows any), and the aggregate itself. Nothing is collected to
pandas; the caller's data is never modified.

Cluster-randomized experiments (``cluster=``): the engine aggregates per
(cell, arm, cluster) instead, counts and means only, and
:mod:`proxyscope.data.clustered` computes each cell's difference in means and
its joint cluster-robust (CR1) covariance from those rows.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from proxyscope import dims
from proxyscope.data import aggregate, clustered, designs
from proxyscope.data import exposure as exposure_checks
from proxyscope.data.assemble import finish, one_arm_error, too_few_experiments_error
from proxyscope.data.cells import CellEffects
from proxyscope.data.design_source import check_engine_options
from proxyscope.data.engines import (
    ARM,
    CLUSTER,
    EXPOSURE,
    ClusterAggregate,
    N,
    Source,
    key_col,
)
from proxyscope.data.tables import summarize_input
from proxyscope.data.time import Period
from proxyscope.data.time_input import add_time, check_args, read_starts, time_of, with_time_role
from proxyscope.data.validate import (
    Roles,
    check_flag,
    check_min_users,
    check_roles,
    infinite_values_error,
    is_missing,
    missing_columns_error,
    missing_values_error,
    nonnumeric_error,
    plain,
    resolve_treated,
    same_value,
    scalar,
)
from proxyscope.errors import DataError, DataWarning, check_one_of
from proxyscope.options import ENGINES

OWNER = "summarize"
#: Distinct treatment values fetched: two real ones, up to two missing kinds, one spare.
DISTINCT_LIMIT = 5


def summarize(
    data: Any,
    *,
    experiment: str,
    treatment: str,
    outcome: str,
    proxies: Sequence[str] | str,
    segments: Sequence[str] | str = (),
    directions: Mapping[str, str] | None = None,
    time: str | None = None,
    period: Any = None,
    cluster: str | None = None,
    exposure: str | None = None,
    exposure_values: Mapping[str, Any] | None = None,
    engine: str = "duckdb",
    treated_value: Any = None,
    min_users_per_arm: int = 10,
    dropna: bool = False,
    memory_limit: str | None = None,
    threads: int | None = None,
    spark: Any = None,
) -> CellEffects:
    """Summarize user-level rows into per-(experiment × segment cell) effects.

    Parameters
    ----------
    data : DataFrame, path, list of paths, glob, or Spark DataFrame
        One row per user. Engine "pandas": a pandas DataFrame or Parquet/CSV
        path(s). Engine "duckdb": a pandas DataFrame or pyarrow Table (scanned
        in place), or Parquet/CSV path(s), directories or globs, read out of
        core. Engine "spark": a pyspark DataFrame or path(s) read by Spark.
    experiment : str
        Column with the experiment id.
    treatment : str
        Column with the arm; exactly two distinct values.
    outcome : str
        Column with the long-term outcome.
    proxies : list of str
        Columns with the short-term proxies (at least one).
    segments : list of str, default ()
        Segment columns; cells are their crossing within each experiment.
        Empty: one cell per experiment.
    directions : dict, optional
        Good direction per proxy, "higher" (default) or "lower". A "lower"
        proxy is negated, so every effect reads "positive is better".
    time : str, optional
        Column with each experiment's start (DESIGN.md §9): datetime values, ISO
        date strings ("2025-03-01", "2025-03-01T00:00") or numbers; one value per
        experiment (a missing one is an error, even with ``dropna``). Timezone-aware
        values are converted to UTC and stored naive. The cells get the coordinates
        ``start`` and ``period`` and ``meta["time"]`` (see
        :meth:`CellEffects.with_time`, which adds starts to cells built without).
    period : str or sequence, optional
        With ``time``: "week", "month", "quarter" (default for dates), "year",
        "number" (default for numbers: each integer a period) or a list of
        increasing bin edges, as in :meth:`CellEffects.with_time`.
    cluster : str, optional
        Column with the unit of randomization (workspace, team, market) of a
        cluster-randomized experiment. Each cell's effect is unchanged; its
        ``noise_cov`` becomes the joint cluster-robust covariance: per-user
        influence functions of the difference in means summed within each
        cluster of the cell (a cluster with users in both arms sums both), and
        V = G/(G − 1) · Σ_g s_g s_gᵀ with G the distinct clusters in the cell
        (CR1: pyfixest's CRV1 with ``ssc(k_adj=False, G_adj=True)`` for
        ``metric ~ treated`` within the cell; formulas and the linearmodels
        relation in :mod:`proxyscope.data.clustered`). Cells get design
        "cluster" and the variables ``n_clusters_treat``,
        ``n_clusters_control`` and ``n_clusters_shared`` (clusters with users
        in both arms); ``meta["cluster"]`` totals the shared clusters. Fewer
        than 30 clusters in an arm of a kept cell: a DataWarning; fewer than
        2: a DataError. A missing cluster value is a missing key (see ``dropna``).
        With segments, clusters spanning an experiment's cells correlate their
        errors: ``shared_cov`` (the same in every cell of the experiment) is
        the mean over cell pairs of the CR1 cross-cell covariances, made
        positive semidefinite and shrunk so that ``noise_cov − shared_cov``
        stays so (:mod:`proxyscope.data.shared_noise`; ``meta["cluster"]
        ["shared_noise"]``); a DataWarning when it leaves the variance of
        experiments' overall effects understated by more than 1.5x.
    exposure : str, optional
        With ``cluster``: column saying, per user, "direct" (treated),
        "spillover" (a control user exposed to treated users) or
        "pure_control". The cell's effect is then the direct effect (direct −
        pure control; ``n_treat`` direct users, ``n_control`` pure-control
        users), and the variables ``spillover`` (spillover − pure control,
        signed like the effects), ``spillover_cov`` and ``n_spillover`` hold
        the spillover effect, NaN in cells with fewer than two spillover users
        or clusters (listed in ``meta["exposure"]``). See
        :func:`proxyscope.data.exposure.spillover_effects`.
    exposure_values : dict, optional
        The exposure column's value for each role, e.g. ``{"direct": 2,
        "spillover": 1, "pure_control": 0}``; roles not given are their own name.
    engine : {"duckdb", "pandas", "spark"}, default "duckdb"
    treated_value : object, optional
        The treatment column's value for the treated arm. Inferred when the
        values are {0, 1}, {False, True}, or like "control"/"treatment";
        required otherwise.
    min_users_per_arm : int, default 10
        Cells with fewer users in either arm are dropped, listed in
        ``CellEffects.dropped`` and announced with a DataWarning. At least 2.
    dropna : bool, default False
        False: any NaN/NULL in a used column is an error. True: rows with one
        are dropped; the counts per column are in the metadata
        (``meta["dropna"]``) and in a DataWarning.
    memory_limit : str, optional
        DuckDB only: the connection's memory limit, e.g. "500MB". Files larger
        than it are aggregated in a stream.
    threads : int, optional
        DuckDB only: worker threads; by default one. One thread gives the
        same bits on every run, which a fit needs to repeat bit for bit from
        the user table (see ``ProxyModel.fit``). With more, DuckDB's parallel
        aggregation combines partial sums in an order that changes from run
        to run, so the effects can differ in their last bits between runs on
        the same data (measured on the default world: 2 or 3 different results in
        4 processes with 2 threads), in exchange for speed on large data
        (5M rows on 2 cores: about 1.6-2.1 s against 2.4 s with one).
    spark : SparkSession, optional
        Spark only: the session that reads paths (default: the active one,
        else a new local one).

    Returns
    -------
    CellEffects
        ``effect[cell, metric]`` (treatment − control; outcome first, then
        proxies), ``noise_cov[cell, metric, metric_]`` = Cov_T/n_T + Cov_C/n_C
        with sample covariances, ``n_treat``, ``n_control``; cells ordered by
        experiment, then segment values. Experiment ids stay integers when
        they are whole numbers (uint64 beyond int64), strings otherwise.
        Column labels that are not strings are named by their string form.

    Raises
    ------
    ColumnError
        A column is missing (the closest name is suggested), given two roles
        (the cluster and exposure columns included),
        appears twice in the data, differs only in case from another used
        column (DuckDB and Spark cannot tell them apart), a segment column has
        a reserved name or a value holding the label separator " / ", or the
        input files do not agree on the used columns.
    DataTypeError
        A metric column is not numeric, a used column holds complex numbers or
        mixes value types (1 and '1'), or ``data`` is not what the engine reads.
    DataError
        Empty input, a file that cannot be read (named), with ``time`` an
        experiment with several starts or none, or a value that is not a start
        (named with its experiment), a treatment column
        without exactly two values, an experiment with one arm, fewer than two
        experiments, missing or infinite values, or numbers that overflow;
        with ``cluster``, a kept cell with fewer than two clusters in an arm;
        with ``exposure``, values other than the three roles', or direct users
        in the control arm or other users in the treated arm.
    ParameterError
        Unknown engine or direction, ``min_users_per_arm`` < 2, a
        ``treated_value`` that is not in the data or cannot be inferred,
        ``exposure`` without ``cluster``, malformed ``exposure_values``.
    """
    check_one_of(engine, ENGINES, param="engine", owner=OWNER)
    time_column, grouping = check_args(time, period, owner=OWNER)
    roles = check_roles(
        experiment=experiment,
        treatment=treatment,
        outcome=outcome,
        proxies=proxies,
        segments=segments,
        directions=directions,
        owner=OWNER,
        cluster=cluster,
        exposure=exposure,
    )
    roles = with_time_role(roles, time_column)
    exposure_map = exposure_checks.check_exposure_values(
        exposure_values, exposure=roles.exposure, owner=OWNER
    )
    min_users = check_min_users(min_users_per_arm, owner=OWNER)
    drop = check_flag(dropna, param="dropna", owner=OWNER)
    check_engine_options(engine, memory_limit, threads, spark, owner=OWNER)

    data = summarize_input(engine, data, roles, owner=OWNER)
    source = open_source(engine, data, memory_limit=memory_limit, threads=threads, spark=spark)
    try:
        return _summarize(source, roles, treated_value, min_users, drop, exposure_map, grouping)
    finally:
        source.close()


def open_source(
    engine: str,
    data: Any,
    *,
    memory_limit: str | None = None,
    threads: int | None = None,
    spark: Any = None,
) -> Source:
    """Wrap ``data`` for ``engine`` (a clear DataTypeError when it cannot read it)."""
    if engine == "pandas":
        from proxyscope.data.engines.pandas_engine import PandasSource

        return PandasSource(data, owner=OWNER)
    if engine == "duckdb":
        from proxyscope.data.engines.duckdb_engine import DuckDBSource

        return DuckDBSource(data, memory_limit=memory_limit, threads=threads, owner=OWNER)
    from proxyscope.data.engines.spark_engine import SparkSource

    return SparkSource(data, spark=spark, owner=OWNER)


def _summarize(
    source: Source,
    roles: Roles,
    treated_value: Any,
    min_users: int,
    dropna: bool,
    exposure_values: Mapping[str, Any] | None = None,
    period: Period | None = None,
) -> CellEffects:
    available = source.columns()
    err = missing_columns_error(roles, available)
    if err is not None:
        raise err
    select = getattr(source, "select", None)
    if select is not None:
        select(roles.columns)
    raw = source.distinct(roles.treatment, DISTINCT_LIMIT)
    if not raw:
        raise DataError(f"The data passed to {OWNER} is empty: it has no rows.")
    for m in roles.metrics:
        kind, found = source.kind(m)
        if kind == "other":
            raise nonnumeric_error(m, roles.role_of(m), found, source.nonnumeric_example(m))
    values = [v for v in raw if not is_missing(v)]
    treated, control = resolve_treated(
        values, treated_value, column=roles.treatment, more=len(raw) >= DISTINCT_LIMIT
    )
    starts = read_starts(source, roles, owner=OWNER)

    metrics = list(roles.metrics)
    first = source.first_finite(metrics)
    refs = [_or_zero(first[m]) for m in metrics]
    keys = list(roles.keys)
    rows: ClusterAggregate | None = None
    if roles.cluster is None:
        agg = source.aggregate(keys, roles.treatment, metrics, refs, drop_missing=False)
    else:
        rows = _cluster_rows(source, roles, refs, drop_missing=False)
        agg = rows.arms(len(keys))
    n_rows = int(agg[N].sum())

    # Missing keys: their groups come back with a missing key value.
    key_names = [*keys, roles.treatment]
    key_cols = [key_col(i) for i in range(len(keys))] + [ARM]
    key_missing = {}
    for name, c in zip(key_names, key_cols, strict=True):
        miss = agg[c].map(is_missing).to_numpy(dtype=bool)
        key_missing[name] = int(agg[N].to_numpy()[miss].sum())
    if rows is not None:
        for name, label in zip(roles.labels, (CLUSTER, EXPOSURE), strict=False):
            key_missing[name] = int(rows.n[rows.labels[label].missing()].sum())

    # Missing or infinite metric values show in the aggregate; only then count them.
    metric_missing = dict.fromkeys(metrics, 0)
    if aggregate.suspicious(agg, len(metrics)):
        bad = source.bad_counts(metrics)
        infinite = {m: bad[m][1] for m in metrics}
        if any(infinite.values()):
            raise infinite_values_error(infinite, roles)
        metric_missing = {m: bad[m][0] for m in metrics}
        if not any(metric_missing.values()):
            raise DataError(
                f"{OWNER}: the per-cell means or covariances of {metrics} overflow "
                "double precision; rescale the metrics."
            )
    missing = {**key_missing, **metric_missing}
    extra: dict[str, Any] = {}
    if any(missing.values()):
        if not dropna:
            raise missing_values_error({c: missing.get(c, 0) for c in roles.columns}, roles)
        if rows is not None:
            if any(metric_missing.values()):
                rows = _cluster_rows(source, roles, refs, drop_missing=True)
            labels = list(rows.labels.values())
            rows = rows.take(~np.logical_or.reduce([f.missing() for f in labels]))
            agg = rows.arms(len(keys))
        elif any(metric_missing.values()):
            agg = source.aggregate(keys, roles.treatment, metrics, refs, drop_missing=True)
        complete = ~np.logical_or.reduce([agg[c].map(is_missing).to_numpy(bool) for c in key_cols])
        agg = agg[complete].reset_index(drop=True)
        n_used = int(agg[N].sum())
        by_col = {c: int(missing[c]) for c in roles.columns if missing.get(c)}
        extra["dropna"] = {"rows_dropped": n_rows - n_used, "missing_by_column": by_col}
        shown = ", ".join(f"{c!r}: {n}" for c, n in by_col.items())
        warnings.warn(
            f"{OWNER}(dropna=True) dropped {n_rows - n_used} of {n_rows} rows with missing "
            f"values (NaN/NULL per column: {shown}).",
            DataWarning,
            stacklevel=3,
        )
    else:
        n_used = n_rows

    is_t = np.asarray([same_value(scalar(v), treated) for v in agg[ARM]], dtype=bool)
    exp_col = key_col(0)
    arms_by_exp: dict[Any, set[bool]] = {}
    for e, t, n in zip(agg[exp_col], is_t, agg[N], strict=True):
        if n > 0:
            arms_by_exp.setdefault(scalar(e), set()).add(bool(t))
    one_arm = [e for e, a in arms_by_exp.items() if len(a) < 2]
    if one_arm:
        raise one_arm_error(
            sorted(one_arm, key=str), experiment_column=roles.experiment, arm_column=roles.treatment
        )
    if len(arms_by_exp) < 2:
        raise too_few_experiments_error(list(arms_by_exp), experiment_column=roles.experiment)

    design: str = designs.AB
    variables: dict[str, np.ndarray] | None = None
    if rows is None:
        cells = aggregate.pivot(agg, is_t, len(keys), len(metrics))
        key_values, n_t, n_c = cells["keys"], cells["n_t"], cells["n_c"]
        reasons: list[str | None] = [
            None if (a >= min_users and b >= min_users) else f"below min_users_per_arm={min_users}"
            for a, b in zip(n_t, n_c, strict=True)
        ]
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            effect = cells["mean_t"] - cells["mean_c"]
            noise = cells["cov_t"] / n_t[:, None, None] + cells["cov_c"] / n_c[:, None, None]
    else:
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            got = clustered.cell_effects(
                rows,
                roles,
                treated,
                exposure_values=exposure_values,
                min_users=min_users,
                owner=OWNER,
            )
        key_values, n_t, n_c, reasons = got.keys, got.n_treat, got.n_control, got.reasons
        effect, noise, variables, design = got.effect, got.noise_cov, got.variables, designs.CLUSTER
        extra.update(got.meta)
    keys_frame = pd.DataFrame(
        {name: key_values[:, i] for i, name in enumerate([dims.EXPERIMENT, *roles.segments])}
    )
    extra.update(
        {
            "columns": {"experiment": roles.experiment, "treatment": roles.treatment},
            "treated_value": plain(treated),
            "control_value": plain(control),
            "n_rows": n_used,
            "source": source.describe(),
        }
    )
    built = finish(
        keys_frame,
        n_t,
        n_c,
        effect,
        noise,
        reasons,
        outcome=roles.outcome,
        proxies=roles.proxies,
        segments=roles.segments,
        directions=roles.directions,
        engine=source.engine,
        min_users_per_arm=min_users,
        owner=OWNER,
        experiment_column=roles.experiment,
        extra=extra,
        stacklevel=4,
        design=design,
        variables=variables,
    )
    return add_time(built, starts, period, column=time_of(roles), owner=OWNER)


def _cluster_rows(
    source: Source, roles: Roles, refs: list[float], drop_missing: bool
) -> ClusterAggregate:
    assert roles.cluster is not None
    return source.cluster_aggregate(
        list(roles.keys),
        roles.treatment,
        roles.cluster,
        list(roles.metrics),
        refs,
        drop_missing,
        exposure=roles.exposure,
    )


def _or_zero(x: float | None) -> float:
    return 0.0 if x is None else x

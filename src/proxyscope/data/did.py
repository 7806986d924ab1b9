"""Difference in differences for staged rollouts: 2×2 and staggered adoption (design "did").

A feature reaches units (markets, teams, workspaces) in waves on a rollout
calendar, not by a coin flip. Early waves differ from late ones (their levels
cancel), and everything moves over the calendar (the trend cancels): the
effect is how much more treated units changed than comparison units over the
same periods. Per experiment × segment cell, for every metric at once:

- group-time effects (Callaway and Sant'Anna 2021, unconditional, no
  covariates): for the cohort g of units first treated in period g and a
  period t, ATT(g, t) = mean_{i in g}(Y_it − Y_ib) − mean_{i in C}(Y_it − Y_ib),
  with base b = g − 1 (the last period before g) when t ≥ g, and b = t − 1
  when t < g (a pre-period "placebo", CS's varying base). Comparison units C:
  never treated (``control="never"``) or, in addition, units not yet treated
  in t and in b (``"not_yet"``: first treated after max(t, b), cohort g left
  out). A pair (g, t) is used when C holds at least two units;
- aggregation (CS's "simple"): θ = Σ_k w_k ATT(g_k, t_k) over the post pairs
  k (t_k ≥ g_k), w_k = n_{g_k} / Σ_k' n_{g_k'}, n_g the units of cohort g in
  the cell. When every post pair is used, θ is the mean over the cell's
  treated (unit, post-period) pairs of the unit's effect.

A 2×2 is one cohort and two periods: θ = (B − A) − (D − C) of the four means.

Influence functions (one column per metric, scaled so that θ̂ − θ ≈ Σ_i ψ_i):
per pair, ψ_i^k = (ΔY_i − mean_g ΔY) / n_g for i in g_k and
−(ΔY_i − mean_C ΔY) / n_C for i in C; for θ, ψ_i = Σ_k w_k ψ_i^k plus the
estimated weights' term (CS's ``wif``), which reduces to
Σ_{k: g_k = g_i} (ATT_k − θ) / Σ_k n_{g_k} for a unit of a treated cohort and 0
otherwise. Scores s_c = Σ_{i in c} ψ_i per cluster c (the unit itself, or the
``cluster`` column), and V = c · Σ_c s_c s_cᵀ with c = G / (G − 1), G the
distinct clusters of the units the cell's estimate uses (CR1). A unit's score
sums its whole time series, so serial correlation within a unit (rolling
averages, persistent shocks) is covered. For a 2×2, per metric, θ and V equal
the coefficient and CRV1 variance of pyfixest's two-way fixed effects
regression ``y ~ treat_post | unit + period`` with ``vcov={"CRV1": unit}`` and
``ssc=pyfixest.ssc(k_adj=False, G_adj=True)`` (equivalently
``ssc(k_fixef="none")``): no (N − 1)/(N − K) factor. (Under staggered
adoption that regression is biased by comparisons of late with early treated
units; θ is not.)

Pre-trend check, per cell and metric: the pre-period effects ATT(g, t)
(t < g, base t − 1: the differential change from one period to the next;
the last ``pre_periods`` of each cohort) averaged with the same cohort-size
weights (and weights' influence) as θ, i.e. the mean differential drift per
period; t = mean / se with its CR1 se, two-sided p from Student's t with
G − 1 degrees of freedom. The cell's p-value is the Bonferroni minimum over the
tested metrics, min(1, m · min_j p_j); cells below ``pretrend_level`` are
named in a DataWarning. The averaged drift targets the usual violation (a
differential trend) and stays sized with few units: on the simulated rollout
world (cohorts of 7–15 units per cell) it rejected 4.6% of null metric-cells
at 5%, where a joint Wald test of every pre-period ATT(g, t), even read as
Hotelling's F, rejected 10%.

Measured (``benchmarks/bench_did.py``, 200 simulated rollout worlds, 4,000
cells per row): with 80–140 units per cell, 90% intervals held the exact truth
in 90–91% of cells per metric (mean z² 0.97–1.03); with 24–42 units per cell
(cohorts of 7–15 units) in 88–90% (mean z² 1.03–1.09): CR1 does not undo the
(n_g − 1)/n_g shrinkage of small cohorts' variances.

Assumptions, and how they break (what to do):

- parallel trends: without treatment, treated and comparison units would
  have moved alike. A differential drift (early waves picked because they were
  growing) is taken for an effect. The pre-trend check is the guard; with a
  failing cell, shorten the pre-window, find better comparison units, or use
  synthetic control;
- no anticipation: units that act before their first treated period
  contaminate the pre-period; set ``first_treated`` earlier by the
  anticipation window;
- no shock that hits only the treated units after launch (a campaign in the
  wave-1 markets): no pre-trend check can see it; audit the calendar;
- fixed composition: a unit's segment and cluster do not change; units are
  observed in every period (balanced panel).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from proxyscope.data import designs
from proxyscope.data.assemble import cell_order, finish, too_few_experiments_error
from proxyscope.data.cells import CellEffects, segment_labels
from proxyscope.data.design_source import check_engine_options, choose_engine
from proxyscope.data.did_checks import (
    OWNER,
    DidRoles,
    check_did_roles,
    check_kept,
    check_settings,
    pretrend_report,
)
from proxyscope.data.did_fit import CellFit, fit_cell
from proxyscope.data.did_panel import Block, experiment_block, segment_key_frame
from proxyscope.data.did_source import open_panel
from proxyscope.data.shared_noise import experiment_codes, shared_noise
from proxyscope.data.validate import plain
from proxyscope.errors import DataWarning


def did(
    data: Any,
    *,
    experiment: str,
    unit: str,
    period: str,
    first_treated: str,
    outcome: str,
    proxies: Sequence[str] | str,
    segments: Sequence[str] | str = (),
    directions: Mapping[str, str] | None = None,
    control: str = "never",
    cluster: str | None = None,
    pre_periods: int | None = None,
    pretrend_level: float = 0.05,
    min_units: int = 5,
    engine: str | None = None,
    memory_limit: str | None = None,
    threads: int | None = None,
    spark: Any = None,
) -> CellEffects:
    """Difference-in-differences effects of staged rollouts per experiment × segment cell.

    The estimator, its covariance (CR1), the pre-trend check, the assumptions
    and how they break are in :mod:`proxyscope.data.did`.

    Parameters
    ----------
    data : DataFrame, path, list of paths, glob, pyarrow Table or Spark DataFrame
        The panel: one row per (experiment, unit, period), e.g. a unit's users
        averaged over the period; every unit observed in every period of its
        experiment (a balanced panel). Engine "pandas": a pandas DataFrame, or
        Parquet/CSV path(s) read into one. Engine "duckdb": a pandas DataFrame
        or pyarrow Table (scanned in place), or Parquet/CSV path(s),
        directories or globs, read out of core. Engine "spark": a pyspark
        DataFrame or path(s) read by Spark. Not modified.
    experiment : str
        Column with the experiment (rollout) id; at least two experiments.
    unit : str
        Column with the unit that is treated (market, team, workspace); ids
        need only be unique within an experiment.
    period : str
        Numeric column with the period (week number, day index).
    first_treated : str
        Numeric column with the period in which the unit's treatment starts
        (one of its experiment's periods), NaN (or +inf) for a unit never
        treated; fixed within a unit. A unit first treated after the last
        period counts as never treated; one treated from the first period on
        has no pre-period and is left out (a DataWarning, counted in meta).
        Callaway–Sant'Anna's "0 = never" convention must be turned into NaN.
    outcome : str
        Column with the long-term outcome.
    proxies : list of str
        Columns with the short-term proxies (at least one).
    segments : list of str, default ()
        Segment columns, fixed within a unit (a DataError otherwise); cells are
        their crossing within each experiment, each with its own treated and
        comparison units. Empty: one cell per experiment.
    directions : dict, optional
        Good direction per proxy, "higher" (default) or "lower" (negated).
    control : {"never", "not_yet"}, default "never"
        Comparison units: never treated, or also those not yet treated.
    cluster : str, optional
        Column with independent clusters of units (a unit's cluster is fixed);
        default: each unit is its own cluster. With clusters spanning an
        experiment's segment cells, ``shared_cov`` holds the part of the
        cells' errors they share (as in :mod:`proxyscope.data.shared_noise`).
    pre_periods : int, optional
        Pre-periods per cohort in the pre-trend test (the last ones before its
        first treated period); default all (from the experiment's second period).
    pretrend_level : float, default 0.05
        Cells whose pre-trend p-value is below it are named in a DataWarning.
    min_units : int, default 5
        Cells with fewer treated or comparison units are dropped (listed in
        ``CellEffects.dropped``, a DataWarning). At least 2.
    engine : {"pandas", "duckdb", "spark"}, optional
        Where the panel is checked and laid out (:mod:`proxyscope.data.did_source`).
        Default: "pandas" for a pandas DataFrame, "spark" for a Spark DataFrame,
        "duckdb" for paths and Arrow tables. DuckDB and Spark check the panel
        with aggregations and pass it to the estimator one batch of
        experiments at a time (sorted by unit and period), so memory holds one
        batch (about 2M rows), never the whole panel; every engine gives the
        same results, bit for bit, for the same rows.
    memory_limit : str, optional
        DuckDB only: the connection's memory limit, e.g. "1GB".
    threads : int, optional
        DuckDB only: worker threads; by default one (as in ``summarize``).
    spark : SparkSession, optional
        Spark only: the session that reads paths (default: the active one,
        else a new local one).

    Returns
    -------
    CellEffects
        Design "did"; ``effect`` θ per metric (good directions), ``noise_cov``
        V, ``n_treat`` / ``n_control`` the treated and comparison units used;
        variables ``n_clusters_treat``, ``n_clusters_control`` and
        ``n_clusters_shared`` (clusters with units on both sides).
        ``meta["did"]``: the settings, the small-sample factor, counts of
        units left out, and per kept cell (experiment, segment label) the
        units, clusters, cohorts, pairs, the mean pre-period drift per metric
        and its p-values (per metric and for the cell; None when untestable).

    Raises
    ------
    ColumnError, DataTypeError
        A missing column, a column in two roles, a non-numeric metric, period
        or first_treated column, data that the engine does not read.
    DataError
        Missing or infinite values, duplicated or missing unit-periods, a
        segment, cluster or first-treated value that changes within a unit,
        a first-treated value between periods, an experiment with one period,
        fewer than two experiments (after dropping cells), a kept cell with
        fewer than two clusters.
    ParameterError
        Bad ``control``, ``min_units``, ``pre_periods``, ``pretrend_level``,
        direction, ``engine`` or engine option.
    """
    roles = check_did_roles(
        experiment=experiment,
        unit=unit,
        period=period,
        first_treated=first_treated,
        outcome=outcome,
        proxies=proxies,
        segments=segments,
        directions=directions,
        cluster=cluster,
    )
    control, min_units, pre_periods, level = check_settings(
        control, min_units, pre_periods, pretrend_level
    )
    engine = choose_engine(engine, data, owner=OWNER)
    check_engine_options(engine, memory_limit, threads, spark, owner=OWNER)
    panel = open_panel(engine, data, roles, memory_limit=memory_limit, threads=threads, spark=spark)
    try:
        panel.check()
        got = _fit_experiments(panel.experiments(), roles, control, pre_periods)
    finally:
        panel.close()
    exps, segs, periods, fits, always, late = got
    if len(always) < 2:
        raise too_few_experiments_error(list(always), experiment_column=roles.experiment)
    if any(always.values()):
        shown = ", ".join(f"{e!r}: {n}" for e, n in always.items() if n)
        warnings.warn(
            f"{OWNER}: {sum(always.values())} unit(s) are treated from their experiment's "
            f"first period on and have no pre-period; they are left out ({shown}).",
            DataWarning,
            stacklevel=2,
        )

    m = len(roles.metrics)
    keys = segment_key_frame(exps, segs, roles)
    counts = [f.counts if f is not None else None for f in fits]

    def count(name: str) -> np.ndarray:
        return np.array([0 if c is None else c[name] for c in counts], dtype=np.int64)

    n_t, n_c = count("treated_units"), count("comparison_units")
    reasons: list[str | None] = [
        "no post-period effect with two comparison units"
        if f is None
        else (None if min(a, b) >= min_units else f"below min_units={min_units}")
        for f, a, b in zip(fits, n_t, n_c, strict=True)
    ]
    kept = np.array([r is None for r in reasons])
    labels = segment_labels(keys, roles.segments)
    order = [int(c) for c in cell_order(keys) if kept[c]]
    check_kept(keys, labels, counts, order, roles, min_units)
    effect = np.zeros((len(fits), m))
    cov = np.zeros((len(fits), m, m))
    for c, f in enumerate(fits):
        if f is not None:
            effect[c], cov[c] = f.effect, f.cov
    variables = {
        designs.N_CLUSTERS_TREAT: count("clusters_treated"),
        designs.N_CLUSTERS_CONTROL: count("clusters_comparison"),
        designs.N_CLUSTERS_SHARED: count("clusters_shared"),
    }
    rows_meta, failing = pretrend_report(fits, keys, labels, order, periods, roles, level)
    meta: dict[str, Any] = {
        "unit": roles.unit,
        "period": roles.period,
        "first_treated": roles.first_treated,
        "cluster": roles.cluster,
        "control": control,
        "min_units": min_units,
        "pre_periods": pre_periods,
        "pretrend_level": level,
        "aggregation": "simple: post-period ATT(g,t) weighted by cohort size n_g (Callaway-"
        "Sant'Anna), with the estimated weights' influence function",
        "small_sample_factor": "CR1: G/(G-1), G = distinct clusters (units unless cluster=) "
        "among the units the cell's estimate uses",
        "pretrend_test": "per metric: the pre-period ATT(g,t) (base t-1) averaged with "
        "theta's weights, t = mean / CR1 se against Student's t with G-1 df; cell: "
        "Bonferroni minimum over metrics",
        "always_treated_units": always,
        "late_treated_units": late,
        "pretrend_failing_cells": failing,
        "cells": rows_meta,
    }
    if roles.cluster is not None and roles.segments:
        _shared(fits, keys, kept, variables, meta, m)
    return finish(
        keys,
        n_t,
        n_c,
        effect,
        cov,
        reasons,
        outcome=roles.outcome,
        proxies=roles.proxies,
        segments=roles.segments,
        directions=roles.directions,
        engine=engine,
        min_users_per_arm=min_units,
        owner=OWNER,
        experiment_column=roles.experiment,
        extra={"did": meta},
        stacklevel=3,
        design="did",
        variables=variables,
    )


def _fit_experiments(
    chunks: Iterator[tuple[Any, pd.DataFrame]],
    roles: DidRoles,
    control: str,
    pre_periods: int | None,
) -> tuple[list[Any], list[Any], list[np.ndarray], list[CellFit | None], dict, dict]:
    """Each experiment's cells fitted as its rows arrive (one block in memory at a time):
    per cell its experiment, segment values, periods and fit (None without a post pair);
    per experiment the units treated from the first period on, and those treated late."""
    exps: list[Any] = []
    segs: list[Any] = []
    periods: list[np.ndarray] = []
    fits: list[CellFit | None] = []
    always: dict[Any, int] = {}
    late: dict[Any, int] = {}
    first_code = 0
    for label, chunk in chunks:
        block = experiment_block(chunk, label, roles, first_code)
        first_code = int(block.cluster.max()) + 1
        always[plain(label)] = int((block.cohort == 0).sum())
        late[plain(label)] = block.late
        for seg, rows in _cells(block):
            rows = rows[block.cohort[rows] > 0]
            exps.append(block.experiment)
            segs.append(seg)
            periods.append(block.periods)
            args = (block.y[rows], block.cohort[rows], block.cluster[rows])
            fits.append(fit_cell(*args, control, pre_periods) if len(rows) else None)
    return exps, segs, periods, fits, always, late


def _cells(block: Block) -> list[tuple[tuple[Any, ...], np.ndarray]]:
    """(segment values, unit positions) per segment cell of one experiment."""
    code, uniques = pd.factorize(pd.Series(block.segment, dtype=object))
    return [(uniques[i], np.flatnonzero(code == i)) for i in range(len(uniques))]


def _shared(
    fits: Sequence[CellFit | None],
    keys: pd.DataFrame,
    kept: np.ndarray,
    variables: dict[str, np.ndarray],
    meta: dict[str, Any],
    m: int,
) -> None:
    """``shared_cov`` when clusters span an experiment's kept cells (else nothing)."""
    fit_of = [(c, f) for c, f in enumerate(fits) if f is not None and kept[c]]
    cell_exp = experiment_codes(keys["experiment"].to_numpy(dtype=object))
    pair_cell = np.concatenate([np.full(len(f.clusters), c) for c, f in fit_of])
    pair_cluster = np.concatenate([f.clusters for _, f in fit_of])
    pairs = pd.DataFrame({"e": cell_exp[pair_cell], "g": pair_cluster, "c": pair_cell})
    if not (pairs.groupby(["e", "g"])["c"].nunique() > 1).any():
        return
    own = np.zeros((len(fits), m, m))
    for c, f in fit_of:
        own[c] = f.cov
    score = np.concatenate([f.score for _, f in fit_of])
    shared = shared_noise(score, pair_cell, pair_cluster, own, cell_exp, kept)
    variables[designs.SHARED_COV] = shared.cov
    meta["shared_noise"] = shared.summary()

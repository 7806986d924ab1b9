"""Synthetic control: global launches read against a weighted mix of donor units.

A global launch (a market, a region, a wave of workspaces) has no randomized
control. Per experiment one unit is treated from its ``treatment_start`` on;
the other units of the experiment are donors that were never treated. The
synthetic control is the convex combination of donors whose pre-launch paths
match the treated unit's; after the launch the gap between the two is the
effect (Abadie, Diamond & Hainmueller 2010; Abadie 2021).

Formulas, per (experiment × segment) cell, with Y[u, t, m] the panel's value
of metric m for unit u (u = 0 treated, 1..J donors) in period t, T0 periods
before the launch and T1 from it on:

- fit: w = argmin Σ_{t < T0} Σ_{m in F} ((Y[0,t,m] − Σ_j w_j Y[j,t,m]) / s_m)²
  over the simplex (w_j >= 0, Σ_j w_j = 1), solved with scipy's SLSQP
  (analytic gradient, ftol 1e-12; :mod:`proxyscope.data.synthetic_weights`).
  F is ``fit_metric`` (default: every metric, stacked) and s_m the root mean
  square of metric m's pre-launch deviations from the per-period mean over
  the cell's units, so each metric weighs alike whatever its unit; the common
  path of all units cancels because the weights sum to one;
- gap of every metric with the same weights: G[t, m] = Y[0,t,m] − Σ_j w_j Y[j,t,m];
- effect: d_m = mean over the T1 post-launch periods of G[t, m].

Covariance (in-space placebos). Each donor j in turn plays the treated unit
against the other J − 1 donors (the treated unit left out), with the same
procedure and scales; its post-launch mean gap g_j (every metric) is a draw
of the estimator's error under no effect. V = c · Σ_j g_j g_jᵀ with c = 1/J:
the uncentered mean of the placebo outer products, each placebo's gap vector
reused for all metrics, so the cross-metric blocks come with the variances.

This is an approximation. It holds when the treated unit's error is
exchangeable with the donors' (the launch market is like the others and
inside the donors' convex hull, donors unaffected by the launch, no shocks
peculiar to a donor after it). It is noisy with few donors (V has J
placebos, so J − 1 or so degrees of freedom, rank <= J) and too small when
the treated unit lies outside the donors' hull: its pre-launch fit is then
worse than the placebos' and its gap carries a bias the placebos do not
show (flagged below). Placebos fit J − 1 donors where the treated unit fits
J, which makes V slightly conservative.

Diagnostics, per cell in ``meta["synthetic_control"]["cells"]``: the treated
unit, the donors and their weights, the largest weight and the effective
number of donors 1/Σw², the pre-launch RMSE of every metric (raw units) and
of the standardized fit, the placebo p-value of every metric and of the fit:
(1 + #{j : r_j >= r_0}) / (J + 1) with r the ratio of post- to pre-launch
RMSE of the gap path (Abadie 2010), and whether SLSQP reported success.
A cell is ``poor_fit`` when the outcome's pre-launch RMSE exceeds both the
absolute post-launch gap of the outcome and ``POOR_FIT_MULTIPLE`` (2) times
the median placebo's pre-launch RMSE of the outcome: the fit error is as
large as the effect and worse than the donors typically achieve, so the
gap may be fit error and the placebo covariance too small. Poor fits, fewer
than ``FEW_DONORS`` (20) donors and optimizer failures each give one
DataWarning naming the cells (:func:`~proxyscope.data.synthetic_report.warn_cells`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from proxyscope import dims
from proxyscope.data.assemble import cell_order, finish, too_few_experiments_error
from proxyscope.data.cells import CellEffects
from proxyscope.data.synthetic_checks import Cell, check_min_donors, prepare
from proxyscope.data.synthetic_report import POOR_FIT_MULTIPLE, warn_cells
from proxyscope.data.synthetic_weights import SLSQP_OPTIONS, simplex_weights
from proxyscope.data.validate import plain
from proxyscope.errors import DataError

OWNER = "synthetic_control"
DESIGN = "synthetic_control"


@dataclass(frozen=True)
class CellFit:
    """The effect, placebo covariance and diagnostics of one cell."""

    effect: np.ndarray  # (M,)
    cov: np.ndarray  # (M, M)
    row: dict[str, Any]  # JSON-able diagnostics, metrics in order


def _gap_path(values: np.ndarray, target: int, pool: np.ndarray, w: np.ndarray) -> np.ndarray:
    """G[t, m] of unit ``target`` against the donors ``pool`` weighted by ``w``."""
    return np.asarray(values[target] - np.tensordot(w, values[pool], axes=1))


def _rmse(gap: np.ndarray, axis: int = 0) -> np.ndarray:
    return np.asarray(np.sqrt(np.mean(gap**2, axis=axis)))


def fit_cell(values: np.ndarray, n_pre: int, fit: Sequence[int]) -> CellFit:
    """Fit the treated unit (row 0) and every placebo (see the module docstring)."""
    n_units = values.shape[0]
    fit = list(fit)
    pre = values[:, :n_pre][:, :, fit]
    scale = _rmse((pre - pre.mean(axis=0)).reshape(-1, len(fit)))
    scale = np.where(scale > 0, scale, 1.0)
    stacked = (pre / scale).reshape(n_units, -1)  # one row per unit

    def run(target: int, pool: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
        w, ok = simplex_weights(stacked[target], stacked[pool].T)
        return w, _gap_path(values, target, pool, w), ok

    donors = np.arange(1, n_units)
    weights, gap, converged = run(0, donors)
    n_donors = len(donors)
    placebo = np.empty((n_donors, values.shape[2]))
    ratio = np.empty((n_donors + 1, values.shape[2] + 1))
    pre_outcome = np.empty(n_donors)

    def ratios(path: np.ndarray) -> np.ndarray:
        # Per metric, then the fit: per period the RMS over the standardized fit metrics.
        fitted = np.sqrt(np.mean((path[:, fit] / scale) ** 2, axis=1))
        both = np.column_stack([path, fitted])
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(_rmse(both[n_pre:]) / _rmse(both[:n_pre]))

    ratio[0] = ratios(gap)
    for i, j in enumerate(donors):
        _, path, ok = run(int(j), donors[donors != j])
        converged = converged and ok
        placebo[i] = path[n_pre:].mean(axis=0)
        ratio[i + 1] = ratios(path)
        pre_outcome[i] = _rmse(path[:n_pre, 0])
    cov = placebo.T @ placebo / n_donors
    effect = gap[n_pre:].mean(axis=0)
    p_value = (1.0 + (ratio[1:] >= ratio[0]).sum(axis=0)) / (n_donors + 1.0)
    pre_rmse = _rmse(gap[:n_pre])
    fit_rmse = float(_rmse((gap[:n_pre, fit] / scale).reshape(-1)))
    poor = bool(
        pre_rmse[0] > abs(effect[0]) and pre_rmse[0] > POOR_FIT_MULTIPLE * np.median(pre_outcome)
    )
    row = {
        "n_donors": n_donors,
        "pre_periods": n_pre,
        "post_periods": int(values.shape[1] - n_pre),
        "fit_rmse": fit_rmse,
        "pre_rmse": pre_rmse.tolist(),
        "placebo_pre_rmse_median": float(np.median(pre_outcome)),
        "p_value": p_value[:-1].tolist(),
        "p_value_fit": float(p_value[-1]),
        "max_weight": float(weights.max()),
        "effective_donors": float(1.0 / np.sum(weights**2)),
        "weights": weights.tolist(),
        "poor_fit": poor,
        "converged": converged,
    }
    return CellFit(effect, cov, row)


def synthetic_control(
    panel: pd.DataFrame,
    *,
    experiment: str,
    unit: str,
    period: str,
    treated: str,
    treatment_start: Any,
    outcome: str,
    proxies: Sequence[str] | str,
    segments: Sequence[str] | str = (),
    directions: Mapping[str, str] | None = None,
    fit_metric: str | Sequence[str] | None = None,
    min_donors: int = 10,
) -> CellEffects:
    """Per-(experiment × segment cell) effects of global launches by synthetic control.

    Estimator, covariance, small-sample factor, assumptions and diagnostics are
    in the module docstring (:mod:`proxyscope.data.synthetic_control`); in short,
    simplex donor weights fitted on the pre-launch paths, the mean post-launch
    gap of every metric with those weights, and the joint covariance
    V = (1/J) Σ_j g_j g_jᵀ of the J in-space placebos' gap vectors, an
    approximation that assumes the treated unit exchangeable with its donors.

    Parameters
    ----------
    panel : pandas.DataFrame
        One row per experiment × segment cell × unit × period, holding the
        unit's value of each metric in that period (a mean over its users).
        Every unit of a cell needs every period of the cell.
    experiment : str
        Column with the experiment id (at least two experiments).
    unit : str
        Column with the unit (market, region, workspace): the treated unit and
        its donors.
    period : str
        Column with the period, numbers or dates (ordered).
    treated : str
        Boolean (or 0/1) column, True on the rows of the experiment's treated
        unit and False on its donors'; exactly one treated unit per experiment,
        constant over its rows. Donors are never treated in the panel's window.
    treatment_start : str, dict or scalar
        The first treated period: the name of a column holding it (one value
        per experiment), a dict {experiment: period}, or one period for every
        experiment. Periods before it are the pre-launch fit window; it and
        later ones are averaged into the effect. A string is always a column
        name.
    outcome : str
        Column with the long-term outcome.
    proxies : list of str
        Columns with the short-term proxies (at least one).
    segments : list of str, default ()
        Segment columns: each (experiment, segment cell) is its own panel of
        units, fitted separately. Empty: one cell per experiment.
    directions : dict, optional
        Good direction per proxy, "higher" (default) or "lower"; a "lower"
        proxy is negated so every effect reads "positive is better".
    fit_metric : str or list of str, optional
        The metric(s) whose pre-launch paths the weights match. Default: every
        metric, each standardized (see the module docstring), since one weight
        vector serves every metric's gap; a single name gives the seed's
        outcome-only fit.
    min_donors : int, default 10
        Cells with fewer donors are dropped (listed in ``CellEffects.dropped``
        with a DataWarning); at least the number of metrics + 1.

    Returns
    -------
    CellEffects
        ``effect`` (mean post-launch gap, outcome then proxies, good
        directions), ``noise_cov`` (the placebo covariance), ``n_treat`` = 1 and
        ``n_control`` = J donors per cell; design "synthetic_control";
        ``meta["synthetic_control"]`` holds the settings and a row of
        diagnostics per kept cell (with ``experiment`` and ``segment``).

    Raises
    ------
    ColumnError
        A column missing from the panel (the closest name suggested), given two
        roles, or repeated in the panel.
    DataTypeError
        ``panel`` not a DataFrame; a metric not numeric; periods not numbers or dates.
    DataError
        An empty panel; missing or infinite values; an experiment without
        exactly one treated unit; ``treated`` not boolean or changing within a
        unit; repeated (cell, unit, period) rows; an unbalanced cell; fewer than
        two pre-launch or no post-launch periods; fewer than two experiments.
    ParameterError
        Bad directions, ``fit_metric``, ``min_donors`` or ``treatment_start``.
    """
    n_metrics = 1 + (1 if isinstance(proxies, str) else len(list(proxies)))
    min_d = check_min_donors(min_donors, n_metrics, owner=OWNER)
    got = prepare(
        panel,
        experiment=experiment,
        unit=unit,
        period=period,
        treated=treated,
        treatment_start=treatment_start,
        outcome=outcome,
        proxies=proxies,
        segments=segments,
        directions=directions,
        fit_metric=fit_metric,
        min_donors=min_d,
        owner=OWNER,
    )
    roles = got.roles
    keys = pd.DataFrame(
        [cell.key for cell in got.cells], columns=[dims.EXPERIMENT, *roles.segments]
    )
    order = cell_order(keys)
    cells = [got.cells[i] for i in order]
    keys = keys.iloc[order].reset_index(drop=True)
    m, n = len(roles.metrics), len(cells)
    effect = np.full((n, m), np.nan)
    cov = np.full((n, m, m), np.nan)
    n_control = np.zeros(n, dtype=np.int64)
    rows: list[dict[str, Any]] = []
    # Thousands of tiny fits: BLAS threads only contend (100x slower on a busy machine).
    with threadpool_limits(limits=1):
        for c, cell in enumerate(cells):
            if cell.reason is not None:
                continue
            res = fit_cell(cell.values, cell.n_pre, got.fit)
            effect[c], cov[c], n_control[c] = res.effect, res.cov, len(cell.units) - 1
            rows.append(_row(cell, res, roles.metrics, roles.segments))
    if not rows:
        raise DataError(
            f"{OWNER}: no cell has at least min_donors={min_d} donors and rows of its treated "
            f"unit ({n} cells checked); lower min_donors or use fewer segment columns."
        )
    kept_exp = pd.unique(pd.Series([r[dims.EXPERIMENT] for r in rows], dtype=object))
    if len(kept_exp) < 2:
        raise too_few_experiments_error(list(kept_exp), experiment_column=roles.experiment)
    warn_cells(rows, owner=OWNER)
    extra = {
        "columns": {
            "experiment": roles.experiment,
            "unit": got.unit,
            "period": got.period,
            "treated": roles.treatment,
            "treatment_start": got.start_column,
        },
        "synthetic_control": {
            "fit_metrics": [roles.metrics[i] for i in got.fit],
            "standardization": "per fit metric: RMS of pre-launch deviations from the "
            "per-period mean over the cell's units",
            "optimizer": {"method": "SLSQP", **SLSQP_OPTIONS},
            "covariance": "in-space placebos: each donor refit as if treated against the "
            "other donors; V = (1/J) sum_j g_j g_j' over the placebos' mean post-launch gaps",
            "small_sample_factor": "1/J (uncentered mean of the J placebo outer products)",
            "approximation": "assumes the treated unit's error exchangeable with the donors'; "
            "noisy with few donors, too small when the treated unit is outside the donors' hull",
            "poor_fit_rule": "outcome pre-launch RMSE > |outcome gap| and > "
            f"{POOR_FIT_MULTIPLE:g} x the median placebo pre-launch RMSE of the outcome",
            "metrics": list(roles.metrics),
            "cells": rows,
        },
    }
    return finish(
        keys,
        np.ones(n, dtype=np.int64),
        n_control,
        effect,
        cov,
        [cell.reason for cell in cells],
        outcome=roles.outcome,
        proxies=roles.proxies,
        segments=roles.segments,
        directions=roles.directions,
        engine="pandas",
        min_users_per_arm=1,
        owner=OWNER,
        experiment_column=roles.experiment,
        extra=extra,
        stacklevel=3,
        design=DESIGN,
    )


def _row(
    cell: Cell, res: CellFit, metrics: Sequence[str], segments: Sequence[str]
) -> dict[str, Any]:
    """The cell's JSON-able diagnostics, named by experiment and segment label."""
    r = res.row
    return {
        dims.EXPERIMENT: plain(cell.key[0]),
        dims.SEGMENT_LABEL: dims.LABEL_SEP.join(str(k) for k in cell.key[1:]) or dims.ALL_SEGMENTS,
        "segments": {s: str(v) for s, v in zip(segments, cell.key[1:], strict=True)},
        "treated_unit": plain(cell.units[0]),
        "donors": [plain(u) for u in cell.units[1:]],
        **{k: v for k, v in r.items() if k not in ("pre_rmse", "p_value")},
        "pre_rmse": dict(zip(metrics, r["pre_rmse"], strict=True)),
        "p_value": dict(zip(metrics, r["p_value"], strict=True)),
    }

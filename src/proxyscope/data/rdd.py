"""Sharp regression discontinuity (threshold rules): per-cell jumps and their joint covariance.

A routing rule that gives a feature to every unit whose score (the running
variable x) is at or above a cutoff c is a natural experiment at the cutoff:
units just below and just above it are alike but for the feature. The effect
of a cell is the jump at c of every metric's regression on x, estimated by
local linear regression on each side (DESIGN.md §8).

Formulas, per cell and side s (below: x < c; above: x >= c), with one
bandwidth h for every metric and kernel weights w_i = K((x_i − c)/h)/h:

- r_i = (1, x_i − c); G_s = Σ_{i in s} w_i r_i r_iᵀ; β̂_s = G_s⁻¹ Σ w_i r_i y_i
  (y_i the vector of metrics, one column each);
- effect: τ̂ = e₀ᵀ(β̂_above − β̂_below), the conventional (not bias-corrected)
  estimate;
- influence function of unit i (one column per metric), ε̂_i = y_i − β̂_sᵀ r_i:
  ψ_i = ± √f_s · (e₀ᵀ G_s⁻¹ r_i w_i) · ε̂_i (+ above, − below);
- covariance: V = Σ_g s_g s_gᵀ, s_g = Σ_{i in g} ψ_i over the independent
  units g (each row, or each value of ``cluster``; a cluster with rows on
  both sides sums both).

Small-sample factor f_s, per side, with n_s rows of positive weight on the
side: HC1, f_s = n_s/(n_s − 2); with ``cluster``, CR1, f_s = (n_s − 1)/(n_s −
2) · g_s/(g_s − 1), g_s the clusters among those rows. Per metric, τ̂ and
√V equal rdrobust's "Conventional" row of ``rdrobust(y, x, c, h=h,
kernel=..., vce="hc1")`` (``vce="cr1", cluster=...`` with clusters; when a
cluster spans the cutoff, rdrobust adds the two sides' variances and drops
the cross term that V keeps).

Bandwidth: by default each cell's MSE-optimal bandwidth for the outcome,
:func:`proxyscope.data.rdd_bandwidth.mserd_bandwidth` (rdrobust's
``rdbwselect(..., bwselect="mserd")`` with the same variance option), used
for every metric of the cell so that their estimates share rows and weights.

Assumptions, and how the design breaks: (1) no manipulation: units cannot
move their score across the cutoff; bunching on one side shows as a jump in
the density of x (checked per cell, :mod:`proxyscope.data.rdd_checks`);
(2) continuity: nothing else changes at the cutoff (a second rule firing at
the same threshold is read as the feature's effect); (3) sharpness: the rule
is deterministic (noise or overrides make the design fuzzy, not handled
here); (4) local linearity: strong curvature within the bandwidth biases the
jump (the bandwidth-sensitivity table shows it); (5) the effect is local to
the cutoff and says nothing about units far from it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from proxyscope import dims
from proxyscope.data.assemble import cell_order, experiment_values, finish
from proxyscope.data.cellchecks import describe_cell
from proxyscope.data.cells import CellEffects, segment_labels
from proxyscope.data.rdd_bandwidth import jump, kernel_weights, mserd_bandwidth
from proxyscope.data.rdd_checks import (
    Arguments,
    Columns,
    check_arguments,
    density_test,
    holm,
    read_rows,
)
from proxyscope.errors import DataWarning

OWNER = "rdd"
DESIGN = "rdd"
#: Multiples of the bandwidth in the sensitivity table.
FACTORS: tuple[float, ...] = (0.5, 0.75, 1.0, 1.5, 2.0)


def rdd(
    rows: pd.DataFrame,
    *,
    experiment: str,
    running: str,
    cutoff: float | str,
    outcome: str,
    proxies: Sequence[str] | str,
    segments: Sequence[str] | str = (),
    directions: Mapping[str, str] | None = None,
    bandwidth: float | None = None,
    kernel: str = "triangular",
    cluster: str | None = None,
    min_users_per_arm: int = 10,
    density_alpha: float = 0.05,
    density_window: float | None = None,
) -> CellEffects:
    """Sharp regression-discontinuity effects per (experiment × segment cell).

    Treatment is ``running >= cutoff`` (sharp). Per cell, every metric's jump
    at the cutoff is estimated by local linear regression on each side with
    one bandwidth, and the joint covariance of the jumps is built from
    per-unit influence functions (formulas, small-sample factor and the
    rdrobust conventions in :mod:`proxyscope.data.rdd`).

    Parameters
    ----------
    rows : pandas.DataFrame
        One row per unit (a user, a query): the columns below. Not modified.
    experiment : str
        Column with the experiment (one threshold rule) id.
    running : str
        Numeric column with the running variable (the score).
    cutoff : float or str
        The threshold: a finite number for every row, or a numeric column
        holding each row's threshold (rules whose threshold differs by
        experiment or market); the estimate then uses x − cutoff and its jump
        at 0, pooling the rows of a cell on the centred score.
    outcome : str
        Column with the long-term outcome.
    proxies : list of str
        Columns with the short-term proxies (at least one).
    segments : list of str, default ()
        Segment columns; cells are their crossing within each experiment.
    directions : dict, optional
        Good direction per proxy, "higher" (default) or "lower"; a "lower"
        proxy is negated, so every effect reads "positive is better".
    bandwidth : float, optional
        Half-width of the estimation window, in units of the running variable,
        for every cell. Default: each cell's MSE-optimal bandwidth for the
        outcome (``mserd``; see :mod:`proxyscope.data.rdd_bandwidth`).
    kernel : {"triangular", "epanechnikov", "uniform"}, default "triangular"
    cluster : str, optional
        Column with the independent unit (a user with several queries, a
        workspace): influence functions are summed within its values and the
        factor is CR1 instead of HC1.
    min_users_per_arm : int, default 10
        Cells with fewer rows of positive weight on a side are dropped (listed
        in ``CellEffects.dropped``, with a DataWarning), like cells with no
        row on a side or an undefined bandwidth. At least 2.
    density_alpha : float, default 0.05
        Level of the density (manipulation) check, family-wise over the cells
        (Holm). Cells that fail are named in a DataWarning.
    density_window : float, optional
        Half-width of the density check's window around the cutoff, in units
        of the running variable; default each cell's bandwidth.

    Returns
    -------
    CellEffects
        ``design`` "rdd"; ``effect`` the jumps (outcome first, proxies in their
        good direction), ``noise_cov`` their joint covariance, ``n_treat`` /
        ``n_control`` the rows of positive weight at-or-above / below the
        cutoff. ``meta["rdd"]`` holds per cell (``cells``: experiment, segment,
        bandwidth, its source, rows and clusters per side, the density check's
        counts, log density ratio, p-value and Holm-adjusted p-value) and the
        bandwidth-sensitivity table (``sensitivity``: effect and standard
        error of every metric, in its good direction, at 0.5, 0.75, 1, 1.5
        and 2 times the bandwidth; None where a side has too few rows).

    Raises
    ------
    ColumnError
        A column is missing or given two roles.
    DataTypeError
        ``rows`` is not a DataFrame, or a metric, running or cutoff column is
        not numeric.
    DataError
        Missing or infinite values, fewer than two experiments kept, or no
        cell left.
    ParameterError
        A bad cutoff, bandwidth, kernel, direction, ``min_users_per_arm``,
        ``density_alpha`` or ``density_window``.
    """
    args = check_arguments(
        experiment=experiment,
        running=running,
        cutoff=cutoff,
        outcome=outcome,
        proxies=proxies,
        segments=segments,
        directions=directions,
        bandwidth=bandwidth,
        kernel=kernel,
        cluster=cluster,
        min_users_per_arm=min_users_per_arm,
        density_alpha=density_alpha,
        density_window=density_window,
        owner=OWNER,
    )
    cols = read_rows(rows, args, owner=OWNER)
    return _cells(cols, args)


def _cells(cols: Columns, args: Arguments) -> CellEffects:
    n_cells = len(cols.keys)
    m = cols.y.shape[1]
    effect = np.full((n_cells, m), np.nan)
    cov = np.full((n_cells, m, m), np.nan)
    n_t = np.zeros(n_cells, dtype=np.int64)
    n_c = np.zeros(n_cells, dtype=np.int64)
    reasons: list[str | None] = []
    info: list[dict[str, Any]] = []
    for c, idx in enumerate(cols.cell_rows):
        reason, row = _one_cell(cols, idx, args)
        reasons.append(reason)
        info.append(row)
        if reason is None:
            effect[c], cov[c] = row.pop("_effect"), row.pop("_cov")
            n_t[c], n_c[c] = row["n_above"], row["n_below"]
        else:
            n_t[c], n_c[c] = row.get("n_above", 0), row.get("n_below", 0)
    meta = _meta(cols, args, reasons, info)
    return finish(
        cols.keys,
        n_t,
        n_c,
        effect,
        cov,
        reasons,
        outcome=args.roles.outcome,
        proxies=args.roles.proxies,
        segments=args.roles.segments,
        directions=args.roles.directions,
        engine="pandas",
        min_users_per_arm=args.min_users,
        owner=OWNER,
        experiment_column=args.roles.experiment,
        extra={"rdd": meta},
        stacklevel=4,
        design=DESIGN,
    )


def _one_cell(cols: Columns, idx: np.ndarray, args: Arguments) -> tuple[str | None, dict[str, Any]]:
    """(drop reason or None, the cell's row of metadata with its estimate)."""
    x = cols.x[idx]
    cut = cols.cutoff if cols.cutoff_column is None else 0.0
    if cols.cutoff_column is not None:
        x = x - cols.cutoff[idx]
    u = x - cut
    y = cols.y[idx]
    cl = None if cols.cluster is None else cols.cluster[idx]
    row: dict[str, Any] = {
        "n_below_total": int((u < 0).sum()),
        "n_above_total": int((u >= 0).sum()),
    }
    if row["n_below_total"] == 0 or row["n_above_total"] == 0:
        return "no rows on one side of the cutoff", row
    if args.bandwidth is None:
        h = mserd_bandwidth(x, y[:, 0], float(cut), kernel=args.kernel, cluster=cl)
        row["bandwidth_source"] = "mserd"
        if not math.isfinite(h):
            return "MSE-optimal bandwidth undefined (too few distinct running values)", row
    else:
        h = args.bandwidth
        row["bandwidth_source"] = "given"
    row["bandwidth"] = float(h)
    got = jump(u, y, h, args.kernel, cl)
    if got is None:
        inside = kernel_weights(u, h, args.kernel) > 0
        row["n_below"] = int((inside & (u < 0)).sum())
        row["n_above"] = int((inside & (u >= 0)).sum())
        what = " (or 2 clusters)" if cl is not None else ""
        return f"fewer than 2 distinct running values{what} within the bandwidth on a side", row
    row.update(n_below=got.n_below, n_above=got.n_above)
    if cl is not None:
        row.update(clusters_below=got.clusters_below, clusters_above=got.clusters_above)
    if min(got.n_below, got.n_above) < args.min_users:
        return f"below min_users_per_arm={args.min_users} within the bandwidth", row
    row["_effect"], row["_cov"] = got.effect, got.cov
    window = args.density_window if args.density_window is not None else h
    row["density"] = density_test(u, window)
    row["sensitivity"] = [_at(u, y, f * h, f, args.kernel, cl) for f in FACTORS]
    return None, row


def _at(
    u: np.ndarray, y: np.ndarray, h: float, factor: float, kernel: str, cl: np.ndarray | None
) -> dict[str, Any]:
    got = jump(u, y, h, kernel, cl)
    out: dict[str, Any] = {"factor": factor, "bandwidth": float(h)}
    if got is None:
        out.update(n_below=None, n_above=None, effect=None, se=None)
        return out
    out.update(
        n_below=got.n_below,
        n_above=got.n_above,
        effect=got.effect,
        se=np.sqrt(np.diag(got.cov)),
    )
    return out


def _meta(
    cols: Columns, args: Arguments, reasons: list[str | None], info: list[dict[str, Any]]
) -> dict[str, Any]:
    """``meta["rdd"]``: per kept cell (in cell order) and the density warning."""
    roles = args.roles
    metrics = list(roles.metrics)
    sign = np.array(
        [1.0] + [-1.0 if roles.directions[p] == "lower" else 1.0 for p in roles.proxies]
    )
    frame = cols.keys.copy()
    frame[dims.EXPERIMENT] = experiment_values(list(frame[dims.EXPERIMENT]))
    labels = segment_labels(frame, roles.segments)
    kept = [int(c) for c in cell_order(frame) if reasons[c] is None]
    adjusted = holm([info[c]["density"]["p_value"] for c in kept])
    cells, table, failed = [], [], []
    for c, p_holm in zip(kept, adjusted, strict=True):
        exp = frame[dims.EXPERIMENT].iloc[c]
        where = {dims.EXPERIMENT: exp.item() if isinstance(exp, np.generic) else exp}
        where[dims.SEGMENT_LABEL] = str(labels[c])
        row = {k: v for k, v in info[c].items() if k not in ("density", "sensitivity")}
        density = {**info[c]["density"], "p_holm": p_holm}
        cells.append({**where, **row, "density": density})
        if p_holm is not None and p_holm < args.density_alpha:
            failed.append(c)
        for s in info[c]["sensitivity"]:
            entry = {**where, **{k: s[k] for k in ("factor", "bandwidth", "n_below", "n_above")}}
            for key in ("effect", "se"):
                values = s[key]
                entry[key] = (
                    None
                    if values is None
                    else {
                        m: float(v)
                        for m, v in zip(
                            metrics, values * (sign if key == "effect" else 1.0), strict=True
                        )
                    }
                )
            table.append(entry)
    if failed:
        shown = "; ".join(
            f"{describe_cell(frame[dims.EXPERIMENT].iloc[c], labels[c])}: "
            f"{info[c]['density']['n_below']} below and {info[c]['density']['n_above']} above, "
            f"p = {info[c]['density']['p_value']:.2g}"
            for c in failed[:5]
        )
        more = f"; ... ({len(failed)} cells in all)" if len(failed) > 5 else ""
        warnings.warn(
            f"{OWNER}: the density of {roles.treatment!r} jumps at the cutoff in {len(failed)} "
            f"of {len(kept)} cells (Holm-adjusted p < {args.density_alpha:g}), a sign that units "
            f"sort themselves across the threshold and the estimates there are biased: "
            f"{shown}{more}. See meta['rdd']['cells'].",
            DataWarning,
            stacklevel=4,
        )
    return {
        "columns": {
            "experiment": roles.experiment,
            "running": roles.treatment,
            "cutoff": cols.cutoff_column,
            "cluster": roles.cluster,
        },
        "cutoff": None if cols.cutoff_column is not None else float(cols.cutoff),
        "kernel": args.kernel,
        "polynomial_order": 1,
        "bandwidth_rule": "given" if args.bandwidth is not None else "mserd",
        "estimator": "conventional local linear (not bias-corrected), one bandwidth per cell",
        "small_sample_factor": (
            "HC1 per side: n_s/(n_s-2)"
            if roles.cluster is None
            else "CR1 per side: (n_s-1)/(n_s-2) * g_s/(g_s-1); clusters summed across sides"
        ),
        "density_test": "likelihood ratio, linear density on each side of the cutoff, chi2(1)",
        "density_alpha": args.density_alpha,
        "density_adjustment": "holm",
        "density_failed": len(failed),
        "cells": cells,
        "sensitivity": table,
    }

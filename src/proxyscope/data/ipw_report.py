"""The overlap and balance report of :func:`proxyscope.data.ipw.ipw`.

From the fitted propensities: per cell the propensity range, the effective
sample size per arm and the covariates' SMDs before and after weighting; per
experiment the SMDs (``meta["ipw"]``), and the DataWarnings of poor overlap and
imbalance. The thresholds live in :mod:`proxyscope.data.ipw_checks`.

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

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse

from proxyscope import dims
from proxyscope.data.ipw_checks import BAND, OUTSIDE_SHARE, SMD_LIMIT, Rows
from proxyscope.data.validate import plain
from proxyscope.errors import DataWarning


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
    return f"(experiment {cell[dims.EXPERIMENT]!r}, segment {cell[dims.SEGMENT_LABEL]!r})"


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

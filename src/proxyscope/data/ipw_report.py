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
from dataclasses import dataclass, fields
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
    """Per group and covariate: SMD with weights ``w`` (module docstring); NaN if sd is 0.

    ``x`` centred by the caller, so the variances below lose no digits.
    """
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


@dataclass(frozen=True)
class OverlapStats:
    """What the report needs of the cells of one or more experiments.

    Per cell c and arm a (0 control, 1 treated): ``low[c, a]``, ``high[c, a]``
    the raw propensity range, ``ess[c, a]`` the effective sample size;
    ``share[c]`` the share of the cell's units outside the band; ``before[c]``
    and ``after[c]`` each covariate's SMD. Per experiment: ``exp_before[e]`` and
    ``exp_after[e]``.
    """

    low: np.ndarray
    high: np.ndarray
    ess: np.ndarray
    share: np.ndarray
    before: np.ndarray
    after: np.ndarray
    exp_before: np.ndarray
    exp_after: np.ndarray

    @staticmethod
    def concat(parts: Sequence[OverlapStats]) -> OverlapStats:
        """Cells, then experiments, of ``parts`` one after the other."""
        return OverlapStats(
            *[np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(OverlapStats)]
        )

    def cells_in(self, order: np.ndarray) -> OverlapStats:
        """The per-cell arrays in ``order`` (the experiments' as they are)."""
        per_cell = {f.name: getattr(self, f.name)[order] for f in fields(self)[:6]}
        return OverlapStats(**per_cell, exp_before=self.exp_before, exp_after=self.exp_after)


def overlap_stats(data: Rows, e_raw: np.ndarray, e: np.ndarray, estimand: str) -> OverlapStats:
    """The :class:`OverlapStats` of ``data``'s cells and experiments; ``e_raw`` are the
    cross-fitted propensities, ``e`` the clipped ones. Each experiment's covariates are
    centred on their mean in that experiment (no digits lost in the variances)."""
    t, n_cells = data.treated, len(data.cell_keys)
    w = weights(t, e, estimand)
    arm_cell = 2 * data.cell + t
    low, high = np.full(2 * n_cells, np.inf), np.full(2 * n_cells, -np.inf)
    np.minimum.at(low, arm_cell, e_raw)
    np.maximum.at(high, arm_cell, e_raw)
    with np.errstate(invalid="ignore", divide="ignore"):
        ess = np.bincount(arm_cell, w, 2 * n_cells) ** 2 / np.bincount(arm_cell, w**2, 2 * n_cells)
    outside = np.bincount(data.cell, weights=(e_raw < BAND) | (e_raw > 1 - BAND), minlength=n_cells)
    n_exp = len(data.experiment_labels)
    x = np.empty_like(data.x)
    for k in range(n_exp):
        rows = data.experiment == k
        x[rows] = data.x[rows] - data.x[rows].mean(axis=0)
    one = np.ones_like(w)
    return OverlapStats(
        low=low.reshape(n_cells, 2),
        high=high.reshape(n_cells, 2),
        ess=ess.reshape(n_cells, 2),
        share=outside / np.bincount(data.cell, minlength=n_cells),
        before=_smd(data.cell, n_cells, t, x, one),
        after=_smd(data.cell, n_cells, t, x, w),
        exp_before=_smd(data.experiment, n_exp, t, x, one),
        exp_after=_smd(data.experiment, n_exp, t, x, w),
    )


def overlap_report(
    stats: OverlapStats,
    experiment_labels: Sequence[Any],
    kept: np.ndarray,
    describe: Callable[[int], Mapping[str, Any]],
    covariates: Sequence[str],
    *,
    owner: str,
) -> dict[str, Any]:
    """``meta["ipw"]["cells"]`` and ``["experiments"]``, and the overlap DataWarnings.

    ``kept`` marks the cells that are reported; ``describe(c)`` gives a cell's
    experiment and segment label.
    """
    share, exp_after = stats.share, stats.exp_after

    def num(v: float) -> float | None:
        return float(v) if np.isfinite(v) else None

    def smd_rows(b: np.ndarray, a: np.ndarray) -> dict[str, dict[str, float | None]]:
        return {c: {"before": num(b[j]), "after": num(a[j])} for j, c in enumerate(covariates)}

    cells = []
    for c in np.flatnonzero(kept):
        arm = {}
        for name, flag in (("treated", 1), ("control", 0)):
            arm[name] = {
                "propensity_min": float(stats.low[c, flag]),
                "propensity_max": float(stats.high[c, flag]),
                "effective_n": float(stats.ess[c, flag]),
            }
        cells.append(
            {
                **describe(int(c)),
                **arm,
                "share_outside_band": float(share[c]),
                "smd": smd_rows(stats.before[c], stats.after[c]),
            }
        )
    n_exp = len(experiment_labels)
    experiments = [
        {
            dims.EXPERIMENT: plain(experiment_labels[e]),
            "smd": smd_rows(stats.exp_before[e], exp_after[e]),
        }
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

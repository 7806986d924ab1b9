"""Clusters that span the segment cells of an experiment.

When a cluster's users fall in several cells of one experiment (segments that
split workspaces), the cells' errors are correlated: the variance of the
experiment's overall effect exceeds what the cells' own clustered
covariances add up to. CellEffects carries one covariance per cell, and the
model takes cells' errors as independent given the experiment effect, so
:func:`proxyscope.summarize` measures that excess per metric
(:func:`experiment_inflation`) and warns when it matters.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from proxyscope.data.validate import Roles
from proxyscope.errors import DataWarning

if TYPE_CHECKING:
    from proxyscope.data.clustered import Clustered


def experiment_inflation(
    got: Clustered, cell_experiment: np.ndarray, weight: np.ndarray
) -> np.ndarray:
    """How far the per-cell covariances understate an experiment's overall effect's variance.

    When a cluster's users fall in several cells of an experiment (segments
    that split workspaces), the cells' errors are correlated: the clustered
    variance of the experiment's user-weighted effect, sum_g (sum_c w_c
    s_gc)^2, exceeds what the cells' own covariances add up to,
    sum_c w_c^2 sum_g s_gc^2. Returns that ratio per experiment and metric
    (E, m); 1 when no cluster spans two cells. Cells with weight 0 (dropped)
    take no part; NaN for an experiment without any.
    """
    n_exp = int(cell_experiment.max()) + 1 if len(cell_experiment) else 0
    w = weight[got.pair_cell]
    exp = cell_experiment[got.pair_cell]
    span = int(got.pair_cluster.max()) + 1 if len(got.pair_cluster) else 1
    key = np.asarray(pd.factorize(exp * span + got.pair_cluster)[0], dtype=np.int64)
    key_exp = np.zeros(int(key.max()) + 1 if len(key) else 0, dtype=np.int64)
    key_exp[key] = exp
    out = np.full((n_exp, got.score.shape[1]), np.nan)
    for i in range(got.score.shape[1]):
        joint = np.bincount(key, weights=w * got.score[:, i], minlength=len(key_exp))
        num = np.bincount(key_exp, weights=joint**2, minlength=n_exp)
        den = np.bincount(exp, weights=(w * got.score[:, i]) ** 2, minlength=n_exp)
        np.divide(num, den, out=out[:, i], where=den > 0)
    return out


# -- from the engine's rows to per-cell arrays ---------------------------------------


#: Median inflation of an experiment's effect variance from which summarize warns.
CROSS_CELL_WARN = 1.5


def cross_cell_inflation(
    got: Clustered, keys: np.ndarray, kept: np.ndarray, roles: Roles, owner: str
) -> dict[str, float]:
    """Median (over experiments) of :func:`experiment_inflation` per metric; a warning
    when clusters span the cells of experiments enough to matter."""
    cell_exp = np.asarray(pd.factorize(pd.Series(list(keys[:, 0]), dtype=object))[0])
    users = got.users[:, :2].sum(axis=1).astype(float) * kept
    total = np.bincount(cell_exp, weights=users)
    weight = np.divide(users, total[cell_exp], out=np.zeros_like(users), where=total[cell_exp] > 0)
    ratio = experiment_inflation(got, cell_exp, weight)
    metrics = list(roles.metrics)
    median = {m: float(np.nanmedian(ratio[:, j])) for j, m in enumerate(metrics)}
    worst = max(median, key=lambda m: median[m])
    if median[worst] > CROSS_CELL_WARN:
        warnings.warn(
            f"{owner}: clusters of column {roles.cluster!r} span several segment cells of an "
            f"experiment, so the cells' errors are correlated: the variance of an experiment's "
            f"overall effect on {worst!r} is {median[worst]:.1f}x (median over experiments) "
            "what the cells' own covariances add up to. The model takes cells' errors as "
            "independent given the experiment effect, so experiment-level conclusions will "
            "be too confident. Segment by attributes of the cluster (each cluster in one "
            "cell), or summarize without segments. See meta['cluster']"
            "['experiment_variance_inflation'].",
            DataWarning,
            stacklevel=5,
        )
    return median

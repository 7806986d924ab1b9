"""Clusters that span the segment cells of an experiment.

When a cluster's users fall in several cells of one experiment (segments that
split workspaces), the cells' errors are correlated: the variance of the
experiment's overall effect exceeds what the cells' own clustered
covariances add up to. :func:`proxyscope.summarize` measures that excess per
metric (:func:`experiment_inflation`). CellEffects carries the part of the
errors every cell of an experiment shares (``shared_cov``,
:mod:`proxyscope.data.shared_noise`) and the model counts it, so summarize
warns only when the excess that part leaves unexplained
(:func:`unexplained_inflation`) matters.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

from proxyscope.data.shared_noise import SharedNoise, experiment_clusters
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
    key, key_exp = experiment_clusters(exp, got.pair_cluster)
    out = np.full((n_exp, got.score.shape[1]), np.nan)
    for i in range(got.score.shape[1]):
        joint = np.bincount(key, weights=w * got.score[:, i], minlength=len(key_exp))
        num = np.bincount(key_exp, weights=joint**2, minlength=n_exp)
        den = np.bincount(exp, weights=(w * got.score[:, i]) ** 2, minlength=n_exp)
        np.divide(num, den, out=out[:, i], where=den > 0)
    return out


def unexplained_inflation(
    got: Clustered, cell_experiment: np.ndarray, weight: np.ndarray, shared: SharedNoise
) -> np.ndarray:
    """The excess of an experiment's overall effect's variance that ``shared_cov`` leaves.

    Per experiment e and metric i: the clustered variance of the experiment's
    user-weighted effect over the variance the model implies,
    sum_c w_c^2 S_c,ii + sum_{c != c'} w_c w_c' U_e,ii (S_c the cells' own CR1
    covariances, U_e the shared part). The clustered variance is
    sum_c w_c^2 S_c,ii + sum_{c != c'} w_c w_c' S_cc',ii with the cross-cell
    blocks S_cc' = f_e sum_g s_gc s_gc'^T of U_e, i.e.
    f_e [sum_g (sum_c w_c s_gci)^2 - sum_g sum_c w_c^2 s_gci^2] + sum_c w_c^2 S_c,ii:
    the two differ only in the cross-cell terms (each cell keeps its own CR1
    factor), so the ratio is 1 when no cluster spans two cells, for an
    experiment with one kept cell, and when U_e explains the cross-cell
    covariance. Returns (E, m); cells with weight 0 take no part; NaN for an
    experiment without any.
    """
    n_exp = len(shared.cells)
    m = got.score.shape[1]
    use = weight[got.pair_cell] > 0
    w = weight[got.pair_cell][use]
    exp = cell_experiment[got.pair_cell][use]
    key, key_exp = experiment_clusters(exp, got.pair_cluster[use])
    kept = weight > 0
    w_cell, e_cell = weight[kept], cell_experiment[kept]
    square = np.bincount(e_cell, weights=w_cell**2, minlength=n_exp)
    total = np.bincount(e_cell, weights=w_cell, minlength=n_exp)
    out = np.full((n_exp, m), np.nan)
    for i in range(m):
        score = w * got.score[use, i]
        joint = np.bincount(key, weights=score, minlength=len(key_exp))
        together = np.bincount(key_exp, weights=joint**2, minlength=n_exp)
        alone = np.bincount(exp, weights=score**2, minlength=n_exp)
        own = np.bincount(e_cell, weights=w_cell**2 * got.cov[kept, 0, i, i], minlength=n_exp)
        cross = np.where(shared.cells >= 2, shared.factor * (together - alone), 0.0)
        actual = own + cross
        implied = own + (total**2 - square) * shared.shared[:, i, i]
        np.divide(actual, implied, out=out[:, i], where=implied > 0)
    return out


#: Median unexplained inflation of an experiment's effect variance from which summarize warns.
CROSS_CELL_WARN = 1.5


def cross_cell_inflation(
    got: Clustered,
    cell_experiment: np.ndarray,
    kept: np.ndarray,
    shared: SharedNoise,
    roles: Roles,
    owner: str,
) -> dict[str, dict[str, float]]:
    """Medians (over experiments) per metric of :func:`experiment_inflation` and of
    :func:`unexplained_inflation`; a warning when the shared part leaves enough unexplained.

    Returns ``{"experiment_variance_inflation": ...,
    "experiment_variance_inflation_unexplained": ...}`` for ``meta["cluster"]``.
    """
    users = got.users[:, :2].sum(axis=1).astype(float) * kept
    total = np.bincount(cell_experiment, weights=users)[cell_experiment]
    weight = np.divide(users, total, out=np.zeros_like(users), where=total > 0)
    metrics = list(roles.metrics)

    def medians(ratio: np.ndarray) -> dict[str, float]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN: no experiment kept
            return {m: float(np.nanmedian(ratio[:, j])) for j, m in enumerate(metrics)}

    raw = medians(experiment_inflation(got, cell_experiment, weight))
    left = medians(unexplained_inflation(got, cell_experiment, weight, shared))
    worst = max(left, key=lambda m: left[m])
    if left[worst] > CROSS_CELL_WARN:
        warnings.warn(
            f"{owner}: clusters of column {roles.cluster!r} span several segment cells of an "
            "experiment, and the part of the cells' errors that every cell of an experiment "
            "shares (the variable 'shared_cov', which the model counts) does not explain "
            f"the correlation: the variance of an experiment's overall effect on {worst!r} "
            f"is {left[worst]:.1f}x (median over experiments) what the cells' own "
            f"covariances and the shared part imply ({raw[worst]:.1f}x without the shared "
            "part). Experiment-level conclusions will be too confident. Segment by "
            "attributes of the cluster (each cluster in one cell), or summarize without "
            "segments. See meta['cluster']['experiment_variance_inflation_unexplained'] "
            "and meta['cluster']['shared_noise'].",
            DataWarning,
            stacklevel=5,
        )
    return {
        "experiment_variance_inflation": raw,
        "experiment_variance_inflation_unexplained": left,
    }

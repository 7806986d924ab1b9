"""Cluster-randomized experiments: the joint cluster-robust covariance of a cell's effects.

A cell's effect is the difference in means, treatment − control, of every
metric (outcome and proxies), exactly as for a user-randomized test. Only its
sampling covariance changes: users of one cluster (workspace, team, market)
are not independent, so their influence on the estimate is summed within the
cluster before squaring (DESIGN.md §8).

Formulas, per cell, with arms a ∈ {T, C}, n_a users in arm a and x_i the
vector of metrics of user i:

- influence function of user i (one column per metric):
  ψ_i = (x_i − x̄_T) / n_T if i is treated, ψ_i = −(x_i − x̄_C) / n_C if not;
- cluster score: s_g = Σ_{i in cluster g} ψ_i (a cluster with users in both
  arms sums both contributions, with their signs);
- covariance: V = c · Σ_g s_g s_gᵀ with c = G / (G − 1), G the number of
  distinct clusters in the cell (CR1).

Only per-(cell, arm, cluster) counts n_ga and means m_ga reach this module,
which is all the formulas need: x̄_a = Σ_g n_ga m_ga / n_a and
s_g = Σ_a sign_a · n_ga (m_ga − x̄_a) / n_a (sign_T = +1, sign_C = −1).

Reference conventions. Per metric, V equals the CRV1 variance of the
coefficient of ``treated`` in ``metric ~ treated`` fitted on the cell's users,
clustered by the cluster column, in pyfixest with
``ssc=pyfixest.ssc(k_adj=False, G_adj=True)`` (no (N − 1)/(N − k) factor).
linearmodels 7.1 has no option for that factor alone: its clustered
covariance with ``debiased=False`` and no group debiasing is CR0, so
V = G/(G − 1) · V_CR0; with ``group_debias=True`` (system models such as
``SUR``) it scales CR0 by G/(G − 1) · (N − 1)/N, so V = N/(N − 1) times it
(N: the cell's users). The cross-metric blocks are those of the same
regression for every metric at once (a multivariate OLS, ``SUR.multivariate_ls``).
Stata's and fixest's default CR1 also multiply by (N − 1)/(N − 2), which
differs from 1 by about 1/N.

With every cluster a single user and no cluster shared, V reduces to
N/(N − 1) · Σ_a (n_a − 1)/n_a² · S_a, against the user-level S_T/n_T + S_C/n_C
(S_a the sample covariance of arm a, ddof = 1).

Exposure (two-exposure decomposition). With an exposure column saying, per
user, "direct" (treated), "spillover" (a control user exposed to treated
users) or "pure_control", the cell's effect is the direct effect
x̄_direct − x̄_pure and the spillover effect x̄_spillover − x̄_pure is kept beside
it, each with the covariance above (influence functions of the groups they
compare; G counts every cluster of the cell). Both equal the coefficients and
CRV1 covariances of ``metric ~ is_direct + is_spillover``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from proxyscope import dims
from proxyscope.data import designs
from proxyscope.data.assemble import cell_order, experiment_values
from proxyscope.data.cellchecks import describe_cell
from proxyscope.data.cells import segment_labels
from proxyscope.data.cluster_span import cross_cell_inflation
from proxyscope.data.engines import (
    ARM,
    CLUSTER,
    ClusterAggregate,
    combine,
    key_col,
)
from proxyscope.data.exposure import exposure_groups
from proxyscope.data.shared_noise import experiment_codes, shared_noise
from proxyscope.data.validate import Roles, plain, same_value, scalar
from proxyscope.errors import DataError, DataWarning

#: Fewer clusters than this in an arm of a kept cell: a DataWarning.
FEW_CLUSTERS = 30
#: Fewer clusters than this in an arm of a kept cell: a DataError.
MIN_CLUSTERS = 2


# -- the second level: per-cluster rows -> effects and covariances -----------------


@dataclass(frozen=True)
class Clustered:
    """Per cell: users per group, contrasts and their CR1 covariances.

    ``users[c, a]`` per group a; ``effect[c, k, i]`` and
    ``cov[c, k, i, j]`` per contrast k; ``n_clusters[c, a]`` distinct clusters
    with users in group a, ``clusters[c]`` distinct clusters in the cell
    (G), ``shared[c]`` clusters with users in both a treated and a control group.
    ``score[p]`` is the first contrast's score of (cell, cluster) pair p, whose
    cell is ``pair_cell[p]`` and cluster ``pair_cluster[p]``.
    """

    users: np.ndarray
    effect: np.ndarray
    cov: np.ndarray
    n_clusters: np.ndarray
    clusters: np.ndarray
    shared: np.ndarray
    score: np.ndarray
    pair_cell: np.ndarray
    pair_cluster: np.ndarray


def cluster_covariance(
    cell: np.ndarray,
    group: np.ndarray,
    cluster: np.ndarray,
    n: np.ndarray,
    means: np.ndarray,
    contrasts: np.ndarray,
    treated: np.ndarray,
    n_cells: int,
) -> Clustered:
    """Differences in means and their joint CR1 covariance from per-cluster rows.

    Parameters
    ----------
    cell, group, cluster : int arrays, one per row
        The row's cell (0 .. n_cells − 1), group within the cell (an arm or
        exposure group, 0 .. A − 1) and cluster (any integer code).
    n : int array
        Users in the row (> 0).
    means : (rows, m) array
        Mean of each metric over the row's users.
    contrasts : (A, K) array
        Weight of each group in each contrast: [[1], [-1]] is treatment − control.
    treated : (A,) bool array
        Which groups are treated (for ``shared``).
    n_cells : int

    Returns
    -------
    Clustered
        See the module docstring for the formulas. A group without users has
        NaN means; a contrast that uses it is NaN.
    """
    n_groups, n_contrasts = contrasts.shape
    m = means.shape[1]
    cg = cell * n_groups + group
    size = n_cells * n_groups
    users = np.bincount(cg, weights=n, minlength=size)
    mean = np.full((size, m), np.nan)
    for i in range(m):
        np.divide(
            np.bincount(cg, weights=n * means[:, i], minlength=size),
            users,
            out=mean[:, i],
            where=users > 0,
        )
    # Each row's summed influence: n_ga (m_ga − x̄_a) / n_a.
    dev = n[:, None] * (means - mean[cg]) / users[cg][:, None]

    # One score per (cell, cluster): a cluster in both arms sums both arms' rows.
    span = int(cluster.max()) + 1 if len(cluster) else 1
    pair = np.asarray(pd.factorize(cell.astype(np.int64) * span + cluster)[0], dtype=np.int64)
    n_pairs = int(pair.max()) + 1 if len(pair) else 0
    pair_cell = np.zeros(n_pairs, dtype=np.int64)
    pair_cell[pair] = cell
    pair_cluster = np.zeros(n_pairs, dtype=np.int64)
    pair_cluster[pair] = cluster
    clusters = np.bincount(pair_cell, minlength=n_cells)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = clusters / (clusters - 1.0)
    cov = np.zeros((n_cells, n_contrasts, m, m))
    first: np.ndarray = np.zeros((n_pairs, m))
    for k in range(n_contrasts):
        w = contrasts[group, k]
        score: np.ndarray = np.stack(
            [np.bincount(pair, weights=w * dev[:, i], minlength=n_pairs) for i in range(m)],
            axis=1,
        )
        if k == 0:
            first = score
        for i in range(m):
            for j in range(i, m):
                v = np.bincount(pair_cell, weights=score[:, i] * score[:, j], minlength=n_cells)
                cov[:, k, i, j] = cov[:, k, j, i] = factor * v

    mean = mean.reshape(n_cells, n_groups, m)
    effect = np.zeros((n_cells, n_contrasts, m))
    for k in range(n_contrasts):
        for a in np.flatnonzero(contrasts[:, k]):
            effect[:, k] += contrasts[a, k] * mean[:, a]
    present = np.zeros((n_pairs, n_groups), dtype=bool)
    present[pair, group] = True
    n_clusters = np.stack(
        [np.bincount(pair_cell, weights=present[:, a], minlength=n_cells) for a in range(n_groups)],
        axis=1,
    ).astype(np.int64)
    both = present[:, treated].any(axis=1) & present[:, ~treated].any(axis=1)
    shared = np.bincount(pair_cell, weights=both, minlength=n_cells).astype(np.int64)
    return Clustered(
        users.reshape(n_cells, n_groups).astype(np.int64),
        effect,
        cov,
        n_clusters,
        clusters,
        shared,
        first,
        pair_cell,
        pair_cluster,
    )


@dataclass(frozen=True)
class ClusterCells:
    """The per-cell arrays summarize hands to ``finish``, and the metadata."""

    keys: np.ndarray
    n_treat: np.ndarray
    n_control: np.ndarray
    effect: np.ndarray
    noise_cov: np.ndarray
    reasons: list[str | None]
    variables: dict[str, np.ndarray]
    meta: dict[str, Any]


def cell_effects(
    rows: ClusterAggregate,
    roles: Roles,
    treated: Any,
    *,
    exposure_values: Mapping[str, Any] | None,
    min_users: int,
    owner: str,
) -> ClusterCells:
    """Effects, clustered covariances, cluster counts (and spillover) per cell.

    Parameters
    ----------
    rows : ClusterAggregate
        The engine's per-(cell, arm, cluster[, exposure]) rows, none with a
        missing label.
    roles : Roles
        The columns (for cell keys and messages).
    treated : object
        The treatment column's treated value.
    exposure_values : dict or None
        From :func:`proxyscope.data.exposure.check_exposure_values`; None without an
        exposure column.
    min_users : int
        Cells below it in an arm get a drop reason; every other cell must have
        at least :data:`MIN_CLUSTERS` clusters per arm, and fewer than
        :data:`FEW_CLUSTERS` give one DataWarning.
    owner : str
        The calling function, for messages.

    Returns
    -------
    ClusterCells
        Per cell, in the rows' order of first appearance.

    Raises
    ------
    DataError
        A kept cell with fewer than two clusters in an arm; unexpected
        exposure values; exposure and treatment that disagree.
    """
    n_keys = len(roles.keys)
    cell, first = combine([rows.labels[key_col(i)] for i in range(n_keys)])
    n_cells = len(first)
    keys = np.empty((n_cells, n_keys), dtype=object)
    for i in range(n_keys):
        f = rows.labels[key_col(i)]
        keys[:, i] = f.values[f.codes[first]]
    arm = rows.labels[ARM]
    is_t = np.asarray([same_value(scalar(v), treated) for v in arm.values], dtype=bool)[arm.codes]
    if exposure_values is None:
        group = np.where(is_t, 0, 1)
        contrasts = np.array([[1.0], [-1.0]])
    else:
        group = exposure_groups(rows, exposure_values, roles, is_t)
        contrasts = np.array([[1.0, 0.0], [-1.0, -1.0], [0.0, 1.0]])
    treated_groups = np.arange(len(contrasts)) == 0
    got = cluster_covariance(
        cell,
        group,
        rows.labels[CLUSTER].codes,
        rows.n.astype(np.float64),
        rows.means,
        contrasts,
        treated_groups,
        n_cells,
    )
    n_t, n_c = got.users[:, 0], got.users[:, 1]
    reasons: list[str | None] = [
        None if (a >= min_users and b >= min_users) else f"below min_users_per_arm={min_users}"
        for a, b in zip(n_t, n_c, strict=True)
    ]
    kept = np.asarray([r is None for r in reasons], dtype=bool)
    frame = pd.DataFrame({dims.EXPERIMENT: experiment_values(list(keys[:, 0]))})
    for i, s in enumerate(roles.segments, start=1):
        frame[s] = keys[:, i]
    labels = segment_labels(frame, roles.segments)
    order = cell_order(frame)

    def describe(c: int) -> str:
        return describe_cell(keys[c, 0], labels[c])

    check_clusters(got.n_clusters[:, :2], kept, order, describe, roles, exposure_values, owner)
    variables = {
        designs.N_CLUSTERS_TREAT: got.n_clusters[:, 0],
        designs.N_CLUSTERS_CONTROL: got.n_clusters[:, 1],
        designs.N_CLUSTERS_SHARED: got.shared,
    }
    meta: dict[str, Any] = {
        "cluster": {
            "column": roles.cluster,
            "shared_clusters": int(got.shared[kept].sum()),
            "cells_with_shared": int((got.shared[kept] > 0).sum()),
            "small_sample_factor": "CR1: G/(G-1), G = distinct clusters in the cell",
        }
    }
    if roles.segments:  # the part of the errors every cell of an experiment shares
        cell_exp = experiment_codes(keys[:, 0])
        shared = shared_noise(
            got.score, got.pair_cell, got.pair_cluster, got.cov[:, 0], cell_exp, kept
        )
        variables[designs.SHARED_COV] = shared.cov
        meta["cluster"]["shared_noise"] = shared.summary()
        meta["cluster"].update(cross_cell_inflation(got, cell_exp, kept, shared, roles, owner))
    if exposure_values is not None:
        n_spill = got.users[:, 2]
        none = (n_spill < 2) | (got.n_clusters[:, 2] < 2)
        spill = np.where(none[:, None], np.nan, got.effect[:, 1])
        spill_cov = np.where(none[:, None, None], np.nan, got.cov[:, 1])
        variables.update(
            {
                designs.N_SPILLOVER: n_spill,
                designs.SPILLOVER: spill,
                designs.SPILLOVER_COV: spill_cov,
            }
        )
        missing = [c for c in order if kept[c] and none[c]]
        meta["exposure"] = {
            "column": roles.exposure,
            "values": {k: plain(v) for k, v in exposure_values.items()},
            "cells_without_spillover": [
                {
                    dims.EXPERIMENT: plain(keys[c, 0]),
                    dims.SEGMENT_LABEL: str(labels[c]),
                    "n_spillover": int(n_spill[c]),
                    "spillover_clusters": int(got.n_clusters[c, 2]),
                }
                for c in missing
            ],
            "note": "spillover is NaN in cells with fewer than 2 spillover users or clusters",
        }
    return ClusterCells(keys, n_t, n_c, got.effect[:, 0], got.cov[:, 0], reasons, variables, meta)


def check_clusters(
    n_clusters: np.ndarray,
    kept: np.ndarray,
    order: np.ndarray,
    describe: Any,
    roles: Roles,
    exposure_values: Mapping[str, Any] | None,
    owner: str,
    stacklevel: int = 5,
) -> None:
    """Fewer than two clusters in an arm of a kept cell: an error; fewer than 30: a warning
    (``stacklevel`` points it at the user's call)."""
    arms = ("treatment", "control") if exposure_values is None else ("direct", "pure control")
    fewest = n_clusters.min(axis=1)
    cells = [int(c) for c in order if kept[c]]

    def shown(which: list[int]) -> str:
        parts = [
            f"{describe(c)}: {n_clusters[c, 0]} {arms[0]} and {n_clusters[c, 1]} {arms[1]} clusters"
            for c in which[:5]
        ]
        return "; ".join(parts) + (f"; ... ({len(which)} cells in all)" if len(which) > 5 else "")

    too_few = [c for c in cells if fewest[c] < MIN_CLUSTERS]
    if too_few:
        raise DataError(
            f"{owner}: a cluster-robust covariance needs at least {MIN_CLUSTERS} clusters of "
            f"column {roles.cluster!r} (given as 'cluster') in each arm of a cell; "
            f"{len(too_few)} cell(s) have fewer: {shown(too_few)}. Use fewer segment columns, "
            "or raise min_users_per_arm to drop such cells."
        )
    few = [c for c in cells if fewest[c] < FEW_CLUSTERS]
    if few:
        warnings.warn(
            f"{owner}: {len(few)} of {len(cells)} cells have fewer than {FEW_CLUSTERS} clusters "
            f"of column {roles.cluster!r} in an arm, where cluster-robust standard errors "
            f"tend to be too small: {shown(few)}.",
            DataWarning,
            stacklevel=stacklevel,
        )

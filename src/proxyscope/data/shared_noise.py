"""The part of clustered cells' errors that every cell of an experiment shares: ``shared_cov``.

When a cluster's users fall in several segment cells of one experiment, the
cells' errors are correlated. With s_gc cluster g's summed influence-function
score in cell c (the first contrast's: treatment − control, or direct − pure
control with an exposure column; :class:`~proxyscope.data.clustered.Clustered`),
the cross-cell block is S_cc' = f Σ_g s_gc s_gc'ᵀ. The model takes, per
experiment e, one matrix U_e that every pair of its cells shares:
Cov(d_c, d_c') = U_e for c ≠ c' and Var(d_c) = S_c, the cell's own CR1
covariance, so that S_c − U_e is the cell's own part. :func:`shared_noise`
estimates U_e from the experiment's kept cells (cells with a drop reason take
no part):

1. the mean over ordered pairs c ≠ c' of the blocks S_cc', with
   f_e = G_e / (G_e − 1) and G_e the distinct clusters in the experiment's kept
   cells. The sum over pairs needs no pairs:
   Σ_{c≠c'} S_cc' = f_e [Σ_g (Σ_c s_gc)(Σ_c s_gc)ᵀ − Σ_g Σ_c s_gc s_gcᵀ]
   (built symmetric: each entry (i, j) is written to (j, i) too);
2. projected onto the positive semidefinite matrices by clipping negative
   eigenvalues at 0, in standardized units (each metric divided by the square
   root of its mean variance over the experiment's kept cells), so that the
   projection does not depend on the metrics' units;
3. not shrunk toward the cells' own covariances. S_c rests on the cell's own
   clusters, U_e on all of the experiment's, so with few clusters per cell
   some S_c falls below U_e in some direction by estimation noise alone (on the
   simulated workspace world, with about 38 clusters per cell, max_c
   λ_max(S_c⁻¹ U_e) is typically 1.0–2.5). Shrinking U_e until every S_c − U_e
   is positive semidefinite would leave about half of the shared part out
   (measured: the experiment-variance inflation left unexplained was 1.9×
   instead of 1.0×). The model instead takes each cell's own part as the
   positive semidefinite part of S_c − U_e, which raises such a cell's
   covariance slightly (:attr:`proxyscope.model.structure.FitData.own_cov`).
   ``largest_ratio[e]`` = max_c λ_max(S_c⁻¹ U_e) is reported.

Experiments with fewer than two kept cells, and cells with a drop reason, get
zeros. How well one common matrix explains the cross-cell blocks is measured
exactly (:func:`_pair_norms`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse

#: Eigenvalues (standardized units) below this fraction of a cell's largest count as zero.
RANK_TOL = 1e-12


@dataclass(frozen=True)
class SharedNoise:
    """The shared part of every cell, and per experiment what it took to get it.

    ``cov[c]`` (m × m) is U_e of cell c's experiment (zeros for a cell with a
    drop reason or an experiment with fewer than two kept cells). Per experiment
    (the codes of ``cell_exp``): ``cells[e]`` kept cells, ``factor[e]`` f_e,
    ``mean[e]`` the mean cross-cell block before projection,
    ``shared[e]`` U_e, ``largest_ratio[e]`` max_c λ_max(S_c⁻¹ U_e) (NaN where U_e
    is zero or the experiment has fewer than two kept cells), ``residual[e]`` and
    ``residual_mean[e]`` the relative Frobenius residual of U_e and of the
    mean before projection (see :func:`shared_noise`; NaN where there are no
    cross blocks).
    """

    cov: np.ndarray
    cells: np.ndarray
    factor: np.ndarray
    mean: np.ndarray
    shared: np.ndarray
    largest_ratio: np.ndarray
    residual: np.ndarray
    residual_mean: np.ndarray

    def summary(self) -> dict[str, Any]:
        """``meta["cluster"]["shared_noise"]``: counts and medians over experiments."""
        has = np.abs(self.shared).sum(axis=(1, 2)) > 0
        finite = np.isfinite(self.largest_ratio)

        def median(x: np.ndarray) -> float | None:
            return float(np.median(x)) if x.size else None

        return {
            "experiments_with_shared": int(has.sum()),
            "experiments_with_several_cells": int((self.cells >= 2).sum()),
            "median_largest_ratio": median(self.largest_ratio[finite]),
            "median_residual": median(self.residual[np.isfinite(self.residual)]),
            "median_residual_unprojected": median(
                self.residual_mean[np.isfinite(self.residual_mean)]
            ),
            "method": (
                "U_e = mean over ordered pairs of an experiment's kept cells of the CR1 "
                "cross-cell blocks, PSD-projected in standardized units (not shrunk: the "
                "model takes each cell's own part as the PSD part of S_c - U_e); "
                "largest_ratio = max_c lambda_max(S_c^-1 U_e); residual = exact "
                "||blocks - U_e||_F / ||blocks||_F over the ordered pairs, standardized units"
            ),
        }


def experiment_codes(experiments: np.ndarray) -> np.ndarray:
    """Integer code 0 .. E − 1 of each cell's experiment, in order of first appearance."""
    return np.asarray(pd.factorize(pd.Series(list(experiments), dtype=object))[0], dtype=np.int64)


def experiment_clusters(exp: np.ndarray, cluster: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per (cell, cluster) pair the code of its (experiment, cluster); each code's experiment."""
    span = int(cluster.max()) + 1 if len(cluster) else 1
    key = np.asarray(pd.factorize(exp * span + cluster)[0], dtype=np.int64)
    key_exp = np.zeros(int(key.max()) + 1 if len(key) else 0, dtype=np.int64)
    key_exp[key] = exp
    return key, key_exp


def shared_noise(
    score: np.ndarray,
    pair_cell: np.ndarray,
    pair_cluster: np.ndarray,
    own: np.ndarray,
    cell_exp: np.ndarray,
    kept: np.ndarray,
) -> SharedNoise:
    """U_e per experiment from the first contrast's cluster scores (module docstring).

    Parameters
    ----------
    score, pair_cell, pair_cluster : arrays, one row per (cell, cluster)
        The cluster's summed score (m columns), its cell and its cluster code
        (:class:`~proxyscope.data.clustered.Clustered`'s fields of those names).
    own : (cells, m, m) array
        Each cell's own CR1 covariance; metrics in their natural direction.
    cell_exp : int array
        Experiment code (0 .. E − 1) of every cell.
    kept : bool array
        Cells without a drop reason.

    Returns
    -------
    SharedNoise
    """
    n_cells, m = len(cell_exp), score.shape[1]
    n_exp = int(cell_exp.max()) + 1 if n_cells else 0
    # Overflowing cells take no part here (summarize then refuses them, naming them).
    whole = np.isfinite(own).all(axis=(1, 2))
    np.logical_and.at(whole, pair_cell, np.isfinite(score).all(axis=1))
    kept = kept & whole
    take = kept[pair_cell]
    cell, score = pair_cell[take], score[take]
    exp = cell_exp[cell]
    key, key_exp = experiment_clusters(exp, pair_cluster[take])
    joint = np.stack(
        [np.bincount(key, weights=score[:, i], minlength=len(key_exp)) for i in range(m)], axis=1
    )
    n_kept = np.bincount(cell_exp[kept], minlength=n_exp)
    n_clusters = np.bincount(key_exp, minlength=n_exp)
    factor = np.divide(
        n_clusters, n_clusters - 1.0, out=np.full(n_exp, np.nan), where=n_clusters > 1
    )
    several = n_kept >= 2
    cross = np.zeros((n_exp, m, m))
    for i in range(m):
        for j in range(i, m):
            together = np.bincount(key_exp, weights=joint[:, i] * joint[:, j], minlength=n_exp)
            alone = np.bincount(exp, weights=score[:, i] * score[:, j], minlength=n_exp)
            cross[:, i, j] = cross[:, j, i] = together - alone
    mean = np.zeros((n_exp, m, m))
    pairs = n_kept * (n_kept - 1.0)
    mean[several] = (factor[several] / pairs[several])[:, None, None] * cross[several]
    mean[~np.isfinite(mean).all(axis=(1, 2))] = 0.0  # overflow: no shared part

    var = (
        np.stack(
            [
                np.bincount(cell_exp[kept], weights=own[kept, i, i], minlength=n_exp)
                for i in range(m)
            ],
            axis=1,
        )
        / np.maximum(n_kept, 1)[:, None]
    )
    scale = np.where((var > 0) & np.isfinite(var), np.sqrt(np.where(var > 0, var, 1.0)), 1.0)
    outer = scale[:, :, None] * scale[:, None, :]
    projected = _clip(mean / outer) * outer
    ratio = np.zeros(n_exp)
    if kept.any():
        per_cell = _largest_ratio(
            own[kept] / outer[cell_exp[kept]], (projected / outer)[cell_exp[kept]]
        )
        np.maximum.at(ratio, cell_exp[kept], per_cell)
    nonzero = several & (np.abs(projected).sum(axis=(1, 2)) > 0)
    largest = np.where(nonzero, ratio, np.nan)
    shared = np.where(nonzero[:, None, None], projected, 0.0)
    cov = np.zeros((n_cells, m, m))
    cov[kept] = shared[cell_exp[kept]]

    total = _pair_norms(cell, exp, key, score / scale[exp], factor, n_exp)
    std_mean, std_shared = mean / outer, shared / outer
    with np.errstate(invalid="ignore", divide="ignore"):
        fit_mean = total - pairs * (std_mean**2).sum(axis=(1, 2))
        fit = (
            total
            - 2 * pairs * (std_mean * std_shared).sum(axis=(1, 2))
            + pairs * (std_shared**2).sum(axis=(1, 2))
        )
        ok = several & (total > 0)
        residual = np.where(ok, np.sqrt(np.maximum(fit, 0) / total), np.nan)
        residual_mean = np.where(ok, np.sqrt(np.maximum(fit_mean, 0) / total), np.nan)
    return SharedNoise(cov, n_kept, factor, mean, shared, largest, residual, residual_mean)


def _clip(mat: np.ndarray) -> np.ndarray:
    """Each symmetric matrix of the stack with its negative eigenvalues set to 0."""
    if mat.shape[0] == 0:
        return mat.copy()
    w, v = np.linalg.eigh(mat)
    out = np.einsum("eik,ek,ejk->eij", v, np.maximum(w, 0.0), v)
    return (out + np.swapaxes(out, 1, 2)) / 2


def _largest_ratio(own: np.ndarray, shared: np.ndarray) -> np.ndarray:
    """λ_max(S⁻¹ U) per cell, for S positive semidefinite and U PSD (both standardized).

    Computed in S's range (S = V diag(d) Vᵀ, directions with d ≤ RANK_TOL · max d
    taken as zero); inf when U reaches into S's null space.
    """
    d, v = np.linalg.eigh(own)
    top = np.maximum(d.max(axis=1, keepdims=True), 0.0)
    rank = d > RANK_TOL * top
    inv = np.where(rank, 1.0 / np.sqrt(np.where(rank, d, 1.0)), 0.0)
    white = v * inv[:, None, :]
    inner = np.einsum("cki,ckl,clj->cij", white, shared, white)
    inner = (inner + np.swapaxes(inner, 1, 2)) / 2
    ratio = np.linalg.eigvalsh(inner).max(axis=1) if own.shape[1] else np.zeros(len(own))
    in_null = np.einsum("cki,ckl,cli->ci", v, shared, v)
    leak = np.where(rank, 0.0, in_null).sum(axis=1)
    trace = np.einsum("cii->c", shared)
    return np.where(leak > RANK_TOL * np.maximum(trace, 0.0), np.inf, np.maximum(ratio, 0.0))


def _pair_norms(
    cell: np.ndarray,
    exp: np.ndarray,
    key: np.ndarray,
    score: np.ndarray,
    factor: np.ndarray,
    n_exp: int,
) -> np.ndarray:
    """Σ_{c≠c'} ||S_cc'||_F² per experiment, exactly, from the (standardized) kept scores.

    One sparse product per experiment: Z has a row per (cell, metric) and a
    column per cluster, so the blocks of f_e Z Zᵀ are the S_cc'.
    """
    m = score.shape[1]
    out = np.zeros(n_exp)
    if not len(cell) or not m:
        return out
    order = np.argsort(exp, kind="stable")
    bounds = np.searchsorted(exp[order], np.arange(n_exp + 1))
    for e in range(n_exp):
        rows = order[bounds[e] : bounds[e + 1]]
        local_cell = np.asarray(pd.factorize(cell[rows])[0])
        if local_cell.max(initial=0) < 1:
            continue
        local_key = np.asarray(pd.factorize(key[rows])[0])
        n_rows, n_cols = (int(local_cell.max()) + 1) * m, int(local_key.max()) + 1
        z = scipy.sparse.csr_matrix(
            (
                score[rows].ravel(),
                ((local_cell[:, None] * m + np.arange(m)).ravel(), np.repeat(local_key, m)),
            ),
            shape=(n_rows, n_cols),
        )
        prod = (z @ z.T).tocoo()
        between = prod.row // m != prod.col // m
        out[e] = factor[e] ** 2 * float((prod.data[between] ** 2).sum())
    return out

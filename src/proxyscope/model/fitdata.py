"""The data a fit runs on: the cells standardized, sorted by experiment, with their
designs and the part of their errors an experiment's cells share.

Nothing here imports PyMC.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pandas as pd

from proxyscope.data import designs
from proxyscope.data.cells import CellEffects
from proxyscope.data.noise import moderate_noise
from proxyscope.errors import DataError


@dataclasses.dataclass(frozen=True)
class FitData:
    """Standardized cell data in the model's order (cells sorted by experiment).

    Attributes
    ----------
    d : (M, C) standardized effects; s_cov : (M, M, C) standardized noise covariances.
    scales : (M,) original units per standardized unit, outcome first.
    cell_segment, cell_experiment : (C,) int indices (in the sorted order).
    order : (C,) positions of the sorted cells in the CellEffects.
    experiments : experiment ids, in index order.
    cell_group : (C,) int, 0 for a cell of a randomized design, g >= 1 for one of
        ``bias_designs[g - 1]`` (the designs whose estimates may be biased).
    bias_designs : those designs, in the order of ``proxyscope.data.designs.DESIGNS``.
    shared_cov : (E, M, M) standardized, or None: the part of its cells' errors an
        experiment's cells share (CellEffects' ``shared_cov``, e.g. clusters that
        span the segment cells of a cluster-randomized experiment). The model
        integrates it as one error u_e ~ N(0, shared_cov[e]) added to every
        cell of the experiment, with each cell's own part ``own_cov`` left.
    cell_period : (C,) int or None: each cell's period (an index into ``periods``)
        when the model lets the relation move over time; None for a static fit.
    periods : the periods' labels, in order (empty for a static fit).
    n_segments : the number of segments ``cell_segment`` indexes.
    """

    d: np.ndarray
    s_cov: np.ndarray
    scales: np.ndarray
    cell_segment: np.ndarray
    cell_experiment: np.ndarray
    order: np.ndarray
    experiments: np.ndarray
    cell_group: np.ndarray | None = None
    bias_designs: tuple[str, ...] = ()
    shared_cov: np.ndarray | None = None
    cell_period: np.ndarray | None = None
    periods: tuple[str, ...] = ()
    n_segments: int = 0

    @property
    def n_periods(self) -> int:
        """Periods the relation moves over (0 for a static fit)."""
        return len(self.periods) if self.cell_period is not None else 0

    @functools.cached_property
    def param_segment(self) -> np.ndarray:
        """(C,) the index of each cell's parameters: its segment, or with time the
        virtual segment ``period * n_segments + segment`` (:mod:`proxyscope.core.timewalk`)."""
        if self.cell_period is None:
            return self.cell_segment
        return np.ascontiguousarray(self.cell_period * self.n_segments + self.cell_segment)

    @functools.cached_property
    def own_cov(self) -> np.ndarray:
        """(M, M, C): each cell's own error covariance, the positive semidefinite part
        of ``s_cov`` less its experiment's shared part (``s_cov`` itself without one).

        The shared part is estimated from all of an experiment's clusters, each
        cell's covariance from its own, so by estimation noise a cell's may fall
        below the shared part in some direction; there its own part is 0 (in
        standardized units), which raises that cell's total a little.
        """
        if self.shared_cov is None:
            return self.s_cov
        diff = np.moveaxis(self.s_cov, -1, 0) - self.shared_cov[self.cell_experiment]
        w, v = np.linalg.eigh(0.5 * (diff + np.swapaxes(diff, 1, 2)))
        own = np.einsum("cik,ck,cjk->cij", v, np.maximum(w, 0.0), v)
        return np.ascontiguousarray(np.moveaxis(0.5 * (own + np.swapaxes(own, 1, 2)), 0, -1))

    @functools.cached_property
    def chol_u(self) -> np.ndarray | None:
        """(E, M, M) lower factors of ``shared_cov`` (None without it); a matrix that
        is only semi-definite gets a jitter of 1e-12 times its largest variance."""
        if self.shared_cov is None:
            return None
        m = self.shared_cov.shape[1]
        top = np.max(np.einsum("eii->ei", self.shared_cov), axis=1)
        jitter = 1e-12 * np.maximum(top, 1e-300)[:, None, None] * np.eye(m)
        out = np.linalg.cholesky(self.shared_cov + jitter)
        out[top <= 0] = 0.0
        return np.ascontiguousarray(out)

    @property
    def groups(self) -> np.ndarray:
        """``cell_group``, zeros when no cell's design may be biased."""
        if self.cell_group is None:
            return np.zeros(self.d.shape[1], dtype=np.int64)
        return self.cell_group

    @property
    def n_experiments(self) -> int:
        return len(self.experiments)

    @property
    def has_outcome_experiment_effect(self) -> bool:
        """Whether the model gets eta0_e, the experiment's long-term effect no proxy
        carries: only when some experiment has two or more cells (with one cell
        each it is the same thing as the cell's residual)."""
        return bool(np.any(np.bincount(self.cell_experiment) >= 2))


#: Floor of the signal scale, as a fraction of the observed standard deviation.
SIGNAL_FLOOR = 0.2


def metric_scales(effects: CellEffects) -> np.ndarray:
    """The unit of the priors for each metric: the spread of its TRUE cell effects.

    Observed cell effects vary for two reasons: true effects differ across
    cells, and each estimate has sampling noise. The priors should be on the
    scale of the first, so the unit is the method-of-moments estimate
    sqrt(var(d) - mean(S_jj)) — observed variance minus average sampling
    variance — floored at ``SIGNAL_FLOOR`` times the observed standard
    deviation for metrics whose true effects barely vary. (The observed
    standard deviation alone can be several times the true spread when cells
    are small, which makes every prior too wide.)
    """
    eff = effects.effect
    if eff.shape[0] < 2:
        raise DataError("The model needs at least two cells.")
    observed = np.var(eff, axis=0, ddof=1)
    noise = np.mean(np.einsum("cii->ci", effects.noise_cov), axis=0)
    for j, name in enumerate(effects.metrics):
        if not np.isfinite(observed[j]) or observed[j] <= 0:
            raise DataError(
                f"Metric {name!r} has no variation across the {eff.shape[0]} cells "
                f"(variance {observed[j]!r}); the model needs effects that vary."
            )
    signal = np.maximum(observed - noise, SIGNAL_FLOOR**2 * observed)
    return np.asarray(np.sqrt(signal), dtype=float)


def model_effects(effects: CellEffects, noise: str) -> CellEffects:
    """The cell effects the likelihood sees under the ``noise`` setting of ProxyModel."""
    return moderate_noise(effects).effects if noise == "moderated" else effects


def fit_data(
    effects: CellEffects,
    cell_segment: np.ndarray,
    timed: bool = False,
    n_segments: int | None = None,
) -> FitData:
    """Standardize and sort the cells of ``effects`` by experiment.

    ``timed``: the relation moves over the periods of ``effects`` (its
    ``periods`` and ``period_index``); ``n_segments`` the number of segments
    ``cell_segment`` indexes (default its largest value plus one).
    """
    if len(effects.experiments) < 2:
        raise DataError(
            f"The model needs cells from at least two experiments; got {len(effects.experiments)}."
        )
    scales = metric_scales(effects)
    exp_ids = effects.experiments
    exp_index = pd.Index(exp_ids).get_indexer(effects.experiment)
    order = np.lexsort((cell_segment, exp_index))
    eff = effects.effect[order] / scales
    cov = effects.noise_cov[order] / np.outer(scales, scales)[None]
    bad = ~np.isfinite(eff).all(axis=1) | ~np.isfinite(cov).all(axis=(1, 2))
    if bad.any():
        raise DataError(
            f"{int(bad.sum())} cells have non-finite effects or noise covariances; "
            "summaries must be finite."
        )
    design = effects.design[order]
    bias_designs = tuple(d for d in designs.order(list(design)) if not designs.is_randomized(d))
    group = np.zeros(len(order), dtype=np.int64)
    for g, name in enumerate(bias_designs, start=1):
        group[design == name] = g
    return FitData(
        shared_cov=shared_errors(effects, order, exp_index, scales),
        d=np.ascontiguousarray(eff.T),
        s_cov=np.ascontiguousarray(cov.transpose(1, 2, 0)),
        scales=scales,
        cell_segment=np.ascontiguousarray(cell_segment[order], dtype=np.int64),
        cell_experiment=np.ascontiguousarray(exp_index[order], dtype=np.int64),
        order=order,
        experiments=np.asarray(exp_ids),
        cell_group=group,
        bias_designs=bias_designs,
        cell_period=(
            np.ascontiguousarray(effects.period_index[order], dtype=np.int64) if timed else None
        ),
        periods=tuple(effects.periods) if timed else (),
        n_segments=int(cell_segment.max()) + 1 if n_segments is None else int(n_segments),
    )


def shared_errors(
    effects: CellEffects, order: np.ndarray, exp_index: np.ndarray, scales: np.ndarray
) -> np.ndarray | None:
    """Each experiment's shared error covariance (E, M, M), standardized, from the
    cells' ``shared_cov``; None when no cell has one. The data layer keeps it equal
    across an experiment's cells; the first of each experiment's cells is taken."""
    if designs.SHARED_COV not in effects.data or effects.n_cells == 0:
        return None
    per_cell = effects.variable(designs.SHARED_COV)[order] / np.outer(scales, scales)[None]
    if not np.any(per_cell):
        return None
    exp_sorted = exp_index[order]
    first = np.flatnonzero(np.r_[True, exp_sorted[1:] != exp_sorted[:-1]])
    out = np.zeros((int(exp_sorted.max()) + 1, *per_cell.shape[1:]))
    out[exp_sorted[first]] = per_cell[first]
    return np.ascontiguousarray(out)


def weighted_means(
    data: FitData, row: int, groups: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray]:
    """Precision-weighted mean of metric ``row`` over the cells of each group,
    and the group's total weight (the inverse variance of that mean)."""
    w = 1.0 / np.maximum(data.s_cov[row, row], 1e-300)
    num = np.bincount(groups, weights=w * data.d[row], minlength=n_groups)
    den = np.bincount(groups, weights=w, minlength=n_groups)
    return num / den, den

"""What the model is fitted on: segments, designs, standardized data.

Nothing here imports PyMC: the structure of a fit can be built, validated,
saved and compared without the sampler.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from proxyscope import dims
from proxyscope.data.cells import CellEffects
from proxyscope.data.noise import moderate_noise
from proxyscope.errors import DataError, ParameterError, check_one_of


def sum_to_zero_basis(n_levels: int) -> np.ndarray:
    """Orthonormal basis (L x (L-1)) of the vectors over L levels that sum to zero.

    A main effect with L levels is ``basis @ u`` with ``u`` unconstrained and
    ``u ~ N(0, s^2 I)``: the same prior as a sum-to-zero Normal with scale s.
    """
    if n_levels < 2:
        return np.zeros((n_levels, 0))
    centred = np.eye(n_levels) - 1.0 / n_levels
    q, _ = np.linalg.qr(centred)
    basis = q[:, : n_levels - 1]
    # Fix signs so the basis does not depend on the LAPACK build.
    signs = np.sign(basis[np.argmax(np.abs(basis), axis=0), np.arange(n_levels - 1)])
    return np.asarray(basis * signs)


@dataclasses.dataclass(frozen=True)
class SegmentStructure:
    """The segment cells of a fit and how they are built from segment columns.

    Attributes
    ----------
    columns : tuple of str
        Segment column names (may be empty: one segment, "all").
    levels : tuple of tuple of str
        Sorted levels of each column.
    level_index : ndarray (S, n_columns)
        Level of each segment in each column.
    labels : tuple of str
        Label of each segment, e.g. "IN / Mobile / New".
    """

    columns: tuple[str, ...]
    levels: tuple[tuple[str, ...], ...]
    level_index: np.ndarray
    labels: tuple[str, ...]

    @property
    def n_segments(self) -> int:
        return len(self.labels)

    def basis(self, j: int) -> np.ndarray:
        return sum_to_zero_basis(len(self.levels[j]))

    def design(self, level_index: np.ndarray | None = None) -> list[np.ndarray]:
        """Main-effect design per column: rows of the sum-to-zero basis."""
        idx = self.level_index if level_index is None else level_index
        return [self.basis(j)[idx[:, j]] for j in range(len(self.columns))]

    def label_of(self, values: Sequence[str]) -> str:
        if not self.columns:
            return dims.ALL_SEGMENTS
        return dims.LABEL_SEP.join(str(v) for v in values)

    def level_codes(self, frame: pd.DataFrame) -> np.ndarray:
        """Level index of each row of ``frame`` in each column (-1 if unseen)."""
        out = np.full((len(frame), len(self.columns)), -1, dtype=np.int64)
        for j, col in enumerate(self.columns):
            lookup = {lev: i for i, lev in enumerate(self.levels[j])}
            out[:, j] = [lookup.get(str(v), -1) for v in frame[col]]
        return out

    def frame(self) -> pd.DataFrame:
        """One row per segment: the column values and the label."""
        data: dict[str, Any] = {
            c: [self.levels[j][i] for i in self.level_index[:, j]]
            for j, c in enumerate(self.columns)
        }
        data[dims.SEGMENT] = list(self.labels)
        return pd.DataFrame(data)

    def to_json(self) -> str:
        return json.dumps(
            {
                "columns": list(self.columns),
                "levels": [list(lv) for lv in self.levels],
                "level_index": self.level_index.tolist(),
                "labels": list(self.labels),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> SegmentStructure:
        raw = json.loads(text)
        n_cols = len(raw["columns"])
        return cls(
            columns=tuple(raw["columns"]),
            levels=tuple(tuple(lv) for lv in raw["levels"]),
            level_index=np.asarray(raw["level_index"], dtype=np.int64).reshape(
                len(raw["labels"]), n_cols
            ),
            labels=tuple(raw["labels"]),
        )

    @classmethod
    def from_effects(cls, effects: CellEffects) -> tuple[SegmentStructure, np.ndarray]:
        """The segments present in ``effects`` and the segment of every cell."""
        columns = effects.segments
        if not columns:
            return (
                cls((), (), np.zeros((1, 0), dtype=np.int64), (dims.ALL_SEGMENTS,)),
                np.zeros(effects.n_cells, dtype=np.int64),
            )
        cells = effects.cells()
        levels = tuple(tuple(sorted(pd.unique(cells[c].astype(str)))) for c in columns)
        codes = np.column_stack(
            [
                pd.Categorical(cells[c].astype(str), categories=levels[j]).codes
                for j, c in enumerate(columns)
            ]
        ).astype(np.int64)
        combos, cell_segment = np.unique(codes, axis=0, return_inverse=True)
        labels = tuple(
            dims.LABEL_SEP.join(levels[j][k] for j, k in enumerate(row)) for row in combos
        )
        return cls(columns, levels, combos.astype(np.int64), labels), cell_segment.reshape(-1)


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
    """

    d: np.ndarray
    s_cov: np.ndarray
    scales: np.ndarray
    cell_segment: np.ndarray
    cell_experiment: np.ndarray
    order: np.ndarray
    experiments: np.ndarray

    @property
    def n_experiments(self) -> int:
        return len(self.experiments)


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


def fit_data(effects: CellEffects, cell_segment: np.ndarray) -> FitData:
    """Standardize and sort the cells of ``effects`` by experiment."""
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
    return FitData(
        d=np.ascontiguousarray(eff.T),
        s_cov=np.ascontiguousarray(cov.transpose(1, 2, 0)),
        scales=scales,
        cell_segment=np.ascontiguousarray(cell_segment[order], dtype=np.int64),
        cell_experiment=np.ascontiguousarray(exp_index[order], dtype=np.int64),
        order=order,
        experiments=np.asarray(exp_ids),
    )


def centre_locations(data: FitData, structure: SegmentStructure, pooling: str) -> np.ndarray:
    """Which location interactions to sample centred: (metrics, segments) flags.

    A centred interaction is efficient when the data pin its value down much
    better than the interaction scale lets it vary; otherwise the non-centred
    form is (each makes a funnel where the other does not). A row with a
    failure cohort has both kinds: the cohort's deviation is large and pinned
    by its data, while the other segments' deviations are consistent with
    zero and set by the (then small) scale. So the choice is made per
    segment. A pilot, per metric: the precision-weighted segment means are
    regressed on the main effects (additive) or the grand mean
    (exchangeable), and the residuals' weighted mean square
    ``sum(resid^2 / se^2) / (S - p)`` — about 1 when there is no interaction —
    is compared with :data:`CENTRE_THRESHOLD`. On the simulated world it is
    0.5-2 for metrics without interactions and 15-250 for those with a cohort,
    so the threshold sits well away from both. While a row is above it, or
    its largest ``resid^2 / se^2`` is above :data:`OUTLIER_THRESHOLD` (a
    lone cohort in a small segment barely moves the row's average), that
    segment is centred and left out of the regression, which is then
    refitted: one outlier does not make its neighbours look like outliers
    through the main effects it distorts.
    """
    m = data.d.shape[0]
    n_seg = structure.n_segments
    flags = np.zeros((m, n_seg), dtype=bool)
    if pooling not in ("additive", "exchangeable") or n_seg < 3:
        return flags
    if pooling == "additive" and structure.columns:
        x = np.column_stack([np.ones(n_seg), *structure.design()])
    else:
        x = np.ones((n_seg, 1))
    p = x.shape[1]
    if n_seg <= p:
        return flags
    for j in range(m):
        ybar, den = weighted_means(data, j, data.cell_segment, n_seg)
        se2 = 1.0 / den
        sw = np.sqrt(1.0 / se2)
        active = np.ones(n_seg, dtype=bool)
        while active.sum() > p:
            coef, *_ = np.linalg.lstsq(
                x[active] * sw[active, None], ybar[active] * sw[active], rcond=None
            )
            z2 = (ybar - x @ coef) ** 2 / se2
            worst = int(np.argmax(np.where(active, z2, -np.inf)))
            ratio = float(np.sum(z2[active]) / (active.sum() - p))
            if ratio <= CENTRE_THRESHOLD and z2[worst] <= OUTLIER_THRESHOLD:
                break
            flags[j, worst] = True
            active[worst] = False
    return flags


def weighted_means(
    data: FitData, row: int, groups: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray]:
    """Precision-weighted mean of metric ``row`` over the cells of each group,
    and the group's total weight (the inverse variance of that mean)."""
    w = 1.0 / np.maximum(data.s_cov[row, row], 1e-300)
    num = np.bincount(groups, weights=w * data.d[row], minlength=n_groups)
    den = np.bincount(groups, weights=w, minlength=n_groups)
    return num / den, den


def principal_axes(data: FitData) -> np.ndarray:
    """An orthogonal (K, K) basis in which to sample the slopes' i.i.d. pieces:
    the principal axes of the proxies' experiment-level effects.

    Proxies that move together across experiments (watch time and starts both
    follow how engaging a change is) leave only combinations of their slopes
    well identified. The posterior of, e.g., (beta_watch, beta_starts) is then
    a long thin ridge that a diagonal mass matrix crosses in tiny steps, and
    the ridge narrows as experiments accumulate (measured on 1,000
    experiments: min bulk ESS 28 of 1,200 draws, on the watch and starts
    slopes). Sampled along the principal axes of the proxies' co-movement,
    the slopes are nearly uncorrelated and the diagonal mass matrix adapts to
    each axis. The map is orthogonal and the pieces it is applied to have
    i.i.d. zero-mean normal priors across proxies (global, fixed-scale main
    effects, standard-normal variates), so the model is exactly the same;
    only the coordinates the sampler moves in change.

    Pilot: per experiment, the precision-weighted mean of each proxy over its
    cells (standardized units); the eigenvectors of their covariance across
    experiments, largest variance first, each signed so that its largest
    entry is positive: a function of the data alone.
    """
    k = data.d.shape[0] - 1
    if k == 1 or data.n_experiments < 3:
        return np.eye(k)
    means = np.column_stack(
        [
            weighted_means(data, j, data.cell_experiment, data.n_experiments)[0]
            for j in range(1, k + 1)
        ]
    )
    cov = np.cov(means, rowvar=False)
    if not np.all(np.isfinite(cov)):
        return np.eye(k)
    values, vectors = np.linalg.eigh(cov)
    vectors = vectors[:, np.argsort(-values, kind="stable")]
    big = np.argmax(np.abs(vectors), axis=0)
    vectors = vectors * np.sign(vectors[big, np.arange(k)])[None, :]
    return np.ascontiguousarray(vectors)


#: Weighted residual mean square above which location interactions are centred.
CENTRE_THRESHOLD = 4.0
#: A single segment this many squared standard errors from the main effects is
#: centred even when the rest of its row shows no interaction (|z| > 4: about
#: 1 in 16,000 by chance per segment and metric).
OUTLIER_THRESHOLD = 16.0


POOLINGS = ("additive", "exchangeable", "complete", "none")


def check_pooling(pooling: Any) -> str:
    return str(check_one_of(pooling, POOLINGS, param="pooling", owner="ProxyModel"))


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ParameterError(message)

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
from proxyscope.errors import ParameterError, check_one_of
from proxyscope.model.fitdata import FitData, weighted_means
from proxyscope.options import POOLINGS


def _pivoted_qr(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Complete QR with column pivoting (the leading columns of Q span x's range)."""
    import scipy.linalg

    q, r, piv = scipy.linalg.qr(x, mode="full", pivoting=True)
    return q, r, piv


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

    def interaction_projector(self, pooling: str) -> np.ndarray | None:
        """(S, S) projector of segment deviations onto what the pooling's other
        terms cannot express, or None when nothing is left.

        Interactions are what the global value and (additive pooling) the
        segment columns' main effects cannot express: the part of a vector of
        segment deviations orthogonal to the intercept and the main effects'
        designs. Without it the two would be redundant, identified by their
        priors only: with one segment column every segment is a level, and
        an interaction equals a main effect (measured: 150-550 leapfrog
        steps per draw and divergences with one or two columns). A segment
        deviation drawn from the interaction prior is projected; with one
        column under additive pooling nothing is left and the model has no
        interaction term.
        """
        n = self.n_segments
        if pooling not in ("additive", "exchangeable") or n < 2:
            return None
        parts = [np.ones((n, 1))]
        if pooling == "additive":
            parts += self.design()
        x = np.column_stack(parts)
        q, r, _ = _pivoted_qr(x)
        rank = int(np.sum(np.abs(np.diag(r)) > 1e-9 * max(1.0, float(np.abs(r).max()))))
        if rank >= n:
            return None
        basis = q[:, :rank]
        return np.eye(n) - basis @ basis.T

    def interaction_basis(self, pooling: str, precision: np.ndarray | None = None) -> np.ndarray:
        """(S, r) orthonormal basis of the interactions' space (the range of
        :meth:`interaction_projector`; r = 0 when it is None).

        Interactions are sampled as ``basis @ z`` with i.i.d. normal ``z``:
        the same prior as the projection of i.i.d. normal segment deviations,
        without the directions the projection removes (which the data never
        see and which mix slowly). With ``precision`` (a weight per segment,
        e.g. how many users it holds) the axes are the eigenvectors of the
        data precision within that space, most precise first, so each axis
        is as well or as poorly measured as a whole: what the partial
        centring of :mod:`proxyscope.model.coordinates` needs.
        """
        projector = self.interaction_projector(pooling)
        n = self.n_segments
        if projector is None:
            return np.zeros((n, 0))
        r = round(float(np.trace(projector)))
        weight = np.ones(n) if precision is None else np.asarray(precision, dtype=float)
        weight = weight / max(float(weight.mean()), 1e-300)
        # Eigenvectors of P W P with eigenvalue > 0 span range(P); add a small
        # multiple of P so equal or zero weights still give the whole range.
        values, vectors = np.linalg.eigh(projector @ np.diag(weight) @ projector + 1e-6 * projector)
        order = np.argsort(-values, kind="stable")[:r]
        basis = vectors[:, order]
        # Signs fixed so the basis does not depend on the LAPACK build.
        big = np.argmax(np.abs(basis), axis=0)
        return np.ascontiguousarray(basis * np.sign(basis[big, np.arange(r)])[None, :])

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

    def fitted_segment(self, codes: np.ndarray) -> list[int | None]:
        """Index of the fitted segment of each row of :meth:`level_codes`; None for a
        combination of known levels that the data never had."""
        lookup = {tuple(row): i for i, row in enumerate(self.level_index.tolist())}
        return [lookup.get(tuple(row)) for row in np.asarray(codes).tolist()]

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


def check_pooling(pooling: Any) -> str:
    return str(check_one_of(pooling, POOLINGS, param="pooling", owner="ProxyModel"))


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ParameterError(message)

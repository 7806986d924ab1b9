"""The coordinates the sampler moves in, chosen per fit from the data.

The model (its priors and likelihood) does not depend on these choices; only
the geometry the sampler sees does. Every choice is an exact change of
variables (see :mod:`proxyscope.core.density`):

- ``rotation``: an orthogonal K x K map applied to every block of slopes
  (the principal axes of the proxies' co-movement across experiments,
  :func:`proxyscope.model.structure.principal_axes`);
- ``basis``: the orthonormal axes of the interactions' space
  (:meth:`~proxyscope.model.structure.SegmentStructure.interaction_basis`),
  ordered by how many users stand behind each;
- partial centring weights ``w`` in [0, 1] for the blocks that have a
  learned scale (interactions, per axis, and main effects of columns with
  many levels): an entry is sampled as ``value / scale ** w``. ``w = 1`` is
  the non-centred form, right where the data say little about the entry
  (its prior sets it); ``w = 0`` the centred form, right where the data pin
  it down far more tightly than the scale lets it vary.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from scipy import optimize, stats

from proxyscope.model.fitdata import FitData, weighted_means
from proxyscope.model.structure import SegmentStructure, principal_axes


@dataclasses.dataclass(frozen=True)
class Coordinates:
    """Per-fit sampler coordinates.

    Attributes
    ----------
    rotation : (K, K) orthogonal matrix applied to the slopes' blocks.
    basis : (S, r) orthonormal axes of the interactions (r = 0: no interactions).
    interaction : per family (locations, slopes, log sigma), (R, r) weights.
    main : per family, per segment column, (R,) weights of the main effects
        (used when the column's scale is learned).
    """

    rotation: np.ndarray
    basis: np.ndarray
    interaction: tuple[np.ndarray, np.ndarray, np.ndarray]
    main: tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...], tuple[np.ndarray, ...]]

    @classmethod
    def natural(cls, k: int, basis: np.ndarray, n_levels: tuple[int, ...]) -> Coordinates:
        """Non-centred everywhere, no rotation of the slopes."""
        rows = (k + 1, k, 1)
        r = basis.shape[1]
        return cls(
            rotation=np.eye(k),
            basis=basis,
            interaction=tuple(np.ones((n, r)) for n in rows),  # type: ignore[arg-type]
            main=tuple(tuple(np.ones(n) for _ in n_levels) for n in rows),  # type: ignore[arg-type]
        )

    def replace(self, **changes: Any) -> Coordinates:
        return dataclasses.replace(self, **changes)

    def summary(self) -> dict[str, Any]:
        """What was chosen, for the fit's record: the mean centring per family."""
        names = ("locations", "slopes", "log_sigma")
        return {
            "rotated_slopes": bool(not np.allclose(self.rotation, np.eye(len(self.rotation)))),
            "interaction_axes": int(self.basis.shape[1]),
            "interaction_centring": {
                n: round(float(1.0 - np.mean(w)), 3) if w.size else 0.0
                for n, w in zip(names, self.interaction, strict=True)
            },
        }


def choose(data: FitData, structure: SegmentStructure, pooling: str) -> Coordinates:
    """The coordinates of a fit's first run: a function of the data alone.

    Slopes are rotated to the principal axes of the proxies' co-movement
    across experiments. Interactions are sampled along the axes of their
    space ordered by data precision, and each location axis gets the
    partial centring of a normal hierarchical model whose scale is the
    method-of-moments estimate of the pilot (:func:`location_weights`);
    slope and log-sigma axes start non-centred (their first run's posterior
    re-chooses them if it fails, :func:`proxyscope.model.followup.repilot`).
    """
    k = data.d.shape[0] - 1
    n_levels = tuple(len(lv) for lv in structure.levels)
    precision = weighted_means(data, 0, data.cell_segment, structure.n_segments)[1]
    basis = structure.interaction_basis(pooling, precision)
    natural = Coordinates.natural(k, basis, n_levels)
    loc_w = location_weights(data, structure, basis)
    return natural.replace(
        rotation=principal_axes(data),
        interaction=(loc_w, *natural.interaction[1:]),
    )


#: The partial centring of a location axis is set by the interaction scale's
#: lower confidence bound at this level (the Q-profile method of
#: random-effects meta-analysis, Viechtbauer 2007, Statistics in Medicine
#: 26(1)), not by its estimate: where the data leave the scale's posterior
#: reaching down to zero, centred coordinates make a funnel the sampler
#: diverges in (measured on the default world: the long-term effect's row,
#: centred by half from the estimate, gave 2 divergences in every run;
#: non-centred, none).
SCALE_CONFIDENCE = 0.95


def location_weights(data: FitData, structure: SegmentStructure, basis: np.ndarray) -> np.ndarray:
    """(M, r) partial centring weights of the location interactions' axes.

    Per metric: the precision-weighted segment means, read along each axis
    (``z_i = basis_i' ybar``, variance ``se_i^2 = sum_s basis_si^2 / W_s``);
    the interaction scale's lower confidence bound ``scale^2``, the root of
    ``sum z_i^2 / (se_i^2 + scale^2) = chi2_r(SCALE_CONFIDENCE)`` (0 when the
    axes look like noise); the weight of axis i ``se_i^2 / (se_i^2 +
    scale^2)``: 1 where the data say little next to the scale, near 0 where
    they pin the axis down.
    """
    m = data.d.shape[0]
    r = basis.shape[1]
    weights = np.ones((m, r))
    if r == 0:
        return weights
    critical = float(stats.chi2.ppf(SCALE_CONFIDENCE, r))
    for j in range(m):
        ybar, precision = weighted_means(data, j, data.cell_segment, structure.n_segments)
        z2 = (basis.T @ ybar) ** 2
        se2 = (basis**2).T @ (1.0 / precision)

        def excess(scale2: float, z2: np.ndarray = z2, se2: np.ndarray = se2) -> float:
            return float(np.sum(z2 / (se2 + scale2))) - critical

        if excess(0.0) <= 0:
            continue
        high = float(np.max(z2)) + float(np.max(se2))
        scale2 = optimize.brentq(excess, 0.0, high) if excess(high) < 0 else high
        weights[j] = se2 / (se2 + scale2)
    return weights

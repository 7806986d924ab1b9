"""How a cell's effect was estimated: the ``design`` coordinate of CellEffects.

Every cell carries one design (DESIGN.md §8). The model takes the randomized
ones (:data:`RANDOMIZED`) as unbiased estimates of the cell's effect; every
other design may carry a bias from confounding, which the model learns per
design (:class:`~proxyscope.ProxyModel`).

``ab``                 user-randomized A/B test (difference in means)
``cluster``            randomized by cluster (workspace, team, market), clustered covariance
``did``                difference in differences (staged rollouts)
``rdd``                regression discontinuity (threshold rules)
``ipw``                propensity-score weighting, doubly robust (opt-in features)
``synthetic_control``  synthetic control (global launches)
``external``           an estimate made elsewhere (:func:`proxyscope.from_estimates`)

Besides ``effect`` and ``noise_cov``, a cell may carry the optional per-cell
variables of :data:`OPTIONAL_VARIABLES` (cluster counts, the spillover effect
of an exposure design, ``shared_cov``: the part of the errors every cell of an
experiment shares); a set of cells without one reads as its fill value, which
is what :meth:`CellEffects.concat` puts in the cells of a part that lacks it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from proxyscope import dims
from proxyscope.errors import ParameterError

AB = "ab"
CLUSTER = "cluster"
EXTERNAL = "external"
#: Every design a cell may have, in the order reports list them.
DESIGNS: tuple[str, ...] = (AB, CLUSTER, "did", "rdd", "ipw", "synthetic_control", EXTERNAL)
#: Designs whose estimates the model takes as unbiased.
RANDOMIZED: frozenset[str] = frozenset({AB, CLUSTER})

N_CLUSTERS_TREAT = "n_clusters_treat"
N_CLUSTERS_CONTROL = "n_clusters_control"
N_CLUSTERS_SHARED = "n_clusters_shared"
N_SPILLOVER = "n_spillover"
SPILLOVER = "spillover"
SPILLOVER_COV = "spillover_cov"
SHARED_COV = "shared_cov"

#: Optional per-cell variables: name -> (dims, fill value for cells without it).
#: Cluster counts are 0 for a design that is not clustered; the spillover
#: effect and its covariance are NaN in cells without an exposure column. The
#: shared part of an experiment's cells' errors (clusters spanning its segment
#: cells: Cov(d_c, d_c') = shared_cov for two cells of one experiment; the same
#: matrix in each, noise_cov − shared_cov positive semidefinite) is 0 where absent.
OPTIONAL_VARIABLES: dict[str, tuple[tuple[str, ...], Any]] = {
    N_CLUSTERS_TREAT: ((dims.CELL,), 0),
    N_CLUSTERS_CONTROL: ((dims.CELL,), 0),
    N_CLUSTERS_SHARED: ((dims.CELL,), 0),
    N_SPILLOVER: ((dims.CELL,), 0),
    SPILLOVER: ((dims.CELL, dims.METRIC), np.nan),
    SPILLOVER_COV: ((dims.CELL, dims.METRIC, dims.METRIC_), np.nan),
    SHARED_COV: ((dims.CELL, dims.METRIC, dims.METRIC_), 0.0),
}


def is_randomized(design: str) -> bool:
    """True for the designs the model takes as unbiased."""
    return design in RANDOMIZED


def check_design(value: Any, n_cells: int, *, owner: str, param: str = "design") -> np.ndarray:
    """One design per cell from a single name or a sequence of ``n_cells`` names.

    Raises
    ------
    ParameterError
        A name that is not one of :data:`DESIGNS` (the closest is suggested), or a
        sequence of the wrong length.
    """
    if isinstance(value, str):
        values: list[Any] = [value] * n_cells
    elif isinstance(value, Sequence | np.ndarray):
        values = list(np.asarray(value, dtype=object))
        if len(values) != n_cells:
            raise ParameterError(
                f"The {param!r} parameter of {owner} must be one design or one per cell "
                f"({n_cells}); got {len(values)} values."
            )
    else:
        raise ParameterError(
            f"The {param!r} parameter of {owner} must be a design name such as 'ab' or "
            f"'cluster'; got {type(value).__name__} {value!r}."
        )
    bad = sorted({str(v) for v in values if not isinstance(v, str) or v not in DESIGNS})
    if bad:
        raise ParameterError(
            f"The {param!r} parameter of {owner} got the design {bad[0]!r}"
            + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else "")
            + f"; a design is one of {list(DESIGNS)}."
        )
    out = np.empty(n_cells, dtype=object)
    out[:] = [str(v) for v in values]
    return out


def order(designs: Sequence[str]) -> list[str]:
    """The distinct designs of ``designs`` in the order of :data:`DESIGNS`."""
    present = set(designs)
    return [d for d in DESIGNS if d in present]

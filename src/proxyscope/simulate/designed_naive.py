"""What a naive reading of a designed history's units gives: :func:`naive_effects`.

The quasi-experimental cells of :func:`~proxyscope.simulate.designed.designed_history`
come from estimators that remove the confounding planted in their unit data
(:mod:`~proxyscope.simulate.designed_units`). Re-estimating the same cells by a
difference in means of treated and untreated units shows what that confounding
does: a baseline for the estimators and a history on which a check of the
slopes must fail.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from proxyscope import dims
from proxyscope.data import designs as ds
from proxyscope.data.cells import CellEffects
from proxyscope.data.summarize import summarize
from proxyscope.errors import ParameterError, suggestion
from proxyscope.simulate import designed_units as du
from proxyscope.simulate.designed import UNIT_SEGMENT, DesignedHistory, with_segment_column

_NAIVE_ARM = "_naive_arm"
#: The two variants of :func:`naive_effects`.
NAIVE_COVARIANCES: tuple[str, ...] = ("naive", "estimator")


def _naive_rows(design: str, rows: pd.DataFrame) -> pd.DataFrame:
    """The rows a naive comparison reads, with the arm (True: treated) in ``_NAIVE_ARM``."""
    if design == "did":  # the last period, when every wave is treated: ever vs never
        rows = rows[rows[du.PERIOD] == du.DID_PERIODS - 1]
        arm = rows[du.FIRST_TREATED].notna()
    elif design == "ipw":
        arm = rows[du.OPTED_IN] == 1
    elif design == "rdd":
        arm = rows[du.SCORE] >= 0.0
    else:  # post-launch unit-periods, the treated unit's against the donors'
        rows = rows[rows[du.PERIOD] >= du.SC_PRE]
        arm = rows[du.TREATED]
    return rows.assign(**{_NAIVE_ARM: arm.to_numpy(dtype=bool)})


def naive_effects(history: DesignedHistory, *, covariance: str = "naive") -> CellEffects:
    """The history's cells as a naive reading of the same units would give them.

    Every quasi-experimental cell is re-estimated as the difference in means of
    its treated and untreated units (``summarize``, one row per unit): did in
    the last period (every wave treated), ever- against never-treated units;
    ipw opted in against not; rdd at or above the cutoff against below;
    synthetic control the treated unit's post-launch periods against the
    donors' (unit-periods counted as users). The confounding of
    :mod:`~proxyscope.simulate.designed_units` biases each of them. Every cell
    is labelled ``ab`` (taken as unbiased); the A/B cells are unchanged. Cells
    are in the order of ``history.effects``.

    Parameters
    ----------
    history : DesignedHistory
    covariance : {"naive", "estimator"}, default "naive"
        "naive": each cell's covariance is the difference in means' own (it
        includes the confounders' variance, so these cells are imprecise);
        "estimator": the design estimator's, i.e. estimates as precise as the
        design's but biased like the naive difference.

    Returns
    -------
    CellEffects

    Raises
    ------
    ParameterError
        ``history`` is not a DesignedHistory or ``covariance`` is not one of
        the two variants.
    """
    if not isinstance(history, DesignedHistory):
        raise ParameterError(
            "The 'history' parameter of naive_effects must be a DesignedHistory; got "
            f"{type(history).__name__}."
        )
    if covariance not in NAIVE_COVARIANCES:
        hint = suggestion(covariance, NAIVE_COVARIANCES) if isinstance(covariance, str) else ""
        raise ParameterError(
            f"The 'covariance' parameter of naive_effects must be one of "
            f"{list(NAIVE_COVARIANCES)}; got {covariance!r}.{hint}"
        )
    effects = history.effects
    (segment,) = effects.segments
    ab = history.experiment_design.index[history.experiment_design == ds.AB]
    parts = [effects.subset(ab)] if len(ab) else []
    metrics = list(effects.metrics)
    for d, rows in history.units.items():
        part = summarize(
            _naive_rows(d, rows),
            experiment=dims.EXPERIMENT,
            treatment=_NAIVE_ARM,
            treated_value=True,
            outcome=metrics[0],
            proxies=metrics[1:],
            segments=[UNIT_SEGMENT],
            directions=effects.directions,
            engine="pandas",
            min_users_per_arm=2,
        )
        parts.append(with_segment_column(part, segment))
    naive = CellEffects.concat(parts) if len(parts) > 1 else parts[0]
    key = [dims.EXPERIMENT, segment]
    order = pd.MultiIndex.from_frame(naive.cells()[key]).get_indexer(
        pd.MultiIndex.from_frame(effects.cells()[key])
    )
    naive = naive.subset_cells(order)
    if covariance == "naive":
        return naive
    data = effects.data.copy()
    data[dims.EFFECT] = ((dims.CELL, dims.METRIC), naive.effect)
    ab_all = np.full(effects.n_cells, ds.AB, dtype=object)
    return CellEffects(data.assign_coords({dims.DESIGN: (dims.CELL, ab_all)}))

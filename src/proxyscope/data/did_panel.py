"""One experiment of the panel that :func:`proxyscope.data.did.did` reads, as arrays.

After the checks of :mod:`proxyscope.data.did_source`, every engine hands over
the panel one experiment at a time, experiments sorted by id, as a small
DataFrame of that experiment's rows (the "chunk"; any row order).
:func:`experiment_block` checks it (a single period, duplicated or missing
unit-periods, a first-treated value between periods) and lays it out as a
:class:`Block`: units sorted by id, periods in increasing order. The layout
depends only on the rows, not on their order or the engine, so every engine
gives the same blocks and the same bits. The caller's data is read, never
modified.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from proxyscope.data.did_checks import DidRoles, units_shown
from proxyscope.data.validate import plain, show_values
from proxyscope.errors import DataError


@dataclass(frozen=True)
class Block:
    """One experiment's balanced panel as arrays.

    ``y[unit, period, metric]`` (units sorted by id, periods in increasing
    order, ``periods`` their values); ``cohort[unit]`` the position of the
    unit's first treated period: 0 means treated from the first period on (no
    pre-period: left out), ``len(periods)`` never treated within the panel;
    ``segment[unit]`` the segment values (a tuple), ``cluster[unit]`` an
    integer code shared by the units of one cluster (codes count on from the
    previous experiment's, so they are unique over the panel).
    """

    experiment: Any
    periods: np.ndarray
    y: np.ndarray
    cohort: np.ndarray
    segment: list[tuple[Any, ...]]
    cluster: np.ndarray
    late: int


def experiment_block(chunk: pd.DataFrame, label: Any, roles: DidRoles, first_code: int) -> Block:
    """The checked rows of experiment ``label`` as a :class:`Block`.

    ``chunk`` holds the experiment's rows (the used columns, values checked for
    type, missing and infinite values, and fixed within each unit); cluster
    codes start at ``first_code``.

    Raises
    ------
    DataError
        A single period; two rows for one (unit, period); a unit missing a
        period of the experiment; a first-treated value between two of its
        periods.
    """
    unit, unit_ids = pd.factorize(chunk[roles.unit], sort=True)
    period = chunk[roles.period].to_numpy(dtype=float)
    periods = np.unique(period)
    n_t = len(periods)
    if n_t < 2:
        raise DataError(
            f"Experiment {plain(label)!r} of column {roles.experiment!r} has a single "
            f"period ({plain(periods[0])!r} of column {roles.period!r}); a difference in "
            "differences needs at least two."
        )
    order = np.lexsort((period, unit))
    pair = unit[order] * n_t + np.searchsorted(periods, period[order])
    dup = np.flatnonzero(pair[1:] == pair[:-1])
    if len(dup):
        at = order[dup[0]]
        raise DataError(
            f"The panel has {len(dup)} duplicated (unit, period) row(s) in experiment "
            f"{plain(label)!r}, e.g. unit {plain(unit_ids[unit[at]])!r} in period "
            f"{plain(period[at])!r}; expected one row per (experiment, unit, period) "
            "(aggregate users to unit-period means first)."
        )
    per_unit = np.bincount(unit, minlength=len(unit_ids))
    short = np.flatnonzero(per_unit < n_t)
    if len(short):
        shown = units_shown([(label, unit_ids[u]) for u in short[:5]], len(short))
        raise DataError(
            f"The panel is unbalanced: {len(short)} unit(s) of experiment {plain(label)!r} "
            f"lack some of its {n_t} periods, e.g. {shown} ({per_unit[short[0]]} of {n_t}); "
            "every unit must be observed in every period of its experiment."
        )
    metrics = chunk[list(roles.metrics)].to_numpy(dtype=float)
    y = metrics[order].reshape(len(unit_ids), n_t, len(roles.metrics))
    first = order[::n_t]  # each unit's first period: fixed columns hold one value per unit
    treated_at = chunk[roles.first_treated].to_numpy(dtype=float, na_value=np.nan)[first]
    cohort, late = _cohorts(treated_at, periods, label, roles)
    seg = chunk[list(roles.segments)].iloc[first].to_numpy(dtype=object)
    if roles.cluster is None:
        code = np.arange(len(unit_ids))
    else:
        code = np.asarray(pd.factorize(chunk[roles.cluster].iloc[first])[0])
    return Block(
        experiment=label,
        periods=np.unique(chunk[roles.period].to_numpy()),
        y=y,
        cohort=cohort,
        segment=[tuple(r) for r in seg],
        cluster=code.astype(np.int64) + first_code,
        late=late,
    )


def _cohorts(
    treated_at: np.ndarray, periods: np.ndarray, label: Any, roles: DidRoles
) -> tuple[np.ndarray, int]:
    """Position of each unit's first treated period (see :class:`Block`) and the late count."""
    n_t = len(periods)
    never = np.isnan(treated_at) | (treated_at > periods[-1])
    pos = np.searchsorted(periods, np.where(never, periods[0], treated_at))
    inside = ~never & (treated_at > periods[0])
    exact = np.zeros(len(treated_at), dtype=bool)
    exact[inside] = periods[pos[inside]] == treated_at[inside]
    between = inside & ~exact
    if between.any():
        raise DataError(
            f"Column {roles.first_treated!r} (given as 'first_treated') must hold one of the "
            f"periods of the unit's experiment (or NaN when never treated); experiment "
            f"{plain(label)!r} has {int(between.sum())} unit(s) with a value between its "
            f"periods, e.g. {plain(treated_at[between][0])!r}; its periods: "
            f"{show_values(list(periods))}."
        )
    cohort = np.where(never, n_t, np.where(inside, pos, 0)).astype(np.int64)
    late = int((~np.isnan(treated_at) & np.isfinite(treated_at) & never).sum())
    return cohort, late


def segment_key_frame(
    experiments: Sequence[Any], segments: Sequence[tuple[Any, ...]], roles: DidRoles
) -> pd.DataFrame:
    """The cell keys ``finish`` takes: ``experiment`` then the segment columns."""
    frame = pd.DataFrame({"experiment": list(experiments)})
    for i, s in enumerate(roles.segments):
        frame[s] = [seg[i] for seg in segments]
    return frame

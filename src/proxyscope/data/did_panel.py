"""The panel :func:`proxyscope.data.did.did` reads, laid out per experiment.

After the checks of :mod:`proxyscope.data.did_checks`, one :class:`Block` of
arrays per experiment: units, periods, first-treated periods, segments,
clusters and every metric's unit x period values. The caller's DataFrame is
read, never modified.
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

    ``y[unit, period, metric]`` (periods in increasing order, ``periods`` their
    values); ``cohort[unit]`` the position of the unit's first treated period:
    0 means treated from the first period on (no pre-period: left out),
    ``len(periods)`` never treated within the panel; ``segment[unit]`` the
    segment values (a tuple), ``cluster[unit]`` an integer code shared by the
    units of one cluster (codes are unique over the whole panel).
    """

    experiment: Any
    periods: np.ndarray
    y: np.ndarray
    cohort: np.ndarray
    segment: list[tuple[Any, ...]]
    cluster: np.ndarray
    late: int


def read_panel(panel: pd.DataFrame, roles: DidRoles) -> list[Block]:
    """The checked panel as one :class:`Block` per experiment, in order of first appearance.

    Raises
    ------
    DataError
        Two rows for one (experiment, unit, period); a unit missing a period of
        its experiment; an experiment with a single period; a first-treated
        period, segment or cluster that changes within a unit; a first-treated
        value between two of the experiment's periods.
    """
    exp_code, exp_values = pd.factorize(panel[roles.experiment], sort=False)
    unit = np.asarray(
        panel.groupby([roles.experiment, roles.unit], sort=False, observed=True).ngroup()
    )
    _, first = np.unique(unit, return_index=True)
    keys = panel[[roles.experiment, roles.unit]].iloc[first].reset_index(drop=True)
    for col in roles.fixed:
        counts = panel[col].groupby(unit).nunique(dropna=False).to_numpy()
        changing = np.flatnonzero(counts > 1)
        if len(changing):
            raise DataError(
                f"Column {col!r} (given as {roles.role_of(col)!r}) must be fixed within a unit "
                f"(column {roles.unit!r}); it changes over time for {len(changing)} unit(s): "
                f"{units_shown(keys, roles, changing)}."
            )
    period = panel[roles.period].to_numpy(dtype=float)
    metrics = panel[list(roles.metrics)].to_numpy(dtype=float)
    treated_at = panel[roles.first_treated].to_numpy(dtype=float, na_value=np.nan)[first]
    cluster_col = roles.unit if roles.cluster is None else roles.cluster
    cluster_code = (
        unit[first]
        if roles.cluster is None
        else np.asarray(pd.factorize(panel[cluster_col])[0])[first]
    )
    unit_exp = exp_code[first]
    blocks = []
    for e, label in enumerate(exp_values):
        rows = np.flatnonzero(exp_code == e)
        periods = np.unique(period[rows])
        n_t = len(periods)
        if n_t < 2:
            raise DataError(
                f"Experiment {plain(label)!r} of column {roles.experiment!r} has a single "
                f"period ({plain(periods[0])!r} of column {roles.period!r}); a difference in "
                "differences needs at least two."
            )
        rank = np.searchsorted(periods, period[rows])
        local = unit[rows]
        order = np.lexsort((rank, local))
        pair = local[order] * n_t + rank[order]
        dup = np.flatnonzero(pair[1:] == pair[:-1])
        if len(dup):
            at = rows[order[dup[0]]]
            raise DataError(
                f"The panel has {len(dup)} duplicated (unit, period) row(s) in experiment "
                f"{plain(label)!r}, e.g. unit {plain(panel[roles.unit].iloc[at])!r} in period "
                f"{plain(period[at])!r}; expected one row per (experiment, unit, period) "
                "(aggregate users to unit-period means first)."
            )
        ids = np.flatnonzero(unit_exp == e)
        per_unit = np.bincount(np.searchsorted(ids, local), minlength=len(ids))
        short = np.flatnonzero(per_unit < n_t)
        if len(short):
            raise DataError(
                f"The panel is unbalanced: {len(short)} unit(s) of experiment {plain(label)!r} "
                f"lack some of its {n_t} periods, e.g. {units_shown(keys, roles, ids[short])} "
                f"({per_unit[short[0]]} of {n_t}); every unit must be observed in every period "
                "of its experiment."
            )
        y = metrics[rows[order]].reshape(len(ids), n_t, len(roles.metrics))
        cohort, late = _cohorts(treated_at[ids], periods, label, roles)
        seg = panel[list(roles.segments)].iloc[first[ids]].to_numpy(dtype=object)
        blocks.append(
            Block(
                experiment=label,
                periods=np.unique(panel[roles.period].to_numpy()[rows]),
                y=y,
                cohort=cohort,
                segment=[tuple(r) for r in seg],
                cluster=cluster_code[ids].astype(np.int64),
                late=late,
            )
        )
    return blocks


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


# -- checks of the fitted cells ---------------------------------------------------

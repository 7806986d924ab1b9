"""Checks of the panel that :func:`proxyscope.data.did.did` reads, and its pre-trend test.

The column roles and the settings, checked before any data is read; the
messages of every check of the panel (a column missing or present twice, no
rows, a type, missing or infinite values, a first-treated period, segment or
cluster that changes within a unit), which every engine raises alike
(:mod:`proxyscope.data.did_source` runs the checks; :mod:`proxyscope.data.did_panel`
checks each experiment's unit-periods and lays them out); and the pre-trend
test of the fitted cells. The caller's data is read, never modified.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from proxyscope import dims
from proxyscope.data.cellchecks import describe_cell
from proxyscope.data.validate import (
    RESERVED,
    check_directions,
    column_name,
    finite_or_none,
    name_list,
    plain,
    show_values,
)
from proxyscope.errors import (
    ColumnError,
    DataError,
    DataTypeError,
    DataWarning,
    ParameterError,
    check_one_of,
    suggestion,
)

OWNER = "did"
#: Comparison units: never treated, or not yet treated (never treated included).
CONTROLS = ("never", "not_yet")
#: Most units named in a message.
SHOW_UNITS = 5


@dataclass(frozen=True)
class DidRoles:
    """The columns of a ``did`` call and what each one is for."""

    experiment: str
    unit: str
    period: str
    first_treated: str
    outcome: str
    proxies: tuple[str, ...]
    segments: tuple[str, ...]
    directions: dict[str, str]
    cluster: str | None = None

    @property
    def metrics(self) -> tuple[str, ...]:
        """Outcome first, then the proxies."""
        return (self.outcome, *self.proxies)

    @property
    def fixed(self) -> tuple[str, ...]:
        """Columns whose value must not change within a unit."""
        extra = () if self.cluster is None else (self.cluster,)
        return (self.first_treated, *self.segments, *extra)

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column read, each once."""
        return (self.experiment, self.unit, self.period, *self.fixed, *self.metrics)

    def role_of(self, column: str) -> str:
        """The parameter that names ``column`` (for messages)."""
        for role in ("experiment", "unit", "period", "first_treated", "outcome", "cluster"):
            if getattr(self, role) == column:
                return role
        return "proxies" if column in self.proxies else "segments"


def check_did_roles(
    *,
    experiment: Any,
    unit: Any,
    period: Any,
    first_treated: Any,
    outcome: Any,
    proxies: Any,
    segments: Any,
    directions: Any,
    cluster: Any,
) -> DidRoles:
    """Names and roles, before any data is read (one role per column)."""
    named = ("experiment", "unit", "period", "first_treated", "outcome")
    given = (experiment, unit, period, first_treated, outcome)
    single = {r: column_name(v, param=r, owner=OWNER) for r, v in zip(named, given, strict=True)}
    prx = name_list(proxies, param="proxies", owner=OWNER, allow_empty=False)
    seg = name_list(segments, param="segments", owner=OWNER, allow_empty=True)
    clu = None if cluster is None else column_name(cluster, param="cluster", owner=OWNER)
    seen: dict[str, str] = {}
    groups: list[tuple[str, tuple[str, ...]]] = [(r, (v,)) for r, v in single.items()]
    groups += [("proxies", prx), ("segments", seg), ("cluster", () if clu is None else (clu,))]
    for role, names in groups:
        for name in names:
            if name in seen:
                first = seen[name]
                where = f"twice in {role!r}" if first == role else f"as {first!r} and {role!r}"
                raise ColumnError(
                    f"Column {name!r} is given two roles: it appears {where}; "
                    "each column may play one role only."
                )
            seen[name] = role
    for s in seg:
        if s in RESERVED:
            raise ColumnError(
                f"Segment column {s!r} has a name reserved by CellEffects "
                f"({', '.join(sorted(RESERVED))}); rename it before calling {OWNER}."
            )
    dirs = check_directions(directions, prx, single["outcome"], owner=OWNER)
    return DidRoles(**single, proxies=prx, segments=seg, directions=dirs, cluster=clu)


def _whole(value: Any, low: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, numbers.Integral) and int(value) >= low


def check_settings(
    control: Any, min_units: Any, pre_periods: Any, level: Any
) -> tuple[str, int, int | None, float]:
    """``control``, ``min_units``, ``pre_periods`` and ``pretrend_level``, checked."""
    check_one_of(control, CONTROLS, param="control", owner=OWNER)
    if not _whole(min_units, 2):
        raise ParameterError(
            f"The 'min_units' parameter of {OWNER} must be an integer >= 2 (a variance "
            f"needs two units on each side). Got {min_units!r} instead."
        )
    if pre_periods is not None and not _whole(pre_periods, 1):
        raise ParameterError(
            f"The 'pre_periods' parameter of {OWNER} must be None (every pre-period) or an "
            f"integer >= 1. Got {pre_periods!r} instead."
        )
    if isinstance(level, bool) or not isinstance(level, numbers.Real) or not 0 < float(level) < 1:
        raise ParameterError(
            f"The 'pretrend_level' parameter of {OWNER} must be a number in (0, 1). "
            f"Got {level!r} instead."
        )
    return str(control), int(min_units), pre_periods and int(pre_periods), float(level)


def period_type_error(column: str, roles: DidRoles, found: str, example: Any) -> DataTypeError:
    """A period or first-treated column that does not hold numbers."""
    return DataTypeError(
        f"Column {column!r} (given as {roles.role_of(column)!r}) must hold numbers (a period "
        f"index such as a week number; convert dates first); found type {found} "
        f"(e.g. the value {example!r})."
    )


def units_shown(units: Sequence[tuple[Any, Any]], total: int) -> str:
    """The first (experiment, unit) pairs of ``total``, for a message."""
    shown = [f"unit {plain(u)!r} of experiment {plain(e)!r}" for e, u in units[:SHOW_UNITS]]
    more = f"; ... ({total} in all)" if total > SHOW_UNITS else ""
    return "; ".join(shown) + more


def check_names(names: Sequence[str], roles: DidRoles) -> None:
    """Every used column is among the panel's column ``names``, once."""
    missing = [c for c in roles.columns if c not in names]
    if missing:
        parts = [
            f"Column {c!r} (given as {roles.role_of(c)!r}) is not in the panel."
            + suggestion(c, list(names))
            for c in missing
        ]
        raise ColumnError(" ".join(parts) + f" Available columns: {show_values(list(names))}.")
    twice = [c for c in roles.columns if list(names).count(c) > 1]
    if twice:
        raise ColumnError(f"Column {twice[0]!r} appears more than once in the panel.")


def empty_error() -> DataError:
    return DataError(f"The panel passed to {OWNER} is empty: it has no rows.")


def bad_values_error(
    missing: Mapping[str, int], infinite: Mapping[str, int], negative_inf: int, roles: DidRoles
) -> DataError | None:
    """The first of: missing values (any column but first_treated), infinite metric or
    period values, -inf first-treated values; None when there are none."""
    if any(missing.values()):
        shown = ", ".join(f"{c!r} ({roles.role_of(c)}): {n}" for c, n in missing.items() if n)
        return DataError(
            f"Missing values (NaN/None) in the panel: {shown} rows; expected none (only "
            f"{roles.first_treated!r}, given as 'first_treated', may be missing: never treated)."
        )
    if any(infinite.values()):
        shown = ", ".join(f"{c!r} ({roles.role_of(c)}): {n}" for c, n in infinite.items() if n)
        return DataError(f"Infinite values in the panel: {shown} rows; expected finite numbers.")
    if negative_inf:
        return DataError(
            f"Column {roles.first_treated!r} (given as 'first_treated') holds -inf; expected a "
            "period, or NaN / +inf for a unit that is never treated."
        )
    return None


def fixed_error(
    column: str, roles: DidRoles, count: int, units: Sequence[tuple[Any, Any]]
) -> DataError:
    """``column`` changes within ``count`` units; ``units`` the first (experiment, unit)
    pairs of them, sorted."""
    return DataError(
        f"Column {column!r} (given as {roles.role_of(column)!r}) must be fixed within a unit "
        f"(column {roles.unit!r}); it changes over time for {count} unit(s): "
        f"{units_shown(units, count)}."
    )


def pretrend_p(effect: np.ndarray, score: np.ndarray) -> list[float | None]:
    """Two-sided p-value per metric that the mean pre-period effect is zero.

    ``effect`` (m,) and the cluster scores ``score`` (G, m) of its influence
    function: t = effect / sqrt(G/(G − 1) Σ_c s_c²), read against Student's t
    with G − 1 degrees of freedom; None for a metric with zero variance or
    when G < 2.
    """
    g = score.shape[0]
    if g < 2:
        return [None] * len(effect)
    se = np.sqrt(g / (g - 1.0) * (score**2).sum(axis=0))
    out: list[float | None] = []
    for e, s in zip(effect, se, strict=True):
        out.append(float(2 * stats.t.sf(abs(e) / s, g - 1)) if s > 0 else None)
    return out


def cell_p(pre_p: Sequence[float | None]) -> float | None:
    """Bonferroni minimum over the tested metrics, or None when none was tested."""
    tested = [p for p in pre_p if p is not None]
    return min(1.0, len(tested) * min(tested)) if tested else None


def check_kept(
    keys: pd.DataFrame,
    labels: np.ndarray,
    counts: Sequence[dict[str, int] | None],
    order: Sequence[int],
    roles: DidRoles,
    min_units: int,
) -> None:
    """Errors worded for ``did`` before ``finish``: no kept cell, one experiment, one cluster."""
    if not order:
        raise DataError(
            f"{OWNER}: no cell has at least min_units={min_units} treated and comparison "
            f"units with a post-period effect ({len(counts)} cells checked); lower min_units, "
            "use fewer segment columns, or try control='not_yet'."
        )
    kept_exp = pd.unique(pd.Series([keys["experiment"].iloc[c] for c in order], dtype=object))
    if len(kept_exp) < 2:
        raise DataError(
            f"{OWNER}: after dropping cells below min_units={min_units}, only experiment "
            f"{plain(kept_exp[0])!r} of column {roles.experiment!r} remains; at least two "
            "are needed."
        )
    few = [c for c in order if (n := counts[c]) is not None and n["clusters"] < 2]
    if few:
        shown = "; ".join(describe_cell(keys["experiment"].iloc[c], labels[c]) for c in few[:5])
        raise DataError(
            f"{OWNER}: a cluster-robust covariance needs at least 2 clusters of column "
            f"{roles.cluster or roles.unit!r}; {len(few)} kept cell(s) have one: {shown}."
        )


def pretrend_report(
    fits: Sequence[Any],
    keys: pd.DataFrame,
    labels: np.ndarray,
    order: Sequence[int],
    periods: Sequence[np.ndarray],
    roles: DidRoles,
    level: float,
) -> tuple[list[dict[str, Any]], int]:
    """``meta["did"]["cells"]`` rows of the kept cells (in ``order``) and the count of cells
    whose pre-trend test fails, named in a DataWarning."""
    rows = []
    for c in order:
        f = fits[c]
        rows.append(
            {
                dims.EXPERIMENT: plain(keys["experiment"].iloc[c]),
                dims.SEGMENT_LABEL: str(labels[c]),
                **f.counts,
                "cohorts": [plain(periods[c][g]) for g in f.cohorts],
                "pre_pairs": f.pre_pairs,
                "pretrend_clusters": f.pre_clusters,
                "pretrend_effect": dict(
                    zip(roles.metrics, [finite_or_none(v) for v in f.pre_effect], strict=True)
                ),
                "pretrend_p": dict(zip(roles.metrics, f.pre_p, strict=True)),
                "pretrend_p_cell": cell_p(f.pre_p),
            }
        )
    failing = [r for r in rows if r["pretrend_p_cell"] is not None and r["pretrend_p_cell"] < level]
    if failing:
        shown = "; ".join(
            describe_cell(r[dims.EXPERIMENT], r[dims.SEGMENT_LABEL])
            + f" p={r['pretrend_p_cell']:.3g}"
            for r in failing[:SHOW_UNITS]
        )
        more = f"; ... ({len(failing)} cells in all)" if len(failing) > SHOW_UNITS else ""
        warnings.warn(
            f"{OWNER}: the pre-trend test rejects parallel trends at level {level:g} in "
            f"{len(failing)} of {len(rows)} cells: {shown}{more}. Their effects may be biased "
            "by a differential trend; see meta['did']['cells'].",
            DataWarning,
            stacklevel=3,
        )
    return rows, len(failing)

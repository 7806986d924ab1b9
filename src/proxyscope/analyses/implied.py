"""Analyses' reading of a new experiment's implied effects: sign flips and targets.

The joint distribution itself (per segment and for a mix of segments, including
segment combinations the fit never saw) is in :mod:`proxyscope.model.segments`;
this module adds the probability that the long-term and proxy effects disagree in
sign, the reading of a user's target population, and the words that say which
period of a fit with time a result describes (DESIGN.md §9).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from proxyscope import dims
from proxyscope.analyses.arguments import is_number
from proxyscope.core.bvn import prob_opposite_signs
from proxyscope.errors import ColumnError, DataError, DataTypeError, ParameterError
from proxyscope.model.segments import historical_mix

if TYPE_CHECKING:
    from proxyscope.model.fit import ProxyFit
    from proxyscope.model.structure import SegmentStructure


def proxy_flips(moments: Mapping[str, np.ndarray]) -> np.ndarray:
    """P(the long-term effect and each proxy effect have opposite signs), per draw.

    ``moments`` as from :meth:`SegmentDraws.segment_moments` (N, S, K) or
    :meth:`SegmentDraws.mix_moments` (N, K): any leading axes, proxies last.
    """
    return prob_opposite_signs(
        moments["mean_tau"][..., None],
        moments["mean_theta"],
        moments["var_tau"][..., None],
        np.diagonal(moments["cov_theta"], axis1=-2, axis2=-1),
        moments["cov_tau_theta"],
    )


def in_period(period: str | None) -> str:
    """The words that place a result in its period (" in 2025-Q4"; "" for a static fit)."""
    return "" if period is None else f" in {period}"


def resolve_mix(fit: ProxyFit, target: Any) -> tuple[pd.DataFrame, np.ndarray]:
    """A target population as (segment combinations, shares).

    ``target`` may be None (the historical mix), a user-level DataFrame with
    the segment columns (one row per user, or with a ``count``/``n``/
    ``users``/``share`` column), a mapping {segment tuple or label: count or
    share}, or a pandas Series indexed the same way.
    """
    structure = fit.structure
    if target is None:
        hist = historical_mix(fit)
        combos = fitted_combos(structure)
        return combos, hist.to_numpy()
    return resolve_target(structure, target)


def fitted_combos(structure: SegmentStructure) -> pd.DataFrame:
    """The fit's own segments as rows of segment-column levels, in the fit's order."""
    # Selected, not the label dropped: a segment column may itself be called
    # "segment" (simulate.from_model's is).
    return pd.DataFrame(structure.frame()[list(structure.columns)])


def resolve_target(structure: SegmentStructure, target: Any) -> tuple[pd.DataFrame, np.ndarray]:
    """A target population (not None) as (segment combinations, shares), checked against
    the segment columns and levels of ``structure``: what :func:`resolve_mix` does for a
    fit, and what ``proxyscope validate`` and ``run`` check before anything is fitted."""
    cols = list(structure.columns)
    if isinstance(target, pd.DataFrame):
        missing = [c for c in cols if c not in target.columns]
        if missing:
            from proxyscope.errors import suggestion

            raise ColumnError(
                f"The 'target' table lacks segment column(s) {missing}; it must have "
                f"{cols}.{suggestion(missing[0], target.columns)}"
            )
        weight_col = next(
            (c for c in ("share", "count", "n", "users") if c in target.columns), None
        )
        _check_table(target, cols, weight_col)
        if not cols:
            return pd.DataFrame(index=[0]), np.ones(1)
        keys = target[cols].astype(str)
        if weight_col is None:
            w = np.ones(len(target))
        else:
            w = pd.to_numeric(target[weight_col], errors="coerce").to_numpy(dtype=float)
        grouped = keys.assign(w=w).groupby(cols, as_index=False)["w"].sum()
        combos = pd.DataFrame(grouped[cols]).reset_index(drop=True)
        shares = grouped["w"].to_numpy(dtype=float)
    elif isinstance(target, (Mapping, pd.Series)):
        items = list(target.items())
        if not items:
            raise ParameterError(
                "The 'target' population is empty (a mapping with no segments); give "
                "{segment: count or share, ...}, or None for the historical mix."
            )
        rows = []
        for key, value in items:
            parts = _key_parts(key, cols)
            if not is_number(value):
                raise DataTypeError(
                    f"The 'target' count or share of {key!r} must be a number; got "
                    f"{type(value).__name__} {value!r}."
                )
            try:
                number = float(value)
            except OverflowError:  # an integer beyond the float range
                number = float("inf")
            rows.append((*parts, number))
        frame = pd.DataFrame(rows, columns=[*cols, "w"])
        if (frame["w"] < 0).any() or not np.isfinite(frame["w"]).all():
            raise ParameterError(
                "The 'target' counts or shares must be finite and non-negative; got "
                f"{frame['w'].tolist()[:10]}."
            )
        if cols:
            frame = pd.DataFrame(frame.groupby(cols, as_index=False)["w"].sum())
        combos = pd.DataFrame(frame[cols]).reset_index(drop=True)
        shares = frame["w"].to_numpy(dtype=float)
    else:
        raise DataTypeError(
            "The 'target' must be a DataFrame with the segment columns, a mapping or Series "
            f"of segment -> count or share, or None; got {type(target).__name__}."
        )
    with np.errstate(over="ignore"):  # an overflow is refused just below
        total = shares.sum()
    if not np.isfinite(total):
        raise ParameterError(
            "The 'target' counts or shares add up to more than the largest float; give "
            "shares or smaller counts."
        )
    if total <= 0:
        raise ParameterError("The 'target' population is empty (all counts or shares are zero).")
    keep = shares > 0
    if cols:
        kept = combos[keep].reset_index(drop=True)
        codes = structure.level_codes(kept)
        for j, col in enumerate(cols):
            unknown = sorted(set(kept.loc[codes[:, j] < 0, col].astype(str)))
            if unknown:
                raise ParameterError(
                    f"The 'target' has level(s) {unknown} of segment column {col!r} that the "
                    f"data never had; known levels: {list(structure.levels[j])}. A level the "
                    "model has no data on cannot be predicted."
                )
        return kept, shares[keep] / total
    return combos[keep].reset_index(drop=True), shares[keep] / total


def _check_table(target: pd.DataFrame, cols: list[str], weight_col: str | None) -> None:
    """A target table's segment columns and weight column hold usable values: each
    column once, no missing segment (a row without one cannot be placed in the mix:
    dropping it would answer for a different population), finite non-negative
    numeric weights."""
    used = [*cols, *([weight_col] if weight_col is not None else [])]
    twice = [c for c in used if int(np.sum(target.columns == c)) > 1]
    if twice:
        raise ColumnError(
            f"The 'target' has the column(s) {twice} more than once; keep one of each."
        )
    for col in cols:
        missing = int(target[col].isna().sum())
        if missing:
            raise DataError(
                f"The 'target' has {missing:,} of {len(target):,} rows with no value in "
                f"segment column {col!r}; fill them in or drop them (a row without its "
                "segment cannot be placed in the mix, and leaving it out would describe "
                "another population)."
            )
    if weight_col is None:
        return
    raw = target[weight_col]
    mixed = raw.dtype == object and any(isinstance(v, bool | np.bool_) for v in raw)
    if pd.api.types.is_bool_dtype(raw) or mixed:
        raise DataTypeError(
            f"The 'target' column {weight_col!r} must hold counts or shares (numbers); got "
            "booleans."
        )
    w = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(w) | (w < 0)
    if bad.any():
        first = raw[bad].iloc[0]
        raise ParameterError(
            f"The 'target' column {weight_col!r} must hold finite non-negative numbers; "
            f"{int(bad.sum()):,} of {len(raw):,} rows do not (e.g. {first!r})."
        )


def _key_parts(key: Any, cols: Sequence[str]) -> tuple[str, ...]:
    if not cols and key in (dims.ALL_SEGMENTS, ()):
        return ()  # a fit with no segment columns labels its one segment "all"
    if isinstance(key, str):
        # The label's own separator first ("a/b" may be one level); "A/B" is accepted too.
        parts = tuple(key.split(dims.LABEL_SEP))
        if len(parts) != len(cols):
            parts = tuple(p.strip() for p in key.split(dims.LABEL_SEP.strip()))
    elif isinstance(key, tuple):
        parts = tuple(str(p) for p in key)
    else:
        parts = (str(key),)
    if len(parts) != len(cols):
        raise ParameterError(
            f"The 'target' segment {key!r} must name one level per segment column {list(cols)}."
        )
    return parts

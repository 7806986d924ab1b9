"""The design diagnostics of a fit's cells, found in their metadata.

Each design function writes its diagnostics into ``meta[<design>]`` of the
cells it builds (DESIGN.md §8), with one row per cell (experiment and segment
label). A concatenated history (:meth:`CellEffects.concat`) keeps the first
part's metadata at the top and every part's under ``meta["parts"]``, so
:class:`DesignMeta` reads the parts when there are any, the whole otherwise,
and keeps only the rows of cells the fit has (matched on the experiment's text
and the segment label, within the design). :mod:`proxyscope.reporting.design_diagnostics`
condenses them; the helpers below are the plain-value rules it shares.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from proxyscope import dims
from proxyscope._format import num

if TYPE_CHECKING:
    from proxyscope.data.cells import CellEffects

Key = tuple[str, str]


def finite(x: Any) -> float | None:
    """A finite float, or None."""
    if x is None or isinstance(x, bool):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def span(values: Sequence[float | None]) -> dict[str, float | None]:
    """{min, median, max} of the values that are not None (all None when there are none)."""
    got = [v for v in values if v is not None]
    if not got:
        return {"min": None, "median": None, "max": None}
    return {"min": min(got), "median": float(np.median(got)), "max": max(got)}


def spread(got: Mapping[str, Any]) -> str:
    """A :func:`span` as "min-max"."""
    return f"{num(got['min'])}-{num(got['max'])}"


def worst_first(rows: list[dict[str, Any]], *keys: tuple[str, bool]) -> list[dict[str, Any]]:
    """Rows sorted by ``keys`` ((name, descending), ...), None last in every key."""

    def key(r: dict[str, Any]) -> tuple[Any, ...]:
        out: list[Any] = []
        for name, desc in keys:
            v = finite(float(r[name]) if isinstance(r[name], bool) else r[name])
            out += [v is None, 0.0 if v is None else (-v if desc else v)]
        return tuple(out)

    return sorted(rows, key=key)


def where(row: Mapping[str, Any]) -> dict[str, str]:
    label = row.get(dims.SEGMENT_LABEL, row.get("segment"))
    return {"experiment": str(row.get(dims.EXPERIMENT)), "segment": str(label)}


def cell_name(r: Mapping[str, Any]) -> str:
    return f"experiment {r['experiment']}, {r['segment']}"


def shared_setting(values: set[float | None]) -> float | None:
    """The setting all parts share, or None when they differ."""
    return values.pop() if len(values) == 1 else None


class DesignMeta:
    """The fit's cells and the metadata of each part (the whole, unless concatenated)."""

    def __init__(self, effects: CellEffects) -> None:
        meta = effects.meta
        self.sources: list[Mapping[str, Any]] = list(meta.get("parts") or [meta])
        self.effects = effects
        self.metrics = list(effects.metrics)
        self.index: dict[str, dict[Key, int]] = {}
        cells = zip(effects.experiment, effects.segment_label, effects.design, strict=True)
        for c, (exp, label, design) in enumerate(cells):
            self.index.setdefault(str(design), {})[(str(exp), str(label))] = c

    def rows(self, design: str, key: str = "cells") -> Iterator[tuple[Mapping[str, Any], Any, int]]:
        """(the part's ``meta[design]``, row, cell position) per row of a cell of the fit."""
        index = self.index.get(design, {})
        for source in self.sources:  # parts never share a cell (concat refuses that)
            own = source.get(design)
            if not isinstance(own, Mapping):
                continue
            for row in own.get(key) or []:
                w = where(row)
                k = (w["experiment"], w["segment"])
                if k in index:
                    yield own, row, index[k]

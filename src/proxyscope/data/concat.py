"""One history from several sets of cells: :meth:`CellEffects.concat`.

The parts may come from any input (``summarize``, arm summaries, estimates made
elsewhere) and any design; they must measure the same metrics in the same
directions and units over the same segment columns. Optional per-cell
variables that only some parts carry are filled in the others
(:data:`proxyscope.data.designs.OPTIONAL_VARIABLES`). Start dates must be on
every part, grouped alike, or on none; the periods are derived again on the
union (:mod:`proxyscope.data.time_cells`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from proxyscope import dims
from proxyscope.data import designs, time_cells
from proxyscope.data.cellfile import META_ATTR
from proxyscope.errors import DataError, ParameterError

if TYPE_CHECKING:  # (cells.py imports this module when concat is called)
    from proxyscope.data.cells import CellEffects


def concat_cells(cls: type[CellEffects], parts: Sequence[CellEffects]) -> CellEffects:
    """The cells of ``parts`` as one CellEffects (see :meth:`CellEffects.concat`)."""
    owner = "CellEffects.concat"
    if isinstance(parts, cls) or not isinstance(parts, Sequence | tuple) or not parts:
        raise ParameterError(
            f"The 'parts' parameter of {owner} must be a non-empty list of CellEffects; "
            f"got {type(parts).__name__}."
        )
    for i, p in enumerate(parts):
        if not isinstance(p, cls):
            raise ParameterError(
                f"The 'parts' parameter of {owner} must hold CellEffects; part {i} is "
                f"{type(p).__name__}."
            )
    first = parts[0]
    checks: tuple[tuple[str, Callable[[CellEffects], Any]], ...] = (
        ("outcome", lambda p: p.outcome),
        ("proxies", lambda p: list(p.proxies)),
        ("directions", lambda p: p.directions),
        ("segment columns", lambda p: list(p.segments)),
        ("units", lambda p: p.units),
    )
    for what, get in checks:
        for i, p in enumerate(parts[1:], start=1):
            if get(p) != get(first):
                raise DataError(
                    f"{owner}: part {i} has {what} {get(p)!r} but part 0 has {get(first)!r}; "
                    "every part must measure the same metrics, in the same directions and "
                    "units, over the same segment columns."
                )
    time_column = time_cells.check_parts(parts, owner)
    exp_parts = [p.experiment for p in parts]
    if all(e.dtype.kind == "i" for e in exp_parts):
        experiments: np.ndarray = np.concatenate(exp_parts).astype(np.int64)
    elif all(e.dtype.kind == "u" for e in exp_parts):
        experiments = np.concatenate(exp_parts).astype(np.uint64)
    else:
        experiments = np.concatenate([e.astype(str).astype(object) for e in exp_parts])
    labels = np.concatenate([p.segment_label for p in parts])
    where = np.concatenate([np.full(p.n_cells, i) for i, p in enumerate(parts)])
    dup = pd.DataFrame({"e": experiments.astype(str), "s": labels}).duplicated(keep=False)
    if dup.any():
        rows = np.flatnonzero(dup.to_numpy())
        e, s = experiments[rows[0]], labels[rows[0]]
        in_parts = sorted({int(where[r]) for r in rows if str(experiments[r]) == str(e)})
        raise DataError(
            f"{owner}: experiment {scalar_text(e)}, segment {str(s)!r} appears in parts "
            f"{in_parts}; each (experiment, segment) must be one cell. Give the parts' "
            "experiments distinct ids (e.g. prefix them with their source)."
        )
    datas = []
    for p in parts:
        d = p.data.drop_vars([dims.EXPERIMENT, dims.CELL], errors="ignore")
        for var, (want_dims, fill) in designs.OPTIONAL_VARIABLES.items():
            if var not in d and any(var in q.data for q in parts):
                shape = tuple(d.sizes[dim] for dim in want_dims)
                kind = np.int64 if isinstance(fill, int) else np.float64
                d[var] = (want_dims, np.full(shape, fill, dtype=kind))
        datas.append(d)
    data = xr.concat(datas, dim=dims.CELL, data_vars="all", coords="all", join="exact")
    data = data.assign_coords(
        {dims.CELL: np.arange(data.sizes[dims.CELL]), dims.EXPERIMENT: (dims.CELL, experiments)}
    )
    meta = first.meta
    meta["engine"] = "+".join(dict.fromkeys(str(p.meta.get("engine")) for p in parts))
    meta["dropped"] = [row for p in parts for row in p.meta.get("dropped", [])]
    assumed: dict[str, float] = {}
    for i, p in enumerate(parts):
        for pair, value in (p.assumed_correlation or {}).items():
            # Parts that assume different values for one pair keep each, named by part.
            key = pair if assumed.get(pair, value) == value else f"{pair} (part {i})"
            assumed[key] = value
    meta["assumed_correlation"] = assumed or None
    meta_parts: list[dict[str, Any]] = []
    for p in parts:
        own = p.meta
        if "parts" in own:  # an earlier concatenation: keep its parts, flat
            meta_parts.extend(own["parts"])
        else:
            meta_parts.append({**own, "n_cells": p.n_cells, "designs": p.designs})
    meta["parts"] = meta_parts
    if "time" in meta:
        meta["time"] = {**meta["time"], "column": time_column}
    data.attrs = {META_ATTR: json.dumps(meta)}
    # The periods of the union, calendar-complete from its first start to its last.
    return cls(time_cells.restore(data))


def scalar_text(value: Any) -> str:
    """An experiment id as shown in messages."""
    return repr(value.item() if isinstance(value, np.generic) else value)

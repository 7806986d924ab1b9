"""Assemble a :class:`~proxyscope.data.cells.CellEffects` from arrays.

The last step of every input path (``summarize``'s engines, arm summaries,
estimates made elsewhere, the simulators): cell keys, users per arm, effects,
sampling covariances, designs, optional per-cell variables and the metadata,
into the checked dataset.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from proxyscope import dims
from proxyscope._version import __version__
from proxyscope.data import designs
from proxyscope.data.cellfile import META_ATTR
from proxyscope.data.cells import CellEffects, segment_labels
from proxyscope.errors import DataError


def build(
    keys: pd.DataFrame,
    n_treat: np.ndarray,
    n_control: np.ndarray,
    effect: np.ndarray,
    noise_cov: np.ndarray,
    *,
    outcome: str,
    proxies: Sequence[str],
    segments: Sequence[str],
    directions: Mapping[str, str],
    engine: str,
    min_users_per_arm: int | None = None,
    dropped: Sequence[Mapping[str, Any]] = (),
    assumed_correlation: Mapping[str, float] | None = None,
    extra: Mapping[str, Any] | None = None,
    design: str | Sequence[str] | np.ndarray = designs.AB,
    variables: Mapping[str, np.ndarray] | None = None,
    units: Mapping[str, str] | None = None,
) -> CellEffects:
    """Assemble a :class:`CellEffects` from arrays (used by every engine).

    ``keys`` holds one row per cell with the experiment column (named
    ``experiment``) and the segment columns. ``effect`` and ``noise_cov`` are
    in the good direction of each proxy already. ``design`` is one design for
    every cell or one per cell; ``variables`` holds optional per-cell
    variables (:data:`proxyscope.data.designs.OPTIONAL_VARIABLES`) by name;
    ``units`` the unit of each metric's effect.
    """
    metrics = [outcome, *proxies]
    n = len(keys)
    effect = np.asarray(effect, dtype=float)
    noise_cov = np.asarray(noise_cov, dtype=float)
    if effect.shape != (n, len(metrics)) or noise_cov.shape != (n, len(metrics), len(metrics)):
        raise DataError(
            f"Internal shape mismatch building CellEffects: effect {effect.shape}, "
            f"noise_cov {noise_cov.shape}, {n} cells, {len(metrics)} metrics."
        )
    exp_values = keys[dims.EXPERIMENT].to_numpy()
    if exp_values.dtype.kind not in "iu":
        exp_values = exp_values.astype(str).astype(object)
    coords: dict[str, Any] = {
        dims.CELL: np.arange(n),
        dims.METRIC: metrics,
        dims.METRIC_: metrics,
        dims.EXPERIMENT: (dims.CELL, exp_values),
        dims.SEGMENT_LABEL: (dims.CELL, segment_labels(keys, segments)),
    }
    for s in segments:
        coords[s] = (dims.CELL, keys[s].astype(str).to_numpy(dtype=object))
    coords[dims.DESIGN] = (dims.CELL, designs.check_design(design, n, owner="CellEffects"))
    meta: dict[str, Any] = {
        "outcome": outcome,
        "proxies": list(proxies),
        "segments": list(segments),
        "directions": {p: directions.get(p, "higher") for p in proxies},
        "engine": engine,
        "min_users_per_arm": min_users_per_arm,
        "dropped": [_jsonable(r) for r in dropped],
        "assumed_correlation": dict(assumed_correlation) if assumed_correlation else None,
        "version": __version__,
    }
    if units is not None:
        meta["units"] = {m: str(units[m]) for m in metrics}
    if extra:
        meta.update(_jsonable(dict(extra)))
    data_vars: dict[str, Any] = {
        dims.EFFECT: ((dims.CELL, dims.METRIC), effect),
        dims.NOISE_COV: ((dims.CELL, dims.METRIC, dims.METRIC_), noise_cov),
        dims.N_TREAT: ((dims.CELL,), np.asarray(n_treat, dtype=np.int64)),
        dims.N_CONTROL: ((dims.CELL,), np.asarray(n_control, dtype=np.int64)),
    }
    for name, values in (variables or {}).items():
        want_dims, fill = designs.OPTIONAL_VARIABLES[name]
        kind = np.int64 if isinstance(fill, int) else np.float64
        data_vars[name] = (want_dims, np.asarray(values, dtype=kind))
    data = xr.Dataset(
        data_vars,
        coords=coords,
        attrs={META_ATTR: json.dumps(meta)},
    )
    return CellEffects(data)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    return obj

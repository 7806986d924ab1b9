"""CellEffects: per (experiment × segment cell) treatment-effect summaries.

The object every model and analysis reads. It wraps an :class:`xarray.Dataset`
with

- ``effect[cell, metric]``: difference in means, treatment − control, the
  outcome first and then the proxies, each proxy read in its good direction
  (a "lower is better" proxy is negated);
- ``noise_cov[cell, metric, metric_]``: the sampling covariance of that
  difference, ``Cov_T / n_T + Cov_C / n_C``;
- ``n_treat[cell]``, ``n_control[cell]``: users per arm;

with coordinates on ``cell`` named ``experiment``, ``segment_label``,
``design`` (how the effect was estimated: :mod:`proxyscope.data.designs`) and
one per segment column, and the optional per-cell variables of
:data:`proxyscope.data.designs.OPTIONAL_VARIABLES` (cluster counts, the
spillover effect and its covariance, and ``shared_cov[cell, metric, metric_]``:
the part of the sampling error every cell of an experiment shares when clusters
span its segment cells, so that Cov(effect_c, effect_c') = shared_cov for two
cells of one experiment; 0 where absent). Metadata (roles, directions, dropped
cells, assumptions) lives in one JSON attribute so that the dataset survives NetCDF.
With start dates (DESIGN.md §9), the coordinates ``start`` and ``period`` on
``cell`` and ``meta["time"]`` (:mod:`proxyscope.data.time_cells`, whose
:class:`~proxyscope.data.time_methods.TimeMixin` gives the time methods).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import xarray as xr

from proxyscope import dims
from proxyscope.core import checksum, hdf5
from proxyscope.data import cellfile, designs, time_cells
from proxyscope.data.cellchecks import check_cells, check_designs, check_shared_cov
from proxyscope.data.cellfile import META_ATTR
from proxyscope.data.time_methods import TimeMixin
from proxyscope.errors import (
    DataError,
    DataTypeError,
    IncompatibleFileError,
    ParameterError,
    ProxyscopeError,
)


def segment_labels(frame: pd.DataFrame, segments: Sequence[str]) -> np.ndarray:
    """Human-readable label per row, e.g. ``"IN / Mobile / New"``."""
    if not segments:
        return np.full(len(frame), dims.ALL_SEGMENTS, dtype=object)
    parts = [frame[s].astype(str).to_numpy(dtype=object) for s in segments]
    out = parts[0].copy()
    for p in parts[1:]:
        out = out + dims.LABEL_SEP + p
    return out


#: The variables every CellEffects dataset has.
_REQUIRED = (dims.EFFECT, dims.NOISE_COV, dims.N_TREAT, dims.N_CONTROL)


class CellEffects(TimeMixin):
    """Treatment-effect summaries per (experiment × segment cell).

    Build one with :func:`proxyscope.summarize` (user-level rows) or
    :meth:`CellEffects.from_arm_summaries` (per-arm count / mean / variance);
    the constructor takes an already-built dataset and checks it.

    Parameters
    ----------
    data : xarray.Dataset
        A dataset with the variables and coordinates described in the module
        docstring and the metadata attribute written by :func:`build`.
    """

    def __init__(self, data: xr.Dataset) -> None:
        if not isinstance(data, xr.Dataset):
            raise DataTypeError(
                f"CellEffects expects an xarray.Dataset; got {type(data).__name__}."
            )
        if META_ATTR not in data.attrs:
            raise DataError(
                f"The dataset given to CellEffects has no {META_ATTR!r} attribute; "
                "build it with proxyscope.summarize or CellEffects.from_arm_summaries."
            )
        if dims.DESIGN not in data.coords and dims.CELL in data.dims:
            # Cells written before designs were recorded are user-randomized A/B tests.
            data = data.assign_coords(
                {dims.DESIGN: (dims.CELL, np.full(data.sizes[dims.CELL], designs.AB, dtype=object))}
            )
        self._data = data
        self._meta: dict[str, Any] = json.loads(data.attrs[META_ATTR])
        self._check()

    # -- structure ---------------------------------------------------------
    def _check(self) -> None:
        d = self._data
        for var, want in (
            (dims.EFFECT, (dims.CELL, dims.METRIC)),
            (dims.NOISE_COV, (dims.CELL, dims.METRIC, dims.METRIC_)),
            (dims.N_TREAT, (dims.CELL,)),
            (dims.N_CONTROL, (dims.CELL,)),
        ):
            if var not in d:
                raise DataError(f"CellEffects dataset lacks the variable {var!r}.")
            if d[var].dims != want:
                raise DataError(
                    f"CellEffects variable {var!r} must have dims {want}; got {d[var].dims}."
                )
        for coord in (dims.EXPERIMENT, dims.SEGMENT_LABEL, *self.segments):
            if coord not in d.coords:
                raise DataError(f"CellEffects dataset lacks the coordinate {coord!r}.")
        metrics = [str(m) for m in d[dims.METRIC].values]
        if metrics != list(self.metrics):
            raise DataError(
                f"CellEffects metric coordinate {metrics} does not match outcome "
                f"and proxies {list(self.metrics)}."
            )
        if d.sizes[dims.CELL] == 0:
            raise DataError("CellEffects has no cells.")
        check_designs(d, _REQUIRED)
        check_cells(d, self.segments, metrics)
        check_shared_cov(d)
        time_cells.check(d, self._meta)

    # -- metadata ----------------------------------------------------------
    @property
    def data(self) -> xr.Dataset:
        """The underlying :class:`xarray.Dataset` (treat as read-only)."""
        return self._data

    @property
    def outcome(self) -> str:
        """Name of the long-term outcome metric."""
        return str(self._meta["outcome"])

    @property
    def proxies(self) -> tuple[str, ...]:
        """Names of the proxy metrics, in order."""
        return tuple(self._meta["proxies"])

    @property
    def metrics(self) -> tuple[str, ...]:
        """Outcome first, then the proxies."""
        return (self.outcome, *self.proxies)

    @property
    def segments(self) -> tuple[str, ...]:
        """Names of the segment columns (may be empty)."""
        return tuple(self._meta["segments"])

    @property
    def directions(self) -> dict[str, str]:
        """Good direction of each proxy: "higher" or "lower"."""
        return dict(self._meta["directions"])

    @property
    def meta(self) -> dict[str, Any]:
        """A copy of all metadata (engine, dropped cells, assumptions, ...)."""
        return json.loads(json.dumps(self._meta))

    @property
    def assumed_correlation(self) -> dict[str, float] | None:
        """Correlations assumed where cross-metric covariances were missing.

        Keys are ``"metric_a|metric_b"``; None when every covariance was
        estimated from the data.
        """
        got = self._meta.get("assumed_correlation")
        return None if got is None else dict(got)

    @property
    def units(self) -> dict[str, str] | None:
        """Unit of each metric's effect (e.g. "minutes", "percent"), or None when unstated."""
        got = self._meta.get("units")
        return None if got is None else dict(got)

    @property
    def design(self) -> np.ndarray:
        """Design of every cell ("ab", "cluster", ...; see :mod:`proxyscope.data.designs`)."""
        return np.asarray(self._data[dims.DESIGN].values).astype(str)

    @property
    def designs(self) -> list[str]:
        """The distinct designs of the cells, in the order of ``designs.DESIGNS``."""
        return designs.order(list(self.design))

    def variable(self, name: str) -> np.ndarray:
        """An optional per-cell variable (``designs.OPTIONAL_VARIABLES``), filled where absent."""
        if name not in designs.OPTIONAL_VARIABLES:
            raise ParameterError(
                f"The 'name' parameter of CellEffects.variable must be one of "
                f"{list(designs.OPTIONAL_VARIABLES)}; got {name!r}."
            )
        if name in self._data:
            return np.asarray(self._data[name].values)
        want_dims, fill = designs.OPTIONAL_VARIABLES[name]
        shape = tuple(self._data.sizes[dim] for dim in want_dims)
        return np.full(shape, fill)

    @property
    def dropped(self) -> pd.DataFrame:
        """Cells dropped for having too few users per arm (or other reasons)."""
        rows = self._meta.get("dropped", [])
        cols = [dims.EXPERIMENT, *self.segments, "n_treat", "n_control", "reason"]
        return pd.DataFrame(rows, columns=cols)

    # -- arrays ------------------------------------------------------------
    @property
    def n_cells(self) -> int:
        return int(self._data.sizes[dims.CELL])

    @property
    def effect(self) -> np.ndarray:
        """``(n_cells, 1 + K)`` effect estimates."""
        return np.asarray(self._data[dims.EFFECT].values, dtype=float)

    @property
    def noise_cov(self) -> np.ndarray:
        """``(n_cells, 1 + K, 1 + K)`` sampling covariances."""
        return np.asarray(self._data[dims.NOISE_COV].values, dtype=float)

    @property
    def experiment(self) -> np.ndarray:
        """Experiment id of every cell."""
        return np.asarray(self._data[dims.EXPERIMENT].values)

    @property
    def experiments(self) -> np.ndarray:
        """Distinct experiment ids, in order of first appearance."""
        return np.asarray(pd.unique(pd.Series(self.experiment)))

    @property
    def segment_label(self) -> np.ndarray:
        """Segment label of every cell ("IN / Mobile / New", or "all")."""
        return np.asarray(self._data[dims.SEGMENT_LABEL].values).astype(str)

    def cells(self) -> pd.DataFrame:
        """One row per cell: experiment, segment columns and the segment label."""
        out = {dims.EXPERIMENT: self.experiment}
        for s in self.segments:
            out[s] = np.asarray(self._data[s].values).astype(str)
        out[dims.SEGMENT_LABEL] = self.segment_label
        return pd.DataFrame(out)

    def to_frame(self) -> pd.DataFrame:
        """A tidy table: cell keys, users per arm, design (start and period with start
        dates), effect and standard error per metric."""
        out = self.cells()
        out["n_treat"] = self._data[dims.N_TREAT].values
        out["n_control"] = self._data[dims.N_CONTROL].values
        out[dims.DESIGN] = self.design
        if self.has_time:
            out[dims.START] = self._data[dims.START].values
            out[dims.PERIOD] = np.asarray(self._data[dims.PERIOD].values).astype(str)
        eff = self.effect
        se = np.sqrt(np.einsum("cii->ci", self.noise_cov))
        for j, m in enumerate(self.metrics):
            out[f"effect_{m}"] = eff[:, j]
            out[f"se_{m}"] = se[:, j]
        return out

    def fingerprint(self) -> str:
        """SHA-256 of the numbers and roles: identical data gives the identical string."""
        h = hashlib.sha256()
        for arr in (self.effect, self.noise_cov):
            h.update(np.ascontiguousarray(arr, dtype=np.float64).tobytes())
        for arr in (self._data[dims.N_TREAT].values, self._data[dims.N_CONTROL].values):
            h.update(np.ascontiguousarray(arr, dtype=np.int64).tobytes())
        keys = self.cells().astype(str)
        h.update(pd.util.hash_pandas_object(keys, index=False).to_numpy().tobytes())
        h.update(json.dumps([self.metrics, self.segments, self.directions]).encode())
        # Cells of A/B tests only hash as before designs were recorded.
        if set(self.designs) != {designs.AB} or self.units is not None:
            h.update(json.dumps([list(self.design), self.units]).encode())
        for var in designs.OPTIONAL_VARIABLES:
            if var in self._data:
                h.update(var.encode())
                h.update(np.ascontiguousarray(self._data[var].values, dtype=np.float64).tobytes())
        time = time_cells.fingerprint(self._data, self._meta)  # None without start dates
        if time is not None:
            h.update(time)
        return h.hexdigest()

    # -- derived objects ---------------------------------------------------
    def subset(self, experiments: Iterable[Any]) -> CellEffects:
        """Only the cells of the given experiments (for folds and backtests)."""
        wanted = pd.Index(list(experiments))
        known = pd.Index(self.experiments)
        missing = wanted.difference(known)
        if len(missing):
            raise ParameterError(
                f"The 'experiments' parameter of CellEffects.subset names unknown "
                f"experiments {list(missing)[:5]}; known: {list(known)[:5]}..."
            )
        mask = pd.Index(self.experiment).isin(wanted)
        return self._replace(self._data.isel({dims.CELL: np.flatnonzero(mask)}))

    def users(self) -> np.ndarray:
        """Users per cell (both arms), the weight of a cell in a mix of segments.

        Cells of an experiment without user counts (estimates made elsewhere,
        :func:`proxyscope.from_estimates` without count columns) count as a
        typical cell: the median of the counted cells' users, or 1 when no cell
        has counts.
        """
        users = np.asarray(self._data[dims.N_TREAT].values, dtype=float) + np.asarray(
            self._data[dims.N_CONTROL].values, dtype=float
        )
        codes = pd.Index(self.experiments).get_indexer(self.experiment)
        uncounted = np.bincount(codes, weights=users)[codes] <= 0
        if uncounted.any():
            counted = users[~uncounted]
            users = np.where(uncounted, float(np.median(counted)) if counted.size else 1.0, users)
        return users

    def subset_cells(self, positions: Sequence[int] | np.ndarray) -> CellEffects:
        """Only the cells at ``positions`` (in the given order)."""
        return self._replace(self._data.isel({dims.CELL: np.asarray(positions, dtype=np.int64)}))

    def select_proxies(self, proxies: Sequence[str]) -> CellEffects:
        """Keep the outcome and only the named proxies (in the given order)."""
        proxies = list(proxies)
        unknown = [p for p in proxies if p not in self.proxies]
        if unknown or not proxies:
            raise ParameterError(
                f"The 'proxies' parameter of CellEffects.select_proxies must be a "
                f"non-empty subset of {list(self.proxies)}; got {proxies}."
            )
        keep = [self.outcome, *proxies]
        data = self._data.sel({dims.METRIC: keep, dims.METRIC_: keep})
        meta = self.meta
        meta["proxies"] = proxies
        meta["directions"] = {p: self.directions[p] for p in proxies}
        return self._replace(data, meta)

    @classmethod
    def concat(cls, parts: Sequence[CellEffects]) -> CellEffects:
        """One history from several sets of cells (of any designs).

        The parts must agree on the outcome, the proxies (same order), their
        directions, the segment columns and the stated units; the cells are
        kept in the order given, each with its own design. Optional per-cell
        variables that only some parts have are filled in the others
        (:data:`proxyscope.data.designs.OPTIONAL_VARIABLES`). Experiment ids
        stay integers when every part's are, else they become strings. The
        metadata keep each part's own under ``meta["parts"]``; the dropped
        cells and assumed correlations of every part are kept. Start dates
        are kept when every part has them, grouped alike; the periods are
        derived again on the union (calendar-complete).

        Raises
        ------
        ParameterError
            ``parts`` is empty or holds something other than CellEffects, some
            parts have start dates and others not (the part is named), or two
            parts group them differently.
        DataError
            The parts differ in metrics, directions, segment columns or units
            (the first difference is named, with the parts' positions), or one
            (experiment, segment) appears in two parts.
        """
        from proxyscope.data.concat import concat_cells

        return concat_cells(cls, parts)

    def _replace(self, data: xr.Dataset, meta: Mapping[str, Any] | None = None) -> CellEffects:
        data = data.assign_coords({dims.CELL: np.arange(data.sizes[dims.CELL])})
        data.attrs = dict(data.attrs)
        data.attrs[META_ATTR] = json.dumps(meta if meta is not None else self._meta)
        # Fewer cells may span fewer periods: they are derived again from the starts.
        return CellEffects(time_cells.restore(data))

    # -- other constructors ------------------------------------------------
    #: Build from per-arm count / mean / variance columns:
    #: :func:`proxyscope.data.arms.from_arm_summaries` (attached by that module,
    #: which holds its code; importing ``proxyscope.data`` imports it).
    from_arm_summaries: ClassVar[Callable[..., CellEffects]]

    # -- persistence -------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write to NetCDF atomically (an earlier file survives a crash).

        The file carries a checksum of everything in it (attribute
        ``proxyscope_checksum``), which :meth:`load` verifies.
        """
        return cellfile.write(self._data, hdf5.as_path(path, "CellEffects.save"))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CellEffects:
        """Read a file written by :meth:`save`, after checking it (see :mod:`.cellfile`).

        A file written before checksums loads with an
        :class:`~proxyscope.errors.UnverifiedFileWarning`.

        Raises
        ------
        IncompatibleFileError
            If the file is not a readable CellEffects file, its metadata are malformed,
            its checksum does not match its contents, or it holds invalid cell effects.
        """
        p = hdf5.as_path(path, "CellEffects.load")
        if not p.exists():
            raise ParameterError(f"CellEffects.load: no file at {str(p)!r}.")
        data, verified = cellfile.read(p)
        try:
            effects = cls(data)
        except ProxyscopeError as exc:
            raise IncompatibleFileError(
                f"{str(p)!r} does not hold valid cell effects: {exc}"
            ) from None
        if not verified:
            checksum.warn_unverified(repr(str(p)), "cells file", stacklevel=2)
        return effects

    # -- display -----------------------------------------------------------
    def __repr__(self) -> str:
        d = self._data
        n_exp = len(self.experiments)
        segs = ", ".join(self.segments) if self.segments else "none"
        lines = [
            f"<proxyscope.CellEffects: {self.n_cells} cells, {n_exp} experiments, "
            f"segments: {segs}>",
            f"  outcome: {self.outcome}",
            "  proxies: "
            + ", ".join(f"{p} ({self.directions[p]} is better)" for p in self.proxies),
            f"  users per arm: treatment {int(d[dims.N_TREAT].sum())}, "
            f"control {int(d[dims.N_CONTROL].sum())}",
            f"  engine: {self._meta.get('engine', 'unknown')}",
        ]
        if self.designs != [designs.AB]:
            counts = pd.Series(self.design).value_counts()
            lines.append(
                "  designs: " + ", ".join(f"{d} ({int(counts[d])} cells)" for d in self.designs)
            )
        dropped = self._meta.get("dropped", [])
        if dropped:
            why: dict[str, int] = {}
            for row in dropped:
                reason = str(row.get("reason") or "dropped")
                why[reason] = why.get(reason, 0) + 1
            shown = "; ".join(f"{n} {reason}" for reason, n in why.items())
            lines.append(f"  dropped: {len(dropped)} cells ({shown}) (see .dropped)")
        assumed = self.assumed_correlation
        if assumed:
            shown = ", ".join(f"{k}: {v:g}" for k, v in assumed.items())
            lines.append(f"  ASSUMED noise correlations (not estimated): {shown}")
        time = time_cells.describe(self._data, self._meta)
        if time is not None:
            lines.append(time)
        return "\n".join(lines)

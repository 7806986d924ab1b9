"""Saved files for the tamper tests: a tiny fit, and edits made behind proxyscope's back.

The edits go through h5py on the file itself, the way a hand edit or a damaged disk
would change it, so nothing recomputes the file's checksum. ``content`` reads a file
with xarray directly (not through proxyscope) to tell whether an edit changed
anything proxyscope reads.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import xarray as xr
from conftest import STREAMING_ROLES, cached_fit

import proxyscope as ps

CHECKSUM = "proxyscope_checksum"
FIT_GROUPS = (
    "posterior",
    "sampled",
    "sample_stats",
    "log_likelihood",
    "observed_data",
    "constant_data",
)


def tiny_effects(world: Any) -> Any:
    """The small world's cells without segments, one proxy (20 cells)."""
    roles = {**STREAMING_ROLES, "segments": []}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cells = ps.summarize(world.users, engine="pandas", **roles)
    return cells.select_proxies(["early_watch_min"])


def tiny_fit(effects: Any) -> Any:
    """Complete pooling, 2 chains x 40 draws: fails its diagnostics (cached on disk)."""
    return cached_fit(
        "files-tiny",
        lambda: ps.ProxyModel(pooling="complete", followups=0).fit(
            effects, draws=40, tune=40, chains=2, random_seed=1, progress=False
        ),
    )


def set_attr(path: Path, name: str, value: Any, group: str = "/") -> None:
    with h5py.File(path, "r+") as f:
        f[group].attrs[name] = value


def del_attr(path: Path, name: str, group: str = "/") -> None:
    with h5py.File(path, "r+") as f:
        del f[group].attrs[name]


def del_group(path: Path, group: str) -> None:
    with h5py.File(path, "r+") as f:
        del f[group]


def edit(path: Path, variable: str, change: Callable[[np.ndarray], np.ndarray]) -> None:
    """Replace the stored values of ``variable`` ("group/name") with ``change(values)``."""
    with h5py.File(path, "r+") as f:
        data = f[variable]
        data[...] = change(data[...])


def variables(path: Path) -> list[str]:
    """The numeric variables and coordinates of a file ("group/name").

    Left out: netCDF's bare dimensions (datasets that hold no values of their own).
    """
    found: list[str] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "biuf" and obj.size:
            label = obj.attrs.get("NAME", b"")
            text = label.decode() if isinstance(label, bytes) else str(label)
            if "not a netCDF variable" not in text:
                found.append(name)

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return sorted(found)


def attributes(path: Path) -> list[tuple[str, str]]:
    """(group, name) of every attribute xarray shows (netCDF's own left out)."""
    hidden = {"_NCProperties", "DIMENSION_LIST", "REFERENCE_LIST", "CLASS", "NAME"}
    with h5py.File(path, "r") as f:
        groups = ["/"] + [g for g in f if isinstance(f[g], h5py.Group)]
        return [
            (g, str(a))
            for g in groups
            for a in f[g].attrs
            if a not in hidden and not str(a).startswith("_")
        ]


def content(path: Path, groups: tuple[str, ...] = ()) -> dict[str, xr.Dataset] | None:
    """Every group of the file (or the root dataset) read by xarray; None if unreadable."""
    out: dict[str, xr.Dataset] = {}
    if not heaps_add_up(path.read_bytes()):  # libhdf5 would never return
        return None
    try:
        with h5py.File(path, "r") as f:  # h5netcdf prints noise for a damaged header
            dict(f.attrs)
        for group in groups or (None,):
            with xr.open_dataset(path, group=group, engine="h5netcdf") as ds:
                out[group or "/"] = ds.load()
        if groups:
            with xr.open_dataset(path, engine="h5netcdf") as ds:
                out["/"] = ds.load()
    except Exception:  # any failure to read counts as a changed file
        return None
    return out


def same_content(a: dict[str, xr.Dataset] | None, b: dict[str, xr.Dataset] | None) -> bool:
    """Whether two readings hold the same values, dims, dtypes and attributes."""
    if a is None or b is None or set(a) != set(b):
        return False
    return all(a[g].identical(b[g]) and _same_dtypes(a[g], b[g]) for g in a)


def _same_dtypes(a: xr.Dataset, b: xr.Dataset) -> bool:
    return all(a[v].dtype == b[v].dtype for v in a.variables)


def heaps_add_up(raw: bytes) -> bool:
    """Whether every global heap collection's objects fill it exactly (HDF5 file format
    spec, "Global Heap"; 8-byte lengths): libhdf5 loops forever on one that does not."""
    start = raw.find(b"GCOL\x01\x00\x00\x00")
    while start >= 0:
        end = start + int.from_bytes(raw[start + 8 : start + 16], "little")
        at = start + 16
        while end <= len(raw) and end - at >= 16:
            index, size = (
                raw[at] | raw[at + 1] << 8,
                int.from_bytes(raw[at + 8 : at + 16], "little"),
            )
            step = size if index == 0 else 16 + (size + 7) // 8 * 8
            if step == 0:
                return False
            at += step
        if end > len(raw) or at > end:
            return False
        start = raw.find(b"GCOL\x01\x00\x00\x00", start + 1)
    return True

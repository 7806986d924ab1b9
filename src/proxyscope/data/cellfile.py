"""The cells file: what :meth:`CellEffects.save` writes and :meth:`CellEffects.load` checks.

A cells file is the CellEffects dataset in NetCDF (h5netcdf) with a checksum over
everything stored (:mod:`proxyscope.core.checksum`). Reading one checks, before
anything computes with it, that it is a readable NetCDF file, that its metadata
attribute is the JSON object CellEffects reads, and its checksum; any failure is an
:class:`IncompatibleFileError` naming the file and what is wrong. (The dataset's
variables are then checked by the CellEffects constructor.)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import xarray as xr

from proxyscope._io import write_atomic
from proxyscope.core import checksum, hdf5
from proxyscope.errors import IncompatibleFileError

#: The attribute holding a CellEffects' metadata (roles, directions, dropped cells) as JSON.
META_ATTR = "proxyscope_cell_effects"
#: The metadata a cells file must hold, with their JSON types.
FILE_META: dict[str, type] = {"outcome": str, "proxies": list, "segments": list, "directions": dict}
_JSON_NAMES: dict[type, str] = {str: "string", list: "array", dict: "object"}


def write(data: xr.Dataset, path: str | os.PathLike[str]) -> Path:
    """Write ``data`` (not modified) with its checksum to ``path`` atomically."""
    out = data.copy(deep=False)  # the same arrays; attributes of its own
    out.attrs = dict(out.attrs)
    out.attrs[checksum.CHECKSUM_ATTR] = checksum.digest({"/": out}, {})
    return write_atomic(path, lambda tmp: out.to_netcdf(tmp, engine="h5netcdf"))


def read(path: Path) -> tuple[xr.Dataset, bool]:
    """The checked dataset of the cells file at ``path`` and whether it has a checksum.

    A file without a checksum (written before checksums) passes the other checks and
    returns False; one whose checksum does not match is refused.
    """
    where = repr(str(path))
    hdf5.check_readable(path, where)
    try:
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            data = ds.load()
    except Exception as exc:  # h5py / h5netcdf / xarray raise many kinds for a bad file
        raise hdf5.unreadable(where, exc) from None
    if META_ATTR not in data.attrs:
        raise IncompatibleFileError(
            f"{where} is not a proxyscope CellEffects file (no {META_ATTR!r} attribute)."
        )
    check_meta(data.attrs[META_ATTR], where)
    stored = data.attrs.get(checksum.CHECKSUM_ATTR)
    return data, checksum.verify(stored, {"/": data}, {}, where=where)


def check_meta(text: Any, where: str) -> None:
    """Refuse metadata (``None``: missing) that are not the JSON object CellEffects reads.

    ``where`` names the file (and the group, in a fit file).
    """
    if text is None:
        raise IncompatibleFileError(
            f"{where}: the attribute {META_ATTR!r} (the cells' roles) is missing."
        )
    try:
        meta = json.loads(text) if isinstance(text, str) else None
    except ValueError as exc:  # json.JSONDecodeError
        raise IncompatibleFileError(
            f"{where}: the attribute {META_ATTR!r} is not valid JSON ({exc}); the file "
            "is damaged or was altered after it was written."
        ) from None
    if not isinstance(meta, dict):
        raise IncompatibleFileError(
            f"{where}: the attribute {META_ATTR!r} must hold a JSON object; got "
            f"{str(text)[:60]!r}. The file is damaged or was altered after it was written."
        )
    for key, kind in FILE_META.items():
        if not isinstance(meta.get(key), kind):
            raise IncompatibleFileError(
                f"{where}: the attribute {META_ATTR!r} must give {key!r} as a JSON "
                f"{_JSON_NAMES[kind]}; got {meta.get(key)!r}. The file is damaged or was "
                "altered after it was written."
            )
    names = [meta["outcome"], *meta["proxies"], *meta["segments"], *meta["directions"]]
    if not all(isinstance(n, str) for n in names):
        raise IncompatibleFileError(
            f"{where}: the attribute {META_ATTR!r} must name the outcome, proxies, "
            "segments and directions with strings. The file is damaged or was altered."
        )

"""Saved HDF5 files: the path given, and refusing a damaged file before a library reads it.

Two defects of the libraries under xarray, met by flipping single bytes of saved files:

- libhdf5 loops forever decoding a global heap collection (where variable-length
  strings such as our JSON attributes live) whose object sizes no longer add up: an
  object with index 0 and size 0 never advances its parser. :func:`check_readable`
  walks every collection the way libhdf5 does and refuses one it could not finish.
- h5netcdf reads the root attributes half-way through building its ``File``; when
  that read fails, the half-built object later prints an unrelated traceback
  ("Exception ignored in File.close ... '_writable'") as it is collected. Opening
  the file with h5py first and reading those attributes refuses it cleanly.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path
from typing import Any

import h5py

from proxyscope.errors import DataTypeError, IncompatibleFileError

#: A global heap collection: signature, version 1, three reserved bytes.
_COLLECTION = b"GCOL\x01\x00\x00\x00"
#: Sizes of a collection header and of an object header with 8-byte lengths (the
#: only size h5py and h5netcdf write).
_HEADER = 16
_OBJECT = 16


def as_path(path: Any, owner: str) -> Path:
    """``path`` (a str or os.PathLike) as a Path, or a DataTypeError naming it and ``owner``."""
    if isinstance(path, str | os.PathLike):
        return Path(path)
    raise DataTypeError(
        f"The 'path' parameter of {owner} must be a str or os.PathLike; got {type(path).__name__}."
    )


def check_readable(path: Path, where: str) -> None:
    """Refuse (naming ``where``) a file whose heaps, header or root attributes are damaged."""
    try:
        with open(path, "rb") as fh:
            if os.fstat(fh.fileno()).st_size:
                with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as raw:
                    _check_heaps(raw, where)
        with h5py.File(path, "r") as f:
            dict(f.attrs)
    except IncompatibleFileError:
        raise
    except Exception as exc:  # OSError, KeyError, ValueError, ... for a bad file
        raise unreadable(where, exc) from None


def unreadable(where: str, exc: BaseException) -> IncompatibleFileError:
    """The error for a file that cannot be read, with what the reader said."""
    return IncompatibleFileError(
        f"{where} is not a readable NetCDF file ({type(exc).__name__}: {exc}); "
        "it is damaged, truncated or of another kind."
    )


def _check_heaps(raw: mmap.mmap, where: str) -> None:
    start = raw.find(_COLLECTION)
    while start != -1:
        if not _heap_ends(raw, start):
            raise IncompatibleFileError(
                f"{where} is damaged: the objects of its global heap collection at byte "
                f"{start} do not add up to the collection, so it cannot be read."
            )
        start = raw.find(_COLLECTION, start + 1)


def _heap_ends(raw: mmap.mmap, start: int) -> bool:
    """Whether libhdf5's walk over the collection's objects ends exactly at its end."""
    end = start + int.from_bytes(raw[start + 8 : start + 16], "little")
    if end > len(raw):
        return False
    at = start + _HEADER
    while at < end:
        if at + _OBJECT > end:  # too small for an object: free space to the end
            return True
        index = int.from_bytes(raw[at : at + 2], "little")
        size = int.from_bytes(raw[at + 8 : at + 16], "little")
        # An object's header and data padded to 8 bytes; the free space (index 0)
        # gives its whole size, header included.
        step = _OBJECT + -(-size // 8) * 8 if index else size
        if step <= 0:
            return False
        at += step
    return at == end

"""Checksums of saved files: one digest over every stored array and attribute.

A fit file and a cells file carry one in the root attribute ``proxyscope_checksum``
(``"blake2b:<hex>"``), computed on exactly what is written (a variable written in
single precision is hashed in single precision), and ``load`` recomputes it from
what it read. It covers, for every group in name order, the group's attributes and
every variable and coordinate: its name, dims, dtype, shape, attributes and bytes;
and the file's own attributes (at every level all attributes but the checksum
itself and netCDF's internal ``_``-prefixed ones). The same contents give the same
digest on every machine (bytes are hashed little-endian; text as UTF-8 whatever its
numpy dtype, since a string coordinate comes back from NetCDF as another dtype than
it was written in).

It makes a file tamper-evident, not tamper-proof: a tool that rewrites a file's
contents and its checksum together is not detected (there is no secret key).

Works on anything shaped like an :class:`xarray.Dataset` (``variables``,
``coords``, ``attrs``), so this layer needs only numpy.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from proxyscope.errors import IncompatibleFileError, UnverifiedFileWarning

CHECKSUM_ATTR = "proxyscope_checksum"
ALGORITHM = "blake2b"
#: Bumped if what is hashed ever changes (it is hashed first).
_SCHEME = b"proxyscope-checksum-1"


def digest(groups: Mapping[str, Any], attrs: Mapping[str, Any]) -> str:
    """The checksum of a file's ``groups`` (name -> dataset) and root ``attrs``."""
    h = hashlib.blake2b(digest_size=32)
    _feed(h, _SCHEME)
    _feed_attrs(h, attrs)
    for name in sorted(groups):
        data = groups[name]
        _feed(h, b"group", name)
        _feed_attrs(h, data.attrs)
        coords = set(data.coords)
        for var in sorted(data.variables, key=str):
            variable = data.variables[var]
            kind = b"coord" if var in coords else b"var"
            _feed(h, kind, str(var), json.dumps([str(d) for d in variable.dims]))
            _feed_attrs(h, variable.attrs)
            _feed_array(h, np.asarray(variable.values))
    return f"{ALGORITHM}:{h.hexdigest()}"


def verify(stored: Any, groups: Mapping[str, Any], attrs: Mapping[str, Any], *, where: str) -> bool:
    """Check the checksum ``stored`` in a file against its contents (as for :func:`digest`).

    Returns True when it matches and False when the file has none (``stored`` is
    None: it predates checksums); raises :class:`IncompatibleFileError` naming
    ``where`` (the file) when it is not a checksum or does not match.
    """
    if stored is None:
        return False
    if not isinstance(stored, str) or not stored.startswith(ALGORITHM + ":"):
        raise IncompatibleFileError(
            f"{where}: the attribute {CHECKSUM_ATTR!r} must be a {ALGORITHM} checksum "
            f"('{ALGORITHM}:<hex>'); got {_short(stored)}. The file was altered after "
            "it was written; refusing to load it."
        )
    computed = digest(groups, attrs)
    if stored != computed:  # no secret here, so a plain comparison (any text)
        raise IncompatibleFileError(
            f"{where} was altered or damaged after it was written: its contents do not "
            f"match its checksum (attribute {CHECKSUM_ATTR!r}: stored {_short(stored, 80)}, "
            f"computed {computed!r}); refusing to load it. Use the original file "
            "or write it again with proxyscope."
        )
    return True


def warn_unverified(where: str, what: str, *, extra: str = "", stacklevel: int = 2) -> None:
    """Warn that the file ``where`` (a ``what``) has no checksum to verify."""
    warnings.warn(
        f"{where} predates checksums (it has no {CHECKSUM_ATTR!r} attribute), so this "
        f"{what} cannot be verified as unaltered since it was written.{extra} Save it "
        "again with this version of proxyscope to add a checksum if you trust it.",
        UnverifiedFileWarning,
        stacklevel=stacklevel + 1,
    )


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def _feed(h: Any, *parts: bytes | str) -> None:
    """Add each part with its length first, so that no two sequences collide."""
    for part in parts:
        raw = part if isinstance(part, bytes) else part.encode("utf-8", "surrogatepass")
        h.update(len(raw).to_bytes(8, "little"))
        h.update(raw)


def _feed_attrs(h: Any, attrs: Mapping[Any, Any]) -> None:
    plain = {
        str(k): _plain(v)
        for k, v in attrs.items()
        if k != CHECKSUM_ATTR and not str(k).startswith("_")
    }
    _feed(h, b"attrs", json.dumps(plain, sort_keys=True))


def _plain(value: Any) -> Any:
    """An attribute value as NetCDF gives it back: text, or a flat list of numbers."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value
    arr = np.asarray(value)
    if arr.dtype.kind in "OUS":
        return _texts(arr)
    if arr.dtype.kind == "b":  # NetCDF stores a boolean attribute as a small integer
        arr = arr.astype(np.int8)
    # NetCDF gives a one-element list back as a scalar: flat lists throughout.
    return [repr(v) if isinstance(v, float) else v for v in arr.ravel().tolist()]


def _feed_array(h: Any, arr: np.ndarray) -> None:
    shape = json.dumps(list(arr.shape))
    if arr.dtype.kind in "OUS":
        _feed(h, b"text", shape, json.dumps(_texts(arr), ensure_ascii=False))
        return
    little = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
    _feed(h, b"array", little.dtype.str, shape)
    flat = np.ascontiguousarray(little).reshape(-1)
    h.update(flat.view(np.uint8).data)


def _texts(arr: np.ndarray) -> list[str]:
    """Every element as text (NetCDF returns strings as str, bytes or fixed width)."""
    return [
        v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
        for v in arr.ravel().tolist()
    ]

"""Values read from the command line: ``NAME=VALUE`` items, comma-separated names,
paths that must be existing files (of the right kind), output directories, and
the types of numeric flags (with the bounds the spec checks for the keys they set)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from proxyscope import spec as specdef
from proxyscope.cli.console import UsageError
from proxyscope.errors import IncompatibleFileError

#: The first bytes of an HDF5 file, which every NetCDF file proxyscope writes is.
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def pairs(items: Sequence[str] | None, *, flag: str, number: bool = True) -> dict[str, Any]:
    """``NAME=VALUE`` command-line items as a dict (values numbers when ``number``)."""
    out: dict[str, Any] = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"{flag} expects NAME=VALUE; got {item!r}")
        if number:
            try:
                out[name.strip()] = float(value)
            except ValueError:
                raise UsageError(f"{flag} {name.strip()}= needs a number; got {value!r}") from None
        else:
            out[name.strip()] = value.strip()
    return out


def split_names(items: Sequence[str] | None) -> list[str]:
    """``--proxies a,b --proxies c`` → ["a", "b", "c"]."""
    out: list[str] = []
    for item in items or ():
        out += [x.strip() for x in item.split(",") if x.strip()]
    return out


def existing_file(path: str | os.PathLike[str], what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no {what} at {str(p)!r}")
    if p.is_dir():
        raise IsADirectoryError(f"{what} {str(p)!r} is a directory, not a file")
    return p


def netcdf_file(path: str | os.PathLike[str], what: str, origin: str) -> Path:
    """An existing NetCDF (HDF5) file, checked by its first bytes before a library opens it.

    ``what`` names the file ("cells file") and ``origin`` what writes it ("'proxyscope
    summarize'"): a CSV or a truncated file is refused with that, not with what the
    HDF5 library says of it.
    """
    p = existing_file(path, what)
    with p.open("rb") as fh:
        head = fh.read(len(HDF5_SIGNATURE))
    if head != HDF5_SIGNATURE:
        found = "an empty file" if not head else "not a NetCDF file"
        raise IncompatibleFileError(f"{str(p)!r} is not a {what} from {origin} ({found}).")
    return p


#: Options that name a file to write, and options that name a directory to write into.
OUTPUT_FILES = ("output", "json", "md")
OUTPUT_DIRS = ("out",)


def check_outputs(args: argparse.Namespace, flags: Mapping[str, str]) -> None:
    """The outputs the command line names, checked before any work: a file to write is
    not a directory, a directory to write into is not a file (``flags`` names them)."""
    for dest in OUTPUT_FILES:
        value = getattr(args, dest, None)
        if value is not None and Path(value).is_dir():
            raise UsageError(
                f"{flags.get(dest, dest)} {str(value)!r} is a directory; give a file name to write"
            )
    for dest in OUTPUT_DIRS:
        value = getattr(args, dest, None)
        if value is not None:
            output_dir(value, flags.get(dest, dest))


def output_dir(path: str | os.PathLike[str], flag: str) -> Path:
    """A directory to write into: it may exist, but not as a file."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UsageError(f"{flag} {str(p)!r} is a file; give a directory to write the outputs into")
    return p


# -- the types of numeric flags ------------------------------------------------


def int_between(low: int, high: int, why: str = "") -> Callable[[str], int]:
    """The type of an integer flag in [``low``, ``high``]: the bounds the spec checks for
    the key the flag sets (:data:`proxyscope.spec.MAX_DRAWS`, ...)."""
    want = "a positive integer" if low == 1 else f"an integer >= {low}"

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {want}, got {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"expected {want}, got {text!r}")
        if v > high:
            raise argparse.ArgumentTypeError(
                f"expected an integer at most {high}{f' ({why})' if why else ''}, got {text!r}"
            )
        return v

    return parse


positive_int = int_between(1, specdef.MAX_COUNT)
seed_int = int_between(0, specdef.MAX_SEED, "a 32-bit seed")
draws_int = int_between(1, specdef.MAX_DRAWS, "per chain")
tune_int = int_between(0, specdef.MAX_TUNE, "per chain")
chains_int = int_between(1, specdef.MAX_CHAINS)


def level_float(text: str) -> float:
    """The type of an interval-level flag: a number in (0, 1)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}") from None
    if not 0 < v < 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}")
    return v

"""Values read from the command line: ``NAME=VALUE`` items, comma-separated names,
and paths that must be existing files."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from proxyscope.cli.console import UsageError


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

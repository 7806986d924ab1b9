"""A small TOML writer for model specs (the standard library only reads TOML).

It writes what a spec holds — strings, booleans, integers, finite floats,
arrays of those, and nested tables — in a fixed order, so that a spec written
back is stable and diffs cleanly. Mappings whose values are all scalars or
arrays are written as ``[section]`` blocks; nested mappings as sub-tables.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

# fullmatch, not "$": "$" also matches before a trailing newline ("0\n" is not bare).
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def string(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's; DEL is escaped too)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def key(name: str) -> str:
    """A TOML key: bare when it can be, quoted otherwise."""
    return name if _BARE_KEY.fullmatch(name) else string(name)


def value(obj: Any) -> str:
    """A TOML value for a scalar, an array, or an inline table of scalars."""
    if isinstance(obj, bool):
        return "true" if obj else "false"
    if isinstance(obj, int):
        return str(obj)
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError(f"cannot write the non-finite number {obj!r} to a spec")
        text = repr(obj)
        return text if any(c in text for c in ".en") else text + ".0"
    if isinstance(obj, str):
        return string(obj)
    if isinstance(obj, Mapping):
        inner = ", ".join(f"{key(str(k))} = {value(v)}" for k, v in obj.items())
        return "{ " + inner + " }" if inner else "{}"
    if isinstance(obj, Sequence):
        return "[" + ", ".join(value(v) for v in obj) + "]"
    raise TypeError(f"cannot write a {type(obj).__name__} to a spec")


def _is_table(obj: Any) -> bool:
    return isinstance(obj, Mapping)


def dumps(doc: Mapping[str, Any], header: Sequence[str] = ()) -> str:
    """TOML text for a nested mapping (insertion order kept; None values skipped).

    Parameters
    ----------
    doc : mapping
        Top-level keys; mapping values become ``[tables]``.
    header : sequence of str
        Comment lines written first.
    """
    lines = [f"# {h}" if h else "#" for h in header]
    scalars = [(k, v) for k, v in doc.items() if v is not None and not _is_table(v)]
    for k, v in scalars:
        lines.append(f"{key(k)} = {value(v)}")
    for k, v in doc.items():
        if _is_table(v):
            _table(lines, [k], v)
    return "\n".join(lines).strip("\n") + "\n"


def _table(lines: list[str], path: list[str], table: Mapping[str, Any]) -> None:
    if lines:
        lines.append("")
    lines.append("[" + ".".join(key(p) for p in path) + "]")
    for k, v in table.items():
        if v is not None and not _is_table(v):
            lines.append(f"{key(str(k))} = {value(v)}")
    for k, v in table.items():
        if _is_table(v):
            _table(lines, [*path, str(k)], v)

"""Overrides of a spec's keys before validation: ``"section.key=value"`` (the value
read as TOML, else as text) or ``("section.key", value)``, as ``--set`` gives them."""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Mapping, Sequence
from typing import Any

from proxyscope.errors import SpecError
from proxyscope.spec.read import type_word


def apply_overrides(
    raw: Mapping[str, Any],
    overrides: Sequence[str | tuple[str, Any]],
    *,
    origin: str = "<string>",
) -> dict[str, Any]:
    """``raw`` with assignments applied (a deep copy).

    Each override is ``"a.b.c=value"`` (the value read as TOML, else as
    text) or a pair ``("a.b.c", value)``.
    """
    out = copy.deepcopy(dict(raw))
    if isinstance(overrides, str):  # one override, not a sequence of its characters
        overrides = [overrides]
    for item in overrides:
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            dotted, value = item
        elif not isinstance(item, str):
            raise SpecError(
                f"{origin}: an override must be 'section.key=value' or a pair (key, value); "
                f"got {item!r}."
            )
        elif "=" not in item:
            raise SpecError(
                f"{origin}: the override {item!r} must look like section.key=value "
                "(e.g. sampler.draws=200)."
            )
        else:
            dotted, text = item.split("=", 1)
            value = parse_value(text)
        parts = [p.strip() for p in dotted.strip().split(".")]
        if not all(parts):
            raise SpecError(f"{origin}: the override {item!r} has an empty key.")
        node: dict[str, Any] = out
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise SpecError(
                    f"{origin}: the override {item!r} treats {part!r} as a table, but it is "
                    f"{type_word(child)}."
                )
            node = child
        node[parts[-1]] = value
    return out


def parse_value(text: str) -> Any:
    """A command-line value read as TOML (``200``, ``0.5``, ``true``, ``["a"]``), else text."""
    text = text.strip()
    try:
        doc = tomllib.loads(f"v = {text}")
    except (tomllib.TOMLDecodeError, RecursionError):  # not one TOML value: the text itself
        return text
    # "1\nname = 'x'" is a value and another key: the text, not the value alone.
    return doc["v"] if list(doc) == ["v"] else text

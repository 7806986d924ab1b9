"""Number formatting and plain values every surface shares (standard library only)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

#: What every surface shows for a missing or non-finite number.
MISSING = "n/a"


def num(x: Any, digits: int = 3) -> str:
    """A number in plain notation with ``digits`` significant digits, but never fewer
    than its integer digits (2,594.4 is "2,594", not "2.59e+03", so two numbers 4.4
    apart do not print alike); trailing zeros dropped. An int in full, a bool as
    yes/no, :data:`MISSING` for None or a non-finite number, anything else not a
    number as its ``str``."""
    if x is None:
        return MISSING
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if not math.isfinite(v):
        return MISSING
    if v == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(v)))
    decimals = max(digits - 1 - magnitude, 0)
    text = f"{v:,.{decimals}f}"
    if decimals:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def interval(mean: Any, lo: Any, hi: Any, fmt: Callable[[Any], str] = num) -> str:
    """``mean [lo, hi]`` in ``fmt``; only the mean when neither bound is given."""
    if lo is None and hi is None:
        return fmt(mean)
    return f"{fmt(mean)} [{fmt(lo)}, {fmt(hi)}]"


def pct(level: float) -> str:
    """A probability or interval level as a percentage: ``0.9`` -> ``"90%"``,
    ``0.975`` -> ``"97.5%"``."""
    value = 100 * float(level)
    return f"{value:.0f}%" if value.is_integer() else f"{value:g}%"


def plain(value: Any) -> Any:
    """A value as a plain Python object, for messages and JSON: a NumPy scalar becomes
    the int, float, str or bool it holds (through its ``item()``), a list or tuple a
    list of plain values; anything else that is not a str, int, float, bool or None
    (a timestamp, an array) becomes its ``str``."""
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    item = getattr(value, "item", None)
    if callable(item):
        try:
            value = item()
        except (ValueError, TypeError):
            return str(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def json_value(value: Any) -> Any:
    """:func:`plain`, with a non-finite float as None (JSON has no NaN or infinity)."""
    value = plain(value)
    if isinstance(value, list):
        return [json_value(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value

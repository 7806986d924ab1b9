"""Every exception and warning proxyscope raises, in one place.

All errors subclass :class:`ValueError` or :class:`TypeError` so callers can
catch them the usual way; each message names the parameter or column, what was
expected and what was found.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any


class ProxyscopeError(Exception):
    """Base class of every proxyscope error."""


class ParameterError(ProxyscopeError, ValueError):
    """A parameter has a value outside what it accepts."""


class ColumnError(ProxyscopeError, ValueError):
    """A column is missing, misspelled, or given two roles."""


class DataError(ProxyscopeError, ValueError):
    """The data's values cannot be used as they are (NaN, inf, one arm, ...)."""


class DataTypeError(ProxyscopeError, TypeError):
    """An argument or column has the wrong type."""


class SpecError(ProxyscopeError, ValueError):
    """A declarative model spec (TOML) is invalid."""


class IncompatibleFileError(ProxyscopeError, ValueError):
    """A saved file was written by an incompatible version or was altered."""


class ProxyscopeWarning(UserWarning):
    """Base class of proxyscope warnings."""


class ConvergenceWarning(ProxyscopeWarning):
    """A fit failed its convergence diagnostics; its outputs are untrustworthy."""


class DataWarning(ProxyscopeWarning):
    """Something was dropped or assumed while reading data."""


class UnverifiedFileWarning(ProxyscopeWarning):
    """A saved file predates checksums: it cannot be verified as unaltered."""


def closest(name: str, candidates: Iterable[Any]) -> str | None:
    """The candidate most similar to ``name``, or None when nothing is close."""
    names = [str(c) for c in candidates]
    hits = difflib.get_close_matches(str(name), names, n=1, cutoff=0.6)
    if hits:
        return hits[0]
    lowered = {n.lower(): n for n in names}
    return lowered.get(str(name).lower())


def suggestion(name: str, candidates: Iterable[Any]) -> str:
    """A " Did you mean 'x'?" suffix, or an empty string."""
    hit = closest(name, candidates)
    return f" Did you mean {hit!r}?" if hit is not None else ""


def check_one_of(
    value: Any, allowed: Iterable[Any], *, param: str, owner: str | None = None
) -> Any:
    """Return ``value`` if it is in ``allowed``; otherwise raise ParameterError.

    The message follows scikit-learn: "The 'pooling' parameter of ProxyModel
    must be one of {'additive', ...}. Got 'addtive' instead."
    """
    allowed = list(allowed)
    if value in allowed:
        return value
    where = f"The {param!r} parameter of {owner}" if owner else f"The {param!r} parameter"
    shown = "{" + ", ".join(repr(a) for a in allowed) + "}"
    hint = suggestion(value, allowed) if isinstance(value, str) else ""
    raise ParameterError(f"{where} must be one of {shown}. Got {value!r} instead.{hint}")


def number_range(low: float | None, high: float | None, *, open_low: bool, open_high: bool) -> str:
    """The words for a number within bounds: "a number in (0, 1]", "a number >= 2"."""
    if low is not None and high is not None:
        left, right = "(" if open_low else "[", ")" if open_high else "]"
        return f"a number in {left}{low:g}, {high:g}{right}"
    if low is not None:
        return f"a number {'>' if open_low else '>='} {low:g}"
    if high is not None:
        return f"a number {'<' if open_high else '<='} {high:g}"
    return "a finite number"

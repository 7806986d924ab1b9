"""Checked reading of one TOML table of a spec: every error names its key path.

A :class:`Table` wraps the mapping of one ``[section]``. Each ``take_*``
method removes a key, checks its type and range, and raises
:class:`~proxyscope.errors.SpecError` with a message such as::

    models/x.toml: [model].pooling must be one of {'additive', ...}; got 'addtive'.
    Did you mean 'additive'?

:meth:`Table.done` rejects the keys nobody took, with a did-you-mean and the
list of allowed keys.
"""

from __future__ import annotations

import datetime
import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from proxyscope.errors import SpecError, number_range, suggestion

_MISSING: Any = object()


def show_set(values: Iterable[Any]) -> str:
    """``{'a', 'b'}`` in the order given."""
    return "{" + ", ".join(repr(v) for v in values) + "}"


def type_word(obj: Any) -> str:
    """What a TOML value is called, for messages."""
    if isinstance(obj, bool):
        return "a boolean"
    if isinstance(obj, int):
        return "an integer"
    if isinstance(obj, float):
        return "a number"
    if isinstance(obj, str):
        return "a string"
    if isinstance(obj, Mapping):
        return "a table"
    if isinstance(obj, list):
        return "an array"
    if isinstance(obj, datetime.date | datetime.time):
        return "a date or time"
    return type(obj).__name__


class Table:
    """One table of a spec, read key by key.

    Parameters
    ----------
    raw : mapping
        The parsed TOML table (not modified).
    where : str
        Its dotted path, e.g. ``"analysis.compare"``; ``""`` for the top level.
    origin : str
        The file (or ``"<string>"``) for messages.
    """

    def __init__(self, raw: Mapping[str, Any], where: str, origin: str) -> None:
        self.raw = dict(raw)
        self.where = where
        self.origin = origin
        self.taken: list[str] = []

    # -- messages ------------------------------------------------------------
    def path(self, key: str) -> str:
        """``[section].key`` (or ``key`` at the top level)."""
        return f"[{self.where}].{key}" if self.where else key

    def error(self, key: str | None, message: str) -> SpecError:
        """A SpecError about ``key`` (or about the table itself when None)."""
        if key is None:
            subject = f"[{self.where}]" if self.where else "the spec"
        else:
            subject = self.path(key)
        return SpecError(f"{self.origin}: {subject} {message}")

    # -- access --------------------------------------------------------------
    def has(self, key: str) -> bool:
        return key in self.raw

    def _take(self, key: str, default: Any) -> Any:
        self.taken.append(key)
        if key in self.raw:
            return self.raw[key]
        if default is _MISSING:
            raise self.error(key, "is required.")
        return default

    def take_str(
        self,
        key: str,
        default: Any = _MISSING,
        *,
        allowed: Sequence[str] | None = None,
    ) -> Any:
        """A non-empty string (one of ``allowed`` when given), or ``default``."""
        v = self._take(key, default)
        if v is default and key not in self.raw:
            return v
        if allowed is not None:
            if v not in allowed:
                hint = suggestion(v, allowed) if isinstance(v, str) else ""
                raise self.error(key, f"must be one of {show_set(allowed)}; got {v!r}.{hint}")
            return v
        if not isinstance(v, str) or not v.strip():
            raise self.error(key, f"must be a non-empty string; got {v!r}.")
        return v

    def take_path(self, key: str, default: Any = _MISSING) -> Any:
        """A file or directory path: a non-empty string the file system can take."""
        v = self.take_str(key, default)
        if isinstance(v, str) and "\x00" in v:
            raise self.error(key, f"must be a file path; got {v!r}, which holds a NUL character.")
        return v

    def take_int(
        self,
        key: str,
        default: Any = _MISSING,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
        why: str = "",
    ) -> Any:
        """An integer (within ``minimum`` and ``maximum``), or ``default``.

        ``why`` follows the message of a value above ``maximum`` (what the bound is).
        """
        v = self._take(key, default)
        if v is default and key not in self.raw:
            return v
        return check_int(v, lambda m: self.error(key, m), minimum=minimum, maximum=maximum, why=why)

    def take_float(
        self,
        key: str,
        default: Any = _MISSING,
        *,
        low: float | None = None,
        high: float | None = None,
        open_low: bool = False,
        open_high: bool = False,
    ) -> Any:
        """A finite number within the bounds, or ``default`` (integers are accepted)."""
        v = self._take(key, default)
        if v is default and key not in self.raw:
            return v
        return check_number(
            v,
            lambda m: self.error(key, m),
            low=low,
            high=high,
            open_low=open_low,
            open_high=open_high,
        )

    def take_bool(self, key: str, default: Any = _MISSING) -> Any:
        v = self._take(key, default)
        if v is default and key not in self.raw:
            return v
        if not isinstance(v, bool):
            raise self.error(key, f"must be true or false; got {v!r} ({type_word(v)}).")
        return v

    def take_str_list(
        self,
        key: str,
        default: Any = _MISSING,
        *,
        allowed: Sequence[str] | None = None,
        allow_empty: bool = True,
    ) -> Any:
        """An array of non-empty, distinct strings, returned as a tuple."""
        v = self._take(key, default)
        if v is default and key not in self.raw:
            return v
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list):
            raise self.error(key, f"must be an array of strings; got {v!r} ({type_word(v)}).")
        for i, item in enumerate(v):
            if not isinstance(item, str) or not item.strip():
                raise self.error(
                    key, f"must hold non-empty strings; item {i} is {item!r} ({type_word(item)})."
                )
            if allowed is not None and item not in allowed:
                hint = suggestion(item, allowed)
                raise self.error(key, f"items must be in {show_set(allowed)}; got {item!r}.{hint}")
        dup = sorted({x for x in v if v.count(x) > 1})
        if dup:
            raise self.error(key, f"names {dup[0]!r} twice.")
        if not v and not allow_empty:
            raise self.error(key, "must name at least one item; got an empty array.")
        return tuple(v)

    def take_number_list(
        self,
        key: str,
        default: Any = _MISSING,
        *,
        low: float | None = None,
        high: float | None = None,
        integer: bool = False,
    ) -> Any:
        """A non-empty array of distinct numbers, returned as a tuple."""
        v = self._take(key, default)
        if v is default and key not in self.raw:
            return v
        if not isinstance(v, list) or not v:
            raise self.error(key, f"must be a non-empty array of numbers; got {v!r}.")
        out: list[float] = []
        for i, item in enumerate(v):
            where = f"{key}[{i}]"

            def fail(m: str, where: str = where) -> SpecError:
                return self.error(where, m)

            if integer:
                lo = None if low is None else math.ceil(low)
                hi = None if high is None else math.floor(high)
                out.append(check_int(item, fail, minimum=lo, maximum=hi))
            else:
                out.append(check_number(item, fail, low=low, high=high))
        if len(set(out)) != len(out):
            raise self.error(key, f"repeats a value: {v!r}.")
        return tuple(int(x) for x in out) if integer else tuple(out)

    def take_table(self, key: str, *, required: bool = False) -> Table | None:
        """The sub-table ``key`` as a :class:`Table`, or None when absent."""
        self.taken.append(key)
        if key not in self.raw:
            if required:
                raise self.error(None, f"needs a [{self._sub(key)}] table.")
            return None
        v = self.raw[key]
        if not isinstance(v, Mapping):
            raise self.error(key, f"must be a table; got {v!r} ({type_word(v)}).")
        return Table(v, self._sub(key), self.origin)

    def take_mapping(
        self,
        key: str,
        check: Callable[[str, Any], Any],
        *,
        keys: Sequence[str] | None = None,
        what: str = "key",
    ) -> dict[str, Any]:
        """A free-form table of ``name = value``; each value passes through ``check``.

        ``keys``, when given, are the names allowed (others get a did-you-mean).
        ``check(path, value)`` returns the value or raises.
        """
        sub = self.take_table(key)
        if sub is None:
            return {}
        out: dict[str, Any] = {}
        for name, v in sub.raw.items():
            if keys is not None and name not in keys:
                hint = suggestion(name, keys)
                raise sub.error(
                    name,
                    f"is not a known {what}.{hint} Allowed: {', '.join(keys) or 'none'}.",
                )
            out[name] = check(sub.path(name), v)
            sub.taken.append(name)
        return out

    def _sub(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def done(self) -> None:
        """Reject every key that was not read."""
        allowed = list(dict.fromkeys(self.taken))
        for name in self.raw:
            if name not in allowed:
                hint = suggestion(name, allowed)
                where = f"[{self.where}]" if self.where else "the top level"
                raise self.error(
                    name,
                    f"is not a known key.{hint} Allowed keys in {where}: {', '.join(allowed)}.",
                )


def check_int(
    v: Any,
    fail: Callable[[str], SpecError],
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    why: str = "",
) -> int:
    """``v`` if it is an integer (not a boolean) within the bounds; else ``fail(message)``.

    Messages: "must be an integer >= 1; got 0." and, above ``maximum``, "must be at
    most 100000 (``why``); got 1180591620717411303424."
    """
    want = "an integer" + (f" >= {minimum}" if minimum is not None else "")
    if isinstance(v, bool) or not isinstance(v, int):
        raise fail(f"must be {want}; got {v!r} ({type_word(v)}).")
    if minimum is not None and v < minimum:
        raise fail(f"must be {want}; got {v!r}.")
    if maximum is not None and v > maximum:
        raise fail(f"must be at most {maximum}{f' ({why})' if why else ''}; got {v!r}.")
    return v


def check_number(
    v: Any,
    fail: Callable[[str], SpecError],
    *,
    low: float | None = None,
    high: float | None = None,
    open_low: bool = False,
    open_high: bool = False,
) -> float:
    """``v`` as a float if it is a finite number within the bounds; else ``fail(message)``."""
    want = number_range(low, high, open_low=open_low, open_high=open_high)
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(float(v)):
        raise fail(f"must be {want}; got {v!r} ({type_word(v)}).")
    x = float(v)
    if low is not None and (x < low or (open_low and x == low)):
        raise fail(f"must be {want}; got {v!r}.")
    if high is not None and (x > high or (open_high and x == high)):
        raise fail(f"must be {want}; got {v!r}.")
    return x

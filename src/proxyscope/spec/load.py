"""Reading a spec: a TOML file (:func:`load_spec`) or text (:func:`loads_spec`),
with overrides applied, validated into a :class:`~proxyscope.spec.ModelSpec`."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from proxyscope.errors import SpecError, suggestion
from proxyscope.spec.model_spec import ModelSpec
from proxyscope.spec.overrides import apply_overrides
from proxyscope.spec.parse import from_dict


def load_spec(
    path: str | os.PathLike[str], overrides: Sequence[str | tuple[str, Any]] = ()
) -> ModelSpec:
    """Read and validate a spec file.

    Parameters
    ----------
    path : str or PathLike
        The TOML file.
    overrides : sequence of str
        ``"section.key=value"`` assignments applied before validation (the
        value is read as TOML, else taken as a string), e.g.
        ``"sampler.draws=200"``.

    Raises
    ------
    SpecError
        No such file, not TOML, or any invalid key or value.
    """
    if not isinstance(path, str | os.PathLike):
        raise SpecError(f"The spec path must be a file path; got {type(path).__name__} {path!r}.")
    p = Path(path)
    origin = os.fspath(path)
    if p.is_dir():
        raise SpecError(f"{origin}: is a directory, not a spec file (a TOML file).")
    if not p.is_file():
        hint = ""
        if p.parent.is_dir():
            near = suggestion(p.name, [q.name for q in p.parent.glob("*.toml")])
            hint = near
        raise SpecError(f"{origin}: no such spec file.{hint}")
    try:
        data = p.read_bytes()
    except OSError as exc:  # permission denied, a FIFO, an I/O error
        raise SpecError(f"{origin}: cannot read the spec: {exc.strerror or exc}.") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(
            f"{origin}: is not a spec (TOML is UTF-8 text; byte {exc.start} is "
            f"0x{data[exc.start]:02x})."
        ) from None
    return loads_spec(text, origin=origin, base_dir=p.resolve().parent, overrides=overrides)


def loads_spec(
    text: str,
    *,
    origin: str = "<string>",
    base_dir: str | os.PathLike[str] | None = None,
    overrides: Sequence[str | tuple[str, Any]] = (),
) -> ModelSpec:
    """Validate a spec given as TOML text (relative paths from ``base_dir``, default cwd)."""
    if not isinstance(text, str):
        raise SpecError(f"{origin}: a spec's text must be a string; got {type(text).__name__}.")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{origin}: not valid TOML: {exc}.") from None
    except RecursionError:  # tomllib reads nested arrays and tables recursively
        raise SpecError(
            f"{origin}: not a spec: its arrays or tables nest more than {MAX_DEPTH} deep."
        ) from None
    if _depth(raw) > MAX_DEPTH:
        raise SpecError(
            f"{origin}: not a spec: its arrays or tables nest more than {MAX_DEPTH} deep."
        )
    raw = apply_overrides(raw, overrides, origin=origin)
    return from_dict(raw, origin=origin, base_dir=base_dir)


#: No spec nests deeper than a few levels ([analysis.compare.proxy_sets] is 3).
MAX_DEPTH = 16


def _depth(value: Any) -> int:
    """How deeply arrays and tables nest in ``value`` (a scalar is 0), stopping early."""
    depth = 0
    level: list[Any] = [value]
    while level and depth <= MAX_DEPTH:
        children: list[Any] = []
        for v in level:
            if isinstance(v, dict):
                children.extend(v.values())
            elif isinstance(v, list):
                children.extend(v)
        if not children and not any(isinstance(v, dict | list) for v in level):
            break
        depth += 1
        level = children
    return depth

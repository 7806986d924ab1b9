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
    p = Path(path)
    origin = os.fspath(path)
    if not p.is_file():
        hint = ""
        if p.parent.is_dir():
            near = suggestion(p.name, [q.name for q in p.parent.glob("*.toml")])
            hint = near
        raise SpecError(f"{origin}: no such spec file.{hint}")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{origin}: cannot read the spec: {exc}") from None
    return loads_spec(text, origin=origin, base_dir=p.resolve().parent, overrides=overrides)


def loads_spec(
    text: str,
    *,
    origin: str = "<string>",
    base_dir: str | os.PathLike[str] | None = None,
    overrides: Sequence[str | tuple[str, Any]] = (),
) -> ModelSpec:
    """Validate a spec given as TOML text (relative paths from ``base_dir``, default cwd)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{origin}: not valid TOML: {exc}.") from None
    raw = apply_overrides(raw, overrides, origin=origin)
    return from_dict(raw, origin=origin, base_dir=base_dir)

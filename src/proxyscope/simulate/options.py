"""A simulated world's settings from a config object and keyword options.

Every world function (``workspace``, ``rollout``, ``threshold``, ``optin``,
``launch``) takes an optional frozen config and keyword options that replace
its fields; :func:`resolve_config` checks both the same way for all of them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from proxyscope.errors import ParameterError, suggestion
from proxyscope.simulate.world import as_mix

C = TypeVar("C")


def resolve_config(
    config: C | None,
    options: Mapping[str, Any],
    cls: type[C],
    *,
    function: str,
    example: str,
    drop_none: bool = True,
) -> C:
    """``config`` (or ``cls()``) with the ``options`` fields replaced.

    Parameters
    ----------
    config : instance of ``cls`` or None
    options : the world function's keyword options (fields of ``cls``); a
        ``mix`` is read with :func:`~proxyscope.simulate.world.as_mix`; with
        ``drop_none``, options given as None keep the config's value.
    cls : the world's frozen config dataclass.
    function, example : the world function's name and a call with one option,
        for messages.

    Raises
    ------
    ParameterError
        ``config`` of another type, or an option that is not a field of ``cls``
        (the closest is suggested). Invalid values raise from ``cls`` itself.
    """
    if config is not None and not isinstance(config, cls):
        raise ParameterError(
            f"config must be a {cls.__name__}; got {type(config).__name__} {config!r}. "
            f"Pass settings by keyword, e.g. {example}."
        )
    fields = tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
    for key in options:
        if key not in fields:
            raise ParameterError(
                f"Unknown option {key!r} of {function}; expected one of {list(fields)}."
                + suggestion(key, fields)
            )
    given = dict(options)
    if "mix" in given and given["mix"] is not None:
        given["mix"] = as_mix(given["mix"])
    if drop_none:
        given = {k: v for k, v in given.items() if v is not None}
    base = config if config is not None else cls()
    return dataclasses.replace(base, **given) if given else base  # type: ignore[type-var]

"""How a run reports progress: a ``log`` callable that receives one line per step.

The CLI passes one that prints to stderr; the default, :func:`quiet`, drops
every line.
"""

from __future__ import annotations

from collections.abc import Callable

Log = Callable[[str], None]


def quiet(_: str) -> None:
    return None

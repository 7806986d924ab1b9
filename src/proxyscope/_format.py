"""Number formatting every surface shares (standard library only)."""

from __future__ import annotations


def pct(level: float) -> str:
    """A probability or interval level as a percentage: ``0.9`` -> ``"90%"``,
    ``0.975`` -> ``"97.5%"``."""
    value = 100 * float(level)
    return f"{value:.0f}%" if value.is_integer() else f"{value:g}%"

"""The figures' shared canvas: colours, a pyplot-free figure, drawing helpers, and bytes out."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from proxyscope._format import pct

if TYPE_CHECKING:
    from matplotlib.axes import Axes

#: Colours: the headline estimate, secondary estimates, a reference line, flagged cells.
MAIN = "#1f4e79"
SECOND = "#8c8c8c"
ALERT = "#b00020"
TARGET = "#c05621"


def new_figure(width: float, height: float) -> Figure:
    """An empty figure on its own Agg canvas (never registered with pyplot)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def ci_label(ci: Any) -> str:
    """``0.9`` -> ``"90%"`` (``"?"`` when the level is unknown)."""
    try:
        return pct(ci)
    except (TypeError, ValueError):
        return "?"


def untrusted_note(fig: Figure, trustworthy: Any) -> None:
    """Stamp a red line on a figure drawn from a fit that failed its diagnostics."""
    if trustworthy is False:
        fig.suptitle(
            "UNTRUSTWORTHY FIT: convergence diagnostics failed",
            color=ALERT,
            fontweight="bold",
            fontsize=10,
        )


def point_ranges(
    ax: Axes,
    labels: Sequence[str],
    mean: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    colors: Sequence[str] | None = None,
) -> None:
    """Horizontal point-and-interval rows, first label at the top."""
    y = np.arange(len(labels))[::-1]
    colors = list(colors) if colors is not None else [MAIN] * len(labels)
    for yi, m, a, b, c in zip(y, mean, lo, hi, colors, strict=True):
        if np.isfinite(a) and np.isfinite(b):
            ax.hlines(yi, a, b, color=c, linewidth=2.2)
        if np.isfinite(m):
            ax.plot([m], [yi], "o", color=c, markersize=5, zorder=3)
    ax.set_yticks(y)
    ax.set_yticklabels(list(labels), fontsize=8)
    ax.set_ylim(-0.7, len(labels) - 0.3)
    ax.grid(axis="x", alpha=0.3)


# -- output --------------------------------------------------------------------


def figure_bytes(fig: Figure, fmt: str, dpi: int = 110) -> bytes:
    """The figure rendered as ``"png"`` or ``"svg"`` bytes (no timestamps: reproducible)."""
    buf = io.BytesIO()
    metadata: dict[str, Any] = {"Software": None} if fmt == "png" else {"Date": None}
    with matplotlib.rc_context({"svg.hashsalt": "proxyscope", "svg.fonttype": "path"}):
        fig.savefig(buf, format=fmt, dpi=dpi, metadata=metadata)
    return buf.getvalue()

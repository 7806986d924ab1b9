"""Figure of the relation over time: each proxy's slope per period (DESIGN.md §9)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure

from proxyscope.reporting.plots.canvas import MAIN, SECOND, ci_label, new_figure, untrusted_note

if TYPE_CHECKING:
    from proxyscope.analyses.stability import Stability


def plot_stability(result: Stability, trustworthy: Any = True) -> tuple[Figure, np.ndarray]:
    """One panel per proxy: the global slope per period (posterior mean and interval),
    the forecast for the period after the last one dashed, each segment's mean in grey
    when the result has segments.

    Parameters
    ----------
    result : Stability
        :func:`proxyscope.stability`.
    trustworthy : bool
        False stamps the figure as drawn from a fit that failed its diagnostics.
    """
    paths = result.paths
    proxies = list(dict.fromkeys(paths["proxy"]))
    top = paths["segment"].iloc[0]
    fig = new_figure(3.4 * len(proxies) + 0.6, 3.0)
    axes = np.atleast_1d(np.asarray(fig.subplots(1, len(proxies), squeeze=False))[0])
    ci = ci_label(result.ci)
    for ax, proxy in zip(axes, proxies, strict=True):
        rows = paths[(paths["proxy"] == proxy) & (paths["segment"] == top)]
        x = np.arange(len(rows))
        known = ~rows["forecast"].to_numpy(dtype=bool)
        mean = rows["mean"].to_numpy(dtype=float)
        lo, hi = rows["lower"].to_numpy(dtype=float), rows["upper"].to_numpy(dtype=float)
        ax.fill_between(x[known], lo[known], hi[known], color=MAIN, alpha=0.2, linewidth=0)
        ax.plot(x[known], mean[known], "o-", color=MAIN, markersize=3)
        last = int(np.flatnonzero(known)[-1])
        ahead = x[last:]
        ax.fill_between(ahead, lo[last:], hi[last:], color=MAIN, alpha=0.08, linewidth=0)
        ax.plot(ahead, mean[last:], "--", color=MAIN)
        for label in dict.fromkeys(paths["segment"]):
            if label == top:
                continue
            seg = paths[(paths["proxy"] == proxy) & (paths["segment"] == label)]
            ax.plot(x[known], seg["mean"].to_numpy(dtype=float)[known], color=SECOND, lw=0.6)
        ax.axhline(0.0, color="black", linewidth=0.5)
        ax.set_xticks(x)
        ax.set_xticklabels(list(rows["period"]), rotation=60, fontsize=6)
        ax.set_title(proxy, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel(f"slope on {result.outcome}: mean and {ci} interval", fontsize=8)
    untrusted_note(fig, trustworthy)
    return fig, axes

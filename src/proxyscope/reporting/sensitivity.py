"""The report's sensitivity analysis: how the conclusions move with an assumption.

A spec's ``[analysis.sensitivity]`` refits the model under each assumed noise
correlation between early and final reads (per-arm data rarely carry it; see
:mod:`proxyscope.run.sensitivity`). This module turns that table into its
report.json section, its reading, its figure and its report section.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from proxyscope._format import interval, num
from proxyscope.reporting.blocks import Para, Section, figure_blocks, prob, table
from proxyscope.reporting.document import jsonable
from proxyscope.reporting.plots.canvas import ALERT, MAIN, new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Columns of the sensitivity table, as the run computes it.
COLUMNS = (
    "correlation",
    "scope",
    "proxy",
    "r2",
    "r2_lo",
    "r2_hi",
    "slope",
    "slope_lo",
    "slope_hi",
    "decision_accuracy",
    "decision_lo",
    "decision_hi",
    "converged",
)


def sensitivity_reading(table: pd.DataFrame) -> str:
    """One sentence per proxy: how the overall numbers move across the assumptions."""
    parts = []
    overall = table[table["scope"] == "overall"]
    for proxy, g in overall.groupby("proxy", sort=False):
        g = g.sort_values("correlation")
        lo_rho, hi_rho = g["correlation"].iloc[0], g["correlation"].iloc[-1]
        parts.append(
            f"{proxy}: as the assumed correlation goes from {lo_rho:g} to {hi_rho:g}, the "
            f"overall R^2 moves from {num(g['r2'].iloc[0])} to {num(g['r2'].iloc[-1])} "
            f"(range {num(g['r2'].min())}–{num(g['r2'].max())}), the slope from "
            f"{num(g['slope'].iloc[0])} to {num(g['slope'].iloc[-1])}, and the naive "
            f"decision accuracy from {num(g['decision_accuracy'].iloc[0])} to "
            f"{num(g['decision_accuracy'].iloc[-1])}."
        )
        seg = table[(table["scope"] != "overall") & (table["proxy"] == proxy)]
        if len(seg):
            parts.append(
                f"Per segment, over all assumptions, R^2 ranges {num(seg['r2'].min())}–"
                f"{num(seg['r2'].max())}, the slope {num(seg['slope'].min())}–"
                f"{num(seg['slope'].max())} and the decision accuracy "
                f"{num(seg['decision_accuracy'].min())}–{num(seg['decision_accuracy'].max())}."
            )
    return " ".join(parts)


def sensitivity_doc(table: pd.DataFrame | None) -> dict[str, Any] | None:
    """The ``sensitivity`` section of report.json (None without a sensitivity analysis)."""
    if table is None:
        return None
    rows = [
        {c: jsonable(v) for c, v in zip(COLUMNS, values, strict=True)}
        for values in table[list(COLUMNS)].itertuples(index=False, name=None)
    ]
    for row in rows:
        row["converged"] = bool(row["converged"])
    return {"reading": sensitivity_reading(table), "rows": rows, "figure": "sensitivity"}


def plot_sensitivity(table: pd.DataFrame) -> tuple[Figure, np.ndarray]:
    """Each proxy's overall slope against the assumed correlation, with intervals
    (red: a fit that failed its diagnostics)."""
    overall = table[table["scope"] == "overall"]
    proxies = list(dict.fromkeys(overall["proxy"]))
    fig = new_figure(4.2 * len(proxies), 3.4)
    axes = np.atleast_1d(fig.subplots(1, len(proxies), squeeze=False)).ravel()
    for ax, proxy in zip(axes, proxies, strict=True):
        g = overall[overall["proxy"] == proxy].sort_values("correlation")
        colors = [MAIN if ok else ALERT for ok in g["converged"]]
        ax.vlines(g["correlation"], g["slope_lo"], g["slope_hi"], colors=colors, linewidth=2.5)
        ax.scatter(g["correlation"], g["slope"], c=colors, s=25, zorder=3)
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_xlabel("assumed noise correlation", fontsize=10)
        ax.set_ylabel(f"slope of the long-term effect on {proxy}", fontsize=10)
        ax.set_title(proxy, fontsize=11)
        ax.tick_params(labelsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle("Sensitivity: the fitted slope under each assumption (interval)", fontsize=11)
    return fig, axes


def sensitivity_section(doc: Mapping[str, Any]) -> Section | None:
    """The report's section: the reading, the figure and the overall rows."""
    s = doc.get("sensitivity")
    if s is None:
        return None
    overall = [r for r in s["rows"] if r["scope"] == "overall"]
    return Section(
        "sensitivity",
        "Sensitivity to the assumed noise correlation",
        (
            Para(
                "The model was refitted under each assumed correlation of the metrics' "
                "sampling noise, which per-arm summaries and estimates made elsewhere often "
                "do not carry. Conclusions that hold across the assumptions do not rest on it."
            ),
            Para(s["reading"]),
            *figure_blocks(doc, "sensitivity"),
            table(
                ("Correlation", "Proxy", "R^2", "Slope", "Naive decision accuracy", "Converged"),
                [
                    (
                        num(r["correlation"], 2),
                        r["proxy"],
                        interval(r["r2"], r["r2_lo"], r["r2_hi"], prob),
                        interval(r["slope"], r["slope_lo"], r["slope_hi"]),
                        interval(r["decision_accuracy"], r["decision_lo"], r["decision_hi"], prob),
                        "yes" if r["converged"] else "NO",
                    )
                    for r in overall
                ],
                caption="Overall (historical mix) conclusions under each assumption; the "
                "per-segment rows are in report.json.",
            ),
        ),
    )

"""Figures of past experiments: proxy against long-term estimates with the fitted
relation, and the posterior predictive check."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure
from scipy.special import ndtri

from proxyscope.reporting.plots.canvas import (
    ALERT,
    MAIN,
    SECOND,
    ci_label,
    new_figure,
    untrusted_note,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from proxyscope.analyses.relation import Relation

#: Line styles of flagged segments' relations (up to three per proxy).
FLAGGED_STYLES = ("--", ":", "-.")


def plot_relation(
    relation: Relation, outcome: str = "long-term effect", trustworthy: Any = True
) -> tuple[Figure, np.ndarray]:
    """Each past experiment's proxy estimate against its long-term estimate.

    One panel per proxy: the experiments (user-weighted over their cells) with
    ``ci`` error bars on both axes, the fitted relation of the historical mix with
    its ``ci`` band, and the relation in segments flagged fragile, dashed in red.
    """
    points, lines = relation.points, relation.lines
    proxies = list(dict.fromkeys(points["proxy"]))
    cols = min(len(proxies), 2)
    rows = int(np.ceil(len(proxies) / cols))
    fig = new_figure(5.2 * cols, 4.0 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    z = float(ndtri((1 + relation.ci) / 2))
    level = ci_label(relation.ci)
    for ax, proxy in zip(axes, proxies, strict=False):
        pts = points[points["proxy"] == proxy]
        ax.errorbar(
            pts["x"],
            pts["y"],
            xerr=z * pts["x_se"],
            yerr=z * pts["y_se"],
            fmt="o",
            color=SECOND,
            markersize=3.5,
            elinewidth=0.7,
            alpha=0.8,
            label=f"past experiments ({level} error bars)",
        )
        mine = lines[lines["proxy"] == proxy]
        for i, (scope, line) in enumerate(mine.groupby("scope", sort=False)):
            if scope == "historical mix":
                ax.fill_between(line["x"], line["lo"], line["hi"], color=MAIN, alpha=0.18)
                ax.plot(line["x"], line["mean"], color=MAIN, linewidth=2, label="fitted relation")
            else:
                style = FLAGGED_STYLES[(i - 1) % len(FLAGGED_STYLES)]
                ax.plot(
                    line["x"],
                    line["mean"],
                    style,
                    color=ALERT,
                    linewidth=1.6,
                    label=f"{scope} (flagged fragile)",
                )
        ax.axhline(0, color="black", linewidth=0.6)
        ax.axvline(0, color="black", linewidth=0.6)
        ax.set_xlabel(f"{proxy} effect (estimate)", fontsize=10)
        ax.set_ylabel(f"{outcome} effect (estimate)", fontsize=10)
        ax.set_title(proxy, fontsize=11)
        ax.tick_params(labelsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    for ax in axes[len(proxies) :]:
        ax.set_visible(False)
    fig.suptitle(f"Past experiments and the relation the model learned ({level} band)", fontsize=11)
    untrusted_note(fig, trustworthy)
    return fig, axes


def plot_predictive_check(relation: Relation, trustworthy: Any = True) -> tuple[Figure, Axes]:
    """Each past experiment's long-term estimate inside its posterior predictive interval
    given its proxy estimates (sorted by the prediction; outside ones in red)."""
    check = relation.check.sort_values("pred_mean").reset_index(drop=True)
    fig = new_figure(7.5, 3.8)
    ax = fig.subplots()
    x = np.arange(len(check))
    ax.vlines(x, check["pred_lo"], check["pred_hi"], color=MAIN, alpha=0.5, linewidth=3)
    colors = np.where(check["inside"], MAIN, ALERT)
    ax.scatter(x, check["y"], c=colors, s=14, zorder=3)
    ax.axhline(0, color="black", linewidth=0.6)
    level = ci_label(relation.ci)
    ax.set_xlabel("past experiments, sorted by their prediction", fontsize=10)
    ax.set_ylabel("long-term effect (estimate)", fontsize=10)
    ax.set_title(
        f"Posterior predictive check: {int(check['inside'].sum())} of {len(check)} inside "
        f"their {level} interval (red: outside)",
        fontsize=11,
    )
    ax.tick_params(labelsize=9)
    ax.grid(alpha=0.3)
    untrusted_note(fig, trustworthy)
    return fig, ax

"""Figures of a fit's analyses.

Fragility, composite weights, surrogacy, recommendations, transport to a
target population, and the model comparison.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from proxyscope.reporting.plots.canvas import (
    MAIN,
    SECOND,
    TARGET,
    ci_label,
    new_figure,
    point_ranges,
    untrusted_note,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from proxyscope.analyses.compare import Comparison
    from proxyscope.analyses.transport import TransportResult


# -- fragility -----------------------------------------------------------------


def plot_fragility(fragility: pd.DataFrame) -> tuple[Figure, Axes]:
    """Heatmap of flip probabilities, segment cells x proxies; flagged cells outlined.

    Parameters
    ----------
    fragility : DataFrame
        :func:`proxyscope.fragility` (``by="segment"``).
    """
    ci = ci_label(fragility.attrs.get("ci"))
    segments = list(dict.fromkeys(fragility["segment"]))
    proxies = list(dict.fromkeys(fragility["proxy"]))
    grid = fragility.pivot(index="segment", columns="proxy", values="flip_prob")
    grid = grid.loc[segments, proxies]
    flagged = fragility.pivot(index="segment", columns="proxy", values="flagged")
    flagged = flagged.loc[segments, proxies]
    values = grid.to_numpy(dtype=float)
    marks = flagged.to_numpy(dtype=bool)
    fig = new_figure(max(6.5, 1.5 * len(proxies) + 3.2), 0.34 * len(segments) + 2.1)
    ax = fig.subplots()
    image = ax.imshow(values, cmap="Reds", vmin=0.0, vmax=1.0, aspect="auto")
    for i in range(len(segments)):
        for j in range(len(proxies)):
            value = float(values[i, j])
            mark = bool(marks[i, j])
            text = f"{value:.2f}" + (" !" if mark else "")
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=7,
                color="white" if value > 0.6 else "black",
                fontweight="bold" if mark else "normal",
            )
            if mark:
                ax.add_patch(
                    Rectangle(
                        (j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=2.2
                    )
                )
    ax.set_xticks(range(len(proxies)))
    ax.set_xticklabels(proxies, fontsize=8, rotation=20, ha="right")
    ax.set_yticks(range(len(segments)))
    ax.set_yticklabels(segments, fontsize=8)
    bar = fig.colorbar(image, ax=ax, shrink=0.9)
    bar.set_label("P(flip): posterior mean", fontsize=8)
    threshold = fragility.attrs.get("threshold")
    rule = f"P(flip) >= {threshold:g} and" if isinstance(threshold, float) else ""
    ax.set_title(
        "Sign-flip probability of a new experiment\n"
        f"outlined '!': flagged ({rule} credibly above overall, {ci} interval)",
        fontsize=9,
    )
    untrusted_note(fig, fragility.attrs.get("trustworthy"))
    return fig, ax


# -- weights -------------------------------------------------------------------


def plot_weights(weights: pd.DataFrame) -> tuple[Figure, Axes]:
    """Global composite weights with intervals; segment weights as grey dots.

    Parameters
    ----------
    weights : DataFrame
        :func:`proxyscope.weights`.
    """
    ci = ci_label(weights.attrs.get("ci"))
    glob = weights[weights["scope"] == "global"]
    proxies = list(glob["proxy"])
    fig = new_figure(6.5, 0.45 * len(proxies) + 1.6)
    ax = fig.subplots()
    point_ranges(
        ax,
        proxies,
        glob["weight"].to_numpy(dtype=float),
        glob["weight_lo"].to_numpy(dtype=float),
        glob["weight_hi"].to_numpy(dtype=float),
    )
    seg = weights[weights["scope"] != "global"]
    if len(seg):
        y_of = {p: len(proxies) - 1 - i for i, p in enumerate(proxies)}
        ys = np.array([y_of[p] for p in seg["proxy"]], dtype=float) - 0.22
        ax.plot(
            seg["weight"].to_numpy(dtype=float),
            ys,
            "|",
            color=SECOND,
            markersize=7,
            label="segment means",
        )
        ax.legend(fontsize=7, loc="lower right")
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel(f"weight: posterior mean and {ci} equal-tailed interval", fontsize=8)
    ax.set_title("Adaptive weights of the composite proxy (historical mix)", fontsize=9)
    untrusted_note(fig, weights.attrs.get("trustworthy"))
    return fig, ax


# -- surrogacy -----------------------------------------------------------------


def plot_surrogacy(surrogacy: pd.DataFrame) -> tuple[Figure, np.ndarray]:
    """Trial-level R^2: overall, composite and each proxy; and per segment.

    Parameters
    ----------
    surrogacy : DataFrame
        :func:`proxyscope.surrogacy`.
    """
    ci = ci_label(surrogacy.attrs.get("ci"))
    head = surrogacy[surrogacy["segment"] == "overall"]
    per_seg = surrogacy[(surrogacy["segment"] != "overall") & (surrogacy["proxy"] == "all")]
    fig = new_figure(9.0, 0.3 * max(len(head), len(per_seg)) + 1.8)
    axes = np.asarray(fig.subplots(1, 2))
    labels = [
        "all proxies" if p == "all" else ("composite" if p == "composite" else p)
        for p in head["proxy"]
    ]
    colors = [MAIN if p in ("all", "composite") else SECOND for p in head["proxy"]]
    point_ranges(
        axes[0],
        labels,
        head["r2"].to_numpy(dtype=float),
        head["r2_lo"].to_numpy(dtype=float),
        head["r2_hi"].to_numpy(dtype=float),
        colors,
    )
    axes[0].set_title("Historical mix", fontsize=9)
    point_ranges(
        axes[1],
        list(per_seg["segment"]),
        per_seg["r2"].to_numpy(dtype=float),
        per_seg["r2_lo"].to_numpy(dtype=float),
        per_seg["r2_hi"].to_numpy(dtype=float),
    )
    axes[1].set_title("Per segment, all proxies jointly", fontsize=9)
    for ax in axes:
        ax.set_xlim(-0.02, 1.02)
        ax.tick_params(axis="x", labelsize=7)
    fig.supxlabel(f"trial-level R^2: posterior median and {ci} equal-tailed interval", fontsize=8)
    untrusted_note(fig, surrogacy.attrs.get("trustworthy"))
    return fig, axes


# -- recommendations -----------------------------------------------------------


def plot_recommendations(recommendations: pd.DataFrame) -> tuple[Figure, Axes]:
    """What each candidate's reading adds to decisions, best first.

    Per candidate, the share of new experiments decided right by its calibrated
    rule (filled, with its interval) and by the naive rule (open circle), against
    deciding with no proxy at all (the dashed line): the gap between the filled
    point and the line is the gain the ranking uses.

    Parameters
    ----------
    recommendations : DataFrame
        :func:`proxyscope.recommend`.
    """
    ci = ci_label(recommendations.attrs.get("ci"))
    labels = [
        f"{p}  (P(best) {b:.2f}{'' if c else '; no credible relation'})"
        for p, b, c in recommendations[["proxy", "p_best", "credible"]].values
    ]
    fig = new_figure(7.0, 0.45 * len(labels) + 1.8)
    ax = fig.subplots()
    colors = [MAIN if c else SECOND for c in recommendations["credible"]]
    point_ranges(
        ax,
        labels,
        recommendations["calibrated_accuracy"].to_numpy(dtype=float),
        recommendations["calibrated_lo"].to_numpy(dtype=float),
        recommendations["calibrated_hi"].to_numpy(dtype=float),
        colors,
    )
    y = np.arange(len(labels))[::-1]
    ax.plot(
        recommendations["decision_accuracy"].to_numpy(dtype=float),
        y,
        "o",
        markerfacecolor="none",
        color=SECOND,
        markersize=6,
        label="naive rule (ship when it moves the good way)",
    )
    none = float(recommendations["no_proxy_accuracy"].iloc[0])
    ax.axvline(none, color="black", linestyle="--", linewidth=0.9, label="no proxy")
    low = float(np.nanmin(recommendations[["calibrated_lo", "decision_accuracy"]].to_numpy()))
    ax.set_xlim(min(low, none) - 0.03, 1.01)
    ax.set_xlabel(f"share decided right (calibrated rule: mean and {ci} interval)", fontsize=9)
    fig.legend(fontsize=8, loc="outside lower center", ncols=2)
    ax.set_title("What each reading adds over deciding with no proxy", fontsize=10)
    untrusted_note(fig, recommendations.attrs.get("trustworthy"))
    return fig, ax


# -- transport -----------------------------------------------------------------


def _density(draws: np.ndarray, grid: np.ndarray) -> np.ndarray:
    from scipy.stats import gaussian_kde

    draws = np.asarray(draws, dtype=float)
    draws = draws[np.isfinite(draws)]
    if draws.size < 2 or np.ptp(draws) == 0:
        return np.zeros_like(grid)
    return np.asarray(gaussian_kde(draws)(grid))


def plot_transport(result: TransportResult, ci: float | None = None) -> tuple[Figure, Axes]:
    """Posterior predictive density of the target's long-term effect vs the historical mix.

    Parameters
    ----------
    result : TransportResult
        :func:`proxyscope.transport`.
    ci : float, optional
        Interval shaded under the target's density (default: the result's).
    """
    from proxyscope.core.draws import interval

    level = result.ci if ci is None else ci
    target = np.asarray(result.draws, dtype=float)
    hist = np.asarray(result.historical_draws, dtype=float)
    both = np.concatenate([target, hist])
    both = both[np.isfinite(both)]
    lo_all, hi_all = np.quantile(both, [0.002, 0.998])
    pad = 0.08 * (hi_all - lo_all or 1.0)
    grid = np.linspace(lo_all - pad, hi_all + pad, 400)
    fig = new_figure(7.0, 3.4)
    ax = fig.subplots()
    d_hist = _density(hist, grid)
    d_target = _density(target, grid)
    ax.plot(grid, d_hist, color=SECOND, linewidth=1.6, label="historical mix (new experiment)")
    kind = "conditional on proxy readings" if result.conditional else "new experiment"
    ax.plot(grid, d_target, color=TARGET, linewidth=2.0, label=f"target ({kind})")
    lo, hi = interval(target, level)
    inside = (grid >= float(lo)) & (grid <= float(hi))
    ax.fill_between(
        grid,
        0,
        d_target,
        where=inside,
        color=TARGET,
        alpha=0.2,
        label=f"target {ci_label(level)} equal-tailed interval",
    )
    ax.axvline(0.0, color="black", linewidth=0.7)
    ax.set_yticks([])
    ax.set_xlabel("long-term effect (original units)", fontsize=8)
    ax.set_ylabel("posterior predictive density", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="upper left")
    p_pos = float(np.mean(target > 0))
    ax.set_title(
        f"Transport to the target population: P(long-term effect > 0) = {p_pos:.2f}", fontsize=9
    )
    untrusted_note(fig, result.trustworthy)
    return fig, ax


# -- model comparison ----------------------------------------------------------


def plot_compare(comparison: Comparison) -> tuple[Figure, Axes]:
    """ELPD of each model with its standard error, and the difference to the best.

    Parameters
    ----------
    comparison : Comparison
        :func:`proxyscope.compare`.
    """
    table = comparison.table
    names = [str(n) for n in table.index]
    fig = new_figure(6.5, 0.5 * len(names) + 1.6)
    ax = fig.subplots()
    y = np.arange(len(names))[::-1]
    elpd = table["elpd_loo"].to_numpy(dtype=float)
    se = table["se"].to_numpy(dtype=float)
    ax.errorbar(elpd, y, xerr=se, fmt="o", color=MAIN, capsize=3, label="elpd +/- 1 SE")
    best = elpd[0]
    diff = table["elpd_diff"].to_numpy(dtype=float)
    dse = table["dse"].to_numpy(dtype=float)
    if len(names) > 1:
        ax.errorbar(
            best - diff[1:],
            y[1:] - 0.2,
            xerr=dse[1:],
            fmt="^",
            color=SECOND,
            capsize=3,
            label="difference to best +/- 1 SE",
        )
    ax.axvline(best, color="black", linestyle="--", linewidth=0.7)
    ax.set_yticks(y)
    ax.set_yticklabels(names, fontsize=8)
    ax.set_ylim(-0.8, len(names) - 0.3)
    ax.set_xlabel(f"expected log predictive density (LOO, {comparison.kind})", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    ax.legend(fontsize=7)
    ax.set_title("Model comparison (higher is better)", fontsize=9)
    return fig, ax

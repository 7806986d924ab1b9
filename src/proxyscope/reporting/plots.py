"""Figures of a fit and its analyses: each a function of results returning ``(fig, axes)``.

Every function builds a :class:`matplotlib.figure.Figure` directly on the Agg
canvas — never through :mod:`matplotlib.pyplot` — so it works on any machine
(no display), leaves pyplot's global figure registry untouched (nothing to
close, no "too many open figures"), and still shows in a notebook when it is
the last expression of a cell. Titles and axis labels state the level of
every interval drawn.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from proxyscope import dims
from proxyscope._format import pct

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from proxyscope.analyses.compare import Comparison
    from proxyscope.analyses.transport import TransportResult
    from proxyscope.model.fit import ProxyFit

#: Colours: the headline estimate, secondary estimates, a reference line, flagged cells.
MAIN = "#1f4e79"
SECOND = "#8c8c8c"
ALERT = "#b00020"
TARGET = "#c05621"

__all__ = [
    "figure_bytes",
    "plot_coefficients",
    "plot_compare",
    "plot_diagnostics",
    "plot_fragility",
    "plot_recommendations",
    "plot_surrogacy",
    "plot_transport",
    "plot_weights",
]


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _pct(ci: Any) -> str:
    """``0.9`` -> ``"90%"`` (``"?"`` when the level is unknown)."""
    try:
        return pct(ci)
    except (TypeError, ValueError):
        return "?"


def _untrusted_note(fig: Figure, trustworthy: Any) -> None:
    """Stamp a red line on a figure drawn from a fit that failed its diagnostics."""
    if trustworthy is False:
        fig.suptitle(
            "UNTRUSTWORTHY FIT: convergence diagnostics failed",
            color=ALERT,
            fontweight="bold",
            fontsize=10,
        )


def _point_ranges(
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


# -- diagnostics -------------------------------------------------------------


def _scalar_draws(fit: ProxyFit, group: str, parameter: str) -> np.ndarray | None:
    """(chain, draw) draws of one scalar entry named as in ``Diagnostics.table``."""
    name, _, rest = parameter.partition("[")
    try:
        var = fit.idata[group][name]
    except KeyError:
        return None
    other = [d for d in var.dims if d not in (dims.CHAIN, dims.DRAW)]
    arr = np.asarray(var.transpose(dims.CHAIN, dims.DRAW, *other).values, dtype=float)
    arr = arr.reshape(arr.shape[0], arr.shape[1], -1)
    if not other:
        return arr[:, :, 0] if not rest else None
    wanted = [p.strip() for p in rest.rstrip("]").split(",")]
    coords = [[str(v) for v in var.coords[d].values] for d in other]
    if len(wanted) != len(coords):
        return None
    try:
        index = np.ravel_multi_index(
            tuple(c.index(w) for c, w in zip(coords, wanted, strict=True)),
            tuple(len(c) for c in coords),
        )
    except ValueError:
        return None
    return arr[:, :, int(index)]


def diagnostic_parameters(fit: ProxyFit, n: int = 4) -> list[tuple[str, str]]:
    """The ``n`` parameters with the lowest bulk ESS, as (group, parameter)."""
    table = fit.diagnostics().table.sort_values("ess_bulk", kind="stable")
    return [(str(r.group), str(r.parameter)) for r in table.head(n).itertuples()]


def plot_diagnostics(
    fit: ProxyFit, parameters: Sequence[tuple[str, str]] | None = None, n: int = 4
) -> tuple[Figure, np.ndarray]:
    """Trace and rank plots of the worst-mixing parameters.

    Parameters
    ----------
    fit : ProxyFit
    parameters : sequence of (group, parameter), optional
        Entries of ``fit.diagnostics().table`` to show; default the ``n`` with
        the lowest bulk ESS (posterior or sampled group).
    n : int
        How many parameters when ``parameters`` is not given.

    Returns
    -------
    fig, axes : Figure and an (n, 2) array of Axes (trace, rank histogram).
    """
    chosen = list(parameters) if parameters is not None else diagnostic_parameters(fit, n)
    series = [(g, p, _scalar_draws(fit, g, p)) for g, p in chosen]
    shown = [(g, p, d) for g, p, d in series if d is not None]
    rows = max(len(shown), 1)
    fig = _figure(9.0, 1.7 * rows + 0.9)
    axes = np.asarray(fig.subplots(rows, 2, squeeze=False, width_ratios=[2.2, 1.0]))
    table = fit.diagnostics().table
    stats = {
        (str(g), str(p)): (float(r), float(e))
        for g, p, r, e in zip(
            table["group"],
            table["parameter"],
            table["r_hat"].to_numpy(dtype=float),
            table["ess_bulk"].to_numpy(dtype=float),
            strict=True,
        )
    }
    colors = [f"C{i}" for i in range(10)]
    for row, (group, param, draws) in enumerate(shown):
        assert draws is not None
        trace_ax, rank_ax = axes[row]
        n_chain, n_draw = draws.shape
        for c in range(n_chain):
            trace_ax.plot(draws[c], color=colors[c % 10], linewidth=0.6, alpha=0.8)
        label = param if group == "posterior" else f"{param} (sampled, std. units)"
        if (group, param) in stats:
            r_hat, ess = stats[group, param]
            label += f"\nR-hat {r_hat:.3f}, bulk ESS {ess:.0f}"
        trace_ax.set_title(label, fontsize=8, loc="left")
        trace_ax.tick_params(labelsize=7)
        ranks = pd.Series(draws.ravel()).rank(method="average").to_numpy().reshape(draws.shape)
        bins = np.linspace(0.5, draws.size + 0.5, min(20, max(n_draw // 10, 2)) + 1)
        for c in range(n_chain):
            counts, _ = np.histogram(ranks[c], bins=bins)
            rank_ax.stairs(counts, bins, color=colors[c % 10], linewidth=1.2, baseline=None)
        rank_ax.axhline(n_draw / (len(bins) - 1), color="black", linestyle="--", linewidth=0.8)
        rank_ax.set_yticks([])
        rank_ax.tick_params(labelsize=7)
        rank_ax.set_title("rank histogram per chain", fontsize=8, loc="left")
    if not shown:
        for ax in axes[0]:
            ax.set_axis_off()
        axes[0, 0].text(0.5, 0.5, "no parameters to show", ha="center", va="center")
    axes[-1, 0].set_xlabel("draw", fontsize=8)
    axes[-1, 1].set_xlabel("rank of draw (all chains pooled)", fontsize=8)
    _untrusted_note(fig, fit.trustworthy)
    return fig, axes


# -- coefficients --------------------------------------------------------------


def plot_coefficients(coefficients: pd.DataFrame) -> tuple[Figure, np.ndarray]:
    """Forest plot of segment coefficients: ``nu`` and each proxy's ``beta``.

    Parameters
    ----------
    coefficients : DataFrame
        :meth:`ProxyFit.summary` (columns ``scope``, ``parameter``, ``mean``,
        ``lo``, ``hi``; the first scope is the historical mix).

    Returns
    -------
    fig, axes : Figure and a 1-D array of Axes, one panel per parameter.
    """
    ci = _pct(coefficients.attrs.get("ci"))
    params = [p for p in coefficients["parameter"].unique() if p == "nu" or p.startswith("beta[")]
    scopes = list(dict.fromkeys(coefficients["scope"]))
    fig = _figure(max(6.5, 2.4 * len(params) + 1.8), 0.28 * len(scopes) + 1.6)
    axes = np.atleast_1d(np.asarray(fig.subplots(1, len(params), sharey=True, squeeze=False)[0]))
    colors = [MAIN] + [SECOND] * (len(scopes) - 1)
    for ax, param in zip(axes, params, strict=True):
        block = coefficients[coefficients["parameter"] == param].set_index("scope").loc[scopes]
        _point_ranges(
            ax,
            scopes,
            block["mean"].to_numpy(dtype=float),
            block["lo"].to_numpy(dtype=float),
            block["hi"].to_numpy(dtype=float),
            colors,
        )
        ax.axvline(0.0, color="black", linewidth=0.7)
        name = re.sub(r"^beta\[(.*)\]$", r"beta: \1", param)
        ax.set_title("nu: mean long-term effect" if param == "nu" else name, fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
        ax.tick_params(axis="x", labelsize=7)
    fig.supxlabel(f"posterior mean and {ci} equal-tailed interval (original units)", fontsize=8)
    _untrusted_note(fig, coefficients.attrs.get("trustworthy"))
    return fig, axes


# -- fragility -----------------------------------------------------------------


def plot_fragility(fragility: pd.DataFrame) -> tuple[Figure, Axes]:
    """Heatmap of flip probabilities, segment cells x proxies; flagged cells outlined.

    Parameters
    ----------
    fragility : DataFrame
        :func:`proxyscope.fragility` (``by="segment"``).
    """
    ci = _pct(fragility.attrs.get("ci"))
    segments = list(dict.fromkeys(fragility["segment"]))
    proxies = list(dict.fromkeys(fragility["proxy"]))
    grid = fragility.pivot(index="segment", columns="proxy", values="flip_prob")
    grid = grid.loc[segments, proxies]
    flagged = fragility.pivot(index="segment", columns="proxy", values="flagged")
    flagged = flagged.loc[segments, proxies]
    values = grid.to_numpy(dtype=float)
    marks = flagged.to_numpy(dtype=bool)
    fig = _figure(max(6.5, 1.5 * len(proxies) + 3.2), 0.34 * len(segments) + 2.1)
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
    _untrusted_note(fig, fragility.attrs.get("trustworthy"))
    return fig, ax


# -- weights -------------------------------------------------------------------


def plot_weights(weights: pd.DataFrame) -> tuple[Figure, Axes]:
    """Global composite weights with intervals; segment weights as grey dots.

    Parameters
    ----------
    weights : DataFrame
        :func:`proxyscope.weights`.
    """
    ci = _pct(weights.attrs.get("ci"))
    glob = weights[weights["scope"] == "global"]
    proxies = list(glob["proxy"])
    fig = _figure(6.5, 0.45 * len(proxies) + 1.6)
    ax = fig.subplots()
    _point_ranges(
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
    _untrusted_note(fig, weights.attrs.get("trustworthy"))
    return fig, ax


# -- surrogacy -----------------------------------------------------------------


def plot_surrogacy(surrogacy: pd.DataFrame) -> tuple[Figure, np.ndarray]:
    """Trial-level R^2: overall, composite and each proxy; and per segment.

    Parameters
    ----------
    surrogacy : DataFrame
        :func:`proxyscope.surrogacy`.
    """
    ci = _pct(surrogacy.attrs.get("ci"))
    head = surrogacy[surrogacy["segment"] == "overall"]
    per_seg = surrogacy[(surrogacy["segment"] != "overall") & (surrogacy["proxy"] == "all")]
    fig = _figure(9.0, 0.3 * max(len(head), len(per_seg)) + 1.8)
    axes = np.asarray(fig.subplots(1, 2))
    labels = [
        "all proxies" if p == "all" else ("composite" if p == "composite" else p)
        for p in head["proxy"]
    ]
    colors = [MAIN if p in ("all", "composite") else SECOND for p in head["proxy"]]
    _point_ranges(
        axes[0],
        labels,
        head["r2"].to_numpy(dtype=float),
        head["r2_lo"].to_numpy(dtype=float),
        head["r2_hi"].to_numpy(dtype=float),
        colors,
    )
    axes[0].set_title("Historical mix", fontsize=9)
    _point_ranges(
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
    _untrusted_note(fig, surrogacy.attrs.get("trustworthy"))
    return fig, axes


# -- recommendations -----------------------------------------------------------


def plot_recommendations(recommendations: pd.DataFrame) -> tuple[Figure, Axes]:
    """Decision accuracy of each candidate with intervals, best first.

    Parameters
    ----------
    recommendations : DataFrame
        :func:`proxyscope.recommend`.
    """
    ci = _pct(recommendations.attrs.get("ci"))
    labels = [f"{p}  (P(best) {b:.2f})" for p, b in recommendations[["proxy", "p_best"]].values]
    fig = _figure(6.5, 0.42 * len(labels) + 1.6)
    ax = fig.subplots()
    colors = [MAIN] + [SECOND] * (len(labels) - 1)
    _point_ranges(
        ax,
        labels,
        recommendations["decision_accuracy"].to_numpy(dtype=float),
        recommendations["decision_lo"].to_numpy(dtype=float),
        recommendations["decision_hi"].to_numpy(dtype=float),
        colors,
    )
    ax.axvline(0.5, color="black", linestyle="--", linewidth=0.8)
    ax.set_xlim(min(0.45, float(np.nanmin(recommendations["decision_lo"])) - 0.02), 1.01)
    ax.set_xlabel(
        f"decision accuracy P(same sign): posterior mean and {ci} equal-tailed interval",
        fontsize=8,
    )
    ax.set_title("Which proxy to decide on (historical mix); dashed: a coin flip", fontsize=9)
    _untrusted_note(fig, recommendations.attrs.get("trustworthy"))
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
    fig = _figure(7.0, 3.4)
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
        label=f"target {_pct(level)} equal-tailed interval",
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
    _untrusted_note(fig, result.trustworthy)
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
    fig = _figure(6.5, 0.5 * len(names) + 1.6)
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


# -- output --------------------------------------------------------------------


def figure_bytes(fig: Figure, fmt: str, dpi: int = 110) -> bytes:
    """The figure rendered as ``"png"`` or ``"svg"`` bytes (no timestamps: reproducible)."""
    buf = io.BytesIO()
    metadata: dict[str, Any] = {"Software": None} if fmt == "png" else {"Date": None}
    with matplotlib.rc_context({"svg.hashsalt": "proxyscope", "svg.fonttype": "path"}):
        fig.savefig(buf, format=fmt, dpi=dpi, metadata=metadata)
    return buf.getvalue()

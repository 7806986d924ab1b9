"""Figures of the fit itself: trace and rank plots of the worst-mixing parameters, coefficients."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from proxyscope import dims
from proxyscope.reporting.plots.canvas import (
    MAIN,
    SECOND,
    ci_label,
    new_figure,
    point_ranges,
    untrusted_note,
)

if TYPE_CHECKING:
    from proxyscope.model.fit import ProxyFit


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
    fig = new_figure(9.0, 1.7 * rows + 0.9)
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
    untrusted_note(fig, fit.trustworthy)
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
    ci = ci_label(coefficients.attrs.get("ci"))
    params = [p for p in coefficients["parameter"].unique() if p == "nu" or p.startswith("beta[")]
    scopes = list(dict.fromkeys(coefficients["scope"]))
    fig = new_figure(max(6.5, 2.4 * len(params) + 1.8), 0.28 * len(scopes) + 1.6)
    axes = np.atleast_1d(np.asarray(fig.subplots(1, len(params), sharey=True, squeeze=False)[0]))
    colors = [MAIN] + [SECOND] * (len(scopes) - 1)
    for ax, param in zip(axes, params, strict=True):
        block = coefficients[coefficients["parameter"] == param].set_index("scope").loc[scopes]
        point_ranges(
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
    untrusted_note(fig, coefficients.attrs.get("trustworthy"))
    return fig, axes

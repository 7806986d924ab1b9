"""Figures of a fit and its analyses: each a function of results returning ``(fig, axes)``.

Every function builds a :class:`matplotlib.figure.Figure` directly on the Agg
canvas — never through :mod:`matplotlib.pyplot` — so it works on any machine
(no display), leaves pyplot's global figure registry untouched (nothing to
close, no "too many open figures"), and still shows in a notebook when it is
the last expression of a cell. Titles and axis labels state the level of
every interval drawn.

The figures of the fit itself are in :mod:`.fit`, those of its analyses in
:mod:`.analyses`, those of past experiments against the learned relation in
:mod:`.relation`, the relation over time in :mod:`.stability`, the shared
canvas, colours and :func:`figure_bytes` in :mod:`.canvas`; every public name
is re-exported here.
"""

from __future__ import annotations

from proxyscope.reporting.plots.analyses import (
    plot_compare,
    plot_fragility,
    plot_recommendations,
    plot_surrogacy,
    plot_transport,
    plot_weights,
)
from proxyscope.reporting.plots.canvas import ALERT as ALERT
from proxyscope.reporting.plots.canvas import MAIN as MAIN
from proxyscope.reporting.plots.canvas import SECOND as SECOND
from proxyscope.reporting.plots.canvas import TARGET as TARGET
from proxyscope.reporting.plots.canvas import figure_bytes
from proxyscope.reporting.plots.fit import (
    diagnostic_parameters as diagnostic_parameters,
)
from proxyscope.reporting.plots.fit import plot_coefficients, plot_diagnostics
from proxyscope.reporting.plots.relation import plot_predictive_check, plot_relation
from proxyscope.reporting.plots.stability import plot_stability

__all__ = [
    "figure_bytes",
    "plot_coefficients",
    "plot_compare",
    "plot_diagnostics",
    "plot_fragility",
    "plot_predictive_check",
    "plot_recommendations",
    "plot_relation",
    "plot_stability",
    "plot_surrogacy",
    "plot_transport",
    "plot_weights",
]

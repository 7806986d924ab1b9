"""``proxyscope.report()``: run a fit's analyses; write report.md, .json, .html and figures."""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from proxyscope._format import pct
from proxyscope._io import write_bytes_atomic, write_text_atomic
from proxyscope.core.draws import check_ci
from proxyscope.errors import ConvergenceWarning, DataTypeError, ParameterError
from proxyscope.model.advice import SURFACES
from proxyscope.options import DEFAULT_CI
from proxyscope.reporting import plots
from proxyscope.reporting.content import sections
from proxyscope.reporting.designs import designs_doc
from proxyscope.reporting.document import build_document
from proxyscope.reporting.given import (
    check_compare,
    check_given,
    most_fragile,
    resolve_compare,
    resolve_transport,
)
from proxyscope.reporting.past_experiments import past_experiments_doc
from proxyscope.reporting.render_html import render_html
from proxyscope.reporting.render_md import render_markdown
from proxyscope.reporting.sensitivity import plot_sensitivity, sensitivity_doc
from proxyscope.reporting.stability import periods_doc, resolve_stability, stability_doc

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from proxyscope.model.fit import ProxyFit

#: Every figure the report can write (transport and compare only when given).
FIGURES = (
    "relation",
    "predictive_check",
    "diagnostics",
    "coefficients",
    "fragility",
    "weights",
    "surrogacy",
    "recommendations",
    "transport",
    "compare",
    "sensitivity",
    "stability",
)
FIGURE_DIR = "figures"


@dataclasses.dataclass(frozen=True)
class ReportFiles:
    """What :func:`report` wrote.

    Attributes
    ----------
    out : Path
        The output directory.
    markdown, json, html : Path
        ``report.md``, ``report.json``, ``report.html``.
    figures : dict
        Figure name -> {"png": Path, "svg": Path}.
    trustworthy : bool
        False when the report carries the untrustworthy-fit warning.
    document : dict
        The contents of ``report.json``.
    """

    out: Path
    markdown: Path
    json: Path
    html: Path
    figures: dict[str, dict[str, Path]]
    trustworthy: bool
    document: dict[str, Any] = dataclasses.field(repr=False)

    def paths(self) -> list[Path]:
        """Every file written."""
        files = [self.markdown, self.json, self.html]
        for entry in self.figures.values():
            files += [entry["png"], entry["svg"]]
        return files


def report(
    fit: ProxyFit,
    out: str | os.PathLike[str] = "report/",
    transport: Any = None,
    compare: Any = None,
    ci: float = DEFAULT_CI,
    title: str | None = None,
    *,
    random_seed: int | None = None,
    surface: str = "python",
    fragility: pd.DataFrame | None = None,
    surrogacy: pd.DataFrame | None = None,
    weights: pd.DataFrame | None = None,
    recommendations: pd.DataFrame | None = None,
    sensitivity: pd.DataFrame | None = None,
    designs: Any = None,
    period: str | None = None,
    stability: Any = None,
) -> ReportFiles:
    """Write the posterior report of a fit: report.md, report.json, report.html and figures.

    Parameters
    ----------
    fit : ProxyFit
        The fitted model.
    out : path
        Output directory (created if needed). Files are written atomically;
        figures go to ``out/figures/`` as PNG and SVG.
    transport : TransportResult or target, optional
        A :func:`proxyscope.transport` result, or a target population in any
        form it accepts (then it is computed here with ``ci`` and
        ``random_seed``). Adds the transport section and figure.
    compare : Comparison or mapping of name to ProxyFit, optional
        A :func:`proxyscope.compare` result, or fits to compare (computed here;
        exact refits may take minutes). Adds the LOO comparison section.
    ci : float
        Interval level of every analysis (default 0.9: 90% equal-tailed).
    title : str, optional
        Default "proxyscope report: <outcome>".
    random_seed : int, optional
        Seed of the transport draws when ``transport`` is a target.
    surface : {"python", "cli", "spec"}
        The syntax the diagnostics' advice is written in (the command line
        and spec runs pass theirs).
    fragility, surrogacy, weights, recommendations : DataFrame, optional
        What :func:`proxyscope.fragility`, :func:`~proxyscope.surrogacy`,
        :func:`~proxyscope.weights` and :func:`~proxyscope.recommend` returned
        for this fit at the same ``ci``: the report shows those (with the
        ``threshold`` and ``probability`` they were computed at) instead of
        computing them again at the defaults.
    sensitivity : DataFrame, optional
        A spec run's sensitivity analysis (the conclusions refitted under each
        assumed noise correlation, :func:`proxyscope.run.sensitivity.run_sensitivity`):
        adds its section and figure.
    designs : DesignReport, optional
        A :func:`proxyscope.design_bias` result for this fit (e.g. with its
        refits). By default, when the fit's cells are not all user-randomized
        A/B tests, it is computed here without refits; the report then has a
        section on designs.
    period : str, optional
        For a fit with time (``ProxyModel(time=...)``): the period every analysis
        reads (one of ``fit.info.periods``; default the latest, "what holds now").
        Every analysis section then says which period it describes; the results
        given above must describe the same one.
    stability : Stability, optional
        A :func:`proxyscope.stability` result for this fit at the same ``ci``. By
        default, for a fit with time over at least two periods, it is computed here
        (``random_seed`` seeds its forecast); the report then has a section
        "Stability over time" with its figure. A static fit has none.

    Returns
    -------
    ReportFiles
        The paths written and the JSON document.

    Warns
    -----
    ConvergenceWarning
        Once, when the fit failed its convergence diagnostics; the report then
        carries an unmistakable warning on every surface.
    """
    from proxyscope.analyses.designs import DesignReport, design_bias
    from proxyscope.analyses.fragility import fragility as run_fragility
    from proxyscope.analyses.recommend import recommend as run_recommend
    from proxyscope.analyses.relation import past_experiments
    from proxyscope.analyses.surrogacy import surrogacy as run_surrogacy
    from proxyscope.analyses.weights import weights as run_weights
    from proxyscope.model.fit import ProxyFit
    from proxyscope.model.periods import resolve_period

    if not isinstance(fit, ProxyFit):
        raise DataTypeError(
            f"report expects a proxyscope.ProxyFit (from ProxyModel.fit or proxyscope.load); "
            f"got {type(fit).__name__}."
        )
    ci = check_ci(ci, "report")
    if title is not None and not isinstance(title, str):
        raise DataTypeError(f"The 'title' parameter of report must be a string; got {title!r}.")
    if not isinstance(out, (str, os.PathLike)):
        raise DataTypeError(f"The 'out' parameter of report must be a path; got {out!r}.")
    check_compare(compare)
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise ParameterError(
            f"The 'out' parameter of report must be a directory; {out_dir} is a file."
        )

    if surface not in SURFACES:
        raise ParameterError(
            f"The 'surface' parameter of report must be one of {list(SURFACES)}; got {surface!r}."
        )
    period = resolve_period(fit, period, "report")
    diag = fit.diagnostics().for_surface(surface)
    trustworthy = bool(fit.trustworthy and diag.passed)
    with warnings.catch_warnings():
        # Each analysis repeats the convergence warning; the report says it once, below.
        warnings.simplefilter("ignore", ConvergenceWarning)
        coefficients = fit.summary(ci=ci)
        given = {
            "fragility": fragility,
            "surrogacy": surrogacy,
            "weights": weights,
            "recommendations": recommendations,
        }
        for name, frame in given.items():
            check_given(name, frame, ci, period)
        at: dict[str, Any] = {"ci": ci, "period": period}
        frag = fragility if fragility is not None else run_fragility(fit, warn=False, **at)
        surr = surrogacy if surrogacy is not None else run_surrogacy(fit, **at)
        wts = weights if weights is not None else run_weights(fit, **at)
        rec = recommendations if recommendations is not None else run_recommend(fit, **at)
        trans = resolve_transport(fit, transport, ci, random_seed, period)
        comp = resolve_compare(compare)
        rel = past_experiments(fit, flagged=most_fragile(frag), **at)
        drift = resolve_stability(fit, stability, ci, random_seed)
        if designs is None and fit.effects.designs != ["ab"]:
            designs = design_bias(fit, refit=False, ci=ci)
    if designs is not None and not isinstance(designs, DesignReport):
        raise DataTypeError(
            "The 'designs' parameter of report must be what proxyscope.design_bias returned; "
            f"got {type(designs).__name__}."
        )
    if not trustworthy:
        warnings.warn(
            "This report is built from a fit that FAILED its convergence diagnostics; every "
            "surface carries an UNTRUSTWORTHY warning. " + diag.summary(),
            ConvergenceWarning,
            stacklevel=2,
        )

    level = pct(ci)
    makers: dict[str, tuple[str, Callable[[], tuple[Figure, Any]]]] = {
        "relation": (
            f"Past experiments' proxy against long-term estimates ({level} error bars), the "
            f"fitted relation with its {level} band, and flagged segments' relations",
            lambda: plots.plot_relation(rel, fit.outcome, trustworthy),
        ),
        "predictive_check": (
            f"Posterior predictive check: each past experiment's long-term estimate and its "
            f"{level} predictive interval given its proxy estimates",
            lambda: plots.plot_predictive_check(rel, trustworthy),
        ),
        "diagnostics": (
            "Trace and rank plots of the worst-mixing parameters (lowest bulk ESS)",
            lambda: plots.plot_diagnostics(fit),
        ),
        "coefficients": (
            f"Segment coefficients: nu and beta per proxy, posterior mean and {level} interval",
            lambda: plots.plot_coefficients(coefficients),
        ),
        "fragility": (
            "Sign-flip probability per segment cell and proxy (flagged cells outlined)",
            lambda: plots.plot_fragility(frag),
        ),
        "weights": (
            f"Composite weights with {level} intervals",
            lambda: plots.plot_weights(wts),
        ),
        "surrogacy": (
            f"Trial-level R^2 with {level} intervals",
            lambda: plots.plot_surrogacy(surr),
        ),
        "recommendations": (
            f"Share of new experiments each candidate decides right: calibrated rule with "
            f"{level} interval, naive rule, and no proxy (dashed)",
            lambda: plots.plot_recommendations(rec),
        ),
    }
    if trans is not None:
        result = trans
        makers["transport"] = (
            f"Posterior predictive long-term effect: target vs historical mix ({level} "
            "interval shaded)",
            lambda: plots.plot_transport(result, ci=ci),
        )
    if sensitivity is not None:
        sens = sensitivity
        makers["sensitivity"] = (
            f"Fitted slopes under each assumed noise correlation ({level} intervals)",
            lambda: plot_sensitivity(sens),
        )
    if drift is not None:
        moving = drift
        makers["stability"] = (
            f"Each proxy's slope on {fit.outcome} per period: posterior mean and {level} "
            "interval; dashed, the forecast one period ahead",
            lambda: plots.plot_stability(moving, trustworthy),
        )
    if comp is not None:
        cmp = comp
        makers["compare"] = (
            "LOO model comparison: elpd and difference to the best, +/- 1 SE",
            lambda: plots.plot_compare(cmp),
        )

    fig_dir = out_dir / FIGURE_DIR
    figure_paths: dict[str, dict[str, Path]] = {}
    figure_doc: dict[str, dict[str, str]] = {}
    png_bytes: dict[str, bytes] = {}
    for name, (caption, make) in makers.items():
        fig, _ = make()
        png = plots.figure_bytes(fig, "png")
        svg = plots.figure_bytes(fig, "svg")
        png_bytes[name] = png
        figure_paths[name] = {
            "png": write_bytes_atomic(fig_dir / f"{name}.png", png),
            "svg": write_bytes_atomic(fig_dir / f"{name}.svg", svg),
        }
        figure_doc[name] = {
            "png": f"{FIGURE_DIR}/{name}.png",
            "svg": f"{FIGURE_DIR}/{name}.svg",
            "title": caption,
        }
    # A figure left from an earlier report into the same directory would mislead.
    for name in FIGURES:
        if name not in makers:
            for ext in ("png", "svg"):
                (fig_dir / f"{name}.{ext}").unlink(missing_ok=True)

    document = build_document(
        fit,
        title=title if title is not None else f"proxyscope report: {fit.outcome}",
        ci=ci,
        trustworthy=trustworthy,
        diag=diag,
        coefficients=coefficients,
        surrogacy=surr,
        fragility=frag,
        weights=wts,
        recommendations=rec,
        transport=trans,
        compare=comp,
        figures=figure_doc,
    )
    document["past_experiments"] = past_experiments_doc(rel)
    document["sensitivity"] = sensitivity_doc(sensitivity)
    document["designs"] = designs_doc(designs, fit.effects)
    document["stability"] = stability_doc(drift, period)
    if fit.info.periods:  # a fit with time: its periods (a static fit's section stays)
        document["model"]["periods"] = periods_doc(fit)
    parts = sections(document)
    json_path = write_text_atomic(
        out_dir / "report.json", json.dumps(document, indent=2, allow_nan=False) + "\n"
    )
    md_path = write_text_atomic(out_dir / "report.md", render_markdown(document, parts))
    html_path = write_text_atomic(out_dir / "report.html", render_html(document, png_bytes, parts))
    return ReportFiles(
        out=out_dir,
        markdown=md_path,
        json=json_path,
        html=html_path,
        figures=figure_paths,
        trustworthy=trustworthy,
        document=document,
    )

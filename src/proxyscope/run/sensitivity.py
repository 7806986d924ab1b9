"""The sensitivity analysis (``[analysis.sensitivity]``): refit under each assumed
noise correlation and tabulate the conclusions that move."""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from proxyscope import dims
from proxyscope.analyses.fragility import fragility
from proxyscope.analyses.recommend import recommend
from proxyscope.analyses.surrogacy import surrogacy
from proxyscope.run.fit import fit_effects
from proxyscope.run.load import load_effects
from proxyscope.run.progress import Log, quiet
from proxyscope.spec import ModelSpec

if TYPE_CHECKING:
    from proxyscope.model.fit import ProxyFit


def run_sensitivity(
    spec: ModelSpec,
    fit: ProxyFit,
    *,
    data: str | os.PathLike[str] | None,
    progress: bool,
    log: Log = quiet,
) -> tuple[pd.DataFrame, list[str]]:
    """Refit under each assumed noise correlation; tabulate what moves.

    Each refit gives every source that assumes a correlation (``[data]`` and the
    ``[[data.extra]]`` sources: per-arm summaries, ASOS, estimates with
    ``correlation``) the grid's value; sources with estimated covariances keep
    them. The main fit is the row of the correlation the spec states, when
    every such source states the same one.

    Returns one row per (correlation, scope, proxy): the proxy's trial-level
    R^2, its slope (beta, long-term effect per unit of proxy effect) and its
    decision accuracy (for a segment: one minus the flip probability of a new
    experiment there), each with its interval, and whether the fit passed.
    """
    sens = spec.analysis.sensitivity
    assert sens is not None
    base = base_correlation(spec)
    rows: list[pd.DataFrame] = []
    failed: list[str] = []
    for rho in sorted({*sens.correlations, *([] if base is None else [base])}):
        if base is not None and np.isclose(rho, base):
            this = fit
        else:
            loaded = load_effects(spec, data=data, correlation=rho, log=log)
            this = fit_effects(
                spec, loaded.effects, progress=progress, log=log, label=f"correlation {rho:g}"
            )
            if not this.trustworthy:
                failed.append(f"sensitivity (correlation {rho:g})")
        rows.append(conclusions(this, spec, rho))
    return pd.concat(rows, ignore_index=True), failed


def base_correlation(spec: ModelSpec) -> float | None:
    """The correlation the main fit assumed, when its sources state one value (else None)."""
    sources = [spec.data, *(x.data for x in spec.data.extra)]
    stated = {d.correlation for d in sources if d.takes_correlation}
    return next(iter(stated)) if len(stated) == 1 else None


def conclusions(fit: ProxyFit, spec: ModelSpec, correlation: float) -> pd.DataFrame:
    """Surrogacy R^2, slope and decision accuracy per scope and proxy of one fit."""
    a = spec.analysis
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sur = surrogacy(fit, ci=a.ci, probability=a.probability)
        coef = fit.summary(ci=a.ci)
        rec = recommend(fit, ci=a.ci, probability=a.probability, threshold=a.threshold)
        frag = fragility(fit, ci=a.ci, threshold=a.threshold, warn=False)
    rows = []
    # Without segment columns the one segment is the overall population.
    labels = list(fit.structure.labels) if fit.segments else []
    # One segment column: say which ("metric_id 3", not "3").
    shown = {lab: f"{fit.segments[0]} {lab}" for lab in labels} if len(fit.segments) == 1 else {}
    if labels and fit.pooling == "complete":
        # Every segment has the same parameters: one row says it for all.
        what = fit.segments[0] if len(fit.segments) == 1 else "segment"
        shown = {labels[0]: f"each {what} (complete pooling)"}
        labels = labels[:1]
    for scope in ["overall", *labels]:
        for proxy in fit.proxies:
            if scope == "overall":
                r2 = sur[(sur["segment"] == "overall") & (sur["proxy"] == proxy)].iloc[0]
                b = coef[
                    (coef["scope"] == dims.HISTORICAL_MIX) & (coef["parameter"] == f"beta[{proxy}]")
                ]
                acc = rec[rec["proxy"] == proxy].iloc[0]
                dec = (acc["decision_accuracy"], acc["decision_lo"], acc["decision_hi"])
            else:
                r2 = sur[(sur["segment"] == scope) & (sur["proxy"] == proxy)].iloc[0]
                b = coef[(coef["scope"] == scope) & (coef["parameter"] == f"beta[{proxy}]")]
                fl = frag[(frag["segment"] == scope) & (frag["proxy"] == proxy)].iloc[0]
                dec = (1 - fl["flip_prob"], 1 - fl["flip_hi"], 1 - fl["flip_lo"])
            slope = b.iloc[0]
            rows.append(
                {
                    "correlation": float(correlation),
                    "scope": shown.get(scope, scope),
                    "proxy": proxy,
                    "r2": float(r2["r2"]),
                    "r2_lo": float(r2["r2_lo"]),
                    "r2_hi": float(r2["r2_hi"]),
                    "slope": float(slope["mean"]),
                    "slope_lo": float(slope["lo"]),
                    "slope_hi": float(slope["hi"]),
                    "decision_accuracy": float(dec[0]),
                    "decision_lo": float(dec[1]),
                    "decision_hi": float(dec[2]),
                    "converged": bool(fit.trustworthy),
                }
            )
    return pd.DataFrame(rows)

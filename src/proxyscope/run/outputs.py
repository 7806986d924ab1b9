"""The files a run writes beside its fits: the report, ``run.json`` and ``run.md``, and
for a model over time the stability tables (``stability_paths.csv``,
``stability_changes.csv``) and the rolling backtest's (``rolling_backtest.csv``,
``rolling_predictions.csv``)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from proxyscope._io import write_text_atomic
from proxyscope.errors import ConvergenceWarning
from proxyscope.options import DEFAULT_CI
from proxyscope.reporting import report
from proxyscope.run.progress import Log, quiet
from proxyscope.run.result import RunResult, summary_doc
from proxyscope.run.text import run_markdown

if TYPE_CHECKING:
    from proxyscope.analyses.stability import Stability
    from proxyscope.model.fit import ProxyFit


def write_report(result: RunResult, *, log: Log = quiet) -> None:
    """Call :func:`proxyscope.report` for the run's main fit (see :func:`report_fit`)."""
    comparison = result.comparisons.get("pooling") or result.comparisons.get("proxy_sets")
    result.report_dir = report_fit(
        result.fit,
        result.out,
        transport=result.transport,
        compare=comparison,
        title=result.spec.report.title,
        ci=result.spec.analysis.ci,
        log=log,
        period=result.period,
        results={
            "fragility": result.fragility,
            "surrogacy": result.surrogacy,
            "weights": result.weights,
            "recommendations": result.recommendations,
            "sensitivity": result.sensitivity,
        },
        stability=result.stability,
    )


def report_fit(
    fit: ProxyFit,
    out: Path,
    *,
    transport: Any = None,
    compare: Any = None,
    title: str | None = None,
    ci: float = DEFAULT_CI,
    log: Log = quiet,
    surface: str = "spec",
    results: Mapping[str, pd.DataFrame | None] | None = None,
    period: str | None = None,
    stability: Stability | None = None,
    random_seed: int | None = None,
) -> Path:
    """Write the report of ``fit`` into ``out`` with :func:`proxyscope.report`
    (its diagnostics' advice in the syntax of ``surface``; the analyses in
    ``results``, as the run computed them, instead of computing them again; for a
    fit with time, the analyses read ``period`` and the stability section shows
    ``stability``, both computed by the report when not given)."""
    given = dict(results or {})
    log(f"writing the report to {out}")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        report(
            fit,
            out=out,
            transport=transport,
            compare=compare,
            ci=ci,
            title=title,
            surface=surface,
            fragility=given.get("fragility"),
            surrogacy=given.get("surrogacy"),
            weights=given.get("weights"),
            recommendations=given.get("recommendations"),
            sensitivity=given.get("sensitivity"),
            period=period,
            stability=stability,
            random_seed=random_seed,
        )
    return out


def write_stability(result: RunResult) -> dict[str, Path]:
    """The tables of a model over time into the run's directory: ``stability_paths.csv``
    and ``stability_changes.csv`` (:func:`proxyscope.stability`), ``rolling_backtest.csv``
    and ``rolling_predictions.csv`` (the rolling backtest); nothing for a static model."""
    tables: list[tuple[str, pd.DataFrame]] = []
    if result.stability is not None:
        tables += [
            ("stability_paths", result.stability.paths),
            ("stability_changes", result.stability.changes),
        ]
    if result.rolling is not None:
        tables += [
            ("rolling_backtest", result.rolling.table),
            ("rolling_predictions", result.rolling.predictions),
        ]
    return {
        name: write_text_atomic(result.out / f"{name}.csv", frame.to_csv(index=False))
        for name, frame in tables
    }


def write_summary(result: RunResult) -> tuple[Path, Path]:
    """Write ``run.json`` and ``run.md`` into the run's directory."""

    doc = summary_doc(result)
    j = result.out / "run.json"
    j.write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
    m = result.out / "run.md"
    m.write_text(run_markdown(result), encoding="utf-8")
    return j, m

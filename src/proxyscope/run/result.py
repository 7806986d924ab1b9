"""What a run produced (:class:`RunResult`) and the content of its ``run.json``."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from proxyscope._format import json_value
from proxyscope.spec import ModelSpec

if TYPE_CHECKING:
    from proxyscope.analyses.backtest.rolling_result import RollingBacktest
    from proxyscope.analyses.compare import Comparison
    from proxyscope.analyses.stability import Stability
    from proxyscope.analyses.transport import TransportResult
    from proxyscope.data.cells import CellEffects
    from proxyscope.model.diagnostics import Diagnostics
    from proxyscope.model.fit import ProxyFit


@dataclasses.dataclass
class RunResult:
    """Everything a run produced (the CLI prints from it). For a model over time,
    ``period`` is the period the analyses describe and ``stability`` what
    :func:`proxyscope.stability` found (both None for a static model); ``rolling`` the
    rolling backtest ``[analysis.rolling_backtest]`` asked for."""

    spec: ModelSpec
    out: Path
    effects: CellEffects
    fit: ProxyFit
    diagnostics: Diagnostics
    coefficients: pd.DataFrame
    fragility: pd.DataFrame
    surrogacy: pd.DataFrame
    weights: pd.DataFrame
    recommendations: pd.DataFrame
    transport: TransportResult | None = None
    transport_truth: float | None = None
    comparisons: dict[str, Comparison] = dataclasses.field(default_factory=dict)
    sensitivity: pd.DataFrame | None = None
    stability: Stability | None = None
    period: str | None = None
    rolling: RollingBacktest | None = None
    failed_fits: list[str] = dataclasses.field(default_factory=list)
    report_dir: Path | None = None
    files: dict[str, Path] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        """Whether every fit of the run passed its diagnostics."""
        return not self.failed_fits


def records(frame: pd.DataFrame | None) -> list[dict[str, Any]] | None:
    """A DataFrame as JSON-friendly records (NaN → null); None stays None."""
    if frame is None:
        return None
    clean = frame.replace({np.nan: None})
    rows = clean.to_dict(orient="records")
    return [{str(k): json_value(v) for k, v in row.items()} for row in rows]


def summary_doc(result: RunResult) -> dict[str, Any]:
    """The content of ``run.json``."""
    spec = result.spec
    fit = result.fit
    doc: dict[str, Any] = {
        "proxyscope_run": 1,
        "spec": spec.to_dict(),
        "citation": spec.citation,
        "data": {
            "source": str(result.files.get("users") or spec.data_path() or "simulated"),
            "n_cells": result.effects.n_cells,
            "n_experiments": len(result.effects.experiments),
            "n_dropped": len(result.effects.dropped),
            "assumed_correlation": result.effects.assumed_correlation,
            "designs": {d: int((result.effects.design == d).sum()) for d in result.effects.designs},
            "extra_sources": [str(spec.resolve(x.data.path or "")) for x in spec.data.extra],
        },
        "fit": {
            "pooling": fit.pooling,
            "sampler": fit.sampler,
            "trustworthy": fit.trustworthy,
        },
        "diagnostics": result.diagnostics.to_dict(),
        "diagnostics_summary": result.diagnostics.summary(),
        "all_fits_passed": result.passed,
        "failed_fits": result.failed_fits,
        "ci": spec.analysis.ci,
        "coefficients": records(result.coefficients),
        "surrogacy": records(result.surrogacy),
        "fragility_flagged": records(
            result.fragility[result.fragility["flagged"]].drop(columns=["warning"], errors="ignore")
        ),
        "weights": records(result.weights),
        "recommendations": records(result.recommendations),
        "transport": None,
        "comparisons": {
            k: {
                "kind": c.kind,
                "table": records(c.table.reset_index(names="model")),
                "reading": c.reading(),
            }
            for k, c in result.comparisons.items()
        },
        "sensitivity": records(result.sensitivity),
        "report_dir": None if result.report_dir is None else str(result.report_dir),
        "files": {k: str(v) for k, v in result.files.items()},
        "seconds": round(result.seconds, 1),
    }
    if result.stability is not None or result.period is not None:
        # Only for a model over time, so a static run's run.json stays as it was.
        doc["periods"] = list(result.fit.info.periods)
        doc["period"] = result.period
        doc["stability"] = None if result.stability is None else stability_doc(result.stability)
    if result.rolling is not None:
        rb = result.rolling
        doc["rolling_backtest"] = {
            "origins": list(rb.origins),
            "reference": rb.reference,
            "ci": rb.ci,
            "verdict": rb.verdict(),
            "summary": records(rb.score("model")),
            "table": records(rb.table),
        }
    if result.transport is not None:
        tr = result.transport
        assert spec.analysis.transport is not None
        doc["transport"] = {
            "name": spec.analysis.transport.name,
            "summary": records(tr.summary()),
            "target": records(tr.target.astype({"extrapolated": bool})),
            "simulated_truth": result.transport_truth,
        }
    return doc


def stability_doc(result: Stability) -> dict[str, Any]:
    """run.json's ``stability``: the readings and both tables (JSON-friendly records)."""
    return {
        "ci": result.ci,
        "probability": result.probability,
        "readings": list(result.readings),
        "changes": records(result.changes),
        "paths": records(result.paths),
    }

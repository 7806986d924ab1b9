"""The report as one JSON-ready document: every number the three surfaces show.

``report.json`` is this document; ``report.md`` and ``report.html`` are
renderings of it, so the surfaces cannot disagree. Its layout is fixed by the
JSON Schema shipped next to this module (``schema/report.schema.json``,
:func:`load_schema`); see the :mod:`proxyscope.reporting` docstring for a tour.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from proxyscope import dims
from proxyscope._version import __version__

if TYPE_CHECKING:
    from proxyscope.analyses.compare import Comparison
    from proxyscope.analyses.transport import TransportResult
    from proxyscope.model.diagnostics import Diagnostics
    from proxyscope.model.fit import ProxyFit

#: Version of the report layout (semantic: a major bump breaks readers).
SCHEMA_VERSION = "1.5.0"
#: ``$id`` of the schema: a URN, never fetched.
SCHEMA_ID = f"urn:proxyscope:schema:report:{SCHEMA_VERSION}"
#: How many of the worst-mixing parameters the diagnostics section lists.
N_WORST = 12

#: Headline and text of the warning every surface shows for a fit that failed its diagnostics.
UNTRUSTWORTHY_HEADLINE = "UNTRUSTWORTHY FIT"
UNTRUSTWORTHY_TEXT = (
    "The model failed its convergence diagnostics, so every number in this report "
    "may be wrong. Do not base decisions on it; fix the fit first (see Diagnostics)."
)
UNTRUSTWORTHY = f"{UNTRUSTWORTHY_HEADLINE}: {UNTRUSTWORTHY_TEXT}"


def load_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) that every ``report.json`` conforms to."""
    text = resources.files("proxyscope.reporting").joinpath("schema", "report.schema.json")
    return dict(json.loads(text.read_text(encoding="utf-8")))


def jsonable(value: Any) -> Any:
    """Plain JSON values: numpy scalars unwrapped, NaN and infinities as None."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray, pd.Index)):
        return [jsonable(v) for v in list(value)]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        x = float(value)
        return x if math.isfinite(x) else None
    if isinstance(value, str):
        return value
    if isinstance(value, (pd.Timestamp, _dt.datetime, _dt.date)):
        return value.isoformat()
    return str(value)


def _rows(frame: pd.DataFrame, columns: Sequence[str]) -> list[dict[str, Any]]:
    return [
        {c: jsonable(v) for c, v in zip(columns, values, strict=True)}
        for values in frame[list(columns)].itertuples(index=False, name=None)
    ]


def with_period(section: dict[str, Any], period: Any) -> dict[str, Any]:
    """``section`` with the period its analysis describes, for a fit with time (a static
    fit's sections are left as they were: no ``period`` key)."""
    if period is not None:
        section["period"] = str(period)
    return section


def _levels(fit: ProxyFit) -> dict[str, dict[str, str]]:
    """Segment label -> {segment column: level}."""
    frame = fit.structure.frame()
    cols = list(fit.structure.columns)
    return {str(r[dims.SEGMENT]): {c: str(r[c]) for c in cols} for _, r in frame.iterrows()}


# -- sections ------------------------------------------------------------------


def data_section(fit: ProxyFit) -> dict[str, Any]:
    from proxyscope.model.segments import historical_mix

    eff = fit.effects
    meta = eff.meta
    structure = fit.structure
    dropped = eff.dropped
    seg_cols = list(eff.segments)
    dropped_rows = []
    for _, r in dropped.iterrows():
        dropped_rows.append(
            {
                "experiment": str(r[dims.EXPERIMENT]),
                "levels": {c: str(r[c]) for c in seg_cols},
                "n_treat": jsonable(r["n_treat"]),
                "n_control": jsonable(r["n_control"]),
                "reason": None if pd.isna(r["reason"]) else str(r["reason"]),
            }
        )
    users = eff.data[dims.N_TREAT].values + eff.data[dims.N_CONTROL].values
    if meta.get("segments_share_users"):  # e.g. ASOS: cells of an experiment are metrics
        users = pd.Series(users).groupby(np.asarray(eff.experiment)).max().to_numpy()
    mix = historical_mix(fit)
    assumed = eff.assumed_correlation
    return {
        "outcome": fit.outcome,
        "proxies": [{"name": p, "direction": eff.directions.get(p, "higher")} for p in fit.proxies],
        "segment_columns": seg_cols,
        "segment_levels": {
            c: list(lv) for c, lv in zip(structure.columns, structure.levels, strict=True)
        },
        "segments": list(structure.labels),
        "n_cells": int(eff.n_cells),
        "n_experiments": len(eff.experiments),
        "n_segments": int(structure.n_segments),
        "n_users": int(np.sum(users)),
        "experiments": [str(e) for e in eff.experiments],
        "historical_mix": [{"segment": str(s), "share": jsonable(v)} for s, v in mix.items()],
        "dropped_cells": dropped_rows,
        "n_dropped": len(dropped_rows),
        "min_users_per_arm": jsonable(meta.get("min_users_per_arm")),
        "assumed_correlation": None if assumed is None else jsonable(assumed),
        "source": None if meta.get("source") is None else str(meta.get("source")),
        "engine": None if meta.get("engine") is None else str(meta.get("engine")),
        "fingerprint": fit.data_fingerprint,
    }


def model_section(fit: ProxyFit) -> dict[str, Any]:
    attrs = fit.idata.attrs
    config = fit.config
    sampler = fit.sampler
    timings = dict(sampler.get("timings") or {})
    return {
        "pooling": fit.pooling,
        "cell_correlation": config.get("cell_correlation"),
        "priors": jsonable(config.get("priors", {})),
        "config": jsonable(config),
        "config_hash": fit.config_hash,
        "fitted_with_version": str(attrs.get("proxyscope_version", "")),
        "data_fingerprint": fit.data_fingerprint,
        "sampler": {
            "name": str(sampler.get("name")),
            "settings": jsonable(sampler.get("settings") or {}),
            "random_seed": jsonable(sampler.get("random_seed")),
            "chains": jsonable(sampler.get("chains")),
            "tune": jsonable(sampler.get("tune")),
            "draws": jsonable(sampler.get("draws")),
            "timings": jsonable(timings),
        },
        "n_posterior_draws": int(fit.n_draws),
    }


def diagnostics_section(diag: Diagnostics, trustworthy: bool) -> dict[str, Any]:
    base = jsonable(diag.to_dict())
    worst = diag.table.sort_values("ess_bulk", kind="stable").head(N_WORST)
    base.update(
        trustworthy=trustworthy,
        summary=diag.summary(),
        n_failed=len(diag.failed),
        worst_parameters=_rows(
            worst, ["parameter", "group", "r_hat", "ess_bulk", "ess_tail", "ok"]
        ),
        figure="diagnostics",
    )
    return dict(base)


def coefficients_section(coef: pd.DataFrame) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ci": float(coef.attrs["ci"]),
        "rows": _rows(coef, ["scope", "parameter", "mean", "lo", "hi"]),
        "figure": "coefficients",
    }
    return with_period(out, coef.attrs.get("period"))


def surrogacy_section(surr: pd.DataFrame) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ci": float(surr.attrs["ci"]),
        "probability": float(surr.attrs["probability"]),
        "rows": _rows(surr, ["scope", "segment", "proxy", "r2", "r2_lo", "r2_hi", "ste"]),
        "figure": "surrogacy",
    }
    return with_period(out, surr.attrs.get("period"))


def fragility_section(frag: pd.DataFrame, fit: ProxyFit) -> dict[str, Any]:
    levels = _levels(fit)
    cols = [
        "segment",
        "proxy",
        "flip_prob",
        "flip_lo",
        "flip_hi",
        "overall_flip",
        "overall_lo",
        "overall_hi",
        "flagged",
        "warning",
    ]
    rows = _rows(frag, cols)
    for row in rows:
        row["levels"] = levels.get(str(row["segment"]), {})
    out: dict[str, Any] = {
        "ci": float(frag.attrs["ci"]),
        "threshold": float(frag.attrs["threshold"]),
        "rows": rows,
        "n_flagged": int(frag["flagged"].sum()),
        "warnings": [str(w) for w in frag.attrs.get("warnings", [])],
        "figure": "fragility",
    }
    return with_period(out, frag.attrs.get("period"))


def weights_section(w: pd.DataFrame) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ci": float(w.attrs["ci"]),
        "rows": _rows(w, ["scope", "proxy", "weight", "weight_lo", "weight_hi", "direction"]),
        "figure": "weights",
    }
    return with_period(out, w.attrs.get("period"))


def recommendations_section(rec: pd.DataFrame) -> dict[str, Any]:
    rows = _rows(
        rec,
        [
            "proxy",
            "gain",
            "gain_lo",
            "gain_hi",
            "calibrated_accuracy",
            "calibrated_lo",
            "calibrated_hi",
            "rule",
            "decision_accuracy",
            "decision_lo",
            "decision_hi",
            "no_proxy_accuracy",
            "no_proxy_lo",
            "no_proxy_hi",
            "credible",
            "p_best",
            "ste",
            "fragile_segments",
            "recommendation",
        ],
    )
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
        row["fragile_segments"] = [str(s) for s in (row["fragile_segments"] or [])]
    out: dict[str, Any] = {
        "ci": float(rec.attrs["ci"]),
        "probability": float(rec.attrs["probability"]),
        "best": rows[0]["proxy"] if rows else None,
        "recommendation": rows[0]["recommendation"] if rows else None,
        "rows": rows,
        "figure": "recommendations",
    }
    return with_period(out, rec.attrs.get("period"))


def transport_section(res: TransportResult, ci: float) -> dict[str, Any]:
    summary = res.summary(ci)
    target = res.target
    seg_cols = [c for c in target.columns if c not in (dims.SEGMENT, "share", "extrapolated")]
    rows = [
        {
            "segment": str(r[dims.SEGMENT]),
            "levels": {c: str(r[c]) for c in seg_cols},
            "share": jsonable(r["share"]),
            "extrapolated": bool(r["extrapolated"]),
        }
        for _, r in target.iterrows()
    ]
    out: dict[str, Any] = {
        "ci": float(ci),
        "conditional": bool(res.conditional),
        "proxy_effects": None if res.proxy_effects is None else jsonable(res.proxy_effects),
        "summary": _rows(summary, ["quantity", "mean", "lo", "hi"]),
        "target": rows,
        "n_extrapolated": int(summary.attrs["n_extrapolated"]),
        "extrapolated_share": jsonable(summary.attrs["extrapolated_share"]),
        "n_draws": int(np.asarray(res.draws).size),
        "figure": "transport",
    }
    return with_period(out, res.period)


def compare_section(cmp: Comparison) -> dict[str, Any]:
    # Imported here: a Comparison exists, so its module is loaded already.
    from proxyscope.analyses.compare import TABLE_COLUMNS

    table = cmp.table
    rows = []
    for name, r in table.iterrows():
        row: dict[str, Any] = {"model": str(name)}
        for col in TABLE_COLUMNS:
            value = r[col] if col in table.columns else None
            row[col] = jsonable(value)
        row["rank"] = None if row["rank"] is None else int(row["rank"])
        row["warning"] = None if row["warning"] is None else bool(row["warning"])
        row["trustworthy"] = None if row["trustworthy"] is None else bool(row["trustworthy"])
        rows.append(row)
    return {
        "kind": str(cmp.kind),
        "reading": cmp.reading(),
        "rows": rows,
        "refitted": {str(k): [str(e) for e in v] for k, v in cmp.refitted.items()},
        "figure": "compare",
    }


def build_document(
    fit: ProxyFit,
    *,
    title: str,
    ci: float,
    trustworthy: bool,
    diag: Diagnostics,
    coefficients: pd.DataFrame,
    surrogacy: pd.DataFrame,
    fragility: pd.DataFrame,
    weights: pd.DataFrame,
    recommendations: pd.DataFrame,
    transport: TransportResult | None,
    compare: Comparison | None,
    figures: Mapping[str, Mapping[str, str]],
    generated_at: _dt.datetime | None = None,
) -> dict[str, Any]:
    """Assemble the report document (see :func:`load_schema` for its layout)."""
    when = generated_at or _dt.datetime.now(_dt.UTC)
    warnings: list[dict[str, str]] = []
    if not trustworthy:
        warnings.append({"kind": "convergence", "message": f"{UNTRUSTWORTHY} {diag.summary()}"})
    eff = fit.effects
    if len(eff.dropped):
        warnings.append(
            {
                "kind": "data",
                "message": f"{len(eff.dropped)} cells were dropped before fitting "
                "(see data.dropped_cells).",
            }
        )
    if eff.assumed_correlation:
        warnings.append(
            {
                "kind": "data",
                "message": "Some sampling correlations between metrics were assumed, not "
                "estimated (see data.assumed_correlation).",
            }
        )
    warnings.extend(
        {"kind": "fragility", "message": str(w)} for w in fragility.attrs.get("warnings", [])
    )
    transport_doc = None if transport is None else transport_section(transport, ci)
    if transport_doc is not None and transport_doc["n_extrapolated"]:
        warnings.append(
            {
                "kind": "transport",
                "message": f"{transport_doc['n_extrapolated']} target segment cells "
                f"({100 * (transport_doc['extrapolated_share'] or 0):.0f}% of the target) "
                "were never observed; they are predicted from the pooled main effects.",
            }
        )
    compare_doc = None if compare is None else compare_section(compare)
    if compare_doc is not None:
        high = sum(int(r["n_high_k"] or 0) for r in compare_doc["rows"])
        if high:
            warnings.append(
                {
                    "kind": "compare",
                    "message": f"{high} LOO points have Pareto k > 0.7; their estimates "
                    "are unreliable.",
                }
            )
    return {
        "schema_version": SCHEMA_VERSION,
        "proxyscope_version": __version__,
        "generated_at": when.isoformat(timespec="seconds"),
        "title": title,
        "ci": float(ci),
        "trustworthy": bool(trustworthy),
        "warnings": warnings,
        "data": data_section(fit),
        "model": model_section(fit),
        "diagnostics": diagnostics_section(diag, trustworthy),
        "coefficients": coefficients_section(coefficients),
        "surrogacy": surrogacy_section(surrogacy),
        "fragility": fragility_section(fragility, fit),
        "weights": weights_section(weights),
        "recommendations": recommendations_section(recommendations),
        "transport": transport_doc,
        "compare": compare_doc,
        "figures": {k: dict(v) for k, v in figures.items()},
    }

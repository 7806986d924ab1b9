"""Each design's own checks, for the designs section (report.json ``designs.diagnostics``).

The design functions write their diagnostics into the cells' metadata
(``meta[<design>]``, DESIGN.md §8). :func:`diagnostics_doc` reads them for the
cells the fit used and condenses each design into a few numbers, a one-line
reading and per-cell rows, worst first (the report's schema describes every
field): did, the pre-trend check; rdd, bandwidths, the density check and how
far estimates move across the bandwidth-sensitivity table (in standard errors
at the chosen bandwidth: max over factors and metrics of |d_f − d_1| / se_1);
ipw, overlap and balance after weighting; synthetic_control, the outcome's
pre-launch RMSE against its gap (the cell's outcome estimate), placebo
p-values and poor fits; cluster, the fewest clusters in an arm, the
experiment-variance inflation and the experiments with a shared error.

A concatenated history (:meth:`CellEffects.concat`) keeps every part's
metadata under ``meta["parts"]``; each part is read, and only rows of cells
the fit has (matched on experiment and segment label, within the design) are
kept. Cells without such metadata (built by hand, arm summaries, estimates)
give no entry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from proxyscope import dims
from proxyscope._format import num
from proxyscope.data import designs
from proxyscope.data.clustered import FEW_CLUSTERS
from proxyscope.data.ipw_checks import BAND, OUTSIDE_SHARE, SMD_LIMIT
from proxyscope.reporting.design_meta import (
    DesignMeta,
    Key,
    cell_name,
    finite,
    shared_setting,
    span,
    spread,
    where,
    worst_first,
)

if TYPE_CHECKING:
    from proxyscope.data.cells import CellEffects

# -- per design: effects.meta -> plain dict ----------------------------------------


def _did(cells: DesignMeta) -> dict[str, Any] | None:
    rows: list[dict[str, Any]] = []
    levels: set[float | None] = set()
    for own, r, _ in cells.rows("did"):
        level = finite(own.get("pretrend_level"))
        levels.add(level)
        p = finite(r.get("pretrend_p_cell"))
        per = {m: finite(v) for m, v in (r.get("pretrend_p") or {}).items() if m in cells.metrics}
        tested = {m: v for m, v in per.items() if v is not None}
        rows.append(
            {
                **where(r),
                "treated_units": r.get("treated_units"),
                "comparison_units": r.get("comparison_units"),
                "p": p,
                "metric": min(tested, key=lambda m: tested[m]) if tested else None,
                "failing": p is not None and level is not None and p < level,
            }
        )
    if not rows:
        return None
    rows = worst_first(rows, ("p", False))
    failing, level = sum(r["failing"] for r in rows), shared_setting(levels)
    low = rows[0] if rows[0]["p"] is not None else None
    smallest = f"smallest p {num(low['p'])}, {cell_name(low)}" if low else "no cell tested"
    reading = (
        f"Pre-trend check (level {num(level) if level else 'per part'}): {failing} of "
        f"{len(rows)} cells fail ({smallest})"
        + ("; their effects may carry a differential trend." if failing else ".")
    )
    return {
        "level": level,
        "cells": len(rows),
        "failing": failing,
        "min_p": None if low is None else low["p"],
        "reading": reading,
        "rows": rows,
    }


def _shift(tables: list[Mapping[str, Any]], metrics: Sequence[str]) -> dict[str, Any]:
    """The largest |d_f − d_1| / se_1 over factors and metrics; the outcome's range."""
    outcome = [finite((t.get("effect") or {}).get(metrics[0])) for t in tables]
    got = span(outcome)
    best: dict[str, Any] = {"shift": None, "shift_metric": None, "shift_factor": None}
    best.update(outcome_min=got["min"], outcome_max=got["max"])
    base = next((t for t in tables if finite(t.get("factor")) == 1.0), None)
    if base is None or base.get("effect") is None or base.get("se") is None:
        return best
    for t in tables:
        for m in metrics if t is not base and t.get("effect") is not None else []:
            d, d1, se = (
                finite(t["effect"].get(m)),
                finite(base["effect"].get(m)),
                finite(base["se"].get(m)),
            )
            z = None if d is None or d1 is None or not se else abs(d - d1) / se
            if z is not None and (best["shift"] is None or z > best["shift"]):
                best.update(shift=z, shift_metric=m, shift_factor=finite(t.get("factor")))
    return best


def _rdd(cells: DesignMeta) -> dict[str, Any] | None:
    tables: dict[Key, list[Mapping[str, Any]]] = {}
    for _, t, _c in cells.rows("rdd", "sensitivity"):
        w = where(t)
        tables.setdefault((w["experiment"], w["segment"]), []).append(t)
    rows: list[dict[str, Any]] = []
    alphas: set[float | None] = set()
    for own, r, _ in cells.rows("rdd"):
        alpha = finite(own.get("density_alpha"))
        alphas.add(alpha)
        density, w = r.get("density") or {}, where(r)
        holm = finite(density.get("p_holm"))
        rows.append(
            {
                **w,
                "bandwidth": finite(r.get("bandwidth")),
                "bandwidth_source": r.get("bandwidth_source"),
                "n_below": r.get("n_below"),
                "n_above": r.get("n_above"),
                "density_p": finite(density.get("p_value")),
                "density_p_holm": holm,
                "failing": holm is not None and alpha is not None and holm < alpha,
                **_shift(tables.get((w["experiment"], w["segment"]), []), cells.metrics),
            }
        )
    if not rows:
        return None
    rows = worst_first(rows, ("failing", True), ("shift", True))
    failing, alpha = sum(r["failing"] for r in rows), shared_setting(alphas)
    width = span([r["bandwidth"] for r in rows])
    moved = [r for r in rows if r["shift"] is not None]
    top = max(moved, key=lambda r: r["shift"]) if moved else None
    move = (
        f"across 0.5-2x the bandwidth the estimates move by at most {num(top['shift'])} "
        f"standard errors ({cell_name(top)}, {top['shift_metric']} at {num(top['shift_factor'])}x)"
        if top
        else "no bandwidth-sensitivity table"
    )
    reading = (
        f"Bandwidths {spread(width)} (median {num(width['median'])}); density check "
        f"(Holm-adjusted, alpha {num(alpha) if alpha else 'per part'}): {failing} of "
        f"{len(rows)} cells fail{' (units sort themselves across the cutoff)' if failing else ''}"
        f"; {move}."
    )
    return {
        "alpha": alpha,
        "cells": len(rows),
        "failing": failing,
        "bandwidth": width,
        "max_shift": None if top is None else top["shift"],
        "reading": reading,
        "rows": rows,
    }


def _max_smd(smd: Any) -> tuple[float | None, str | None]:
    """The largest |SMD| after weighting over the covariates, and its covariate."""
    after = {str(c): finite((v or {}).get("after")) for c, v in (smd or {}).items()}
    got = {c: abs(v) for c, v in after.items() if v is not None}
    worst = max(got, key=lambda c: got[c]) if got else None
    return (None, None) if worst is None else (got[worst], worst)


def _ipw(cells: DesignMeta) -> dict[str, Any] | None:
    rows: list[dict[str, Any]] = []
    experiments: dict[str, tuple[float | None, str | None]] = {}
    for own, r, _ in cells.rows("ipw"):
        t, c = r.get("treated") or {}, r.get("control") or {}
        smd, covariate = _max_smd(r.get("smd"))
        share = finite(r.get("share_outside_band"))
        arms = [finite(t.get("effective_n")), finite(c.get("effective_n"))]
        rows.append(
            {
                **where(r),
                "treated_min": finite(t.get("propensity_min")),
                "treated_max": finite(t.get("propensity_max")),
                "control_min": finite(c.get("propensity_min")),
                "control_max": finite(c.get("propensity_max")),
                "ess_treated": arms[0],
                "ess_control": arms[1],
                "min_ess": span(arms)["min"],
                "share_outside": share,
                "max_smd": smd,
                "smd_covariate": covariate,
                "poor_overlap": share is not None and share > OUTSIDE_SHARE,
            }
        )
        for e in own.get("experiments") or []:
            experiments.setdefault(str(e.get(dims.EXPERIMENT)), _max_smd(e.get("smd")))
    if not rows:
        return None
    rows = worst_first(rows, ("poor_overlap", True), ("share_outside", True), ("min_ess", False))
    present = {r["experiment"] for r in rows}
    by_exp = {e: v for e, v in experiments.items() if e in present and v[0] is not None}
    unbalanced = [e for e, (v, _) in by_exp.items() if v is not None and v > SMD_LIMIT]
    worst = max(by_exp, key=lambda e: by_exp[e][0] or 0.0) if by_exp else None
    low = span([v for r in rows for v in (r["treated_min"], r["control_min"])])["min"]
    high = span([v for r in rows for v in (r["treated_max"], r["control_max"])])["max"]
    thin = min(
        (r for r in rows if r["min_ess"] is not None), key=lambda r: r["min_ess"], default=None
    )
    poor = sum(r["poor_overlap"] for r in rows)
    balance = (
        f"largest |SMD| after weighting {num(by_exp[worst][0])} (experiment {worst}, "
        f"{by_exp[worst][1]}); {len(unbalanced)} of {len(by_exp)} experiments above "
        f"{num(SMD_LIMIT)}"
        if worst is not None
        else "no balance table"
    )
    reading = (
        f"Overlap: {poor} of {len(rows)} cells have more than {OUTSIDE_SHARE:.0%} of their "
        f"units with a propensity outside [{num(BAND)}, {num(1 - BAND)}]; propensities span "
        f"{num(low)}-{num(high)}; smallest effective sample size of an arm "
        + (f"{num(thin['min_ess'])} ({cell_name(thin)})" if thin else "n/a")
        + f". Balance: {balance}."
    )
    return {
        "cells": len(rows),
        "band": BAND,
        "outside_share": OUTSIDE_SHARE,
        "smd_limit": SMD_LIMIT,
        "poor_overlap": poor,
        "propensity_min": low,
        "propensity_max": high,
        "min_ess": None if thin is None else thin["min_ess"],
        "max_smd": None if worst is None else by_exp[worst][0],
        "max_smd_experiment": worst,
        "unbalanced_experiments": unbalanced,
        "reading": reading,
        "rows": rows,
    }


def _synthetic_control(cells: DesignMeta) -> dict[str, Any] | None:
    outcome, effect = cells.metrics[0], cells.effects.effect
    rows: list[dict[str, Any]] = []
    for _, r, c in cells.rows("synthetic_control"):
        rmse, gap = finite((r.get("pre_rmse") or {}).get(outcome)), finite(effect[c, 0])
        rows.append(
            {
                **where(r),
                "n_donors": r.get("n_donors"),
                "effective_donors": finite(r.get("effective_donors")),
                "pre_rmse": rmse,
                "gap": gap,
                "rmse_to_gap": None if rmse is None or not gap else rmse / abs(gap),
                "placebo_pre_rmse": finite(r.get("placebo_pre_rmse_median")),
                "p_value": finite((r.get("p_value") or {}).get(outcome)),
                "p_value_fit": finite(r.get("p_value_fit")),
                "poor_fit": bool(r.get("poor_fit")),
                "converged": bool(r.get("converged", True)),
            }
        )
    if not rows:
        return None
    rows = worst_first(rows, ("poor_fit", True), ("rmse_to_gap", True))
    poor, failed = sum(r["poor_fit"] for r in rows), sum(not r["converged"] for r in rows)
    ratio, p = span([r["rmse_to_gap"] for r in rows]), span([r["p_value"] for r in rows])
    donors = [int(r["n_donors"]) for r in rows if r["n_donors"] is not None]
    fewest = min(donors) if donors else None
    reading = (
        f"Pre-launch fit: {poor} of {len(rows)} cells are poor fits (the outcome's pre-launch "
        f"RMSE above its gap and twice the placebos'); the outcome's pre-launch RMSE is "
        f"{spread(ratio)} times its gap (median {num(ratio['median'])}); placebo p-values of "
        f"the outcome {spread(p)}"
        + (f" (the smallest possible with {fewest} donors is 1/{fewest + 1})" if fewest else "")
        + (
            f"; {failed} of {len(rows)} fits did not converge."
            if failed
            else "; every fit converged."
        )
    )
    return {
        "cells": len(rows),
        "poor_fit": poor,
        "not_converged": failed,
        "min_donors": fewest,
        "rmse_to_gap": ratio,
        "min_p": p["min"],
        "reading": reading,
        "rows": rows,
    }


def _cluster(cells: DesignMeta) -> dict[str, Any] | None:
    parts = [s["cluster"] for s in cells.sources if isinstance(s.get("cluster"), Mapping)]
    if not parts:
        return None
    eff, at = cells.effects, np.array(sorted(cells.index[designs.CLUSTER].values()))
    treat = eff.variable(designs.N_CLUSTERS_TREAT)[at].astype(int)
    control = eff.variable(designs.N_CLUSTERS_CONTROL)[at].astype(int)
    shared = np.abs(eff.variable(designs.SHARED_COV)[at]).sum(axis=(1, 2)) > 0
    experiments = np.asarray([str(e) for e in eff.experiment[at]], dtype=object)
    rows: list[dict[str, Any]] = []
    for i, own in enumerate(parts):
        raw = own.get("experiment_variance_inflation") or {}
        left = own.get("experiment_variance_inflation_unexplained") or {}
        rows += [
            {
                "part": i,
                "metric": m,
                "inflation": finite(raw.get(m)),
                "unexplained": finite(left.get(m)),
            }
            for m in cells.metrics
            if m in raw
        ]
    few = int(np.sum(np.minimum(treat, control) < FEW_CLUSTERS))
    n_shared = len(set(experiments[shared]))
    column = ", ".join(dict.fromkeys(str(p.get("column")) for p in parts))
    raw_span = span([r["inflation"] for r in rows])
    left_span = span([r["unexplained"] for r in rows])
    reading = (
        f"Clusters ({column}): at least {treat.min()} treated and {control.min()} control per "
        f"cell; {few} of {len(at)} cells have fewer than {FEW_CLUSTERS} in an arm. {n_shared} "
        f"of {len(set(experiments))} experiments share an error across their cells (clusters "
        "spanning segment cells)."
        + (
            f" The variance of an experiment's overall effect is {spread(raw_span)}x what "
            f"independent cells imply, {spread(left_span)}x after the shared error (medians "
            "over experiments, per metric)."
            if rows
            else ""
        )
    )
    return {
        "column": column,
        "cells": len(at),
        "min_clusters_treat": int(treat.min()),
        "min_clusters_control": int(control.min()),
        "few_clusters": few,
        "few_limit": FEW_CLUSTERS,
        "shared_error_experiments": n_shared,
        "reading": reading,
        "rows": rows,
    }


#: The designs with diagnostics, in the order the report shows them.
BUILDERS: dict[str, Callable[[DesignMeta], dict[str, Any] | None]] = {
    designs.CLUSTER: _cluster,
    "did": _did,
    "rdd": _rdd,
    "ipw": _ipw,
    "synthetic_control": _synthetic_control,
}


def diagnostics_doc(effects: CellEffects) -> dict[str, Any]:
    """``designs.diagnostics`` of report.json: design -> its diagnostics (module docstring).

    Only designs of ``effects`` whose metadata holds their diagnostics appear;
    empty for cells built by hand.
    """
    cells = DesignMeta(effects)
    out = {}
    for design, build in BUILDERS.items():
        got = build(cells) if design in cells.index else None
        if got is not None:
            out[design] = got
    return out

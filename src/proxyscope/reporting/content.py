"""What the report says, as format-free blocks; Markdown and HTML render the same blocks.

:func:`sections` reads only the report document (``report.json``), so the
two human surfaces show exactly the numbers of the machine-readable one.
This module holds the front matter (the untrustworthy-fit banner and the
"At a glance" summary) and the reading order; the blocks are in
:mod:`proxyscope.reporting.blocks`, the sections in
:mod:`proxyscope.reporting.sections_fit` and
:mod:`proxyscope.reporting.sections_analyses`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from proxyscope._format import interval, pct
from proxyscope.reporting.blocks import Block, Bullets, Para, Section, prob
from proxyscope.reporting.designs import designs_section
from proxyscope.reporting.document import UNTRUSTWORTHY_TEXT
from proxyscope.reporting.past_experiments import past_experiments_section
from proxyscope.reporting.sections_analyses import (
    compare_section,
    fragility_section,
    recommendations_section,
    surrogacy_section,
    transport_section,
    weights_section,
)
from proxyscope.reporting.sections_fit import (
    coefficients_section,
    data_section,
    diagnostics_section,
    model_section,
)
from proxyscope.reporting.sensitivity import sensitivity_section
from proxyscope.reporting.stability import stability_section


def banner(doc: Mapping[str, Any]) -> tuple[str, str] | None:
    """The untrustworthy-fit warning (text, diagnostics summary); None for a trustworthy fit."""
    if doc["trustworthy"]:
        return None
    return UNTRUSTWORTHY_TEXT, str(doc["diagnostics"]["summary"])


def intro(doc: Mapping[str, Any]) -> Section:
    data = doc["data"]
    proxies = ", ".join(p["name"] for p in data["proxies"])
    blocks: list[Block] = [
        Para(
            "This is a posterior report of a Bayesian hierarchical model (proxyscope) of how "
            f"the long-term effect of an experiment on {data['outcome']} moves with its early "
            f"proxy effects ({proxies}), learned from {data['n_experiments']} past randomized "
            f"experiments split into {data['n_cells']} experiment x segment cells. It says which "
            "proxy to trust, in which segments that trust breaks, and how sure the model is. "
            f"Intervals are {pct(doc['ci'])} equal-tailed posterior intervals unless stated "
            "otherwise."
        ),
        Para(
            f"Generated {doc['generated_at']} by proxyscope {doc['proxyscope_version']} "
            f"(report schema {doc['schema_version']}); the numbers are in report.json.",
            "note",
        ),
    ]
    glance = [f"Recommendation: {doc['recommendations']['recommendation']}"]
    overall = doc["surrogacy"]["rows"][0]
    s_ci = pct(doc["surrogacy"]["ci"])
    glance.append(
        "Trial-level R^2 of all proxies (historical mix): "
        f"{interval(overall['r2'], overall['r2_lo'], overall['r2_hi'], prob)} ({s_ci} interval)."
    )
    frag = doc["fragility"]
    glance.append(
        f"Fragile segment x proxy pairs flagged: {frag['n_flagged']} of {len(frag['rows'])}."
    )
    if doc["transport"] is not None:
        t = doc["transport"]
        eff = t["summary"][0]
        p_pos = t["summary"][1]["mean"]
        glance.append(
            "Target population's long-term effect: "
            f"{interval(eff['mean'], eff['lo'], eff['hi'])} ({pct(t['ci'])} interval), "
            f"P(> 0) = {prob(p_pos)}."
        )
    if doc["compare"] is not None:
        rows = doc["compare"]["rows"]
        best = rows[0]["model"]
        passed = [r["model"] for r in rows if r.get("trustworthy") is not False]
        if rows[0].get("trustworthy") is False:
            glance.append(
                f"Model comparison (LOO): {best!r} scores best, but its fit FAILED its "
                "diagnostics, so its score cannot be trusted; "
                + (
                    f"of the fits that passed, {passed[0]!r} predicts best."
                    if passed
                    else "no compared fit passed."
                )
            )
        else:
            glance.append(f"Model comparison (LOO): {best!r} predicts best.")
    if doc.get("stability") is not None:
        st = doc["stability"]
        glance.append(
            f"Over time: the analyses describe period {st['period']}; "
            + " ".join(st["readings"])
            + " (see Stability over time)."
        )
    glance.append(
        "Convergence diagnostics: "
        + ("passed." if doc["diagnostics"]["passed"] else "FAILED (see Diagnostics).")
    )
    # Each warning is said once: the fragility ones in their section, counted here.
    n_fragile = sum(w["kind"] == "fragility" for w in doc["warnings"])
    if n_fragile:
        glance.append(f"{n_fragile} fragility warning(s): see Fragility.")
    glance.append(
        "Past experiments: "
        f"{doc['past_experiments']['n_inside']} of {doc['past_experiments']['n_experiments']} "
        f"long-term estimates inside their {pct(doc['past_experiments']['ci'])} predictive "
        "interval given their proxy estimates (see Past experiments)."
    )
    blocks.append(Bullets(tuple(glance)))
    others = [
        w["message"] for w in doc["warnings"] if w["kind"] not in ("convergence", "fragility")
    ]
    if others:
        blocks.append(Para(f"Warnings (intervals in them are {pct(doc['ci'])}):", "text"))
        blocks.append(Bullets(tuple(others), "alert"))
    return Section("summary", "At a glance", tuple(blocks))


def sections(doc: Mapping[str, Any]) -> list[Section]:
    """Every section of the report, in reading order."""
    out = [
        intro(doc),
        past_experiments_section(doc),
        data_section(doc),
        model_section(doc),
        diagnostics_section(doc),
        coefficients_section(doc),
        fragility_section(doc),
        weights_section(doc),
        surrogacy_section(doc),
        recommendations_section(doc),
    ]
    extras = (
        stability_section(doc),
        designs_section(doc),
        transport_section(doc),
        sensitivity_section(doc),
        compare_section(doc),
    )
    for extra in extras:
        if extra is not None:
            out.append(extra)
    return out

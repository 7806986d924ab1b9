"""What the report says, as format-free blocks; Markdown and HTML render the same blocks.

:func:`sections` reads only the report document (``report.json``), so the
two human surfaces show exactly the numbers of the machine-readable one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from proxyscope._format import interval, num, pct
from proxyscope.reporting.document import UNTRUSTWORTHY_TEXT


@dataclasses.dataclass(frozen=True)
class Para:
    """A paragraph; ``kind`` is "text", "note" (small print) or "alert" (red)."""

    text: str
    kind: str = "text"


@dataclasses.dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]
    kind: str = "text"


@dataclasses.dataclass(frozen=True)
class Table:
    """A table of strings; ``marked[i][j]`` highlights a cell (e.g. a flagged segment)."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    marked: tuple[tuple[bool, ...], ...] | None = None
    caption: str | None = None


@dataclasses.dataclass(frozen=True)
class FigureRef:
    name: str
    title: str
    png: str
    svg: str


Block = Para | Bullets | Table | FigureRef


@dataclasses.dataclass(frozen=True)
class Section:
    anchor: str
    title: str
    blocks: tuple[Block, ...]


# -- number formatting -----------------------------------------------------------


def prob(x: Any) -> str:
    """A probability or share with three decimals; "n/a" for null."""
    return "n/a" if x is None else f"{float(x):.3f}"


def interval_grid(
    rows: Sequence[Mapping[str, Any]],
    row_key: str,
    col_key: str,
    cols: Sequence[str],
    stem: str,
    fmt: Any = num,
) -> list[tuple[str, ...]]:
    """One table row per distinct ``row_key`` (first-seen order), one interval per ``cols``.

    Each cell reads ``stem``, ``stem_lo`` and ``stem_hi`` (or ``mean``/``lo``/``hi``
    when ``stem`` is ``"mean"``) of the row matching (row, column); "n/a" if none.
    """
    lo, hi = ("lo", "hi") if stem == "mean" else (f"{stem}_lo", f"{stem}_hi")
    by = {(r[row_key], r[col_key]): r for r in rows}
    labels = list(dict.fromkeys(r[row_key] for r in rows))
    return [
        (
            g,
            *[
                interval(by[g, c][stem], by[g, c][lo], by[g, c][hi], fmt) if (g, c) in by else "n/a"
                for c in cols
            ],
        )
        for g in labels
    ]


def _table(
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    marked: Sequence[Sequence[bool]] | None = None,
    caption: str | None = None,
) -> Table:
    return Table(
        tuple(columns),
        tuple(tuple(r) for r in rows),
        None if marked is None else tuple(tuple(m) for m in marked),
        caption,
    )


def _figure(doc: Mapping[str, Any], name: str) -> list[Block]:
    fig = doc["figures"].get(name)
    if fig is None:
        return []
    return [FigureRef(name, fig["title"], fig["png"], fig["svg"])]


# -- sections --------------------------------------------------------------------


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
        best = doc["compare"]["rows"][0]["model"]
        glance.append(f"Model comparison (LOO): {best!r} predicts best.")
    glance.append(
        "Convergence diagnostics: "
        + ("passed." if doc["diagnostics"]["passed"] else "FAILED (see Diagnostics).")
    )
    blocks.append(Bullets(tuple(glance)))
    others = [w["message"] for w in doc["warnings"] if w["kind"] != "convergence"]
    if others:
        blocks.append(Para(f"Warnings (intervals in them are {pct(doc['ci'])}):", "text"))
        blocks.append(Bullets(tuple(others), "alert"))
    return Section("summary", "At a glance", tuple(blocks))


def data_section(doc: Mapping[str, Any]) -> Section:
    d = doc["data"]
    facts = [
        ("Outcome (long-term)", d["outcome"]),
        ("Experiments", str(d["n_experiments"])),
        ("Experiment x segment cells", str(d["n_cells"])),
        ("Users (both arms)", f"{d['n_users']:,}"),
        (
            "Segment columns",
            ", ".join(f"{c} ({', '.join(d['segment_levels'][c])})" for c in d["segment_columns"])
            or "none (one segment: all users)",
        ),
        ("Segment cells", str(d["n_segments"])),
        ("Dropped cells", str(d["n_dropped"])),
        ("Source / engine", f"{d.get('source') or 'n/a'} / {d.get('engine') or 'n/a'}"),
        ("Data fingerprint", d["fingerprint"][:16] + "..."),
    ]
    blocks: list[Block] = [_table(("Item", "Value"), facts)]
    blocks.append(
        _table(
            ("Proxy", "Better when"),
            [(p["name"], p["direction"]) for p in d["proxies"]],
            caption="Proxies are read in their good direction: a 'lower is better' proxy is "
            "negated, so a positive effect always means 'better'.",
        )
    )
    if d["assumed_correlation"]:
        blocks.append(
            _table(
                ("Metric pair", "Assumed sampling correlation"),
                [(k, num(v)) for k, v in d["assumed_correlation"].items()],
                caption="These correlations were assumed, not estimated from the data.",
            )
        )
    else:
        blocks.append(Para("Assumed correlations: none (all sampling covariances estimated)."))
    if d["dropped_cells"]:
        rows = [
            (
                r["experiment"],
                " / ".join(r["levels"].values()) or "all",
                num(r["n_treat"]),
                num(r["n_control"]),
                r["reason"] or "",
            )
            for r in d["dropped_cells"][:20]
        ]
        more = len(d["dropped_cells"]) - len(rows)
        blocks.append(
            _table(
                ("Experiment", "Segment", "n treat", "n control", "Reason"),
                rows,
                caption=f"Dropped cells (first 20; {more} more in report.json)."
                if more > 0
                else "Dropped cells.",
            )
        )
    return Section("data", "Data", tuple(blocks))


def model_section(doc: Mapping[str, Any]) -> Section:
    m = doc["model"]
    s = m["sampler"]
    timings = ", ".join(f"{k} {num(v)}" for k, v in s["timings"].items()) or "n/a"
    settings = ", ".join(f"{k}={v}" for k, v in s["settings"].items()) or "defaults"
    facts = [
        ("Pooling of segment parameters", m["pooling"]),
        ("Within-cell proxy correlation", str(m.get("cell_correlation"))),
        ("Sampler", s["name"]),
        ("Settings", settings),
        (
            "Chains x (tune + draws)",
            f"{num(s['chains'])} x ({num(s['tune'])} + {num(s['draws'])})",
        ),
        ("Random seed", num(s["random_seed"])),
        ("Timings (seconds)", timings),
        ("Fitted with proxyscope", m["fitted_with_version"]),
        ("Configuration hash", m["config_hash"]),
        ("Data fingerprint", m["data_fingerprint"]),
    ]
    priors = [(k, num(v)) for k, v in m["priors"].items()]
    return Section(
        "model",
        "Model",
        (
            Para(
                "Latent true effects: proxy effects theta = mu_s + eta_e + zeta_c; long-term "
                "effect tau = alpha_s + beta_s . theta + eps with sd sigma_s; observed effects "
                "are the true effects plus their sampling noise (estimated covariance per "
                "cell). Segment parameters are partially pooled as the pooling says."
            ),
            _table(("Item", "Value"), facts),
            _table(
                ("Prior", "Scale"),
                priors,
                caption="Prior scales in standardized units (see proxyscope.Priors).",
            ),
        ),
    )


def diagnostics_section(doc: Mapping[str, Any]) -> Section:
    d = doc["diagnostics"]
    blocks: list[Block] = [Para(d["summary"], "text" if d["passed"] else "alert")]
    ebfmi = ", ".join(num(b, 2) for b in d["ebfmi"])
    facts = [
        ("Verdict", "PASSED" if d["passed"] else "FAILED"),
        ("Max R-hat (limit)", f"{num(d['max_rhat'], 4)} ({num(d['rhat_max_allowed'])})"),
        ("Min bulk ESS (limit)", f"{num(d['min_ess_bulk'], 4)} ({num(d['ess_min_required'])})"),
        ("Min tail ESS", num(d["min_ess_tail"], 4)),
        ("Divergences", f"{d['divergences']} in {d['n_draws']} draws"),
        ("Tree depth saturation", prob(d["treedepth_saturation"])),
        ("E-BFMI per chain", ebfmi),
        ("Parameters checked / failed", f"{d['n_parameters']} / {d['n_failed']}"),
    ]
    blocks.append(_table(("Check", "Value"), facts))
    worst = d["worst_parameters"]
    blocks.append(
        _table(
            ("Parameter", "Group", "R-hat", "Bulk ESS", "Tail ESS", "OK"),
            [
                (
                    r["parameter"],
                    r["group"],
                    num(r["r_hat"], 4),
                    num(r["ess_bulk"], 4),
                    num(r["ess_tail"], 4),
                    "yes" if r["ok"] else "NO",
                )
                for r in worst
            ],
            [[False] * 5 + [not r["ok"]] for r in worst],
            caption="The parameters with the lowest bulk ESS.",
        )
    )
    if d["advice"]:
        blocks.append(Para("What to try:"))
        blocks.append(Bullets(tuple(d["advice"])))
    blocks.extend(_figure(doc, "diagnostics"))
    return Section("diagnostics", "Diagnostics", tuple(blocks))


def coefficients_section(doc: Mapping[str, Any]) -> Section:
    c = doc["coefficients"]
    level = pct(c["ci"])
    rows = c["rows"]
    scopes = list(dict.fromkeys(r["scope"] for r in rows))
    params = list(dict.fromkeys(r["parameter"] for r in rows))
    by = {(r["scope"], r["parameter"]): r for r in rows}
    head = scopes[0]
    mix_rows = [
        (p, interval(by[head, p]["mean"], by[head, p]["lo"], by[head, p]["hi"])) for p in params
    ]
    shown = ["nu", "sigma", *[p for p in params if p.startswith("beta[")]]
    seg_rows = interval_grid(rows, "scope", "parameter", shown, "mean")
    per_segment: list[Block] = []
    if doc["data"]["segment_columns"]:
        per_segment.append(
            _table(
                ("Segment", *[f"{p} [{level}]" for p in shown]),
                seg_rows,
                caption=f"Per segment (first row: {head}).",
            )
        )
    return Section(
        "coefficients",
        "Coefficients",
        (
            Para(
                "nu: mean long-term effect of a new experiment; alpha: long-term effect when "
                "every proxy effect is zero; sigma: what the proxies miss; mu[p]: mean effect "
                "of proxy p; beta[p]: change of the long-term effect per unit of proxy p's "
                "effect. Original units; posterior mean and "
                f"{level} equal-tailed interval."
            ),
            _table((f"Parameter ({head})", f"Mean [{level} interval]"), mix_rows),
            *per_segment,
            *_figure(doc, "coefficients"),
        ),
    )


def fragility_section(doc: Mapping[str, Any]) -> Section:
    f = doc["fragility"]
    level = pct(f["ci"])
    rows = f["rows"]
    segments = list(dict.fromkeys(r["segment"] for r in rows))
    proxies = list(dict.fromkeys(r["proxy"] for r in rows))
    by = {(r["segment"], r["proxy"]): r for r in rows}
    table_rows = []
    marks = []
    for s in segments:
        cells = []
        flags = [False]
        for p in proxies:
            r = by[s, p]
            text = interval(r["flip_prob"], r["flip_lo"], r["flip_hi"], prob)
            cells.append(text + (" FLAGGED" if r["flagged"] else ""))
            flags.append(bool(r["flagged"]))
        table_rows.append((s, *cells))
        marks.append(flags)
    overall = [
        interval(
            by[segments[0], p]["overall_flip"],
            by[segments[0], p]["overall_lo"],
            by[segments[0], p]["overall_hi"],
            prob,
        )
        for p in proxies
    ]
    table_rows.append(("historical mix (overall)", *overall))
    marks.append([False] * (len(proxies) + 1))
    blocks: list[Block] = [
        Para(
            "P(flip): the posterior predictive probability that a new experiment's long-term "
            "effect and proxy effect have opposite signs (the proxy says better, the long-term "
            f"outcome says worse, or the reverse). A segment is flagged when P(flip) >= "
            f"{f['threshold']:g} and it is credibly above the overall value (the lower end of "
            f"the {level} interval of the difference is above zero)."
        ),
        _table(
            ("Segment", *[f"{p}: P(flip) [{level}]" for p in proxies]),
            table_rows,
            marks,
        ),
    ]
    if f["warnings"]:
        blocks.append(Para(f"Fragility warnings ({level} intervals):"))
        blocks.append(Bullets(tuple(f["warnings"]), "alert"))
    else:
        blocks.append(Para("No segment is flagged fragile for any proxy."))
    blocks.extend(_figure(doc, "fragility"))
    return Section("fragility", "Fragility", tuple(blocks))


def weights_section(doc: Mapping[str, Any]) -> Section:
    w = doc["weights"]
    level = pct(w["ci"])
    glob = [r for r in w["rows"] if r["scope"] == "global"]
    seg = [r for r in w["rows"] if r["scope"] != "global"]
    blocks: list[Block] = [
        Para(
            "Weights of the composite decision metric: each proxy's share of the predicted "
            "long-term effect, w_k = |beta_k| sd(theta_k) / sum_j |beta_j| sd(theta_j), per "
            f"posterior draw; posterior mean and {level} equal-tailed interval."
        ),
        _table(
            ("Proxy", f"Weight [{level} interval]", "Long-term effect moves"),
            [
                (
                    r["proxy"],
                    interval(r["weight"], r["weight_lo"], r["weight_hi"], prob),
                    "with it" if r["direction"] > 0 else "against it",
                )
                for r in glob
            ],
            caption="Global weights (historical mix).",
        ),
    ]
    if seg and doc["data"]["segment_columns"]:
        proxies = [r["proxy"] for r in glob]
        blocks.append(
            _table(
                ("Segment", *[f"{p} [{level}]" for p in proxies]),
                interval_grid(seg, "scope", "proxy", proxies, "weight", prob),
                caption="Weights per segment.",
            )
        )
    blocks.extend(_figure(doc, "weights"))
    return Section("weights", "Weights", tuple(blocks))


def surrogacy_section(doc: Mapping[str, Any]) -> Section:
    s = doc["surrogacy"]
    level = pct(s["ci"])
    rows = s["rows"]
    head = [r for r in rows if r["segment"] == "overall"]
    seg = [r for r in rows if r["segment"] != "overall"]

    def who(r: Mapping[str, Any]) -> str:
        return {"all": "all proxies jointly", "composite": "composite (surrogate index)"}.get(
            r["proxy"], r["proxy"]
        )

    blocks: list[Block] = [
        Para(
            "Trial-level R^2: the share of the variance of a new experiment's true long-term "
            "effect, across experiments, that its true proxy effects explain (posterior median "
            f"and {level} equal-tailed interval). STE (surrogate threshold effect): the "
            "smallest proxy effect for which the posterior predictive probability of a "
            f"positive long-term effect reaches {s['probability']:g} (proxy units; for the "
            "composite, long-term units; n/a where never reached)."
        ),
        _table(
            ("Scope (historical mix)", f"R^2 [{level} interval]", "STE"),
            [
                (who(r), interval(r["r2"], r["r2_lo"], r["r2_hi"], prob), num(r["ste"]))
                for r in head
            ],
        ),
    ]
    if seg and doc["data"]["segment_columns"]:
        proxies = list(dict.fromkeys(r["proxy"] for r in seg))
        blocks.append(
            _table(
                ("Segment", *[f"R^2 {'all' if p == 'all' else p} [{level}]" for p in proxies]),
                interval_grid(seg, "segment", "proxy", proxies, "r2", prob),
                caption="Per segment.",
            )
        )
    blocks.extend(_figure(doc, "surrogacy"))
    return Section("surrogacy", "Surrogacy", tuple(blocks))


def recommendations_section(doc: Mapping[str, Any]) -> Section:
    r = doc["recommendations"]
    level = pct(r["ci"])
    return Section(
        "recommendations",
        "Recommendations",
        (
            Para(f"Recommendation ({level} intervals): {r['recommendation']}", "text"),
            Para(
                "Decision accuracy: the posterior predictive probability that a new "
                "experiment's proxy effect (on the historical mix) and its long-term effect "
                "have the same sign. P(best): posterior probability that the candidate has the "
                f"highest decision accuracy. STE at probability {r['probability']:g}."
            ),
            _table(
                (
                    "Rank",
                    "Candidate",
                    f"Decision accuracy [{level}]",
                    "P(best)",
                    "STE",
                    "Fragile in",
                ),
                [
                    (
                        str(row["rank"]),
                        row["proxy"],
                        interval(
                            row["decision_accuracy"], row["decision_lo"], row["decision_hi"], prob
                        ),
                        prob(row["p_best"]),
                        num(row["ste"]),
                        "; ".join(row["fragile_segments"]) or "-",
                    )
                    for row in r["rows"]
                ],
            ),
            Bullets(tuple(row["recommendation"] for row in r["rows"])),
            *_figure(doc, "recommendations"),
        ),
    )


def transport_section(doc: Mapping[str, Any]) -> Section | None:
    t = doc["transport"]
    if t is None:
        return None
    level = pct(t["ci"])
    kind = (
        "conditional on the proxy readings "
        + ", ".join(f"{k} = {num(v)}" for k, v in (t["proxy_effects"] or {}).items())
        if t["conditional"]
        else "for a new experiment"
    )
    names = {
        "long_term_effect": "long-term effect of the target",
        "p_positive": "P(long-term effect > 0)",
        "gap_to_historical": "gap to the historical mix's prediction",
        "r2": "R^2 of all proxies under the target mix (median)",
    }
    rows = []
    for q in t["summary"]:
        label = names.get(q["quantity"], q["quantity"].replace("flip_prob:", "P(flip) of "))
        rows.append((label, interval(q["mean"], q["lo"], q["hi"])))
    target_rows = [
        (r["segment"], prob(r["share"]), "yes" if r["extrapolated"] else "no") for r in t["target"]
    ]
    return Section(
        "transport",
        "Transport to the target population",
        (
            Para(
                f"Posterior predictive distribution of the target population's long-term effect, "
                f"{kind}, against the historical mix; mean and {level} equal-tailed interval "
                f"from {t['n_draws']} draws."
            ),
            _table(("Quantity", f"Mean [{level} interval]"), rows),
            _table(
                ("Target segment", "Share", "Extrapolated"),
                target_rows,
                [[False, False, r["extrapolated"]] for r in t["target"]],
                caption="Extrapolated segments were never observed; they are predicted from "
                "the pooled main effects.",
            ),
            *_figure(doc, "transport"),
        ),
    )


def compare_section(doc: Mapping[str, Any]) -> Section | None:
    c = doc["compare"]
    if c is None:
        return None
    rows = [
        (
            num(r["rank"]),
            r["model"],
            num(r["elpd_loo"], 5),
            num(r["se"]),
            num(r["elpd_diff"]),
            num(r["dse"]),
            num(r["p_loo"]),
            prob(r["weight"]),
            num(r["max_pareto_k"], 2),
            num(r["n_refitted"]),
        )
        for r in c["rows"]
    ]
    return Section(
        "compare",
        "Model comparison (LOO)",
        (
            Para(c["reading"]),
            _table(
                (
                    "Rank",
                    "Model",
                    "elpd",
                    "SE",
                    "elpd diff",
                    "SE of diff",
                    "p_loo",
                    "Stacking weight",
                    "Max Pareto k",
                    "Refitted",
                ),
                rows,
                caption=f"PSIS-LOO, kind '{c['kind']}'. Differences are to the best model; "
                "a difference larger than about two of its standard errors is clear.",
            ),
            *_figure(doc, "compare"),
        ),
    )


def sections(doc: Mapping[str, Any]) -> list[Section]:
    """Every section of the report, in reading order."""
    out = [
        intro(doc),
        data_section(doc),
        model_section(doc),
        diagnostics_section(doc),
        coefficients_section(doc),
        fragility_section(doc),
        weights_section(doc),
        surrogacy_section(doc),
        recommendations_section(doc),
    ]
    for extra in (transport_section(doc), compare_section(doc)):
        if extra is not None:
            out.append(extra)
    return out

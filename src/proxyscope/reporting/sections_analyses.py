"""The sections about the analyses of a fit.

Fragility, composite weights, surrogacy, recommendations, and, when given,
transport to a target population and the model comparison.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from proxyscope._format import interval, num, pct
from proxyscope.reporting.blocks import (
    Block,
    Bullets,
    Para,
    Section,
    figure_blocks,
    interval_grid,
    prob,
    table,
)
from proxyscope.reporting.stability import period_blocks


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
        *period_blocks(doc, "fragility"),
        table(
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
    blocks.extend(figure_blocks(doc, "fragility"))
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
        *period_blocks(doc, "weights"),
        table(
            ("Proxy", f"Weight [{level} interval]", "Long-term effect moves"),
            [
                (
                    r["proxy"],
                    interval(r["weight"], r["weight_lo"], r["weight_hi"], prob),
                    {1: "with it", -1: "against it"}.get(
                        r["direction"], "unclear (interval holds 0)"
                    ),
                )
                for r in glob
            ],
            caption="Global weights (historical mix).",
        ),
    ]
    if seg and doc["data"]["segment_columns"]:
        proxies = [r["proxy"] for r in glob]
        blocks.append(
            table(
                ("Segment", *[f"{p} [{level}]" for p in proxies]),
                interval_grid(seg, "scope", "proxy", proxies, "weight", prob),
                caption="Weights per segment.",
            )
        )
    blocks.extend(figure_blocks(doc, "weights"))
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
        *period_blocks(doc, "surrogacy"),
        table(
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
            table(
                ("Segment", *[f"R^2 {'all' if p == 'all' else p} [{level}]" for p in proxies]),
                interval_grid(seg, "segment", "proxy", proxies, "r2", prob),
                caption="Per segment.",
            )
        )
    blocks.extend(figure_blocks(doc, "surrogacy"))
    return Section("surrogacy", "Surrogacy", tuple(blocks))


def recommendations_section(doc: Mapping[str, Any]) -> Section:
    r = doc["recommendations"]
    level = pct(r["ci"])
    return Section(
        "recommendations",
        "Recommendations",
        (
            Para(f"Recommendation ({level} intervals): {r['recommendation']}", "text"),
            *period_blocks(doc, "recommendations"),
            Para(
                "Each candidate is judged by the decisions its reading supports for a new "
                "experiment of the population, as the posterior mean share decided right (the "
                "sign of the long-term effect matched). Calibrated rule: ship when the "
                "long-term effect predicted from the reading is positive (the rule column). "
                "Naive rule: ship when the reading moves the good way. No proxy: always the "
                "long-term effect's more likely sign. Gain: calibrated minus no proxy, the "
                "ranking criterion; agreeing in sign with a long-term effect that is nearly "
                "always positive gains nothing. P(best): posterior probability of the largest "
                "gain (ties split evenly). A candidate whose relation to the long-term effect "
                "is not credible is never the one to decide on. STE at probability "
                f"{r['probability']:g}."
            ),
            table(
                (
                    "Rank",
                    "Candidate",
                    f"Gain over no proxy [{level}]",
                    f"Calibrated rule right [{level}]",
                    f"Naive rule right [{level}]",
                    f"No proxy right [{level}]",
                    "Credible relation",
                    "P(best)",
                    "Calibrated rule",
                    "STE",
                    "Fragile in",
                ),
                [
                    (
                        str(row["rank"]),
                        row["proxy"],
                        interval(row["gain"], row["gain_lo"], row["gain_hi"], prob),
                        interval(
                            row["calibrated_accuracy"],
                            row["calibrated_lo"],
                            row["calibrated_hi"],
                            prob,
                        ),
                        interval(
                            row["decision_accuracy"], row["decision_lo"], row["decision_hi"], prob
                        ),
                        interval(
                            row["no_proxy_accuracy"], row["no_proxy_lo"], row["no_proxy_hi"], prob
                        ),
                        "yes" if row["credible"] else "no",
                        prob(row["p_best"]),
                        row["rule"],
                        num(row["ste"]),
                        "; ".join(row["fragile_segments"]) or "-",
                    )
                    for row in r["rows"]
                ],
            ),
            Bullets(tuple(row["recommendation"] for row in r["rows"])),
            *figure_blocks(doc, "recommendations"),
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
            *period_blocks(doc, "transport"),
            table(("Quantity", f"Mean [{level} interval]"), rows),
            table(
                ("Target segment", "Share", "Extrapolated"),
                target_rows,
                [[False, False, r["extrapolated"]] for r in t["target"]],
                caption="Extrapolated segments were never observed; they are predicted from "
                "the pooled main effects.",
            ),
            *figure_blocks(doc, "transport"),
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
            "FAILED" if r["trustworthy"] is False else "passed",
        )
        for r in c["rows"]
    ]
    return Section(
        "compare",
        "Model comparison (LOO)",
        (
            Para(c["reading"]),
            table(
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
                    "Diagnostics",
                ),
                rows,
                caption=f"PSIS-LOO, kind '{c['kind']}'. Differences are to the best model; "
                "a difference larger than about two of its standard errors is clear.",
            ),
            *figure_blocks(doc, "compare"),
        ),
    )

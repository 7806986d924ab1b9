"""The sections about the fit itself: its data, model, convergence diagnostics and coefficients."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from proxyscope._format import interval, num, pct
from proxyscope.model.priors import ROLES
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
from proxyscope.reporting.stability import period_blocks, periods_table


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
    blocks: list[Block] = [table(("Item", "Value"), facts)]
    blocks.append(
        table(
            ("Proxy", "Better when"),
            [(p["name"], p["direction"]) for p in d["proxies"]],
            caption="Proxies are read in their good direction: a 'lower is better' proxy is "
            "negated, so a positive effect always means 'better'.",
        )
    )
    if d["assumed_correlation"]:
        blocks.append(
            table(
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
            table(
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
    priors = [(k, ROLES.get(k, ""), num(v)) for k, v in m["priors"].items()]
    return Section(
        "model",
        "Model",
        (
            Para(
                "Latent true effects: proxy effects theta = mu_s + eta_e + zeta_c; long-term "
                "effect tau = alpha_s + beta_s . theta + eta0_e + eps with sd sigma_s, eta0_e "
                "being the experiment's long-term effect that no proxy carries; observed effects "
                "are the true effects plus their sampling noise (estimated covariance per "
                "cell). Segment parameters are partially pooled as the pooling says."
            ),
            table(("Item", "Value"), facts),
            table(
                ("Prior (the name priors= takes)", "Governs", "Scale"),
                priors,
                caption="Prior scales in standardized units (see proxyscope.Priors).",
            ),
            *periods_table(doc),
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
    blocks.append(table(("Check", "Value"), facts))
    worst = d["worst_parameters"]
    blocks.append(
        table(
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
    blocks.extend(figure_blocks(doc, "diagnostics"))
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
            table(
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
            *period_blocks(doc, "coefficients"),
            table((f"Parameter ({head})", f"Mean [{level} interval]"), mix_rows),
            *per_segment,
            *figure_blocks(doc, "coefficients"),
        ),
    )

"""Plain-text and Markdown renderings of run results and tables (CLI and ``run.md``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from proxyscope import dims
from proxyscope._format import interval, num, pct
from proxyscope.reporting.sensitivity import sensitivity_reading as reading_of_sensitivity
from proxyscope.run.text_time import (
    ROLLING_TITLE,
    change_rows,
    path_rows,
    period_line,
    rolling_rows,
    stability_title,
)

if TYPE_CHECKING:
    from proxyscope.data.cells import CellEffects
    from proxyscope.run.result import RunResult


def _two(x: Any) -> str:
    return num(x, 2)


ASOS_CITATION_HINT = "Cite the data wherever these results are shown:"


def text_table(frame: pd.DataFrame, indent: str = "  ") -> str:
    """A frame as aligned text (numbers to 3 significant digits)."""
    shown = frame.copy()
    for c in shown.columns:
        if pd.api.types.is_float_dtype(shown[c]):
            shown[c] = [num(v) for v in shown[c]]
    text = shown.to_string(index=False)
    return "\n".join(indent + line.rstrip() for line in text.splitlines())


def markdown_table(frame: pd.DataFrame) -> str:
    """A frame as a GitHub-flavoured Markdown table."""
    cols = [str(c) for c in frame.columns]

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return num(v)
        if isinstance(v, list | tuple):
            return "; ".join(str(x) for x in v)
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines)


# -- pieces of a run's summary ------------------------------------------------


def coefficient_rows(coefficients: pd.DataFrame) -> pd.DataFrame:
    """The historical-mix rows of a coefficient table as ``parameter``, ``estimate``."""
    c = coefficients
    c = c[c["scope"] == dims.HISTORICAL_MIX]
    return pd.DataFrame(
        {
            "parameter": c["parameter"].to_numpy(),
            "estimate": [
                interval(m, lo, hi) for m, lo, hi in zip(c["mean"], c["lo"], c["hi"], strict=True)
            ],
        }
    )


def recommendation_rows(result: RunResult) -> pd.DataFrame:
    """Per candidate: the gain of its calibrated rule over deciding with no proxy (the
    ranking), the three rules' shares decided right, P(best), STE, fragile segments."""
    r = result.recommendations

    def spans(stem: str, lo: str, hi: str) -> list[str]:
        return [interval(m, a, b) for m, a, b in zip(r[stem], r[lo], r[hi], strict=True)]

    return pd.DataFrame(
        {
            "proxy": r["proxy"],
            "gain_over_no_proxy": spans("gain", "gain_lo", "gain_hi"),
            "calibrated_rule": spans("calibrated_accuracy", "calibrated_lo", "calibrated_hi"),
            "naive_rule": spans("decision_accuracy", "decision_lo", "decision_hi"),
            "no_proxy": [num(v) for v in r["no_proxy_accuracy"]],
            "credible": ["yes" if v else "no" for v in r["credible"]],
            "p_best": [num(v, 2) for v in r["p_best"]],
            "ste": [num(v) for v in r["ste"]],
            "fragile_segments": [len(v) for v in r["fragile_segments"]],
        }
    )


def surrogacy_rows(result: RunResult) -> pd.DataFrame:
    s = result.surrogacy
    s = s[s["segment"] == "overall"]
    return pd.DataFrame(
        {
            "scope": s["scope"],
            "r2": [
                interval(m, lo, hi)
                for m, lo, hi in zip(s["r2"], s["r2_lo"], s["r2_hi"], strict=True)
            ],
            "ste": [num(v) for v in s["ste"]],
        }
    )


def flagged_lines(result: RunResult, limit: int = 8) -> list[str]:
    f = result.fragility
    f = f[f["flagged"]].sort_values("flip_prob", ascending=False)
    lines = [
        f"{row.segment}: {row.proxy} flips with probability "
        f"{interval(row.flip_prob, row.flip_lo, row.flip_hi, _two)} "
        f"(overall {num(row.overall_flip, 2)})"
        for row in f.head(limit).itertuples()
    ]
    if len(f) > limit:
        lines.append(f"... and {len(f) - limit} more (see the report)")
    return lines


def transport_lines(result: RunResult) -> list[str]:
    tr = result.transport
    if tr is None:
        return []
    s = tr.summary()
    by = {row.quantity: row for row in s.itertuples()}
    eff, gap, r2 = by["long_term_effect"], by["gap_to_historical"], by["r2"]
    lines = [
        f"long-term effect of a new experiment: {interval(eff.mean, eff.lo, eff.hi)}, "
        f"P(> 0) = {num(by['p_positive'].mean, 2)}",
        f"gap to the historical mix: {interval(gap.mean, gap.lo, gap.hi)}; "
        f"R^2 under the target mix {interval(r2.mean, r2.lo, r2.hi, _two)}",
    ]
    if result.transport_truth is not None:
        lines.append(
            f"the simulator's exact expected long-term effect for this mix: "
            f"{num(result.transport_truth)}"
        )
    n_ext = int(tr.target["extrapolated"].sum())
    if n_ext:
        lines.append(
            f"{n_ext} target segment cell(s) were never observed; predicted from the pooled "
            "main effects"
        )
    return lines


def sensitivity_rows(result: RunResult) -> pd.DataFrame | None:
    s = result.sensitivity
    if s is None:
        return None
    return pd.DataFrame(
        {
            "correlation": [num(v, 2) for v in s["correlation"]],
            "scope": s["scope"],
            "proxy": s["proxy"],
            "r2": [
                interval(m, lo, hi)
                for m, lo, hi in zip(s["r2"], s["r2_lo"], s["r2_hi"], strict=True)
            ],
            "slope": [
                interval(m, lo, hi)
                for m, lo, hi in zip(s["slope"], s["slope_lo"], s["slope_hi"], strict=True)
            ],
            "decision_accuracy": [
                interval(m, lo, hi)
                for m, lo, hi in zip(
                    s["decision_accuracy"], s["decision_lo"], s["decision_hi"], strict=True
                )
            ],
            "converged": ["yes" if v else "NO" for v in s["converged"]],
        }
    )


def sensitivity_reading(result: RunResult) -> str | None:
    """One sentence per proxy: how the overall numbers move across the assumptions."""
    s = result.sensitivity
    return None if s is None else reading_of_sensitivity(s)


def diagnostics_line(result: RunResult) -> str:
    head = result.diagnostics.summary()
    if not result.fit.trustworthy:
        head = "WARNING: the fit FAILED its diagnostics; every number below is untrustworthy. " + (
            head
        )
    return head


def designs_line(effects: CellEffects) -> str | None:
    """The cells per design ("cluster: 40 cells, did: 12 cells"), or None for a history
    of user-randomized A/B tests only."""
    if effects.designs == ["ab"]:
        return None
    counts = pd.Series(effects.design).value_counts()
    return ", ".join(f"{d}: {int(counts[d])} cells" for d in effects.designs)


def run_text(result: RunResult) -> str:
    """What ``proxyscope run`` and ``demo`` print."""
    spec = result.spec
    ci = pct(spec.analysis.ci)
    eff = result.effects
    out: list[str] = [
        f"proxyscope {spec.name}: {eff.n_cells} cells from {len(eff.experiments)} experiments, "
        f"outcome {eff.outcome!r}, proxies {', '.join(eff.proxies)}; "
        f"{result.fit.pooling} pooling.",
    ]
    if eff.assumed_correlation:
        shown = ", ".join(f"{k}: {v:g}" for k, v in eff.assumed_correlation.items())
        out.append(f"Assumed noise correlation (not in the data): {shown}.")
    if designs_line(eff):
        out.append(f"Designs: {designs_line(eff)}.")
    if period_line(result):
        out.append(str(period_line(result)))
    out += ["", "Diagnostics: " + diagnostics_line(result)]
    if result.failed_fits:
        out.append("Fits that failed their diagnostics: " + ", ".join(result.failed_fits) + ".")
    out += [
        "",
        f"Coefficients, all segments (historical mix){_in_period(result)}, {ci} intervals:",
        text_table(coefficient_rows(result.coefficients)),
        "",
        f"Surrogacy (trial-level R^2, {ci} intervals; STE at {pct(spec.analysis.probability)}):",
        text_table(surrogacy_rows(result)),
        "",
        "Fragile segments (flagged):",
    ]
    flagged = flagged_lines(result)
    out += ["  " + line for line in flagged] if flagged else ["  none"]
    out += [
        "",
        f"Recommendation ({ci} intervals):",
        text_table(recommendation_rows(result)),
        "  -> " + str(result.recommendations["recommendation"].iloc[0]),
    ]
    if result.transport is not None:
        assert spec.analysis.transport is not None
        out += ["", f"Transport to {spec.analysis.transport.name!r}:"]
        out += ["  " + line for line in transport_lines(result)]
    if result.stability is not None:
        out += ["", stability_title(result.stability) + ":"]
        out += ["  " + line for line in result.stability.readings]
        out += ["  Slope per period (global):", text_table(path_rows(result.stability), "    ")]
        out += ["  Changes:", text_table(change_rows(result.stability), "    ")]
    if result.rolling is not None:
        out += ["", ROLLING_TITLE + ":", text_table(rolling_rows(result.rolling))]
        out.append("  " + result.rolling.verdict())
    for key, cmp in result.comparisons.items():
        title = "Pooling comparison" if key == "pooling" else "Proxy-set comparison"
        out += ["", f"{title} (PSIS-LOO, {cmp.kind}):", text_table(_loo_rows(cmp.table))]
        out.append("  " + cmp.reading())
    sens = sensitivity_rows(result)
    if sens is not None:
        out += [
            "",
            f"Sensitivity to the assumed noise correlation ({ci} intervals):",
            text_table(sens),
            "  " + str(sensitivity_reading(result)),
        ]
    out.append("")
    if result.report_dir is not None:
        out.append(f"Report: {result.report_dir / 'report.html'} (and report.md, report.json)")
    out.append(f"Run summary: {result.out / 'run.md'} and run.json; fit: {result.files['fit']}")
    if spec.citation:
        out += ["", f"{ASOS_CITATION_HINT} {spec.citation}"]
    return "\n".join(out) + "\n"


def _in_period(result: RunResult) -> str:
    """ ", in period 2024-Q4" for the coefficients of a fit with time (its latest period's)."""
    period = result.coefficients.attrs.get("period")
    return f", in period {period}" if period is not None else ""


def _loo_rows(table: pd.DataFrame) -> pd.DataFrame:
    t = table.reset_index(names="model")
    keep = [
        c
        for c in (
            "model",
            "rank",
            "elpd_loo",
            "elpd_diff",
            "dse",
            "weight",
            "n_high_k",
            "n_refitted",
        )
        if c in t.columns
    ]
    return t[keep]


def run_markdown(result: RunResult) -> str:
    """``run.md``: the run's findings as Markdown."""
    spec = result.spec
    ci = pct(spec.analysis.ci)
    title = spec.report.title or f"proxyscope run: {spec.name}"
    eff = result.effects
    lines = [f"# {title}", ""]
    if spec.description:
        lines += [spec.description, ""]
    if not result.fit.trustworthy:
        lines += [
            "> **WARNING: the main fit failed its convergence diagnostics. Treat every "
            "number below as untrustworthy.**",
            "",
        ]
    elif not result.passed:
        lines += [
            "> **WARNING: these fits failed their convergence diagnostics: "
            f"{', '.join(result.failed_fits)}. The main fit passed; the numbers that come "
            "from the failed fits (their comparison or sensitivity rows) are untrustworthy.**",
            "",
        ]
    lines += [
        f"- Data: {eff.n_cells} cells from {len(eff.experiments)} experiments "
        f"({len(eff.dropped)} cells dropped); outcome `{eff.outcome}`, proxies "
        + ", ".join(f"`{p}`" for p in eff.proxies),
        f"- Model: {result.fit.pooling} pooling; sampler {result.fit.sampler.get('name')}, "
        f"{spec.sampler.chains} chains x {spec.sampler.draws} draws",
        f"- Intervals: {ci} equal-tailed",
    ]
    if eff.assumed_correlation:
        shown = ", ".join(f"{k}: {v:g}" for k, v in eff.assumed_correlation.items())
        lines.append(f"- Assumed noise correlation (not in the data): {shown}")
    if designs_line(eff):
        lines.append(f"- Designs: {designs_line(eff)}")
    if period_line(result):
        lines.append(f"- {period_line(result)}")
    lines += ["", "## Diagnostics", "", diagnostics_line(result), ""]
    lines += [
        f"## Coefficients (historical mix){_in_period(result)}",
        "",
        markdown_table(coefficient_rows(result.coefficients)),
        "",
    ]
    lines += ["## Surrogacy", "", markdown_table(surrogacy_rows(result)), ""]
    flagged = flagged_lines(result, limit=50)
    lines += ["## Fragile segments", ""]
    lines += [f"- {x}" for x in flagged] if flagged else ["None flagged."]
    lines += ["", "## Recommendation", "", markdown_table(recommendation_rows(result)), ""]
    lines += [str(s) for s in result.recommendations["recommendation"].head(1)] + [""]
    if result.transport is not None:
        assert spec.analysis.transport is not None
        lines += [f"## Transport to {spec.analysis.transport.name!r}", ""]
        lines += [f"- {x}" for x in transport_lines(result)] + [""]
    if result.stability is not None:
        lines += [f"## {stability_title(result.stability)}", ""]
        lines += [f"- {x}" for x in result.stability.readings] + [""]
        lines += [markdown_table(path_rows(result.stability)), ""]
        lines += [markdown_table(change_rows(result.stability)), ""]
    if result.rolling is not None:
        lines += [f"## {ROLLING_TITLE}", "", markdown_table(rolling_rows(result.rolling)), ""]
        lines += [result.rolling.verdict(), ""]
    for key, cmp in result.comparisons.items():
        title_c = "Pooling comparison" if key == "pooling" else "Proxy-set comparison"
        lines += [f"## {title_c} (PSIS-LOO, {cmp.kind})", ""]
        lines += [markdown_table(_loo_rows(cmp.table)), "", cmp.reading(), ""]
    sens = sensitivity_rows(result)
    if sens is not None:
        lines += ["## Sensitivity to the assumed noise correlation", ""]
        lines += [markdown_table(sens), "", str(sensitivity_reading(result)), ""]
    if spec.citation:
        lines += ["## Data citation", "", spec.citation, ""]
    return "\n".join(lines)


def columns_text(values: Sequence[str]) -> str:
    return ", ".join(repr(v) for v in values)

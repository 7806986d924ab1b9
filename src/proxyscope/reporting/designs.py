"""The report's section on designs: which estimates may be biased and what that does.

A history of user-randomized A/B tests only has no such section (``designs``
is null in report.json). Otherwise :func:`proxyscope.analyses.designs.design_bias`
gives the table of designs, each non-randomized design's learned bias
(Sigma_d: sd per metric next to its cells' sampling sd, and the correlation of
the outcome's bias with each proxy's) and, when refitted, the slopes without
each design. This module turns it into its report.json section and report
section, with each design's own diagnostics (:mod:`proxyscope.reporting.design_diagnostics`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from proxyscope._format import interval, num
from proxyscope.reporting.blocks import Block, Para, Section, table
from proxyscope.reporting.design_diagnostics import diagnostics_doc
from proxyscope.reporting.document import jsonable

if TYPE_CHECKING:
    from proxyscope.analyses.designs import DesignReport
    from proxyscope.data.cells import CellEffects


def designs_doc(
    report: DesignReport | None, effects: CellEffects | None = None
) -> dict[str, Any] | None:
    """The ``designs`` section of report.json (None for A/B tests only).

    With the fit's ``effects``, ``diagnostics`` holds each design's own checks
    from the cells' metadata (:func:`~proxyscope.reporting.design_diagnostics.diagnostics_doc`).
    """
    if report is None:
        return None

    def rows(frame: Any) -> list[dict[str, Any]]:
        return [{str(k): jsonable(v) for k, v in row.items()} for row in frame.to_dict("records")]

    designs = rows(report.designs)
    for row in designs:
        row["randomized"] = bool(row["randomized"])
    slopes = rows(report.slopes)
    for row in slopes:
        row["trustworthy"] = bool(row["trustworthy"])
    out = {
        "ci": report.ci,
        "reading": report.reading(),
        "designs": designs,
        "bias": rows(report.bias),
        "correlation": rows(report.correlation),
        "slopes": slopes,
    }
    if effects is not None:
        out["diagnostics"] = diagnostics_doc(effects)
    return out


def designs_section(doc: Mapping[str, Any]) -> Section | None:
    """The report's section: the designs, their bias and the slopes without each."""
    d = doc.get("designs")
    if d is None:
        return None
    blocks: list[Any] = [
        Para(
            "Randomized designs (ab, cluster) are taken as unbiased estimates of each cell's "
            "effect. Every other design d gets a bias b_c ~ N(0, Sigma_d) per cell with a full "
            "covariance across the outcome and the proxies (confounding tends to move them "
            "together), learned from the data and integrated out: it adds Sigma_d to the "
            "cells' sampling covariance, so a design whose estimates scatter more than their "
            "noise allows counts for less."
        ),
        Para(d["reading"]),
        table(
            ("design", "cells", "experiments", "taken as", "experiments with a shared error"),
            [
                (
                    r["design"],
                    str(r["cells"]),
                    str(r["experiments"]),
                    "unbiased" if r["randomized"] else "may be biased",
                    str(r.get("shared_error_experiments", 0)),
                )
                for r in d["designs"]
            ],
        ),
    ]
    if d["bias"]:
        blocks.append(
            table(
                ("design", "metric", "bias sd", "cells' sampling sd (median)"),
                [
                    (
                        r["design"],
                        r["metric"],
                        interval(r["mean"], r["lower"], r["upper"], num),
                        num(r["noise_sd"]),
                    )
                    for r in d["bias"]
                ],
                caption=f"Sigma_d: sd of each design's bias ({round(100 * d['ci'])}% intervals)",
            )
        )
        blocks.append(
            table(
                ("design", "proxy", "correlation of outcome and proxy bias"),
                [
                    (r["design"], r["proxy"], interval(r["mean"], r["lower"], r["upper"], num))
                    for r in d["correlation"]
                ],
            )
        )
    if len({r["fit"] for r in d["slopes"]}) > 1:
        blocks.append(
            table(
                ("proxy", "fit", "slope", "shift", "fit passed"),
                [
                    (
                        r["proxy"],
                        r["fit"],
                        interval(r["mean"], r["lower"], r["upper"], num),
                        num(r["shift"]),
                        "yes" if r["trustworthy"] else "NO",
                    )
                    for r in d["slopes"]
                ],
                caption="How far each design moves the slopes: refits without its experiments",
            )
        )
    blocks += diagnostics_blocks(d.get("diagnostics") or {})
    return Section("designs", "Designs: which estimates may be biased", tuple(blocks))


# -- each design's diagnostics: designs.diagnostics -> blocks -----------------------

#: Rows a diagnostics table shows; the rest are counted ("k more cells").
MAX_ROWS = 10

Row = Mapping[str, Any]


def _yes(flag: Any) -> str:
    return "YES" if flag else "no"


def _pair(a: Any, b: Any, sep: str = " / ") -> str:
    return f"{num(a)}{sep}{num(b)}"


def _with(value: Any, what: Any) -> str:
    return "n/a" if value is None else f"{num(value)} ({what})"


#: Per design: caption, columns, one row's cells, and the row's flag with its column (marked).
TABLES: dict[
    str, tuple[str, tuple[str, ...], Callable[[Row], tuple[str, ...]], tuple[str, str] | None]
] = {
    "cluster": (
        "cluster: experiment-variance inflation per metric (medians over experiments)",
        ("part", "metric", "inflation", "left after the shared error"),
        lambda r: (str(r["part"]), r["metric"], num(r["inflation"]), num(r["unexplained"])),
        None,
    ),
    "did": (
        "did: pre-trend check per cell, smallest p first",
        ("experiment", "segment", "treated / comparison units", "pre-trend p", "metric", "fails"),
        lambda r: (
            r["experiment"],
            r["segment"],
            _pair(r["treated_units"], r["comparison_units"]),
            num(r["p"]),
            str(r["metric"] or "n/a"),
            _yes(r["failing"]),
        ),
        ("failing", "fails"),
    ),
    "rdd": (
        "rdd: bandwidth, density check and bandwidth sensitivity per cell, failing and most "
        "sensitive first; largest move in standard errors at the chosen bandwidth",
        (
            "experiment",
            "segment",
            "bandwidth",
            "rows below / above",
            "density p (Holm)",
            "fails",
            "largest move (SE)",
            "outcome at 0.5-2x",
        ),
        lambda r: (
            r["experiment"],
            r["segment"],
            num(r["bandwidth"]),
            _pair(r["n_below"], r["n_above"]),
            num(r["density_p_holm"]),
            _yes(r["failing"]),
            _with(r["shift"], f"{r['shift_metric']}, {num(r['shift_factor'])}x"),
            _pair(r["outcome_min"], r["outcome_max"], " to "),
        ),
        ("failing", "fails"),
    ),
    "ipw": (
        "ipw: overlap and balance per cell, worst overlap first",
        (
            "experiment",
            "segment",
            "propensity treated",
            "propensity control",
            "ESS treated",
            "ESS control",
            "share outside band",
            "max |SMD| after",
            "poor overlap",
        ),
        lambda r: (
            r["experiment"],
            r["segment"],
            _pair(r["treated_min"], r["treated_max"], "-"),
            _pair(r["control_min"], r["control_max"], "-"),
            num(r["ess_treated"]),
            num(r["ess_control"]),
            num(r["share_outside"]),
            _with(r["max_smd"], r["smd_covariate"]),
            _yes(r["poor_overlap"]),
        ),
        ("poor_overlap", "poor overlap"),
    ),
    "synthetic_control": (
        "synthetic_control: pre-launch fit of the outcome per cell, poor fits and worst "
        "RMSE-to-gap first",
        (
            "experiment",
            "segment",
            "donors (effective)",
            "pre-launch RMSE",
            "gap",
            "RMSE / |gap|",
            "placebo p",
            "poor fit",
            "converged",
        ),
        lambda r: (
            r["experiment"],
            r["segment"],
            f"{num(r['n_donors'])} ({num(r['effective_donors'])})",
            num(r["pre_rmse"]),
            num(r["gap"]),
            num(r["rmse_to_gap"]),
            num(r["p_value"]),
            _yes(r["poor_fit"]),
            "yes" if r["converged"] else "NO",
        ),
        ("poor_fit", "poor fit"),
    ),
}


def diagnostics_blocks(diagnostics: Mapping[str, Any]) -> list[Block]:
    """Per design: its one-line reading and its table (at most :data:`MAX_ROWS` rows)."""
    blocks: list[Block] = []
    for design, d in diagnostics.items():
        caption, columns, cells, flag = TABLES[design]
        blocks.append(Para(f"{design}: {d['reading']}"))
        rows, shown = list(d["rows"]), list(d["rows"])[:MAX_ROWS]
        if not shown:
            continue
        body = [cells(r) for r in shown]
        if design == "cluster" and len({r["part"] for r in rows}) == 1:
            columns, body = columns[1:], [b[1:] for b in body]
        key, at = (None, -1) if flag is None else (flag[0], columns.index(flag[1]))
        marked = [[j == at and bool(r[key]) for j in range(len(columns))] for r in shown]
        more = len(rows) - len(shown)
        if more:
            noun = "row" if design == "cluster" else "cell"
            caption += f"; {more} more {noun}{'s' if more > 1 else ''} in report.json"
        blocks.append(table(columns, body, marked=marked, caption=caption))
    return blocks

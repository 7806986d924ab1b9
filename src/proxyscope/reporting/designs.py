"""The report's section on designs: which estimates may be biased and what that does.

A history of user-randomized A/B tests only has no such section (``designs``
is null in report.json). Otherwise :func:`proxyscope.analyses.designs.design_bias`
gives the table of designs, each non-randomized design's learned bias
(Sigma_d: sd per metric next to its cells' sampling sd, and the correlation of
the outcome's bias with each proxy's) and, when refitted, the slopes without
each design. This module turns it into its report.json section and report
section.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from proxyscope._format import interval, num
from proxyscope.reporting.blocks import Para, Section, table
from proxyscope.reporting.document import jsonable

if TYPE_CHECKING:
    from proxyscope.analyses.designs import DesignReport


def designs_doc(report: DesignReport | None) -> dict[str, Any] | None:
    """The ``designs`` section of report.json (None for A/B tests only)."""
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
    return {
        "ci": report.ci,
        "reading": report.reading(),
        "designs": designs,
        "bias": rows(report.bias),
        "correlation": rows(report.correlation),
        "slopes": slopes,
    }


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
    return Section("designs", "Designs: which estimates may be biased", tuple(blocks))

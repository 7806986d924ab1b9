"""The report's "Past experiments" part: its report.json section and its content.

What the model learned, shown on the data it learned from (see
:mod:`proxyscope.analyses.relation`): the figure of each past experiment's proxy
estimate against its long-term estimate with the fitted relation, and the posterior
predictive check of every experiment's long-term estimate given its proxy estimates.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from proxyscope._format import interval, num, pct
from proxyscope.reporting.blocks import Para, Section, figure_blocks, prob, table
from proxyscope.reporting.document import jsonable, with_period
from proxyscope.reporting.stability import period_blocks

if TYPE_CHECKING:
    from proxyscope.analyses.relation import Relation

#: Figures of this part, in the order shown.
FIGURES = ("relation", "predictive_check")


def past_experiments_doc(relation: Relation) -> dict[str, Any]:
    """The ``past_experiments`` section of report.json."""
    check = relation.check
    out: dict[str, Any] = {
        "ci": float(relation.ci),
        "reading": relation.reading(),
        "n_experiments": len(check),
        "n_inside": int(check["inside"].sum()),
        "coverage": float(relation.coverage),
        "rows": [
            {
                "experiment": str(r.experiment),
                "y": jsonable(r.y),
                "pred_mean": jsonable(r.pred_mean),
                "pred_lo": jsonable(r.pred_lo),
                "pred_hi": jsonable(r.pred_hi),
                "pit": jsonable(r.pit),
                "inside": bool(r.inside),
            }
            for r in check.itertuples()
        ],
        "figures": list(FIGURES),
    }
    return with_period(out, relation.period)


def past_experiments_section(doc: Mapping[str, Any]) -> Section:
    """The report's section: the figure, the check's reading, the experiments outside."""
    p = doc["past_experiments"]
    outside = [r for r in p["rows"] if not r["inside"]]
    blocks: list[Any] = [
        Para(
            "Each past experiment's estimated proxy effect against its estimated long-term "
            "effect (user-weighted over its segment cells, with error bars), the relation "
            "the model learned for the historical mix with its band, and, dashed in red, "
            "the relation in segments flagged fragile. A proxy worth deciding on puts the "
            "experiments along a line that crosses zero where the long-term effect does."
        ),
        *period_blocks(doc, "past_experiments"),
        *figure_blocks(doc, "relation"),
        Para(p["reading"]),
        *figure_blocks(doc, "predictive_check"),
    ]
    if outside:
        blocks.append(
            table(
                ("Experiment", "Long-term estimate", f"Predicted [{pct(p['ci'])}]", "PIT"),
                [
                    (
                        r["experiment"],
                        num(r["y"]),
                        interval(r["pred_mean"], r["pred_lo"], r["pred_hi"]),
                        prob(r["pit"]),
                    )
                    for r in outside
                ],
                caption="Past experiments outside their predictive interval.",
            )
        )
    return Section("past_experiments", "Past experiments and the learned relation", tuple(blocks))

"""The report's "Stability over time" part (DESIGN.md §9): its report.json section and
its content, for a fit whose relation moves over periods (``ProxyModel(time=...)``).

The section shows what :func:`proxyscope.stability` found: one reading per proxy
(has its link to the outcome weakened or strengthened between two periods, and how
sure the model is), each proxy's slope per period with its interval and the forecast
one period ahead, the changes between the compared periods with P(changed), and the
figure :func:`proxyscope.reporting.plots.plot_stability`. A static fit has no such
section (``stability`` is null in report.json).

It also says, for every analysis section, which period that analysis describes
(:func:`period_blocks`): a fit with time is read in one period, the latest by default.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from proxyscope._format import interval, num, pct
from proxyscope.errors import DataTypeError, ParameterError
from proxyscope.reporting.blocks import Block, Bullets, Para, Section, figure_blocks, prob, table
from proxyscope.reporting.document import jsonable

if TYPE_CHECKING:
    from proxyscope.analyses.stability import Stability
    from proxyscope.model.fit import ProxyFit

#: Columns of the stability's tables, as report.json carries them.
PATH_COLUMNS = ("proxy", "segment", "period", "mean", "lower", "upper", "forecast")
CHANGE_COLUMNS = (
    "proxy",
    "segment",
    "from_period",
    "to_period",
    "change",
    "change_lower",
    "change_upper",
    "relative",
    "relative_lower",
    "relative_upper",
    "p_changed",
    "direction",
)


def resolve_stability(
    fit: ProxyFit, given: Any, ci: float, random_seed: int | None
) -> Stability | None:
    """The stability the report shows: ``given`` (checked), or for a fit with time over
    at least two periods :func:`proxyscope.stability` at ``ci``; None for a static fit.

    Raises
    ------
    DataTypeError
        ``given`` is not a Stability.
    ParameterError
        ``given`` for a static fit, or at another ``ci``.
    """
    from proxyscope.analyses.stability import Stability, stability

    periods = fit.info.periods
    if given is None:
        return stability(fit, ci=ci, random_seed=random_seed) if len(periods) >= 2 else None
    if not isinstance(given, Stability):
        raise DataTypeError(
            "The 'stability' parameter of report must be what proxyscope.stability returned; "
            f"got {type(given).__name__}."
        )
    if not periods:
        raise ParameterError(
            "The 'stability' parameter of report needs a fit with time (ProxyModel(time=...)); "
            "this fit is static."
        )
    known = given.paths[~given.paths["forecast"].astype(bool)]
    if list(dict.fromkeys(known["period"])) != list(periods) or list(
        dict.fromkeys(known["proxy"])
    ) != list(fit.proxies):
        raise ParameterError(
            "The 'stability' parameter of report was computed for another fit: its periods "
            f"and proxies are {list(dict.fromkeys(known['period']))} and "
            f"{list(dict.fromkeys(known['proxy']))}, the fit's {list(periods)} and "
            f"{list(fit.proxies)}."
        )
    if not np.isclose(given.ci, ci):
        raise ParameterError(
            f"The 'stability' parameter of report was computed at ci={given.ci:g}, the report "
            f"at ci={ci:g}; pass ci={given.ci:g} to report, or compute "
            f"proxyscope.stability(fit, ci={ci:g})."
        )
    return given


def periods_doc(fit: ProxyFit) -> list[dict[str, Any]] | None:
    """``model.periods`` of report.json: the fit's periods with the experiments that
    started in each; None for a static fit (whose model section has no such key)."""
    from proxyscope.analyses.relation import experiment_periods

    if not fit.info.periods:
        return None
    started = experiment_periods(fit) or []
    return [
        {"period": str(p), "n_experiments": sum(s == p for s in started)} for p in fit.info.periods
    ]


def stability_doc(result: Stability | None, period: str | None) -> dict[str, Any] | None:
    """The ``stability`` section of report.json (None without a stability analysis);
    ``period`` is the period the report's analyses describe."""
    if result is None:
        return None

    def rows(frame: Any, columns: Sequence[str]) -> list[dict[str, Any]]:
        return [
            {c: jsonable(v) for c, v in zip(columns, values, strict=True)}
            for values in frame[list(columns)].itertuples(index=False, name=None)
        ]

    paths = rows(result.paths, PATH_COLUMNS)
    for row in paths:
        row["forecast"] = bool(row["forecast"])
    return {
        "ci": float(result.ci),
        "probability": float(result.probability),
        "period": period,
        "readings": [str(r) for r in result.readings],
        "paths": paths,
        "changes": rows(result.changes, CHANGE_COLUMNS),
        "figure": "stability",
    }


def _percent(x: Any) -> str:
    return "n/a" if x is None else f"{100 * float(x):+.0f}%"


def stability_section(doc: Mapping[str, Any]) -> Section | None:
    """The report's section: the readings, the figure, the slopes per period and the
    changes between the compared periods."""
    s = doc.get("stability")
    if s is None:
        return None
    level = pct(s["ci"])
    paths = s["paths"]
    top = paths[0]["segment"]
    periods = list(dict.fromkeys(r["period"] for r in paths))
    proxies = list(dict.fromkeys(r["proxy"] for r in paths))
    segments = list(dict.fromkeys(r["segment"] for r in paths))
    by = {(r["proxy"], r["segment"], r["period"]): r for r in paths}

    def cell(proxy: str, segment: str, period: str) -> str:
        r = by.get((proxy, segment, period))
        return "n/a" if r is None else interval(r["mean"], r["lower"], r["upper"])

    blocks: list[Block] = [
        Para(
            "The relation between the proxies and the long-term outcome was allowed to move "
            "between periods (a random walk with learned step sizes and a steady drift). "
            f"Each proxy's slope per period is shown with its {level} equal-tailed interval, "
            "and one period ahead as a forecast (the drift and the walk's next step, so a "
            "wider interval). A change "
            "between two periods is the later slope minus the earlier one (the same for "
            "every segment); P(changed) is the posterior probability of its more likely "
            "sign (0.5: no evidence either way), and a change is called clear from "
            f"{s['probability']:g}. The analyses above describe period {s['period']}."
        ),
        Bullets(tuple(s["readings"])),
        *figure_blocks(doc, "stability"),
        table(
            ("Proxy", *[f"{p} [{level}]" for p in periods]),
            [(proxy, *[cell(proxy, top, p) for p in periods]) for proxy in proxies],
            caption=f"Slope per period: {top}; the last column is the forecast.",
        ),
    ]
    if len(segments) > 1:
        blocks.append(
            table(
                ("Segment", "Proxy", *[f"{p} [{level}]" for p in periods]),
                [
                    (segment, proxy, *[cell(proxy, segment, p) for p in periods])
                    for segment in segments[1:]
                    for proxy in proxies
                ],
                caption="Slope per period in each segment.",
            )
        )
    changes = s["changes"]
    blocks.append(
        table(
            (
                "Proxy",
                "Segment",
                "From",
                "To",
                f"Change of the slope [{level}]",
                f"Relative change [{level}]",
                "P(changed)",
                "Direction",
            ),
            [
                (
                    r["proxy"],
                    r["segment"],
                    r["from_period"],
                    r["to_period"],
                    interval(r["change"], r["change_lower"], r["change_upper"]),
                    "n/a"
                    if r["relative"] is None
                    else interval(
                        r["relative"], r["relative_lower"], r["relative_upper"], _percent
                    ),
                    prob(r["p_changed"]),
                    r["direction"],
                )
                for r in changes
            ],
            [[False] * 6 + [r["p_changed"] >= s["probability"], False] for r in changes],
            caption="Relative change: the change over the earlier slope (median and "
            "interval over draws); n/a where the earlier slope's interval holds 0. "
            "Clear changes are marked.",
        )
    )
    return Section("stability", "Stability over time", tuple(blocks))


def period_blocks(doc: Mapping[str, Any], key: str) -> list[Block]:
    """For a fit with time, a note saying which period the analysis ``key`` of the
    document describes; nothing for a static fit."""
    part = doc.get(key)
    period = part.get("period") if isinstance(part, Mapping) else None
    if period is None:
        return []
    periods = list(doc["model"].get("periods") or [])
    labels = [p["period"] for p in periods]
    which = " (the latest)" if labels and period == labels[-1] else ""
    return [
        Para(
            f"Period described: {period}{which} of {len(labels)}; the relation moves over "
            "time (see Stability over time). Another period: period= in Python, --period "
            "on the command line, [analysis].period in a spec.",
            "note",
        )
    ]


def periods_table(doc: Mapping[str, Any]) -> list[Block]:
    """The fit's periods with their experiments (the model section); nothing for a
    static fit."""
    periods = doc["model"].get("periods")
    if not periods:
        return []
    return [
        table(
            ("Period", "Experiments started"),
            [(p["period"], num(p["n_experiments"])) for p in periods],
            caption="Periods of the relation over time; a period without experiments is "
            "interpolated by the walk.",
        )
    ]

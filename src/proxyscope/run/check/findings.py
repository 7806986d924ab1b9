"""What a data check found (:class:`CheckResult`), how it is printed, and the
last step every check shares: building the cells for real (:func:`confirm`)."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from typing import Any

from proxyscope.errors import ProxyscopeError, suggestion

#: How many offending values a problem lists before "and N more".
SHOW = 8


@dataclasses.dataclass
class CheckResult:
    """What :func:`check_data` found.

    ``problems``: what makes the data unusable as the spec says (empty when
    OK); ``notes``: what will be dropped or assumed; ``facts``: counts.
    """

    source: str
    problems: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    facts: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "source": self.source,
            "problems": self.problems,
            "notes": self.notes,
            "facts": self.facts,
        }


def confirm(result: CheckResult, build: Any, then: Any = None) -> None:
    """Build the cells for real; record kept and dropped cells, or the error; then run
    ``then(effects)``, the checks that need the cells (its errors are problems too)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            effects = build()
        except (ProxyscopeError, ValueError, TypeError, KeyError) as exc:
            result.problems.append(lower_first(str(exc)))
            return
    result.facts["cells"] = effects.n_cells
    result.facts["experiments with cells"] = len(effects.experiments)
    result.facts["segment cells"] = len(set(effects.segment_label))
    dropped = effects.dropped
    if len(dropped):
        reasons = dropped["reason"].value_counts()
        shown = "; ".join(f"{n} {r}" for r, n in reasons.items())
        result.notes.append(f"{len(dropped)} cell(s) will be dropped: {shown}.")
    if effects.assumed_correlation:
        shown = ", ".join(f"{k}: {v:g}" for k, v in effects.assumed_correlation.items())
        result.notes.append(f"assumed noise correlation (not in the data): {shown}.")
    if effects.has_time:
        _report_periods(result, effects)
    for w in caught:
        text = str(w.message)
        if "dropped" in text and "cells" in text:
            continue  # already said above
        result.notes.append(lower_first(text))
    if then is not None:
        try:
            then(effects)
        except (ProxyscopeError, ValueError, TypeError, KeyError) as exc:
            result.problems.append(lower_first(str(exc)))


def _report_periods(result: CheckResult, effects: Any) -> None:
    """The periods the experiments' starts fall in (a fact), and those without any (a note)."""
    periods = list(effects.periods)
    grouping = effects.meta["time"]["grouping"]
    span = periods[0] if len(periods) == 1 else f"{periods[0]} to {periods[-1]}"
    result.facts["periods"] = f"{len(periods)} by {grouping}, {span}"
    used = set(effects.period_index.tolist())
    empty = [p for i, p in enumerate(periods) if i not in used]
    if empty:
        more = f" and {len(empty) - SHOW} more" if len(empty) > SHOW else ""
        result.notes.append(
            f"{len(empty)} period(s) hold no experiment (listed, so a model over periods "
            f"interpolates them): {', '.join(empty[:SHOW])}{more}."
        )


def missing_columns(
    result: CheckResult, roles: Sequence[tuple[str, Any]], have: Sequence[str]
) -> bool:
    """A problem for every (role, column) of ``roles`` not among the table's columns
    ``have`` (with the closest name), and a note listing them; whether any was missing."""
    absent = [(r, c) for r, c in dict.fromkeys(roles) if c not in have]
    for role, c in absent:
        result.problems.append(
            f"column {c!r} (given as {role!r}) is not in the table.{suggestion(str(c), have)}"
        )
    if absent:
        result.notes.append(f"the table's columns are: {', '.join(repr(c) for c in have[:12])}.")
    return bool(absent)


def lower_first(text: str) -> str:
    """A message to follow a colon or a dash: on one line, its first letter lower case."""
    text = " ".join(text.split())
    text = text.replace("The 'treated_value' parameter of validate", "[columns].treated_value")
    if len(text) > 1 and text[0].isupper() and not text[1].isupper():
        return text[0].lower() + text[1:]
    return text


def result_lines(result: CheckResult) -> Sequence[str]:
    """What ``proxyscope validate`` prints."""
    lines = []
    if result.ok:
        lines.append(f"OK: {result.source}")
    else:
        n = len(result.problems)
        lines.append(f"{n} problem{'s' if n != 1 else ''} in {result.source}:")
        lines += [f"  - {p}" for p in result.problems]
    if result.facts:
        facts = "; ".join(
            f"{k}: {v:,}" if isinstance(v, int) else f"{k}: {v}" for k, v in result.facts.items()
        )
        lines.append(f"  {facts}")
    lines += [f"  note: {n}" for n in result.notes]
    return lines

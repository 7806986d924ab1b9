"""Validating ``[[data.extra]]``: more sources whose cells join the history.

One history may hold experiments of several designs read from several places:
user-level rows of user-randomized tests, rows of workspace-randomized ones
(``cluster = "workspace_id"``), per-arm summaries, estimates made elsewhere. The
main source is ``[data]`` with ``[columns]``; each ``[[data.extra]]`` table is
one more source with the keys of ``[data]`` (no ``simulate``, no ASOS) and a
``columns`` table of its own::

    [[data.extra]]
    kind = "estimates"
    path = "quasi_experiments.csv"
    design = "design"                # a design, or the column holding one per row
    correlation = 0.3                # or covariance = "pairs.csv"
    columns = { metric = "metric", estimate = "estimate", se = "se" }

    [[data.extra]]                   # a staged rollout read by difference in differences
    path = "rollouts.parquet"
    design = "did"
    did = { unit = "market", period = "week", first_treated = "first_week" }

The sources measure the same metrics over the same segment columns (what
:meth:`~proxyscope.CellEffects.concat` requires), so ``outcome``, ``proxies``,
``segments`` and ``directions`` are those of ``[columns]`` and an extra source
may not set them. Its other column keys default to ``[columns]``'s where they
apply to its kind (``experiment`` always; ``treatment``, ``treated_value`` and
the statistic columns between sources of one kind; a source read by did, rdd or
synthetic_control has no arms and takes ``experiment`` only). The run reads every source
and concatenates the cells in the order given, the main source first;
experiment ids must differ between sources. With ``[data].time`` every source
names its own start column (``time``) and shares the main source's ``period``
(:mod:`proxyscope.spec.parse_time`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from proxyscope.errors import SpecError
from proxyscope.spec.parse_data import ESTIMATE_KEYS, read_columns, source_section
from proxyscope.spec.parse_design import ARMLESS
from proxyscope.spec.parse_time import check_extra
from proxyscope.spec.read import Table, type_word
from proxyscope.spec.sections import ColumnsSpec, DataSpec, ExtraSource

#: The ``[columns]`` keys every source shares (an extra source may not set them).
SHARED = ("outcome", "proxies", "segments", "directions")
#: The ``[columns]`` keys an extra source takes from ``[columns]`` when it leaves them
#: out, by its kind.
INHERITED: dict[str, tuple[str, ...]] = {
    "users": ("experiment", "treatment", "treated_value"),
    "arm_summaries": (
        "experiment",
        "treatment",
        "treated_value",
        "count",
        "mean",
        "variance",
        "covariance",
    ),
    "estimates": ("experiment", *ESTIMATE_KEYS),
}


def extra_section(top: Table, data: DataSpec, columns: ColumnsSpec | None) -> DataSpec:
    """``data`` with its ``[[data.extra]]`` sources read (unchanged without any)."""
    raw_data = top.raw.get("data")
    if not isinstance(raw_data, Mapping) or "extra" not in raw_data:
        return data
    items = raw_data["extra"]
    origin = top.origin
    if not isinstance(items, list) or not all(isinstance(x, Mapping) for x in items):
        raise SpecError(
            f"{origin}: [data].extra must be an array of tables (written [[data.extra]]); "
            f"got {type_word(items)}."
        )
    if not items:
        raise SpecError(f"{origin}: [data].extra must hold at least one [[data.extra]] source.")
    if columns is None:
        raise SpecError(
            f"{origin}: [[data.extra]] cannot join kind = 'asos': its roles are fixed (outcome "
            "'final', proxy 'early'); read the ASOS cells with proxyscope.load_asos and "
            "concatenate them in Python (CellEffects.concat)."
        )
    main_raw = top.raw.get("columns")
    assert isinstance(main_raw, Mapping)  # read by columns_section
    out = []
    for i, item in enumerate(items, start=1):
        t = Table(item, f"data.extra #{i}", origin)
        own = item.get("columns", {})
        t.taken.append("columns")
        if not isinstance(own, Mapping):
            raise t.error("columns", f"must be a table of column roles; got {type_word(own)}.")
        source = source_section(t, main=False)
        period = check_extra(t, data.time, data.period, source.time, source.period)
        source = dataclasses.replace(source, period=period)
        for key in SHARED:
            if key in own:
                raise t.error(
                    f"columns.{key}",
                    f"is set by [columns].{key} for every source: the sources must measure "
                    "the same metrics over the same segment columns. Leave it out here.",
                )
        inherited = INHERITED[source.kind]
        if source.reads_design and source.design in ARMLESS:
            inherited = ("experiment",)  # no arms: no treatment column to inherit
        merged: dict[str, Any] = {
            k: v for k, v in main_raw.items() if k in SHARED or k in inherited
        }
        merged.update(own)
        cols = read_columns(
            Table(merged, f"data.extra #{i}.columns", origin),
            source,
            data_error=_error_of(t),
            where=t.where,
        )
        out.append(ExtraSource(data=source, columns=cols))
    return dataclasses.replace(data, extra=tuple(out))


def _error_of(t: Table) -> Callable[[str], SpecError]:
    """An error about the extra source's table itself."""

    def error(message: str) -> SpecError:
        return t.error(None, message)

    return error

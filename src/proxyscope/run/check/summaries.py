"""Checks of data already summarized per arm: a per-arm summary table, and the
ASOS snapshots. Both are small enough to read whole with pandas."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from proxyscope.data.sources import resolve_files
from proxyscope.data.validate import resolve_treated
from proxyscope.datasets.asos import read_asos
from proxyscope.run.check.findings import (
    SHOW,
    CheckResult,
    confirm,
    lower_first,
    missing_columns,
)
from proxyscope.run.load import load_effects, read_table
from proxyscope.run.preflight import check_cells
from proxyscope.spec import ModelSpec


def check_arms(spec: ModelSpec, path: Path) -> CheckResult:
    cols = spec.columns
    assert cols is not None and cols.treatment is not None
    files = resolve_files(path, owner="validate")
    result = CheckResult(source=files.describe())
    table = read_table(path)
    result.facts["rows"] = len(table)
    problems = result.problems
    stats: list[tuple[str, str]] = []
    count = cols.count
    metrics = [cols.outcome, *cols.proxies]
    if isinstance(count, str):
        stats.append(("count", count))
    elif count is not None:
        stats += [("count", count[m]) for m in metrics]
    for key in ("mean", "variance", "covariance"):
        mapping = getattr(cols, key) or {}
        stats += [(key, c) for c in mapping.values()]
    keys = [
        ("experiment", cols.experiment),
        ("treatment", cols.treatment),
        *[("segments", s) for s in cols.segments],
    ]
    if spec.data.time is not None:
        keys.append(("time", spec.data.time))
    if missing_columns(result, [*keys, *stats], [str(c) for c in table.columns]):
        return result
    for role, c in dict.fromkeys(stats):
        if not pd.api.types.is_numeric_dtype(table[c]) or pd.api.types.is_bool_dtype(table[c]):
            problems.append(
                f"column {c!r} (given as {role!r}) must be numeric; it is {table[c].dtype}."
            )
            continue
        if role in ("count", "variance") and (table[c] < 0).any():
            problems.append(f"column {c!r} (given as {role!r}) has negative values.")
    na = {c: int(table[c].isna().sum()) for _, c in dict.fromkeys([*keys, *stats])}
    na = {c: n for c, n in na.items() if n}
    if na:
        shown = ", ".join(f"{c!r}: {n}" for c, n in na.items())
        if spec.data.dropna:
            result.notes.append(f"rows with missing values will be dropped (dropna): {shown}.")
        else:
            problems.append(
                f"missing values in {shown} rows; fill them or set [data].dropna = true."
            )
    values = list(pd.unique(table[cols.treatment].dropna()))
    try:
        resolve_treated(
            values, cols.treated_value, column=cols.treatment, param="treatment", owner="validate"
        )
    except (ValueError, TypeError) as exc:
        problems.append(lower_first(str(exc)))
    else:
        arms = table.groupby(cols.experiment)[cols.treatment].nunique()
        one = [str(e) for e in arms[arms < 2].index]
        if one:
            problems.append(f"{len(one)} experiment(s) have only one arm: {', '.join(one[:SHOW])}.")
    result.facts["experiments"] = int(table[cols.experiment].nunique())
    if result.ok:
        confirm_file(result, spec, path)
    return result


def check_asos(spec: ModelSpec, path: Path | None) -> CheckResult:
    if path is None:
        return CheckResult(
            source="?",
            problems=["no ASOS file: set [data].path, pass --data, or set $PROXYSCOPE_ASOS_PATH."],
        )
    result = CheckResult(source=str(path))
    try:
        raw = read_asos(path)
    except (ValueError, TypeError, OSError) as exc:
        result.problems.append(lower_first(str(exc)))
        return result
    result.facts["rows"] = len(raw)
    result.facts["treatment arms"] = int(
        raw[["experiment_id", "variant_id"]].drop_duplicates().shape[0]
    )
    result.facts["metrics"] = sorted(int(m) for m in pd.unique(raw["metric_id"]))
    no_var = int((raw["variance_c"].isna() | raw["variance_t"].isna()).sum())
    if no_var:
        result.notes.append(f"{no_var} snapshot rows have no variances and will be removed.")
    confirm_file(result, spec, path)
    return result


def confirm_file(result: CheckResult, spec: ModelSpec, path: Path | None) -> None:
    """Build the spec's cells from ``path`` for real, then the checks that need them."""
    confirm(
        result,
        lambda: load_effects(spec, data=path).effects,
        lambda effects: check_cells(spec, effects),
    )

"""Checks of a table of estimates made elsewhere (kind = "estimates") against a spec.

The table (and the covariance table, when the spec names one) is read whole:
one row per experiment, segment and metric is small. Every problem found is
listed; when there is none, the cells are built for real
(:func:`~proxyscope.from_estimates` names anything left: a cell that lacks a
metric, a covariance that is not positive definite, ...).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from proxyscope.data.estimate_covariance import COVARIANCE, METRIC_A, METRIC_B
from proxyscope.data.sources import resolve_files
from proxyscope.errors import suggestion
from proxyscope.run.check.findings import SHOW, CheckResult, missing_columns
from proxyscope.run.check.summaries import confirm_file
from proxyscope.run.load import read_table
from proxyscope.spec import DESIGNS, ModelSpec


def check_estimates(spec: ModelSpec, path: Path) -> CheckResult:
    cols = spec.columns
    assert cols is not None
    files = resolve_files(path, owner="validate")
    result = CheckResult(source=files.describe())
    table = read_table(path)
    result.facts["rows"] = len(table)
    problems = result.problems
    design = spec.data.design
    keys = [
        ("experiment", cols.experiment),
        ("metric", cols.metric),
        *[("segments", s) for s in cols.segments],
        *([("design", design)] if design is not None and design not in DESIGNS else []),
        *([("time", spec.data.time)] if spec.data.time is not None else []),
    ]
    numbers = [
        (role, c)
        for role, c in (
            ("estimate", cols.estimate),
            ("se", cols.se),
            ("n_treat", cols.n_treat),
            ("n_control", cols.n_control),
        )
        if c is not None
    ]
    if missing_columns(result, [*keys, *numbers], [str(c) for c in table.columns]):
        return result
    for role, c in numbers:
        if not pd.api.types.is_numeric_dtype(table[c]) or pd.api.types.is_bool_dtype(table[c]):
            problems.append(
                f"column {c!r} (given as {role!r}) must be numeric; it is {table[c].dtype}."
            )
        elif role == "se":
            se = table[c].to_numpy(dtype=float)
            bad = int((~(se > 0) & ~np.isnan(se)).sum() + np.isinf(se).sum())
            if bad:
                problems.append(
                    f"column {c!r} (given as 'se') has {bad} value(s) that are not positive "
                    "finite numbers."
                )
    na = {str(c): int(table[c].isna().sum()) for _, c in [*keys, *numbers]}
    na = {c: n for c, n in na.items() if n}
    if na:
        shown = ", ".join(f"{c!r}: {n}" for c, n in na.items())
        problems.append(f"missing values in {shown} rows; fill or drop them first.")
    metrics = [cols.outcome, *cols.proxies]
    found = pd.unique(table[cols.metric].dropna().astype(str))
    unknown = [m for m in found if m not in metrics]
    if unknown:
        problems.append(
            f"column {cols.metric!r} (given as 'metric') holds {len(unknown)} name(s) that are "
            f"neither the outcome nor a proxy: {unknown[:SHOW]}; metrics: {metrics}."
        )
    lacking = [m for m in metrics if m not in set(found)]
    if lacking:
        problems.append(
            f"column {cols.metric!r} (given as 'metric') never holds {lacking}."
            + suggestion(lacking[0], list(found))
        )
    if spec.data.covariance is not None:
        cov_path = spec.resolve(spec.data.covariance)
        result.facts["covariance rows"] = len(cov := read_table(cov_path))
        needed = [cols.experiment, *cols.segments, METRIC_A, METRIC_B, COVARIANCE]
        cov_have = [str(c) for c in cov.columns]
        for c in needed:
            if c not in cov_have:
                problems.append(
                    f"column {c!r} is not in the covariance table {str(cov_path)!r}."
                    + suggestion(c, cov_have)
                )
    result.facts["experiments"] = int(table[cols.experiment].nunique())
    if result.ok:
        confirm_file(result, spec, path)
    return result

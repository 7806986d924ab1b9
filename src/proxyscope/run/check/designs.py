"""Checks of a source whose rows a design reads (``[data.<design>]``) against a spec.

The table is read whole (a panel of units × periods, or one row per unit: what
the design function reads anyway). Every column the spec names is looked for
(with the closest name when missing), the metrics must be numeric and the used
columns complete, and at least two experiments are needed; when nothing is
found, the cells are built for real by the design (its own checks name
anything left: an unbalanced panel, a first treated period between periods, a
cell without donors, ...) and with them the ``[[data.extra]]`` sources.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from proxyscope.data.sources import resolve_files
from proxyscope.run.check.findings import CheckResult, missing_columns
from proxyscope.run.check.summaries import confirm_file
from proxyscope.run.load import read_table
from proxyscope.spec import ModelSpec
from proxyscope.spec.parse_design import design_columns


def check_design(spec: ModelSpec, path: Path) -> CheckResult:
    cols = spec.columns
    d = spec.data
    assert cols is not None and d.design is not None
    files = resolve_files(path, owner="validate")
    result = CheckResult(source=f"{files.describe()} (design {d.design!r})")
    table = read_table(path)
    result.facts["rows"] = len(table)
    metrics = [("outcome", cols.outcome), *[("proxies", p) for p in cols.proxies]]
    roles = [
        ("experiment", cols.experiment),
        *([("treatment", cols.treatment)] if cols.treatment is not None else []),
        *metrics,
        *[("segments", s) for s in cols.segments],
        *([("cluster", d.cluster)] if d.cluster is not None else []),
        *((f"{d.design}.{role}", c) for role, c in design_columns(d.design, d.design_options)),
        *([("time", d.time)] if d.time is not None else []),
    ]
    if missing_columns(result, roles, [str(c) for c in table.columns]):
        return result
    for role, c in metrics:
        if not pd.api.types.is_numeric_dtype(table[c]):
            result.problems.append(
                f"column {c!r} (given as {role!r}) must be numeric or boolean; it is "
                f"{table[c].dtype}."
            )
    # did's first treated period is missing (NaN) for units never treated.
    never = d.design_options.get("first_treated") if d.design == "did" else None
    na = {c: int(table[c].isna().sum()) for _, c in dict.fromkeys(roles) if c != never}
    na = {c: n for c, n in na.items() if n}
    if na:
        shown = ", ".join(f"{c!r}: {n:,}" for c, n in na.items())
        result.problems.append(f"missing values in {shown} rows; fill or drop them first.")
    n_exp = int(table[cols.experiment].nunique())
    result.facts["experiments"] = n_exp
    if n_exp < 2:
        result.problems.append(f"the data hold {n_exp} experiment(s); at least two are needed.")
    if result.ok:
        confirm_file(result, spec, path)
    return result

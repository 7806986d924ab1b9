"""Check data against a spec without fitting (``proxyscope validate``).

Every problem found is collected (not only the first): missing or misspelled
columns, a column given two roles, non-numeric metrics, missing or infinite
values, a treatment column without exactly two values, a treated value that
is not among them, experiments with one arm, fewer than two experiments, and
for per-arm summaries negative counts or variances and repeated rows. When
none is found, the data are summarized for real (no model is fitted) so the
check is the one ``run`` will meet, and the kept and dropped cells are
reported.

User-level files are inspected with DuckDB queries that return a few rows;
the data are never loaded whole.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from proxyscope._format import plain
from proxyscope.data.engines.duckdb_engine import numeric_type
from proxyscope.errors import ProxyscopeError, suggestion
from proxyscope.spec import ModelSpec

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


def _is_numeric(duck_type: str) -> bool:
    """Numbers, and booleans (they summarize as 0/1)."""
    return numeric_type(duck_type) or duck_type.upper() == "BOOLEAN"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def check_data(spec: ModelSpec, data: str | os.PathLike[str] | None = None) -> CheckResult:
    """Check the spec's data (or ``data`` instead) without fitting."""
    path = spec.data_path(data)
    if spec.data.kind == "asos":
        return _check_asos(spec, path)
    if spec.data.kind == "arm_summaries":
        assert path is not None
        return _check_arms(spec, path)
    return _check_users(spec, path)


# -- user-level rows -----------------------------------------------------------


def _check_users(spec: ModelSpec, path: Path | None) -> CheckResult:
    import duckdb

    cols = spec.columns
    assert cols is not None
    con = duckdb.connect()
    try:
        if path is None:
            import proxyscope as ps

            sim = spec.data.simulate
            assert sim is not None
            world = ps.simulate.streaming(
                n_users=sim.n_users, n_experiments=sim.n_experiments, seed=sim.seed
            )
            frame = world.users
            con.register("users_frame", frame)
            source = f"simulated ({sim.n_users:,} users, seed {sim.seed})"
            relation = "users_frame"
            data_arg: Any = frame
        else:
            from proxyscope.data.sources import resolve_files

            files = resolve_files(path, owner="validate")
            listed = "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in files.paths) + "]"
            relation = (
                f"read_parquet({listed})"
                if files.format == "parquet"
                else f"read_csv({listed}, header = true)"
            )
            source = files.describe()
            data_arg = os.fspath(path)
        result = CheckResult(source=source)
        _user_checks(con, relation, spec, result)
    finally:
        con.close()
    if result.ok:
        _confirm(result, lambda: _summarize(spec, data_arg))
    return result


def _user_checks(con: Any, relation: str, spec: ModelSpec, result: CheckResult) -> None:
    from proxyscope.data.validate import check_roles, resolve_treated

    cols = spec.columns
    assert cols is not None
    problems = result.problems
    try:
        check_roles(
            experiment=cols.experiment,
            treatment=cols.treatment,
            outcome=cols.outcome,
            proxies=list(cols.proxies),
            segments=list(cols.segments),
            directions=dict(cols.directions),
            owner="validate",
        )
    except (ValueError, TypeError) as exc:
        problems.append(str(exc))
        return
    described = con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()
    types = {str(r[0]): str(r[1]) for r in described}
    roles: list[tuple[str, str]] = [
        ("experiment", cols.experiment),
        ("treatment", cols.treatment),
        ("outcome", cols.outcome),
        *[("proxies", p) for p in cols.proxies],
        *[("segments", s) for s in cols.segments],
    ]
    missing = [(role, c) for role, c in roles if c not in types]
    for role, c in missing:
        problems.append(
            f"column {c!r} (the {role} column) is not in the data.{suggestion(c, list(types))}"
        )
    if missing:
        shown = ", ".join(repr(c) for c in list(types)[:12])
        more = f", ... ({len(types)} in all)" if len(types) > 12 else ""
        result.notes.append(f"the data's columns are: {shown}{more}.")
    metrics = [c for c in (cols.outcome, *cols.proxies) if c in types]
    for m in metrics:
        if not _is_numeric(types[m]):
            role = "outcome" if m == cols.outcome else "proxy"
            problems.append(
                f"column {m!r} (a {role}) must be numeric or boolean; it is {types[m]}."
            )

    n_rows = con.execute(f"SELECT count(*) FROM {relation}").fetchone()[0]
    result.facts["rows"] = int(n_rows)
    if n_rows == 0:
        problems.append("the data have no rows.")
        return

    # Missing and non-finite values in every used column.
    used = [c for _, c in roles if c in types]
    exprs = []
    for c in used:
        exprs.append(f"count(*) - count({_q(c)})")
        if types[c].upper() in ("FLOAT", "DOUBLE"):
            exprs.append(f"count_if(isnan({_q(c)}))")
            exprs.append(f"count_if(isinf({_q(c)}))")
        else:
            exprs += ["0", "0"]
    counts = con.execute(f"SELECT {', '.join(exprs)} FROM {relation}").fetchone()
    missing_by: dict[str, int] = {}
    for i, c in enumerate(used):
        n_null, n_nan, n_inf = counts[3 * i], counts[3 * i + 1], counts[3 * i + 2]
        if n_null + n_nan:
            missing_by[c] = int(n_null + n_nan)
        if n_inf:
            problems.append(f"column {c!r} has {n_inf:,} infinite values.")
    if missing_by:
        shown = ", ".join(f"{c!r}: {n:,}" for c, n in missing_by.items())
        if spec.data.dropna:
            result.notes.append(f"rows with missing values will be dropped (dropna): {shown}.")
        else:
            problems.append(
                f"missing values (NaN/NULL) in {shown} rows; fill them or set [data].dropna = true."
            )

    if cols.treatment not in types or cols.experiment not in types:
        return
    t = _q(cols.treatment)
    values = [
        r[0]
        for r in con.execute(
            f"SELECT DISTINCT {t} FROM {relation} WHERE {t} IS NOT NULL ORDER BY 1 LIMIT 5"
        ).fetchall()
    ]
    arms_ok = False
    try:
        treated, control = resolve_treated(
            values,
            cols.treated_value,
            column=cols.treatment,
            more=len(values) >= 5,
            owner="validate",
        )
        arms_ok = True
        result.facts["treated_value"] = plain(treated)
        result.facts["control_value"] = plain(control)
    except (ValueError, TypeError) as exc:
        problems.append(_lower_first(str(exc)))

    e = _q(cols.experiment)
    n_exp = con.execute(
        f"SELECT count(DISTINCT {e}) FROM {relation} WHERE {e} IS NOT NULL"
    ).fetchone()[0]
    result.facts["experiments"] = int(n_exp)
    if n_exp < 2:
        problems.append(f"the data hold {n_exp} experiment(s); at least two are needed.")
    if arms_ok:
        one_arm = con.execute(
            f"SELECT {e} FROM {relation} WHERE {t} IS NOT NULL AND {e} IS NOT NULL "
            f"GROUP BY {e} HAVING count(DISTINCT {t}) < 2 ORDER BY 1"
        ).fetchall()
        if one_arm:
            shown = ", ".join(repr(plain(r[0])) for r in one_arm[:SHOW])
            more = f" and {len(one_arm) - SHOW} more" if len(one_arm) > SHOW else ""
            problems.append(
                f"{len(one_arm)} experiment(s) have only one arm in {cols.treatment!r}: "
                f"{shown}{more}."
            )
    for s in (s for s in cols.segments if s in types):
        levels = con.execute(f"SELECT count(DISTINCT {_q(s)}) FROM {relation}").fetchone()[0]
        result.facts[f"levels of {s}"] = int(levels)


def _summarize(spec: ModelSpec, data: Any) -> Any:
    import proxyscope as ps

    cols = spec.columns
    assert cols is not None
    return ps.summarize(
        data,
        experiment=cols.experiment,
        treatment=cols.treatment,
        outcome=cols.outcome,
        proxies=list(cols.proxies),
        segments=list(cols.segments),
        directions=dict(cols.directions),
        # DuckDB reads local files and frames with the same results as the other
        # engines; remote paths keep the spec's engine.
        engine=spec.data.engine if isinstance(data, str) and "://" in data else "duckdb",
        treated_value=cols.treated_value,
        min_users_per_arm=spec.data.min_users_per_arm,
        dropna=spec.data.dropna,
    )


def _confirm(result: CheckResult, build: Any) -> None:
    """Build the cells for real; record kept and dropped cells, or the error."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            effects = build()
        except (ProxyscopeError, ValueError, TypeError, KeyError) as exc:
            result.problems.append(_lower_first(str(exc)))
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
    for w in caught:
        text = str(w.message)
        if "dropped" in text and "cells" in text:
            continue  # already said above
        result.notes.append(_lower_first(text))


# -- per-arm summaries ---------------------------------------------------------


def _check_arms(spec: ModelSpec, path: Path) -> CheckResult:
    from proxyscope.data.sources import resolve_files
    from proxyscope.data.validate import resolve_treated
    from proxyscope.run.execute import read_table

    cols = spec.columns
    assert cols is not None
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
    have = [str(c) for c in table.columns]
    absent = [(r, c) for r, c in [*keys, *stats] if c not in have]
    for role, c in dict.fromkeys(absent):
        problems.append(
            f"column {c!r} (given as {role!r}) is not in the table.{suggestion(c, have)}"
        )
    if absent:
        result.notes.append(f"the table's columns are: {', '.join(repr(c) for c in have[:12])}.")
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
        problems.append(_lower_first(str(exc)))
    else:
        arms = table.groupby(cols.experiment)[cols.treatment].nunique()
        one = [str(e) for e in arms[arms < 2].index]
        if one:
            problems.append(f"{len(one)} experiment(s) have only one arm: {', '.join(one[:SHOW])}.")
    result.facts["experiments"] = int(table[cols.experiment].nunique())
    if result.ok:
        from proxyscope.run.execute import load_effects

        _confirm(result, lambda: load_effects(spec, data=path).effects)
    return result


# -- ASOS ----------------------------------------------------------------------


def _check_asos(spec: ModelSpec, path: Path | None) -> CheckResult:
    from proxyscope.datasets.asos import read_asos
    from proxyscope.run.execute import load_effects

    if path is None:
        return CheckResult(
            source="?",
            problems=["no ASOS file: set [data].path, pass --data, or set $PROXYSCOPE_ASOS_PATH."],
        )
    result = CheckResult(source=str(path))
    try:
        raw = read_asos(path)
    except (ValueError, TypeError, OSError) as exc:
        result.problems.append(_lower_first(str(exc)))
        return result
    result.facts["rows"] = len(raw)
    result.facts["treatment arms"] = int(
        raw[["experiment_id", "variant_id"]].drop_duplicates().shape[0]
    )
    result.facts["metrics"] = sorted(int(m) for m in pd.unique(raw["metric_id"]))
    no_var = int((raw["variance_c"].isna() | raw["variance_t"].isna()).sum())
    if no_var:
        result.notes.append(f"{no_var} snapshot rows have no variances and will be removed.")
    _confirm(result, lambda: load_effects(spec, data=path).effects)
    return result


# -- helpers -------------------------------------------------------------------


def _lower_first(text: str) -> str:
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

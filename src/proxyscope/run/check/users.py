"""Checks of user-level rows (a file, or the simulated users) against a spec.

The file is inspected with DuckDB queries that return a few rows; the data are
never loaded whole. When no problem is found, the cells are built for real
with DuckDB.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from proxyscope._format import plain
from proxyscope.data.engines.duckdb_engine import numeric_type
from proxyscope.data.sources import resolve_files
from proxyscope.data.summarize import summarize
from proxyscope.data.tables import check_files
from proxyscope.data.validate import check_roles, resolve_treated
from proxyscope.errors import suggestion
from proxyscope.run.check.findings import SHOW, CheckResult, confirm, lower_first
from proxyscope.run.load import cluster_roles, join_extras
from proxyscope.run.preflight import check_cells
from proxyscope.spec import ModelSpec


def _is_numeric(duck_type: str) -> bool:
    """Numbers, and booleans (they summarize as 0/1)."""
    return numeric_type(duck_type) or duck_type.upper() == "BOOLEAN"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def check_users(spec: ModelSpec, path: Path | None) -> CheckResult:
    import duckdb

    cols = spec.columns
    assert cols is not None
    con = duckdb.connect()
    try:
        if path is None:
            # The simulator (and scipy) is imported only when a spec simulates:
            # checking a file stays fast.
            from proxyscope.simulate.world import streaming

            sim = spec.data.simulate
            assert sim is not None
            world = streaming(n_users=sim.n_users, n_experiments=sim.n_experiments, seed=sim.seed)
            frame = world.users
            con.register("users_frame", frame)
            source = f"simulated ({sim.n_users:,} users, seed {sim.seed})"
            relation = "users_frame"
            data_arg: Any = frame
        else:
            files = resolve_files(path, owner="validate")
            # The files agree on the used columns (else DuckDB's queries below fail).
            role = {c: r for r, c in _roles(spec)}
            check_files(files, list(role), role_of=lambda c: role.get(c, "?"), hive=True)
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
        confirm(
            result,
            lambda: join_extras(spec, _summarize(spec, data_arg)),
            lambda effects: check_cells(spec, effects),
        )
    return result


def _roles(spec: ModelSpec) -> list[tuple[str, str]]:
    """(role, column) of every column the spec uses."""
    cols = spec.columns
    assert cols is not None
    assert cols.treatment is not None
    d = spec.data
    return [
        ("experiment", cols.experiment),
        ("treatment", cols.treatment),
        ("outcome", cols.outcome),
        *[("proxies", p) for p in cols.proxies],
        *[("segments", s) for s in cols.segments],
        *[(role, c) for role, c in (("cluster", d.cluster), ("exposure", d.exposure)) if c],
        *([("time", d.time)] if d.time is not None else []),
    ]


def _user_checks(con: Any, relation: str, spec: ModelSpec, result: CheckResult) -> None:
    cols = spec.columns
    assert cols is not None
    problems = result.problems
    try:
        check_roles(
            **cols.roles(),
            **cluster_roles(spec.data, exposure_values=False),
            owner="validate",
        )
    except (ValueError, TypeError) as exc:
        problems.append(str(exc))
        return
    described = con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()
    types = {str(r[0]): str(r[1]) for r in described}
    roles = _roles(spec)
    assert cols.treatment is not None
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
    # (No used column in the data: nothing to count; the missing ones are listed above.)
    counts = con.execute(f"SELECT {', '.join(exprs)} FROM {relation}").fetchone() if used else ()
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
        problems.append(lower_first(str(exc)))

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
    cols = spec.columns
    assert cols is not None
    return summarize(
        data,
        **cols.roles(),
        **cluster_roles(spec.data),
        # DuckDB reads local files and frames with the same results as the other
        # engines; remote paths keep the spec's engine.
        engine=spec.data.engine if isinstance(data, str) and "://" in data else "duckdb",
        treated_value=cols.treated_value,
        min_users_per_arm=spec.data.min_users_per_arm,
        dropna=spec.data.dropna,
        **spec.data.time_arguments(),
    )

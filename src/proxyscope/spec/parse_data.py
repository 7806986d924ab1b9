"""Validating where a spec's data come from: the ``[data]`` section (kind, source,
engine, ASOS options) and the ``[columns]`` roles that go with it."""

from __future__ import annotations

import math
from typing import Any

from proxyscope.errors import SpecError, suggestion
from proxyscope.options import ASOS_SCALES, DATA_KINDS, DIRECTIONS, ENGINES
from proxyscope.spec.constants import MAX_COUNT, MAX_EXPERIMENTS, MAX_SEED, MAX_USERS
from proxyscope.spec.read import Table, show_set, type_word
from proxyscope.spec.sections import AsosSpec, ColumnsSpec, DataSpec, SimulateSpec


def data_section(top: Table) -> DataSpec:
    t = top.take_table("data", required=True)
    assert t is not None
    kind = t.take_str("kind", "users", allowed=DATA_KINDS)
    path = t.take_path("path", None)
    sim_t = t.take_table("simulate")
    engine = t.take_str("engine", "duckdb", allowed=ENGINES)
    min_users = t.take_int("min_users_per_arm", 10, minimum=2, maximum=MAX_COUNT)
    dropna = t.take_bool("dropna", False)
    correlation = t.take_float("correlation", None, low=-1.0, high=1.0)
    asos_t = t.take_table("asos")
    simulate = None
    if sim_t is not None:
        in_memory = "the simulator holds them in memory"
        simulate = SimulateSpec(
            n_users=sim_t.take_int(
                "n_users", SimulateSpec.n_users, minimum=1, maximum=MAX_USERS, why=in_memory
            ),
            n_experiments=sim_t.take_int(
                "n_experiments",
                SimulateSpec.n_experiments,
                minimum=2,
                maximum=MAX_EXPERIMENTS,
                why=in_memory,
            ),
            seed=sim_t.take_int(
                "seed", SimulateSpec.seed, minimum=0, maximum=MAX_SEED, why="a 32-bit seed"
            ),
        )
        sim_t.done()
    asos = None
    if asos_t is not None:
        metrics = asos_t.take_number_list("metrics", None, integer=True, low=1, high=MAX_COUNT)
        variants = asos_t.take_number_list("variants", None, integer=True, low=1, high=MAX_COUNT)
        asos = AsosSpec(
            metrics=metrics,
            outcome_metric=asos_t.take_int("outcome_metric", None, minimum=1, maximum=MAX_COUNT),
            early_day=asos_t.take_float("early_day", 3.0, low=0.0),
            scale=asos_t.take_str("scale", "relative", allowed=ASOS_SCALES),
            variants=variants,
        )
        asos_t.done()
    t.done()

    if kind == "users":
        if (path is None) == (simulate is None):
            raise t.error(
                None,
                "needs exactly one source for kind = 'users': path = '...' (a file, directory "
                "or glob) or a [data.simulate] table"
                + ("; got both." if path is not None else "; got neither."),
            )
        if correlation is not None:
            raise t.error(
                "correlation",
                "applies to kind = 'arm_summaries' or 'asos' only; user-level data carry "
                "their own covariances.",
            )
    else:
        if simulate is not None:
            raise t.error("simulate", f"is for kind = 'users' only; got kind = {kind!r}.")
        if kind == "arm_summaries" and path is None:
            raise t.error("path", "is required for kind = 'arm_summaries'.")
        if kind == "asos" and correlation is None:
            raise t.error(
                "correlation",
                "is required for kind = 'asos': the early and final reads share users, so "
                "state the assumed correlation of their noise (e.g. 0.5) and check it with "
                "[analysis.sensitivity].",
            )
        if engine != "duckdb" and t.has("engine"):
            raise t.error("engine", f"applies to kind = 'users' only; got kind = {kind!r}.")
    if asos is not None and kind != "asos":
        raise t.error("asos", f"is for kind = 'asos' only; got kind = {kind!r}.")
    if kind == "asos" and asos is None:
        asos = AsosSpec()
    return DataSpec(
        kind=kind,
        path=path,
        simulate=simulate,
        engine=engine,
        min_users_per_arm=min_users,
        dropna=dropna,
        correlation=None if correlation is None else float(correlation),
        asos=asos,
    )


def columns_section(top: Table, data: DataSpec) -> ColumnsSpec | None:
    if data.kind == "asos":
        if top.has("columns"):
            raise top.error(
                "columns",
                "must be left out with kind = 'asos': the adapter's roles are fixed "
                "(outcome 'final', proxy 'early', segment 'metric_id').",
            )
        top.taken.append("columns")
        return None
    t = top.take_table("columns", required=True)
    assert t is not None
    experiment = t.take_str("experiment")
    treatment = t.take_str("treatment")
    outcome = t.take_str("outcome")
    proxies = t.take_str_list("proxies", allow_empty=False)
    segments = t.take_str_list("segments", ())
    treated_value = t.raw.get("treated_value")
    t.taken.append("treated_value")
    if treated_value is not None and not isinstance(treated_value, str | int | float | bool):
        raise t.error(
            "treated_value",
            f"must be a string, number or boolean; got {treated_value!r} "
            f"({type_word(treated_value)}).",
        )
    if isinstance(treated_value, float) and not math.isfinite(treated_value):
        raise t.error("treated_value", f"must be a finite number; got {treated_value!r}.")
    if isinstance(treated_value, int) and not -(2**63) <= treated_value < 2**63:
        raise t.error(
            "treated_value",
            f"must fit a 64-bit integer (as a treatment column's values do); got {treated_value}.",
        )

    def direction(path: str, v: Any) -> str:
        if v not in DIRECTIONS:
            hint = suggestion(v, DIRECTIONS) if isinstance(v, str) else ""
            raise SpecError(
                f"{t.origin}: {path} must be one of {show_set(DIRECTIONS)}; got {v!r}.{hint}"
            )
        return str(v)

    directions = t.take_mapping("directions", direction, keys=list(proxies), what="proxy")
    metrics = [outcome, *proxies]
    stats: dict[str, Any] = {}
    for key in ("count", "mean", "variance", "covariance"):
        if data.kind != "arm_summaries":
            if t.has(key):
                raise t.error(key, "applies to kind = 'arm_summaries' only.")
            t.taken.append(key)
            continue
        if key == "count" and isinstance(t.raw.get(key), str):
            stats[key] = t.take_str(key)
            continue
        if key == "covariance":
            pairs = [f"{a}|{b}" for i, a in enumerate(metrics) for b in metrics[i + 1 :]]
            stats[key] = (
                t.take_mapping(key, _checked_column(t), keys=pairs, what="metric pair 'a|b'")
                or None
            )
            continue
        got = t.take_mapping(key, _checked_column(t), keys=metrics, what="metric")
        absent = [m for m in metrics if m not in got]
        if absent:
            raise t.error(
                key,
                f"must name a column for every metric {metrics} (a table metric = column"
                + (", or one column for all" if key == "count" else "")
                + f"); missing: {absent}.",
            )
        stats[key] = got
    t.done()

    seen: dict[str, str] = {}
    for role, names in (
        ("experiment", (experiment,)),
        ("treatment", (treatment,)),
        ("outcome", (outcome,)),
        ("proxies", proxies),
        ("segments", segments),
    ):
        for n in names:
            if n in seen:
                raise t.error(role, f"names column {n!r}, which is already given as {seen[n]!r}.")
            seen[n] = role
    if data.kind == "arm_summaries" and data.correlation is None and not stats.get("covariance"):
        raise top.error(
            "data",
            "needs correlation = ... for kind = 'arm_summaries' without [columns.covariance]: "
            "the outcome and proxies are measured on the same users, so state the assumed "
            "correlation of their values (0 only if you mean it).",
        )
    return ColumnsSpec(
        experiment=experiment,
        treatment=treatment,
        outcome=outcome,
        proxies=proxies,
        segments=segments,
        treated_value=treated_value,
        directions=directions,
        count=stats.get("count"),
        mean=stats.get("mean"),
        variance=stats.get("variance"),
        covariance=stats.get("covariance"),
    )


def _checked_column(t: Table) -> Any:
    def check(path: str, v: Any) -> str:
        if not isinstance(v, str) or not v.strip():
            raise SpecError(
                f"{t.origin}: {path} must be a column name (a non-empty string); got {v!r}."
            )
        return v

    return check

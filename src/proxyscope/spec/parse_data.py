"""Validating where a spec's data come from: the ``[data]`` section (kind, source,
engine, design, cluster and exposure columns, start dates, ASOS options) and the ``[columns]``
roles that go with it. :func:`source_section` and :func:`read_columns` read one
source; :mod:`~proxyscope.spec.parse_extra` reuses them for ``[[data.extra]]``."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from proxyscope.errors import SpecError, suggestion
from proxyscope.options import ASOS_SCALES, DIRECTIONS, ENGINES
from proxyscope.spec.constants import (
    DATA_KINDS,
    DESIGNS,
    EXPOSURE_ROLES,
    EXTRA_KINDS,
    MAX_COUNT,
    MAX_EXPERIMENTS,
    MAX_SEED,
    MAX_USERS,
)
from proxyscope.spec.parse_design import (
    ARMLESS,
    check_design_name,
    check_design_roles,
    check_source_keys,
    design_options,
)
from proxyscope.spec.parse_time import time_keys
from proxyscope.spec.read import Table, show_set, type_word
from proxyscope.spec.sections import AsosSpec, ColumnsSpec, DataSpec, SimulateSpec


def data_section(top: Table) -> DataSpec:
    """``[data]``: the main source (its ``[[data.extra]]`` sources are read with the
    columns, by :func:`~proxyscope.spec.parse_extra.extra_sources`)."""
    t = top.take_table("data", required=True)
    assert t is not None
    return source_section(t, main=True)


def source_section(t: Table, *, main: bool) -> DataSpec:
    """One source: ``[data]`` (``main``) or one ``[[data.extra]]`` table."""
    kind = t.take_str("kind", "users", allowed=DATA_KINDS if main else EXTRA_KINDS)
    path = t.take_path("path", None)
    sim_t = t.take_table("simulate") if main else None
    engine = t.take_str("engine", "duckdb", allowed=ENGINES)
    min_users = t.take_int("min_users_per_arm", 10, minimum=2, maximum=MAX_COUNT)
    dropna = t.take_bool("dropna", False)
    correlation = t.take_float("correlation", None, low=-1.0, high=1.0)
    asos_t = t.take_table("asos") if main else None
    design = t.take_str("design", None)
    cluster = t.take_str("cluster", None)
    exposure = t.take_str("exposure", None)
    exposure_values = t.take_mapping(
        "exposure_values", _exposure_value(t), keys=EXPOSURE_ROLES, what="exposure role"
    )
    covariance = t.take_path("covariance", None)
    time, period = time_keys(t, kind)
    check_design_name(t, kind, design)
    check_source_keys(t, kind, design)
    design_opts = design_options(t, kind, design)
    if main:
        t.taken.append("extra")  # read with the columns (parse_extra)
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
        if not main and path is None:
            raise t.error("path", "is required: an extra source is a file, directory or glob.")
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
                "applies to kind = 'arm_summaries', 'asos' or 'estimates' only; user-level "
                "data carry their own covariances.",
            )
        # A design on user-level rows is read by parse_design (check_design_name).
    else:
        if simulate is not None:
            raise t.error("simulate", f"is for kind = 'users' only; got kind = {kind!r}.")
        if kind in ("arm_summaries", "estimates") and path is None:
            raise t.error("path", f"is required for kind = {kind!r}.")
        if kind == "asos" and correlation is None:
            raise t.error(
                "correlation",
                "is required for kind = 'asos': the early and final reads share users, so "
                "state the assumed correlation of their noise (e.g. 0.5) and check it with "
                "[analysis.sensitivity].",
            )
        if engine != "duckdb" and t.has("engine"):
            raise t.error("engine", f"applies to kind = 'users' only; got kind = {kind!r}.")
        if kind == "estimates":
            for key in ("min_users_per_arm", "dropna"):
                if t.has(key):
                    raise t.error(
                        key,
                        "does not apply to kind = 'estimates': the table's rows are used as "
                        "they are (a missing value is an error).",
                    )
        for key in ("cluster", "exposure", "exposure_values"):
            if t.has(key):
                raise t.error(
                    key, f"applies to kind = 'users' only (user-level rows); got kind = {kind!r}."
                )
    if exposure is not None and cluster is None:
        raise t.error(
            "exposure",
            f"needs {t.path('cluster')} too: direct and spillover effects are estimated with "
            "cluster-robust covariances.",
        )
    if exposure_values and exposure is None:
        raise t.error("exposure_values", f"needs {t.path('exposure')} (the exposure column).")
    _check_design_and_covariance(t, kind, design, correlation, covariance)
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
        design=design,
        cluster=cluster,
        exposure=exposure,
        exposure_values=exposure_values,
        covariance=covariance,
        design_options=design_opts,
        time=time,
        period=period,
    )


def _check_design_and_covariance(
    t: Table,
    kind: str,
    design: str | None,
    correlation: float | None,
    covariance: str | None,
) -> None:
    if design is not None and kind == "asos":
        raise t.error("design", "does not apply to kind = 'asos': its cells are A/B tests ('ab').")
    if design is not None and kind == "arm_summaries" and design not in DESIGNS:
        hint = suggestion(design, DESIGNS)
        raise t.error("design", f"must be one of {show_set(DESIGNS)}; got {design!r}.{hint}")
    if covariance is not None and kind != "estimates":
        raise t.error(
            "covariance",
            "applies to kind = 'estimates' only (a table of the estimates' covariances); "
            "per-arm covariance columns go in [columns.covariance].",
        )
    if kind != "estimates":
        return
    if (correlation is None) == (covariance is None):
        raise t.error(
            None,
            "needs exactly one of correlation = ... (an assumed correlation of the estimates' "
            "errors; check it with [analysis.sensitivity]) or covariance = 'pairs.csv' (their "
            "covariances: the experiment and segment columns, metric_a, metric_b, covariance)"
            + ("; got both." if covariance is not None else "; got neither."),
        )
    if correlation is not None and abs(correlation) >= 1.0:
        raise t.error(
            "correlation",
            f"must be in (-1, 1) for kind = 'estimates' (at +-1 two estimates would be one); "
            f"got {correlation!r}.",
        )


def _exposure_value(t: Table) -> Any:
    def check(path: str, v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            raise SpecError(f"{t.origin}: {path} must be a finite number; got {v!r}.")
        if not isinstance(v, str | int | float | bool):
            raise SpecError(
                f"{t.origin}: {path} must be a value of the exposure column (a string, number "
                f"or boolean); got {type_word(v)}."
            )
        return v

    return check


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
    return read_columns(t, data, data_error=lambda message: top.error("data", message))


def read_columns(
    t: Table,
    data: DataSpec,
    *,
    data_error: Callable[[str], SpecError],
    where: str = "data",
) -> ColumnsSpec:
    """The column roles of one source (``[columns]``, or an extra source's) of ``data.kind``.

    ``data_error(message)`` is the error about the source's data table itself, and
    ``where`` that table's path (``"data"``, ``"data.extra #1"``).
    """
    estimates = data.kind == "estimates"
    armless = data.reads_design and data.design in ARMLESS
    experiment = t.take_str("experiment")
    if estimates and t.has("treatment"):
        raise t.error(
            "treatment",
            "does not apply to kind = 'estimates': the table holds estimates, not arms "
            "(metric, estimate and se name its columns).",
        )
    for key in ("treatment", "treated_value"):
        if armless and t.has(key):
            raise t.error(
                key,
                f"does not apply to design = {data.design!r}: its rows have no arms (the "
                f"[data.{data.design}] table says who is treated).",
            )
    treatment = None if estimates or armless else t.take_str("treatment")
    outcome = t.take_str("outcome")
    proxies = t.take_str_list("proxies", allow_empty=False)
    if estimates and outcome in proxies:
        raise t.error("proxies", f"names {outcome!r}, which is the outcome.")
    segments = t.take_str_list("segments", ())
    if estimates and t.has("treated_value"):
        raise t.error("treated_value", "does not apply to kind = 'estimates' (it has no arms).")
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
    for key in ESTIMATE_KEYS:
        if not estimates:
            if t.has(key):
                raise t.error(key, "applies to kind = 'estimates' only.")
            t.taken.append(key)
            continue
        stats[key] = t.take_str(key, None) if key.startswith("n_") else t.take_str(key)
    t.done()

    # With estimates the outcome and proxies are values of the metric column, not columns.
    metric_roles = () if estimates else (("outcome", (outcome,)), ("proxies", proxies))
    design_column = data.design if estimates and data.design not in (None, *DESIGNS) else None
    seen: dict[str, str] = {}
    for role, names in (
        ("experiment", (experiment,)),
        ("treatment", () if treatment is None else (treatment,)),
        *metric_roles,
        ("segments", segments),
        *((k, (stats[k],)) for k in ESTIMATE_KEYS if stats.get(k) is not None),
        ("design", () if design_column is None else (design_column,)),
        ("cluster", () if data.cluster is None else (data.cluster,)),
        ("exposure", () if data.exposure is None else (data.exposure,)),
    ):
        for n in names:
            if n in seen:
                raise t.error(role, f"names column {n!r}, which is already given as {seen[n]!r}.")
            seen[n] = role
    if data.time in seen:
        raise SpecError(
            f"{t.origin}: [{where}].time names column {data.time!r}, which is already given "
            f"as {seen[data.time]!r}."
        )
    check_design_roles(t, data, seen, metrics, where)
    if data.kind == "arm_summaries" and data.correlation is None and not stats.get("covariance"):
        raise data_error(
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
        **{k: stats.get(k) for k in ESTIMATE_KEYS},
    )


#: The ``[columns]`` keys of kind = "estimates" (besides experiment, outcome, proxies,
#: segments and directions).
ESTIMATE_KEYS = ("metric", "estimate", "se", "n_treat", "n_control")


def _checked_column(t: Table) -> Any:
    def check(path: str, v: Any) -> str:
        if not isinstance(v, str) or not v.strip():
            raise SpecError(
                f"{t.origin}: {path} must be a column name (a non-empty string); got {v!r}."
            )
        return v

    return check

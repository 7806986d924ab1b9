"""Declarative model specs: what ``proxyscope run models/X.toml`` executes.

A spec is a TOML file with the data source, the columns and their roles, the
model, the sampler, and the analyses and report to produce. It is read with
:mod:`tomllib`, checked key by key (every error names the file, the key path,
the allowed values and the value found; unknown keys are rejected with a
did-you-mean), and held as frozen dataclasses that know nothing of PyMC, so a
spec can be validated, compared and written back without building a model.
:func:`dumps_spec` writes the canonical form (every default filled in, fixed
order) so two specs can be diffed.

Example (``models/streaming_retention.toml`` is a complete one)::

    spec_version = 1
    name = "streaming_retention"

    [data]
    kind = "users"               # "users" | "arm_summaries" | "asos"
    engine = "duckdb"

    [data.simulate]              # or: path = "logs/*.parquet"
    n_users = 250000
    n_experiments = 50
    seed = 7

    [columns]
    experiment = "exp_id"
    treatment = "treatment"
    outcome = "long_retained"
    proxies = ["early_watch_min", "early_starts", "early_ctr", "rebuffer_rate"]
    segments = ["region", "device", "tenure"]
    directions = { rebuffer_rate = "lower" }

    [model]
    pooling = "additive"

    [sampler]
    draws = 1000
    tune = 1000
    chains = 2
    seed = 1

Relative paths in a spec are relative to the spec file's directory.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import tomli_w

from proxyscope import options
from proxyscope._io import write_text_atomic
from proxyscope.errors import SpecError, suggestion
from proxyscope.options import (
    ASOS_SCALES,
    CELL_CORRELATIONS,
    DATA_KINDS,
    DEFAULT_CI,
    DIRECTIONS,
    ENGINES,
    NOISE_MODES,
    POOLINGS,
)
from proxyscope.spec.read import Table, check_number, type_word

SPEC_VERSION = 1
SAMPLERS = ("auto", *options.SAMPLERS)
COMPARE_KINDS = tuple(options.COMPARE_LEVELS)
#: Prior names of :class:`proxyscope.model.priors.Priors`; all positive
#: numbers except ``min_levels_learned_scale`` (an integer >= 2).
PRIOR_NAMES = (
    "global_location_sd",
    "global_slope_sd",
    "sigma_sd",
    "main_location_sd",
    "main_slope_sd",
    "main_log_sigma_sd",
    "interaction_location_sd",
    "interaction_slope_sd",
    "interaction_log_sigma_sd",
    "none_location_sd",
    "none_slope_sd",
    "none_log_sigma_sd",
    "experiment_sd",
    "experiment_outcome_sd",
    "cell_sd",
    "lkj_eta",
    "min_levels_learned_scale",
)
INTEGER_PRIORS = ("min_levels_learned_scale",)
ASOS_ENV = "PROXYSCOPE_ASOS_PATH"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
#: The ASOS adapter's fixed roles (see :func:`proxyscope.load_asos`).
ASOS_OUTCOME, ASOS_PROXY, ASOS_SEGMENT = "final", "early", "metric_id"


# ---------------------------------------------------------------------------
# The spec as frozen dataclasses
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SimulateSpec:
    """Simulated users from :func:`proxyscope.simulate.streaming`."""

    n_users: int = 250_000
    n_experiments: int = 50
    seed: int = 7


@dataclasses.dataclass(frozen=True)
class AsosSpec:
    """Options of the ASOS adapter (:func:`proxyscope.load_asos`).

    ``metrics``: proxy metric ids, pooled as segment column ``metric_id``
    (None: all four; one id: that metric, no segments). ``outcome_metric``:
    the final read of this metric is the outcome (None: the same metric).
    """

    metrics: tuple[int, ...] | None = None
    outcome_metric: int | None = None
    early_day: float = 3.0
    scale: str = "relative"
    variants: tuple[int, ...] | None = None


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """Where the data come from and how they are read.

    ``kind``: "users" (one row per user, summarized by ``engine``),
    "arm_summaries" (one row per experiment × segment × arm with counts,
    means and variances) or "asos" (the ASOS Digital Experiments file).
    ``path``: a file, directory or glob, relative to the spec's directory;
    for "users" either ``path`` or ``simulate``. ``correlation``: the assumed
    user-level correlation of the outcome and proxy values where the data
    carry no covariance (required for "asos" and, without covariance
    columns, "arm_summaries").
    """

    kind: str = "users"
    path: str | None = None
    simulate: SimulateSpec | None = None
    engine: str = "duckdb"
    min_users_per_arm: int = 10
    dropna: bool = False
    correlation: float | None = None
    asos: AsosSpec | None = None


@dataclasses.dataclass(frozen=True)
class ColumnsSpec:
    """Column roles. For "arm_summaries", ``treatment`` is the arm column and
    ``count``/``mean``/``variance``/``covariance`` name the statistic columns."""

    experiment: str
    treatment: str
    outcome: str
    proxies: tuple[str, ...]
    segments: tuple[str, ...] = ()
    treated_value: Any = None
    directions: Mapping[str, str] = dataclasses.field(default_factory=dict)
    count: str | Mapping[str, str] | None = None
    mean: Mapping[str, str] | None = None
    variance: Mapping[str, str] | None = None
    covariance: Mapping[str, str] | None = None


@dataclasses.dataclass(frozen=True)
class ModelSection:
    """:class:`proxyscope.ProxyModel` configuration."""

    pooling: str = "additive"
    cell_correlation: str = "shared"
    noise: str = "moderated"
    priors: Mapping[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class SamplerSpec:
    """Sampler name and settings; ``seed`` None draws one (recorded in the fit)."""

    name: str = "auto"
    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    seed: int | None = None
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    followups: int = 2
    followup_budget: float = 4.0


@dataclasses.dataclass(frozen=True)
class TransportSpec:
    """A target population: segment label → share (or count), or a CSV/JSON file."""

    name: str = "target"
    shares: Mapping[str, float] | None = None
    path: str | None = None
    proxy_effects: Mapping[str, float] = dataclasses.field(default_factory=dict)
    proxy_se: Mapping[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class CompareSpec:
    """Model comparisons: other poolings (LOO of ``kind``) and other proxy sets
    (always by the outcome density, the only one comparable across proxy sets)."""

    kind: str = "experiment"
    poolings: tuple[str, ...] = ()
    proxy_sets: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    refit: bool = True
    max_refits: int = 5


@dataclasses.dataclass(frozen=True)
class SensitivitySpec:
    """Refit under several assumed noise correlations and show how conclusions move."""

    correlations: tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class AnalysisSpec:
    """Interval width, fragility threshold, STE level, and optional extras."""

    ci: float = DEFAULT_CI
    threshold: float = 0.5
    probability: float = 0.95
    ledger: str | None = None
    transport: TransportSpec | None = None
    compare: CompareSpec | None = None
    sensitivity: SensitivitySpec | None = None


@dataclasses.dataclass(frozen=True)
class ReportSpec:
    """Report title and output directory (relative to the working directory)."""

    title: str | None = None
    out: str | None = None


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A complete, validated model spec.

    ``base_dir`` is the directory relative paths are resolved against (the
    spec file's); it and ``origin`` are not part of the spec's content and
    are ignored by ``==``.
    """

    name: str
    data: DataSpec
    columns: ColumnsSpec | None
    model: ModelSection = ModelSection()
    sampler: SamplerSpec = SamplerSpec()
    analysis: AnalysisSpec = AnalysisSpec()
    report: ReportSpec = ReportSpec()
    description: str | None = None
    citation: str | None = None
    spec_version: int = SPEC_VERSION
    base_dir: Path = dataclasses.field(default=Path("."), compare=False)
    origin: str = dataclasses.field(default="<spec>", compare=False)

    # -- derived roles -----------------------------------------------------
    @property
    def outcome(self) -> str:
        return ASOS_OUTCOME if self.columns is None else self.columns.outcome

    @property
    def proxies(self) -> tuple[str, ...]:
        return (ASOS_PROXY,) if self.columns is None else self.columns.proxies

    @property
    def segments(self) -> tuple[str, ...]:
        if self.columns is not None:
            return self.columns.segments
        asos = self.data.asos or AsosSpec()
        return () if asos.metrics is not None and len(asos.metrics) == 1 else (ASOS_SEGMENT,)

    def resolve(self, path: str | os.PathLike[str]) -> Path:
        """``path`` relative to the spec's directory (absolute paths unchanged)."""
        p = Path(os.path.expanduser(os.fspath(path)))
        return p if p.is_absolute() else Path(os.path.normpath(self.base_dir / p))

    def data_path(self, override: str | os.PathLike[str] | None = None) -> Path | None:
        """The data file: ``override`` (e.g. ``--data``), then for ASOS the
        ``PROXYSCOPE_ASOS_PATH`` variable, then ``[data].path``; None when
        the data are simulated."""
        if override is not None:
            return Path(os.fspath(override))
        if self.data.kind == "asos" and os.environ.get(ASOS_ENV):
            return Path(os.environ[ASOS_ENV])
        if self.data.path is not None:
            return self.resolve(self.data.path)
        return None

    def to_dict(self) -> dict[str, Any]:
        """The canonical content as plain TOML-able data (None values left out)."""
        return to_dict(self)

    def dumps(self) -> str:
        """Canonical TOML text; :func:`loads_spec` reads it back to an equal spec."""
        return dumps_spec(self)

    def replace(self, **changes: Any) -> ModelSpec:
        """A copy with top-level fields replaced (not re-validated)."""
        return dataclasses.replace(self, **changes)


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------


def load_spec(
    path: str | os.PathLike[str], overrides: Sequence[str | tuple[str, Any]] = ()
) -> ModelSpec:
    """Read and validate a spec file.

    Parameters
    ----------
    path : str or PathLike
        The TOML file.
    overrides : sequence of str
        ``"section.key=value"`` assignments applied before validation (the
        value is read as TOML, else taken as a string), e.g.
        ``"sampler.draws=200"``.

    Raises
    ------
    SpecError
        No such file, not TOML, or any invalid key or value.
    """
    p = Path(path)
    origin = os.fspath(path)
    if not p.is_file():
        hint = ""
        if p.parent.is_dir():
            near = suggestion(p.name, [q.name for q in p.parent.glob("*.toml")])
            hint = near
        raise SpecError(f"{origin}: no such spec file.{hint}")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{origin}: cannot read the spec: {exc}") from None
    return loads_spec(text, origin=origin, base_dir=p.resolve().parent, overrides=overrides)


def loads_spec(
    text: str,
    *,
    origin: str = "<string>",
    base_dir: str | os.PathLike[str] | None = None,
    overrides: Sequence[str | tuple[str, Any]] = (),
) -> ModelSpec:
    """Validate a spec given as TOML text (relative paths from ``base_dir``, default cwd)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{origin}: not valid TOML: {exc}.") from None
    raw = apply_overrides(raw, overrides, origin=origin)
    return from_dict(raw, origin=origin, base_dir=base_dir)


def apply_overrides(
    raw: Mapping[str, Any],
    overrides: Sequence[str | tuple[str, Any]],
    *,
    origin: str = "<string>",
) -> dict[str, Any]:
    """``raw`` with assignments applied (a deep copy).

    Each override is ``"a.b.c=value"`` (the value read as TOML, else as
    text) or a pair ``("a.b.c", value)``.
    """
    out = copy.deepcopy(dict(raw))
    for item in overrides:
        if isinstance(item, tuple):
            dotted, value = item
        elif "=" not in item:
            raise SpecError(
                f"{origin}: the override {item!r} must look like section.key=value "
                "(e.g. sampler.draws=200)."
            )
        else:
            dotted, text = item.split("=", 1)
            value = parse_value(text)
        parts = [p.strip() for p in dotted.strip().split(".")]
        if not all(parts):
            raise SpecError(f"{origin}: the override {item!r} has an empty key.")
        node: dict[str, Any] = out
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise SpecError(
                    f"{origin}: the override {item!r} treats {part!r} as a table, but it is "
                    f"{type_word(child)}."
                )
            node = child
        node[parts[-1]] = value
    return out


def parse_value(text: str) -> Any:
    """A command-line value read as TOML (``200``, ``0.5``, ``true``, ``["a"]``), else text."""
    text = text.strip()
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def from_dict(
    raw: Mapping[str, Any],
    *,
    origin: str = "<dict>",
    base_dir: str | os.PathLike[str] | None = None,
) -> ModelSpec:
    """Validate parsed TOML content into a :class:`ModelSpec`."""
    top = Table(raw, "", origin)
    version = top.take_int("spec_version", SPEC_VERSION, minimum=1)
    if version != SPEC_VERSION:
        raise top.error(
            "spec_version", f"is {version}; this proxyscope reads version {SPEC_VERSION}."
        )
    name = top.take_str("name")
    if not _NAME.match(name):
        raise top.error(
            "name",
            "must be a short name of letters, digits, '_', '-' or '.' (it names the output "
            f"directory); got {name!r}.",
        )
    description = _opt_text(top, "description")
    citation = _opt_text(top, "citation")
    data = _data(top)
    columns = _columns(top, data)
    model = _model(top)
    sampler = _sampler(top)
    proxies = (ASOS_PROXY,) if columns is None else columns.proxies
    analysis = _analysis(top, data, proxies)
    report = _report(top)
    top.done()
    spec = ModelSpec(
        name=name,
        data=data,
        columns=columns,
        model=model,
        sampler=sampler,
        analysis=analysis,
        report=report,
        description=description,
        citation=citation,
        spec_version=version,
        base_dir=Path(base_dir) if base_dir is not None else Path("."),
        origin=origin,
    )
    return spec


def _opt_text(t: Table, key: str) -> str | None:
    if not t.has(key):
        t.taken.append(key)
        return None
    return str(t.take_str(key))


def _data(top: Table) -> DataSpec:
    t = top.take_table("data", required=True)
    assert t is not None
    kind = t.take_str("kind", "users", allowed=DATA_KINDS)
    path = t.take_str("path", None)
    sim_t = t.take_table("simulate")
    engine = t.take_str("engine", "duckdb", allowed=ENGINES)
    min_users = t.take_int("min_users_per_arm", 10, minimum=2)
    dropna = t.take_bool("dropna", False)
    correlation = t.take_float("correlation", None, low=-1.0, high=1.0)
    asos_t = t.take_table("asos")
    simulate = None
    if sim_t is not None:
        simulate = SimulateSpec(
            n_users=sim_t.take_int("n_users", SimulateSpec.n_users, minimum=1),
            n_experiments=sim_t.take_int("n_experiments", SimulateSpec.n_experiments, minimum=2),
            seed=sim_t.take_int("seed", SimulateSpec.seed, minimum=0),
        )
        sim_t.done()
    asos = None
    if asos_t is not None:
        metrics = asos_t.take_number_list("metrics", None, integer=True, low=1)
        variants = asos_t.take_number_list("variants", None, integer=True, low=1)
        asos = AsosSpec(
            metrics=metrics,
            outcome_metric=asos_t.take_int("outcome_metric", None, minimum=1),
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


def _columns(top: Table, data: DataSpec) -> ColumnsSpec | None:
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

    def direction(path: str, v: Any) -> str:
        if v not in DIRECTIONS:
            hint = suggestion(v, DIRECTIONS) if isinstance(v, str) else ""
            raise SpecError(
                f"{t.origin}: {path} must be one of {set_text(DIRECTIONS)}; got {v!r}.{hint}"
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


def set_text(values: Sequence[str]) -> str:
    return "{" + ", ".join(repr(v) for v in values) + "}"


def _model(top: Table) -> ModelSection:
    t = top.take_table("model")
    if t is None:
        return ModelSection()
    pooling = t.take_str("pooling", "additive", allowed=POOLINGS)
    cell_corr = t.take_str("cell_correlation", "shared", allowed=CELL_CORRELATIONS)
    noise = t.take_str("noise", "moderated", allowed=NOISE_MODES)

    def prior(path: str, v: Any) -> float:
        name = path.rsplit(".", 1)[-1]
        if name in INTEGER_PRIORS:
            if isinstance(v, bool) or not isinstance(v, int) or v < 2:
                raise SpecError(f"{t.origin}: {path} must be an integer >= 2; got {v!r}.")
            return v
        return check_number(
            v,
            lambda m: SpecError(f"{t.origin}: {path} {m}"),
            low=0.0,
            open_low=True,
        )

    priors = t.take_mapping("priors", prior, keys=PRIOR_NAMES, what="prior name")
    t.done()
    return ModelSection(pooling=pooling, cell_correlation=cell_corr, noise=noise, priors=priors)


def _sampler(top: Table) -> SamplerSpec:
    t = top.take_table("sampler")
    if t is None:
        return SamplerSpec()

    def setting(path: str, v: Any) -> Any:
        if isinstance(v, Mapping | list):
            raise SpecError(
                f"{t.origin}: {path} must be a string, number or boolean; got {type_word(v)}."
            )
        return v

    out = SamplerSpec(
        name=t.take_str("name", "auto", allowed=SAMPLERS),
        draws=t.take_int("draws", SamplerSpec.draws, minimum=1),
        tune=t.take_int("tune", SamplerSpec.tune, minimum=0),
        chains=t.take_int("chains", SamplerSpec.chains, minimum=1),
        seed=t.take_int("seed", None, minimum=0),
        settings=t.take_mapping("settings", setting),
        followups=t.take_int("followups", SamplerSpec.followups, minimum=0),
        followup_budget=t.take_float(
            "followup_budget", SamplerSpec.followup_budget, low=0.0, open_low=True
        ),
    )
    if out.followups > 5:
        raise SpecError(f"{t.origin}: followups must be at most 5; got {out.followups}.")
    t.done()
    return out


def _analysis(top: Table, data: DataSpec, proxies: tuple[str, ...]) -> AnalysisSpec:
    t = top.take_table("analysis")
    if t is None:
        return AnalysisSpec()
    ci = t.take_float("ci", DEFAULT_CI, low=0.0, high=1.0, open_low=True, open_high=True)
    threshold = t.take_float("threshold", 0.5, low=0.0, high=1.0, open_low=True, open_high=True)
    probability = t.take_float(
        "probability", 0.95, low=0.0, high=1.0, open_low=True, open_high=True
    )
    ledger = t.take_str("ledger", None)
    transport = _transport(t, proxies)
    compare = _compare(t, proxies)
    sensitivity = None
    sens_t = t.take_table("sensitivity")
    if sens_t is not None:
        if data.kind == "users":
            raise sens_t.error(
                None,
                "applies to kind = 'arm_summaries' or 'asos' (an assumed noise correlation); "
                "user-level data carry their own covariances.",
            )
        corrs = sens_t.take_number_list("correlations", low=-1.0, high=1.0)
        sens_t.done()
        sensitivity = SensitivitySpec(correlations=tuple(float(c) for c in corrs))
    t.done()
    return AnalysisSpec(
        ci=float(ci),
        threshold=float(threshold),
        probability=float(probability),
        ledger=ledger,
        transport=transport,
        compare=compare,
        sensitivity=sensitivity,
    )


def _transport(parent: Table, proxies: tuple[str, ...]) -> TransportSpec | None:
    t = parent.take_table("transport")
    if t is None:
        return None
    name = t.take_str("name", "target")
    path = t.take_str("path", None)

    def share(p: str, v: Any) -> float:
        return check_number(v, lambda m: SpecError(f"{t.origin}: {p} {m}"), low=0.0)

    def reading(p: str, v: Any) -> float:
        return check_number(v, lambda m: SpecError(f"{t.origin}: {p} {m}"))

    shares = t.take_mapping("shares", share, what="segment") or None
    effects = t.take_mapping("proxy_effects", reading, keys=proxies, what="proxy")
    ses = t.take_mapping("proxy_se", share, keys=proxies, what="proxy")
    t.done()
    if (shares is None) == (path is None):
        raise t.error(
            None,
            "needs exactly one of shares = { \"A / B\" = share, ... } or path = 'target.csv'"
            + ("; got both." if path is not None else "; got neither."),
        )
    if shares is not None and sum(shares.values()) <= 0:
        raise t.error("shares", "must have a positive total.")
    extra = [p for p in ses if p not in effects]
    if extra:
        raise t.error("proxy_se", f"gives standard errors for {extra} without proxy_effects.")
    return TransportSpec(name=name, shares=shares, path=path, proxy_effects=effects, proxy_se=ses)


def _compare(parent: Table, proxies: tuple[str, ...]) -> CompareSpec | None:
    t = parent.take_table("compare")
    if t is None:
        return None
    kind = t.take_str("kind", "experiment", allowed=COMPARE_KINDS)
    poolings = t.take_str_list("poolings", (), allowed=POOLINGS)

    def proxy_set(p: str, v: Any) -> tuple[str, ...]:
        items = v if isinstance(v, list) else [v]
        if not items:
            raise SpecError(f"{t.origin}: {p} must name at least one proxy.")
        for item in items:
            if item not in proxies:
                hint = suggestion(item, proxies) if isinstance(item, str) else ""
                raise SpecError(
                    f"{t.origin}: {p} must name proxies from {set_text(proxies)}; "
                    f"got {item!r}.{hint}"
                )
        if len(set(items)) != len(items):
            raise SpecError(f"{t.origin}: {p} repeats a proxy.")
        return tuple(items)

    sets = t.take_mapping("proxy_sets", proxy_set, what="proxy set")
    refit = t.take_bool("refit", True)
    max_refits = t.take_int("max_refits", 5, minimum=1)
    t.done()
    if not poolings and not sets:
        raise t.error(None, "needs poolings = [...] and/or a [..proxy_sets] table.")
    return CompareSpec(
        kind=kind, poolings=poolings, proxy_sets=sets, refit=refit, max_refits=max_refits
    )


def _report(top: Table) -> ReportSpec:
    t = top.take_table("report")
    if t is None:
        return ReportSpec()
    out = ReportSpec(title=t.take_str("title", None), out=t.take_str("out", None))
    t.done()
    return out


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------


def _nonempty(d: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return dict(d) if d else None


def to_dict(spec: ModelSpec) -> dict[str, Any]:
    """Canonical plain content of ``spec`` (fixed order, every default written)."""
    d = spec.data
    data: dict[str, Any] = {
        "kind": d.kind,
        "path": d.path,
        "engine": d.engine if d.kind == "users" else None,
        "min_users_per_arm": d.min_users_per_arm,
        "dropna": d.dropna,
        "correlation": d.correlation,
    }
    if d.simulate is not None:
        data["simulate"] = dataclasses.asdict(d.simulate)
    if d.asos is not None:
        ao = d.asos
        data["asos"] = {
            "metrics": None if ao.metrics is None else list(ao.metrics),
            "outcome_metric": ao.outcome_metric,
            "early_day": ao.early_day,
            "scale": ao.scale,
            "variants": None if ao.variants is None else list(ao.variants),
        }
    out: dict[str, Any] = {
        "spec_version": spec.spec_version,
        "name": spec.name,
        "description": spec.description,
        "citation": spec.citation,
        "data": data,
    }
    c = spec.columns
    if c is not None:
        cols: dict[str, Any] = {
            "experiment": c.experiment,
            "treatment": c.treatment,
            "treated_value": c.treated_value,
            "outcome": c.outcome,
            "proxies": list(c.proxies),
            "segments": list(c.segments),
            "count": c.count if isinstance(c.count, str) else None,
            "directions": dict(c.directions),
        }
        for key in ("count", "mean", "variance", "covariance"):
            v = getattr(c, key)
            if isinstance(v, Mapping):
                cols[key] = dict(v)
        out["columns"] = cols
    m = spec.model
    out["model"] = {
        "pooling": m.pooling,
        "cell_correlation": m.cell_correlation,
        "noise": m.noise,
        "priors": _nonempty(m.priors),
    }
    s = spec.sampler
    out["sampler"] = {
        "name": s.name,
        "draws": s.draws,
        "tune": s.tune,
        "chains": s.chains,
        "seed": s.seed,
        "settings": _nonempty(s.settings),
    }
    # Only when changed, so the hash of every spec that leaves them alone stays.
    if s.followups != SamplerSpec.followups:
        out["sampler"]["followups"] = s.followups
    if s.followup_budget != SamplerSpec.followup_budget:
        out["sampler"]["followup_budget"] = s.followup_budget
    a = spec.analysis
    analysis: dict[str, Any] = {
        "ci": a.ci,
        "threshold": a.threshold,
        "probability": a.probability,
        "ledger": a.ledger,
    }
    if a.transport is not None:
        tr = a.transport
        analysis["transport"] = {
            "name": tr.name,
            "path": tr.path,
            "proxy_effects": _nonempty(tr.proxy_effects),
            "proxy_se": _nonempty(tr.proxy_se),
            "shares": _nonempty(tr.shares),
        }
    if a.compare is not None:
        cm = a.compare
        analysis["compare"] = {
            "kind": cm.kind,
            "poolings": list(cm.poolings),
            "refit": cm.refit,
            "max_refits": cm.max_refits,
            "proxy_sets": {k: list(v) for k, v in cm.proxy_sets.items()} or None,
        }
    if a.sensitivity is not None:
        analysis["sensitivity"] = {"correlations": list(a.sensitivity.correlations)}
    out["analysis"] = analysis
    r = spec.report
    if r.title is not None or r.out is not None:
        out["report"] = {"title": r.title, "out": r.out}
    return _drop_none(out)


def _drop_none(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {k: _drop_none(v) for k, v in obj.items() if v is not None}
    return obj


def dumps_spec(spec: ModelSpec) -> str:
    """Canonical TOML text of ``spec`` (comments are not kept)."""
    header = [
        f"proxyscope model spec (canonical form, spec_version {spec.spec_version}).",
        "Written by proxyscope; every default is spelled out.",
    ]
    comments = "".join(f"# {line}\n" for line in header)
    return comments + "\n" + tomli_w.dumps(to_dict(spec))


def dump_spec(spec: ModelSpec, path: str | os.PathLike[str]) -> Path:
    """Write the canonical TOML of ``spec`` to ``path`` (atomically)."""
    return write_text_atomic(path, dumps_spec(spec))

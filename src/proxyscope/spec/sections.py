"""The sections of a spec as frozen dataclasses (``[data]``, ``[columns]``,
``[model]``, ``[sampler]``, ``[analysis]`` and its tables, ``[report]``); they know
nothing of PyMC. :class:`~proxyscope.spec.model_spec.ModelSpec` holds them."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from proxyscope.options import DEFAULT_CI
from proxyscope.spec.constants import ROW_DESIGNS


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
    means and variances), "asos" (the ASOS Digital Experiments file) or
    "estimates" (one row per experiment × segment × metric with an estimate
    and its standard error, made elsewhere: :func:`proxyscope.from_estimates`).
    ``path``: a file, directory or glob, relative to the spec's directory;
    for "users" either ``path`` or ``simulate``. ``correlation``: the assumed
    correlation where the data carry no covariance: of the outcome and proxy
    values over users ("arm_summaries", "asos"; required for "asos" and,
    without covariance columns, "arm_summaries"), or of the estimates' errors
    ("estimates", unless ``covariance`` names a table of their covariances).
    ``design``: the design of the cells ("arm_summaries": a design name;
    "estimates": a design name or a column holding one per row; "users": the
    design whose estimator reads the rows, "did", "rdd", "ipw" or
    "synthetic_control", with ``design_options``, the keys of its
    ``[data.<design>]`` table as given: :mod:`proxyscope.spec.parse_design`).
    ``cluster``, ``exposure``, ``exposure_values``: the randomization unit's
    column, the exposure column and which of its values means what
    ("users" only; see :func:`proxyscope.summarize`). ``time``: the column
    with each experiment's start, and ``period``: how starts are grouped (a
    name such as "quarter", or the bins' edges as given; None: the default
    for the starts' kind), DESIGN.md §9 (:mod:`proxyscope.spec.parse_time`).
    ``extra``: further sources whose cells join the history
    (:meth:`CellEffects.concat`).
    """

    kind: str = "users"
    path: str | None = None
    simulate: SimulateSpec | None = None
    engine: str = "duckdb"
    min_users_per_arm: int = 10
    dropna: bool = False
    correlation: float | None = None
    asos: AsosSpec | None = None
    design: str | None = None
    cluster: str | None = None
    exposure: str | None = None
    exposure_values: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    covariance: str | None = None
    design_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    time: str | None = None
    period: str | tuple[Any, ...] | None = None
    extra: tuple[ExtraSource, ...] = ()

    def time_arguments(self) -> dict[str, Any]:
        """``time=`` and ``period=`` of the functions that build cells, as far as this
        source sets them (none without ``time``: the calls stay as before)."""
        if self.time is None:
            return {}
        period = list(self.period) if isinstance(self.period, tuple) else self.period
        return {"time": self.time, "period": period}

    @property
    def reads_design(self) -> bool:
        """Whether a design's own estimator reads this source's rows (``[data.<design>]``)."""
        return self.kind == "users" and self.design in ROW_DESIGNS

    @property
    def takes_correlation(self) -> bool:
        """Whether an assumed correlation enters this source's covariances (and so a
        sensitivity analysis can vary it)."""
        if self.kind == "estimates":
            return self.covariance is None
        return self.kind in ("arm_summaries", "asos")


@dataclasses.dataclass(frozen=True)
class ColumnsSpec:
    """Column roles. For "arm_summaries", ``treatment`` is the arm column and
    ``count``/``mean``/``variance``/``covariance`` name the statistic columns. For
    "estimates" there is no ``treatment``: ``metric`` holds the metric's name
    (``outcome`` and ``proxies`` are its values), ``estimate`` and ``se`` the
    estimate and its standard error, ``n_treat``/``n_control`` (optional) the
    units per arm."""

    experiment: str
    treatment: str | None
    outcome: str
    proxies: tuple[str, ...]
    segments: tuple[str, ...] = ()
    treated_value: Any = None
    directions: Mapping[str, str] = dataclasses.field(default_factory=dict)
    count: str | Mapping[str, str] | None = None
    mean: Mapping[str, str] | None = None
    variance: Mapping[str, str] | None = None
    covariance: Mapping[str, str] | None = None
    metric: str | None = None
    estimate: str | None = None
    se: str | None = None
    n_treat: str | None = None
    n_control: str | None = None

    def roles(self) -> dict[str, Any]:
        """The user-level column roles, as ``summarize`` and its checks take them."""
        return {
            "experiment": self.experiment,
            "treatment": self.treatment,
            "outcome": self.outcome,
            "proxies": list(self.proxies),
            "segments": list(self.segments),
            "directions": dict(self.directions),
        }


@dataclasses.dataclass(frozen=True)
class ExtraSource:
    """One ``[[data.extra]]`` source: its own data section and columns (the metrics,
    segment columns and directions are the spec's, as :meth:`CellEffects.concat`
    requires)."""

    data: DataSpec
    columns: ColumnsSpec


@dataclasses.dataclass(frozen=True)
class ModelSection:
    """:class:`proxyscope.ProxyModel` configuration.

    ``time``: None (a static relation), True (the relation moves over the periods the
    cells carry), or a grouping name or bin edges (as written) that regroups them
    (DESIGN.md §9; :mod:`proxyscope.spec.parse_time`).
    """

    pooling: str = "additive"
    cell_correlation: str = "shared"
    noise: str = "moderated"
    priors: Mapping[str, float] = dataclasses.field(default_factory=dict)
    time: bool | str | tuple[Any, ...] | None = None

    def time_argument(self) -> Any:
        """``ProxyModel(time=...)``: None, True, a grouping name or a list of edges."""
        return list(self.time) if isinstance(self.time, tuple) else self.time


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
class StabilitySpec:
    """:func:`proxyscope.stability`'s settings for a model over time: the pairs of periods
    to compare (empty: the first and the last), the ``probability`` from which a change
    is called clear, and whether to give each segment's path too."""

    between: tuple[tuple[str, str], ...] = ()
    probability: float = 0.95
    segments: bool = False


@dataclasses.dataclass(frozen=True)
class RollingSpec:
    """The rolling-origin backtest of a model over time
    (:func:`proxyscope.analyses.backtest.rolling.rolling_backtest`): the origins (period
    labels; empty: from the middle of the history to the second-to-last period) and the
    sampler's draws, tune and chains for its fits (None: ``[sampler]``'s)."""

    origins: tuple[str, ...] = ()
    draws: int | None = None
    tune: int | None = None
    chains: int | None = None


@dataclasses.dataclass(frozen=True)
class AnalysisSpec:
    """Interval width, fragility threshold, STE level, and optional extras. ``period``:
    the period of a model over time every analysis reads (None: the latest)."""

    ci: float = DEFAULT_CI
    threshold: float = 0.5
    probability: float = 0.95
    ledger: str | None = None
    transport: TransportSpec | None = None
    compare: CompareSpec | None = None
    sensitivity: SensitivitySpec | None = None
    period: str | None = None
    stability: StabilitySpec | None = None
    rolling_backtest: RollingSpec | None = None


@dataclasses.dataclass(frozen=True)
class ReportSpec:
    """Report title and output directory (relative to the working directory)."""

    title: str | None = None
    out: str | None = None

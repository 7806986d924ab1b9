"""Declarative model specs: what ``proxyscope run models/X.toml`` executes.

A spec is a TOML file with the data source, the columns and their roles, the
model, the sampler, and the analyses and report to produce. It is read with
:mod:`tomllib`, checked key by key (every error names the file, the key path,
the allowed values and the value found; unknown keys are rejected with a
did-you-mean), and held as frozen dataclasses that know nothing of PyMC, so a
spec can be validated, compared and written back without building a model.
:func:`dumps_spec` writes the canonical form (every default filled in, fixed
order) so two specs can be diffed.

Relative paths in a spec are relative to the spec file's directory.

Modules:

- :mod:`~proxyscope.spec.constants`: the format's version, samplers, LOO levels,
  prior names, the ASOS adapter's roles and the largest integers a spec accepts
  (``MAX_DRAWS``, ``MAX_SEED``, ...; the command-line flags check the same).
- :mod:`~proxyscope.spec.sections`: one frozen dataclass per section.
- :mod:`~proxyscope.spec.model_spec`: :class:`ModelSpec` (the whole spec) and its
  canonical form (:func:`to_dict`, :func:`dumps_spec`, :func:`dump_spec`).
- :mod:`~proxyscope.spec.read`: :class:`~proxyscope.spec.read.Table`, the checked
  reader of one TOML table.
- :mod:`~proxyscope.spec.parse`: :func:`from_dict`, the top level and the
  ``[model]``, ``[sampler]`` and ``[report]`` sections (with an example spec).
- :mod:`~proxyscope.spec.parse_data`: the ``[data]`` and ``[columns]`` sections.
- :mod:`~proxyscope.spec.parse_extra`: ``[[data.extra]]``, further sources whose
  cells join the history.
- :mod:`~proxyscope.spec.parse_time`: ``[data].time`` and ``[data].period``, the
  experiments' start dates and their grouping into periods; ``[model].time`` (a
  relation that moves over periods), ``[analysis].period``, ``[analysis.stability]`` and
  ``[analysis.rolling_backtest]``.
- :mod:`~proxyscope.spec.parse_design`: ``[data.<design>]``, the column roles and
  settings of a source whose rows a design reads (did, rdd, ipw, synthetic_control).
- :mod:`~proxyscope.spec.parse_analysis`: the ``[analysis]`` section and its tables.
- :mod:`~proxyscope.spec.overrides`: ``section.key=value`` overrides
  (:func:`apply_overrides`, :func:`parse_value`).
- :mod:`~proxyscope.spec.load`: :func:`load_spec` (a file) and :func:`loads_spec`
  (text).
"""

from __future__ import annotations

# The allowed values a spec is checked against, reachable here for the CLI.
from proxyscope.options import (
    ASOS_SCALES,
    CELL_CORRELATIONS,
    DIRECTIONS,
    ENGINES,
    NOISE_MODES,
    POOLINGS,
)
from proxyscope.spec.constants import (
    ASOS_ENV,
    ASOS_OUTCOME,
    ASOS_PROXY,
    ASOS_SEGMENT,
    COMPARE_KINDS,
    DATA_KINDS,
    DESIGNS,
    DID_CONTROLS,
    EXPOSURE_ROLES,
    EXTRA_KINDS,
    INTEGER_PRIORS,
    IPW_ESTIMANDS,
    MAX_CHAINS,
    MAX_COUNT,
    MAX_DRAWS,
    MAX_EXPERIMENTS,
    MAX_FOLLOWUPS,
    MAX_SEED,
    MAX_TUNE,
    MAX_USERS,
    PERIODS,
    PRIOR_NAMES,
    RDD_KERNELS,
    ROW_DESIGNS,
    SAMPLERS,
    SPEC_VERSION,
    TIME_PRIORS,
)
from proxyscope.spec.load import load_spec, loads_spec
from proxyscope.spec.model_spec import ModelSpec, dump_spec, dumps_spec, to_dict
from proxyscope.spec.overrides import apply_overrides, parse_value
from proxyscope.spec.parse import from_dict
from proxyscope.spec.parse_design import DESIGN_KEYS
from proxyscope.spec.sections import (
    AnalysisSpec,
    AsosSpec,
    ColumnsSpec,
    CompareSpec,
    DataSpec,
    ExtraSource,
    ModelSection,
    ReportSpec,
    RollingSpec,
    SamplerSpec,
    SensitivitySpec,
    SimulateSpec,
    StabilitySpec,
    TransportSpec,
)

__all__ = [
    "ASOS_ENV",
    "ASOS_OUTCOME",
    "ASOS_PROXY",
    "ASOS_SCALES",
    "ASOS_SEGMENT",
    "CELL_CORRELATIONS",
    "COMPARE_KINDS",
    "DATA_KINDS",
    "DESIGNS",
    "DESIGN_KEYS",
    "DID_CONTROLS",
    "DIRECTIONS",
    "ENGINES",
    "EXPOSURE_ROLES",
    "EXTRA_KINDS",
    "INTEGER_PRIORS",
    "IPW_ESTIMANDS",
    "MAX_CHAINS",
    "MAX_COUNT",
    "MAX_DRAWS",
    "MAX_EXPERIMENTS",
    "MAX_FOLLOWUPS",
    "MAX_SEED",
    "MAX_TUNE",
    "MAX_USERS",
    "NOISE_MODES",
    "PERIODS",
    "POOLINGS",
    "PRIOR_NAMES",
    "RDD_KERNELS",
    "ROW_DESIGNS",
    "SAMPLERS",
    "SPEC_VERSION",
    "TIME_PRIORS",
    "AnalysisSpec",
    "AsosSpec",
    "ColumnsSpec",
    "CompareSpec",
    "DataSpec",
    "ExtraSource",
    "ModelSection",
    "ModelSpec",
    "ReportSpec",
    "RollingSpec",
    "SamplerSpec",
    "SensitivitySpec",
    "SimulateSpec",
    "StabilitySpec",
    "TransportSpec",
    "apply_overrides",
    "dump_spec",
    "dumps_spec",
    "from_dict",
    "load_spec",
    "loads_spec",
    "parse_value",
    "to_dict",
]

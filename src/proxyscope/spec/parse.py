"""Validating parsed TOML into a :class:`~proxyscope.spec.model_spec.ModelSpec`:
:func:`from_dict` reads the top level and the ``[model]``, ``[sampler]`` and
``[report]`` sections; ``[data]``/``[columns]`` are read in
:mod:`~proxyscope.spec.parse_data` and ``[analysis]`` in
:mod:`~proxyscope.spec.parse_analysis`.

Example (``models/streaming_retention.toml`` is a complete one)::

    spec_version = 1
    name = "streaming_retention"

    [data]
    kind = "users"               # "users" | "arm_summaries" | "asos" | "estimates"
    engine = "duckdb"
    # cluster = "workspace_id"   # randomized by workspace: clustered covariances
    # design = "did"             # rows read by a design (did, rdd, ipw, synthetic_control),
                                 # with its roles in [data.did] (see parse_design)

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
    # time = true                # the relation moves over periods (needs [data].time;
                                 # see parse_time)

    [sampler]
    draws = 1000
    tune = 1000
    chains = 2
    seed = 1
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from proxyscope.errors import SpecError
from proxyscope.options import CELL_CORRELATIONS, NOISE_MODES, POOLINGS
from proxyscope.spec.constants import (
    ASOS_PROXY,
    INTEGER_PRIORS,
    MAX_CHAINS,
    MAX_COUNT,
    MAX_DRAWS,
    MAX_FOLLOWUPS,
    MAX_SEED,
    MAX_TUNE,
    PRIOR_NAMES,
    SAMPLERS,
    SPEC_VERSION,
    TIME_PRIORS,
)
from proxyscope.spec.model_spec import ModelSpec
from proxyscope.spec.parse_analysis import analysis_section
from proxyscope.spec.parse_data import columns_section, data_section
from proxyscope.spec.parse_extra import extra_section
from proxyscope.spec.parse_time import model_time
from proxyscope.spec.read import Table, check_int, check_number, type_word
from proxyscope.spec.sections import DataSpec, ModelSection, ReportSpec, SamplerSpec

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def from_dict(
    raw: Mapping[str, Any],
    *,
    origin: str = "<dict>",
    base_dir: str | os.PathLike[str] | None = None,
) -> ModelSpec:
    """Validate parsed TOML content into a :class:`ModelSpec`."""
    if not isinstance(raw, Mapping):
        raise SpecError(f"{origin}: a spec must be a table (a mapping); got {type_word(raw)}.")
    top = Table(raw, "", origin)
    version = top.take_int("spec_version", SPEC_VERSION, minimum=1)
    if version != SPEC_VERSION:
        raise top.error(
            "spec_version", f"is {version}; this proxyscope reads version {SPEC_VERSION}."
        )
    name = top.take_str("name")
    if not _NAME.fullmatch(name):
        raise top.error(
            "name",
            "must be a short name of letters, digits, '_', '-' or '.' (it names the output "
            f"directory); got {name!r}.",
        )
    description = _opt_text(top, "description")
    citation = _opt_text(top, "citation")
    data = data_section(top)
    columns = columns_section(top, data)
    data = extra_section(top, data, columns)
    model = _model(top, data)
    sampler = _sampler(top)
    proxies = (ASOS_PROXY,) if columns is None else columns.proxies
    analysis = analysis_section(top, data, proxies, timed=model.time is not None)
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


def _model(top: Table, data: DataSpec) -> ModelSection:
    t = top.take_table("model")
    if t is None:
        return ModelSection()
    pooling = t.take_str("pooling", "additive", allowed=POOLINGS)
    cell_corr = t.take_str("cell_correlation", "shared", allowed=CELL_CORRELATIONS)
    noise = t.take_str("noise", "moderated", allowed=NOISE_MODES)
    time = model_time(t, data)

    def prior(path: str, v: Any) -> float:
        name = path.rsplit(".", 1)[-1]
        if name in INTEGER_PRIORS:
            return check_int(
                v, lambda m: SpecError(f"{t.origin}: {path} {m}"), minimum=2, maximum=MAX_COUNT
            )
        return check_number(
            v,
            lambda m: SpecError(f"{t.origin}: {path} {m}"),
            low=0.0,
            open_low=name not in TIME_PRIORS,
        )

    priors = t.take_mapping("priors", prior, keys=PRIOR_NAMES, what="prior name")
    t.done()
    return ModelSection(
        pooling=pooling, cell_correlation=cell_corr, noise=noise, priors=priors, time=time
    )


def _sampler(top: Table) -> SamplerSpec:
    t = top.take_table("sampler")
    if t is None:
        return SamplerSpec()

    def setting(path: str, v: Any) -> Any:
        if not isinstance(v, str | int | float | bool):  # a table, an array, a date
            raise SpecError(
                f"{t.origin}: {path} must be a string, number or boolean; got {type_word(v)}."
            )
        return v

    per_chain = "per chain; the default is 1000"
    out = SamplerSpec(
        name=t.take_str("name", "auto", allowed=SAMPLERS),
        draws=t.take_int("draws", SamplerSpec.draws, minimum=1, maximum=MAX_DRAWS, why=per_chain),
        tune=t.take_int("tune", SamplerSpec.tune, minimum=0, maximum=MAX_TUNE, why=per_chain),
        chains=t.take_int("chains", SamplerSpec.chains, minimum=1, maximum=MAX_CHAINS),
        seed=t.take_int("seed", None, minimum=0, maximum=MAX_SEED, why="a 32-bit seed"),
        settings=t.take_mapping("settings", setting),
        followups=t.take_int("followups", SamplerSpec.followups, minimum=0, maximum=MAX_FOLLOWUPS),
        followup_budget=t.take_float(
            "followup_budget", SamplerSpec.followup_budget, low=0.0, open_low=True
        ),
    )
    t.done()
    return out


def _report(top: Table) -> ReportSpec:
    t = top.take_table("report")
    if t is None:
        return ReportSpec()
    out = ReportSpec(title=t.take_str("title", None), out=t.take_path("out", None))
    t.done()
    return out

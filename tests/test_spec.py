"""Declarative model specs: parsing, validation messages, canonical round trip."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO
from hypothesis import given, settings
from hypothesis import strategies as st

from proxyscope import spec as specmod
from proxyscope.errors import SpecError
from proxyscope.run.demo import demo_spec
from proxyscope.spec import ModelSpec, load_spec, loads_spec

MODELS = sorted((REPO / "models").glob("*.toml"))

USERS = """
name = "t"
[data]
path = "users.csv"
[columns]
experiment = "exp_id"
treatment = "treatment"
outcome = "retained"
proxies = ["watch_min", "starts"]
segments = ["region"]
directions = { starts = "lower" }
"""


def parse(text: str = USERS, **kwargs: Any) -> ModelSpec:
    return loads_spec(text, origin="x.toml", **kwargs)


def error_of(text: str, *overrides: str) -> str:
    with pytest.raises(SpecError) as info:
        loads_spec(text, origin="x.toml", overrides=overrides)
    message = str(info.value)
    assert "\n" not in message
    return message


# -- the specs shipped in models/ ------------------------------------------------


def test_models_dir_has_the_documented_specs() -> None:
    names = {p.name for p in MODELS}
    assert {"streaming_retention.toml", "asos_early_read.toml"} <= names


@pytest.mark.parametrize("path", MODELS, ids=[p.name for p in MODELS])
def test_every_shipped_spec_validates_and_round_trips(path: Path) -> None:
    spec = load_spec(path)
    text = spec.dumps()
    again = loads_spec(text, base_dir=path.parent)
    assert again == spec
    assert again.dumps() == text  # canonical form is stable
    assert tomllib.loads(text)["name"] == spec.name


def test_asos_specs_cite_the_data_and_state_the_correlation() -> None:
    for path in MODELS:
        spec = load_spec(path)
        if spec.data.kind != "asos":
            continue
        assert spec.citation is not None
        assert "10.17605/OSF.IO/64JSB" in spec.citation
        assert spec.data.correlation is not None
        assert spec.analysis.sensitivity is not None
        assert len(spec.analysis.sensitivity.correlations) >= 3
        # The default location is the shared data folder beside the repository.
        assert spec.resolve(spec.data.path or "") == (
            REPO.parent / "shared" / "data" / "asos" / "asos_digital_experiments.csv"
        )


def test_the_demo_is_the_streaming_spec_without_its_comparisons() -> None:
    shipped = load_spec(REPO / "models" / "streaming_retention.toml")
    demo = demo_spec()
    assert shipped.analysis.compare is not None
    trimmed = dataclasses.replace(
        shipped,
        analysis=dataclasses.replace(shipped.analysis, compare=None),
        report=demo.report,
    )
    assert trimmed == demo
    assert demo.report.out == "proxyscope-demo"
    assert demo.data.simulate == specmod.SimulateSpec(250_000, 50, 7)


def test_spec_prior_names_mirror_the_package() -> None:
    # The allowed values (poolings, samplers, engines...) are one definition in
    # proxyscope.options; the prior names are the Priors dataclass's fields, which
    # the spec lists so that checking a spec does not load PyMC.
    from proxyscope.model.priors import TIME_PRIORS, Priors

    assert list(specmod.PRIOR_NAMES) == Priors.names()
    ints = [f.name for f in dataclasses.fields(Priors) if f.type in (int, "int")]
    assert list(specmod.INTEGER_PRIORS) == ints
    # The walk's step sds (>= 0, where every other prior scale is > 0).
    assert specmod.TIME_PRIORS == TIME_PRIORS
    assert set(specmod.TIME_PRIORS) <= set(specmod.PRIOR_NAMES)


def test_spec_designs_and_exposure_roles_mirror_the_data_layer() -> None:
    # Copied so that checking a spec loads no data library; they must not drift.
    from proxyscope.data import designs, exposure

    assert specmod.DESIGNS == designs.DESIGNS
    assert specmod.EXPOSURE_ROLES == exposure.EXPOSURE_ROLES


# -- parsing -------------------------------------------------------------------


def test_defaults_are_filled_in() -> None:
    spec = parse()
    assert spec.model == specmod.ModelSection()
    assert spec.sampler == specmod.SamplerSpec()
    assert spec.analysis.ci == 0.9
    assert spec.columns is not None
    assert spec.columns.directions == {"starts": "lower"}
    assert spec.proxies == ("watch_min", "starts")
    assert spec.segments == ("region",)


def test_round_trip_of_a_full_spec(tmp_path: Path) -> None:
    text = (
        USERS
        + """
[model]
pooling = "exchangeable"
[model.priors]
sigma_sd = 0.25
min_levels_learned_scale = 3
[sampler]
name = "pymc"
draws = 50
seed = 3
settings = { target_accept = 0.95 }
[analysis]
ci = 0.8
ledger = "weights.duckdb"
[analysis.transport]
name = "EU only"
shares = { "EU" = 1.0 }
proxy_effects = { watch_min = 1.5 }
proxy_se = { watch_min = 0.1 }
[analysis.compare]
kind = "cell"
poolings = ["complete", "none"]
proxy_sets = { watch = ["watch_min"] }
[report]
title = "A \\"quoted\\" title\\nwith a newline"
out = "out dir"
"""
    )
    spec = parse(text)
    path = specmod.dump_spec(spec, tmp_path / "canonical.toml")
    again = load_spec(path)
    assert again == spec
    assert again.model.priors == {"sigma_sd": 0.25, "min_levels_learned_scale": 3}
    assert again.analysis.compare is not None
    assert again.analysis.compare.proxy_sets == {"watch": ("watch_min",)}
    assert again.report.title == 'A "quoted" title\nwith a newline'


def test_asos_spec_has_fixed_roles() -> None:
    spec = parse('name = "a"\n[data]\nkind = "asos"\npath = "f.csv"\ncorrelation = 0.3\n')
    assert spec.columns is None
    assert (spec.outcome, spec.proxies, spec.segments) == ("final", ("early",), ("metric_id",))
    one = parse(
        'name = "a"\n[data]\nkind = "asos"\npath = "f.csv"\ncorrelation = 0.3\n'
        "[data.asos]\nmetrics = [1]\noutcome_metric = 4\n"
    )
    assert one.segments == ()
    assert one.data.asos == specmod.AsosSpec(metrics=(1,), outcome_metric=4)


def test_paths_resolve_from_the_spec_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "specs").mkdir()
    p = tmp_path / "specs" / "s.toml"
    p.write_text(USERS.replace("users.csv", "../data/users.csv"))
    spec = load_spec(p)
    assert spec.data_path() == tmp_path / "data" / "users.csv"
    assert spec.data_path("other.parquet") == Path("other.parquet")
    asos = tmp_path / "specs" / "a.toml"
    asos.write_text('name = "a"\n[data]\nkind = "asos"\npath = "x.csv"\ncorrelation = 0.5\n')
    monkeypatch.delenv(specmod.ASOS_ENV, raising=False)
    assert load_spec(asos).data_path() == tmp_path / "specs" / "x.csv"
    monkeypatch.setenv(specmod.ASOS_ENV, "/elsewhere/asos.csv")
    assert load_spec(asos).data_path() == Path("/elsewhere/asos.csv")
    assert load_spec(asos).data_path("given.csv") == Path("given.csv")


def test_overrides_apply_before_validation() -> None:
    spec = parse(USERS, overrides=["sampler.draws=20", "model.pooling=complete", "report.out=x"])
    assert spec.sampler.draws == 20
    assert spec.model.pooling == "complete"
    assert spec.report.out == "x"
    spec = parse(USERS, overrides=[("columns.proxies", ["starts"])])
    assert spec.proxies == ("starts",)
    assert "sampler.draws=0" not in error_of(USERS, "sampler.draws=0")
    assert "[sampler].draws must be an integer >= 1; got 0." in error_of(USERS, "sampler.draws=0")
    assert "must look like section.key=value" in error_of(USERS, "sampler.draws")
    assert "treats 'name' as a table" in error_of(USERS, "name.x=1")


# -- error messages ------------------------------------------------------------


def test_bad_value_names_the_key_the_allowed_values_and_the_value() -> None:
    msg = error_of(USERS + '[model]\npooling = "addtive"\n')
    assert msg == (
        "x.toml: [model].pooling must be one of {'additive', 'exchangeable', 'complete', "
        "'none'}; got 'addtive'. Did you mean 'additive'?"
    )


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            '[model]\npolling = "complete"\n',
            r"\[model\]\.polling is not a known key\. Did you mean 'pooling'\? "
            r"Allowed keys in \[model\]: pooling, cell_correlation, noise, time, priors\.",
        ),
        ('[modle]\npooling = "complete"\n', r"modle is not a known key\. Did you mean 'model'\?"),
        (
            '[sampler]\ndraws = "many"\n',
            r"\[sampler\]\.draws must be an integer >= 1; got 'many' \(a string\)\.",
        ),
        ("[sampler]\nchains = 0\n", r"\[sampler\]\.chains must be an integer >= 1; got 0\."),
        (
            '[sampler]\nname = "stan"\n',
            r"\[sampler\]\.name must be one of \{'auto', 'nutpie', 'pymc'\}; got 'stan'\.",
        ),
        ("[analysis]\nci = 1.5\n", r"\[analysis\]\.ci must be a number in \(0, 1\); got 1\.5\."),
        (
            "[model.priors]\nsigma = 1.0\n",
            r"\[model\.priors\]\.sigma is not a known prior name\. Did you mean 'sigma_sd'\?",
        ),
        (
            "[model.priors]\nsigma_sd = -1.0\n",
            r"\[model\.priors\]\.sigma_sd must be a number > 0; got -1\.0\.",
        ),
        ("[model.priors]\nmin_levels_learned_scale = 1\n", r"must be an integer >= 2; got 1\."),
        (
            '[analysis.compare]\nproxy_sets = { w = ["watch"] }\n',
            r"\[analysis\.compare\.proxy_sets\]\.w must name proxies from "
            r"\{'watch_min', 'starts'\}; got 'watch'\. Did you mean 'watch_min'\?",
        ),
        ("[analysis.compare]\n", r"\[analysis\.compare\] needs poolings"),
        (
            '[analysis.compare]\npoolings = ["full"]\n',
            r"\[analysis\.compare\]\.poolings items must be in",
        ),
        (
            '[analysis.transport]\npath = "t.csv"\nshares = { EU = 1 }\n',
            r"needs exactly one of shares .* or path = 'target\.csv'; got both\.",
        ),
        (
            "[analysis.transport]\nshares = { EU = 1 }\nproxy_effects = { ctr = 1.0 }\n",
            r"\[analysis\.transport\.proxy_effects\]\.ctr is not a known proxy",
        ),
        (
            "[analysis.sensitivity]\ncorrelations = [0.2]\n",
            r"\[analysis\.sensitivity\] applies to kind = 'arm_summaries' or 'asos'",
        ),
        ("[report]\ntitle = 3\n", r"\[report\]\.title must be a non-empty string; got 3\."),
    ],
)
def test_invalid_specs_name_the_problem(extra: str, expected: str) -> None:
    assert re.search(expected, error_of(USERS + extra)), error_of(USERS + extra)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name = 'x'\n", r"the spec needs a \[data\] table\."),
        (
            'name = "t"\n[data]\nkind = "user"\npath = "u.csv"\n',
            r"\[data\]\.kind must be one of \{'users', 'arm_summaries', 'asos', 'estimates'\}; "
            r"got 'user'\. Did you mean 'users'\?",
        ),
        ('name = "t"\n[data]\npath = "u.csv"\n', r"the spec needs a \[columns\] table\."),
        (
            'name = "t"\n[data]\npath = "u.csv"\n[data.simulate]\n',
            r"needs exactly one source .*; got both\.",
        ),
        ('name = "t"\n[data]\n[columns]\n', r"needs exactly one source .*; got neither\."),
        (
            'name = "t"\n[data]\nkind = "asos"\npath = "a.csv"\n',
            r"\[data\]\.correlation is required for kind = 'asos'",
        ),
        (
            'name = "t"\n[data]\nkind = "asos"\npath = "a.csv"\ncorrelation = 1.5\n',
            r"\[data\]\.correlation must be a number in \[-1, 1\]; got 1\.5\.",
        ),
        (
            'name = "t"\n[data]\nkind = "asos"\ncorrelation = 0.5\n[columns]\n',
            r"\[columns\]|columns must be left out",
        ),
        (
            'name = "t"\n[data]\nkind = "asos"\ncorrelation = 0.5\n[data.asos]\nmetrics = [1, 1]\n',
            r"\[data\.asos\]\.metrics repeats a value",
        ),
        ('name = "a b"\n[data]\n', r"name must be a short name"),
        ("spec_version = 2\n", r"spec_version is 2; this proxyscope reads version 1\."),
        ("name = \n", r"not valid TOML"),
    ],
)
def test_invalid_whole_specs(text: str, expected: str) -> None:
    assert re.search(expected, error_of(text)), error_of(text)


def test_columns_errors() -> None:
    no_outcome = USERS.replace('outcome = "retained"\n', "")
    assert error_of(no_outcome) == "x.toml: [columns].outcome is required."
    twice = USERS.replace('segments = ["region"]', 'segments = ["starts"]')
    assert "[columns].segments names column 'starts', which is already given as 'proxies'" in (
        error_of(twice)
    )
    bad_dir = USERS.replace('starts = "lower"', 'starts = "down"')
    assert "[columns.directions].starts must be one of {'higher', 'lower'}; got 'down'" in (
        error_of(bad_dir)
    )
    not_proxy = USERS.replace('starts = "lower"', 'retained = "lower"')
    assert "[columns.directions].retained is not a known proxy" in error_of(not_proxy)
    assert "[columns].count applies to kind = 'arm_summaries' only" in error_of(
        USERS.replace("[columns]", '[columns]\ncount = "n"')
    )


def test_arm_summaries_need_every_statistic_and_an_assumed_correlation() -> None:
    base = """
name = "arms"
[data]
kind = "arm_summaries"
path = "arms.csv"
correlation = 0.0
[columns]
experiment = "exp"
treatment = "arm"
treated_value = "treatment"
outcome = "y"
proxies = ["x"]
count = "n"
mean = { y = "mean_y", x = "mean_x" }
variance = { y = "var_y", x = "var_x" }
"""
    spec = parse(base)
    assert spec.columns is not None
    assert spec.columns.count == "n"
    assert loads_spec(spec.dumps()) == spec
    assert "missing: ['x']" in error_of(base.replace(', x = "var_x"', ""))
    no_rho = base.replace("correlation = 0.0\n", "")
    assert "needs correlation = ... for kind = 'arm_summaries'" in error_of(no_rho)
    with_cov = no_rho + '[columns.covariance]\n"y|x" = "cov_xy"\n'
    assert parse(with_cov).columns.covariance == {"y|x": "cov_xy"}  # type: ignore[union-attr]
    assert "is not a known metric pair" in error_of(no_rho + '[columns.covariance]\n"x|z" = "c"\n')


def test_missing_file_is_a_spec_error_with_a_suggestion(tmp_path: Path) -> None:
    (tmp_path / "streaming.toml").write_text(USERS)
    with pytest.raises(SpecError, match=r"no such spec file\. Did you mean 'streaming\.toml'\?"):
        load_spec(tmp_path / "streamng.toml")
    with pytest.raises(SpecError, match="no such spec file"):
        load_spec(tmp_path / "nowhere" / "x.toml")


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1, max_size=40).filter(str.strip))  # blank titles are refused
def test_any_title_survives_writing_and_reading(title: str) -> None:
    """Quotes, backslashes, newlines and control characters in a spec's text
    come back as they were (the writer is tomli-w; this checks its use)."""
    spec = demo_spec()
    spec = dataclasses.replace(spec, report=dataclasses.replace(spec.report, title=title))
    assert loads_spec(spec.dumps()) == spec


# -- designs, clusters, estimates and extra sources (issue 23) -------------------------

ESTIMATES = """
name = "est"
[data]
kind = "estimates"
path = "estimates.csv"
correlation = 0.3
[columns]
experiment = "exp"
metric = "metric"
estimate = "est"
se = "se"
outcome = "ltv"
proxies = ["d7", "d1"]
directions = { d1 = "lower" }
"""


def test_estimates_spec_round_trips_and_says_what_it_reads() -> None:
    spec = parse(ESTIMATES)
    assert spec.data.kind == "estimates" and spec.data.correlation == 0.3
    assert spec.data.takes_correlation
    cols = spec.columns
    assert cols is not None and cols.treatment is None
    assert (cols.metric, cols.estimate, cols.se, cols.n_treat) == ("metric", "est", "se", None)
    assert spec.outcome == "ltv" and spec.proxies == ("d7", "d1")
    text = spec.dumps()
    assert "min_users_per_arm" not in text and "dropna" not in text and "treatment" not in text
    assert loads_spec(text, origin="x.toml") == spec
    with_cov = parse(
        ESTIMATES.replace("correlation = 0.3", 'covariance = "pairs.csv"\ndesign = "how"')
        .replace('se = "se"', 'se = "se"\nn_treat = "nt"\nn_control = "nc"')
    )  # fmt: skip
    assert with_cov.data.covariance == "pairs.csv" and with_cov.data.design == "how"
    assert not with_cov.data.takes_correlation
    assert (with_cov.columns.n_treat, with_cov.columns.n_control) == ("nt", "nc")  # type: ignore[union-attr]
    assert loads_spec(with_cov.dumps(), origin="x.toml") == with_cov


def test_spec_hashes_of_specs_without_the_new_keys_are_unchanged() -> None:
    # Keys that are not set are not written: a spec that does not use them has the
    # canonical text (and so the hash) it had before they existed.
    text = parse(USERS).dumps()
    for key in ("design", "cluster", "exposure", "covariance", "extra", "metric", "estimate"):
        assert key not in text


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("correlation = 0.3\n", ""), r"\[data\] needs exactly one of correlation = .*got neither"),
        (
            ("correlation = 0.3\n", 'correlation = 0.3\ncovariance = "p.csv"\n'),
            r"\[data\] needs exactly one of .*; got both\.",
        ),
        (("correlation = 0.3", "correlation = -1"), r"\[data\]\.correlation must be in \(-1, 1\)"),
        (('se = "se"\n', ""), r"\[columns\]\.se is required\."),
        (('se = "se"', 'se = "exp"'), r"\[columns\]\.se names column 'exp', which is already"),
        (('se = "se"', 'se = "se"\ntreatment = "arm"'), r"\[columns\]\.treatment does not apply"),
        (('se = "se"', 'se = "se"\ntreated_value = 1'), r"treated_value does not apply"),
        (('se = "se"', 'se = "se"\ncount = "n"'), r"\[columns\]\.count applies to kind = 'arm_s"),
        (('proxies = ["d7", "d1"]', 'proxies = ["d7", "ltv"]'), r"names 'ltv', which is the out"),
        (('path = "estimates.csv"\n', ""), r"\[data\]\.path is required for kind = 'estimates'"),
        (("correlation = 0.3", "correlation = 0.3\ndropna = true"), r"dropna does not apply"),
        (("correlation = 0.3", 'correlation = 0.3\ncluster = "w"'), r"cluster applies to kind ="),
        (("correlation = 0.3", 'correlation = 0.3\nengine = "pandas"'), r"engine applies to k"),
    ],
)
def test_invalid_estimates_specs(change: tuple[str, str], expected: str) -> None:
    text = ESTIMATES.replace(*change)
    assert text != ESTIMATES
    assert re.search(expected, error_of(text)), error_of(text)


def test_cluster_exposure_and_design_keys() -> None:
    clustered = USERS.replace(
        'path = "users.csv"',
        'path = "users.csv"\ncluster = "ws"\nexposure = "expo"\n'
        "exposure_values = { direct = 2, spillover = 1, pure_control = 0 }",
    )
    spec = parse(clustered)
    assert (spec.data.cluster, spec.data.exposure) == ("ws", "expo")
    assert spec.data.exposure_values == {"direct": 2, "spillover": 1, "pure_control": 0}
    assert loads_spec(spec.dumps(), origin="x.toml") == spec
    assert "exposure_values" in spec.dumps()
    for bad, expected in [
        ('path = "users.csv"\nexposure = "e"', r"\[data\]\.exposure needs \[data\]\.cluster too"),
        ('path = "users.csv"\ncluster = 3', r"\[data\]\.cluster must be a non-empty string; got 3"),
        (
            'path = "users.csv"\ncluster = "w"\nexposure = "e"\nexposure_values = { drect = 1 }',
            r"\[data\.exposure_values\]\.drect is not a known exposure role\. Did you mean "
            r"'direct'\? Allowed: direct, spillover, pure_control\.",
        ),
        (
            'path = "users.csv"\ncluster = "w"\nexposure = "e"\nexposure_values = { direct = [1] }',
            r"\[data\.exposure_values\]\.direct must be a value of the exposure column",
        ),
        ('path = "users.csv"\nexposure_values = { direct = 1 }', r"needs \[data\]\.exposure"),
        ('path = "users.csv"\ndesign = "ab"', r"\[data\]\.design must be one of \{'did', 'rdd'"),
        ('path = "users.csv"\ndesign = "did"', r"\[data\] needs a \[data\.did\] table for design"),
        ('path = "users.csv"\ncluster = "region"', r"\[columns\]\.cluster names column 'region'"),
        ('path = "users.csv"\nclustr = "w"', r"clustr is not a known key\. Did you mean 'cluster'"),
    ]:
        message = error_of(USERS.replace('path = "users.csv"', bad))
        assert re.search(expected, message), message


def test_arm_summaries_take_a_design_name() -> None:
    arms = """
name = "arms"
[data]
kind = "arm_summaries"
path = "arms.csv"
correlation = 0.2
design = "ipw"
[columns]
experiment = "exp"
treatment = "arm"
outcome = "y"
proxies = ["x"]
count = "n"
mean = { y = "mean_y", x = "mean_x" }
variance = { y = "var_y", x = "var_x" }
"""
    assert parse(arms).data.design == "ipw"
    message = error_of(arms.replace('"ipw"', '"ipv"'))
    assert "[data].design must be one of {'ab', 'cluster', 'did', 'rdd', 'ipw'" in message
    assert "Did you mean 'ipw'?" in message
    asos = 'name = "a"\n[data]\nkind = "asos"\npath = "f.csv"\ncorrelation = 0.3\ndesign = "ab"\n'
    assert "[data].design does not apply to kind = 'asos'" in error_of(asos)


EXTRA = """
[[data.extra]]
kind = "estimates"
path = "quasi.csv"
design = "how"
correlation = 0.4
columns = { metric = "metric", estimate = "est", se = "se" }

[[data.extra]]
path = "workspaces.parquet"
cluster = "ws"
columns = { experiment = "exp" }
"""


def test_extra_sources_inherit_the_metrics_and_the_columns_of_their_kind() -> None:
    spec = parse(USERS + EXTRA)
    first, second = spec.data.extra
    assert first.data.kind == "estimates" and first.data.correlation == 0.4
    assert first.columns.experiment == "exp_id"  # from [columns]
    assert first.columns.treatment is None and first.columns.metric == "metric"
    assert first.columns.outcome == "retained" and first.columns.directions == {"starts": "lower"}
    assert second.data.kind == "users" and second.data.cluster == "ws"
    assert (second.columns.experiment, second.columns.treatment) == ("exp", "treatment")
    assert spec.segments == ("region",) == second.columns.segments
    again = loads_spec(spec.dumps(), origin="x.toml")
    assert again == spec
    assert again.dumps() == spec.dumps()
    # The sensitivity analysis applies: one source assumes a correlation.
    sens = parse(USERS + EXTRA + "[analysis.sensitivity]\ncorrelations = [0.0, 0.8]\n")
    assert sens.analysis.sensitivity is not None


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ('columns = { experiment = "exp" }', 'columns = { outcome = "y" }'),
            r"\[data\.extra #2\]\.columns\.outcome is set by \[columns\]\.outcome",
        ),
        (
            ('columns = { metric = "metric", estimate = "est", se = "se" }', ""),
            r"\[data\.extra #1\.columns\]\.metric is required\.",
        ),
        (('path = "workspaces.parquet"\n', ""), r"\[data\.extra #2\]\.path is required"),
        (('kind = "estimates"', 'kind = "asos"'), r"\[data\.extra #1\]\.kind must be one of"),
        (("correlation = 0.4", "correlation = 0.4\nsimulate = 1"), r"simulate is not a known key"),
        (
            ('cluster = "ws"', 'cluster = "exp"'),
            r"\[data\.extra #2\.columns\]\.cluster names column",
        ),
        (('design = "how"', 'design = "how"\nexposure = "e"'), r"#1\]\.exposure applies to kind"),
    ],
)
def test_invalid_extra_sources(change: tuple[str, str], expected: str) -> None:
    text = (USERS + EXTRA).replace(*change)
    assert text != USERS + EXTRA
    assert re.search(expected, error_of(text)), error_of(text)


def test_extra_sources_need_tables_and_a_main_source_with_columns() -> None:
    message = error_of(USERS.replace('path = "users.csv"', 'path = "users.csv"\nextra = 3'))
    assert "[data].extra must be an array of tables (written [[data.extra]]); got an integer" in (
        message
    )
    asos = 'name = "a"\n[data]\nkind = "asos"\npath = "f.csv"\ncorrelation = 0.3\n'
    assert "[[data.extra]] cannot join kind = 'asos'" in error_of(asos + EXTRA)


def test_sensitivity_needs_an_assumed_correlation_somewhere() -> None:
    sens = "[analysis.sensitivity]\ncorrelations = [0.0, 0.5]\n"
    assert parse(ESTIMATES + sens).analysis.sensitivity is not None
    estimated = ESTIMATES.replace("correlation = 0.3", 'covariance = "p.csv"')
    assert "[analysis.sensitivity] applies to kind = 'arm_summaries' or 'asos', or 'estimates'" in (
        error_of(estimated + sens)
    )

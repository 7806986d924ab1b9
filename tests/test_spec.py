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
    from proxyscope.model.priors import Priors

    assert list(specmod.PRIOR_NAMES) == Priors.names()
    ints = [f.name for f in dataclasses.fields(Priors) if f.type in (int, "int")]
    assert list(specmod.INTEGER_PRIORS) == ints


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
            r"Allowed keys in \[model\]: pooling, cell_correlation, noise, priors\.",
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
            r"\[data\]\.kind must be one of \{'users', 'arm_summaries', 'asos'\}; "
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

"""The quasi-experimental designs on every surface: a spec's ``[data.<design>]`` source,
``proxyscope validate`` and ``proxyscope summarize --design ...``.

Each design's small simulated world is written to Parquet; the cells a spec (or the
command line) builds from the file must be those of the design function called on
the world's table directly.
"""

from __future__ import annotations

import inspect
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from proxyscope import simulate
from proxyscope.cli import main
from proxyscope.cli.flags import DESIGN_FLAGS
from proxyscope.data import CellEffects
from proxyscope.data.did import did
from proxyscope.data.ipw import ipw
from proxyscope.data.rdd import rdd
from proxyscope.data.summarize import summarize
from proxyscope.data.synthetic_control import synthetic_control
from proxyscope.errors import SpecError
from proxyscope.run.check import check_data
from proxyscope.run.load import load_effects
from proxyscope.simulate.optin_world import optin
from proxyscope.spec import DESIGN_KEYS, ROW_DESIGNS, loads_spec

FUNCTIONS = {"did": did, "rdd": rdd, "ipw": ipw, "synthetic_control": synthetic_control}
PROXIES = ["early_watch_min", "early_starts", "early_ctr", "rebuffer_rate"]
COLUMNS = f"""
[columns]
experiment = "exp_id"
outcome = "long_retained"
proxies = {PROXIES!r}
directions = {{ rebuffer_rate = "lower" }}
""".replace("'", '"')

#: Per design: the file, the [data] keys, the [data.<design>] table, the segments,
#: extra [columns] keys, and the direct call's arguments beyond the common roles.
CASES: dict[str, dict[str, Any]] = {
    "did": {
        "file": "panel.parquet",
        "data": "",
        "table": 'unit = "unit"\nperiod = "period"\nfirst_treated = "first_treated"\n'
        'control = "not_yet"\npre_periods = 2',
        "segments": ["region"],
        "columns": "",
        "kwargs": {
            "unit": "unit",
            "period": "period",
            "first_treated": "first_treated",
            "control": "not_yet",
            "pre_periods": 2,
        },
        "flags": [
            *("--unit", "unit", "--period", "period", "--first-treated", "first_treated"),
            *("--control", "not_yet", "--pre-periods", "2"),
        ],
    },
    "rdd": {
        "file": "rows.parquet",
        "data": "min_users_per_arm = 20",
        "table": 'running = "score"\ncutoff = 0.85\nkernel = "epanechnikov"\ndensity_alpha = 0.1',
        "segments": ["tenure"],
        "columns": "",
        "kwargs": {
            "running": "score",
            "cutoff": 0.85,
            "kernel": "epanechnikov",
            "density_alpha": 0.1,
            "min_users_per_arm": 20,
        },
        "flags": [
            *("--running", "score", "--cutoff", "0.85", "--kernel", "epanechnikov"),
            *("--density-alpha", "0.1", "--min-users-per-arm", "20"),
        ],
    },
    "ipw": {
        "file": "users.parquet",
        "data": "",
        "table": 'covariates = ["prior_watch_min", "prior_starts"]\nestimand = "att"\n'
        "n_folds = 3\nrandom_state = 4",
        "segments": ["device"],
        "columns": 'treatment = "opt_in"\n',
        "kwargs": {
            "treatment": "opt_in",
            "covariates": ["prior_watch_min", "prior_starts"],
            "estimand": "att",
            "n_folds": 3,
            "random_state": 4,
        },
        "flags": [
            *("--treatment", "opt_in", "--covariates", "prior_watch_min,prior_starts"),
            *("--estimand", "att", "--n-folds", "3", "--random-state", "4"),
        ],
    },
    "synthetic_control": {
        "file": "launch.parquet",
        "data": "",
        "table": 'unit = "market"\nperiod = "week"\ntreated = "launched"\n'
        'treatment_start = "launch_week"\nfit_metric = "long_retained"\nmin_donors = 8',
        "segments": [],
        "columns": "",
        "kwargs": {
            "unit": "market",
            "period": "week",
            "treated": "launched",
            "treatment_start": "launch_week",
            "fit_metric": "long_retained",
            "min_donors": 8,
        },
        "flags": [
            *("--unit", "market", "--period", "week", "--treated", "launched"),
            *("--treatment-start", "launch_week", "--fit-metric", "long_retained"),
            *("--min-donors", "8"),
        ],
    },
}


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Each design's world table (the did panel's experiments numbered from 100, so it
    can join A/B users numbered 0, 1, 2), written to Parquet in one directory."""
    root = tmp_path_factory.mktemp("designs")
    panel = simulate.rollout(n_experiments=3, seed=1).panel
    panel = panel.assign(exp_id=panel["exp_id"] + 100)
    frames = {
        "did": panel,
        "rdd": simulate.threshold(n_experiments=3, n_users=3000, segments=("tenure",), seed=1).rows,
        "ipw": optin(n_experiments=3, users_per_experiment=600, segments=("device",), seed=1).users,
        "synthetic_control": simulate.launch(n_experiments=3, seed=1).panel,
        "ab": simulate.streaming(n_users=6000, n_experiments=3, seed=2).users,
    }
    for name, frame in frames.items():
        frame.to_parquet(root / CASES.get(name, {"file": "ab.parquet"})["file"], index=False)
    yield {"root": root, **frames}


def spec_text(design: str, *, name: str = "d") -> str:
    case = CASES[design]
    columns = COLUMNS + f"segments = {case['segments']!r}\n".replace("'", '"') + case["columns"]
    return (
        f'name = "{name}"\n[data]\npath = "{case["file"]}"\ndesign = "{design}"\n'
        f"{case['data']}\n[data.{design}]\n{case['table']}\n{columns}"
    )


def direct(design: str, frame: pd.DataFrame) -> CellEffects:
    case = CASES[design]
    return FUNCTIONS[design](
        frame,
        experiment="exp_id",
        outcome="long_retained",
        proxies=PROXIES,
        segments=case["segments"],
        directions={"rebuffer_rate": "lower"},
        **case["kwargs"],
    )


def assert_same_cells(got: CellEffects, ref: CellEffects) -> None:
    assert got.n_cells == ref.n_cells
    assert list(got.design) == list(ref.design)
    assert list(got.experiment) == list(ref.experiment)
    assert list(got.segment_label) == list(ref.segment_label)
    np.testing.assert_allclose(got.effect, ref.effect, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got.noise_cov, ref.noise_cov, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(got.users(), ref.users())


def quietly(build: Any) -> Any:
    """The designs warn about what they check (a failing pre-trend, few clusters)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build()


# -- the spec ---------------------------------------------------------------------


@pytest.mark.parametrize("design", ROW_DESIGNS)
def test_a_spec_source_read_by_a_design_is_the_direct_call(
    design: str, tables: dict[str, Any]
) -> None:
    spec = loads_spec(spec_text(design), base_dir=tables["root"])
    assert spec.data.reads_design and spec.data.design == design
    # The canonical form keeps the design's table and reads back to the same spec.
    assert f"[data.{design}]" in spec.dumps()
    assert loads_spec(spec.dumps(), base_dir=tables["root"]) == spec
    lines: list[str] = []
    got = quietly(lambda: load_effects(spec, log=lines.append).effects)
    assert_same_cells(got, quietly(lambda: direct(design, tables[design])))
    assert got.designs == [design]
    rows = len(tables[design])
    assert f"{design} read {rows:,} rows of " in lines[-1]
    assert lines[-1].endswith(f" into {got.n_cells} cells")


def test_a_history_joins_an_ab_source_and_a_did_source(tables: dict[str, Any]) -> None:
    roles = COLUMNS + 'segments = ["region"]\ntreatment = "treatment"\n'
    text = (
        'name = "joined"\n[data]\npath = "ab.parquet"\n'
        + roles
        + '\n[[data.extra]]\npath = "panel.parquet"\ndesign = "did"\n'
        + 'did = { unit = "unit", period = "period", first_treated = "first_treated", '
        + 'control = "not_yet", pre_periods = 2 }\n'
    )
    spec = loads_spec(text, base_dir=tables["root"])
    (extra,) = spec.data.extra
    # An armless design inherits the experiment column only, not the A/B treatment.
    assert extra.columns.treatment is None and extra.data.design == "did"
    assert loads_spec(spec.dumps(), base_dir=tables["root"]) == spec
    got = quietly(lambda: load_effects(spec).effects)
    ab = summarize(
        tables["ab"],
        experiment="exp_id",
        treatment="treatment",
        outcome="long_retained",
        proxies=PROXIES,
        segments=["region"],
        directions={"rebuffer_rate": "lower"},
    )
    ref = CellEffects.concat([ab, quietly(lambda: direct("did", tables["did"]))])
    assert_same_cells(got, ref)
    assert got.designs == ["ab", "did"]


def error_of(text: str) -> str:
    with pytest.raises(SpecError) as info:
        loads_spec(text, origin="x.toml")
    return str(info.value)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ('control = "not_yet"', 'contrl = "not_yet"'),
            r"\[data\.did\]\.contrl is not a known key\. Did you mean 'control'\? Allowed keys "
            r"in \[data\.did\]: unit, period, first_treated, control, pre_periods, "
            r"pretrend_level, min_units\.",
        ),
        (
            ('control = "not_yet"', 'control = "not-yet"'),
            r"\[data\.did\]\.control must be one of \{'never', 'not_yet'\}; got 'not-yet'\. "
            r"Did you mean 'not_yet'\?",
        ),
        (("pre_periods = 2", "pre_periods = 0"), r"\[data\.did\]\.pre_periods must be an int"),
        (('unit = "unit"\n', ""), r"\[data\.did\]\.unit is required\."),
        (
            ("[data.did]", "[data.rdd]"),
            r"\[data\]\.rdd is the table of design = 'rdd', which reads the rows of kind = "
            r"'users'; this source has kind = 'users' and design = 'did'\.",
        ),
        (
            ('design = "did"', 'design = "didd"'),
            r"\[data\]\.design must be one of \{'did', 'rdd', 'ipw', 'synthetic_control'\} for "
            r"kind = 'users'.*Did you mean 'did'\?",
        ),
        (('design = "did"', ""), r"\[data\]\.did is the table of design = 'did'.*no design\."),
        (
            ('path = "panel.parquet"', 'path = "panel.parquet"\nengine = "pandas"'),
            r"\[data\]\.engine does not apply to design = 'did'",
        ),
        (
            ('path = "panel.parquet"', 'path = "panel.parquet"\nmin_users_per_arm = 5'),
            r"\[data\]\.min_users_per_arm does not apply to design = 'did': use "
            r"\[data\.did\]\.min_units",
        ),
        (
            ('experiment = "exp_id"', 'experiment = "exp_id"\ntreatment = "t"'),
            r"\[columns\]\.treatment does not apply to design = 'did': its rows have no arms",
        ),
        (
            ('period = "period"', 'period = "exp_id"'),
            r"\[data\.did\]\.period names column 'exp_id', which is already given as "
            r"'experiment'",
        ),
        (
            ('path = "panel.parquet"\n', ""),
            r"\[data\]\.path is required for design = 'did' \(a CSV or Parquet file\)\.",
        ),
    ],
)
def test_bad_design_keys_are_named(change: tuple[str, str], expected: str) -> None:
    text = spec_text("did")
    assert change[0] in text
    message = error_of(text.replace(*change))
    assert re.search(expected, message), message


def test_design_tables_elsewhere_are_refused() -> None:
    sc = spec_text("synthetic_control")
    clustered = 'design = "synthetic_control"\ncluster = "market"'
    message = error_of(sc.replace('design = "synthetic_control"', clustered))
    assert "[data].cluster does not apply to design = 'synthetic_control'" in message
    message = error_of(sc.replace('fit_metric = "long_retained"', 'fit_metric = ["long_retaind"]'))
    assert "[data.synthetic_control].fit_metric names 'long_retaind', which is neither" in message
    assert "Did you mean 'long_retained'?" in message
    rdd_spec = spec_text("rdd")
    assert "[data.rdd].cutoff must be the threshold (a number) or a column" in error_of(
        rdd_spec.replace("cutoff = 0.85", "cutoff = true")
    )
    assert "[data.ipw].covariates is required" in error_of(
        spec_text("ipw").replace('covariates = ["prior_watch_min", "prior_starts"]', "")
    )
    # A design table on per-arm summaries, and one in an extra source of the wrong design.
    arms = (
        'name = "a"\n[data]\nkind = "arm_summaries"\npath = "a.csv"\ncorrelation = 0.1\n'
        'design = "did"\ndid = { unit = "u" }\n' + COLUMNS + 'treatment = "t"\ncount = "n"\n'
    )
    assert "[data].did is the table of design = 'did', which reads the rows of kind = " in (
        error_of(arms)
    )
    extra = (
        spec_text("did")
        + '\n[[data.extra]]\npath = "rows.parquet"\ndesign = "rdd"\n'
        + 'rdd = { running = "score", cutof = 0.5 }\n'
    )
    message = error_of(extra)
    assert "[data.extra #1.rdd].cutof is not a known key. Did you mean 'cutoff'?" in message


def test_the_spec_mirrors_the_design_functions() -> None:
    # Every parameter of a design function is a key of its table, a [columns] or [data]
    # key, or a Python object a spec cannot hold.
    from proxyscope.data import did_checks, ipw_checks, rdd_bandwidth
    from proxyscope.spec import DID_CONTROLS, IPW_ESTIMANDS, RDD_KERNELS

    assert DID_CONTROLS == did_checks.CONTROLS
    assert tuple(rdd_bandwidth.KERNELS) == RDD_KERNELS
    assert IPW_ESTIMANDS == ipw_checks.ESTIMANDS
    common = {"experiment", "outcome", "proxies", "segments", "directions"}
    elsewhere = {"cluster", "min_users_per_arm", "treatment", "treated_value"}
    objects = {"propensity_model", "outcome_model"}
    elsewhere |= {"engine", "memory_limit", "threads", "spark"}  # how the rows are read
    for design, function in FUNCTIONS.items():
        params = set(list(inspect.signature(function).parameters)[1:])
        assert set(DESIGN_KEYS[design]) <= params
        assert params - set(DESIGN_KEYS[design]) <= common | elsewhere | objects, design
        # ... and every key of the table has a command-line flag.
        for key in DESIGN_KEYS[design]:
            assert design in DESIGN_FLAGS.get(key, ()), (design, key)


# -- validate -----------------------------------------------------------------------


@pytest.mark.parametrize("design", ROW_DESIGNS)
def test_validate_passes_a_good_design_source(design: str, tables: dict[str, Any]) -> None:
    spec = loads_spec(spec_text(design), base_dir=tables["root"])
    result = quietly(lambda: check_data(spec))
    assert result.ok, result.problems
    assert f"(design {design!r})" in result.source
    assert result.facts["rows"] == len(tables[design])
    assert result.facts["cells"] == quietly(lambda: direct(design, tables[design])).n_cells


def test_validate_names_the_problems_of_a_design_source(
    tables: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    root = tables["root"]
    text = spec_text("did").replace('period = "period"', 'period = "perod"')
    (root / "bad.toml").write_text(text.replace("long_retained", "long_retaind"))
    code = quietly(lambda: main(["validate", str(root / "bad.toml")]))
    out, err = capsys.readouterr()
    assert code == 2
    assert out.startswith("2 problems in ")
    assert "column 'perod' (given as 'did.period') is not in the table. Did you mean 'period'?" in (
        out
    )
    assert "column 'long_retaind' (given as 'outcome') is not in the table." in out
    assert "the data do not match the spec: 2 problems" in err
    # A problem only the design itself finds (too few units per cell) is found by
    # building the cells.
    (root / "few.toml").write_text(spec_text("did").replace("pre_periods = 2", "min_units = 500"))
    code = quietly(lambda: main(["validate", str(root / "few.toml")]))
    out, _ = capsys.readouterr()
    assert code == 2
    assert "did: no cell has at least min_units=500 treated and comparison units" in out
    # A history of an A/B source and a did source: the did source is checked by
    # building its cells with the main source's.
    joined = (
        'name = "joined"\n[data]\npath = "ab.parquet"\n'
        + COLUMNS
        + 'segments = ["region"]\ntreatment = "treatment"\n'
        + '\n[[data.extra]]\npath = "panel.parquet"\ndesign = "did"\n'
        + 'did = { unit = "unit", period = "period", first_treated = "first_treated" }\n'
    )
    (root / "joined.toml").write_text(joined)
    code = quietly(lambda: main(["validate", str(root / "joined.toml")]))
    out, _ = capsys.readouterr()
    assert code == 0 and out.startswith("OK: ")
    assert "cells: 24" in out and "experiments with cells: 6" in out
    (root / "joined.toml").write_text(joined.replace('period = "period"', 'period = "perod"'))
    code = quietly(lambda: main(["validate", str(root / "joined.toml")]))
    out, _ = capsys.readouterr()
    assert code == 2
    assert "column 'perod' (given as 'period') is not in the panel. Did you mean 'period'?" in out


# -- the command line ---------------------------------------------------------------


def common_flags(design: str) -> list[str]:
    flags = ["--experiment", "exp_id", "--outcome", "long_retained", "--proxies"]
    flags += [",".join(PROXIES), "--direction", "rebuffer_rate=lower"]
    for s in CASES[design]["segments"]:
        flags += ["--segments", s]
    return flags


@pytest.mark.parametrize("design", ROW_DESIGNS)
def test_summarize_builds_each_designs_cells(
    design: str, tables: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    root: Path = tables["root"]
    out_path = root / f"{design}.nc"
    argv = ["summarize", "--data", str(root / CASES[design]["file"]), "--design", design]
    argv += [*common_flags(design), *CASES[design]["flags"], "-o", str(out_path)]
    code = quietly(lambda: main(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"designs: {design} (" in out
    assert f"{design} read {len(tables[design]):,} rows of " in err
    got = CellEffects.load(out_path)
    assert_same_cells(got, quietly(lambda: direct(design, tables[design])))


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--design", "did", "--unit", "unit", "--period", "period"], "--first-treated"),
        (
            ["--design", "did", *CASES["did"]["flags"], "--running", "x"],
            "--running is an option of --design rdd, not of design 'did'",
        ),
        (["--unit", "unit"], "--unit is an option of --design did or synthetic_control; give"),
        (
            ["--design", "did", *CASES["did"]["flags"][:6], "--control", "nope"],
            "--control must be one of {'never', 'not_yet'}; got 'nope'.",
        ),
        (
            ["--design", "did", *CASES["did"]["flags"][:6], "--min-units", "1"],
            "--min-units must be an integer >= 2; got 1.",
        ),
        (
            ["--design", "did", *CASES["did"]["flags"][:6], "--pretrend-level", "x"],
            "--pretrend-level must be a number in (0, 1); got 'x'",
        ),
        (
            ["--design", "did", "--unit", "exp_id", *CASES["did"]["flags"][2:6]],
            "--unit names column 'exp_id', which is already given as 'experiment'",
        ),
        (
            [
                "--design",
                "did",
                "--unit",
                "unit",
                "--period",
                "perod",
                "--first-treated",
                "first_treated",
            ],
            "Column 'perod' (given as --period) is not in the panel. Did you mean 'period'?",
        ),
    ],
)
def test_summarize_design_errors_name_the_flags(
    argv: list[str], needle: str, tables: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    root: Path = tables["root"]
    full = ["summarize", "--data", str(root / "panel.parquet"), *common_flags("did"), *argv]
    code = quietly(lambda: main([*full, "-o", str(root / "x.nc")]))
    _, err = capsys.readouterr()
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("proxyscope: error:")]
    assert len(errors) == 1 and needle in errors[0], err


def test_summarize_takes_a_specs_design_and_overrides_its_options(
    tables: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    root: Path = tables["root"]
    (root / "did.toml").write_text(spec_text("did"))
    out_path = root / "never.nc"
    argv = ["summarize", str(root / "did.toml"), "--control", "never", "-o", str(out_path)]
    code = quietly(lambda: main(argv))
    _, err = capsys.readouterr()
    assert code == 0, err
    ref = quietly(lambda: did(tables["did"], **{**_did_kwargs(), "control": "never"}))
    assert_same_cells(CellEffects.load(out_path), ref)


def _did_kwargs() -> dict[str, Any]:
    return {
        "experiment": "exp_id",
        "outcome": "long_retained",
        "proxies": PROXIES,
        "segments": ["region"],
        "directions": {"rebuffer_rate": "lower"},
        **CASES["did"]["kwargs"],
    }

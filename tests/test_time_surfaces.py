"""Time on every surface (issue 25, DESIGN.md §9): the spec's time keys, ``proxyscope
validate`` against the data's periods, the command line (``fit --time``, ``stability``,
``--period``), the report's stability section in Markdown, HTML and JSON, a spec run
over time, and the README's example.

The numbers each surface shows are checked against the analysis that computes them
(:func:`proxyscope.stability`, :func:`proxyscope.weights`, ...), called here on the
same fit: a surface that dropped, reordered or relabelled a number fails.
"""

from __future__ import annotations

import copy
import html
import json
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, cached_fit, make_users

import proxyscope as ps
from proxyscope import spec as specmod
from proxyscope._format import interval
from proxyscope.cli import main
from proxyscope.errors import ConvergenceWarning, DataTypeError, ParameterError, SpecError
from proxyscope.reporting import load_schema, report
from proxyscope.spec import load_spec, loads_spec

jsonschema = pytest.importorskip("jsonschema")

#: The drifting world of the brief: proxy 0's slope drifts by 0.2 per period.
WORLD: dict[str, Any] = {
    "n_experiments": 24,
    "periods": 4,
    "drift": {0: 0.2},
    "beta": (0.8, 0.15),
    "mu": ((1.0, 0.5), (0.5, 1.0), (1.5, 0.0), (0.0, 0.8)),
    "sd_e": (1.0, 0.8),
    "sd_c": (0.3, 0.3),
    "seed": 4,
}
PERIODS = ("2024-Q1", "2024-Q2", "2024-Q3", "2024-Q4")


def quiet(func: Any, *args: Any, **kwargs: Any) -> Any:
    """An analysis of the short test fit, without its convergence and fragility warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return func(*args, **kwargs)


def cli(capsys: pytest.CaptureFixture[str], *argv: Any) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# -- fixtures ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def world() -> Any:
    return ps.simulate.from_model(**WORLD)


@pytest.fixture(scope="module")
def timed_fit(world: Any) -> Any:
    cells, _ = world
    return cached_fit(
        "time-surfaces",
        lambda: ps.ProxyModel(time=True, followups=0).fit(
            cells, draws=200, tune=300, chains=2, random_seed=2, progress=False
        ),
    )


@pytest.fixture(scope="module")
def files(timed_fit: Any, world: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with the timed fit and its cells saved, for the CLI."""
    d = tmp_path_factory.mktemp("time-cli")
    timed_fit.save(d / "timed.nc")
    world[0].save(d / "cells.nc")
    return d


@pytest.fixture(scope="module")
def users(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """User-level rows of 8 experiments with start dates: 4 in 2024-Q1, 4 in 2024-Q2."""
    d = tmp_path_factory.mktemp("time-users")
    rows = make_users(n=8000, n_experiments=8, seed=3, offset=0.0)
    exps = sorted(rows["exp_id"].unique())
    starts = {
        e: pd.Timestamp("2024-01-15")
        + pd.DateOffset(months=3 * (i // 4))
        + pd.Timedelta(days=7 * i)
        for i, e in enumerate(exps)
    }
    rows["start"] = rows["exp_id"].map(starts)
    rows.to_csv(d / "users.csv", index=False)
    return d


USERS = """
name = "timed"
[data]
path = "users.csv"
engine = "duckdb"
time = "start"
[columns]
experiment = "exp_id"
treatment = "treatment"
outcome = "retained"
proxies = ["watch_min", "starts"]
segments = ["region"]
"""


def parse(text: str, *overrides: str) -> specmod.ModelSpec:
    return loads_spec(text, origin="x.toml", overrides=overrides)


def spec_error(text: str, *overrides: str) -> str:
    with pytest.raises(SpecError) as info:
        parse(text, *overrides)
    return str(info.value)


# -- the spec ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("time = true", True),
        ('time = "month"', "month"),
        ("time = [2024-01-01, 2024-07-01, 2025-01-01]", None),  # dates, kept as written
        ("time = [0, 10.5, 20]", (0, 10.5, 20)),
        ("time = false", "static"),
    ],
)
def test_model_time_round_trips(model: str, expected: Any) -> None:
    spec = parse(USERS + f"[model]\n{model}\n")
    if expected == "static":
        assert spec.model.time is None
        assert spec.model == specmod.ModelSection()
    elif expected is None:
        assert [d.isoformat() for d in spec.model.time] == [
            "2024-01-01",
            "2024-07-01",
            "2025-01-01",
        ]
    else:
        assert spec.model.time == expected
    text = spec.dumps()
    again = loads_spec(text)
    assert again == spec and again.dumps() == text
    assert ("time" in spec.to_dict()["model"]) == (expected != "static")
    # What ProxyModel(time=...) takes: True, a name, or the edges as a list.
    arg = spec.model.time_argument()
    assert (
        arg is None
        if expected == "static"
        else arg
        == (list(spec.model.time) if isinstance(spec.model.time, tuple) else spec.model.time)
    )


def test_analysis_period_and_stability_round_trip() -> None:
    spec = parse(
        USERS
        + """
[model]
time = true
[model.priors]
time_step_slope_sd = 0.0
time_step_location_sd = 0.2
[analysis]
period = "2024-Q1"
[analysis.stability]
between = [["2024-Q1", "2024-Q2"], ["2024-Q2", "2024-Q1"]]
probability = 0.8
segments = true
"""
    )
    a = spec.analysis
    assert a.period == "2024-Q1"
    assert a.stability == specmod.StabilitySpec(
        between=(("2024-Q1", "2024-Q2"), ("2024-Q2", "2024-Q1")), probability=0.8, segments=True
    )
    assert spec.model.priors == {"time_step_slope_sd": 0.0, "time_step_location_sd": 0.2}
    text = spec.dumps()
    assert loads_spec(text) == spec and loads_spec(text).dumps() == text
    d = spec.to_dict()["analysis"]
    assert d["period"] == "2024-Q1"
    assert d["stability"] == {
        "between": [["2024-Q1", "2024-Q2"], ["2024-Q2", "2024-Q1"]],
        "probability": 0.8,
        "segments": True,
    }
    # One pair may be given without the outer array; no pairs: the first and the last.
    one = parse(USERS + '[model]\ntime = true\n[analysis.stability]\nbetween = ["a", "b"]\n')
    assert one.analysis.stability == specmod.StabilitySpec(between=(("a", "b"),))
    default = parse(USERS + "[model]\ntime = true\n[analysis.stability]\n")
    assert default.analysis.stability == specmod.StabilitySpec()
    assert "between" not in default.to_dict()["analysis"]["stability"]
    assert loads_spec(default.dumps()) == default


def test_rolling_backtest_keys_round_trip() -> None:
    spec = parse(
        USERS
        + '[model]\ntime = true\n[analysis.rolling_backtest]\norigins = ["2024-Q1"]\n'
        + "draws = 50\ntune = 0\n"
    )
    assert spec.analysis.rolling_backtest == specmod.RollingSpec(
        origins=("2024-Q1",), draws=50, tune=0, chains=None
    )
    assert spec.to_dict()["analysis"]["rolling_backtest"] == {
        "origins": ["2024-Q1"],
        "draws": 50,
        "tune": 0,
    }
    assert loads_spec(spec.dumps()) == spec
    bare = parse(USERS + "[model]\ntime = true\n[analysis.rolling_backtest]\n")
    assert bare.analysis.rolling_backtest == specmod.RollingSpec()
    assert loads_spec(bare.dumps()) == bare


def test_proxyscope_spec_prints_the_time_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.toml"
    path.write_text(
        USERS
        + '[model]\ntime = "month"\n[analysis]\nperiod = "2024-02"\n'
        + '[analysis.stability]\nbetween = ["2024-01", "2024-06"]\n'
        + '[analysis.rolling_backtest]\norigins = ["2024-03"]\n'
    )
    code, out, _ = cli(capsys, "spec", path)
    assert code == 0
    assert loads_spec(out, base_dir=tmp_path) == load_spec(path)
    for line in ('time = "month"', 'period = "2024-02"', "[analysis.stability]"):
        assert line in out
    assert "[analysis.rolling_backtest]" in out


def test_set_overrides_reach_the_time_keys() -> None:
    spec = parse(USERS, 'model.time="quarter"', 'analysis.period="2024-Q2"')
    assert spec.model.time == "quarter" and spec.analysis.period == "2024-Q2"


def test_static_specs_write_no_time_keys() -> None:
    # Canonical form (and so the hash) of every spec that leaves the keys alone stays.
    for path in sorted((REPO / "models").glob("*.toml")):
        d = load_spec(path).to_dict()
        assert "time" not in d["model"], path.name
        assert not {"period", "stability"} & set(d["analysis"]), path.name
    assert "time" not in parse(USERS).dumps().split("[model]")[-1]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            '[model]\ntime = "quartr"',
            r"\[model\]\.time must be true .* got 'quartr'\. Did you mean 'quarter'",
        ),
        ("[model]\ntime = 3", r"\[model\]\.time must be true .* got 3 \(an integer\)"),
        (
            "[model]\ntime = [2024-07-01, 2024-01-01]",
            r"\[model\]\.time\[1\] must be after time\[0\] .* got 2024-01-01",
        ),
        ("[model]\ntime = [2024-01-01, 5]", r"\[model\]\.time .* mix numbers and dates"),
        ('[analysis]\nperiod = "2024-Q1"', r"\[analysis\]\.period needs \[model\]\.time"),
        (
            "[analysis.stability]\nprobability = 0.9",
            r"\[analysis\.stability\] needs \[model\]\.time",
        ),
        (
            "[model]\ntime = true\n[analysis]\nperiod = 2.5",
            r"\[analysis\]\.period must be a period label .* got 2\.5",
        ),
        (
            '[model]\ntime = true\n[analysis.stability]\nbetween = [["a", "a"]]',
            r"between\[0\] must name two different periods",
        ),
        (
            '[model]\ntime = true\n[analysis.stability]\nbetween = [["a"]]',
            r"between\[0\] must be a pair of periods",
        ),
        (
            "[model]\ntime = true\n[analysis.stability]\nbetween = []",
            r"\[analysis\.stability\]\.between must be a pair",
        ),
        (
            "[model]\ntime = true\n[analysis.stability]\nprobability = 1",
            r"\[analysis\.stability\]\.probability must be",
        ),
        (
            "[model]\ntime = true\n[analysis.stability]\nbetwen = []",
            r"betwen is not a known key\. Did you mean 'between'",
        ),
        (
            "[model]\ntime = true\n[model.priors]\ntime_step_slope_sd = -1",
            r"\[model\.priors\]\.time_step_slope_sd must be",
        ),
        (
            "[analysis.rolling_backtest]\ndraws = 5",
            r"\[analysis\.rolling_backtest\] needs \[model\]\.time",
        ),
        (
            '[model]\ntime = true\n[analysis.rolling_backtest]\norigins = ["a", "a"]',
            r"origins repeats a period",
        ),
        (
            "[model]\ntime = true\n[analysis.rolling_backtest]\norigins = []",
            r"origins must be an array of period labels",
        ),
        (
            "[model]\ntime = true\n[analysis.rolling_backtest]\nchains = 0",
            r"rolling_backtest\]\.chains must be an integer >= 1",
        ),
    ],
)
def test_spec_time_errors_name_the_key(extra: str, message: str) -> None:
    assert re.search(message, spec_error(USERS + extra))


def test_a_model_over_time_needs_start_dates_in_the_data() -> None:
    no_time = USERS.replace('time = "start"\n', "")
    assert re.search(
        r"x\.toml: \[model\]\.time needs \[data\]\.time: .* start date",
        spec_error(no_time + "[model]\ntime = true\n"),
    )
    asos = """name = "a"\n[data]\nkind = "asos"\ncorrelation = 0.5\n[model]\ntime = true\n"""
    assert "kind = 'asos' carries none" in spec_error(asos)


# -- validate: the periods against the data ---------------------------------------


def test_validate_checks_the_periods(users: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (users / "spec.toml").write_text(
        USERS + '[model]\ntime = true\n[analysis.stability]\nbetween = [["2024-Q1", "2024-Q2"]]\n'
    )
    spec = users / "spec.toml"
    code, out, _ = cli(capsys, "validate", spec)
    assert code == 0, out
    assert "periods: 2 by quarter, 2024-Q1 to 2024-Q2" in out
    cases = [
        (
            'analysis.period="2024-Q3"',
            "[analysis].period must be one of the model's periods ['2024-Q1', '2024-Q2']; got "
            "'2024-Q3'. Did you mean '2024-Q2'?",
        ),
        (
            'model.time="month"',
            "[analysis.stability].between[0][0] must be one of the model's periods ['2024-01', "
            "'2024-02', '2024-03', '2024-04', '2024-05', '2024-06']; got '2024-Q1'.",
        ),
        ('model.time="year"', "the experiments' starts fall in one period ('2024')"),
        ("model.time=[1, 5]", "[model].time = [1, 5] does not fit the data's starts"),
        (
            'analysis.rolling_backtest.origins=["2024-Q2"]',
            "[analysis.rolling_backtest]: the origin '2024-Q2' leaves 8 experiment(s) to fit on "
            "(at least 2) and 0 after it to judge (at least 1); experiments per period: "
            "{'2024-Q1': 4, '2024-Q2': 4}.",
        ),
        (
            'analysis.rolling_backtest.origins=["2024-Q5"]',
            "[analysis.rolling_backtest].origins[0] must be one of the model's periods",
        ),
    ]
    for override, problem in cases:
        code, out, _ = cli(capsys, "validate", spec, "--set", override)
        assert code == 2, override
        assert problem in out, (override, out)


# -- the command line --------------------------------------------------------------


def test_fit_with_time(files: Path, small_effects: Any, capsys: pytest.CaptureFixture[str]) -> None:
    out = files / "cli-fit.nc"
    common = ("--draws", 40, "--tune", 40, "--chains", 1, "--seed", 1, "--followups", 0)
    code, text, _ = cli(capsys, "fit", files / "cells.nc", "--time", "true", "-o", out, *common)
    assert code == 0
    fit = ps.load(out)
    assert fit.info.periods == PERIODS
    assert "in the latest period, 2024-Q4" in text
    assert f"'proxyscope stability {out}'" in text
    # A grouping regroups the cells' starts, as ProxyModel(time="month") does.
    code, _, _ = cli(capsys, "fit", files / "cells.nc", "--time", "month", "-o", out, *common)
    assert code == 0
    months = ps.CellEffects.load(files / "cells.nc").with_periods("month").periods
    assert ps.load(out).info.periods == tuple(months) and len(months) > len(PERIODS)
    bad = [
        (("--time", "quartr"), "--time must be true .* got 'quartr'. Did you mean 'quarter'"),
        (("--time", "2024-07-01,2024-01-01"), r"--time\[1\] must be after time\[0\]"),
    ]
    for flags, message in bad:
        code, _, err = cli(capsys, "fit", files / "cells.nc", *flags, "-o", out, *common)
        assert code == 2 and re.search(message, err), err
    small_effects.save(files / "static-cells.nc")
    code, _, err = cli(capsys, "fit", files / "static-cells.nc", "--time", "true", "-o", out)
    assert code == 2
    assert "--time needs cells that carry their experiments' start dates" in err


def test_stability_command_prints_the_analysis(
    files: Path, timed_fit: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    js = files / "stability.json"
    md = files / "stability.md"
    pairs = ("--between", "2024-Q1", "2024-Q3", "--between", "2024-Q2", "2024-Q4")
    code, out, _ = cli(
        capsys,
        "stability",
        files / "timed.nc",
        *pairs,
        "--ci",
        0.8,
        "--probability",
        0.7,
        "--segments",
        "--seed",
        9,
        "--json",
        js,
        "--md",
        md,
    )
    assert code == 0
    expected = quiet(
        ps.stability,
        timed_fit,
        between=[("2024-Q1", "2024-Q3"), ("2024-Q2", "2024-Q4")],
        segments=True,
        ci=0.8,
        probability=0.7,
        random_seed=9,
    )
    for line in expected.readings:
        assert line in out
    doc = json.loads(js.read_text())
    assert doc["readings"] == expected.readings
    assert doc["periods"] == list(PERIODS)
    assert (doc["ci"], doc["probability"]) == (0.8, 0.7)
    got_paths = pd.DataFrame(doc["paths"])
    pd.testing.assert_frame_equal(got_paths, expected.paths, check_dtype=False)
    got_changes = pd.DataFrame(doc["changes"]).fillna(np.nan)
    pd.testing.assert_frame_equal(got_changes, expected.changes, check_dtype=False)
    # The printed slope of each proxy in each period is the analysis's.
    top = expected.paths[expected.paths["segment"] == expected.paths["segment"].iloc[0]]
    for r in top.itertuples():
        assert interval(r.mean, r.lower, r.upper) in out
    text = md.read_text()
    assert expected.readings[0] in text and "| proxy | period | slope |" in text


def test_stability_command_errors(
    files: Path, small_fit: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, "stability", files / "timed.nc", "--between", "2024-Q1", "2024-Q9")
    assert code == 2
    assert "--between '2024-Q9' is not a period of" in err and "Did you mean '2024-Q4'" in err
    code, _, err = cli(capsys, "stability", files / "timed.nc", "--between", "2024-Q1", "2024-Q1")
    assert code == 2 and "--between needs two different periods" in err
    code, _, err = cli(capsys, "stability", files / "timed.nc", "--probability", 1.5)
    assert code == 2 and "--probability" in err
    small_fit.save(files / "static.nc")
    code, _, err = cli(capsys, "stability", files / "static.nc")
    assert code == 2
    assert "stability needs a fit whose relation moves over time" in err and "is static" in err


def test_period_flag_on_the_commands_that_read_a_fit(
    files: Path, timed_fit: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    fit_path = files / "timed.nc"
    js = files / "weights.json"
    code, out, _ = cli(capsys, "weights", fit_path, "--period", "2024-Q2", "--json", js)
    assert code == 0 and "in period 2024-Q2" in out
    doc = json.loads(js.read_text())
    expected = quiet(ps.weights, timed_fit, period="2024-Q2")
    assert doc["period"] == "2024-Q2"
    assert [r["weight"] for r in doc["weights"]] == pytest.approx(list(expected["weight"]))
    latest = quiet(ps.weights, timed_fit)
    assert not np.allclose(latest["weight"], expected["weight"])  # the period matters
    code, _, err = cli(capsys, "weights", fit_path, "--period", "2025-Q2")
    assert code == 2
    assert "--period must be one of the fit's periods" in err and "Did you mean '2024-Q2'" in err
    code, _, err = cli(capsys, "weights", "--history", "--ledger", files / "x.db", "--period", "x")
    assert code == 2 and "--period applies to the weights of a FIT" in err

    target = files / "target.json"
    target.write_text(json.dumps({"a": 0.5, "b": 0.5}))
    tj = files / "transport.json"
    code, out, _ = cli(
        capsys, "transport", fit_path, target, "--period", "2024-Q1", "--seed", 3, "--json", tj
    )
    assert code == 0 and "in period 2024-Q1" in out
    res = quiet(ps.transport, timed_fit, {"a": 0.5, "b": 0.5}, random_seed=3, period="2024-Q1")
    doc = json.loads(tj.read_text())
    assert doc["period"] == "2024-Q1"
    assert doc["summary"][0]["mean"] == pytest.approx(res.summary()["mean"].iloc[0])
    code, _, err = cli(capsys, "transport", fit_path, target, "--period", "Q1")
    assert code == 2 and "--period must be one of the fit's periods" in err

    out_dir = files / "report-q3"
    code, _, _ = cli(capsys, "report", fit_path, "-o", out_dir, "--period", "2024-Q3")
    assert code == 0
    doc = json.loads((out_dir / "report.json").read_text())
    for key in ("surrogacy", "fragility", "weights", "recommendations", "past_experiments"):
        assert doc[key]["period"] == "2024-Q3", key
    assert doc["coefficients"]["period"] == "2024-Q4"  # the fit's own table: the latest
    assert doc["stability"]["period"] == "2024-Q3"
    code, _, err = cli(capsys, "report", fit_path, "-o", out_dir, "--period", "2023-Q3")
    assert code == 2 and "--period must be one of the fit's periods" in err


def test_rolling_backtest_command(
    files: Path, small_effects: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from proxyscope.analyses.backtest.rolling import rolling_backtest

    js = files / "rolling.json"
    args = ("--draws", 50, "--tune", 60, "--chains", 1, "--seed", 4, "-q")
    code, out, _ = cli(
        capsys, "rolling-backtest", files / "cells.nc", "--origin", "2024-Q3", *args, "--json", js
    )
    assert code == 0
    # The same backtest called directly: ProxyModel's defaults, over time and static.
    expected = quiet(
        rolling_backtest,
        ps.CellEffects.load(files / "cells.nc"),
        "2024-Q3",
        models=(ps.ProxyModel(time=True), ps.ProxyModel()),
        draws=50,
        tune=60,
        chains=1,
        random_seed=4,
    )
    doc = json.loads(js.read_text())
    assert doc["origins"] == ["2024-Q3"] and doc["verdict"] == expected.verdict()
    got = pd.DataFrame(doc["table"]).fillna(np.nan)
    pd.testing.assert_frame_equal(got, expected.table, check_dtype=False)
    assert expected.verdict() in out
    code, _, err = cli(capsys, "rolling-backtest", files / "cells.nc", "--origin", "2024-Q9", *args)
    assert code == 2 and "--origin must hold period labels of the cells" in err
    code, _, err = cli(capsys, "rolling-backtest", files / "cells.nc", "--origin", "2024-Q4", *args)
    assert code == 2 and "The origin '2024-Q4' given by --origin leaves" in err
    code, _, err = cli(capsys, "rolling-backtest", files / "cells.nc", "--time", "false", *args)
    assert code == 2 and "--time false leaves no model over time" in err
    small_effects.save(files / "no-time-cells.nc")
    code, _, err = cli(capsys, "rolling-backtest", files / "no-time-cells.nc", *args)
    assert code == 2 and "rolling-backtest needs cells with their experiments' start dates" in err


# -- the report --------------------------------------------------------------------


def validator() -> Any:
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


@pytest.fixture(scope="module")
def timed_report(timed_fit: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return quiet(report, timed_fit, out=tmp_path_factory.mktemp("timed-report"))


def test_report_stability_section_carries_the_analysis(
    timed_report: Any, timed_fit: Any, world: Any
) -> None:
    doc = json.loads(timed_report.json.read_text())
    errors = list(validator().iter_errors(doc))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:5]]
    expected = quiet(ps.stability, timed_fit)  # the report's default: the fit's seed
    st = doc["stability"]
    assert st["readings"] == expected.readings
    assert (st["ci"], st["probability"], st["period"]) == (0.9, 0.95, "2024-Q4")
    pd.testing.assert_frame_equal(pd.DataFrame(st["paths"]), expected.paths, check_dtype=False)
    got = pd.DataFrame(st["changes"]).fillna(np.nan)
    pd.testing.assert_frame_equal(got, expected.changes, check_dtype=False)
    assert doc["figures"]["stability"]["png"] == "figures/stability.png"
    assert (timed_report.out / "figures" / "stability.png").read_bytes()[:4] == b"\x89PNG"
    # The fit's periods, with the experiments that started in each (from the world).
    _, truth = world
    started = pd.Series(pd.PeriodIndex(pd.to_datetime(truth.starts), freq="Q").astype(str))
    counts = started.str.replace("Q", "-Q", regex=False).value_counts()
    assert doc["model"]["periods"] == [
        {"period": p, "n_experiments": int(counts.get(p, 0))} for p in PERIODS
    ]
    # Every analysis says which period it describes: the latest by default.
    for key in ("coefficients", "surrogacy", "fragility", "weights", "recommendations"):
        assert doc[key]["period"] == "2024-Q4", key
    assert doc["past_experiments"]["period"] == "2024-Q4"
    frag = quiet(ps.fragility, timed_fit, warn=False)
    assert [r["flip_prob"] for r in doc["fragility"]["rows"]] == pytest.approx(
        list(frag["flip_prob"])
    )

    md = timed_report.markdown.read_text()
    page = html.unescape(timed_report.html.read_text())
    section = md[md.index("## Stability over time") :]
    for text in (md, page):
        for line in expected.readings:
            assert line in text
        assert text.count("Period described: 2024-Q4 (the latest) of 4") == 6
    for r in expected.paths.itertuples():
        if r.segment == expected.paths["segment"].iloc[0]:
            assert interval(r.mean, r.lower, r.upper) in section
    for r in expected.changes.itertuples():
        assert interval(r.change, r.change_lower, r.change_upper) in section
        assert f"{r.p_changed:.3f}" in section
    assert "| Period | Experiments started |" in md
    assert 'id="figure-stability"' in timed_report.html.read_text()


def test_report_reads_the_period_it_is_given(timed_fit: Any, tmp_path: Path) -> None:
    files = quiet(report, timed_fit, out=tmp_path / "q2", period="2024-Q2")
    doc = files.document
    assert doc["fragility"]["period"] == "2024-Q2"
    frag = quiet(ps.fragility, timed_fit, warn=False, period="2024-Q2")
    assert [r["flip_prob"] for r in doc["fragility"]["rows"]] == pytest.approx(
        list(frag["flip_prob"])
    )
    rec = quiet(ps.recommend, timed_fit, period="2024-Q2")
    assert doc["recommendations"]["best"] == rec["proxy"].iloc[0]
    assert "Period described: 2024-Q2 of 4" in files.markdown.read_text()
    # Results handed in must describe the report's period and level.
    latest = quiet(ps.weights, timed_fit)
    with pytest.raises(ParameterError, match="'weights' parameter of report describes period"):
        quiet(report, timed_fit, out=tmp_path / "x", period="2024-Q2", weights=latest)
    with pytest.raises(ParameterError, match="'period' parameter of report must be one of"):
        quiet(report, timed_fit, out=tmp_path / "x", period="2030-Q1")
    other_ci = quiet(ps.stability, timed_fit, ci=0.5)
    with pytest.raises(ParameterError, match="'stability' parameter of report was computed at"):
        quiet(report, timed_fit, out=tmp_path / "x", stability=other_ci)
    with pytest.raises(DataTypeError, match="'stability' parameter of report must be"):
        quiet(report, timed_fit, out=tmp_path / "x", stability="drifting")
    # A stability result given is shown as it is (here: with segments and another pair).
    given = quiet(
        ps.stability, timed_fit, between=("2024-Q2", "2024-Q3"), segments=True, probability=0.6
    )
    shown = quiet(report, timed_fit, out=tmp_path / "given", stability=given).document
    assert shown["stability"]["readings"] == given.readings
    assert len(shown["stability"]["paths"]) == len(given.paths)
    assert "Slope per period in each segment." in (tmp_path / "given" / "report.md").read_text()


def test_a_static_report_is_as_before(small_fit: Any, tmp_path: Path) -> None:
    files = quiet(report, small_fit, out=tmp_path / "static")
    doc = json.loads(files.json.read_text())
    assert doc["stability"] is None
    assert doc["schema_version"] == "1.5.0"
    assert not list(validator().iter_errors(doc))
    assert "periods" not in doc["model"]
    for key in ("coefficients", "surrogacy", "fragility", "weights", "recommendations"):
        assert "period" not in doc[key], key
    assert "period" not in doc["past_experiments"]
    assert "stability" not in doc["figures"]
    for text in (files.markdown.read_text(), files.html.read_text()):
        assert "Stability over time" not in text and "Period described" not in text
    with pytest.raises(ParameterError, match="needs a fit with time"):
        quiet(report, small_fit, out=tmp_path / "x", period="2024-Q1")


def test_schema_refuses_a_broken_stability(timed_report: Any) -> None:
    check = validator()
    doc = timed_report.document
    assert check.is_valid(doc)
    for path, value in (
        (("stability", "changes", 0, "p_changed"), 1.5),
        (("stability", "changes", 0, "direction"), "sideways"),
        (("stability", "paths", 0, "forecast"), "no"),
        (("fragility", "period"), ""),
        (("model", "periods", 0, "n_experiments"), -1),
    ):
        broken = copy.deepcopy(doc)
        target = broken
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        assert not check.is_valid(broken), path
    broken = copy.deepcopy(doc)
    del broken["stability"]
    assert not check.is_valid(broken)


# -- a spec run over time ----------------------------------------------------------

RUN = """
[model]
pooling = "additive"
time = true
[sampler]
draws = 100
tune = 150
chains = 2
seed = 2
followups = 0
[analysis]
period = "2024-Q1"
[analysis.stability]
between = [["2024-Q1", "2024-Q2"]]
probability = 0.9
segments = true
[analysis.transport]
shares = { NA = 0.7, EU = 0.3 }
[analysis.rolling_backtest]
draws = 60
tune = 80
chains = 1
"""


@pytest.mark.slow
def test_a_spec_run_over_time(users: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (users / "run.toml").write_text(USERS + RUN)
    out = users / "out"
    code, text, _ = cli(capsys, "run", users / "run.toml", "--out", out)
    assert code == 0
    fit = ps.load(out / "fit.nc")
    assert fit.info.periods == ("2024-Q1", "2024-Q2")
    expected = quiet(
        ps.stability,
        fit,
        between=[("2024-Q1", "2024-Q2")],
        segments=True,
        probability=0.9,
        random_seed=2,
    )
    # The tables written: CSV, run.json and report.json all hold the analysis's numbers.
    # keep_default_na: the segment "NA" (North America) is a label, not a missing value.
    paths = pd.read_csv(out / "stability_paths.csv", keep_default_na=False)
    pd.testing.assert_frame_equal(paths, expected.paths, check_dtype=False)
    changes = pd.read_csv(out / "stability_changes.csv", keep_default_na=False, na_values=[""])
    pd.testing.assert_frame_equal(changes, expected.changes, check_dtype=False)
    run = json.loads((out / "run.json").read_text())
    assert run["period"] == "2024-Q1" and run["periods"] == ["2024-Q1", "2024-Q2"]
    assert run["stability"]["readings"] == expected.readings
    assert run["spec"]["model"]["time"] is True
    assert run["files"]["stability_paths"].endswith("stability_paths.csv")
    rep = json.loads((out / "report.json").read_text())
    assert not list(validator().iter_errors(rep))
    assert rep["stability"]["readings"] == expected.readings
    assert rep["stability"]["period"] == "2024-Q1"
    for key in ("surrogacy", "fragility", "weights", "recommendations", "transport"):
        assert rep[key]["period"] == "2024-Q1", key
    weights = quiet(ps.weights, fit, period="2024-Q1")
    assert [r["weight"] for r in run["weights"]] == pytest.approx(list(weights["weight"]))
    # What the run prints and run.md say: the period read, the readings, the changes.
    line = "Over time: 2 periods (2024-Q1 to 2024-Q2); the analyses describe 2024-Q1"
    md = (out / "run.md").read_text()
    for shown in (text, md):
        assert line in shown
        for reading in expected.readings:
            assert reading in shown
        assert (
            "Stability over time (90% intervals; a change is clear from P(changed) = 0.9)" in shown
        )
    c = expected.changes.iloc[0]
    assert interval(c["change"], c["change_lower"], c["change_upper"]) in text
    assert "Coefficients, all segments (historical mix), in period 2024-Q2" in text
    # The rolling backtest: the spec's model over time and without time, the spec's sampler
    # with the table's size, fitted up to the default origin (the first of two periods).
    from proxyscope.analyses.backtest.rolling import rolling_backtest

    cells = ps.CellEffects.load(out / "cells.nc")
    again = quiet(
        rolling_backtest,
        cells,
        models=(
            ps.ProxyModel(time=True, followups=0),
            ps.ProxyModel(followups=0),
        ),
        draws=60,
        tune=80,
        chains=1,
        random_seed=2,
    )
    table = pd.read_csv(out / "rolling_backtest.csv")
    assert list(table["origin"].unique()) == ["2024-Q1"]
    pd.testing.assert_frame_equal(table, again.table, check_dtype=False)
    assert run["rolling_backtest"]["verdict"] == again.verdict()
    assert again.verdict() in text and again.verdict() in md
    assert len(pd.read_csv(out / "rolling_predictions.csv")) == len(again.predictions)


# -- the README --------------------------------------------------------------------


def readme_time_block() -> str:
    text = (REPO / "README.md").read_text()
    start = text.index("## Over time")
    (block,) = re.findall(
        r"```python\n(.*?)```", text[start : text.index("\n## ", start + 3)], re.S
    )
    return block


@pytest.mark.slow
def test_the_readme_time_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = readme_time_block()
    assert "import proxyscope as ps" not in code  # the README's one full program stays one
    smaller = code.replace("draws=1000, tune=1000, chains=4", "draws=100, tune=150, chains=1")
    assert smaller != code
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"ps": ps}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)
        exec(compile(smaller, "README.md", "exec"), namespace)
    fit, drift = namespace["fit"], namespace["drift"]
    assert fit.info.periods and drift.readings
    assert len(drift.readings) == len(fit.proxies)

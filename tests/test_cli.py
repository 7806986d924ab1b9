"""The ``proxyscope`` command line, called in-process through ``main(argv)``.

Commands that need a fit use the shared small fixtures (saved to files); the
end-to-end ``run`` and ``demo`` tests are in ``test_cli_run.py`` (slow).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, make_users

from proxyscope import __version__
from proxyscope.cli import build_parser, main

COMMANDS = [
    "demo",
    "run",
    "validate",
    "spec",
    "summarize",
    "estimates",
    "fit",
    "report",
    "transport",
    "compare",
    "weights",
    "stability",
    "rolling-backtest",
]

SPEC = """
name = "small"
[data]
path = "users.csv"
engine = "duckdb"
min_users_per_arm = 10
[columns]
experiment = "exp_id"
treatment = "treatment"
outcome = "retained"
proxies = ["watch_min", "starts", "ctr", "rebuffer"]
segments = ["region", "device"]
directions = { rebuffer = "lower" }
[sampler]
draws = 20
tune = 20
chains = 1
seed = 1
"""


def cli(capsys: pytest.CaptureFixture[str], *argv: Any) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str, *needles: str) -> None:
    lines = [line for line in err.splitlines() if not line.startswith("[")]
    errors = [line for line in lines if line.startswith("proxyscope: error:")]
    assert len(errors) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in errors[0], errors[0]


def users() -> pd.DataFrame:
    """2,000 users, 3 experiments (ids 3, 13, 23), regions NA/EU x devices TV/Mobile."""
    return make_users(n=2000, offset=0.0)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A directory with users.csv (3 experiments, 2 x 2 segments) and spec.toml."""
    users().to_csv(tmp_path / "users.csv", index=False)
    (tmp_path / "spec.toml").write_text(SPEC)
    return tmp_path


# -- help, version, usage --------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "--version")
    assert code == 0
    assert out.strip() == f"proxyscope {__version__}"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, command, "--help")
    assert code == 0
    assert out.startswith(f"usage: proxyscope {command}")
    sub = build_parser()._subparsers._group_actions[0].choices[command]  # type: ignore[union-attr]
    assert sub.description and sub.description.split(":")[0].split(".")[0] in out.replace("\n", " ")


def test_every_flag_has_help() -> None:
    import argparse

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    missing = [
        (name, action.option_strings or action.dest)
        for name, sub in [("proxyscope", parser), *commands.items()]
        for action in sub._actions
        if not isinstance(action, argparse._HelpAction) and not action.help
    ]
    assert missing == []


def test_every_command_has_a_handler() -> None:
    # The parser names the commands; main() finds each one's function in its module.
    from proxyscope.cli import handler

    parsed = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert set(parsed) == set(COMMANDS)
    for command in COMMANDS:
        assert handler(command).__name__ == f"cmd_{command.replace('-', '_')}"


def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "--help")
    assert code == 0
    for command in COMMANDS:
        assert f"    {command}" in out
    assert "Exit codes" in out


def test_no_command_shows_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys)
    assert code == 2
    assert "usage: proxyscope" in out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["fit"], "the following arguments are required: cells"),
        (["demo", "--draws", "0"], "argument --draws: expected a positive integer, got '0'"),
        (["run", "x.toml", "--bogus"], "unrecognized arguments: --bogus"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["transport", "f.nc", "t.json", "--ci", "2"], "expected a number in (0, 1)"),
    ],
)
def test_usage_errors_are_one_line(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, *argv)
    assert code == 2
    assert_one_line_error(err, needle)
    assert "--help" in err


# -- bad input: exit 2, one line, no traceback -----------------------------------


def test_missing_spec_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = cli(capsys, "run", tmp_path / "nope.toml")
    assert code == 2
    assert_one_line_error(err, "nope.toml: no such spec file")


def test_bad_spec_key_and_bad_value(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = project / "spec.toml"
    spec.write_text(SPEC + '[model]\npolling = "complete"\n')
    code, _, err = cli(capsys, "run", spec)
    assert code == 2
    assert_one_line_error(err, "[model].polling is not a known key. Did you mean 'pooling'?")

    spec.write_text(SPEC + '[model]\npooling = "addtive"\n')
    code, _, err = cli(capsys, "validate", spec)
    assert code == 2
    assert_one_line_error(
        err,
        "[model].pooling must be one of {'additive', 'exchangeable', 'complete', 'none'}; "
        "got 'addtive'. Did you mean 'additive'?",
    )
    spec.write_text(SPEC)
    code, _, err = cli(capsys, "spec", spec, "--set", "sampler.chains=0")
    assert code == 2
    assert_one_line_error(err, "[sampler].chains must be an integer >= 1; got 0.")


def test_missing_data_file(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "validate", project / "spec.toml", "--data", project / "gone.csv")
    assert code == 2
    assert_one_line_error(err, "gone.csv")
    code, _, err = cli(capsys, "summarize", project / "spec.toml", "--data", project / "x.txt.gz")
    assert code == 2
    assert_one_line_error(err, "x.txt.gz")


def test_missing_or_wrong_fit_files(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "report", project / "fit.nc")
    assert code == 2
    assert_one_line_error(err, "no fit file at")
    code, _, err = cli(capsys, "fit", project / "cells.nc")
    assert code == 2
    assert_one_line_error(err, "no cells file at")
    cells = project / "cells.nc"
    assert cli(capsys, "summarize", project / "spec.toml", "-o", cells, "-q")[0] == 0
    code, _, err = cli(capsys, "transport", cells, project / "users.csv")
    assert code == 2
    assert_one_line_error(err, "is not a proxyscope fit")
    code, _, err = cli(capsys, "fit", project / "users.csv")
    assert code == 2
    assert_one_line_error(err, "users.csv' is not a cells file from 'proxyscope summarize'")
    # A mistyped sampler setting names the flag, before anything compiles.
    code, _, err = cli(
        capsys, "fit", cells, "-o", project / "fit.nc", "--setting", "target_acept=0.95"
    )
    assert code == 2
    assert_one_line_error(err, "'--setting' parameter of proxyscope fit", "'target_accept'")
    assert not (project / "fit.nc").exists()


# -- spec, validate, summarize ---------------------------------------------------


def test_spec_prints_the_canonical_form(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from proxyscope.spec import load_spec, loads_spec

    code, out, _ = cli(capsys, "spec", project / "spec.toml", "--set", "model.pooling=complete")
    assert code == 0
    assert 'pooling = "complete"' in out
    assert "[analysis]" in out  # defaults spelled out
    written = project / "canonical.toml"
    assert cli(capsys, "spec", project / "spec.toml", "-o", written, "-q")[0] == 0
    assert load_spec(written) == load_spec(project / "spec.toml")
    assert loads_spec(out, base_dir=project).model.pooling == "complete"


def test_validate_good_data(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = project / "validate.json"
    code, out, err = cli(capsys, "validate", project / "spec.toml", "--json", report)
    assert code == 0, err
    assert out.startswith("OK: ")
    assert "rows: 2,000" in out and "experiments: 3" in out and "cells: 12" in out
    doc = json.loads(report.read_text())
    assert doc["ok"] is True and doc["problems"] == []
    assert doc["facts"]["treated_value"] == 1


def test_validate_from_flags_only(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(
        capsys,
        "validate",
        "--data",
        project / "users.csv",
        "--experiment",
        "exp_id",
        "--treatment",
        "treatment",
        "--outcome",
        "retained",
        "--proxies",
        "watch_min,starts",
        "--segments",
        "region",
        "--direction",
        "starts=lower",
    )
    assert code == 0, err
    assert "cells: 6" in out
    code, _, err = cli(capsys, "validate", "--data", project / "users.csv", "--outcome", "r")
    assert code == 2
    assert_one_line_error(err, "--experiment, --treatment, --proxies")


def _bad_users(project: Path) -> Path:
    frame = users()
    frame = frame[~((frame["exp_id"] == 13) & (frame["treatment"] == 1))].copy()
    frame.loc[frame.index[:5], "watch_min"] = np.nan
    frame.loc[frame.index[5:8], "ctr"] = np.inf
    frame["starts"] = frame["starts"].astype(str) + "x"
    path = project / "bad.csv"
    frame.to_csv(path, index=False)
    return path


def test_validate_bad_data_lists_every_problem(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _bad_users(project)
    code, out, err = cli(capsys, "validate", project / "spec.toml", "--data", bad)
    assert code == 2
    assert out.startswith("4 problems in ")
    assert "column 'starts' (a proxy) must be numeric or boolean; it is VARCHAR." in out
    assert "missing values (NaN/NULL) in 'watch_min': 5 rows" in out
    assert "column 'ctr' has 3 infinite values." in out
    assert "1 experiment(s) have only one arm in 'treatment': 13." in out
    assert_one_line_error(err, "the data do not match the spec: 4 problems")


def test_validate_treatment_and_columns(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame = users()
    frame.loc[frame.index[:3], "treatment"] = 2
    frame.to_csv(project / "three.csv", index=False)
    code, out, _ = cli(capsys, "validate", project / "spec.toml", "--data", project / "three.csv")
    assert code == 2
    assert "must hold exactly two values (control and treatment); found 3 values" in out
    code, out, _ = cli(
        capsys, "validate", project / "spec.toml", "--set", "columns.outcome=retaind"
    )
    assert code == 2
    assert (
        "column 'retaind' (the outcome column) is not in the data. Did you mean 'retained'?" in out
    )
    code, out, _ = cli(capsys, "validate", project / "spec.toml", "--treated-value", "7")
    assert code == 2
    assert "[columns].treated_value must be one of the values of column 'treatment': [0, 1]" in out


def test_validate_checks_sampler_settings_and_transport_target_before_fitting(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = project / "typo.toml"
    spec.write_text(SPEC + "[sampler.settings]\ntarget_acept = 0.95\n")
    code, out, err = cli(capsys, "validate", spec)
    assert code == 2
    assert "'target_acept'" in out and "Did you mean 'target_accept'?" in out
    # run stops there too, before reading the data or compiling anything
    code, _, err = cli(capsys, "run", spec, "--out", project / "out")
    assert code == 2
    assert_one_line_error(err, "target_acept")
    assert not (project / "out" / "cells.nc").exists()

    target = project / "target.toml"
    target.write_text(
        SPEC + '[analysis.transport]\nshares = { "NA / TV" = 0.5, "APAC / TV" = 0.5 }\n'
    )
    code, out, _ = cli(capsys, "validate", target)
    assert code == 2
    assert "[analysis.transport]" in out and "['APAC']" in out and "'region'" in out
    code, _, err = cli(capsys, "run", target, "--out", project / "out2")
    assert code == 2
    assert_one_line_error(err, "[analysis.transport]")
    assert not (project / "out2" / "fit.nc").exists()
    good = project / "good.toml"
    good.write_text(
        SPEC + '[analysis.transport]\nshares = { "NA / TV" = 0.5, "EU / Mobile" = 0.5 }\n'
    )
    code, out, err = cli(capsys, "validate", good)
    assert code == 0, out + err


def test_validate_notes_dropna_and_small_cells(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = users().astype({"retained": float})
    frame.loc[frame.index[:4], "retained"] = np.nan
    frame.to_parquet(project / "users.parquet")
    code, out, err = cli(
        capsys,
        "validate",
        project / "spec.toml",
        "--data",
        project / "users.parquet",
        "--dropna",
        "--min-users-per-arm",
        "70",
    )
    assert code == 0, out + err
    assert "note: rows with missing values will be dropped (dropna): 'retained': 4." in out
    assert "cell(s) will be dropped" in out


def test_summarize_writes_cells(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from proxyscope.data.cells import CellEffects

    out_path = project / "sub" / "cells.nc"
    (project / "sub").mkdir()
    code, out, err = cli(capsys, "summarize", project / "spec.toml", "-o", out_path)
    assert code == 0, err
    assert f"Saved 12 cells to {out_path}." in out
    cells = CellEffects.load(out_path)
    assert cells.proxies == ("watch_min", "starts", "ctr", "rebuffer")
    assert cells.directions["rebuffer"] == "lower"


def test_summarize_an_arm_table_with_an_assumed_correlation(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = users()
    frame["arm"] = np.where(frame["treatment"] == 1, "treatment", "control")
    g = frame.groupby(["exp_id", "region", "arm"])
    arms = pd.DataFrame(
        {
            "n": g.size(),
            "mean_y": g["retained"].mean(),
            "var_y": g["retained"].var(),
            "mean_x": g["watch_min"].mean(),
            "var_x": g["watch_min"].var(),
        }
    ).reset_index()
    arms.to_csv(project / "arms.csv", index=False)
    (project / "arms.toml").write_text(
        'name = "arms"\n[data]\nkind = "arm_summaries"\npath = "arms.csv"\ncorrelation = 0.3\n'
        '[columns]\nexperiment = "exp_id"\ntreatment = "arm"\ntreated_value = "treatment"\n'
        'outcome = "y"\nproxies = ["x"]\nsegments = ["region"]\ncount = "n"\n'
        'mean = { y = "mean_y", x = "mean_x" }\nvariance = { y = "var_y", x = "var_x" }\n'
    )
    code, out, err = cli(capsys, "validate", project / "arms.toml")
    assert code == 0, out + err
    assert "assumed noise correlation (not in the data): y|x: 0.3." in out
    code, out, _ = cli(capsys, "summarize", project / "arms.toml", "-o", project / "arms.nc")
    assert code == 0
    assert "Saved 6 cells" in out
    arms.drop(columns="var_x").to_csv(project / "arms.csv", index=False)
    code, out, _ = cli(capsys, "validate", project / "arms.toml")
    assert code == 2
    assert "column 'var_x' (given as 'variance') is not in the table. Did you mean 'var_y'?" in out


def test_validate_asos(capsys: pytest.CaptureFixture[str]) -> None:
    from conftest import asos_path

    assert asos_path().is_file(), "the ASOS file is needed (see tests/test_asos.py)"
    code, out, err = cli(
        capsys, "validate", REPO / "models" / "asos_early_read.toml", "--data", asos_path()
    )
    assert code == 0, err
    assert "treatment arms: 99" in out and "cells: 357" in out
    assert "39 cell(s) will be dropped" in out
    assert "assumed noise correlation (not in the data): final|early: 0.5." in out


# -- commands on saved fits (the shared small fixtures) -------------------------------


@pytest.fixture(scope="module")
def fits(small_fit: Any, small_fit_complete: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("fits")
    small_fit.save(d / "additive.nc")
    small_fit_complete.save(d / "complete.nc")
    (d / "target.json").write_text(json.dumps({"IN / Mobile": 0.7, "NA / TV": 0.3}))
    pd.DataFrame({"region": ["EU", "IN"], "device": ["TV", "Mobile"], "count": [10, 30]}).to_csv(
        d / "target.csv", index=False
    )
    return d


def test_report_writes_the_report_and_strict_fails(
    fits: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = fits / "report"
    code, stdout, err = cli(
        capsys, "report", fits / "additive.nc", "-o", out, "--target", fits / "target.json", "-q"
    )
    assert code == 0, err
    assert (out / "report.html").is_file() and (out / "report.json").is_file()
    assert "WARNING: the fit FAILED its convergence diagnostics" in stdout
    doc = json.loads((out / "report.json").read_text())
    assert doc["transport"] is not None and doc["trustworthy"] is False
    code, _, err = cli(capsys, "report", fits / "additive.nc", "-o", out, "--strict", "-q")
    assert code == 3
    assert_one_line_error(err, "a fit failed its convergence diagnostics (--strict)")


def test_transport(fits: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = fits / "transport.json"
    code, out, err = cli(
        capsys, "transport", fits / "additive.nc", fits / "target.json", "--json", result,
        "--md", fits / "transport.md", "--seed", "1",
    )  # fmt: skip
    assert code == 0, err
    assert "long_term_effect" in out and "p_positive" in out
    assert "Reading: a new experiment in this population moves long_retained by" in out
    doc = json.loads(result.read_text())
    assert [r["quantity"] for r in doc["summary"]][:2] == ["long_term_effect", "p_positive"]
    assert {r["segment"] for r in doc["segments"]} == {"IN / Mobile", "NA / TV"}
    assert (fits / "transport.md").read_text().startswith("# Transport of")
    code, out, _ = cli(
        capsys,
        "transport",
        fits / "additive.nc",
        fits / "target.csv",
        *("--proxy-effect", "early_watch_min=2", "--proxy-se", "early_watch_min=0.5"),
    )
    assert code == 0
    assert "given the proxy readings" in out
    (fits / "bad.json").write_text(json.dumps({"Mars / TV": 1.0}))
    code, _, err = cli(capsys, "transport", fits / "additive.nc", fits / "bad.json")
    assert code == 2
    assert_one_line_error(err, "Mars", "The TARGET file")  # the argument, not Python's 'target'
    code, _, err = cli(
        capsys, "transport", fits / "additive.nc", fits / "target.csv",
        "--proxy-effect", "watch=2",
    )  # fmt: skip
    assert code == 2
    assert_one_line_error(err, "--proxy-effect names unknown proxies ['watch']")
    code, _, err = cli(capsys, "transport", fits / "additive.nc", fits / "target.json", "--strict")
    assert code == 3


def test_compare(fits: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = fits / "compare.json"
    code, out, err = cli(
        capsys, "compare", fits / "additive.nc", f"complete={fits / 'complete.nc'}",
        "--kind", "cell", "--no-refit", "--json", result, "-q",
    )  # fmt: skip
    assert code == 0, err
    assert "elpd_loo" in out and "By leave-one-cell-out predictive density" in out
    doc = json.loads(result.read_text())
    assert {r["model"] for r in doc["table"]} == {"additive", "complete"}
    code, _, err = cli(capsys, "compare", fits / "additive.nc")
    assert code == 2
    assert_one_line_error(err, "compare needs at least two fit files")


def test_weights_ledger_override_and_history(
    fits: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = fits / "weights.duckdb"
    code, out, err = cli(capsys, "weights", fits / "additive.nc", "--ledger", ledger,
                         "--global-only", "--json", fits / "weights.json")  # fmt: skip
    assert code == 0, err
    assert "Adaptive proxy weights, 90% intervals:" in out
    assert f"Recorded entry 1 in {ledger}." in out
    assert len(json.loads((fits / "weights.json").read_text())["weights"]) == 4
    code, out, err = cli(
        capsys, "weights", "--ledger", ledger, "--override", "early_watch_min=0.5",
        "--override", "early_starts=0.5", "--who", "analyst", "--why", "watch time is noisy",
    )  # fmt: skip
    assert code == 0, err
    assert f"Recorded override entry 2 in {ledger}." in out
    code, out, _ = cli(capsys, "weights", "--ledger", ledger, "--history")
    assert code == 0
    assert "override" in out and "analyst" in out and "computed" in out
    assert "scope 'global'" in out and "nan" not in out.lower()
    from proxyscope.model.fit import ProxyFit

    fit = ProxyFit.load(fits / "additive.nc")
    assert fit.data_fingerprint[:12] in out and fit.config_hash[:12] in out
    code, every, _ = cli(capsys, "weights", "--ledger", ledger, "--history", "--scope", "all")
    assert code == 0 and len(every.splitlines()) >= len(out.splitlines())
    code, _, err = cli(capsys, "weights", "--ledger", ledger, "--override", "watch_min=1")
    assert code == 2
    assert_one_line_error(err, "--override needs --ledger FILE, --who NAME and --why TEXT")
    code, _, err = cli(capsys, "weights", "--ledger", ledger, "--override", "watch_min=0.7",
                       "--who", "a", "--why", "b")  # fmt: skip
    assert code == 2
    assert_one_line_error(err, "The --override weights must sum to 1")  # the flag, not Python's
    code, _, err = cli(capsys, "weights", "--history")
    assert code == 2
    assert_one_line_error(err, "--history needs --ledger FILE")


# -- the console script, as a user runs it ------------------------------------------


def test_console_script_in_a_subprocess(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "proxyscope"
    exe = str(script) if script.exists() else shutil.which("proxyscope")
    assert exe, "the proxyscope console script is not installed"
    done = subprocess.run(
        [exe, "validate", str(tmp_path / "missing.toml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"proxyscope: error: {tmp_path / 'missing.toml'}: no such spec file."
    ]
    done = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stdout.strip() == f"proxyscope {__version__}"


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    from proxyscope.errors import SpecError

    with pytest.raises(SpecError, match="no such spec file"):
        main(["run", str(tmp_path / "nope.toml"), "--debug"])


def test_internal_errors_are_not_disguised_as_input_errors(
    monkeypatch: pytest.MonkeyPatch, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import proxyscope.cli.data_commands as data_commands

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(data_commands, "check_data", boom)
    monkeypatch.delenv("PROXYSCOPE_DEBUG", raising=False)
    code, _, err = cli(capsys, "validate", project / "spec.toml", "-q")
    assert code == 1  # one line, no traceback (tests/test_cli_hostile.py has the rest)
    assert err.startswith("proxyscope: internal error: RuntimeError: a bug")
    assert len(err.splitlines()) == 1
    with pytest.raises(RuntimeError, match="a bug"):
        main(["validate", str(project / "spec.toml"), "-q", "--debug"])


# -- errors say the flags the user typed ----------------------------------------


def test_errors_name_the_flags(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flags = [
        "--data",
        project / "users.csv",
        "--experiment",
        "exp_id",
        "--treatment",
        "treatment",
        "--outcome",
        "retained",
        "--proxies",
        "watch_min",
        "-o",
        project / "cells.nc",
    ]
    cases = [
        (["summarize", *flags, "--treated-value", "7"], ["--treated-value must be one of"]),
        (["summarize", *flags, "--segments", "zz"], ["Column 'zz' (given as --segments)"]),
        (["summarize", *flags, "--direction", "watch_min=sideways"], ["--direction watch_min"]),
        (
            ["summarize", *flags, "--min-users-per-arm", "100000"],
            ["at least --min-users-per-arm=100000", "lower --min-users-per-arm"],
        ),
        (["demo", "--experiments", "1", "--out", project / "demo"], ["--experiments must be"]),
        (["weights", project / "fit.nc", "--scope", "NA / TV"], ["--scope only applies with"]),
    ]
    for argv, needles in cases:
        code, _, err = cli(capsys, *argv)
        assert code == 2, (argv, err)
        assert_one_line_error(err, *needles)
        assert "parameter of" not in err and "_per_" not in err, err  # warnings too
    assert not (project / "cells.nc").exists()
    # A spec key that no flag set keeps the spec's name: the user wrote it there.
    code, _, err = cli(capsys, "validate", project / "spec.toml", "--set", "model.pooling=x")
    assert code == 2
    assert_one_line_error(err, "[model].pooling must be one of")


def test_fit_prior_flag_is_checked_first(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cells = project / "cells.nc"
    assert cli(capsys, "summarize", project / "spec.toml", "-o", cells, "-q")[0] == 0
    code, _, err = cli(
        capsys, "fit", cells, "-o", project / "fit.nc", "--prior", "global_slop_sd=1"
    )
    assert code == 2
    assert_one_line_error(
        err, "--prior global_slop_sd: not a prior", "Did you mean 'global_slope_sd'?"
    )
    code, _, err = cli(capsys, "fit", cells, "-o", project / "fit.nc", "--followup-budget", "-3")
    assert code == 2
    assert_one_line_error(err, "--followup-budget must be a positive number")
    assert not (project / "fit.nc").exists()


def test_as_flags_leaves_other_names_alone() -> None:
    from proxyscope.cli.flags import as_flags

    flags = {"data": "--data", "cell_correlation": "--cell-correlation"}
    assert as_flags("The 'data' parameter of summarize: no file", flags, {}) == "--data: no file"
    # A spec key, a different parameter and a word that is not a flag stay as they are.
    for text in (
        "x.toml: [model].cell_correlation must be one of",
        "The 'proxies' parameter of summarize is empty",
        "the data do not match",
    ):
        assert as_flags(text, flags, {}) == text


# -- clusters, estimates and extra sources (issue 23) ---------------------------------


def _clustered(project: Path) -> pd.DataFrame:
    """The users, randomized by workspace: 60 workspaces per experiment, half treated;
    a quarter of the workspaces are control users exposed to treated ones."""
    frame = users()
    frame["ws"] = frame["exp_id"] * 1000 + np.arange(len(frame)) % 60
    frame["treatment"] = (frame["ws"] % 2).astype(np.int64)
    frame["expo"] = np.where(
        frame["treatment"] == 1, "direct", np.where(frame["ws"] % 4 == 0, "spill", "pure")
    )
    frame.to_csv(project / "clustered.csv", index=False)
    return frame


def test_summarize_by_cluster_and_exposure_is_the_library_call(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import warnings

    from proxyscope.data import CellEffects, summarize

    frame = _clustered(project)
    roles = ["--experiment", "exp_id", "--treatment", "treatment", "--outcome", "retained"]
    roles += ["--proxies", "watch_min,ctr", "--data", project / "clustered.csv"]
    code, _, err = cli(capsys, "summarize", *roles, "--cluster", "ws", "-o", project / "c.nc", "-q")
    assert code == 0, err
    got = CellEffects.load(project / "c.nc")
    kw: dict[str, Any] = {"experiment": "exp_id", "treatment": "treatment"}
    kw |= {"outcome": "retained", "proxies": ["watch_min", "ctr"], "cluster": "ws"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the same warning the CLI printed
        ref = summarize(frame, **kw)
        ref_x = summarize(
            frame, **kw, exposure="expo",
            exposure_values={"spillover": "spill", "pure_control": "pure"},
        )  # fmt: skip
    assert got.designs == ["cluster"]
    np.testing.assert_allclose(got.noise_cov, ref.noise_cov, rtol=1e-9)
    np.testing.assert_allclose(got.effect, ref.effect, rtol=1e-9)
    exposure = ["--exposure", "expo", "--exposure-value", "spillover=spill"]
    exposure += ["--exposure-value", "pure_control=pure"]
    code, _, err = cli(
        capsys, "summarize", *roles, "--cluster", "ws", *exposure, "-o", project / "x.nc"
    )
    assert code == 0, err
    assert "fewer than 30 clusters of column 'ws'" in err  # the warning, said once
    got_x = CellEffects.load(project / "x.nc")
    np.testing.assert_allclose(got_x.effect, ref_x.effect, rtol=1e-9)
    np.testing.assert_allclose(got_x.variable("spillover"), ref_x.variable("spillover"), rtol=1e-9)
    # Errors name the flags.
    code, _, err = cli(capsys, "summarize", *roles, "--exposure", "expo")
    assert code == 2
    assert_one_line_error(err, "--exposure needs --cluster too")
    code, _, err = cli(capsys, "summarize", *roles, "--cluster", "ws", "--exposure", "expo",
                       "--exposure-value", "spilover=spill")  # fmt: skip
    assert_one_line_error(err, "--exposure-value spilover is not a known exposure role. Did you")
    code, _, err = cli(capsys, "summarize", *roles, "--cluster", "wss")
    assert code == 2
    assert_one_line_error(err, "'wss'")


def _estimates(project: Path) -> pd.DataFrame:
    """A scorecard of 4 other experiments (ids ext-1...): one row per experiment and metric."""
    rng = np.random.default_rng(5)
    rows = []
    for e in range(1, 5):
        for m, sign in (("retained", 1.0), ("watch_min", 1.0), ("rebuffer", -1.0)):
            rows.append({"exp_id": f"ext-{e}", "metric": m, "est": sign * rng.normal(),
                         "se": 0.1 + rng.random(), "how": "did" if e % 2 else "rdd"})  # fmt: skip
    table = pd.DataFrame(rows)
    table.to_csv(project / "est.csv", index=False)
    pairs = table.pivot(index="exp_id", columns="metric", values="se").reset_index()
    pd.DataFrame(
        [
            {"exp_id": r.exp_id, "metric_a": a, "metric_b": b,
             "covariance": 0.2 * getattr(r, a) * getattr(r, b)}
            for r in pairs.itertuples() for a, b in
            (("retained", "watch_min"), ("retained", "rebuffer"), ("watch_min", "rebuffer"))
        ]
    ).to_csv(project / "pairs.csv", index=False)  # fmt: skip
    return table


def test_estimates_command(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from proxyscope.data import CellEffects
    from proxyscope.data.estimates import from_estimates

    table = _estimates(project)
    flags = ["--experiment", "exp_id", "--metric", "metric", "--estimate", "est", "--se", "se"]
    flags += ["--outcome", "retained", "--proxies", "watch_min,rebuffer"]
    flags += ["--direction", "rebuffer=lower"]
    out_path = project / "est.nc"
    code, out, err = cli(
        capsys, "estimates", project / "est.csv", *flags, "--correlation", "0.2",
        "--design", "how", "-o", out_path,
    )  # fmt: skip
    assert code == 0, err
    assert "ASSUMED noise correlations (not estimated): retained|watch_min: 0.2" in out
    assert f"Saved 4 cells to {out_path}." in out
    got = CellEffects.load(out_path)
    assert list(got.design) == ["did", "rdd", "did", "rdd"]
    ref = from_estimates(
        table, experiment="exp_id", metric="metric", estimate="est", se="se",
        outcome="retained", proxies=["watch_min", "rebuffer"],
        directions={"rebuffer": "lower"}, correlation=0.2, design="how",
    )  # fmt: skip
    assert got.fingerprint() == ref.fingerprint()
    # The covariance table gives the same cells here (it holds 0.2 * se_a * se_b).
    code, out, err = cli(
        capsys, "estimates", project / "est.csv", *flags, "--covariance", project / "pairs.csv",
        "--design", "how", "-o", project / "cov.nc",
    )  # fmt: skip
    assert code == 0, err
    by_cov = CellEffects.load(project / "cov.nc")
    np.testing.assert_allclose(by_cov.noise_cov, got.noise_cov, rtol=1e-12)
    assert by_cov.assumed_correlation is None


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ([], "one of the arguments --covariance --correlation is required"),
        (["--correlation", "0.2", "--covariance", "p.csv"], "not allowed with argument"),
        (["--correlation", "1"], "--correlation must be in (-1, 1)"),
        (["--correlation", "0.2", "--se", "sd"], "Column 'sd' (given as --se) is not in the table"),
        (["--correlation", "0.2", "--design", "hwo"], "--design is 'hwo', which is neither a des"),
        (["--correlation", "0.2", "--outcome", "retaind"], "holds 'retained', which is neither"),
        (["--correlation", "0.2", "--direction", "retained=lower"], "--direction retained is not"),
    ],
)
def test_estimates_command_errors_name_the_flags(
    project: Path, extra: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _estimates(project)
    flags = ["--experiment", "exp_id", "--metric", "metric", "--estimate", "est", "--se", "se"]
    flags += ["--outcome", "retained", "--proxies", "watch_min,rebuffer", *extra]
    code, _, err = cli(capsys, "estimates", project / "est.csv", *flags)
    assert code == 2
    assert_one_line_error(err, needle)


def test_validate_a_history_of_several_sources(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _estimates(project)
    extra = """
[[data.extra]]
kind = "estimates"
path = "est.csv"
design = "how"
covariance = "pairs.csv"
columns = { metric = "metric", estimate = "est", se = "se" }
"""
    (project / "mixed.toml").write_text(
        SPEC.replace('proxies = ["watch_min", "starts", "ctr", "rebuffer"]',
                     'proxies = ["watch_min", "rebuffer"]')
        .replace('segments = ["region", "device"]', "segments = []")
        + extra
    )  # fmt: skip
    code, out, err = cli(capsys, "validate", project / "mixed.toml")
    assert code == 0, out + err
    assert "cells: 7" in out and "experiments with cells: 7" in out
    code, out, err = cli(capsys, "summarize", project / "mixed.toml", "-o", project / "m.nc")
    assert code == 0, err
    assert "designs: ab (3 cells), did (2 cells), rdd (2 cells)" in out
    # A problem in the extra source is found by building the cells.
    (project / "pairs.csv").write_text("exp_id,metric_a,metric_b,covariance\n")
    code, out, _ = cli(capsys, "validate", project / "mixed.toml")
    assert code == 2
    assert "lacks the covariance of" in out


def test_validate_an_estimates_table_lists_every_problem(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = _estimates(project)
    table.loc[0, "se"] = -1.0
    table.loc[1, "est"] = np.nan
    table.loc[2, "metric"] = "rebufer"
    table.to_csv(project / "bad.csv", index=False)
    (project / "est.toml").write_text(
        'name = "est"\n[data]\nkind = "estimates"\npath = "bad.csv"\ncorrelation = 0.1\n'
        '[columns]\nexperiment = "exp_id"\nmetric = "metric"\nestimate = "est"\nse = "se"\n'
        'outcome = "retained"\nproxies = ["watch_min", "rebuffer"]\n'
    )
    code, out, _ = cli(capsys, "validate", project / "est.toml")
    assert code == 2
    assert out.startswith("3 problems in ")
    assert "column 'se' (given as 'se') has 1 value(s) that are not positive finite" in out
    assert "missing values in 'est': 1 rows" in out
    assert "holds 1 name(s) that are neither the outcome nor a proxy: ['rebufer']" in out


def test_a_correlation_override_reaches_every_source_that_assumes_one(project: Path) -> None:
    # What the sensitivity analysis does: every source that assumes a correlation
    # takes the grid's value; a source with estimated covariances keeps them.
    from proxyscope.run.load import load_effects
    from proxyscope.run.sensitivity import base_correlation
    from proxyscope.spec import load_spec

    _estimates(project)
    base = SPEC.replace('proxies = ["watch_min", "starts", "ctr", "rebuffer"]',
                        'proxies = ["watch_min", "rebuffer"]')  # fmt: skip
    base = base.replace('segments = ["region", "device"]', "segments = []")
    source = '\n[[data.extra]]\nkind = "estimates"\npath = "est.csv"\nCOVARIANCE\n'
    source += 'columns = { metric = "metric", estimate = "est", se = "se" }\n'
    assumed = source.replace("COVARIANCE", "correlation = 0.2")
    estimated = source.replace("COVARIANCE", 'covariance = "pairs.csv"')
    (project / "a.toml").write_text(base + assumed)
    (project / "b.toml").write_text(base + estimated)
    a, b = load_spec(project / "a.toml"), load_spec(project / "b.toml")
    assert base_correlation(a) == 0.2 and base_correlation(b) is None
    at_base = load_effects(a).effects
    moved = load_effects(a, correlation=0.6).effects
    np.testing.assert_array_equal(moved.noise_cov[:3], at_base.noise_cov[:3])  # user rows
    ext = slice(3, None)
    se = np.sqrt(np.einsum("cii->ci", at_base.noise_cov[ext]))
    corr = moved.noise_cov[ext] / (se[:, :, None] * se[:, None, :])
    np.testing.assert_allclose(np.abs(corr[:, 0, 1]), 0.6, rtol=1e-12)
    assert moved.assumed_correlation == {
        "retained|watch_min": 0.6, "retained|rebuffer": 0.6, "watch_min|rebuffer": 0.6,
    }  # fmt: skip
    fixed = load_effects(b).effects
    assert load_effects(b, correlation=0.6).effects.fingerprint() == fixed.fingerprint()


def test_summarize_arm_summaries_of_another_design(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from proxyscope.data import CellEffects

    frame = users()
    g = frame.groupby(["exp_id", "treatment"])
    arms = pd.DataFrame(
        {"n": g.size(), "mean_y": g["retained"].mean(), "var_y": g["retained"].var(),
         "mean_x": g["watch_min"].mean(), "var_x": g["watch_min"].var()}
    ).reset_index()  # fmt: skip
    arms.to_csv(project / "arms.csv", index=False)
    (project / "arms.toml").write_text(
        'name = "arms"\n[data]\nkind = "arm_summaries"\npath = "arms.csv"\ncorrelation = 0.3\n'
        '[columns]\nexperiment = "exp_id"\ntreatment = "treatment"\noutcome = "y"\n'
        'proxies = ["x"]\ncount = "n"\n'
        'mean = { y = "mean_y", x = "mean_x" }\nvariance = { y = "var_y", x = "var_x" }\n'
    )
    out_path = project / "ipw.nc"
    code, out, err = cli(
        capsys, "summarize", project / "arms.toml", "--design", "ipw", "-o", out_path
    )
    assert code == 0, err
    assert "designs: ipw (3 cells)" in out
    assert CellEffects.load(out_path).designs == ["ipw"]
    code, _, err = cli(capsys, "summarize", project / "arms.toml", "--design", "IPW")
    assert code == 2
    assert_one_line_error(err, "--design must be one of {'ab', 'cluster',", "Did you mean 'ipw'?")

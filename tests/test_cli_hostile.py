"""The command line on garbage: every command, given garbage files and garbage flag
values, answers with exit code 2 and one ``proxyscope: error:`` line naming the
file or the flag, never a traceback; anything else it meets is an internal error
(exit code 1, one line); and ``validate`` and ``run`` refuse a spec before anything
is fitted when the spec asks for what cannot be done.

Commands run in-process through ``main(argv)`` (one test runs the console script).
The fit the commands on fits need is the shared small fixture, saved to a file.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import make_users

from proxyscope.cli import main

HUGE = str(2**70)

SPEC = """
name = "small"
[data]
path = "users.csv"
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


def assert_input_error(code: int, err: str, needles: list[str]) -> None:
    """Exit code 2, one error line naming one of ``needles``, no traceback."""
    lines = [line for line in err.splitlines() if not line.startswith("[")]  # progress
    errors = [line for line in lines if line.startswith("proxyscope: error:")]
    assert "Traceback" not in err, err
    assert "internal error" not in err, err
    assert code == 2, err
    assert len(errors) == 1, err
    assert [line for line in lines if not line.startswith("proxyscope: ")] == [], err
    assert any(n in errors[0] for n in needles), (needles, errors[0])


@pytest.fixture(scope="module")
def g(tmp_path_factory: pytest.TempPathFactory, small_fit: Any, small_effects: Any) -> Path:
    """Garbage of every kind, and one good fit, cells file, spec and data set."""
    d = tmp_path_factory.mktemp("garbage")
    noise = bytes(range(256))[::-1] * 3  # not UTF-8, not any file format
    for ext in ("csv", "parquet", "nc", "toml", "duckdb", "json"):
        (d / f"rand.{ext}").write_bytes(noise)
        (d / f"empty.{ext}").write_bytes(b"")
    for ext in ("csv", "nc", "toml", "duckdb"):
        (d / f"dir.{ext}").mkdir()
    (d / "wrong.csv").write_text("a,b\n1,x\n2,y\n")
    (d / "list.json").write_text("[1, 2]")
    (d / "word.json").write_text(json.dumps({"NA / TV": "many"}))
    (d / "apac.json").write_text(json.dumps({"APAC / TV": 1}))
    (d / "three.json").write_text(json.dumps({"NA / TV / X": 1}))
    (d / "target.json").write_text(json.dumps({"NA / TV": 1}))
    (d / "a_file").write_text("not a directory")
    make_users(n=2000, offset=0.0).to_csv(d / "users.csv", index=False)
    (d / "spec.toml").write_text(SPEC)
    small_fit.save(d / "fit.nc")
    small_effects.save(d / "cells.nc")
    return d


# -- garbage files, every command -------------------------------------------------

SPEC_FILES = ["rand.toml", "empty.toml", "dir.toml", "missing.toml", "rand.csv"]
DATA_FILES = ["rand.csv", "empty.csv", "dir.csv", "missing.csv", "wrong.csv"]
DATA_FILES += ["rand.parquet", "empty.parquet", "rand.nc"]
FIT_FILES = ["rand.nc", "empty.nc", "dir.nc", "missing.nc", "rand.csv", "wrong.csv"]
TARGET_FILES = ["rand.csv", "empty.csv", "dir.csv", "missing.csv", "wrong.csv", "rand.json"]
TARGET_FILES += ["empty.json", "rand.parquet", "rand.nc", "list.json", "word.json"]
TARGET_FILES += ["apac.json", "three.json"]
LEDGER_FILES = ["rand.duckdb", "empty.duckdb", "dir.duckdb", "rand.csv"]

#: (test id, the command line with {d} for the garbage directory, names the error line
#: may give: the file or flag at fault).
Case = tuple[str, str, list[str]]
CASES: list[Case] = []
for f in SPEC_FILES:
    CASES += [
        (f"run {f}", f"run {{d}}/{f} --out {{d}}/out", [f]),
        (f"validate {f}", f"validate {{d}}/{f}", [f]),
        (f"spec {f}", f"spec {{d}}/{f}", [f]),
        (f"summarize {f}", f"summarize {{d}}/{f} -o {{d}}/c.nc", [f]),
        (f"fit --spec {f}", f"fit {{d}}/cells.nc --spec {{d}}/{f}", [f]),
    ]
for f in DATA_FILES:
    named = [f, "exp_id"] if f == "wrong.csv" else [f]  # or a missing column
    CASES += [
        (f"validate --data {f}", f"validate {{d}}/spec.toml --data {{d}}/{f}", named),
        (
            f"summarize --data {f}",
            f"summarize {{d}}/spec.toml --data {{d}}/{f} -o {{d}}/c.nc",
            named,
        ),
        (f"run --data {f}", f"run {{d}}/spec.toml --data {{d}}/{f} --out {{d}}/out", named),
    ]
for f in FIT_FILES:
    CASES += [
        (f"fit {f}", f"fit {{d}}/{f} -o {{d}}/f.nc", [f]),
        (f"report {f}", f"report {{d}}/{f} -o {{d}}/r", [f]),
        (f"transport {f}", f"transport {{d}}/{f} {{d}}/target.json", [f]),
        (f"compare {f}", f"compare {{d}}/fit.nc x={{d}}/{f}", [f]),
        (f"weights {f}", f"weights {{d}}/{f}", [f]),
    ]
CASES += [
    ("fit on a fit file", "fit {d}/fit.nc -o {d}/f.nc", ["fit.nc"]),
    ("report on a cells file", "report {d}/cells.nc -o {d}/r", ["cells.nc"]),
]
for f in TARGET_FILES:
    # What a target holds is named by what is wrong in it (a segment, a level).
    named = [f, "target", "TARGET", "segment", "level"]
    CASES += [
        (f"transport {f}", f"transport {{d}}/fit.nc {{d}}/{f}", named),
        (f"report --target {f}", f"report {{d}}/fit.nc -o {{d}}/r --target {{d}}/{f}", named),
    ]
for f in LEDGER_FILES:
    CASES += [
        (f"weights --history {f}", f"weights --history --ledger {{d}}/{f}", [f]),
        (f"weights --ledger {f}", f"weights {{d}}/fit.nc --ledger {{d}}/{f}", [f]),
        (
            f"weights --override {f}",
            f"weights --override early_ctr=1 --who me --why test --ledger {{d}}/{f}",
            [f],
        ),
    ]


def command(line: str, d: Path) -> list[str]:
    return line.replace("{d}", str(d)).split()


@pytest.mark.parametrize(("line", "needles"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_garbage_files(
    line: str, needles: list[str], g: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, *command(line, g), "-q")
    assert_input_error(code, err, needles)
    assert not (g / "out" / "fit.nc").exists() and not (g / "f.nc").exists()


# -- garbage flag values, every command ---------------------------------------------

T = "transport {d}/fit.nc {d}/target.json"
W = "weights --who me --why t --ledger {d}/l.duckdb"
FLAGS: list[Case] = [
    ("demo --draws huge", f"demo --draws {HUGE}", ["--draws"]),
    ("demo --tune -1", "demo --tune -1", ["--tune"]),
    ("demo --chains 65", "demo --chains 65", ["--chains"]),
    ("demo --seed -1", "demo --seed -1", ["--seed"]),
    ("demo --seed huge", f"demo --seed {HUGE}", ["--seed"]),
    ("demo --users abc", "demo --users abc", ["--users"]),
    ("demo --users huge", f"demo --users {HUGE}", ["--users"]),
    ("demo --experiments 1", "demo --experiments 1", ["--experiments"]),
    ("demo --set draws", f"demo --set sampler.draws={HUGE}", ["--draws"]),
    ("demo --set seed", "demo --set sampler.seed=4294967296", ["seed"]),
    ("demo --set nan", "demo --set analysis.ci=nan", ["ci"]),
    ("demo --set unknown", "demo --set bogus.key=1", ["bogus"]),
    ("demo --out a file", "demo --out {d}/a_file", ["--out"]),
    ("run --set draws", f"run {{d}}/spec.toml --set sampler.draws={HUGE}", ["draws"]),
    ("run --set empty", "run {d}/spec.toml --set =1", ["=1"]),
    ("run --out a file", "run {d}/spec.toml --out {d}/a_file", ["--out"]),
    ("validate --min 0", "validate {d}/spec.toml --min-users-per-arm 0", ["--min-users-per-arm"]),
    ("validate --min huge", f"validate {{d}}/spec.toml --min-users-per-arm {HUGE}", ["--min-"]),
    ("validate --engine", "validate {d}/spec.toml --engine excel", ["--engine"]),
    ("validate --direction", "validate {d}/spec.toml --direction ctr", ["--direction"]),
    ("validate --direction up", "validate {d}/spec.toml --direction ctr=up", ["--direction"]),
    ("validate --treated-value", "validate {d}/spec.toml --treated-value [1,2]", ["--treated"]),
    ("validate no spec", "validate --data {d}/users.csv", ["--experiment"]),
    ("spec --set seed", "spec {d}/spec.toml --set sampler.seed=4294967296", ["seed"]),
    ("spec -o a directory", "spec {d}/spec.toml -o {d}/dir.csv", ["dir.csv"]),
    ("summarize --proxies", "summarize {d}/spec.toml --proxies nope -o {d}/c.nc", ["nope"]),
    ("summarize -o a directory", "summarize {d}/spec.toml -o {d}/dir.nc", ["dir.nc"]),
    ("fit --draws huge", f"fit {{d}}/cells.nc --draws {HUGE}", ["--draws"]),
    ("fit --tune -1", "fit {d}/cells.nc --tune -1", ["--tune"]),
    ("fit --chains 0", "fit {d}/cells.nc --chains 0", ["--chains"]),
    ("fit --seed 2**32", f"fit {{d}}/cells.nc --seed {2**32}", ["--seed"]),
    ("fit --followups 6", "fit {d}/cells.nc --followups 6", ["--followups"]),
    ("fit --budget nan", "fit {d}/cells.nc --followup-budget nan", ["--followup-budget"]),
    ("fit --budget x", "fit {d}/cells.nc --followup-budget x", ["--followup-budget"]),
    ("fit --prior name", "fit {d}/cells.nc --prior slope=1", ["--prior"]),
    ("fit --prior value", "fit {d}/cells.nc --prior global_slope_sd=x", ["--prior"]),
    ("fit --prior -1", "fit {d}/cells.nc --prior global_slope_sd=-1", ["global_slope_sd"]),
    ("fit --setting", "fit {d}/cells.nc --setting target_accept=2", ["--setting"]),
    ("fit --setting name", "fit {d}/cells.nc --setting =2", ["--setting"]),
    ("fit --pooling", "fit {d}/cells.nc --pooling full", ["--pooling"]),
    ("report --ci 1", "report {d}/fit.nc --ci 1", ["--ci"]),
    ("report --seed -1", "report {d}/fit.nc --seed -1", ["--seed"]),
    ("report --kind", "report {d}/fit.nc --kind user", ["--kind"]),
    ("report --compare =", "report {d}/fit.nc -o {d}/r --compare =", ["'='"]),
    ("report --out a file", "report {d}/fit.nc -o {d}/a_file", ["--out"]),
    ("transport --ci nan", f"{T} --ci nan", ["--ci"]),
    ("transport --proxy-effect", f"{T} --proxy-effect early_ctr", ["--proxy-effect"]),
    ("transport --proxy-effect x", f"{T} --proxy-effect early_ctr=x", ["--proxy-effect"]),
    ("transport --proxy-effect name", f"{T} --proxy-effect ctr=1", ["--proxy-effect"]),
    ("transport --proxy-effect inf", f"{T} --proxy-effect early_ctr=inf", ["--proxy-effect"]),
    (
        "transport --proxy-se",
        f"{T} --proxy-effect early_ctr=0.1 --proxy-se early_ctr=-1",
        ["--proxy-se"],
    ),
    ("transport --json a directory", f"{T} --json {{d}}/dir.csv", ["dir.csv"]),
    ("compare one fit", "compare {d}/fit.nc", ["two fit"]),
    ("compare same name", "compare {d}/fit.nc {d}/fit.nc", ["'fit'"]),
    ("compare --max-refits 0", "compare {d}/fit.nc b={d}/fit.nc --max-refits 0", ["--max-"]),
    ("compare --kind", "compare {d}/fit.nc b={d}/fit.nc --kind user", ["--kind"]),
    ("weights --ci 2", "weights {d}/fit.nc --ci 2", ["--ci"]),
    ("weights --override x", f"{W} --override a=x", ["--override"]),
    ("weights --override sum", f"{W} --override a=0.2", ["--override"]),
    ("weights --override alone", "weights --override a=1", ["--override"]),
    ("weights --history alone", "weights --history", ["--history"]),
    ("weights --who alone", "weights {d}/fit.nc --who me", ["--who"]),
    ("weights no fit", "weights", ["FIT"]),
]


@pytest.mark.parametrize(("line", "needles"), [c[1:] for c in FLAGS], ids=[c[0] for c in FLAGS])
def test_garbage_flag_values(
    line: str, needles: list[str], g: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, *command(line, g), "-q")
    assert_input_error(code, err, needles)
    assert not (g / "f.nc").exists()


def test_the_console_script_on_garbage(g: Path) -> None:
    script = Path(sys.executable).parent / "proxyscope"
    exe = str(script) if script.exists() else shutil.which("proxyscope")
    assert exe, "the proxyscope console script is not installed"
    for argv in (["fit", g / "rand.nc"], ["validate", g / "spec.toml", "--data", g / "rand.csv"]):
        done = subprocess.run(
            [exe, *map(str, argv)], capture_output=True, text=True, timeout=300, check=False
        )
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr
        errors = [x for x in done.stderr.splitlines() if x.startswith("proxyscope: error:")]
        assert len(errors) == 1 and "rand." in errors[0], done.stderr


# -- what is a bug, what is input --------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "code", "line"),
    [
        (RuntimeError("a bug"), 1, "proxyscope: internal error: RuntimeError: a bug"),
        (ValueError("bad thing"), 1, "proxyscope: internal error: ValueError: bad thing"),
        (TypeError("no len"), 1, "proxyscope: internal error: TypeError: no len"),
        (KeyError("col"), 1, "proxyscope: internal error: KeyError: 'col'"),
        (OSError("Unable to open file (file signature not found)"), 1, "internal error: OSError"),
        (PermissionError(13, "Permission denied", "x.csv"), 2, "error: Permission denied: x.csv"),
        (FileNotFoundError("no data file at 'x.csv'"), 2, "error: no data file at 'x.csv'"),
        (OSError(28, "No space left on device", "out.nc"), 2, "error: No space left on device"),
    ],
    ids=["runtime", "value", "type", "key", "library-oserror", "permission", "missing", "space"],
)
def test_a_bug_is_an_internal_error_and_a_file_error_is_input(
    exc: BaseException,
    code: int,
    line: str,
    monkeypatch: pytest.MonkeyPatch,
    g: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import proxyscope.cli.data_commands as data_commands

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise exc

    monkeypatch.setattr(data_commands, "check_data", boom)
    monkeypatch.delenv("PROXYSCOPE_DEBUG", raising=False)
    got, out, err = cli(capsys, "validate", g / "spec.toml", "-q")
    assert got == code, err
    assert "Traceback" not in err and out == ""
    assert len(err.splitlines()) == 1 and line in err, err
    if code == 1:
        assert "rerun with --debug" in err and "a bug in proxyscope" in err
    # --debug, and PROXYSCOPE_DEBUG=1, show the traceback instead
    with pytest.raises(type(exc)):
        main(["validate", str(g / "spec.toml"), "-q", "--debug"])
    monkeypatch.setenv("PROXYSCOPE_DEBUG", "1")
    with pytest.raises(type(exc)):
        main(["validate", str(g / "spec.toml"), "-q"])


def test_help_states_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "--help")
    assert code == 0
    text = " ".join(out.split())
    assert "2 bad input or spec" in text and "1 an internal error, i.e. a bug" in text


# -- validate and run refuse, before anything is fitted ------------------------------

TRANSPORT = "[analysis.transport]\n"


@pytest.mark.parametrize(
    ("extra", "needle", "before_data"),
    [
        ('shares = { "NA / TV / X" = 1 }', "must name one level per segment column", False),
        ('shares = { "NA" = 1 }', "must name one level per segment column", False),
        ('shares = { "APAC / TV" = 1, "NA / TV" = 1 }', "['APAC']", False),
        ('path = "apac.csv"', "['APAC']", False),
        ('path = "nope.csv"', "[analysis.transport].path", True),
        ('path = "dir.csv"', "is a directory", True),
        ('path = "rand.csv"', "[analysis.transport].path", True),
        (
            'shares = { "NA / TV" = 1 }\nproxy_effects = { ctr = 1 }\nproxy_se = { ctr = 0 }',
            "> 0",
            True,
        ),
        (
            'shares = { "NA / TV" = 1 }\nproxy_effects = { ctr = 1, starts = 1 }\n'
            "proxy_se = { ctr = 1 }",
            "missing ['starts']",
            True,
        ),
    ],
)
def test_transport_targets_are_refused_before_the_fit(
    extra: str,
    needle: str,
    before_data: bool,
    tmp_path: Path,
    g: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("users.csv", "rand.csv"):
        shutil.copy(g / name, tmp_path / name)
    (tmp_path / "dir.csv").mkdir()
    (tmp_path / "apac.csv").write_text("region,device,share\nAPAC,TV,0.5\nNA,TV,0.5\n")
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC + TRANSPORT + extra + "\n")
    code, out, err = cli(capsys, "validate", spec, "-q")
    assert code == 2 and "Traceback" not in err
    assert needle in out + err, out + err
    if before_data:
        forbid_reading_the_data(monkeypatch)
    code, _, err = cli(capsys, "run", spec, "--out", tmp_path / "out", "-q")
    assert_input_error(code, err, [needle])
    assert not (tmp_path / "out" / "fit.nc").exists()
    assert not (tmp_path / "out" / "cells.nc").exists()


def forbid_reading_the_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """``run`` reading the data now is a bug (exit code 1, which the test refuses)."""
    import proxyscope.run.execute as execute

    def read(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("run read the data before refusing the spec")

    monkeypatch.setattr(execute, "load_effects", read)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ('[analysis]\nledger = "LEDGER/rand.duckdb"', "[analysis].ledger"),
        ('[analysis]\nledger = "LEDGER/dir.duckdb"', "is a directory"),
        ('[analysis]\nledger = "LEDGER/empty.duckdb"', "[analysis].ledger"),
        (f"[sampler.settings]\ntarget_accept = {HUGE}", "target_accept"),
        (
            "[analysis.compare]\npoolings = ['complete']\nproxy_sets = { complete = ['ctr'] }",
            "fit-complete.nc",
        ),
    ],
)
def test_specs_are_refused_before_the_data_are_read(
    extra: str,
    needle: str,
    tmp_path: Path,
    g: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shutil.copy(g / "users.csv", tmp_path / "users.csv")
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.replace("[sampler]", extra.replace("LEDGER", str(g)) + "\n[sampler]"))
    code, out, err = cli(capsys, "validate", spec, "-q")
    assert code == 2 and "Traceback" not in err
    assert needle in out + err, out + err
    forbid_reading_the_data(monkeypatch)
    code, _, err = cli(capsys, "run", spec, "--out", tmp_path / "out", "-q")
    assert_input_error(code, err, [needle])
    assert not (tmp_path / "out" / "cells.nc").exists()


def test_sampler_limits_are_refused_before_the_data_are_read(
    tmp_path: Path, g: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(g / "users.csv", tmp_path / "users.csv")
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    for change, needle in (
        (f"sampler.draws={HUGE}", "[sampler].draws must be at most 100000"),
        ("sampler.seed=4294967296", "[sampler].seed must be at most 4294967295"),
        ("sampler.chains=65", "[sampler].chains must be at most 64"),
    ):
        for command in (["validate", spec], ["run", spec, "--out", tmp_path / "out"]):
            code, _, err = cli(capsys, *command, "--set", change, "-q")
            assert_input_error(code, err, [needle])
    assert not (tmp_path / "out").exists()


def test_a_new_ledger_validates_and_is_not_created(
    tmp_path: Path, g: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(g / "users.csv", tmp_path / "users.csv")
    spec = tmp_path / "spec.toml"
    ledger = tmp_path / "new" / "weights.duckdb"
    spec.write_text(SPEC.replace("[sampler]", f'[analysis]\nledger = "{ledger}"\n[sampler]'))
    code, out, err = cli(capsys, "validate", spec, "-q")
    assert code == 0, out + err
    assert not ledger.exists()


def test_pathlike_arguments_are_accepted(g: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["spec", g / "spec.toml"])  # type: ignore[list-item]
    assert code == 0
    assert "[sampler]" in capsys.readouterr().out

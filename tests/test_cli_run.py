"""``proxyscope run`` and ``demo`` end to end, with real (tiny) fits.

Fits here use a few dozen draws on one chain: enough to exercise every step
(data, fit, analyses, comparison, sensitivity, report), far too few to pass
the 400-ESS bar, which the ``--strict`` test relies on.
"""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from proxyscope.cli import main
from proxyscope.spec import load_spec

pytestmark = pytest.mark.slow

TINY = """
name = "tiny"
description = "A tiny simulated world for the CLI tests."

[data]
kind = "users"
engine = "duckdb"

[data.simulate]
n_users = 20000
n_experiments = 6
seed = 3

[columns]
experiment = "exp_id"
treatment = "treatment"
outcome = "long_retained"
proxies = ["early_watch_min", "rebuffer_rate"]
segments = ["device"]
directions = { rebuffer_rate = "lower" }

[model]
pooling = "complete"

[sampler]
draws = 30
tune = 30
chains = 1
seed = 2

[analysis]
threshold = 0.3
probability = 0.8

[analysis.transport]
name = "mostly mobile"
shares = { Mobile = 0.8, TV = 0.2 }

[analysis.compare]
proxy_sets = { watch = ["early_watch_min"] }
"""


def cli(capsys: pytest.CaptureFixture[str], *argv: Any) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str, str]:
    d = tmp_path_factory.mktemp("run")
    (d / "tiny.toml").write_text(TINY)
    out = d / "out"
    so, se = io.StringIO(), io.StringIO()
    with redirect_stdout(so), redirect_stderr(se):
        code = main(["run", str(d / "tiny.toml"), "--out", str(out)])
    return out, code, so.getvalue(), se.getvalue()


def test_run_writes_every_output(tiny_run: tuple[Path, int, str, str]) -> None:
    out, code, stdout, stderr = tiny_run
    assert code == 0, stderr
    for name in (
        "spec.toml",
        "users.parquet",
        "cells.nc",
        "fit.nc",
        "fit-watch.nc",
        "report.html",
        "report.md",
        "report.json",
        "run.json",
        "run.md",
    ):
        assert (out / name).is_file(), name
    assert load_spec(out / "spec.toml").name == "tiny"
    for heading in (
        "Diagnostics: WARNING: the fit FAILED its diagnostics",
        "Coefficients, all segments (historical mix), 90% intervals:",
        "Surrogacy (trial-level R^2",
        "Fragile segments (flagged):",
        "Recommendation (90% intervals):",
        "Transport to 'mostly mobile':",
        "Proxy-set comparison (PSIS-LOO, outcome):",
        f"Report: {out / 'report.html'}",
    ):
        assert heading in stdout, heading
    # Progress went to stderr, step by step.
    assert "simulating 20,000 users in 6 experiments (seed 3)" in stderr
    assert "summarizing" in stderr and "with duckdb" in stderr
    assert "proxyscope: warning: The proxy model fit is NOT trustworthy." in stderr


def test_run_json_and_report_agree(tiny_run: tuple[Path, int, str, str]) -> None:
    out, *_ = tiny_run
    doc = json.loads((out / "run.json").read_text())
    assert doc["all_fits_passed"] is False
    assert doc["fit"]["pooling"] == "complete"
    assert doc["data"]["n_experiments"] == 6
    assert doc["data"]["designs"] == {"ab": doc["data"]["n_cells"]}
    assert doc["transport"]["name"] == "mostly mobile"
    assert doc["transport"]["summary"][0]["quantity"] == "long_term_effect"
    assert doc["comparisons"]["proxy_sets"]["kind"] == "outcome"
    assert {r["model"] for r in doc["comparisons"]["proxy_sets"]["table"]} == {
        "all proxies",
        "watch",
    }
    assert doc["recommendations"][0]["proxy"] in ("early_watch_min", "rebuffer_rate", "composite")
    report = json.loads((out / "report.json").read_text())
    assert report["trustworthy"] is False
    assert report["transport"] is not None and report["compare"] is not None
    # The report shows the analyses the run computed, at the spec's settings.
    assert report["fragility"]["threshold"] == 0.3
    assert report["surrogacy"]["probability"] == 0.8
    assert report["recommendations"]["probability"] == 0.8
    # The surrogate threshold effects (which move with the probability) are the run's.
    run_ste = {(r["segment"], r["proxy"]): r["ste"] for r in doc["surrogacy"]}
    shown = {(r["segment"], r["proxy"]): r["ste"] for r in report["surrogacy"]["rows"]}
    assert shown == run_ste
    md = (out / "run.md").read_text()
    assert md.startswith("# proxyscope run: tiny")
    assert "WARNING: the main fit failed its convergence diagnostics" in md


def test_fit_strict_fails_on_unconverged_fit(
    tiny_run: tuple[Path, int, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    out, *_ = tiny_run
    args = ["fit", out / "cells.nc", "-o", out / "again.nc", "--pooling", "complete"]
    args += ["--draws", "10", "--tune", "10", "--chains", "1", "--seed", "4", "-q"]
    code, stdout, err = cli(capsys, *args, "--strict")
    assert code == 3
    assert (out / "again.nc").is_file()  # written before the verdict
    assert "Convergence FAILED" in stdout
    # The fit's warning advises in command-line flags, as the printed diagnostics do.
    warning = next(line for line in err.splitlines() if "NOT trustworthy" in line)
    assert "--draws" in warning and "fit(" not in warning and "ProxyModel(" not in warning
    assert err.strip().endswith(
        "proxyscope: error: a fit failed its convergence diagnostics (--strict)"
    )
    assert "Traceback" not in err


def test_sensitivity_to_the_assumed_correlation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import proxyscope as ps

    world = ps.simulate.streaming(n_users=20_000, n_experiments=8, seed=5)
    u = world.users.assign(arm=np.where(world.users["treatment"] == 1, "treatment", "control"))
    g = u.groupby(["exp_id", "arm"])
    arms = g.agg(
        n=("long_retained", "size"),
        mean_y=("long_retained", "mean"),
        var_y=("long_retained", "var"),
        mean_x=("early_watch_min", "mean"),
        var_x=("early_watch_min", "var"),
    ).reset_index()
    arms.to_parquet(tmp_path / "arms.parquet")
    (tmp_path / "arms.toml").write_text(
        """
name = "arms"
[data]
kind = "arm_summaries"
path = "arms.parquet"
correlation = 0.2
[columns]
experiment = "exp_id"
treatment = "arm"
treated_value = "treatment"
outcome = "y"
proxies = ["x"]
count = "n"
mean = { y = "mean_y", x = "mean_x" }
variance = { y = "var_y", x = "var_x" }
[model]
pooling = "complete"
[sampler]
draws = 30
tune = 30
chains = 1
seed = 1
[analysis.sensitivity]
correlations = [0.0, 0.6]
"""
    )
    out = tmp_path / "out"
    code, stdout, err = cli(capsys, "run", tmp_path / "arms.toml", "--out", out, "-q")
    assert code == 0, err
    assert "Assumed noise correlation (not in the data): y|x: 0.2." in stdout
    assert "Sensitivity to the assumed noise correlation (90% intervals):" in stdout
    assert "as the assumed correlation goes from 0 to 0.6" in stdout
    doc = json.loads((out / "run.json").read_text())
    rows = doc["sensitivity"]
    assert sorted({r["correlation"] for r in rows}) == [0.0, 0.2, 0.6]
    assert {r["scope"] for r in rows} == {"overall"}
    for r in rows:
        assert 0 <= r["r2_lo"] <= r["r2"] <= r["r2_hi"] <= 1
        assert r["decision_lo"] <= r["decision_accuracy"] <= r["decision_hi"]
        assert r["slope_lo"] <= r["slope"] <= r["slope_hi"]


def test_demo_small(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    code, stdout, err = cli(
        capsys, "demo", "--users", "20000", "--experiments", "6", "--draws", "20",
        "--tune", "20", "--chains", "1", "--out", out, "--set", "model.pooling=complete",
    )  # fmt: skip
    assert code == 0, err
    assert (out / "users.parquet").is_file() and (out / "report.html").is_file()
    assert "Transport to 'Mobile x IN x New-heavy cohort':" in stdout
    assert "the simulator's exact expected long-term effect for this mix:" in stdout
    assert "proxyscope demo: writing into" in err
    spec = load_spec(out / "spec.toml")
    assert spec.data.simulate is not None and spec.data.simulate.n_users == 20_000


def test_sensitivity_of_estimates_made_elsewhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import proxyscope as ps

    world = ps.simulate.streaming(n_users=20_000, n_experiments=8, seed=5)
    cells = ps.summarize(world.users, experiment="exp_id", treatment="treatment",
                         outcome="long_retained", proxies=["early_watch_min"])  # fmt: skip
    frame = cells.to_frame()
    rows = [
        {"exp": r["experiment"], "metric": m, "est": r[f"effect_{m}"], "se": r[f"se_{m}"],
         "nt": r["n_treat"], "nc": r["n_control"]}
        for _, r in frame.iterrows() for m in cells.metrics
    ]  # fmt: skip
    pd.DataFrame(rows).to_csv(tmp_path / "scorecard.csv", index=False)
    (tmp_path / "est.toml").write_text(
        """
name = "scorecard"
[data]
kind = "estimates"
path = "scorecard.csv"
correlation = 0.2
design = "external"
[columns]
experiment = "exp"
metric = "metric"
estimate = "est"
se = "se"
n_treat = "nt"
n_control = "nc"
outcome = "long_retained"
proxies = ["early_watch_min"]
[model]
pooling = "complete"
noise = "as_given"
[sampler]
draws = 30
tune = 30
chains = 1
seed = 1
[analysis.sensitivity]
correlations = [0.0, 0.6]
"""
    )
    out = tmp_path / "out"
    code, stdout, err = cli(capsys, "run", tmp_path / "est.toml", "--out", out, "-q")
    assert code == 0, err
    assert "Assumed noise correlation (not in the data): long_retained|early_watch_min: 0.2." in (
        stdout
    )
    assert "Sensitivity to the assumed noise correlation (90% intervals):" in stdout
    assert "as the assumed correlation goes from 0 to 0.6" in stdout
    doc = json.loads((out / "run.json").read_text())
    assert doc["data"]["assumed_correlation"] == {"long_retained|early_watch_min": 0.2}
    assert doc["data"]["designs"] == {"external": 8} and doc["data"]["extra_sources"] == []
    assert "Designs: external: 8 cells." in stdout
    assert "- Designs: external: 8 cells" in (out / "run.md").read_text()
    rows = doc["sensitivity"]
    assert sorted({r["correlation"] for r in rows}) == [0.0, 0.2, 0.6]
    for r in rows:
        assert r["slope_lo"] <= r["slope"] <= r["slope_hi"]
    report = json.loads((out / "report.json").read_text())
    assert report["sensitivity"] is not None
    assert [r["correlation"] for r in report["sensitivity"]["rows"]] == [0.0, 0.2, 0.6]
    saved = ps.CellEffects.load(out / "cells.nc")
    assert saved.designs == ["external"] and saved.assumed_correlation is not None

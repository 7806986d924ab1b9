"""Benchmark: did and ipw on 10M unit-level rows from Parquet, DuckDB against pandas.

Usage::

    python benchmarks/bench_design_scale.py [--did-rows 10_000_000] [--ipw-rows 10_000_000]
        [--quick] [--skip-pandas] [--spark] [--data-dir DIR]

Writes, in chunks generated with numpy (so generation stays far below 2 GB), two
Parquet files in a temporary directory (or ``--data-dir``, kept):

- a did panel: 50 experiments x 2,000 units (markets) x 100 periods, one row per
  (experiment, unit, period): the unit's region (a segment, 4 levels), its first
  treated period (waves at periods 30, 50 and 70, a quarter never treated), an
  outcome and 4 proxies made of a unit baseline, a common trend, AR(1) shocks and
  an effect that grows after launch. Rows are stored by experiment, then period,
  then unit (how a daily export lands), so the engine has to sort each experiment
  by unit and period;
- ipw rows: 20 experiments x 500,000 users, 4 covariates, a device segment (3
  levels), opting in with a probability that rises with the covariates, a binary
  outcome and 3 proxies.

``--quick`` writes 1M rows of each (did: 5 experiments; ipw: 20 experiments of 50,000).

Each measurement runs in a fresh interpreter, so its peak memory is its own:

- ``did duckdb``: ``proxyscope.did(path, engine="duckdb")`` (one DuckDB thread);
- ``did pandas``: ``proxyscope.did(path, engine="pandas")``, the baseline: the
  used columns read into one DataFrame, then the same estimator;
- ``ipw duckdb`` and ``ipw pandas`` likewise (default learners: a standardized
  logistic propensity model, linear outcome models, 5 folds);
- with ``--spark`` (needs PySpark and Java), ``did spark``: the same file read by
  a local Spark session (``local[2]``, 2 GB driver); its peak memory is the
  Python process's plus the Spark JVM's (``VmHWM`` of the child's descendants).

Wall time is the call inside the child (imports excluded); peak memory is the
child's maximum resident set size (``getrusage``, imports included). The child
also times where the call spends it: reading (DuckDB's checks and fetches, or
pandas' read and checks), the estimator (``did``: the group-time effects of every
cell, :func:`proxyscope.data.did_fit.fit_cell`; ``ipw``: the cross-fitted
nuisance models, :func:`proxyscope.data.ipw_fit.nuisance`, split into the
propensity and the outcome models), and the rest. Results are printed as a table
and written to ``benchmarks/_results/design_scale.json``. Targets: a few minutes
each on 2 cores, peak <= 2 GB for DuckDB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "_results"
PROXIES = ["early_watch_min", "early_starts", "early_ctr", "rebuffer_rate"]
REGIONS = np.asarray(["NA", "LATAM", "EU", "IN"], dtype=object)
DEVICES = np.asarray(["TV", "Mobile", "Desktop"], dtype=object)
DID_ROLES: dict[str, Any] = {
    "experiment": "exp_id",
    "unit": "unit",
    "period": "period",
    "first_treated": "first_treated",
    "outcome": "long_retained",
    "proxies": PROXIES,
    "segments": ["region"],
    "directions": {"rebuffer_rate": "lower"},
}
IPW_ROLES: dict[str, Any] = {
    "experiment": "exp_id",
    "treatment": "opt_in",
    "outcome": "long_retained",
    "proxies": PROXIES[:3],
    "covariates": ["x1", "x2", "x3", "x4"],
    "segments": ["device"],
}
UNITS, PERIODS, WAVES = 2_000, 100, (30, 50, 70)
IPW_EXPERIMENTS = 20
GB = 1024.0


# -- data -----------------------------------------------------------------------------


def _did_experiment(rng: np.random.Generator, e: int) -> Any:
    """One rollout's panel as an Arrow table, rows by period then unit."""
    import pyarrow as pa

    m = 1 + len(PROXIES)
    scale = np.array([0.05, 4.0, 0.3, 0.03, 0.01])
    region = rng.choice(len(REGIONS), UNITS, p=[0.35, 0.2, 0.25, 0.2])
    wave = rng.choice(len(WAVES) + 1, UNITS, p=[0.25, 0.25, 0.25, 0.25])
    launch = np.where(wave < len(WAVES), np.asarray([*WAVES, 0])[wave], np.nan)
    base = rng.normal(size=(UNITS, m)) * scale * 3
    trend = np.cumsum(rng.normal(size=(PERIODS, m)) * scale * 0.3, axis=0)
    shock = np.empty((PERIODS, UNITS, m))
    shock[0] = rng.normal(size=(UNITS, m))
    for t in range(1, PERIODS):
        shock[t] = 0.6 * shock[t - 1] + 0.8 * rng.normal(size=(UNITS, m))
    period = np.arange(PERIODS)
    on = np.nan_to_num(period[:, None] - launch[None, :] + 1, nan=0.0).clip(0, None)
    lift = np.minimum(on, 20.0)[:, :, None] * (0.01 + 0.005 * region)[None, :, None]
    y = base[None] + trend[:, None] + shock * scale + lift * scale * np.array([1, 2, 1, 1, -1])
    n = PERIODS * UNITS
    cols = {
        "exp_id": pa.array(np.full(n, e, dtype=np.int64)),
        "unit": pa.array(np.tile(np.arange(UNITS, dtype=np.int64), PERIODS)),
        "period": pa.array(np.repeat(period, UNITS).astype(np.int64)),
        "first_treated": pa.array(np.tile(launch, PERIODS), from_pandas=True),
        "region": pa.array(REGIONS[np.tile(region, PERIODS)], type=pa.string()),
    }
    for j, name in enumerate([DID_ROLES["outcome"], *PROXIES]):
        cols[name] = pa.array(y[:, :, j].ravel())
    return pa.table(cols)


def _ipw_experiment(rng: np.random.Generator, e: int, n: int) -> Any:
    """One opt-in experiment's users as an Arrow table."""
    import pyarrow as pa

    x = rng.normal(size=(n, 4))
    device = rng.choice(len(DEVICES), n, p=[0.45, 0.45, 0.10])
    p = 1 / (1 + np.exp(-(-0.4 + 0.8 * x[:, 0] - 0.5 * x[:, 1] + 0.3 * (device == 1))))
    t = (rng.random(n) < p).astype(np.int64)
    tau = 0.05 + 0.02 * (e % 5)
    logit = -0.2 + 0.6 * x[:, 0] + 0.3 * x[:, 2] + tau * t
    cols = {
        "exp_id": pa.array(np.full(n, e, dtype=np.int64)),
        "opt_in": pa.array(t),
        "device": pa.array(DEVICES[device], type=pa.string()),
        "long_retained": pa.array((rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)),
        "early_watch_min": pa.array(
            25 + 6 * x[:, 0] + 3 * x[:, 3] + 8 * tau * t + 5 * rng.normal(size=n)
        ),
        "early_starts": pa.array(2 + 0.5 * x[:, 0] + 0.4 * tau * t + 0.3 * rng.normal(size=n)),
        "early_ctr": pa.array(0.3 + 0.05 * x[:, 1] + 0.06 * t + 0.1 * rng.normal(size=n)),
    }
    for j in range(4):
        cols[f"x{j + 1}"] = pa.array(x[:, j])
    return pa.table(cols)


def write_did(path: Path, rows: int, seed: int = 7) -> int:
    """The did panel with ``rows`` rows rounded to whole experiments; its row count."""
    import pyarrow.parquet as pq

    n_exp = max(2, round(rows / (UNITS * PERIODS)))
    rng = np.random.default_rng(seed)
    with pq.ParquetWriter(path, _did_experiment(np.random.default_rng(0), 0).schema) as out:
        for e in range(n_exp):
            out.write_table(_did_experiment(rng, e), row_group_size=500_000)
    return n_exp * UNITS * PERIODS


def write_ipw(path: Path, rows: int, seed: int = 11) -> int:
    """The ipw rows: ``IPW_EXPERIMENTS`` experiments of ``rows / IPW_EXPERIMENTS`` users."""
    import pyarrow.parquet as pq

    n = rows // IPW_EXPERIMENTS
    rng = np.random.default_rng(seed)
    with pq.ParquetWriter(path, _ipw_experiment(np.random.default_rng(0), 0, 10).schema) as out:
        for e in range(IPW_EXPERIMENTS):
            out.write_table(_ipw_experiment(rng, e, n), row_group_size=500_000)
    return n * IPW_EXPERIMENTS


# -- what each child runs -------------------------------------------------------------


def _timed(module: Any, name: str, clock: dict[str, float], key: str) -> None:
    """Replace ``module.name`` by a wrapper that adds its time to ``clock[key]``."""
    inner = getattr(module, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            clock[key] = clock.get(key, 0.0) + time.perf_counter() - t0

    setattr(module, name, wrapper)


def _descendants_peak_mb() -> float:
    """Peak resident memory of this process's descendants (the Spark JVM), from /proc."""
    total, todo, seen = 0.0, [os.getpid()], set()
    while todo:
        pid = todo.pop()
        for task in Path(f"/proc/{pid}/task").glob("*/children"):
            for child in task.read_text().split():
                if int(child) not in seen:
                    seen.add(int(child))
                    todo.append(int(child))
    for pid in seen:
        status = Path(f"/proc/{pid}/status")
        for line in status.read_text().splitlines() if status.exists() else []:
            if line.startswith("VmHWM:"):
                total += int(line.split()[1]) / 1024
    return total


def _spark_session() -> Any:
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .config("spark.driver.memory", "2g")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    return session


def _child(design: str, engine: str, path: str) -> dict[str, Any]:
    import proxyscope.data.did as did_module
    import proxyscope.data.ipw_fit as ipw_fit
    from proxyscope.data.did import did
    from proxyscope.data.ipw import ipw

    clock: dict[str, float] = {}
    if design == "did":
        _timed(did_module, "fit_cell", clock, "estimator")
        _timed(did_module, "experiment_block", clock, "layout")
    else:
        _timed(ipw_fit, "nuisance", clock, "estimator")
        _timed(ipw_fit, "_fit_predict", clock, "models")
    options = {"spark": _spark_session()} if engine == "spark" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pre-trend and overlap warnings of the simulated data
        start = time.perf_counter()
        if design == "did":
            got = did(path, engine=engine, **DID_ROLES, **options)
        else:
            got = ipw(path, engine=engine, **IPW_ROLES)
        seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    jvm_mb = _descendants_peak_mb() if engine == "spark" else 0.0
    effect = got.data["effect"].values
    return {
        "design": design,
        "engine": engine,
        "seconds": seconds,
        "peak_mb": peak_kb / 1024 + jvm_mb,
        "jvm_peak_mb": jvm_mb,
        "cells": int(got.n_cells),
        "estimator_s": clock.get("estimator", 0.0),
        "layout_s": clock.get("layout", 0.0),
        "models_s": clock.get("models", 0.0),
        "effect_checksum": float(np.abs(effect).sum()),
    }


def run_child(design: str, engine: str, path: str) -> dict[str, Any]:
    """One measurement in a fresh interpreter; its own peak RSS comes back."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", design, engine, path],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def table(results: list[dict[str, Any]], rows: dict[str, int]) -> str:
    lines = [
        f"did and ipw from Parquet ({os.cpu_count()} cores; did {rows['did']:,} unit-period "
        f"rows, ipw {rows['ipw']:,} unit rows)",
        f"{'design':<7}{'engine':<8}{'wall s':>8}{'peak MB':>9}{'cells':>7}"
        f"{'estimator s':>13}{'of it models s':>16}{'reading+rest s':>16}",
    ]
    for r in results:
        rest = r["seconds"] - r["estimator_s"]
        lines.append(
            f"{r['design']:<7}{r['engine']:<8}{r['seconds']:>8.1f}{r['peak_mb']:>9.0f}"
            f"{r['cells']:>7}{r['estimator_s']:>13.1f}{r['models_s']:>16.1f}{rest:>16.1f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; return the results (also printed and saved as JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    count = lambda s: int(s.replace("_", ""))  # noqa: E731
    parser.add_argument("--did-rows", type=count, default=10_000_000)
    parser.add_argument("--ipw-rows", type=count, default=10_000_000)
    parser.add_argument("--quick", action="store_true", help="1M rows of each")
    parser.add_argument("--skip-pandas", action="store_true", help="DuckDB only")
    parser.add_argument("--spark", action="store_true", help="also did on local Spark")
    parser.add_argument("--data-dir", help="write (and keep) the files here")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(*args.child)))
        return {}
    if args.quick:
        args.did_rows = args.ipw_rows = 1_000_000
    folder = Path(args.data_dir or tempfile.mkdtemp(prefix="proxyscope-scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        did_path, ipw_path = folder / "panel.parquet", folder / "users.parquet"
        rows = {
            "did": write_did(did_path, args.did_rows),
            "ipw": write_ipw(ipw_path, args.ipw_rows),
        }
        gen = time.perf_counter() - t0
        print(
            f"data: {folder} ({gen:.0f} s to write; generation peak "
            f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)",
            flush=True,
        )
        engines = ["duckdb"] if args.skip_pandas else ["duckdb", "pandas"]
        results = []
        for design, path in (("did", did_path), ("ipw", ipw_path)):
            extra = ["spark"] if args.spark and design == "did" else []
            for engine in engines + extra:
                results.append(run_child(design, engine, str(path)))
                print(json.dumps(results[-1]), flush=True)
        for design in ("did", "ipw"):
            sums = {r["effect_checksum"] for r in results if r["design"] == design}
            assert len(sums) == 1, f"{design}: the engines disagree ({sums})"
        report = {"rows": rows, "generation_s": gen, "results": results}
        print(table(results, rows))
        RESULTS.mkdir(exist_ok=True)
        name = "design_scale_quick.json" if args.quick else "design_scale.json"
        (RESULTS / name).write_text(json.dumps(report, indent=2))
        return report
    finally:
        if not args.data_dir:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

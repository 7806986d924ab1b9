"""Benchmark: summarize 10M user rows from Parquet — DuckDB vs pandas vs a per-metric groupby.

Usage::

    python benchmarks/bench_summarize.py [--rows 10_000_000] [--big]
        [--clusters 20_000] [--clustered-only]

Writes a user-level Parquet file once (experiment, 3 segment columns,
treatment, an outcome and 4 proxies; cached under ``benchmarks/_data/``),
then times, each in a fresh subprocess so that each peak RSS is its own:

- ``duckdb``: ``proxyscope.summarize(path, engine="duckdb")`` (the default:
  one DuckDB thread, so the result repeats bit for bit);
- ``duckdb_all``: the same with ``threads`` = every core (faster, last bits
  may vary between runs);
- ``pandas``: ``proxyscope.summarize(path, engine="pandas")``;
- ``groupby``: the seed baseline — ``pd.read_parquet`` then, per metric,
  ``groupby([exp_id, *segments, treatment])[metric].mean().unstack()``
  (means only: no covariances, no checks).

The clustered case (issue 23) writes a second file of ``--rows`` users in
``--clusters`` workspaces (each workspace in one experiment and one region,
randomized as a whole, with a baseline shared by its users' metrics), then
times on it, in the same run:

- ``duckdb_flat``: ``summarize(path, engine="duckdb")``, users as independent;
- ``duckdb_cluster``: the same with ``cluster="ws"`` (clustered covariance);

and reports their time ratio (target <= 2) and peak memory (target <= 1 GB).

Wall time is the operation inside the child (after imports); peak memory is
the child's maximum resident set size, imports included. ``--big`` also
summarizes 100M rows (10 Parquet files read through a glob) with DuckDB.
``--clustered-only`` runs the clustered case alone. Results are printed as a
table and written to ``benchmarks/_results/`` (``summarize.json``,
``summarize_clustered.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATA = HERE / "_data"
RESULTS = HERE / "_results"
SEGMENTS = ["region", "device", "tenure"]
OUTCOME = "long_retained"
PROXIES = ["early_watch_min", "early_starts", "early_ctr", "rebuffer_rate"]
ROLES: dict[str, Any] = {
    "experiment": "exp_id",
    "treatment": "treatment",
    "outcome": OUTCOME,
    "proxies": PROXIES,
    "segments": SEGMENTS,
    "directions": {"rebuffer_rate": "lower"},
}
CHUNK = 1_000_000
ROW_GROUP = 500_000


# -- data -----------------------------------------------------------------------


REGIONS = (["NA", "LATAM", "EU", "IN"], [0.35, 0.20, 0.25, 0.20])


def _workspaces(seed: int, clusters: int, n_experiments: int) -> dict[str, Any]:
    """Per workspace: its experiment, arm, region and baseline (fixed by the seed)."""
    import numpy as np

    rng = np.random.default_rng([seed, clusters])
    return {
        "exp": np.arange(clusters) % n_experiments,
        "t": rng.integers(0, 2, clusters),
        "region": rng.choice(len(REGIONS[0]), size=clusters, p=REGIONS[1]),
        "base": rng.normal(0, 0.5, clusters),
    }


def _chunk(rng: Any, n: int, n_experiments: int, ws: dict[str, Any] | None = None) -> Any:
    import numpy as np
    import pyarrow as pa

    def pick(levels: list[str], p: list[float]) -> Any:
        codes = rng.choice(len(levels), size=n, p=p)
        return pa.array(np.asarray(levels, dtype=object)[codes], type=pa.string())

    if ws is None:
        exp = rng.integers(0, n_experiments, n)
        t = rng.integers(0, 2, n)
        region = None  # drawn below, in the order this file always drew it
        base = np.zeros(n)
    else:  # users of workspaces randomized as a whole
        w = rng.integers(0, len(ws["exp"]), n)
        exp, t, base = ws["exp"][w], ws["t"][w], ws["base"][w]
        region = pa.array(np.asarray(REGIONS[0], dtype=object)[ws["region"][w]], type=pa.string())
    tau = rng.normal(0, 0.12, n_experiments)[exp]
    sat = rng.normal(size=n) + base
    eng = rng.normal(size=n) + base
    logit = -0.3 + 0.7 * sat + 0.15 * eng + t * tau
    extra = {} if ws is None else {"ws": pa.array(w, type=pa.int64())}
    return pa.table(
        {
            **extra,
            "exp_id": pa.array(exp, type=pa.int64()),
            "region": pick(*REGIONS) if region is None else region,
            "device": pick(["TV", "Mobile", "Desktop"], [0.45, 0.45, 0.10]),
            "tenure": pick(["New", "Existing"], [0.30, 0.70]),
            "treatment": pa.array(t, type=pa.int64()),
            OUTCOME: pa.array(
                (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64), type=pa.int64()
            ),
            "early_watch_min": np.clip(
                25 + 10 * eng + 6 * sat + 8 * t * tau + 5 * rng.normal(size=n), 0, None
            ),
            "early_starts": np.clip(
                1.8 + 0.7 * eng + 0.4 * t * tau + 0.3 * rng.normal(size=n), 0, None
            ),
            "early_ctr": np.clip(0.3 + 0.05 * eng + 0.06 * t + 0.1 * rng.normal(size=n), 0, 1),
            "rebuffer_rate": np.clip(0.1 - 0.01 * sat + 0.05 * rng.random(n), 0, 1),
        }
    )


def write_users(
    path: Path, rows: int, seed: int, n_experiments: int = 50, clusters: int = 0
) -> Path:
    """Write ``rows`` user rows to one Parquet file in chunks (cached); with
    ``clusters``, users of that many workspaces (column ``ws``)."""
    import numpy as np
    import pyarrow.parquet as pq

    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    rng = np.random.default_rng(seed)
    ws = _workspaces(seed, clusters, n_experiments) if clusters else None
    writer = None
    try:
        done = 0
        while done < rows:
            table = _chunk(rng, min(CHUNK, rows - done), n_experiments, ws)
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table, row_group_size=ROW_GROUP)
            done += table.num_rows
    finally:
        if writer is not None:
            writer.close()
    os.replace(tmp, path)
    return path


def dataset(rows: int) -> str:
    """The Parquet path (10M and below: one file) or glob (above: 10M-row files)."""
    per_file = 10_000_000
    if rows <= per_file:
        return str(write_users(DATA / f"users_{rows}.parquet", rows, seed=7))
    folder = DATA / f"users_{rows}"
    for i in range((rows + per_file - 1) // per_file):
        n = min(per_file, rows - i * per_file)
        write_users(folder / f"part-{i:03d}.parquet", n, seed=1000 + i)
    return str(folder / "*.parquet")


def clustered_dataset(rows: int, clusters: int) -> str:
    """The Parquet path of ``rows`` users in ``clusters`` workspaces (one file)."""
    return str(
        write_users(DATA / f"users_{rows}_ws{clusters}.parquet", rows, 11, clusters=clusters)
    )


# -- what each child runs -----------------------------------------------------------


def _child(mode: str, path: str) -> dict[str, Any]:
    import pandas as pd

    if mode in ("duckdb", "duckdb_all", "pandas", "duckdb_flat", "duckdb_cluster"):
        import proxyscope.data as psd
    start = time.perf_counter()
    if mode in ("duckdb", "pandas"):
        cells = psd.summarize(path, engine=mode, **ROLES).n_cells
    elif mode in ("duckdb_flat", "duckdb_cluster"):
        cluster = "ws" if mode == "duckdb_cluster" else None
        cells = psd.summarize(path, engine="duckdb", cluster=cluster, **ROLES).n_cells
    elif mode == "duckdb_all":
        cells = psd.summarize(path, engine="duckdb", threads=os.cpu_count(), **ROLES).n_cells
    elif mode == "groupby":
        df = pd.read_parquet(path)
        effects = {}
        for metric in [OUTCOME, *PROXIES]:
            g = df.groupby(["exp_id", *SEGMENTS, "treatment"])[metric].mean().unstack()
            effects[metric] = g[1] - g[0]
        cells = len(effects[OUTCOME])
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"mode": mode, "seconds": seconds, "peak_mb": peak_kb / 1024, "cells": cells}


def run_child(mode: str, path: str) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; its own peak RSS comes back."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--path", path],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def table(results: list[dict[str, Any]], rows: int) -> str:
    base = next((r for r in results if r["mode"] == "groupby"), None)
    lines = [
        f"summarize, {rows:,} user rows from Parquet ({os.cpu_count()} cores)",
        f"{'method':<26}{'wall s':>9}{'peak MB':>10}{'speed vs groupby':>18}{'mem vs groupby':>16}",
    ]
    for r in results:
        label = {
            "duckdb": "proxyscope duckdb",
            "duckdb_all": f"proxyscope duckdb, {os.cpu_count()} thr",
            "pandas": "proxyscope pandas",
            "groupby": "per-metric groupby (seed)",
        }[r["mode"]]
        speed = f"{base['seconds'] / r['seconds']:.2f}x" if base else "-"
        mem = f"{r['peak_mb'] / base['peak_mb']:.2f}x" if base else "-"
        lines.append(f"{label:<26}{r['seconds']:>9.2f}{r['peak_mb']:>10.0f}{speed:>18}{mem:>16}")
    return "\n".join(lines)


def clustered_table(flat: dict[str, Any], clus: dict[str, Any], rows: int, clusters: int) -> str:
    ratio = clus["seconds"] / flat["seconds"]
    return "\n".join(
        [
            f"clustered case: {rows:,} user rows in {clusters:,} workspaces from Parquet, duckdb",
            f"{'summarize':<26}{'wall s':>9}{'peak MB':>10}",
            f"{'users independent':<26}{flat['seconds']:>9.2f}{flat['peak_mb']:>10.0f}",
            f"{'cluster=ws':<26}{clus['seconds']:>9.2f}{clus['peak_mb']:>10.0f}",
            f"time ratio clustered / independent: {ratio:.2f} (target <= 2); "
            f"peak {clus['peak_mb']:.0f} MB (target <= 1024)",
        ]
    )


def run_clustered(rows: int, clusters: int) -> dict[str, Any]:
    """The clustered case: the same file summarized without and with ``cluster``."""
    t0 = time.perf_counter()
    path = clustered_dataset(rows, clusters)
    print(f"\ndata: {path} (ready in {time.perf_counter() - t0:.1f} s)")
    flat = run_child("duckdb_flat", path)
    clus = run_child("duckdb_cluster", path)
    print(clustered_table(flat, clus, rows, clusters))
    out = {"rows": rows, "clusters": clusters, "independent": flat, "clustered": clus}
    out["time_ratio"] = clus["seconds"] / flat["seconds"]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "summarize_clustered.json").write_text(json.dumps(out, indent=2))
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; return the results (also printed and saved as JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=lambda s: int(s.replace("_", "")), default=10_000_000)
    parser.add_argument("--big", action="store_true", help="also 100M rows on duckdb")
    parser.add_argument("--clusters", type=lambda s: int(s.replace("_", "")), default=20_000)
    parser.add_argument(
        "--clustered-only", action="store_true", help="only the clustered case (cluster=)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, args.path)))
        return {}
    if args.clustered_only:
        return {"clustered": run_clustered(args.rows, args.clusters)}

    t0 = time.perf_counter()
    path = dataset(args.rows)
    print(f"data: {path} (ready in {time.perf_counter() - t0:.1f} s)")
    modes = ("duckdb", "duckdb_all", "pandas", "groupby")
    results = [run_child(mode, path) for mode in modes]
    report: dict[str, Any] = {"rows": args.rows, "results": results}
    print(table(results, args.rows))
    if args.big:
        big_rows = 100_000_000
        t0 = time.perf_counter()
        big_path = dataset(big_rows)
        print(f"\ndata: {big_path} (ready in {time.perf_counter() - t0:.1f} s)")
        big = run_child("duckdb", big_path)
        report["big"] = {"rows": big_rows, **big}
        print(
            f"proxyscope duckdb, {big_rows:,} rows: {big['seconds']:.1f} s, "
            f"peak {big['peak_mb']:.0f} MB, {big['cells']} cells"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "summarize.json").write_text(json.dumps(report, indent=2))
    report["clustered"] = run_clustered(args.rows, args.clusters)
    return report


if __name__ == "__main__":
    main()

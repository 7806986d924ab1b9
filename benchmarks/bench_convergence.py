"""Benchmark: do the default fits converge on the histories users have?

Runs ``ProxyModel(**config).fit(effects, random_seed=seed)`` at the fit's
defaults (4 chains x 1000 draws after 1000 tuning steps) for every
configuration of ``convergence_matrix.CONFIGS`` on each seed, and prints per
configuration and seed: whether the diagnostics passed, max R-hat, min bulk
and tail ESS, divergences, leapfrog steps per draw, the fit's wall time, the
slowest-mixing parameter, and what the fit did after its first run.

Each configuration runs in its own process (both seeds in it, so the second
seed reuses the first one's compiled code, as a user's second fit would).

Run ``python benchmarks/bench_convergence.py [--configs a,b] [--seeds 1,2]
[--label NAME] [--out FILE]``; rows are appended to
``benchmarks/_results/convergence.jsonl`` (or ``--out``) as they finish, and
``--table FILE`` prints the table of a results file without fitting.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
RESULTS = HERE / "_results" / "convergence.jsonl"


def run_one(name: str, seed: int) -> dict[str, Any]:
    sys.path.insert(0, str(HERE))
    import convergence_matrix as cm

    import proxyscope as ps

    effects, kwargs = cm.build(name, seed)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = ps.ProxyModel(**kwargs).fit(effects, random_seed=seed, progress=False)
    wall = time.perf_counter() - t0
    diag = fit.diagnostics()
    table = diag.table
    stats = fit.idata.sample_stats
    timings = fit.sampler.get("timings", {})
    worst = table.sort_values("ess_bulk").iloc[0] if len(table) else None
    return {
        "config": name,
        "seed": seed,
        "cells": int(effects.n_cells),
        "experiments": len(effects.experiments),
        "passed": bool(diag.passed),
        "rhat_max": float(table["r_hat"].max()),
        "ess_bulk_min": float(table["ess_bulk"].min()),
        "ess_tail_min": float(table["ess_tail"].min()),
        "divergences": int(diag.divergences),
        "steps_per_draw": float(stats["n_steps"].mean()),
        "wall_seconds": wall,
        "compile_seconds": timings.get("compile_seconds"),
        "sample_seconds": timings.get("sample_seconds"),
        "slowest": None if worst is None else str(worst["parameter"]),
        "failed": list(diag.failed["parameter"].head(5)),
        "attempts": fit.sampler.get("attempts", []),
    }


def _child(name: str, seeds: list[int], out: Path, label: str) -> None:
    for seed in seeds:
        try:
            row = run_one(name, seed)
        except Exception as exc:  # a failure is a result too
            row = {"config": name, "seed": seed, "error": f"{type(exc).__name__}: {exc}"}
        row["label"] = label
        with out.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(_line(row), flush=True)


HEADER = (
    f"{'config':<22} {'seed':>4} {'pass':>5} {'R-hat':>6} {'bulk':>6} {'tail':>6} "
    f"{'div':>4} {'steps':>6} {'wall s':>7}  slowest / what the fit did"
)


def _line(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"{r['config']:<22} {r['seed']:>4} ERROR {r['error']}"
    extra = r.get("slowest") or ""
    if r.get("attempts"):
        extra += " | " + "; ".join(a.get("action", "") for a in r["attempts"][1:])
    return (
        f"{r['config']:<22} {r['seed']:>4} {'yes' if r['passed'] else 'NO':>5} "
        f"{r['rhat_max']:>6.3f} {r['ess_bulk_min']:>6.0f} {r['ess_tail_min']:>6.0f} "
        f"{r['divergences']:>4} {r['steps_per_draw']:>6.1f} {r['wall_seconds']:>7.0f}  {extra}"
    )


def print_table(rows: list[dict[str, Any]]) -> None:
    print(HEADER)
    for r in rows:
        print(_line(r))
    ok = [r for r in rows if "error" not in r]
    for seed in sorted({r["seed"] for r in ok}):
        sub = [r for r in ok if r["seed"] == seed]
        n_pass = sum(r["passed"] for r in sub)
        print(f"seed {seed}: {n_pass} of {len(sub)} passed ({100 * n_pass / len(sub):.0f}%)")
    if ok:
        n_pass = sum(r["passed"] for r in ok)
        wall = sum(r["wall_seconds"] for r in ok)
        print(
            f"all: {n_pass} of {len(ok)} passed ({100 * n_pass / len(ok):.0f}%); "
            f"total fit time {wall / 60:.0f} min"
        )


def main() -> None:
    sys.path.insert(0, str(HERE))
    import convergence_matrix as cm

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="", help="comma-separated names (default: all)")
    parser.add_argument("--seeds", default="1,2")
    parser.add_argument("--label", default="")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--table", type=Path, help="print the table of a results file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",") if s]
    if args.table:
        rows = [json.loads(line) for line in args.table.read_text().splitlines() if line]
        if args.label:
            rows = [r for r in rows if r.get("label") == args.label]
        print_table(rows)
        return
    if args.child:
        _child(args.child, seeds, args.out, args.label)
        return
    names = [n for n in args.configs.split(",") if n] or [c.name for c in cm.CONFIGS]
    unknown = [n for n in names if n not in cm.BY_NAME]
    if unknown:
        raise SystemExit(f"unknown configurations {unknown}; known: {list(cm.BY_NAME)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    start = args.out.stat().st_size if args.out.exists() else 0
    print(HEADER, flush=True)
    for name in names:
        subprocess.call(
            [
                sys.executable,
                __file__,
                "--child",
                name,
                "--seeds",
                args.seeds,
                "--out",
                str(args.out),
                "--label",
                args.label,
            ]
        )
    with args.out.open() as fh:
        fh.seek(start)
        rows = [json.loads(line) for line in fh.read().splitlines() if line]
    print()
    print_table(rows)


if __name__ == "__main__":
    main()

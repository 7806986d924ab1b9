"""Run every benchmark in ``benchmarks/`` in turn (what ``make bench`` does).

Each script prints its own table and writes its results under
``benchmarks/_results/``; run a script directly for its options
(``python benchmarks/bench_truth.py --help``). The whole set takes hours on a
2-core machine (the 30-seed truth benchmark alone fits 36 models, the convergence
matrix 56);
``--quick`` runs reduced versions to check that they work.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent

FULL: list[list[str]] = [
    ["bench_summarize.py"],
    ["bench_simulate.py"],
    ["bench_model.py"],
    ["bench_convergence.py"],
    ["bench_kernel.py"],
    ["bench_backtest.py"],
    ["bench_asos_loo.py"],
    ["bench_truth.py", "--seeds", "30", "--moved", "6"],
    ["bench_flip_floor.py", "--seeds", "10"],
    ["bench_cluster.py"],
    ["bench_cluster_model.py"],
    ["bench_designs.py"],
    ["bench_design_slopes.py", "--seeds", "10"],
    ["bench_did.py"],
    ["bench_rdd.py", "--worlds", "50"],
    ["bench_ipw.py"],
    ["bench_synthetic_control.py"],
    ["bench_design_scale.py"],
    ["bench_stability.py", "--seeds", "10"],
    ["bench_rolling.py", "--seeds", "10"],
]
QUICK: list[list[str]] = [
    ["bench_summarize.py", "--rows", "1000000"],
    ["bench_simulate.py", "--n-users", "500000"],
    ["bench_model.py", "--cases", "warm", "--draws", "300", "--tune", "300"],
    ["bench_convergence.py", "--configs", "readme_cli,weak_one", "--seeds", "1"],
    ["bench_kernel.py", "--repeats", "2", "--calls", "200"],
    ["bench_truth.py", "--seeds", "1", "--moved", "0", "--draws", "200", "--tune", "200"],
    ["bench_flip_floor.py", "--seeds", "1", "--draws", "200", "--replicates", "20"],
    ["bench_cluster.py", "--worlds", "1", "--experiments", "10"],
    ["bench_did.py", "--worlds", "5", "--violation-worlds", "1"],
    ["bench_rdd.py", "--worlds", "2"],
    ["bench_ipw.py", "--worlds", "5", "--confounded", "1"],
    ["bench_synthetic_control.py", "--worlds", "2", "--worlds-large", "0"],
    ["bench_design_scale.py", "--quick"],
    ["bench_design_slopes.py", "--seeds", "2", "--draws", "300", "--tune", "300"],
    ["bench_stability.py", "--quick"],
    ["bench_rolling.py", "--quick"],
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="reduced sizes, to check they run")
    args = parser.parse_args()
    failed = []
    for script, *options in QUICK if args.quick else FULL:
        if not (HERE / script).exists():
            print(f"== {script}: missing, skipped", flush=True)
            continue
        print(f"== {script} {' '.join(options)}", flush=True)
        t0 = time.perf_counter()
        code = subprocess.call([sys.executable, str(HERE / script), *options])
        print(f"== {script}: exit {code} after {time.perf_counter() - t0:.0f} s", flush=True)
        if code:
            failed.append(script)
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()

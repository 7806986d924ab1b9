"""Benchmark: the property-based (hostile input) tests at a large example budget, counted.

Runs every test marked ``fuzz`` with the ``fuzz`` hypothesis profile (400
examples per test instead of CI's 25; ``--examples`` to change it) and counts
each entry point's answers by outcome (see ``tests/_fuzz.py``): clear errors,
correct answers, and the defects (unclear errors, tracebacks, silent answers),
which must all be 0.

Run ``python benchmarks/fuzz.py`` (``--examples 1000`` for a longer run). The
table is printed and written to ``benchmarks/_results/fuzz.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
OUTCOMES = ("clear", "correct", "unclear", "traceback", "silent")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=400, help="examples per test")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "fuzz.jsonl"
        env = {
            **os.environ,
            "HYPOTHESIS_PROFILE": "fuzz",
            "PROXYSCOPE_FUZZ_EXAMPLES": str(args.examples),
            "PROXYSCOPE_FUZZ_LOG": str(log),
        }
        t0 = time.perf_counter()
        code = subprocess.call(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "-m",
                "fuzz",
                str(REPO / "tests"),
                *args.pytest_args,
            ],
            env=env,
            cwd=REPO,
        )
        seconds = time.perf_counter() - t0
        rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    frame = pd.DataFrame(rows, columns=["entry", "outcome"])
    table = (
        pd.crosstab(frame["entry"], frame["outcome"]).reindex(columns=OUTCOMES, fill_value=0)
        if len(frame)
        else pd.DataFrame(columns=OUTCOMES)
    )
    table.loc["all"] = table.sum()
    table.insert(0, "cases", table.sum(axis=1))
    print(table.to_string())
    print(f"pytest exit code {code}; {seconds:.0f} s; {args.examples} examples per test")
    out = REPO / "benchmarks" / "_results"
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "examples_per_test": args.examples,
        "seconds": round(seconds, 1),
        "pytest_exit_code": code,
        "table": table.reset_index().to_dict(orient="records"),
    }
    (out / "fuzz.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return code


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: proxyscope.simulate.streaming vs the seed's own generator.

Each generator runs in a fresh subprocess so that its peak resident memory
(``ru_maxrss`` of the child) is measured on its own. Wall time is the call
alone (imports excluded); peak memory includes the interpreter and imports.

Run ``python benchmarks/bench_simulate.py [--n-users N] [--n-experiments E]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Any

import numpy as np
import pandas as pd

N_USERS = 5_000_000
N_EXPERIMENTS = 50
SEED = 7


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def seed_generator(n_users: int, n_experiments: int, seed: int) -> pd.DataFrame:
    """The seed's streaming generator as the seed writes it (string segments, pandas .map)."""
    rng = np.random.default_rng(seed)
    regions = np.array(["NA", "LATAM", "EU", "IN"])
    devices = np.array(["TV", "Mobile", "Desktop"])
    tenures = np.array(["New", "Existing"])
    exp_id = rng.integers(0, n_experiments, size=n_users)
    region = rng.choice(regions, size=n_users, p=[0.35, 0.20, 0.25, 0.20])
    device = rng.choice(devices, size=n_users, p=[0.45, 0.45, 0.10])
    tenure = rng.choice(tenures, size=n_users, p=[0.30, 0.70])
    treatment = rng.integers(0, 2, size=n_users)
    region_w = pd.Series(region).map({"NA": 0.2, "LATAM": -0.1, "EU": 0.05, "IN": -0.15}).to_numpy()
    device_w = pd.Series(device).map({"TV": 0.25, "Mobile": -0.05, "Desktop": 0.0}).to_numpy()
    tenure_w = pd.Series(tenure).map({"New": -0.1, "Existing": 0.1}).to_numpy()
    exp_tau = rng.normal(0.0, 0.12, size=n_experiments)
    exp_bias = rng.normal(0.0, 0.08, size=n_experiments)
    seg_tau = (
        0.06 * (device == "TV").astype(float)
        - 0.05 * (device == "Mobile").astype(float)
        - 0.03 * (region == "IN").astype(float)
        + 0.03 * (tenure == "Existing").astype(float)
    )
    failure_cohort = (device == "Mobile") & (region == "IN") & (tenure == "New")
    user_sat = rng.normal(0.0, 1.0, size=n_users) + region_w + device_w + tenure_w
    user_eng = rng.normal(0.0, 1.0, size=n_users) + 0.5 * device_w - 0.2 * tenure_w
    base_logit = -0.3 + 0.7 * user_sat + 0.15 * user_eng + exp_bias[exp_id]
    tau_long = exp_tau[exp_id] + seg_tau
    tau_long = tau_long + -0.25 * failure_cohort.astype(float)
    long_prob = _sigmoid(base_logit + treatment * tau_long)
    long_retained = rng.binomial(1, long_prob, size=n_users)
    noise = rng.normal(0.0, 1.0, size=n_users)
    early_watch_min = (
        25
        + 10 * user_eng
        + 6 * user_sat
        + 8 * treatment * (exp_tau[exp_id] + 0.3 * seg_tau)
        + 6 * treatment * failure_cohort.astype(float)
        + 5 * noise
    )
    early_watch_min = np.clip(early_watch_min, 0, None)
    early_starts = (
        1.8
        + 0.7 * _sigmoid(user_eng)
        + 0.2 * _sigmoid(user_sat)
        + 0.4 * treatment * (exp_tau[exp_id] + 0.2 * seg_tau)
        + 0.6 * treatment * failure_cohort.astype(float)
        + 0.3 * rng.normal(0, 1, size=n_users)
    )
    early_starts = np.clip(early_starts, 0, None)
    ctr_base = _sigmoid(0.3 * user_eng - 0.35 * user_sat + 0.1 * rng.normal(0, 1, size=n_users))
    early_ctr = ctr_base + 0.06 * treatment + 0.04 * (device == "Mobile").astype(float) * treatment
    early_ctr = np.clip(early_ctr, 0, 1)
    rebuffer_rate = _sigmoid(
        -0.2 * user_sat
        + 0.25 * (region == "IN").astype(float)
        + 0.15 * (device == "Mobile").astype(float)
        + 0.1 * rng.normal(0, 1, size=n_users)
    )
    rebuffer_rate = np.clip(rebuffer_rate - 0.03 * treatment * (device == "TV").astype(float), 0, 1)
    return pd.DataFrame(
        {
            "exp_id": exp_id,
            "region": region,
            "device": device,
            "tenure": tenure,
            "treatment": treatment,
            "early_watch_min": early_watch_min,
            "early_starts": early_starts,
            "early_ctr": early_ctr,
            "rebuffer_rate": rebuffer_rate,
            "long_retained": long_retained,
            "failure_cohort": failure_cohort.astype(int),
        }
    )


def _child(which: str, n_users: int, n_experiments: int) -> dict[str, Any]:
    """Run one generator in this process; report wall time and peak RSS."""
    if which == "proxyscope":
        from proxyscope import simulate

        start = time.perf_counter()
        world = simulate.streaming(n_users=n_users, n_experiments=n_experiments, seed=SEED)
        wall = time.perf_counter() - start
        rows = len(world.users)
    else:
        start = time.perf_counter()
        frame = seed_generator(n_users, n_experiments, SEED)
        wall = time.perf_counter() - start
        rows = len(frame)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"which": which, "rows": rows, "wall_s": wall, "peak_mb": peak_kib / 1024}


def run(which: str, n_users: int = N_USERS, n_experiments: int = N_EXPERIMENTS) -> dict[str, Any]:
    """Run one generator in a fresh subprocess and return its measurements."""
    cmd = [
        sys.executable,
        __file__,
        "--child",
        which,
        "--n-users",
        str(n_users),
        "--n-experiments",
        str(n_experiments),
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(n_users: int = N_USERS, n_experiments: int = N_EXPERIMENTS) -> dict[str, Any]:
    """Time both generators (each in a fresh subprocess), print a table and the ratios.

    Returns
    -------
    dict
        ``seed`` and ``proxyscope`` (wall_s, peak_mb, rows) and ``time_ratio``,
        ``memory_ratio`` (proxyscope / seed).
    """
    seed = run("seed", n_users, n_experiments)
    ours = run("proxyscope", n_users, n_experiments)
    print(f"simulate.streaming(n_users={n_users:,}, n_experiments={n_experiments}, seed={SEED})")
    print(f"{'generator':<28}{'wall (s)':>10}{'peak RSS (MB)':>16}")
    print(f"{'seed generator (baseline)':<28}{seed['wall_s']:>10.2f}{seed['peak_mb']:>16.0f}")
    print(f"{'proxyscope.simulate':<28}{ours['wall_s']:>10.2f}{ours['peak_mb']:>16.0f}")
    ratios = {
        "time_ratio": ours["wall_s"] / seed["wall_s"],
        "memory_ratio": ours["peak_mb"] / seed["peak_mb"],
    }
    print(
        f"ratio proxyscope / seed: time {ratios['time_ratio']:.2f}, "
        f"peak memory {ratios['memory_ratio']:.2f} "
        "(proxyscope also holds both potential outcomes and the exact truth)"
    )
    return {"seed": seed, "proxyscope": ours, **ratios}


def _cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n-users", type=int, default=N_USERS)
    parser.add_argument("--n-experiments", type=int, default=N_EXPERIMENTS)
    parser.add_argument("--child", choices=["seed", "proxyscope"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, args.n_users, args.n_experiments)))
    else:
        main(args.n_users, args.n_experiments)


if __name__ == "__main__":
    _cli()

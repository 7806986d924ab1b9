"""Benchmark: stability over time against the truth, and the time-aware fit's cost.

Issue 25 points 7 and 8. For every seed two worlds are drawn with
:func:`proxyscope.simulate.from_model`, 50 experiments over 8 quarters (6-7 a
quarter), 4 segment levels, two proxies:

- drifting: proxy_1's slope falls by 12% a quarter, 0.8 -> 0.8 * 0.88^7 = 0.33
  over the history (by 59%); proxy_2's stays at 0.15;
- static: its twin, the same seed without the drift (the same draws).

On each world the default ``ProxyModel(time=True)`` is fitted (4 x (1000 +
1000), the defaults) and read by :func:`proxyscope.stability` (first quarter
against the last): per proxy P(changed) and whether the latest quarter's 90%
interval of the global slope holds the true slope ``truth.beta_path[-1]``;
whether the fit passed its diagnostics. Targets (point 7): in the drifting
world P(changed) >= 0.95 for proxy_1 in >= 9 of 10 seeds and its latest slope
interval holds the truth in >= 8 of 10; in the static world P(changed) >=
0.95 (for any proxy) in at most 1 of 10 seeds.

Why (when a count falls short): the static model is also fitted on the first
and on the last four quarters apart (``split_*``: each half's global slope, and
P(changed) from the two independent posteriors), what the data say about the
change without any walk.

Cost (point 8): the static ``ProxyModel()`` is fitted on the same cells with
the same settings; per fit the sampling time (``fit.sampler["timings"]
["sample_seconds"]``, every run of the fit including follow-ups) and the wall
time of ``fit()``, and the diagnostics (max R-hat, min bulk ESS, divergences).
Target: the time-aware fit passes (R-hat <= 1.01, bulk ESS >= 400, no
divergences) in <= 2x the static fit's time. Times depend on the machine's load:
run it alone.

Run ``python benchmarks/bench_stability.py --seeds 10`` (20-40 s a seed and
world on 2 cores: 4 fits; the 10 seeds took 10 minutes). Rows are appended to
``benchmarks/_results/stability.csv`` as each finishes (a rerun skips those
already there); the tables are printed at the end. ``--quick``: one seed at
2 x (300 + 300), to check that it runs.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import proxyscope as ps
from proxyscope._io import write_atomic
from proxyscope.analyses.stability import ALL
from proxyscope.core.draws import flat

RESULTS = Path(__file__).parent / "_results" / "stability.csv"
#: proxy_1's slope falls by this share a quarter.
DRIFT_RATE = 0.12
WORLD: dict[str, Any] = {
    "n_experiments": 50,
    "periods": 8,
    "beta": (0.8, 0.15),
    "mu": ((1.0, 0.5), (0.5, 1.0), (1.5, 0.0), (0.0, 0.8)),
    "sd_e": (1.0, 0.8),
    "sd_c": (0.3, 0.3),
}
WORLDS = ("drifting", "static")
PROBABILITY = 0.95


def _timed_fit(model: ps.ProxyModel, cells: ps.CellEffects, **kw: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # diagnostics are recorded in the rows
        fit = model.fit(cells, progress=False, **kw)
    return fit, time.perf_counter() - t0


def _cost(fit: Any, wall: float, prefix: str) -> dict[str, Any]:
    diag = fit.diagnostics()
    table = diag.table
    return {
        f"{prefix}_passed": bool(diag.passed),
        f"{prefix}_max_rhat": float(table["r_hat"].max()),
        f"{prefix}_min_ess_bulk": float(table["ess_bulk"].min()),
        f"{prefix}_divergences": int(diag.divergences),
        f"{prefix}_runs": len(fit.sampler.get("attempts", [])) or 1,
        f"{prefix}_sample_seconds": float(fit.sampler["timings"]["sample_seconds"]),
        f"{prefix}_wall_seconds": wall,
    }


def one_world(seed: int, name: str, draws: int, tune: int, chains: int) -> dict[str, Any]:
    """One row: stability against the truth and the cost of both fits."""
    drift = {0: DRIFT_RATE} if name == "drifting" else None
    cells, truth = ps.simulate.from_model(seed=seed, drift=drift, **WORLD)
    timed = cells.with_time(truth.starts, period=truth.period)
    kw = {"draws": draws, "tune": tune, "chains": chains, "random_seed": seed}
    fit, wall = _timed_fit(ps.ProxyModel(time=True), timed, **kw)
    static, static_wall = _timed_fit(ps.ProxyModel(), timed, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = ps.stability(fit, ci=0.9, probability=PROBABILITY, random_seed=seed)
    row: dict[str, Any] = {"world": name, "seed": seed, "drift_rate": DRIFT_RATE if drift else 0.0}
    changes = res.changes[res.changes["segment"] == ALL].set_index("proxy")
    latest = res.paths[
        (res.paths["segment"] == ALL) & (res.paths["period"] == fit.info.periods[-1])
    ].set_index("proxy")
    for k, proxy in enumerate(fit.proxies):
        true_latest = float(truth.beta_path[-1, k])
        row[f"p_changed_{proxy}"] = float(changes.at[proxy, "p_changed"])
        row[f"true_latest_{proxy}"] = true_latest
        row[f"latest_lower_{proxy}"] = float(latest.at[proxy, "lower"])
        row[f"latest_upper_{proxy}"] = float(latest.at[proxy, "upper"])
        row[f"latest_holds_{proxy}"] = bool(
            latest.at[proxy, "lower"] <= true_latest <= latest.at[proxy, "upper"]
        )
    row.update(split_halves(timed, truth, kw))
    row.update(_cost(fit, wall, "timed"))
    row.update(_cost(static, static_wall, "static"))
    row["sample_ratio"] = row["timed_sample_seconds"] / row["static_sample_seconds"]
    row["wall_ratio"] = row["timed_wall_seconds"] / row["static_wall_seconds"]
    return row


def split_halves(cells: ps.CellEffects, truth: Any, kw: dict[str, Any]) -> dict[str, float]:
    """How much the data say, without the walk: the static model fitted on the first
    and on the last half of the periods apart; per proxy P(slope changed) from the
    two independent posteriors (draws paired in order), and the two slopes."""
    half = len(truth.period_labels) // 2
    ids = np.asarray(cells.experiments)
    slopes = []
    for part in (truth.experiment_period < half, truth.experiment_period >= half):
        fit, _ = _timed_fit(ps.ProxyModel(), cells.subset(ids[part]), **kw)
        slopes.append(flat(fit.posterior["beta_global"]))
    delta = slopes[1] - slopes[0]
    out = {}
    for k, proxy in enumerate(fit.proxies):
        out[f"split_p_changed_{proxy}"] = float(
            max(np.mean(delta[:, k] > 0), np.mean(delta[:, k] < 0))
        )
        out[f"split_early_{proxy}"] = float(slopes[0][:, k].mean())
        out[f"split_late_{proxy}"] = float(slopes[1][:, k].mean())
    return out


def tables(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Counts per world against the targets, and the verdict lines."""
    proxies = sorted(c.removeprefix("p_changed_") for c in frame if c.startswith("p_changed_"))
    rows = []
    for name, part in frame.groupby("world", sort=False):
        row: dict[str, Any] = {"world": name, "seeds": len(part)}
        for p in proxies:
            row[f"changed_{p}"] = int((part[f"p_changed_{p}"] >= PROBABILITY).sum())
            row[f"latest_holds_{p}"] = int(part[f"latest_holds_{p}"].sum())
        changed_any = (part[[f"p_changed_{p}" for p in proxies]] >= PROBABILITY).any(axis=1)
        row["changed_any"] = int(changed_any.sum())
        for p in proxies:
            row[f"split_changed_{p}"] = int((part[f"split_p_changed_{p}"] >= PROBABILITY).sum())
        row["timed_passed"] = int(part["timed_passed"].sum())
        row["static_passed"] = int(part["static_passed"].sum())
        row["sample_ratio_median"] = float(part["sample_ratio"].median())
        row["sample_ratio_max"] = float(part["sample_ratio"].max())
        row["wall_ratio_median"] = float(part["wall_ratio"].median())
        row["wall_ratio_max"] = float(part["wall_ratio"].max())
        rows.append(row)
    counts = pd.DataFrame(rows)
    lines = []
    by = counts.set_index("world")
    first = proxies[0]
    if "drifting" in by.index:
        n = int(by.at["drifting", "seeds"])
        c = int(by.at["drifting", f"changed_{first}"])
        h = int(by.at["drifting", f"latest_holds_{first}"])
        lines.append(
            f"drifting world: P(changed) >= {PROBABILITY} for {first} in {c} of {n} seeds "
            f"(target >= 9 of 10): {'MET' if c >= 0.9 * n else 'MISSED'}; latest slope "
            f"interval holds the truth in {h} of {n} (target >= 8 of 10): "
            f"{'MET' if h >= 0.8 * n else 'MISSED'}"
        )
    if "static" in by.index:
        n, c = int(by.at["static", "seeds"]), int(by.at["static", "changed_any"])
        lines.append(
            f"static world: P(changed) >= {PROBABILITY} (any proxy) in {c} of {n} seeds "
            f"(target <= 1 of 10): {'MET' if c <= 0.1 * n else 'MISSED'}"
        )
    ok = frame["timed_passed"] & (frame["sample_ratio"] <= 2.0)
    lines.append(
        f"cost: the time-aware fit passed its diagnostics within 2x the static fit's sampling "
        f"time in {int(ok.sum())} of {len(frame)} fits (median ratio "
        f"{frame['sample_ratio'].median():.2f}, wall {frame['wall_ratio'].median():.2f})"
    )
    return counts, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="1 seed at 2 x (300 + 300)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.draws, args.tune, args.chains = 1, 300, 300, 2
        args.out = args.out.with_name("stability_quick.csv")
    done = pd.read_csv(args.out) if args.out.exists() else pd.DataFrame()
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for name in WORLDS:
            if len(done) and ((done["seed"] == seed) & (done["world"] == name)).any():
                continue
            row = one_world(seed, name, args.draws, args.tune, args.chains)
            print(
                f"seed {seed:3d} {name:8s}: P(changed) "
                + ", ".join(f"{k[10:]}={v:.3f}" for k, v in row.items() if k.startswith("p_chan"))
                + f"; latest holds {row['latest_holds_proxy_1']}; passed {row['timed_passed']}"
                f"/{row['static_passed']}; sample {row['timed_sample_seconds']:.1f} s vs "
                f"{row['static_sample_seconds']:.1f} s (x{row['sample_ratio']:.2f})",
                flush=True,
            )
            done = pd.concat([done, pd.DataFrame([row])], ignore_index=True)
            write_atomic(args.out, lambda path, frame=done: frame.to_csv(path, index=False))
    frame = done[done["seed"].between(args.first_seed, args.first_seed + args.seeds - 1)]
    cols = [
        "world",
        "seed",
        *[c for c in frame if c.startswith(("p_changed_", "latest_holds_", "split_"))],
        "timed_passed",
        "timed_max_rhat",
        "timed_min_ess_bulk",
        "timed_divergences",
        "timed_runs",
        "timed_sample_seconds",
        "timed_wall_seconds",
        "static_passed",
        "static_max_rhat",
        "static_min_ess_bulk",
        "static_divergences",
        "static_runs",
        "static_sample_seconds",
        "static_wall_seconds",
        "sample_ratio",
        "wall_ratio",
    ]
    counts, lines = tables(frame)
    with pd.option_context("display.width", 250, "display.max_columns", 40):
        print("\nPer seed:")
        print(frame[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        print("\nCounts against the targets:")
        print(counts.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()

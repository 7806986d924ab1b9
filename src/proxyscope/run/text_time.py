"""The pieces of a run's text and ``run.md`` about time (DESIGN.md §9): which period
the analyses describe, what :func:`proxyscope.stability` found, and the rolling
backtest's scores."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from proxyscope._format import interval, num, pct

if TYPE_CHECKING:
    from proxyscope.analyses.backtest.rolling_result import RollingBacktest
    from proxyscope.analyses.stability import Stability
    from proxyscope.run.result import RunResult


def period_line(result: RunResult) -> str | None:
    """ "Over time: 4 periods (2024-Q1 to 2024-Q4); the analyses describe 2024-Q4 (the
    latest)."; None for a static model."""
    periods = list(result.fit.info.periods)
    if not periods or result.period is None:
        return None
    which = "the latest" if result.period == periods[-1] else "chosen by [analysis].period"
    return (
        f"Over time: {len(periods)} periods ({periods[0]} to {periods[-1]}); the analyses "
        f"describe {result.period} ({which})."
    )


def signed_percent(x: float) -> str:
    """A relative change as a signed percentage: -0.4 -> "-40%"."""
    return f"{100 * float(x):+.0f}%"


def _relative(row: pd.Series) -> str:
    """The relative change with its interval; n/a where the starting slope's interval
    holds 0 (the ratio is then undefined)."""
    if pd.isna(row["relative"]):
        return "n/a"
    return interval(row["relative"], row["relative_lower"], row["relative_upper"], signed_percent)


def change_rows(result: Stability) -> pd.DataFrame:
    """The stability's changes, one row per proxy, segment and pair of periods: the
    change of the slope and its relative size with their intervals, P(changed)."""
    c = result.changes
    return pd.DataFrame(
        {
            "proxy": c["proxy"],
            "segment": c["segment"],
            "periods": [
                f"{a} -> {b}" for a, b in zip(c["from_period"], c["to_period"], strict=True)
            ],
            "change": [
                interval(m, lo, hi)
                for m, lo, hi in zip(c["change"], c["change_lower"], c["change_upper"], strict=True)
            ],
            "relative": [_relative(r) for _, r in c.iterrows()],
            "p_changed": [num(v, 2) for v in c["p_changed"]],
            "direction": c["direction"],
        }
    )


def path_rows(result: Stability) -> pd.DataFrame:
    """The global slope per period (segment paths are in the CSV and run.json)."""
    p = result.paths
    top = p[p["segment"] == p["segment"].iloc[0]]
    return pd.DataFrame(
        {
            "proxy": top["proxy"],
            "period": [
                f"{name} (forecast)" if ahead else str(name)
                for name, ahead in zip(top["period"], top["forecast"], strict=True)
            ],
            "slope": [
                interval(m, lo, hi)
                for m, lo, hi in zip(top["mean"], top["lower"], top["upper"], strict=True)
            ],
        }
    )


def stability_title(result: Stability) -> str:
    """The heading of the stability part, with its interval level."""
    return (
        f"Stability over time ({pct(result.ci)} intervals; a change is clear from "
        f"P(changed) = {result.probability:g})"
    )


ROLLING_TITLE = "Rolling backtest (fitted up to each origin, judged on later experiments)"


def rolling_rows(result: RollingBacktest) -> pd.DataFrame:
    """The rolling backtest's scores per model and method over every origin."""
    s = result.score("model")
    cols = [c for c in ("model", "method", "decision_accuracy", "rmse", "coverage", "n") if c in s]
    return s[cols]

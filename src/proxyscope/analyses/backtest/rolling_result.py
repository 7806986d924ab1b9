"""The result of a rolling-origin backtest: its scores, a summary over origins and a verdict."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from proxyscope.analyses.backtest.score import decision_accuracy, rmse
from proxyscope.errors import ParameterError

if TYPE_CHECKING:
    from proxyscope.model.fit import ProxyFit

#: The two models of a rolling backtest, in the order of its tables.
MODELS: tuple[str, ...] = ("drifting", "static")
#: The methods scored, in the order of its tables (``posterior_predictive`` has an interval).
ROLLING_METHODS: tuple[str, ...] = ("posterior_predictive", "adaptive")
#: Columns a rolling backtest's scores may be grouped by.
GROUPS: tuple[str, ...] = ("origin", "model", "horizon")


def score_table(predictions: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Scores of every method per group of ``predictions`` (grouped by ``by``).

    Per group and method: ``decision_accuracy`` (share of rows where the
    prediction and the reference are both positive or both not), ``n_correct``,
    ``rmse`` against the reference, ``n`` (rows), and for
    ``posterior_predictive`` ``coverage`` (share of references inside
    [lower, upper]) and ``interval_width`` (mean upper - lower); NaN for the others.
    """
    rows = []
    for key, part in predictions.groupby(list(by), sort=False):
        keys = key if isinstance(key, tuple) else (key,)
        ref = part["reference"].to_numpy(dtype=float)
        for method in ROLLING_METHODS:
            pred = part[method].to_numpy(dtype=float)
            row: dict[str, Any] = dict(zip(by, keys, strict=True))
            row["method"] = method
            row["decision_accuracy"] = decision_accuracy(pred, ref)
            row["n_correct"] = int(np.sum((pred > 0) == (ref > 0)))
            row["rmse"] = rmse(pred, ref)
            row["coverage"] = row["interval_width"] = np.nan
            if method == "posterior_predictive":
                lo, hi = part["lower"].to_numpy(), part["upper"].to_numpy()
                row["coverage"] = float(np.mean((lo <= ref) & (ref <= hi)))
                row["interval_width"] = float(np.mean(hi - lo))
            row["n"] = len(part)
            rows.append(row)
    return pd.DataFrame(rows)


@dataclasses.dataclass
class RollingBacktest:
    """What :func:`~proxyscope.analyses.backtest.rolling.rolling_backtest` found.

    Attributes
    ----------
    table : DataFrame
        One row per origin, model and method: ``origin``, ``model``,
        ``method``, ``decision_accuracy``, ``n_correct``, ``rmse``,
        ``coverage`` and ``interval_width`` (``posterior_predictive`` only), ``n``.
    predictions : DataFrame
        One row per origin, model and judged experiment: ``origin``,
        ``model``, ``experiment``, ``period``, ``horizon`` (periods after the
        training's latest), ``observed``, ``truth`` (NaN without truth),
        ``reference`` (the value scored against), ``adaptive``,
        ``posterior_predictive`` and its interval ``lower``, ``upper``.
    origins : tuple of str
    reference : str
        "truth" or "observed".
    ci : float
        Level of the intervals.
    trustworthy : dict
        (origin, model) -> whether that fit passed its diagnostics.
    fits : dict
        (origin, model) -> the ProxyFit.
    """

    table: pd.DataFrame
    predictions: pd.DataFrame
    origins: tuple[str, ...]
    reference: str
    ci: float
    trustworthy: dict[tuple[str, str], bool]
    fits: dict[tuple[str, str], ProxyFit] = dataclasses.field(repr=False, default_factory=dict)

    def score(self, by: Sequence[str] | str = "model") -> pd.DataFrame:
        """Scores pooled over the predictions, grouped by some of ("origin", "model",
        "horizon") (default: per model, over every origin)."""
        groups = [by] if isinstance(by, str) else list(by)
        bad = [g for g in groups if g not in GROUPS]
        if bad or not groups:
            raise ParameterError(
                f"The 'by' parameter of RollingBacktest.score must name some of {list(GROUPS)}; "
                f"got {by!r}."
            )
        return score_table(self.predictions, groups)

    def summary(self) -> pd.DataFrame:
        """Scores per model and method over every origin's judged experiments (each
        prediction counts once), with the one-line verdict in ``.attrs["text"]``."""
        out = self.score("model")
        out.attrs["text"] = self.verdict()
        return out

    def verdict(self) -> str:
        """One line: the drifting model against the static one on future experiments."""
        rows = self.score("model").to_dict(orient="records")
        got = {(str(r["model"]), str(r["method"])): r for r in rows}

        def value(model: str, method: str, col: str) -> float:
            return float(got[(model, method)][col])

        def pair(method: str, col: str, fmt: str) -> str:
            a, b = (value(m, method, col) for m in MODELS)
            return f"{a:{fmt}} vs {b:{fmt}}"

        pp = "posterior_predictive"
        n = int(value(MODELS[0], pp, "n"))
        diff = value("drifting", pp, "decision_accuracy") - value("static", pp, "decision_accuracy")
        first, last = self.origins[0], self.origins[-1]
        span = first if first == last else f"{first}..{last}"
        flag = "" if all(self.trustworthy.values()) else " (some fits FAILED diagnostics)"
        return (
            f"Fitted up to {len(self.origins)} origin(s) ({span}) and judged on {n} later "
            f"experiment(s) against the {'true' if self.reference == 'truth' else 'observed'} "
            "long-term effect, drifting vs static: decision accuracy "
            f"{pair(pp, 'decision_accuracy', '.3f')} (difference {diff:+.3f}; adaptive weights "
            f"{pair('adaptive', 'decision_accuracy', '.3f')}), RMSE {pair(pp, 'rmse', '.3g')}, "
            f"{self.ci:.0%} interval coverage {pair(pp, 'coverage', '.3f')}{flag}."
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain types for JSON: the settings, the per-origin table, the summary and verdict."""

        def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
            out = frame.astype(object).where(frame.notna(), None)
            return [{str(k): v for k, v in r.items()} for r in out.to_dict(orient="records")]

        return {
            "origins": list(self.origins),
            "reference": self.reference,
            "ci": self.ci,
            "table": records(self.table),
            "summary": records(self.score("model")),
            "trustworthy": [
                {"origin": o, "model": m, "trustworthy": ok}
                for (o, m), ok in self.trustworthy.items()
            ],
            "verdict": self.verdict(),
        }

    def __repr__(self) -> str:
        cols = ["model", "method", "decision_accuracy", "rmse", "coverage", "n"]
        body = self.score("model")[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}")
        return f"<proxyscope.RollingBacktest>\n{body}\n  {self.verdict()}"

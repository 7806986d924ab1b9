"""The result of a backtest: its tables, a re-scoring and the one-line verdict."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from proxyscope.analyses.backtest.score import _score_table
from proxyscope.errors import ParameterError, check_one_of


@dataclasses.dataclass
class BacktestResult:
    """Scores of every weighting on the held-out experiments.

    Attributes
    ----------
    table : DataFrame
        One row per method: ``method``, ``decision_accuracy``, ``n_correct``,
        ``rmse``, ``n_heldout``, ``reference`` ("truth" or "observed") and
        ``weight_<proxy>`` (the weights used, averaged over folds; NaN for the
        model's own predictions, which have coefficients, not weights).
    predictions : DataFrame
        One row per held-out experiment: ``experiment``, ``fold``,
        ``observed`` (its observed mix-level long-term effect), ``truth``
        (NaN without truth), ``reference`` (the value scored against) and one
        column per method with its predicted long-term effect.
    weights : DataFrame
        Long format: ``fold``, ``method``, ``proxy``, ``weight``, ``sign``.
    folds : list of (train_ids, heldout_ids)
    reference : str
        "truth" or "observed".
    trustworthy : list of bool
        Per fold, whether the fold's fit passed its diagnostics.
    readings : str
        What the fixed weightings read: "raw" or "denoised" (``adaptive``
        always reads the denoised readings).
    """

    table: pd.DataFrame
    predictions: pd.DataFrame
    weights: pd.DataFrame
    folds: list[tuple[np.ndarray, np.ndarray]]
    reference: str
    trustworthy: list[bool]
    proxies: tuple[str, ...]
    readings: str = "raw"

    def score(self, against: str = "reference") -> pd.DataFrame:
        """The table scored against ``"reference"``, ``"truth"`` or ``"observed"``."""
        check_one_of(
            against,
            ("reference", "truth", "observed"),
            param="against",
            owner="BacktestResult.score",
        )
        if against == "truth" and self.reference != "truth":
            raise ParameterError(
                "BacktestResult.score: against='truth' needs the backtest to have been given "
                "truth; it was scored against observed long-term effects."
            )
        return _score_table(self.predictions, against, self.weights, self.proxies)

    def summary(self) -> pd.DataFrame:
        """The table (method, decision accuracy, RMSE, weights) with a one-line verdict."""
        out = self.table.copy()
        out.attrs["text"] = self._sentence()
        return out

    def _sentence(self) -> str:
        acc = dict(
            zip(self.table["method"], self.table["decision_accuracy"].astype(float), strict=True)
        )
        n = int(self.table["n_heldout"].iloc[0])
        best = max(acc, key=lambda m: acc[m])
        cmp = ", ".join(
            f"{m} {acc[m]:.3f}" for m in ("adaptive", "equal", "random_forest") if m in acc
        )
        return (
            f"On {n} held-out experiments ({len(self.folds)} fold(s)), scored against the "
            f"{'true' if self.reference == 'truth' else 'observed'} long-term effect, the "
            f"highest decision accuracy is {best} ({acc[best]:.3f}); {cmp} (adaptive reads "
            f"the denoised readings, the fixed weightings the {self.readings} ones)."
        )

    def __repr__(self) -> str:
        shown = self.table[["method", "decision_accuracy", "n_correct", "rmse"]].copy()
        weights = self.table[[f"weight_{p}" for p in self.proxies]].round(3)
        weights.columns = list(self.proxies)
        body = pd.concat([shown, weights], axis=1).to_string(
            index=False, float_format=lambda v: f"{v:.4g}"
        )
        flag = "" if all(self.trustworthy) else "\n  WARNING: some fold fits FAILED diagnostics."
        return f"<proxyscope.BacktestResult>\n{body}\n  {self._sentence()}{flag}"

"""Scores of the predictions: decision accuracy, RMSE and the per-method table."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from proxyscope.analyses.backtest.predict import METHODS
from proxyscope.errors import ParameterError


def decision_accuracy(prediction: np.ndarray, reference: np.ndarray) -> float:
    """Share of rows where the prediction and the reference agree on "positive or not"."""
    p = np.asarray(prediction, dtype=float)
    r = np.asarray(reference, dtype=float)
    if p.shape != r.shape or p.size == 0:
        raise ParameterError(
            f"decision_accuracy needs two equally long non-empty arrays; got {p.shape} and "
            f"{r.shape}."
        )
    return float(np.mean((p > 0) == (r > 0)))


def rmse(prediction: np.ndarray, reference: np.ndarray) -> float:
    """Root mean squared error."""
    p = np.asarray(prediction, dtype=float)
    r = np.asarray(reference, dtype=float)
    return float(np.sqrt(np.mean((p - r) ** 2)))


def _score_table(
    predictions: pd.DataFrame, against: str, weights: pd.DataFrame, proxies: tuple[str, ...]
) -> pd.DataFrame:
    ref = predictions[against].to_numpy(dtype=float)
    reference = (
        str(predictions.attrs.get("reference", against)) if against == "reference" else against
    )
    mean_w = (
        weights.groupby(["method", "proxy"], sort=False)["weight"].mean().unstack("proxy")
        if len(weights)
        else pd.DataFrame()
    )
    rows = []
    for method in METHODS:
        pred = predictions[method].to_numpy(dtype=float)
        row: dict[str, Any] = {
            "method": method,
            "decision_accuracy": decision_accuracy(pred, ref),
            "n_correct": int(np.sum((pred > 0) == (ref > 0))),
            "rmse": rmse(pred, ref),
            "n_heldout": len(ref),
            "reference": reference,
        }
        for p in proxies:
            has = method in mean_w.index and p in mean_w.columns
            row[f"weight_{p}"] = float(mean_w.at[method, p]) if has else np.nan  # type: ignore[arg-type]
        rows.append(row)
    return pd.DataFrame(rows)

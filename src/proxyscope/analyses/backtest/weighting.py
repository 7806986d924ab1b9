"""The fixed weightings and the common calibration of a weighted score.

Standardization of the proxy readings, the composite score sum_k w_k s_k z_k,
the equal, single-best and random-forest weights, and the OLS line that maps
any score to the long-term scale.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from proxyscope.errors import ParameterError


@dataclasses.dataclass(frozen=True)
class Standardizer:
    """Centre and scale of each proxy over the training experiments."""

    mean: np.ndarray
    sd: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray) -> Standardizer:
        x = np.asarray(x, dtype=float)
        sd = x.std(axis=0, ddof=1) if len(x) > 1 else np.zeros(x.shape[1])
        return cls(mean=x.mean(axis=0), sd=sd)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        # A proxy that did not vary in training carries no information: score 0.
        z = np.zeros_like(np.asarray(x, dtype=float))
        ok = self.sd > 0
        z[:, ok] = (x[:, ok] - self.mean[ok]) / self.sd[ok]
        return z


def composite_score(z: np.ndarray, weights: np.ndarray, signs: np.ndarray | None = None) -> Any:
    """sum_k w_k s_k z_k for standardized proxies z (E, K)."""
    w = np.asarray(weights, dtype=float)
    s = np.ones_like(w) if signs is None else np.asarray(signs, dtype=float)
    return np.asarray(z, dtype=float) @ (w * s)


def equal_weights(n_proxies: int) -> np.ndarray:
    """1/K for each of K proxies."""
    if n_proxies < 1:
        raise ParameterError(f"equal_weights needs at least one proxy; got {n_proxies}.")
    return np.full(n_proxies, 1.0 / n_proxies)


def random_forest_weights(
    x: np.ndarray,
    y: np.ndarray,
    n_estimators: int = 500,
    random_state: int | None = 0,
) -> np.ndarray:
    """The seed's weights: random-forest feature importances normalized to sum to one.

    A ``RandomForestRegressor`` of ``y`` (long-term effect) on the columns of
    ``x`` (proxy effects); when the forest finds no split at all (every
    importance zero) the weights fall back to equal.
    """
    from sklearn.ensemble import RandomForestRegressor

    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    forest = RandomForestRegressor(n_estimators=n_estimators, random_state=random_state, n_jobs=1)
    forest.fit(x, y)
    imp = np.asarray(forest.feature_importances_, dtype=float)
    total = imp.sum()
    if not np.isfinite(total) or total <= 0:
        return equal_weights(x.shape[1])
    return imp / total


def best_single_proxy(x: np.ndarray, y: np.ndarray) -> int:
    """Index of the column of ``x`` with the largest |correlation| with ``y`` (first on ties)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    xc = x - x.mean(axis=0)
    yc = y - y.mean()
    denom = np.sqrt((xc**2).sum(axis=0) * (yc**2).sum())
    corr = np.divide(xc.T @ yc, denom, out=np.zeros(x.shape[1]), where=denom > 0)
    return int(np.argmax(np.abs(corr)))


@dataclasses.dataclass(frozen=True)
class Calibration:
    """The OLS line y = intercept + slope * score fitted on training experiments."""

    intercept: float
    slope: float

    @classmethod
    def of(cls, score: np.ndarray, y: np.ndarray) -> Calibration:
        s = np.asarray(score, dtype=float)
        y = np.asarray(y, dtype=float)
        var = float(((s - s.mean()) ** 2).sum())
        if var <= 0:
            return cls(intercept=float(y.mean()), slope=0.0)
        slope = float(((s - s.mean()) * (y - y.mean())).sum() / var)
        return cls(intercept=float(y.mean() - slope * s.mean()), slope=slope)

    def __call__(self, score: np.ndarray) -> np.ndarray:
        return self.intercept + self.slope * np.asarray(score, dtype=float)

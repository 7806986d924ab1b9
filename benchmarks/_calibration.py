"""Calibration scores of estimated cell effects against exact truth, for the design benchmarks.

Per metric: coverage of the 90% interval ``effect +- 1.645 se``, the mean z², the
mean square of each component of the errors whitened by the cell's own covariance
(Cholesky: component j given the ones before it, so it checks the cross-metric
blocks), and the same whitened with each cell's SEs and the correlations averaged
over the cells (which separates noise in a cell's estimated correlations from a
biased cross-metric block).
"""

from __future__ import annotations

import numpy as np

#: The 95% quantile of the standard normal: a 90% two-sided interval.
Z90 = 1.6448536269514722


def whiten(cov: np.ndarray, err: np.ndarray) -> np.ndarray:
    """L^-1 err per cell, S = L L' (Cholesky: component j given the ones before it)."""
    return np.linalg.solve(np.linalg.cholesky(cov), err[..., None])[..., 0]


def scores(d: np.ndarray, cov: np.ndarray, t: np.ndarray, metrics: list[str]) -> list[dict]:
    """One row per metric: cells, coverage_90, mean_z2, whitened_chi2, whitened_pooled."""
    se = np.sqrt(np.einsum("cii->ci", cov))
    held = np.abs(d - t) <= Z90 * se
    white = whiten(cov, d - t)
    corr = cov / (se[:, :, None] * se[:, None, :])
    pooled = whiten(corr.mean(axis=0)[None] * se[:, :, None] * se[:, None, :], d - t)
    return [
        {
            "metric": m,
            "cells": len(d),
            "coverage_90": float(held[:, j].mean()),
            "mean_z2": float(np.mean(((d - t)[:, j] / se[:, j]) ** 2)),
            "whitened_chi2": float(np.mean(white[:, j] ** 2)),
            "whitened_pooled": float(np.mean(pooled[:, j] ** 2)),
        }
        for j, m in enumerate(metrics)
    ]

"""In-sample truth of a simulated world: exact mean effects from both potential outcomes.

Each user's effect is ``Y(1) - Y(0)`` for the proxies (negated for a
lower-is-better proxy, so every effect is read in its good direction) and
``p_long_1 - p_long_0`` for long_retained (the probability scale, not the
realized Bernoulli). Means over users are computed per (experiment, cell) with
``np.bincount`` plus one correction pass (the mean of the residuals), which
makes them accurate to a few ulps; coarser means are user-weighted sums of the
cell means.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from proxyscope import dims
from proxyscope.simulate import scenario as sc


def user_effects(potential_outcomes: pd.DataFrame, metric: str) -> np.ndarray:
    """Each user's true effect of ``metric`` in its good direction."""
    if metric == sc.OUTCOME:
        return np.asarray(
            potential_outcomes["p_long_1"].to_numpy() - potential_outcomes["p_long_0"].to_numpy()
        )
    diff = np.asarray(
        potential_outcomes[f"{metric}_1"].to_numpy() - potential_outcomes[f"{metric}_0"].to_numpy()
    )
    if metric in sc.LOWER_IS_BETTER:
        np.negative(diff, out=diff)
    return diff


def _group_mean(index: np.ndarray, values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Mean of ``values`` per group (NaN for empty groups), with a residual correction pass."""
    size = counts.size
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(index, weights=values, minlength=size) / counts
        resid = values - np.nan_to_num(mean)[index]
        mean += np.bincount(index, weights=resid, minlength=size) / counts
    return mean


def _weighted(cell_mean: np.ndarray, counts: np.ndarray, axis: int | tuple[int, ...]) -> np.ndarray:
    """User-weighted mean of cell means over ``axis`` (NaN where no users)."""
    total = np.nansum(cell_mean * counts[..., None], axis=axis)
    n = counts.sum(axis=axis)[..., None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / np.where(n > 0, n, 1), np.nan)


def _same_sign_share(long: np.ndarray, proxy: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Share over valid experiments where sign(long) == sign(proxy), per proxy."""
    same = np.sign(long[:, None]) == np.sign(proxy)
    n = valid.sum()
    return np.where(n > 0, (same & valid[:, None]).sum(axis=0) / max(n, 1), np.nan)


def sample_truth(
    potential_outcomes: pd.DataFrame,
    experiment: np.ndarray,
    cell: np.ndarray,
    treatment: np.ndarray,
    n_experiments: int,
) -> xr.Dataset:
    """Exact in-sample truth per cell, experiment, segment and overall.

    Parameters
    ----------
    potential_outcomes : pandas.DataFrame
        ``<metric>_0``, ``<metric>_1`` and ``p_long_0``, ``p_long_1`` per user.
    experiment, cell, treatment : numpy.ndarray
        Per user: experiment number, segment cell (0–23, region-major), arm.
    n_experiments : int
        Number of experiments (some may have no users).

    Returns
    -------
    xarray.Dataset
        See :class:`proxyscope.simulate.World` for the variables.
    """
    n_cells = n_experiments * sc.N_CELLS
    index = experiment * sc.N_CELLS
    index += cell
    counts = np.bincount(index, minlength=n_cells).astype(np.int64)
    treated = np.bincount(index, weights=treatment, minlength=n_cells).astype(np.int64)
    fcounts = counts.astype(float)
    cell_mean = np.empty((n_cells, len(sc.METRICS)))
    for j, metric in enumerate(sc.METRICS):
        cell_mean[:, j] = _group_mean(index, user_effects(potential_outcomes, metric), fcounts)
    del index

    grid = (n_experiments, *sc.SHAPE)
    cell_mean = cell_mean.reshape(*grid, len(sc.METRICS))
    counts = counts.reshape(grid)
    treated = treated.reshape(grid)
    exp_mean = _weighted(cell_mean, counts, axis=(1, 2, 3))
    seg_mean = _weighted(cell_mean, counts, axis=0)
    overall = _weighted(cell_mean.reshape(-1, len(sc.METRICS)), counts.reshape(-1), axis=0)

    # Flip: the cell's true long-term and proxy effects have opposite signs
    # (product < 0; an exactly-zero effect is not a flip).
    nonempty = counts > 0
    with np.errstate(invalid="ignore"):
        flips = (cell_mean[..., :1] * cell_mean[..., 1:]) < 0
    n_nonempty = nonempty.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        flip_rate = np.where(
            n_nonempty[..., None] > 0,
            (flips & nonempty[..., None]).sum(axis=0) / np.maximum(n_nonempty, 1)[..., None],
            np.nan,
        )
    has_users = counts.sum(axis=(1, 2, 3)) > 0
    accuracy = _same_sign_share(exp_mean[:, 0], exp_mean[:, 1:], has_users)

    seg_coords = {col: list(sc.LEVELS[col]) for col in sc.SEGMENT_COLUMNS}
    coords = {
        dims.EXPERIMENT: np.arange(n_experiments),
        **seg_coords,
        dims.METRIC: list(sc.METRICS),
        dims.PROXY: list(sc.PROXIES),
    }
    cell_dims = (dims.EXPERIMENT, *sc.SEGMENT_COLUMNS)
    return xr.Dataset(
        {
            "cell_effect": ((*cell_dims, dims.METRIC), cell_mean),
            "cell_users": (cell_dims, counts),
            "cell_treated": (cell_dims, treated),
            "experiment_effect": ((dims.EXPERIMENT, dims.METRIC), exp_mean),
            "experiment_users": (dims.EXPERIMENT, counts.sum(axis=(1, 2, 3))),
            "segment_effect": ((*sc.SEGMENT_COLUMNS, dims.METRIC), seg_mean),
            "segment_users": (sc.SEGMENT_COLUMNS, counts.sum(axis=0)),
            "overall_effect": (dims.METRIC, overall),
            "flip_rate": ((*sc.SEGMENT_COLUMNS, dims.PROXY), flip_rate),
            "flip_experiments": (sc.SEGMENT_COLUMNS, n_nonempty),
            "decision_accuracy": (dims.PROXY, accuracy),
        },
        coords=coords,
    )

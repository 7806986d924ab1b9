"""In-sample truth of a simulated world: exact mean effects from both potential outcomes.

Each user's effect is ``Y(1) - Y(0)`` for the proxies (negated for a
lower-is-better proxy, so every effect is read in its good direction) and
``p_long_1 - p_long_0`` for long_retained (the probability scale, not the
realized Bernoulli). Means over users are computed per (experiment, cell) with
``np.bincount`` plus one correction pass (the mean of the residuals), which
makes them accurate to a few ulps; coarser means are user-weighted sums of the
cell means.

:func:`world_truth` assembles a streaming world's truth: this in-sample truth,
the population truth of :mod:`proxyscope.simulate.population` and, with
periods, the time truth of :mod:`proxyscope.simulate.model_time`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import xarray as xr

from proxyscope import dims
from proxyscope.simulate import model_time as mt
from proxyscope.simulate import population
from proxyscope.simulate import scenario as sc
from proxyscope.simulate.config import StreamingConfig

if TYPE_CHECKING:
    from proxyscope.simulate.generate import Draws


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


_CONVENTIONS = (
    "Effects are treatment minus control means of both potential outcomes of the same users; "
    "proxies in their good direction (rebuffer_rate negated); long_retained on the probability "
    "scale (p_long_1 - p_long_0). A flip is a product of true long-term and proxy effects < 0 "
    "(an exactly-zero effect is not a flip); decision accuracy is the share of experiments "
    "where sign(long-term) == sign(proxy). pop_* variables are for a new experiment with "
    "exp_tau and exp_bias drawn afresh on infinitely many users of the world's mix."
)
_TIME_CONVENTIONS = (
    " With periods, pop_* are for a new experiment of the latest period (whose watch-only "
    "push has sd watch_gamma); pop_slope and pop_mix_slope hold every period's."
)


DESCRIPTIONS = {
    "cell_effect": "mean over the cell's users of Y(1) - Y(0) (NaN if the cell is empty)",
    "cell_users": "users in the (experiment, segment cell)",
    "cell_treated": "treated users in the (experiment, segment cell)",
    "experiment_effect": "mean over the experiment's users of Y(1) - Y(0)",
    "experiment_users": "users in the experiment",
    "segment_effect": "mean over the segment cell's users (all experiments) of Y(1) - Y(0)",
    "segment_users": "users in the segment cell (all experiments)",
    "overall_effect": "mean over all users of Y(1) - Y(0)",
    "flip_rate": "share of experiments (cell non-empty) whose cell long-term and proxy "
    "effects have opposite signs (product < 0)",
    "flip_experiments": "experiments in which the cell has users (denominator of flip_rate)",
    "decision_accuracy": "share of experiments whose long-term and proxy effects have the "
    "same sign",
    "exp_tau": "the experiment's long-term tendency (logit scale)",
    "exp_bias": "the experiment's baseline shift (logit scale)",
}


def world_truth(config: StreamingConfig, draws: Draws) -> tuple[xr.Dataset, pd.DataFrame]:
    """The truth of a streaming world drawn from ``config`` and its per-experiment table
    (see :class:`proxyscope.simulate.World`)."""
    truth = sample_truth(
        draws.potential_outcomes,
        draws.experiment,
        draws.cell,
        draws.users["treatment"].to_numpy(),
        config.n_experiments,
    )
    truth["exp_tau"] = (dims.EXPERIMENT, draws.exp_tau)
    truth["exp_bias"] = (dims.EXPERIMENT, draws.exp_bias)
    pop = population.population_truth(population.Mechanism.of(config), config.mix)
    truth = truth.merge(pop)
    columns: dict[str, object] = {"exp_tau": draws.exp_tau, "exp_bias": draws.exp_bias}
    conventions = _CONVENTIONS
    if draws.timeline is not None and draws.watch_push is not None:
        truth = truth.merge(mt.time_truth(config, draws.timeline, draws.watch_push, config.mix))
        conventions += _TIME_CONVENTIONS
        columns.update(
            start_date=draws.timeline.starts.to_numpy(),
            period=draws.timeline.experiment_labels.astype(str),
            watch_push=draws.watch_push,
        )
    for name, text in DESCRIPTIONS.items():
        truth[name].attrs["description"] = text
    truth.attrs["conventions"] = conventions
    truth.attrs["outcome"] = sc.OUTCOME
    truth.attrs["lower_is_better"] = ",".join(sorted(sc.LOWER_IS_BETTER))
    experiments = pd.DataFrame(
        columns, index=pd.RangeIndex(config.n_experiments, name=dims.EXPERIMENT)
    )
    return truth, experiments

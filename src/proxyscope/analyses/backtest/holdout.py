"""The held-out experiments: how they are chosen and what they are scored against.

The train / held-out splits by experiment (:func:`split_experiments`), held-out
ids a caller names (checked against the known experiments), and the true
long-term effect of each held-out experiment taken from ``truth``.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from proxyscope import dims
from proxyscope._format import plain
from proxyscope.errors import ColumnError, DataTypeError, ParameterError

DEFAULT_HOLDOUT = 0.3
#: Fewest training experiments a split may leave (calibration line + forest).
MIN_TRAIN = 3


def split_experiments(
    experiments: Sequence[Any] | np.ndarray,
    holdout: Any = DEFAULT_HOLDOUT,
    random_state: int | None = 0,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Train / held-out splits by experiment.

    Parameters
    ----------
    experiments : sequence
        Distinct experiment ids.
    holdout : float, int or sequence of ids
        A fraction in (0, 1): one random split holding out that share of the
        experiments (rounded, at least one). An integer >= 2: K folds, every
        experiment held out exactly once. A sequence of experiment ids: one
        split holding out exactly those.
    random_state : int, optional
        Seed of the shuffle.

    Returns
    -------
    list of (train_ids, heldout_ids)
        No experiment is ever on both sides of a split.
    """
    ids = np.asarray(pd.unique(pd.Series(list(experiments))))
    n = len(ids)
    rng = np.random.default_rng(random_state)
    if isinstance(holdout, bool):
        raise ParameterError(
            "The 'holdout' parameter of backtest must be a fraction in (0, 1), an integer "
            f"number of folds >= 2, or a sequence of experiment ids. Got {holdout!r} instead."
        )
    if isinstance(holdout, numbers.Integral):
        k = int(holdout)
        if k < 2 or k > n:
            raise ParameterError(
                f"The 'holdout' parameter of backtest, as a number of folds, must be between 2 "
                f"and the number of experiments ({n}). Got {k} instead."
            )
        order = rng.permutation(n)
        folds = np.array_split(order, k)
        splits = [(np.delete(ids, f), ids[np.sort(f)]) for f in folds]
    elif isinstance(holdout, numbers.Real):
        frac = float(holdout)
        if not 0.0 < frac < 1.0:
            raise ParameterError(
                "The 'holdout' parameter of backtest, as a fraction of experiments, must be in "
                f"(0, 1). Got {holdout!r} instead."
            )
        n_out = min(max(1, round(frac * n)), n - 1)
        chosen = np.sort(rng.permutation(n)[:n_out])
        splits = [(np.delete(ids, chosen), ids[chosen])]
    elif isinstance(holdout, (Sequence, np.ndarray, pd.Index, pd.Series)) and not isinstance(
        holdout, (str, bytes)
    ):
        out = {str(h) for h in _explicit_ids(ids, holdout)}
        mask = np.array([str(i) in out for i in ids])
        splits = [(ids[~mask], ids[mask])]
    else:
        raise ParameterError(
            "The 'holdout' parameter of backtest must be a fraction in (0, 1), an integer "
            "number of folds >= 2, or a sequence of experiment ids. Got "
            f"{type(holdout).__name__} {holdout!r} instead."
        )
    for train, test in splits:
        if len(train) < MIN_TRAIN:
            raise ParameterError(
                f"The 'holdout' parameter of backtest leaves {len(train)} training "
                f"experiment(s); at least {MIN_TRAIN} are needed (of {n})."
            )
        if len(test) == 0:
            raise ParameterError("The 'holdout' parameter of backtest holds out no experiment.")
    return splits


def _first(values: Any, limit: int = 8) -> list[Any]:
    """Up to ``limit`` values as plain Python objects (for readable messages)."""
    return plain(list(values)[:limit])


def _explicit_ids(known_ids: Any, holdout: Any) -> np.ndarray:
    """Held-out experiment ids given as a sequence, checked against the known ones."""
    ids = np.asarray(known_ids)
    wanted = list(pd.unique(pd.Series(list(holdout))))
    known = {str(i) for i in ids}
    unknown = [h for h in wanted if str(h) not in known]
    if unknown or not wanted:
        got = f"unknown {_first(unknown)}" if wanted else "an empty sequence"
        raise ParameterError(
            "The 'holdout' parameter of backtest, as experiment ids, must name experiments of "
            f"'effects' (some of {_first(ids)}). Got {got} instead."
        )
    out = {str(h) for h in wanted}
    return ids[np.array([str(i) in out for i in ids])]


def _truth_values(truth: Any, outcome: str, experiments: np.ndarray) -> np.ndarray:
    """The true mix-level long-term effect of each experiment, from ``truth``."""
    if isinstance(truth, xr.Dataset):
        if "experiment_effect" not in truth:
            raise ColumnError(
                "The 'truth' parameter of backtest, as an xarray Dataset, must hold the variable "
                f"'experiment_effect' (a simulated world's truth); found {list(truth.data_vars)}."
            )
        var = truth["experiment_effect"]
        if dims.METRIC in var.dims:
            metrics = [str(m) for m in var[dims.METRIC].values]
            if outcome not in metrics:
                raise ColumnError(
                    f"The 'truth' parameter of backtest has no metric {outcome!r} (the "
                    f"outcome); its metrics are {metrics}."
                )
            var = var.sel({dims.METRIC: outcome})
        if var.dims != (dims.EXPERIMENT,):
            raise ParameterError(
                "The 'truth' parameter of backtest: experiment_effect must have dims "
                f"('experiment', 'metric'); got {truth['experiment_effect'].dims}."
            )
        series = pd.Series(
            np.asarray(var.values, dtype=float), index=np.asarray(var[dims.EXPERIMENT].values)
        )
    elif isinstance(truth, pd.Series):
        series = pd.to_numeric(truth, errors="coerce").astype(float)
    elif isinstance(truth, Mapping):
        series = pd.Series({k: float(v) for k, v in truth.items()}, dtype=float)
    else:
        raise DataTypeError(
            "The 'truth' parameter of backtest must be a simulated world's truth "
            "(xarray Dataset with experiment_effect), a pandas Series or a mapping of "
            f"experiment id to true long-term effect, or None; got {type(truth).__name__}."
        )
    lookup = {str(k): float(v) for k, v in series.items()}
    missing = [e for e in experiments if str(e) not in lookup]
    if missing:
        raise ParameterError(
            "The 'truth' parameter of backtest lacks the held-out experiment(s) "
            f"{_first(missing)}; it has {_first(lookup)}..."
        )
    values = np.array([lookup[str(e)] for e in experiments])
    if not np.all(np.isfinite(values)):
        bad = [e for e, v in zip(experiments, values, strict=True) if not np.isfinite(v)]
        raise ParameterError(
            f"The 'truth' parameter of backtest is not finite for experiment(s) {_first(bad)}."
        )
    return values

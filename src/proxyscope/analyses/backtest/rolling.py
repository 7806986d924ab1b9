"""Rolling-origin backtest: fit on the experiments up to T, judge the ones after T (DESIGN.md §9).

For each origin T (a period label of the cells), the experiments whose period
is T or earlier train, the later ones are judged. On every training set two
models are fitted: the drifting one (``ProxyModel(time=True)``, the relation
walks over periods) and the static one (``ProxyModel()``). Each predicts every
later experiment's mix-level long-term effect from its proxy readings with

``posterior_predictive``
    The posterior predictive mean of the long-term effect given the
    experiment's readings and their sampling covariance (the backtest's method
    of that name), with an equal-tailed ``ci`` interval: the relation's
    uncertainty plus the experiment's own. For the drifting model the relation
    is first carried h periods past its latest one, h the experiment's
    distance from it: per draw every parameter moves by step_sd * sqrt(h) * z
    (:func:`proxyscope.model.periods.forecast_shift`), so the interval also
    holds the walk's steps. The static model has no walk.
``adaptive``
    The fit's adaptive weights applied to the experiment's denoised readings,
    mapped to the long-term scale by the training experiments' calibration
    line (the backtest's method of that name; for the drifting model, the
    weights of its latest period).

Scores per (origin, model, method): decision accuracy (prediction and
reference both positive or both not), RMSE and, for ``posterior_predictive``,
the share of reference values inside the interval. The reference is the
experiment's true mix-level long-term effect when ``truth`` is given, else its
observed one; the interval is then for the observed effect (the long-term
effect plus its sampling error, which correlates with the readings' errors).

The result (:class:`~proxyscope.analyses.backtest.rolling_result.RollingBacktest`)
holds the per-origin table, the predictions, a summary over origins and a
one-line verdict; calibration against simulated worlds is measured in
``benchmarks/bench_rolling.py``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from proxyscope import dims
from proxyscope.analyses.arguments import check_bool, check_int, check_seed
from proxyscope.analyses.backtest.holdout import _first, _truth_values
from proxyscope.analyses.backtest.rolling_predict import predict_experiments
from proxyscope.analyses.backtest.rolling_result import (
    MODELS,
    ROLLING_METHODS,
    RollingBacktest,
    score_table,
)
from proxyscope.core.draws import check_ci
from proxyscope.data.cells import CellEffects
from proxyscope.errors import (
    ConvergenceWarning,
    DataError,
    DataTypeError,
    ParameterError,
    suggestion,
)
from proxyscope.options import DEFAULT_CI

if TYPE_CHECKING:
    from proxyscope.model.proxy_model import ProxyModel

OWNER = "rolling_backtest"
#: Fewest training experiments an origin may leave (the model needs two).
MIN_ROLLING_TRAIN = 2


def default_origins(periods: Sequence[str]) -> list[str]:
    """Every period from the middle of the history to the second-to-last.

    With P periods: positions (P - 1) // 2 to P - 2, e.g. the 4th to the 7th
    of 8 periods (each origin leaves at least half the history to train on
    and at least one period to judge).
    """
    p = len(periods)
    return [str(x) for x in periods[(p - 1) // 2 : p - 1]]


def _check_models(models: Any) -> dict[str, ProxyModel]:
    from proxyscope.model.proxy_model import ProxyModel

    if models is None:
        return {"drifting": ProxyModel(time=True), "static": ProxyModel()}
    if isinstance(models, Mapping):
        if set(models) != set(MODELS):
            raise ParameterError(
                f"The 'models' parameter of {OWNER}, as a mapping, must have exactly the keys "
                f"{list(MODELS)}; got {list(models)}."
            )
        pair = [models[name] for name in MODELS]
    elif isinstance(models, (list, tuple)) and len(models) == 2:
        pair = list(models)
    else:
        raise ParameterError(
            f"The 'models' parameter of {OWNER} must be None, a pair (drifting ProxyModel, "
            f"static ProxyModel) or a mapping {{'drifting': ..., 'static': ...}}; got "
            f"{type(models).__name__} {models!r}."
        )
    for name, model in zip(MODELS, pair, strict=True):
        if not isinstance(model, ProxyModel):
            raise DataTypeError(
                f"The {name} model in the 'models' parameter of {OWNER} must be a ProxyModel; "
                f"got {type(model).__name__}."
            )
    if pair[0].time is None:
        raise ParameterError(
            f"The drifting model in the 'models' parameter of {OWNER} must let the relation "
            "move over time (ProxyModel(time=True) or a grouping); got time=None."
        )
    if pair[1].time is not None:
        raise ParameterError(
            f"The static model in the 'models' parameter of {OWNER} must have time=None; got "
            f"time={pair[1].time!r}."
        )
    return dict(zip(MODELS, pair, strict=True))


def _check_origins(origins: Any, periods: tuple[str, ...]) -> list[str]:
    if origins is None:
        chosen = default_origins(periods)
        if not chosen:
            raise ParameterError(
                f"{OWNER} needs cells spanning at least two periods to have an origin; these "
                f"have {list(periods)}."
            )
        return chosen
    items = [origins] if isinstance(origins, (str, int)) else list(origins)
    if not items:
        raise ParameterError(
            f"The 'origins' parameter of {OWNER} must name at least one period; got an empty "
            "sequence."
        )
    for item in items:
        if str(item) not in periods:
            raise ParameterError(
                f"The 'origins' parameter of {OWNER} must hold period labels of the cells "
                f"{list(periods)}; got {item!r}.{suggestion(str(item), periods)}"
            )
    return sorted({str(i) for i in items}, key=periods.index)


def model_truth_effects(truth: Any) -> pd.Series:
    """The true mix-level long-term effect per experiment of a from_model world.

    The mean over the experiment's cells of their true (latent) long-term effect;
    every cell of a :func:`proxyscope.simulate.from_model` world has the same
    users, so that mean is the user-weighted one. Indexed by experiment id.
    """
    latent = np.asarray(truth.latent, dtype=float)
    n_exp, n_lev = len(truth.eta), len(truth.levels)
    if latent.shape[0] != n_exp * n_lev:
        raise ParameterError(
            f"The 'truth' parameter of {OWNER} is a ModelTruth with {latent.shape[0]} cells, not "
            f"{n_exp} experiments x {n_lev} levels; it is not a from_model world's truth."
        )
    return pd.Series(latent[:, 0].reshape(n_exp, n_lev).mean(axis=1), index=np.arange(n_exp))


def _reference(truth: Any, outcome: str, ids: np.ndarray) -> dict[str, float] | None:
    if truth is None:
        return None
    from proxyscope.simulate.model_world import ModelTruth

    if isinstance(truth, ModelTruth):
        truth = model_truth_effects(truth)
    values = _truth_values(truth, outcome, ids)
    return dict(zip([str(e) for e in ids], values, strict=True))


def _experiment_periods(effects: CellEffects) -> pd.Series:
    """Each experiment's period position in ``effects.periods`` (by experiment id)."""
    pos = pd.Series(effects.period_index, index=pd.Index(effects.experiment))
    return pos.groupby(level=0, sort=False).first().reindex(effects.experiments)


def rolling_backtest(
    effects: CellEffects,
    origins: Any = None,
    *,
    models: Any = None,
    truth: Any = None,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    random_seed: int | None = None,
    ci: float = DEFAULT_CI,
    progress: bool = False,
) -> RollingBacktest:
    """Fit on the experiments up to each origin T, judge the experiments after T.

    Parameters
    ----------
    effects : CellEffects
        Cell effects with their experiments' start dates
        (``summarize(..., time=...)`` or :meth:`CellEffects.with_time`).
    origins : period label or sequence of labels, optional
        The origins T, labels of ``effects.periods`` (of the drifting model's
        grouping when it regroups, e.g. ``ProxyModel(time="quarter")``).
        Default: every period from the middle of the history to the
        second-to-last (:func:`default_origins`).
    models : pair or mapping of ProxyModel, optional
        ``(drifting, static)`` or ``{"drifting": ..., "static": ...}``; the
        drifting one needs ``time``, the static one ``time=None``. Default
        ``ProxyModel(time=True)`` and ``ProxyModel()``.
    truth : optional
        The true mix-level long-term effect per experiment, to score against
        instead of the observed one: a :func:`proxyscope.simulate.from_model`
        world's ``ModelTruth`` (the mean of each experiment's cells' true
        long-term effects), a simulated world's ``truth`` Dataset, or a Series /
        mapping of experiment id to value.
    draws, tune, chains : int
        Passed to every fit.
    random_seed : int, optional
        Origin i's fits get ``random_seed + i`` (both models the same).
    ci : float, default 0.9
        Level of the posterior predictive interval.
    progress : bool, default False
        Show the sampler's progress bars.

    Returns
    -------
    RollingBacktest
        ``.table`` (origin x model x method scores), ``.predictions`` (one row
        per origin, model and judged experiment), ``summary()`` (pooled over
        origins, with a one-line verdict) and ``.fits``.

    Raises
    ------
    DataTypeError, DataError, ParameterError
        ``effects`` without start dates; an unknown origin; an origin leaving
        fewer than 2 training experiments or no later experiment; bad models,
        numbers or truth. Checked before anything is fitted.
    """
    if not isinstance(effects, CellEffects):
        raise DataTypeError(
            f"The 'effects' parameter of {OWNER} must be a CellEffects; got "
            f"{type(effects).__name__}."
        )
    if not effects.has_time:
        raise DataError(
            f"The 'effects' parameter of {OWNER} must carry its experiments' start dates; these "
            "cells have none. Add them with summarize(..., time='<start column>') or "
            "CellEffects.with_time(starts)."
        )
    chosen = _check_models(models)
    for name, value, low in (("draws", draws, 1), ("tune", tune, 0), ("chains", chains, 1)):
        check_int(value, name, OWNER, low=low)
    random_seed = check_seed(random_seed, OWNER)
    ci = check_ci(ci, OWNER)
    progress = check_bool(progress, "progress", OWNER)
    if chosen["drifting"].time is not True:
        from proxyscope.model.proxy_model import timed_effects

        effects = timed_effects(effects, chosen["drifting"].time)
    periods = tuple(effects.periods)
    wanted = _check_origins(origins, periods)
    exp_pos = _experiment_periods(effects)
    splits = []
    for t in wanted:
        cut = periods.index(t)
        train_ids = exp_pos.index[exp_pos.to_numpy() <= cut].to_numpy()
        test_ids = exp_pos.index[exp_pos.to_numpy() > cut].to_numpy()
        if len(train_ids) < MIN_ROLLING_TRAIN or len(test_ids) == 0:
            raise ParameterError(
                f"The origin {t!r} in the 'origins' parameter of {OWNER} leaves {len(train_ids)} "
                f"training experiment(s) (at least {MIN_ROLLING_TRAIN} needed) and "
                f"{len(test_ids)} "
                f"later one(s) to judge (at least 1 needed); experiments per period: "
                f"{_per_period(exp_pos, periods)}."
            )
        splits.append((t, train_ids, test_ids))
    # Checked before any fit: every judged experiment needs its truth.
    reference = _reference(truth, effects.outcome, splits[0][2])

    frames, fits, trust = [], {}, {}
    for i, (t, train_ids, test_ids) in enumerate(splits):
        train, test = effects.subset(train_ids), effects.subset(test_ids)
        # Steps ahead of the training's latest period (where the drifting fit's walk ends).
        pos = exp_pos.reindex(test.experiments).to_numpy()
        horizon = pos - int(exp_pos.reindex(train_ids).max())
        for name, model in chosen.items():
            fit = model.fit(
                train,
                draws=draws,
                tune=tune,
                chains=chains,
                random_seed=None if random_seed is None else random_seed + i,
                progress=progress,
            )
            fits[(t, name)] = fit
            trust[(t, name)] = bool(fit.trustworthy)
            frame = predict_experiments(fit, train, test, horizon, ci, reference is None)
            frame.insert(0, "origin", t)
            frame.insert(1, "model", name)
            frame.insert(3, dims.PERIOD, [periods[p] for p in pos])
            frame.insert(4, "horizon", horizon)
            frames.append(frame)
    predictions = pd.concat(frames, ignore_index=True)
    if reference is not None:
        predictions.insert(6, "truth", [reference[str(e)] for e in predictions["experiment"]])
        predictions.insert(7, "reference", predictions["truth"])
    else:
        predictions.insert(6, "truth", np.nan)
        predictions.insert(7, "reference", predictions["observed"])
    failed = [k for k, ok in trust.items() if not ok]
    if failed:
        warnings.warn(
            f"{OWNER}: the fit(s) {_first(failed)} (origin, model) FAILED their convergence "
            "diagnostics; their predictions are untrustworthy.",
            ConvergenceWarning,
            stacklevel=2,
        )
    return RollingBacktest(
        table=score_table(predictions, ["origin", "model"]),
        predictions=predictions,
        origins=tuple(t for t, _, _ in splits),
        reference="observed" if reference is None else "truth",
        ci=ci,
        trustworthy=trust,
        fits=fits,
    )


def _per_period(exp_pos: pd.Series, periods: tuple[str, ...]) -> dict[str, int]:
    counts = np.bincount(exp_pos.to_numpy(dtype=np.int64), minlength=len(periods))
    return {p: int(c) for p, c in zip(periods, counts, strict=True)}


__all__ = ["MIN_ROLLING_TRAIN", "ROLLING_METHODS", "default_origins", "rolling_backtest"]

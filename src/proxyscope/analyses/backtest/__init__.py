"""Backtest of the composite weighting on held-out experiments.

The question the seed's "A/B test of the metric weighting engine" asks, asked
offline and split by experiment: fit on some past experiments, then for every
experiment left out, predict its long-term effect from its proxy effects with
each weighting and compare with what it turned out to be.

Per held-out experiment the quantities are mix-level: the user-weighted
average of its cell effects (its own mix of users, which is the historical
mix up to sampling), for every proxy and for the long-term outcome.

Methods (all fitted on the training experiments only):

``adaptive``
    The posterior adaptive weights of :func:`proxyscope.weights` (global
    rows; w_k ∝ |beta_k| sd(theta_k) signed by the slope in each draw and
    averaged: ``signed_weight`` of :func:`proxyscope.weights`. Dropping every
    proxy whose slope's interval holds zero instead (``direction`` 0) left
    no proxy at all when two correlated proxies shared the relation: decision
    accuracy 0.556 and 0.540 in two of five worlds of
    ``benchmarks/bench_backtest.py``) applied to the
    experiment's *denoised* readings: the posterior mean of its true
    mix-level proxy effects given the readings and their sampling covariance,
    centred and scaled by the posterior mean and sd(theta_k) of the true
    effects. The weights are shares of sd(theta_k), the spread of the TRUE
    effects, so this is the input they are defined on: the score is then
    proportional to sum_k beta_k theta_k. Applied to raw readings standardized
    by their observed spread, a proxy whose true effect hardly varies
    (rebuffering, CTR) would be scored on its noise.
``equal``
    Weight 1/K on every standardized proxy, read in its good direction.
``single_best``
    The one proxy whose mix-level effect correlates most (in absolute value)
    with the observed long-term effect across training experiments.
``random_forest``
    The seed's method: a scikit-learn ``RandomForestRegressor`` of the
    long-term effect on the proxy effects (training experiments, or their
    cells), its ``feature_importances_`` normalized to sum to one, used as
    weights exactly like ``equal`` (good direction, no sign).
``surrogate_index``
    The model's own composite, I(theta) = a + b' theta with posterior-mean
    coefficients (:func:`proxyscope.surrogate_index`), already in long-term
    units (no calibration).
``posterior_predictive``
    The posterior predictive mean of the long-term effect given the
    experiment's noisy proxy readings and their sampling covariance (what
    :func:`proxyscope.transport` computes for one experiment).

The three fixed weightings (equal, single best, random forest) read, with
``readings="raw"`` (the default, how a team without a noise model deploys
them), the raw mix-level readings standardized by their training mean and sd;
with ``readings="denoised"``, the same denoised and posterior-standardized
readings as ``adaptive``, so that only the weights differ between the four.
Each weighting gives a score z = sum_k w_k s_k z_k (s_k the sign: +1 except
for ``adaptive``), mapped to the long-term scale by the same kind of
calibration, an ordinary least-squares line of the observed long-term effect
on the score over the training experiments, so every method is judged on the
same scale with the same decision rule: ship when the predicted long-term
effect is positive.

Scores: decision accuracy, the share of held-out experiments where the
prediction and the reference long-term effect are both positive or both not;
and the RMSE of the prediction. The reference is the experiment's TRUE
long-term effect when ``truth`` is given (a simulator's truth), otherwise its
observed (noisy) long-term effect; the result says which.

The package, one module per concept:

- :mod:`.run`: :func:`backtest` itself (checks the arguments, splits, fits, predicts, scores).
- :mod:`.holdout`: choosing and checking the held-out experiments, and their truth.
- :mod:`.mix`: mix-level effects per experiment (:class:`MixEffects`).
- :mod:`.weighting`: the fixed weightings, the composite score and the calibration line.
- :mod:`.posterior`: the model's posterior of the mix (denoised readings, predictive mean).
- :mod:`.predict`: the methods and every method's predictions for one split.
- :mod:`.score`: decision accuracy, RMSE and the per-method table.
- :mod:`.result`: :class:`BacktestResult`, its re-scoring and its one-line verdict.
- :mod:`.rolling`: the rolling-origin backtest over periods (fit up to T, judge after T),
  with :mod:`.rolling_predict` and :mod:`.rolling_result`.
"""

from __future__ import annotations

from proxyscope.analyses.backtest.holdout import (
    DEFAULT_HOLDOUT,
    MIN_TRAIN,
    split_experiments,
)
from proxyscope.analyses.backtest.mix import MixEffects, mix_effects
from proxyscope.analyses.backtest.posterior import MAX_PREDICTIVE_DRAWS, PosteriorMix
from proxyscope.analyses.backtest.predict import METHODS, READINGS, RF_ROWS, WEIGHTED
from proxyscope.analyses.backtest.result import BacktestResult
from proxyscope.analyses.backtest.rolling import rolling_backtest
from proxyscope.analyses.backtest.rolling_result import RollingBacktest
from proxyscope.analyses.backtest.run import backtest
from proxyscope.analyses.backtest.score import decision_accuracy, rmse
from proxyscope.analyses.backtest.weighting import (
    Calibration,
    Standardizer,
    best_single_proxy,
    composite_score,
    equal_weights,
    random_forest_weights,
)

__all__ = [
    "DEFAULT_HOLDOUT",
    "MAX_PREDICTIVE_DRAWS",
    "METHODS",
    "MIN_TRAIN",
    "READINGS",
    "RF_ROWS",
    "WEIGHTED",
    "BacktestResult",
    "Calibration",
    "MixEffects",
    "PosteriorMix",
    "RollingBacktest",
    "Standardizer",
    "backtest",
    "best_single_proxy",
    "composite_score",
    "decision_accuracy",
    "equal_weights",
    "mix_effects",
    "random_forest_weights",
    "rmse",
    "rolling_backtest",
    "split_experiments",
]

"""Predictions of the held-out long-term effects: every method on one split.

The methods, the options of what they read, and :func:`_one_fold`, which
predicts each held-out experiment's mix-level long-term effect with every
method from a fit on the training experiments.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from proxyscope.analyses.backtest.mix import mix_effects
from proxyscope.analyses.backtest.posterior import PosteriorMix
from proxyscope.analyses.backtest.weighting import (
    Calibration,
    Standardizer,
    best_single_proxy,
    composite_score,
    equal_weights,
    random_forest_weights,
)
from proxyscope.errors import ConvergenceWarning

if TYPE_CHECKING:
    from proxyscope.data.cells import CellEffects
    from proxyscope.model.fit import ProxyFit

#: Methods in the order of the result table.
METHODS: tuple[str, ...] = (
    "adaptive",
    "equal",
    "single_best",
    "random_forest",
    "surrogate_index",
    "posterior_predictive",
)
#: Methods whose prediction is a weighted score mapped to the long-term scale.
WEIGHTED: tuple[str, ...] = ("adaptive", "equal", "single_best", "random_forest")
RF_ROWS: tuple[str, ...] = ("experiment", "cell")
#: What the fixed weightings read: raw readings or the posterior's denoised ones.
READINGS: tuple[str, ...] = ("raw", "denoised")


def _one_fold(
    fit: ProxyFit,
    train_effects: CellEffects,
    test_effects: CellEffects,
    rf_rows: str,
    n_estimators: int,
    random_state: int | None,
    readings: str,
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Predictions for one split's held-out experiments, and the weights used."""
    from proxyscope.analyses.composite import mix_composite
    from proxyscope.analyses.implied import resolve_mix
    from proxyscope.analyses.weights import weights as adaptive_weights
    from proxyscope.model.segments import segments_for

    train = mix_effects(train_effects)
    test = mix_effects(test_effects)
    proxies = tuple(train_effects.proxies)
    k = len(proxies)

    with warnings.catch_warnings():
        # Untrustworthy fits are reported once, by backtest itself.
        warnings.simplefilter("ignore", ConvergenceWarning)
        w_table = adaptive_weights(fit, by_segment=False)
        # One set of segment draws for the surrogate index and the posterior.
        combos, shares = resolve_mix(fit, None)
        seg = segments_for(fit, combos)
    index = np.asarray(mix_composite(seg, shares).value(test.proxies), dtype=float)
    post = PosteriorMix.of(seg, shares)
    predictive = post.predictive_mean(test)
    # Denoised readings, centred and scaled by the posterior's true-effect moments.
    denoised = Standardizer(mean=post.centre, sd=post.spread)
    den_train, den_test = denoised(post.denoise(train)), denoised(post.denoise(test))
    if readings == "denoised":
        z_train, z_test = den_train, den_test
    else:
        scale = Standardizer.of(train.proxies)
        z_train, z_test = scale(train.proxies), scale(test.proxies)
    glob = w_table[w_table["scope"] == "global"].set_index("proxy").reindex(list(proxies))
    if rf_rows == "experiment":
        rf_x, rf_y = train.proxies, train.outcome
    else:
        rf_x, rf_y = train_effects.effect[:, 1:], train_effects.effect[:, 0]
    single = np.zeros(k)
    single[best_single_proxy(train.proxies, train.outcome)] = 1.0
    # The adaptive score's coefficients are the signed weights, rescaled to shares
    # (the calibration line absorbs the scale): weight |c_k| / sum |c|, sign of c_k.
    coef = glob["signed_weight"].to_numpy(dtype=float)
    total = float(np.abs(coef).sum())
    shares_k = np.abs(coef) / total if total > 0 else np.zeros(k)
    chosen: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {
        "adaptive": (
            shares_k,
            np.sign(coef),
            den_train,
            den_test,
        ),
        "equal": (equal_weights(k), np.ones(k), z_train, z_test),
        "single_best": (single, np.ones(k), z_train, z_test),
        "random_forest": (
            random_forest_weights(rf_x, rf_y, n_estimators=n_estimators, random_state=random_state),
            np.ones(k),
            z_train,
            z_test,
        ),
    }
    frame = pd.DataFrame({"experiment": test.experiments, "observed": test.outcome})
    rows: list[dict[str, Any]] = []
    for method, (w, s, x_train, x_test) in chosen.items():
        cal = Calibration.of(composite_score(x_train, w, s), train.outcome)
        frame[method] = cal(composite_score(x_test, w, s))
        for p, wk, sk in zip(proxies, w, s, strict=True):
            rows.append({"method": method, "proxy": p, "weight": float(wk), "sign": int(sk)})
    frame["surrogate_index"] = index
    frame["posterior_predictive"] = predictive
    return frame, rows

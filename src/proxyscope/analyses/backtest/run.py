"""The backtest itself: check the arguments, split, fit each fold, predict and score."""

from __future__ import annotations

import numbers
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from proxyscope.analyses.backtest.holdout import (
    DEFAULT_HOLDOUT,
    _explicit_ids,
    _first,
    _truth_values,
    split_experiments,
)
from proxyscope.analyses.backtest.predict import METHODS, READINGS, RF_ROWS, _one_fold
from proxyscope.analyses.backtest.result import BacktestResult
from proxyscope.analyses.backtest.score import _score_table
from proxyscope.data.cells import CellEffects
from proxyscope.errors import (
    ConvergenceWarning,
    DataTypeError,
    ParameterError,
    check_one_of,
)

if TYPE_CHECKING:
    from proxyscope.model.fit import ProxyFit
    from proxyscope.model.proxy_model import ProxyModel


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ParameterError(
            f"The {name!r} parameter of backtest must be an integer >= {low}. Got {value!r} "
            "instead."
        )
    return int(value)


def _check_fit(fit: Any, effects: CellEffects) -> ProxyFit:
    from proxyscope.model.fit import ProxyFit

    if not isinstance(fit, ProxyFit):
        raise DataTypeError(
            f"The 'fit' parameter of backtest must be a ProxyFit; got {type(fit).__name__}."
        )
    if fit.outcome != effects.outcome or tuple(fit.proxies) != tuple(effects.proxies):
        raise ParameterError(
            "The 'fit' parameter of backtest was fitted on outcome "
            f"{fit.outcome!r} and proxies {list(fit.proxies)}, but 'effects' has outcome "
            f"{effects.outcome!r} and proxies {list(effects.proxies)}."
        )
    return fit


def backtest(
    effects: CellEffects,
    holdout: Any = None,
    *,
    model: ProxyModel | None = None,
    fit: ProxyFit | None = None,
    truth: Any = None,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    random_seed: int | None = None,
    random_state: int | None = 0,
    rf_rows: str = "experiment",
    n_estimators: int = 500,
    readings: str = "raw",
    progress: bool = False,
) -> BacktestResult:
    """Backtest the weightings of a composite proxy on held-out experiments.

    Experiments, not cells, are split: every cell of a held-out experiment is
    held out. For each split the model is fitted on the training experiments
    and each method predicts every held-out experiment's mix-level long-term
    effect from its mix-level proxy effects (see the package docstring for the
    methods and the common calibration).

    Parameters
    ----------
    effects : CellEffects
        Cell effects of all experiments (training and held-out).
    holdout : float, int or sequence of experiment ids, optional
        A fraction in (0, 1) of experiments held out in one random split
        (default 0.3); an integer K >= 2 for K-fold by experiment (K fits);
        or the held-out experiment ids. With ``fit``, default: every
        experiment of ``effects`` that the fit did not see.
    model : ProxyModel, optional
        The model fitted on each training set (default ``ProxyModel()``).
    fit : ProxyFit, optional
        A fit already made on the training experiments (no fitting is done).
        Its training data are ``fit.effects``; ``holdout`` must then be None
        or experiment ids, and none of them may be in the fit's data.
    truth : optional
        The true long-term effect of each experiment, to score against instead
        of the observed (noisy) one: a simulated world's ``world.truth``
        (``experiment_effect[experiment, metric]``), or a Series / mapping of
        experiment id to true mix-level effect. Used only for scoring.
    draws, tune, chains, random_seed : optional
        Passed to ``model.fit`` (fold i gets ``random_seed + i``).
    random_state : int, optional
        Seed of the split and of the random forest.
    rf_rows : {"experiment", "cell"}
        Rows the random forest is trained on: one per training experiment
        (mix-level effects; default) or one per training cell.
    n_estimators : int
        Trees in the random forest.
    readings : {"raw", "denoised"}
        What the fixed weightings (equal, single best, random forest) read:
        the raw readings standardized over the training experiments (default,
        as they are deployed without a noise model), or the denoised,
        posterior-standardized readings that ``adaptive`` reads, so that only
        the weights differ. ``adaptive`` always reads the denoised ones.
    progress : bool
        Show the sampler's progress bar.

    Returns
    -------
    BacktestResult
        ``.table`` (one row per method), ``.predictions`` (one row per
        held-out experiment), ``.weights``; ``summary()`` adds a sentence.

    Raises
    ------
    ParameterError, ColumnError, DataTypeError
        On bad input, naming the parameter, what was expected and what was found.
    """
    if not isinstance(effects, CellEffects):
        raise DataTypeError(
            f"The 'effects' parameter of backtest must be a CellEffects; got "
            f"{type(effects).__name__}."
        )
    check_one_of(rf_rows, RF_ROWS, param="rf_rows", owner="backtest")
    check_one_of(readings, READINGS, param="readings", owner="backtest")
    n_estimators = _check_int("n_estimators", n_estimators, 1)
    if random_state is not None:
        random_state = _check_int("random_state", random_state, 0)
    if random_seed is not None:
        random_seed = _check_int("random_seed", random_seed, 0)
    given_fit = fit is not None
    if fit is not None:
        if model is not None:
            raise ParameterError(
                "backtest: give a 'model' to fit on each training set, or a ready 'fit', not both."
            )
        fit = _check_fit(fit, effects)
        seen = {str(e) for e in fit.effects.experiments}
        if holdout is None:
            holdout = [e for e in effects.experiments if str(e) not in seen]
            if not holdout:
                raise ParameterError(
                    "backtest: 'effects' has no experiment that the given 'fit' did not see; "
                    "pass held-out experiments in 'effects' or a 'holdout' list."
                )
        elif isinstance(holdout, numbers.Real) or not hasattr(holdout, "__iter__"):
            raise ParameterError(
                "The 'holdout' parameter of backtest must be None or a sequence of experiment "
                f"ids when a 'fit' is given (it fixes the training set). Got {holdout!r} instead."
            )
        leaked = [e for e in holdout if str(e) in seen]
        if leaked:
            raise ParameterError(
                "The 'holdout' parameter of backtest names experiment(s) "
                f"{_first(leaked)} that the given 'fit' was trained on; a held-out experiment "
                "must not be in the fit's data."
            )
        test_ids = _explicit_ids(effects.experiments, holdout)
        splits = [(np.asarray(fit.effects.experiments), test_ids)]
    else:
        for name, value, low in (("draws", draws, 1), ("tune", tune, 0), ("chains", chains, 1)):
            _check_int(name, value, low)
        splits = split_experiments(
            effects.experiments, DEFAULT_HOLDOUT if holdout is None else holdout, random_state
        )
        if model is None:
            from proxyscope.model.proxy_model import ProxyModel

            model = ProxyModel()

    # Check the truth before any fitting: a missing experiment should fail fast.
    heldout_ids = np.concatenate([test for _, test in splits])
    true_values = (
        None
        if truth is None
        else dict(
            zip(
                [str(e) for e in heldout_ids],
                _truth_values(truth, effects.outcome, heldout_ids),
                strict=True,
            )
        )
    )
    proxies = tuple(effects.proxies)
    pred_frames: list[pd.DataFrame] = []
    weight_rows: list[dict[str, Any]] = []
    trust: list[bool] = []
    for i, (train_ids, test_ids) in enumerate(splits):
        if given_fit:
            assert fit is not None
            fold_fit = fit
            train_effects = fit.effects
        else:
            assert model is not None
            train_effects = effects.subset(train_ids)
            seed = None if random_seed is None else random_seed + i
            fold_fit = model.fit(
                train_effects,
                draws=draws,
                tune=tune,
                chains=chains,
                random_seed=seed,
                progress=progress,
            )
        trust.append(bool(fold_fit.trustworthy))
        test_effects = effects.subset(test_ids)
        frame, rows = _one_fold(
            fold_fit, train_effects, test_effects, rf_rows, n_estimators, random_state, readings
        )
        frame.insert(1, "fold", i)
        pred_frames.append(frame)
        for row in rows:
            weight_rows.append({"fold": i, **row})

    predictions = pd.concat(pred_frames, ignore_index=True)
    if true_values is not None:
        predictions["truth"] = [true_values[str(e)] for e in predictions["experiment"]]
        reference = "truth"
    else:
        predictions["truth"] = np.nan
        reference = "observed"
    predictions["reference"] = predictions[reference]
    lead = ["experiment", "fold", "observed", "truth", "reference"]
    predictions = predictions[[*lead, *METHODS]]
    predictions.attrs["reference"] = reference
    weights_df = pd.DataFrame(weight_rows, columns=["fold", "method", "proxy", "weight", "sign"])
    table = _score_table(predictions, "reference", weights_df, proxies)
    if not all(trust):
        bad = [i for i, ok in enumerate(trust) if not ok]
        warnings.warn(
            f"backtest: the fit(s) of fold(s) {bad} FAILED their convergence diagnostics; "
            "the adaptive weights and the model's predictions are untrustworthy.",
            ConvergenceWarning,
            stacklevel=2,
        )
    return BacktestResult(
        table=table,
        predictions=predictions,
        weights=weights_df,
        folds=[(np.asarray(a), np.asarray(b)) for a, b in splits],
        reference=reference,
        trustworthy=trust,
        proxies=proxies,
        readings=readings,
    )

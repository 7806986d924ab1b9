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
    rows; w_k ∝ |beta_k| sd(theta_k), sign from the slope) applied to the
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
"""

from __future__ import annotations

import dataclasses
import numbers
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from proxyscope import dims
from proxyscope._format import plain
from proxyscope.data.cells import CellEffects
from proxyscope.errors import (
    ColumnError,
    ConvergenceWarning,
    DataTypeError,
    ParameterError,
    check_one_of,
)

if TYPE_CHECKING:
    from proxyscope.model.fit import ProxyFit
    from proxyscope.model.proxy_model import ProxyModel
    from proxyscope.model.segments import SegmentDraws

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
DEFAULT_HOLDOUT = 0.3
#: Fewest training experiments a split may leave (calibration line + forest).
MIN_TRAIN = 3
#: Posterior draws used for the posterior predictive mean (thinned evenly).
MAX_PREDICTIVE_DRAWS = 1000


# -- data ------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class MixEffects:
    """Mix-level effects per experiment (internal).

    ``effect`` (E, 1 + K): outcome first, then proxies; ``noise_cov``
    (E, 1 + K, 1 + K): the sampling covariance of that weighted average.
    """

    experiments: np.ndarray
    effect: np.ndarray
    noise_cov: np.ndarray

    @property
    def outcome(self) -> np.ndarray:
        return self.effect[:, 0]

    @property
    def proxies(self) -> np.ndarray:
        return self.effect[:, 1:]


def mix_effects(effects: CellEffects) -> MixEffects:
    """Each experiment's user-weighted average of its cell effects.

    The weights are the cells' users (both arms) within the experiment, so the
    average is the experiment's stratified difference in means on its own mix.
    """
    users = np.asarray(effects.data[dims.N_TREAT].values, dtype=float) + np.asarray(
        effects.data[dims.N_CONTROL].values, dtype=float
    )
    ids = effects.experiments
    codes = pd.Index(ids).get_indexer(effects.experiment)
    totals = np.bincount(codes, weights=users, minlength=len(ids))
    share = users / totals[codes]
    n_metrics = len(effects.metrics)
    eff = np.zeros((len(ids), n_metrics))
    cov = np.zeros((len(ids), n_metrics, n_metrics))
    np.add.at(eff, codes, share[:, None] * effects.effect)
    np.add.at(cov, codes, (share**2)[:, None, None] * effects.noise_cov)
    return MixEffects(experiments=ids, effect=eff, noise_cov=cov)


# -- splitting ---------------------------------------------------------------------
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


# -- weights and predictions ---------------------------------------------------------
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


@dataclasses.dataclass(frozen=True)
class PosteriorMix:
    """The fit's posterior moments of the historical mix, thinned (internal).

    ``mean_tau`` (N,), ``mean_theta`` (N, K), ``cov_tau_theta`` (N, K) and
    ``cov_theta`` (N, K, K): per draw, the mean and covariance of a new
    experiment's true mix-level long-term and proxy effects.
    """

    mean_tau: np.ndarray
    mean_theta: np.ndarray
    cov_tau_theta: np.ndarray
    cov_theta: np.ndarray

    @classmethod
    def of(cls, seg: SegmentDraws, shares: np.ndarray) -> PosteriorMix:
        """From segment draws and the mix's shares, thinned to MAX_PREDICTIVE_DRAWS."""
        mom = seg.mix_moments(shares)
        n = len(mom["mean_tau"])
        take = np.unique(np.linspace(0, n - 1, min(n, MAX_PREDICTIVE_DRAWS)).astype(int))
        return cls(
            mean_tau=mom["mean_tau"][take],
            mean_theta=mom["mean_theta"][take],
            cov_tau_theta=mom["cov_tau_theta"][take],
            cov_theta=mom["cov_theta"][take],
        )

    @property
    def centre(self) -> np.ndarray:
        """Posterior mean of the true proxy effects' mean (K,)."""
        return np.asarray(self.mean_theta.mean(axis=0))

    @property
    def spread(self) -> np.ndarray:
        """Posterior mean of sd(theta_k), the spread the adaptive weights use (K,)."""
        return np.asarray(np.sqrt(np.einsum("nkk->nk", self.cov_theta)).mean(axis=0))

    def _conditional(self, mix: MixEffects, rhs: np.ndarray) -> np.ndarray:
        """Per draw (Sigma + S_e)^-1 (x_e - m) contracted with ``rhs`` (N, K, J): (N, E, J)."""
        out = np.empty((len(self.mean_tau), len(mix.experiments), rhs.shape[-1]))
        for lo in range(0, len(mix.experiments), 256):
            part = slice(lo, lo + 256)
            v = self.cov_theta[:, None] + mix.noise_cov[None, part, 1:, 1:]  # (N, e, K, K)
            resid = mix.proxies[None, part] - self.mean_theta[:, None]  # (N, e, K)
            solved = np.linalg.solve(v, resid[..., None])[..., 0]
            out[:, part] = np.einsum("nek,nkj->nej", solved, rhs)
        return out

    def denoise(self, mix: MixEffects) -> np.ndarray:
        """Posterior mean of each experiment's true mix-level proxy effects (E, K).

        Per draw E[theta | x] = m + Sigma (Sigma + S_e)^-1 (x - m), with S_e the
        readings' sampling covariance; averaged over draws.
        """
        cond = self.mean_theta[:, None] + self._conditional(mix, self.cov_theta)
        return np.asarray(cond.mean(axis=0))

    def predictive_mean(self, mix: MixEffects) -> np.ndarray:
        """Posterior predictive mean of each experiment's long-term effect given its readings."""
        gain = self._conditional(mix, self.cov_tau_theta[..., None])[..., 0]
        cond = self.mean_tau[:, None] + gain
        return np.asarray(cond.mean(axis=0))


# -- result ----------------------------------------------------------------------------
@dataclasses.dataclass
class BacktestResult:
    """Scores of every weighting on the held-out experiments.

    Attributes
    ----------
    table : DataFrame
        One row per method: ``method``, ``decision_accuracy``, ``n_correct``,
        ``rmse``, ``n_heldout``, ``reference`` ("truth" or "observed") and
        ``weight_<proxy>`` (the weights used, averaged over folds; NaN for the
        model's own predictions, which have coefficients, not weights).
    predictions : DataFrame
        One row per held-out experiment: ``experiment``, ``fold``,
        ``observed`` (its observed mix-level long-term effect), ``truth``
        (NaN without truth), ``reference`` (the value scored against) and one
        column per method with its predicted long-term effect.
    weights : DataFrame
        Long format: ``fold``, ``method``, ``proxy``, ``weight``, ``sign``.
    folds : list of (train_ids, heldout_ids)
    reference : str
        "truth" or "observed".
    trustworthy : list of bool
        Per fold, whether the fold's fit passed its diagnostics.
    readings : str
        What the fixed weightings read: "raw" or "denoised" (``adaptive``
        always reads the denoised readings).
    """

    table: pd.DataFrame
    predictions: pd.DataFrame
    weights: pd.DataFrame
    folds: list[tuple[np.ndarray, np.ndarray]]
    reference: str
    trustworthy: list[bool]
    proxies: tuple[str, ...]
    readings: str = "raw"

    def score(self, against: str = "reference") -> pd.DataFrame:
        """The table scored against ``"reference"``, ``"truth"`` or ``"observed"``."""
        check_one_of(
            against,
            ("reference", "truth", "observed"),
            param="against",
            owner="BacktestResult.score",
        )
        if against == "truth" and self.reference != "truth":
            raise ParameterError(
                "BacktestResult.score: against='truth' needs the backtest to have been given "
                "truth; it was scored against observed long-term effects."
            )
        return _score_table(self.predictions, against, self.weights, self.proxies)

    def summary(self) -> pd.DataFrame:
        """The table (method, decision accuracy, RMSE, weights) with a one-line verdict."""
        out = self.table.copy()
        out.attrs["text"] = self._sentence()
        return out

    def _sentence(self) -> str:
        acc = dict(
            zip(self.table["method"], self.table["decision_accuracy"].astype(float), strict=True)
        )
        n = int(self.table["n_heldout"].iloc[0])
        best = max(acc, key=lambda m: acc[m])
        cmp = ", ".join(
            f"{m} {acc[m]:.3f}" for m in ("adaptive", "equal", "random_forest") if m in acc
        )
        return (
            f"On {n} held-out experiments ({len(self.folds)} fold(s)), scored against the "
            f"{'true' if self.reference == 'truth' else 'observed'} long-term effect, the "
            f"highest decision accuracy is {best} ({acc[best]:.3f}); {cmp} (adaptive reads "
            f"the denoised readings, the fixed weightings the {self.readings} ones)."
        )

    def __repr__(self) -> str:
        shown = self.table[["method", "decision_accuracy", "n_correct", "rmse"]].copy()
        weights = self.table[[f"weight_{p}" for p in self.proxies]].round(3)
        weights.columns = list(self.proxies)
        body = pd.concat([shown, weights], axis=1).to_string(
            index=False, float_format=lambda v: f"{v:.4g}"
        )
        flag = "" if all(self.trustworthy) else "\n  WARNING: some fold fits FAILED diagnostics."
        return f"<proxyscope.BacktestResult>\n{body}\n  {self._sentence()}{flag}"


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


# -- checks ------------------------------------------------------------------------------
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


# -- the backtest ---------------------------------------------------------------------------
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
    effect from its mix-level proxy effects (see the module docstring for the
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
    from proxyscope.analyses.implied import resolve_mix, segments_for
    from proxyscope.analyses.weights import weights as adaptive_weights

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
    chosen: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {
        "adaptive": (
            glob["weight"].to_numpy(dtype=float),
            glob["direction"].to_numpy(dtype=float),
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

"""Backtest of the composite weightings on held-out experiments (proxyscope.backtest)."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from conftest import cached_fit

import proxyscope as ps
from proxyscope.analyses.backtest import (
    METHODS,
    BacktestResult,
    Calibration,
    MixEffects,
    PosteriorMix,
    Standardizer,
    best_single_proxy,
    composite_score,
    decision_accuracy,
    equal_weights,
    mix_effects,
    random_forest_weights,
    rmse,
    split_experiments,
)
from proxyscope.data.cellbuild import build
from proxyscope.errors import ColumnError, ConvergenceWarning, DataTypeError, ParameterError

# -- the pieces, against hand computations ----------------------------------------------


def test_equal_weights() -> None:
    w = equal_weights(4)
    np.testing.assert_array_equal(w, [0.25, 0.25, 0.25, 0.25])
    with pytest.raises(ParameterError, match="at least one proxy"):
        equal_weights(0)


def test_random_forest_weights_sum_to_one_and_find_the_signal() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 3))
    y = 2.0 * x[:, 0] + 0.05 * rng.normal(size=200)
    w = random_forest_weights(x, y, n_estimators=100, random_state=1)
    assert w.shape == (3,)
    assert np.all(w >= 0)
    assert w.sum() == pytest.approx(1.0)
    assert w[0] > 0.8
    # Same seed, same weights (the forest is seeded).
    np.testing.assert_array_equal(w, random_forest_weights(x, y, n_estimators=100, random_state=1))


def test_random_forest_weights_without_any_split_fall_back_to_equal() -> None:
    x = np.arange(12.0).reshape(6, 2)
    w = random_forest_weights(x, np.ones(6), n_estimators=10, random_state=0)
    np.testing.assert_array_equal(w, [0.5, 0.5])


def test_decision_accuracy_and_rmse_by_hand() -> None:
    pred = np.array([0.1, -0.2, 0.3, -0.1])
    ref = np.array([0.2, 0.1, 0.5, -0.3])
    # Rows 0, 2, 3 agree in sign; row 1 does not.
    assert decision_accuracy(pred, ref) == 0.75
    assert rmse(pred, ref) == pytest.approx(np.sqrt((0.01 + 0.09 + 0.04 + 0.04) / 4))
    with pytest.raises(ParameterError, match="equally long"):
        decision_accuracy(pred, ref[:3])


def test_best_single_proxy_uses_absolute_correlation() -> None:
    y = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    x = np.column_stack([[1.0, -1.0, 1.0, -1.0, 1.0], -y + [0, 0.1, 0, 0.1, 0], y**0.5])
    # Column 1 is almost exactly -y: the strongest |correlation|.
    assert best_single_proxy(x, y) == 1


def test_standardizer_calibration_and_composite() -> None:
    x = np.array([[1.0, 10.0, 5.0], [3.0, 30.0, 5.0], [5.0, 20.0, 5.0]])
    scale = Standardizer.of(x)
    z = scale(x)
    np.testing.assert_allclose(z[:, 0], [-1.0, 0.0, 1.0])
    np.testing.assert_allclose(z[:, 1], [-1.0, 1.0, 0.0])
    np.testing.assert_array_equal(z[:, 2], 0.0)  # constant in training: no information
    score = composite_score(z, np.array([0.5, 0.25, 0.25]), np.array([1.0, -1.0, 1.0]))
    np.testing.assert_allclose(score, [-0.25, -0.25, 0.5])
    cal = Calibration.of(np.array([0.0, 1.0, 2.0]), np.array([1.0, 3.0, 5.0]))
    assert (cal.intercept, cal.slope) == pytest.approx((1.0, 2.0))
    np.testing.assert_allclose(cal(np.array([3.0])), [7.0])
    flat = Calibration.of(np.zeros(3), np.array([1.0, 2.0, 3.0]))
    assert (flat.intercept, flat.slope) == (2.0, 0.0)


def _tiny_effects() -> ps.CellEffects:
    """Two experiments × two cells, one proxy, numbers chosen by hand."""
    keys = pd.DataFrame({"experiment": [1, 1, 2, 2], "device": ["TV", "Mobile"] * 2})
    effect = np.array([[1.0, 10.0], [3.0, 30.0], [-1.0, 2.0], [0.0, 4.0]])
    cov = np.zeros((4, 2, 2))
    cov[:, 0, 0] = [4.0, 8.0, 1.0, 1.0]
    cov[:, 1, 1] = 1.0
    return build(
        keys,
        n_treat=np.array([30, 10, 50, 50]),
        n_control=np.array([30, 10, 50, 50]),
        effect=effect,
        noise_cov=cov,
        outcome="y",
        proxies=["x"],
        segments=["device"],
        directions={},
        engine="test",
    )


def test_mix_effects_are_user_weighted_averages() -> None:
    m = mix_effects(_tiny_effects())
    assert list(m.experiments) == [1, 2]
    # Experiment 1: 60 and 20 users -> shares 0.75 / 0.25; experiment 2: halves.
    np.testing.assert_allclose(m.effect, [[1.5, 15.0], [-0.5, 3.0]])
    np.testing.assert_allclose(m.noise_cov[:, 0, 0], [0.75**2 * 4 + 0.25**2 * 8, 0.5])
    np.testing.assert_allclose(m.noise_cov[:, 1, 1], [0.75**2 + 0.25**2, 0.5])


# -- splitting by experiment -----------------------------------------------------------------


def _assert_disjoint(train: np.ndarray, test: np.ndarray, ids: list[Any]) -> None:
    assert not set(train.tolist()) & set(test.tolist())
    assert sorted([*train.tolist(), *test.tolist()]) == sorted(ids)


def test_fraction_split_never_puts_an_experiment_on_both_sides() -> None:
    ids = list(range(100, 120))
    splits = split_experiments(ids, 0.3, random_state=4)
    assert len(splits) == 1
    train, test = splits[0]
    assert len(test) == 6
    _assert_disjoint(train, test, ids)
    # Reproducible from the seed; another seed holds out other experiments.
    np.testing.assert_array_equal(test, split_experiments(ids, 0.3, random_state=4)[0][1])
    assert set(test) != set(split_experiments(ids, 0.3, random_state=5)[0][1])


def test_kfold_split_holds_out_every_experiment_exactly_once() -> None:
    ids = [f"exp{i}" for i in range(11)]
    splits = split_experiments(ids, 4, random_state=0)
    assert len(splits) == 4
    held = [e for _, test in splits for e in test]
    assert sorted(held) == sorted(ids)
    for train, test in splits:
        _assert_disjoint(train, test, ids)
        assert len(test) in (2, 3)


def test_explicit_split() -> None:
    ids = [1, 2, 3, 4, 5]
    train, test = split_experiments(ids, [5, 2])[0]
    assert test.tolist() == [2, 5] and train.tolist() == [1, 3, 4]


@pytest.mark.parametrize(
    ("holdout", "match"),
    [
        (0.0, r"fraction of experiments, must be in \(0, 1\)"),
        (1.5, r"fraction of experiments, must be in \(0, 1\)"),
        (True, "Got True instead"),
        (1, "between 2 and the number of experiments"),
        (50, "between 2 and the number of experiments"),
        ("abc", "Got str 'abc' instead"),
        ([1, 99], r"Got unknown \[99\] instead"),
        ([], "Got an empty sequence instead"),
        ([1, 2, 3, 4, 5, 6, 7, 8], "leaves 2 training experiment"),
        (11, "between 2 and the number of experiments"),
    ],
)
def test_bad_holdout_is_named(holdout: Any, match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        split_experiments(list(range(1, 11)), holdout)


# -- backtest on a real (small, cached) fit, no new sampling -------------------------------


class _RecordingModel:
    """Stands in for ProxyModel: records each training set and returns a ready fit."""

    def __init__(self, fit: Any) -> None:
        self.fit_ = fit
        self.trained_on: list[list[Any]] = []
        self.kwargs: list[dict[str, Any]] = []

    def fit(self, effects: Any, **kwargs: Any) -> Any:
        self.trained_on.append(list(effects.experiments))
        self.kwargs.append(kwargs)
        return self.fit_


def test_kfold_backtest_fits_only_on_training_experiments(small_fit, small_effects) -> None:
    model = _RecordingModel(small_fit)
    with pytest.warns(ConvergenceWarning, match="FAILED their convergence diagnostics"):
        res = ps.backtest(small_effects, 4, model=model, draws=10, tune=5, chains=1, random_seed=3)
    assert isinstance(res, BacktestResult)
    ids = sorted(small_effects.experiments.tolist())
    assert len(model.trained_on) == 4
    for (train, test), trained in zip(res.folds, model.trained_on, strict=True):
        assert sorted(trained) == sorted(train.tolist())
        assert not set(trained) & set(test.tolist())
    assert [k["random_seed"] for k in model.kwargs] == [3, 4, 5, 6]
    assert {k["draws"] for k in model.kwargs} == {10}
    # Every experiment predicted exactly once, in the fold that held it out.
    pred = res.predictions
    assert sorted(pred["experiment"].tolist()) == ids
    for fold, (_, test) in enumerate(res.folds):
        assert sorted(pred.loc[pred["fold"] == fold, "experiment"]) == sorted(test.tolist())
    assert np.isfinite(pred[list(METHODS)].to_numpy()).all()
    # Without truth the reference is the observed long-term effect.
    assert res.reference == "observed" and pred["truth"].isna().all()
    observed = mix_effects(small_effects)
    lookup = dict(zip(observed.experiments.tolist(), observed.outcome, strict=True))
    np.testing.assert_allclose(pred["observed"], [lookup[e] for e in pred["experiment"]])
    # The table's scores are the hand formulas on the predictions.
    table = res.table.set_index("method")
    assert list(table.index) == list(METHODS)
    for method in METHODS:
        hits = (pred[method] > 0) == (pred["observed"] > 0)
        assert table.loc[method, "decision_accuracy"] == pytest.approx(hits.mean())
        assert table.loc[method, "n_correct"] == hits.sum()
        assert table.loc[method, "n_heldout"] == len(ids)
    # Weights: each fold's weights of each weighting sum to one; equal is 1/K.
    sums = res.weights.groupby(["fold", "method"])["weight"].sum()
    np.testing.assert_allclose(sums, 1.0)
    k = len(small_effects.proxies)
    eq = res.weights[res.weights["method"] == "equal"]["weight"]
    np.testing.assert_allclose(eq, 1.0 / k)
    single = res.weights[res.weights["method"] == "single_best"]
    assert (single.groupby("fold")["weight"].max() == 1.0).all()
    assert "decision accuracy" in res.summary().attrs["text"]
    assert "adaptive" in repr(res)


@pytest.mark.filterwarnings("ignore::proxyscope.errors.ConvergenceWarning")
def test_model_predictions_match_the_public_functions(small_fit, small_effects) -> None:
    # Re-using the fit on its own experiments only to check the arithmetic.
    model = _RecordingModel(small_fit)
    res = ps.backtest(small_effects, [small_effects.experiments[0]], model=model)
    row = res.predictions.iloc[0]
    test = mix_effects(small_effects.subset([row["experiment"]]))
    readings = dict(zip(small_fit.proxies, test.proxies[0], strict=True))
    index = ps.surrogate_index(small_fit, readings, random_seed=1)
    assert row["surrogate_index"] == pytest.approx(index["value"].iloc[0], rel=1e-9)
    cov = test.noise_cov[0, 1:, 1:]
    pred = ps.transport(small_fit, None, proxy_effects=readings, proxy_cov=cov, random_seed=2)
    tol = 4 * pred.draws.std() / np.sqrt(pred.draws.size)
    assert row["posterior_predictive"] == pytest.approx(pred.draws.mean(), abs=tol)


@pytest.mark.filterwarnings("ignore::proxyscope.errors.ConvergenceWarning")
def test_truth_is_the_reference_when_given(small_fit, small_effects, small_world) -> None:
    model = _RecordingModel(small_fit)
    res = ps.backtest(small_effects, 0.25, model=model, truth=small_world.truth, rf_rows="cell")
    pred = res.predictions
    true = small_world.truth["experiment_effect"].sel(metric="long_retained")
    np.testing.assert_allclose(
        pred["truth"], true.sel(experiment=pred["experiment"].to_numpy()).values
    )
    np.testing.assert_array_equal(pred["reference"], pred["truth"])
    assert res.reference == "truth" and (res.table["reference"] == "truth").all()
    hits = (pred["equal"] > 0) == (pred["truth"] > 0)
    assert res.table.set_index("method").loc["equal", "decision_accuracy"] == hits.mean()
    vs_obs = res.score("observed").set_index("method")
    hits_obs = (pred["equal"] > 0) == (pred["observed"] > 0)
    assert vs_obs.loc["equal", "decision_accuracy"] == hits_obs.mean()
    # A Series of true effects gives the same reference.
    series = pd.Series(true.values, index=true["experiment"].values)
    res2 = ps.backtest(small_effects, 0.25, model=model, truth=series)
    np.testing.assert_allclose(res2.predictions["truth"], pred["truth"])


# -- bad input ------------------------------------------------------------------------------


def test_backtest_rejects_bad_input(small_fit, small_effects) -> None:
    with pytest.raises(DataTypeError, match="'effects' parameter of backtest must be a CellEff"):
        ps.backtest(small_effects.to_frame())
    with pytest.raises(ParameterError, match="'rf_rows' parameter of backtest must be one of"):
        ps.backtest(small_effects, rf_rows="user")
    with pytest.raises(ParameterError, match="'draws' parameter of backtest"):
        ps.backtest(small_effects, draws=0)
    with pytest.raises(ParameterError, match="'n_estimators' parameter of backtest"):
        ps.backtest(small_effects, n_estimators=0)
    with pytest.raises(ParameterError, match="'holdout' parameter of backtest"):
        ps.backtest(small_effects, holdout=2.0)
    # A given fit fixes the training set: no random split, no held-out experiment it saw.
    with pytest.raises(ParameterError, match="must be None or a sequence of experiment ids"):
        ps.backtest(small_effects, 0.3, fit=small_fit)
    seen = small_effects.experiments[0]
    with pytest.raises(ParameterError, match="not both"):
        ps.backtest(small_effects, [seen], fit=small_fit, model=ps.ProxyModel())
    with pytest.raises(ParameterError, match="that the given 'fit' was trained on"):
        ps.backtest(small_effects, [seen], fit=small_fit)
    with pytest.raises(ParameterError, match="no experiment that the given 'fit' did not see"):
        ps.backtest(small_effects, fit=small_fit)
    with pytest.raises(DataTypeError, match="'fit' parameter of backtest must be a ProxyFit"):
        ps.backtest(small_effects, [seen], fit="fit.nc")
    other = small_effects.select_proxies(["early_watch_min"])
    with pytest.raises(ParameterError, match="'fit' parameter of backtest was fitted on"):
        ps.backtest(other, [seen], fit=small_fit)


@pytest.mark.filterwarnings("ignore::proxyscope.errors.ConvergenceWarning")
def test_backtest_rejects_bad_truth(small_fit, small_effects) -> None:
    model = _RecordingModel(small_fit)
    some = small_effects.experiments[:2]
    with pytest.raises(ParameterError, match="lacks the held-out experiment"):
        ps.backtest(small_effects, list(some), model=model, truth={some[0]: 0.1})
    empty = xr.Dataset({"overall_effect": ("metric", [0.0])})
    with pytest.raises(ColumnError, match="must hold the variable 'experiment_effect'"):
        ps.backtest(small_effects, list(some), model=model, truth=empty)
    wrong = xr.Dataset(
        {"experiment_effect": (("experiment", "metric"), np.zeros((2, 1)))},
        coords={"experiment": list(some), "metric": ["revenue"]},
    )
    with pytest.raises(ColumnError, match="no metric 'long_retained'"):
        ps.backtest(small_effects, list(some), model=model, truth=wrong)
    with pytest.raises(DataTypeError, match="'truth' parameter of backtest must be"):
        ps.backtest(small_effects, list(some), model=model, truth=[0.1, 0.2])
    with pytest.raises(ParameterError, match="not finite"):
        ps.backtest(
            small_effects,
            list(some),
            model=model,
            truth=pd.Series([np.nan, 0.1], index=list(some)),
        )


# -- real sampling on the simulated world, judged against its truth -------------------------

N_TRAIN = 35


@pytest.fixture(scope="module")
def train_fit(sim_effects) -> Any:
    """Default model on the default world's first 35 experiments (4 chains x 500 draws)."""
    train = sim_effects.experiments[:N_TRAIN]
    return cached_fit(
        "backtest-train35",
        lambda: ps.ProxyModel(followups=0).fit(
            sim_effects.subset(train), draws=500, tune=500, chains=4, random_seed=11, progress=False
        ),
    )


@pytest.fixture(scope="module")
def sim_backtest(train_fit, sim_effects, sim_world) -> BacktestResult:
    """The last 15 experiments held out, scored against the world's true effects."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # the test fit is short
        return ps.backtest(sim_effects, fit=train_fit, truth=sim_world.truth, random_state=0)


@pytest.mark.slow
def test_adaptive_weights_beat_equal_weights_on_the_simulated_world(
    sim_backtest, train_fit, sim_effects
) -> None:
    res = sim_backtest
    held = sorted(res.predictions["experiment"].tolist())
    assert held == sorted(sim_effects.experiments[N_TRAIN:].tolist())
    assert not set(held) & set(train_fit.effects.experiments.tolist())
    assert res.reference == "truth"
    acc = res.table.set_index("method")["decision_accuracy"]
    assert acc["adaptive"] > acc["equal"]
    # The adaptive weights put almost all weight on the two proxies that track the
    # long-term effect (watch time and starts), not on ctr and rebuffering.
    w = res.table.set_index("method").loc["adaptive"]
    assert w["weight_early_watch_min"] + w["weight_early_starts"] > 0.8


@pytest.mark.slow
def test_adaptive_weights_against_random_forest_weights_on_the_simulated_world(
    sim_backtest, train_fit, sim_effects, sim_world
) -> None:
    # Fifteen held-out experiments resolve decision accuracy only to 0.067 per
    # experiment; the decision-accuracy comparison (adaptive ahead of the forest
    # over 5 worlds x 250 held-out experiments) is the benchmark's
    # (benchmarks/bench_backtest.py). Here: the error of the prediction, which
    # uses the size of every miss, is smaller with the adaptive weights than
    # with the forest's (measured 0.0044 against 0.0059; over 6 of the benchmark's
    # worlds the adaptive weights applied to raw readings scaled by the
    # true-effect spread averaged 0.0094, the denoised ones 0.0052),
    # and the two call signs alike up to one experiment.
    table = sim_backtest.table.set_index("method")
    assert table.at["adaptive", "rmse"] < table.at["random_forest", "rmse"]
    assert table.at["adaptive", "rmse"] < table.at["equal", "rmse"]
    assert table.at["adaptive", "n_correct"] >= table.at["random_forest", "n_correct"] - 1
    # Like for like (the fixed weightings read the same denoised readings):
    # adaptive is unchanged, and the forest's error shrinks to about the same
    # (measured 0.00450 against 0.00444 with the current model; 15 held-out
    # experiments cannot rank two errors 1% apart: the benchmark's many worlds do).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        same = ps.backtest(
            sim_effects, fit=train_fit, truth=sim_world.truth, random_state=0, readings="denoised"
        )
    assert same.readings == "denoised" and "denoised ones" in same.summary().attrs["text"]
    other = same.table.set_index("method")
    assert other.at["adaptive", "rmse"] == table.at["adaptive", "rmse"]
    assert other.at["random_forest", "rmse"] < table.at["random_forest", "rmse"]
    assert other.at["adaptive", "rmse"] < 1.05 * other.at["random_forest", "rmse"]


def test_denoised_readings_are_the_gaussian_conditional_mean() -> None:
    rng = np.random.default_rng(4)
    k, n_exp = 3, 6
    a = rng.normal(size=(2, k, k))
    cov = np.einsum("nij,nkj->nik", a, a) + 0.5 * np.eye(k)
    post = PosteriorMix(
        mean_tau=rng.normal(size=2),
        mean_theta=rng.normal(size=(2, k)),
        cov_tau_theta=rng.normal(size=(2, k)),
        cov_theta=cov,
    )
    b = rng.normal(size=(n_exp, k, k)) * 0.4
    noise = np.einsum("eij,ekj->eik", b, b) + 0.1 * np.eye(k)
    full = np.zeros((n_exp, k + 1, k + 1))
    full[:, 1:, 1:] = noise
    readings = rng.normal(size=(n_exp, k))
    mix = MixEffects(
        experiments=np.arange(n_exp),
        effect=np.column_stack([rng.normal(size=n_exp), readings]),
        noise_cov=full,
    )
    # Independently: precision-weighted average of prior mean and reading, per draw.
    want_theta = np.zeros((n_exp, k))
    want_tau = np.zeros(n_exp)
    for n in range(2):
        p_prior, p_noise = np.linalg.inv(cov[n]), np.linalg.inv(noise)
        for e in range(n_exp):
            post_cov = np.linalg.inv(p_prior + p_noise[e])
            mean = post_cov @ (p_prior @ post.mean_theta[n] + p_noise[e] @ readings[e])
            want_theta[e] += mean / 2
            # E[tau | x] = E[tau] + Cov(tau, theta) Sigma^-1 (E[theta | x] - m).
            slope = np.linalg.solve(cov[n], post.cov_tau_theta[n])
            want_tau[e] += (post.mean_tau[n] + slope @ (mean - post.mean_theta[n])) / 2
    np.testing.assert_allclose(post.denoise(mix), want_theta, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(post.predictive_mean(mix), want_tau, rtol=1e-10, atol=1e-12)
    # Noiseless readings are their own estimate.
    exact = dataclasses.replace(mix, noise_cov=np.zeros_like(full))
    np.testing.assert_allclose(post.denoise(exact), readings, rtol=1e-10, atol=1e-12)


def test_bad_readings_is_named(small_fit, small_effects) -> None:
    with pytest.raises(ParameterError, match=r"'readings'.*'raw', 'denoised'.*'clean'"):
        ps.backtest(small_effects, fit=small_fit, readings="clean")

"""A history of A/B tests and quasi-experiments read by the real design estimators."""

from __future__ import annotations

import re
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import proxyscope as ps
from proxyscope.analyses.designs import slope_draws
from proxyscope.errors import ParameterError
from proxyscope.simulate import designed_units as du
from proxyscope.simulate.designed import (
    QUASI,
    UNIT_SEGMENT,
    DesignedHistory,
    designed_history,
)
from proxyscope.simulate.designed_naive import naive_effects

TWO = {
    "beta": (0.8, 0.15),
    "mu": ((1.0, 0.5), (0.5, 1.0), (1.5, 0.0), (0.0, 0.8)),
    "sd_e": (1.0, 0.8),
    "sd_c": (0.3, 0.3),
}
#: Twelve experiments of each quasi-experimental design (48 cells each) and twelve A/B.
EVEN = dict.fromkeys(("ab", *QUASI), 0.2)


def _se(effects: ps.CellEffects) -> np.ndarray:
    return np.sqrt(np.einsum("cmm->cm", effects.noise_cov))


@pytest.fixture(scope="module")
def noisy() -> DesignedHistory:
    return designed_history(n_experiments=60, design_shares=EVEN, seed=3, **TWO)


def test_estimators_hit_the_latent_effects_when_noise_vanishes() -> None:
    """With the units' noise ~0 every design's estimate is the cell's latent effect,
    although baselines, trends, covariates and the running score stay at full size
    (they scale with noise_sd: at 1e-8 they are tiny, so the effects must carry it)."""
    history = designed_history(n_experiments=20, design_shares=EVEN, noise_sd=1e-8, seed=5, **TWO)
    effects = history.effects
    assert set(effects.design) == {"ab", *QUASI}
    assert effects.n_cells == 80  # no cell dropped
    np.testing.assert_allclose(effects.effect, history.latent.to_numpy(), rtol=0, atol=1e-6)
    # the effects are of order 1, so this is the latent effect and nothing else
    assert np.abs(history.latent.to_numpy()).max() > 1.0
    assert _se(effects).max() < 1e-6


@pytest.mark.parametrize("design", QUASI)
def test_confounding_is_large_and_the_estimator_removes_it(
    noisy: DesignedHistory, design: str
) -> None:
    """Per design, 48 cells: the estimator's errors are centred on 0 and of the size of its
    own standard errors (about noise_sd), while a naive difference in means from the
    same unit data is off by many standard errors."""
    effects = noisy.effects
    rows = effects.design == design
    error = effects.effect[rows] - noisy.latent.to_numpy()[rows]
    se = _se(effects)[rows]
    assert 0.7 < np.median(se) / 0.5 < 1.4  # noise_sd = 0.5
    z = error / se
    assert np.all(np.abs(z.mean(axis=0)) < 0.5), z.mean(axis=0)  # sd of the mean ~0.14
    mean_z2 = (z**2).mean(axis=0)
    assert np.all((mean_z2 > 0.5) & (mean_z2 < 1.8)), mean_z2
    bias = naive_effects(noisy).effect[rows] - noisy.latent.to_numpy()[rows]
    # the outcome's naive bias averages several estimator standard errors
    assert bias[:, 0].mean() > 2 * np.median(se[:, 0]), bias.mean(axis=0)


def test_the_joint_covariance_carries_the_units_noise_correlation(
    noisy: DesignedHistory,
) -> None:
    effects = noisy.effects
    cov = effects.noise_cov
    corr = cov[:, 0, 1] / np.sqrt(cov[:, 0, 0] * cov[:, 1, 1])
    for design in ("did", "rdd", "ipw"):
        got = corr[effects.design == design].mean()
        assert got == pytest.approx(-0.5, abs=0.1), (design, got)
    # placebos mix the noise with the factors' fit error: still clearly negative
    assert corr[effects.design == "synthetic_control"].mean() < -0.15


def test_ab_cells_and_truth_are_from_models_exactly() -> None:
    history = designed_history(n_experiments=24, seed=11, **TWO)
    cells, truth = ps.simulate.from_model(n_experiments=24, seed=11, **TWO)
    ab = history.experiment_design.index[history.experiment_design == "ab"]
    assert len(ab) == 12
    want = cells.subset(ab)
    got = history.effects.subset(ab)
    assert np.array_equal(got.effect, want.effect)
    assert np.array_equal(got.noise_cov, want.noise_cov)
    assert got.cells().equals(want.cells())
    assert np.array_equal(history.truth.latent, truth.latent)
    assert np.array_equal(history.truth.beta, np.array([0.8, 0.15]))
    ab_rows = history.effects.design == "ab"
    in_ab = np.isin(cells.experiment, ab)
    assert np.array_equal(history.latent.to_numpy()[ab_rows], truth.latent[in_ab])
    # a history's A/B cells do not depend on the other designs' shares
    other = designed_history(
        n_experiments=24, design_shares={"ab": 0.5, "did": 0.5}, seed=11, **TWO
    )
    ab = other.experiment_design.index[other.experiment_design == "ab"]
    assert np.array_equal(other.effects.subset(ab).effect, cells.subset(ab).effect)


def test_designs_counts_alignment_and_determinism() -> None:
    history = designed_history(n_experiments=16, seed=2)
    counts = history.experiment_design.value_counts().to_dict()
    assert counts == {"ab": 8, "did": 2, "rdd": 2, "ipw": 2, "synthetic_control": 2}
    effects = history.effects
    per_cell = dict(zip(effects.experiment.tolist(), effects.design.tolist(), strict=True))
    assert per_cell == history.experiment_design.to_dict()
    assert list(effects.segments) == ["segment"]
    assert np.array_equal(history.latent.coords["design"].to_numpy().astype(str), effects.design)
    # latent rows follow the cells: the A/B cells' latent effects are from_model's
    _, truth = ps.simulate.from_model(n_experiments=16, seed=2)
    index = {
        (e, s): i
        for i, (e, s) in enumerate(
            zip(np.repeat(np.arange(16), 4), np.tile(list("abcd"), 16), strict=True)
        )
    }
    rows = [
        index[(e, s)] for e, s in zip(effects.experiment, effects.cells()["segment"], strict=True)
    ]
    assert np.array_equal(history.latent.to_numpy(), truth.latent[rows])
    # the unit data each estimator read
    assert set(history.units) == set(QUASI)
    assert len(history.units["did"]) == 2 * 4 * du.DID_UNITS * du.DID_PERIODS
    assert UNIT_SEGMENT in history.units["ipw"].columns
    assert all(isinstance(w, str) for w in history.warnings)
    again = designed_history(n_experiments=16, seed=2)
    assert np.array_equal(again.effects.effect, effects.effect)
    assert np.array_equal(again.effects.noise_cov, effects.noise_cov)


def _match(text: str) -> str:
    return re.escape(text)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_experimentz": 10}, "Unknown option 'n_experimentz' of designed_history"),
        ({"n_experimentz": 10}, "Did you mean 'n_experiments'?"),
        ({"seed": -1}, "The 'seed' parameter of designed_history must be an integer >= 0; got -1"),
        ({"seed": 1.5}, "got 1.5"),
        ({"design_shares": [0.5, 0.5]}, "must be a mapping of design to share"),
        ({"design_shares": {"ab": 0.5, "dif": 0.5}}, "unknown design 'dif'"),
        ({"design_shares": {"ab": 0.5, "dif": 0.5}}, "Did you mean 'did'?"),
        ({"design_shares": {"ab": 0.5, "cluster": 0.5}}, "design 'cluster' is not simulated"),
        ({"design_shares": {"ab": 0.5, "did": 0.4}}, "shares must sum to 1; got 0.9"),
        ({"design_shares": {"ab": 1.5, "did": -0.5}}, "['ab']: must be"),
        (
            {"design_shares": {"ab": 0.9, "did": 0.1}, "n_experiments": 10},
            "gives 'did' one experiment of 10; its estimator needs at least two",
        ),
        ({"noise_corr": -0.6, "beta": (0.8, 0.15)}, "'noise_corr' parameter of designed_history"),
        ({"n_experiments": 1}, "from_model: need n_experiments >= 2"),
    ],
)
def test_bad_arguments_name_the_parameter_and_the_value(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ParameterError, match=_match(message)):
        designed_history(**kwargs)


def test_unit_generators_check_the_effect_shape() -> None:
    keys = pd.DataFrame({"experiment": [0, 1], UNIT_SEGMENT: ["a", "a"]})
    with pytest.raises(ParameterError, match=_match("one row per cell (2)")):
        du.ipw_rows(
            keys,
            np.zeros((3, 2)),
            ["y", "x"],
            np.random.default_rng(0),
            noise_sd=1.0,
            noise_corr=0.0,
        )


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_a_designed_history_recovers_the_slopes_and_biased_cells_do_not(seed: int) -> None:
    """bench_designs' world (60 experiments, slopes 0.8 and 0.15), half A/B and an eighth
    each did, rdd, ipw, synthetic control: the default model (bias term on) passes its
    diagnostics and its 90% intervals hold both true slopes. The check can fail: with the
    quasi-experimental cells' effects replaced by naive differences in means of the same
    units (as precise as the estimators claim, labelled 'ab'), both intervals miss.
    (benchmarks/bench_design_slopes.py runs 10 seeds, and the naive cells with their own,
    much wider, covariance.)"""
    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    from bench_designs import WORLD

    history = designed_history(seed=seed, **WORLD)
    assert history.effects.designs == ["ab", *QUASI]
    truth = np.asarray(history.truth.beta)
    confounded = naive_effects(history, covariance="estimator")
    assert confounded.designs == ["ab"]
    got = {}
    for name, effects in (("designed", history.effects), ("confounded", confounded)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = ps.ProxyModel().fit(
                effects, draws=500, tune=500, random_seed=seed, progress=False
            )
        draws = slope_draws(fit)
        got[name] = (fit.trustworthy, *np.quantile(draws, [0.05, 0.95], axis=0))
    passed, lo, hi = got["designed"]
    assert passed
    assert np.all((lo <= truth) & (truth <= hi)), (lo, hi, truth)
    _, lo, hi = got["confounded"]
    assert np.all((truth < lo) | (truth > hi)), (lo, hi, truth)


def test_naive_effects_variants_and_arguments() -> None:
    history = designed_history(n_experiments=16, seed=4, **TWO)
    effects = history.effects
    naive = naive_effects(history)
    precise = naive_effects(history, covariance="estimator")
    assert naive.designs == precise.designs == ["ab"]
    assert naive.cells().equals(effects.cells())
    ab = effects.design == "ab"
    assert np.array_equal(naive.effect[ab], effects.effect[ab])
    assert np.array_equal(naive.effect, precise.effect)
    assert np.array_equal(precise.noise_cov, effects.noise_cov)
    # the naive difference's own covariance holds the confounders' variance
    assert np.all(
        np.diagonal(naive.noise_cov, axis1=1, axis2=2)[~ab].mean(0)
        > 2 * np.diagonal(effects.noise_cov, axis1=1, axis2=2)[~ab].mean(0)
    )
    # an independent check of one ipw cell: treated mean minus untreated mean
    rows = history.units["ipw"]
    e0 = rows["experiment"].iloc[0]
    cell = rows[(rows["experiment"] == e0) & (rows[UNIT_SEGMENT] == "b")]
    arm = cell[du.OPTED_IN] == 1
    want = cell.loc[arm, "long_term"].mean() - cell.loc[~arm, "long_term"].mean()
    where = np.flatnonzero((effects.experiment == e0) & (effects.cells()["segment"] == "b"))
    assert naive.effect[where[0], 0] == pytest.approx(want, rel=1e-12)
    with pytest.raises(
        ParameterError,
        match=_match(
            "must be one of ['naive', 'estimator']; got 'estimater'. Did you mean 'estimator'?"
        ),
    ):
        naive_effects(history, covariance="estimater")
    with pytest.raises(ParameterError, match="must be a DesignedHistory; got CellEffects"):
        naive_effects(effects)  # type: ignore[arg-type]

"""A history of many designs: shares, the bias each design adds, and from_model underneath."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import numpy as np
import pytest

from proxyscope import simulate
from proxyscope.errors import ParameterError
from proxyscope.simulate import MixedConfig

BIASED = ["did", "rdd", "ipw", "synthetic_control", "external"]


@pytest.fixture(scope="module")
def large() -> simulate.MixedHistory:
    """2,000 experiments x 4 levels, two proxies; four biased designs of different sizes."""
    return simulate.mixed_history(
        n_experiments=2000,
        mu=((1.0, 0.0), (0.5, 1.0), (1.5, -1.0), (0.0, 0.5)),
        beta=(0.5, -0.3),
        sd_e=(1.0, 0.5),
        sd_c=(0.3, 0.2),
        design_shares={
            "ab": 0.4,
            "cluster": 0.1,
            "did": 0.2,
            "ipw": 0.1,
            "rdd": 0.1,
            "external": 0.1,
        },
        bias_sd_multiple={"did": 2.0, "external": 3.0},
        bias_corr={"ipw": 0.3, "external": -0.4},
        seed=4,
    )


def test_design_shares_are_exact_counts_per_experiment() -> None:
    history = simulate.mixed_history(n_experiments=60, seed=2)
    counts = history.experiment_design.value_counts().to_dict()
    assert counts == {"ab": 30, "cluster": 6, "did": 6, "ipw": 6, "rdd": 6, "synthetic_control": 6}
    effects = history.effects
    per_cell = dict(zip(effects.experiment.tolist(), effects.design.tolist(), strict=True))
    assert per_cell == history.experiment_design.to_dict()
    assert np.array_equal(history.bias.coords["design"].values.astype(str), effects.design)
    # largest remainder: 7 x (0.5, 0.25, 0.25) = 3.5, 1.75, 1.75 -> 3, 2, 2
    config = MixedConfig(design_shares={"ab": 0.5, "did": 0.25, "rdd": 0.25})
    assert config.counts(7) == {"ab": 3, "did": 2, "rdd": 2}
    assert config.counts(8) == {"ab": 4, "did": 2, "rdd": 2}
    assert MixedConfig(design_shares={"ab": 0.5, "cluster": 0.5}).counts(5) == {
        "ab": 3,
        "cluster": 2,
    }


def test_cluster_cells_carry_cluster_counts() -> None:
    history = simulate.mixed_history(n_experiments=30, clusters_per_arm=25, seed=1)
    cluster = history.effects.design == "cluster"
    assert cluster.any()
    for name in ("n_clusters_treat", "n_clusters_control"):
        got = history.effects.variable(name)
        assert (got[cluster] == 25).all() and (got[~cluster] == 0).all()


def test_bias_covariance_is_reproduced_over_many_cells(large: simulate.MixedHistory) -> None:
    effects, truth = large.effects, large.truth
    error = effects.effect - truth.latent  # bias + sampling noise
    sampling = effects.noise_cov[0]
    sd = np.sqrt(np.diag(sampling))
    assert list(large.bias_cov.coords["design"].values) == ["did", "rdd", "ipw", "external"]
    expected = {"did": (2.0, 0.8), "ipw": (2.5, 0.3), "rdd": (2.5, 0.8), "external": (3.0, -0.4)}
    for design, (multiple, rho) in expected.items():
        cov = large.bias_cov.sel(design=design).to_numpy()
        want = rho * np.outer(multiple * sd, multiple * sd)
        np.fill_diagonal(want, (multiple * sd) ** 2)
        np.testing.assert_allclose(cov, want, rtol=1e-12)
        rows = effects.design == design
        n = int(rows.sum())
        drawn = np.cov(large.bias.to_numpy()[rows].T)
        observed = np.cov(error[rows].T)  # what a model sees: S + Sigma_d
        for got, target in ((drawn, cov), (observed, cov + sampling)):
            var = np.diag(target)
            # sd of a sample variance: var * sqrt(2 / n); of a correlation: (1 - r^2) / sqrt(n)
            assert np.all(np.abs(np.diag(got) - var) < 4.5 * var * np.sqrt(2 / n)), design
            r_got = got / np.sqrt(np.outer(np.diag(got), np.diag(got)))
            r_want = target / np.sqrt(np.outer(var, var))
            assert np.all(np.abs(r_got - r_want) < 4.5 * (1 - r_want**2) / np.sqrt(n) + 1e-9)


def test_randomized_cells_are_unbiased_and_biased_cells_are_not(
    large: simulate.MixedHistory,
) -> None:
    effects, truth = large.effects, large.truth
    error = effects.effect - truth.latent
    randomized = np.isin(effects.design, ["ab", "cluster"])
    assert np.all(large.bias.to_numpy()[randomized] == 0)
    mean = error[randomized].mean(axis=0)
    se = error[randomized].std(axis=0, ddof=1) / np.sqrt(randomized.sum())
    assert np.all(np.abs(mean) < 4 * se)
    # their errors are the sampling noise alone: variance S
    sampling = np.diag(effects.noise_cov[0])
    var = error[randomized].var(axis=0, ddof=1)
    assert np.all(np.abs(var / sampling - 1) < 4.5 * np.sqrt(2 / randomized.sum()))
    # noise_cov holds the sampling covariance only, in every cell
    cells, _ = simulate.from_model(
        n_experiments=3, mu=((1.0, 0.0), (0.5, 1.0), (1.5, -1.0), (0.0, 0.5)), beta=(0.5, -0.3)
    )
    assert np.array_equal(
        effects.noise_cov, np.broadcast_to(cells.noise_cov[0], effects.noise_cov.shape)
    )
    biased = ~randomized
    assert np.all(error[biased].var(axis=0) > 4 * sampling)


def test_no_biased_design_is_exactly_from_models_world() -> None:
    options: dict[str, Any] = {"n_experiments": 25, "beta": (0.7,), "noise_corr": 0.2, "seed": 9}
    cells, truth = simulate.from_model(**options)
    only_ab = simulate.mixed_history(design_shares={"ab": 1.0}, **options)
    assert only_ab.effects.fingerprint() == cells.fingerprint()
    np.testing.assert_array_equal(only_ab.effects.effect, cells.effect)
    np.testing.assert_array_equal(only_ab.truth.latent, truth.latent)
    assert only_ab.bias_cov.sizes["design"] == 0
    randomized = simulate.mixed_history(design_shares={"ab": 0.5, "cluster": 0.5}, **options)
    np.testing.assert_array_equal(randomized.effects.effect, cells.effect)
    assert randomized.effects.designs == ["ab", "cluster"]
    unbiased = simulate.mixed_history(bias_sd_multiple=0.0, **options)
    np.testing.assert_array_equal(unbiased.effects.effect, cells.effect)
    # with biased designs the sampling draws are still from_model's: effects = its + bias
    mixed = simulate.mixed_history(**options)
    assert np.array_equal(mixed.effects.effect, cells.effect + mixed.bias.to_numpy())
    assert np.any(mixed.bias.to_numpy() != 0)


def test_reproducible_by_seed() -> None:
    a = simulate.mixed_history(n_experiments=12, seed=3)
    b = simulate.mixed_history(MixedConfig(), n_experiments=12, seed=3)
    c = simulate.mixed_history(n_experiments=12, seed=4)
    assert a.effects.fingerprint() == b.effects.fingerprint()
    assert a.bias.identical(b.bias) and a.bias_cov.identical(b.bias_cov)
    assert a.effects.fingerprint() != c.effects.fingerprint()


def raises(match: str) -> Any:
    return pytest.raises(ParameterError, match=re.escape(match))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"design_shares": {"ab": 0.5, "did": 0.4}},
            "MixedConfig.design_shares: shares must sum to 1; got 0.9",
        ),
        (
            {"design_shares": {"ab": 1.2, "did": -0.2}},
            "MixedConfig.design_shares['ab']: must be a number in [0, 1]",
        ),
        ({"design_shares": {"a/b": 1.0}}, "MixedConfig.design_shares: unknown design 'a/b'"),
        ({"design_shares": {"synthetic": 1.0}}, "Did you mean 'synthetic_control'?"),
        ({"design_shares": {}}, "MixedConfig.design_shares: must be a mapping of design to share"),
        ({"design_shares": 0.5}, "MixedConfig.design_shares: must be a mapping"),
        ({"bias_sd_multiple": -1.0}, "MixedConfig.bias_sd_multiple['did']: must be a number >= 0"),
        (
            {"bias_sd_multiple": {"ab": 1.0}},
            "'ab' is a randomized design, whose estimates carry no bias",
        ),
        ({"bias_corr": 1.5}, "MixedConfig.bias_corr['did']: must be a number in (-1, 1]; got 1.5"),
        ({"bias_corr": {"rdd": float("nan")}}, "MixedConfig.bias_corr['rdd']: must be a number"),
        ({"clusters_per_arm": 1}, "MixedConfig.clusters_per_arm: must be an integer >= 2; got 1"),
    ],
)
def test_config_fails_closed(options: dict[str, Any], message: str) -> None:
    with raises(message):
        MixedConfig(**options)


def test_mixed_history_options_fail_closed() -> None:
    with raises("Unknown option 'n_experiment' of mixed_history"):
        simulate.mixed_history(n_experiment=10)
    with raises("Did you mean 'n_experiments'?"):
        simulate.mixed_history(n_experiment=10)
    with raises("config must be a MixedConfig; got dict"):
        simulate.mixed_history({"ab": 1.0})  # type: ignore[arg-type]
    with raises("MixedConfig.bias_corr['did']: must be >= -0.5 for 3 metrics"):
        simulate.mixed_history(
            n_experiments=10,
            bias_corr=-0.7,
            beta=(0.5, 0.2),
            mu=((1, 0),) * 4,
            sd_e=(1, 1),
            sd_c=(0.3, 0.3),
        )
    with raises("The 'seed' parameter of mixed_history must be an integer >= 0; got -1"):
        simulate.mixed_history(seed=-1)
    with raises("from_model: need n_experiments >= 2"):
        simulate.mixed_history(n_experiments=1)
    config = MixedConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.clusters_per_arm = 3  # type: ignore[misc]
    assert hash(config) == hash(MixedConfig())

"""Bivariate normal probabilities against SciPy and Monte Carlo."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from proxyscope.core.bvn import bvn_cdf, prob_opposite_signs


def test_cdf_matches_scipy_including_axes_and_extreme_correlations() -> None:
    rng = np.random.default_rng(4)
    cases = [(0, 0, 0.5), (0, 0, -0.9), (0, 1.2, -0.3), (-0.7, 0, 0.8), (2, 2, -0.999)]
    cases += [tuple(x) for x in np.c_[rng.normal(0, 2, (60, 2)), rng.uniform(-0.999, 0.999, 60)]]
    for h, k, r in cases:
        ref = multivariate_normal([0, 0], [[1, r], [r, 1]], abseps=1e-13, releps=1e-13).cdf([h, k])
        assert abs(float(bvn_cdf(h, k, r)) - ref) < 1e-12, (h, k, r)


def test_cdf_is_vectorised() -> None:
    h = np.array([[0.1, -1.0], [2.0, 0.0]])
    got = bvn_cdf(h, -h, 0.3)
    assert got.shape == (2, 2)
    assert float(got[1, 1]) == pytest.approx(0.25 + np.arcsin(0.3) / (2 * np.pi), abs=1e-15)


def test_opposite_sign_probability_matches_monte_carlo() -> None:
    rng = np.random.default_rng(0)
    mean = np.array([0.3, -0.2])
    cov = np.array([[1.0, 0.6], [0.6, 2.0]])
    z = rng.multivariate_normal(mean, cov, 1_000_000)
    mc = np.mean(z[:, 0] * z[:, 1] < 0)
    exact = float(prob_opposite_signs(mean[0], mean[1], cov[0, 0], cov[1, 1], cov[0, 1]))
    assert abs(exact - mc) < 4 * np.sqrt(mc * (1 - mc) / z.shape[0])


def test_perfectly_aligned_effects_never_flip_and_constants_follow_their_sign() -> None:
    # (X, Y) = (t, 2t): same sign always (correlation 1 up to rounding).
    assert float(prob_opposite_signs(0.0, 0.0, 1.0, 4.0, 2.0 - 1e-12)) < 1e-5
    # A constant positive X: the flip probability is P(Y < 0).
    assert float(prob_opposite_signs(1.0, 0.5, 0.0, 1.0, 0.0)) == pytest.approx(0.3085375, 1e-6)
    assert float(prob_opposite_signs(-1.0, 0.5, 0.0, 1.0, 0.0)) == pytest.approx(0.6914625, 1e-6)
    # An exactly zero constant never has an opposite sign.
    assert float(prob_opposite_signs(0.0, 0.5, 0.0, 1.0, 0.0)) == 0.0

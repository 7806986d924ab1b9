"""Simulation-based calibration (SBC) of the proxy model, and the model world it draws.

The slow tests run a small version of ``benchmarks/bench_sbc.py`` (whose
docstring explains the design): 40 replications, each a draw from the model's
prior kept only when its simulated data have the model's data-dependent unit
within 10% of 1 (so the prior the model uses is the one the data came from),
a fit (2 chains x (400 + 600)), and the rank of every quantity's truth among
99 posterior draws thinned by the ESS. The check (``sbc.verdict``) fails when
any quantity's ranks fail a chi-square or KS test of uniformity at 0.01 /
(number of quantities), or when the share of ranks in the outer 10%, pooled
over quantities per replication, is more than 3.5 standard errors from 0.1.
That check cannot pass a miscalibrated posterior: the same fits' posteriors
shrunk 0.7x about their means (intervals 30% too narrow) fail it, which the
second slow test asserts (measured: pooled outer share 0.26, z = 9.4, and 4
quantities fail on their own; the real posteriors: 0.09, z = -0.7, none).
36 s on an idle 2-core machine, about 3 minutes on a loaded one.

The fast tests check the model world's input validation (hostile inputs,
property-based) and its draws against the model's moments.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pytest
from _fuzz import judge
from conftest import REPO
from hypothesis import given
from hypothesis import strategies as st

from proxyscope.simulate.model_world import ModelParameters, simulate_cells


def _sbc() -> ModuleType:
    path = REPO / "benchmarks" / "sbc.py"
    spec = importlib.util.spec_from_file_location("sbc", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["sbc"] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def sbc_run() -> tuple[ModuleType, pd.DataFrame]:
    sbc = _sbc()
    config = sbc.Config(tolerance=0.1, tune=400, draws=600, seed=31)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = pd.DataFrame(list(sbc.run(config, "conditioned", 40)))
    return sbc, frame


@pytest.mark.slow
def test_sbc_ranks_of_every_quantity_are_uniform(sbc_run: tuple[ModuleType, Any]) -> None:
    sbc, frame = sbc_run
    assert len(frame) == 40
    # The vectorised screen computed the model's own unit (metric_scales) exactly.
    assert frame.screen_gap.max() < 1e-9
    scales = frame[[c for c in frame.columns if c.startswith("scale_")]].to_numpy()
    assert np.abs(scales - 1).max() <= 0.1 + 1e-12
    assert sbc.verdict(frame) == [], sbc.uniformity_table(frame).round(3).to_string()


@pytest.mark.slow
def test_sbc_check_rejects_a_posterior_shrunk_to_0_7(sbc_run: tuple[ModuleType, Any]) -> None:
    sbc, frame = sbc_run
    failures = sbc.verdict(frame, "shrunk__")
    assert any(f.startswith("pooled") for f in failures), failures
    assert sbc.pooled_outer(frame, "shrunk__")["share"] > 0.18


# -- the model world: moments and hostile input ----------------------------------


def _params(
    n: int,
    oe: np.ndarray,
    oc: np.ndarray,
    beta: np.ndarray,
    sigma: np.ndarray,
    sd_y: float,
) -> ModelParameters:
    k = oe.shape[0]
    nu = np.array([0.1, 0.2, 0.3])
    mu = np.arange(3 * k, dtype=float).reshape(3, k)
    return ModelParameters(
        ("a", "b", "c"),
        np.tile(nu, (n, 1)),
        np.tile(mu, (n, 1, 1)),
        np.tile(beta, (n, 1, 1)),
        np.tile(sigma, (n, 1)),
        np.tile(oe, (n, 1, 1)),
        np.tile(oc, (n, 1, 1)),
        np.full(n, sd_y),
    )


def test_simulated_cells_have_the_models_moments() -> None:
    """Per cell, (tau, theta) ~ N((nu_l, mu_l), [[b'Wb + sd_y^2 + sigma_l^2, (Wb)'], [Wb, W]])
    with W = Omega_E + Omega_C; two cells of one experiment share eta (and eta0):
    Cov(tau_c, tau_c') = b_l' Omega_E b_l' + sd_y^2; observed minus true is the noise."""
    oe = np.array([[1.0, 0.4], [0.4, 0.5]])
    oc = np.array([[0.2, 0.05], [0.05, 0.1]])
    beta = np.array([[0.5, -0.3], [1.0, 0.2], [0.0, 0.0]])
    sigma = np.array([0.3, 0.2, 0.1])
    n = 40_000
    sim = simulate_cells(
        _params(n, oe, oc, beta, sigma, 0.4), n_experiments=3, noise_sd=0.5, noise_corr=0.3
    )
    w = oe + oc
    for cell in (0, 1, 5):
        lev = cell % 3
        want = np.zeros((3, 3))
        want[1:, 1:] = w
        want[0, 1:] = want[1:, 0] = w @ beta[lev]
        want[0, 0] = beta[lev] @ w @ beta[lev] + 0.16 + sigma[lev] ** 2
        x = sim.latent[:, cell]
        assert np.abs(np.cov(x.T) - want).max() < 0.05
        mean = np.r_[[0.1, 0.2, 0.3][lev], np.arange(6.0).reshape(3, 2)[lev]]
        assert np.abs(x.mean(axis=0) - mean).max() < 0.03
    got = np.cov(sim.latent[:, 0, 0], sim.latent[:, 1, 0])[0, 1]
    assert abs(got - (beta[0] @ oe @ beta[1] + 0.16)) < 0.03
    noise = 0.25 * (np.full((3, 3), 0.3) + 0.7 * np.eye(3))
    assert np.abs(np.cov((sim.effect - sim.latent)[:, 4].T) - noise).max() < 0.01


def _finite(lo: float = -3.0, hi: float = 3.0) -> Any:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


BAD = [
    "nan",
    "inf",
    "negative",
    "shape",
    "asymmetric",
    "indefinite",
    "text",
    "levels",
    "n_experiments",
    "noise_sd",
    "noise_corr",
    "seed",
]


@pytest.mark.fuzz
@given(
    k=st.integers(1, 3),
    n=st.integers(1, 3),
    levels=st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=4, unique=True),
    values=st.lists(_finite(), min_size=64, max_size=64),
    zero_c=st.booleans(),
    zero_sigma=st.booleans(),
    bad=st.sampled_from([None, None, None, *BAD]),
    which=st.sampled_from(["nu", "mu", "beta", "sigma", "omega_e", "omega_c", "sd_e_outcome"]),
)
def test_model_world_validates_its_input(
    k: int,
    n: int,
    levels: list[str],
    values: list[float],
    zero_c: bool,
    zero_sigma: bool,
    bad: str | None,
    which: str,
) -> None:
    """Valid parameters give cells whose true effects follow the model exactly where
    the randomness is switched off (no within-cell deviation: theta_c = mu_l + eta_e;
    no residual: tau_c = nu_l + eta0_e + beta_l'(theta_c - mu_l)); invalid ones raise
    a ParameterError naming what was wrong."""
    n_lev = len(levels)
    pool = np.resize(np.asarray(values), 4 * n * n_lev * k + 4 * n * k * k + 4 * n)
    take = iter(np.split(pool, np.cumsum([n * n_lev, n * n_lev * k, n * n_lev * k, n * n_lev])))
    a = pool[: n * k * k].reshape(n, k, k)
    fields: dict[str, Any] = {
        "nu": next(take).reshape(n, n_lev),
        "mu": next(take).reshape(n, n_lev, k),
        "beta": next(take).reshape(n, n_lev, k),
        "sigma": 0.0 * next(take).reshape(n, n_lev)
        if zero_sigma
        else np.abs(pool[: n * n_lev]).reshape(n, n_lev),
        "omega_e": a @ np.swapaxes(a, 1, 2),
        "omega_c": np.zeros((n, k, k)) if zero_c else 0.5 * a @ np.swapaxes(a, 1, 2),
        "sd_e_outcome": np.abs(pool[:n]),
    }
    kwargs: dict[str, Any] = {"n_experiments": 3, "noise_sd": 0.5, "noise_corr": 0.2, "seed": 1}
    names = [which]
    if bad in ("nan", "inf"):
        fields[which] = np.where(np.ones_like(fields[which], dtype=bool), fields[which], 0.0)
        fields[which].flat[0] = np.nan if bad == "nan" else np.inf
    elif bad == "negative":
        which = names[0] = "sigma" if which in ("nu", "mu", "beta", "sigma") else "sd_e_outcome"
        fields[which] = fields[which] - 10.0
    elif bad == "shape":
        fields[which] = np.zeros((n + 1, 7))
    elif bad in ("asymmetric", "indefinite"):
        which = names[0] = "omega_c" if which == "omega_c" else "omega_e"
        m = np.tile(np.eye(k), (n, 1, 1))
        if bad == "indefinite" or k == 1:
            m[:, 0, 0] = -1.0
        else:
            m[:, 0, 1] = 0.5
        fields[which] = m
    elif bad == "text":
        fields[which] = "x"
    elif bad == "levels":
        names = ["levels"]
        levels = [*levels, levels[0]] if len(levels) > 1 else [""]
    elif bad in ("n_experiments", "noise_sd", "noise_corr", "seed"):
        names = [bad]
        kwargs[bad] = {"n_experiments": 1, "noise_sd": float("nan"), "noise_corr": -0.99}.get(
            bad, -1
        )
        if bad == "noise_corr" and k == 1:
            kwargs[bad] = 1.0  # the bound is -1/(M - 1) = -1 for two metrics

    def call() -> Any:
        params = ModelParameters(tuple(levels), **fields)
        return params, simulate_cells(params, **kwargs)

    def check(result: Any) -> bool:
        _, sim = result
        e, n_lev = 3, len(levels)
        lat = sim.latent.reshape(n, e, n_lev, k + 1)
        eta = sim.eta
        assert lat.shape == (n, e, n_lev, k + 1) and sim.effect.shape == sim.latent.shape
        dev = lat[..., 1:] - fields["mu"][:, None]
        if zero_c:
            assert np.allclose(dev, eta[:, :, None, 1:], atol=1e-9)
        if zero_sigma:
            resid = (
                lat[..., 0]
                - fields["nu"][:, None]
                - eta[:, :, None, 0]
                - np.einsum("nlk,nelk->nel", fields["beta"], dev)
            )
            assert np.abs(resid).max() < 1e-9
        units = np.arange(1.0, k + 2)
        cells, scaled = sim.cells(n - 1, units=units)
        assert np.allclose(cells.effect, sim.effect[n - 1] * units)
        assert np.allclose(scaled.beta[0], fields["beta"][n - 1] * units[0] / units[1:])
        return True

    judge(
        "simulate.model_draws",
        call,
        valid=bad is None,
        names=names,
        check=check,
        detail=(bad, which, k, n, levels),
    )

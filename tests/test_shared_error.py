"""The error an experiment's cells share (CellEffects' ``shared_cov``), in the model.

When clusters span an experiment's segment cells, the cells' errors are
correlated: Cov(d_c, d_c') = U_e. The model integrates one error u_e ~ N(0, U_e)
per experiment with eta_e (each cell keeping its own S_c - U_e). Checked here
against independent dense computations: the stored per-experiment marginal
density equals the stacked Gaussian with U_e in every pair of an experiment's
cells; the per-cell density and latent effects are read given the recovered
u_e; the compiled posterior's gradient equals finite differences; held-out
experiments are scored the same way; and cells without a shared part give
exactly the model without it. The kernel itself is checked in test_kernels.py;
calibration against a world's truth in test_cluster_truth.py.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats
from test_fit import _cell_moments, _draw_params
from test_model_build import _cells

import proxyscope as ps
from proxyscope import dims
from proxyscope.model.heldout import heldout_experiment_loglik
from proxyscope.model.native import NativeDensity
from proxyscope.model.posterior import SHARED_ERROR
from proxyscope.model.priors import Priors
from proxyscope.model.setup import Prepared, prepare

SHARED = "shared_cov"


def with_shared(cells: ps.CellEffects, size: float, seed: int) -> ps.CellEffects:
    """``cells`` plus one error per experiment, shared by its cells, of covariance U_e
    (``size`` times the cells' mean noise covariance, a random correlation); every
    cell's noise_cov gains U_e and carries it as shared_cov."""
    rng = np.random.default_rng(seed)
    m = len(cells.metrics)
    exp = np.asarray(cells.experiment, dtype=int)
    base = cells.noise_cov.mean(axis=0)
    shared = np.empty((exp.max() + 1, m, m))
    for e in range(len(shared)):
        a = rng.normal(size=(m, m))
        cov = a @ a.T + m * np.eye(m)
        corr = cov / np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
        sd = np.sqrt(size * np.diag(base)) * rng.uniform(0.5, 1.5, m)
        shared[e] = corr * np.outer(sd, sd)
    u = np.einsum("eij,ej->ei", np.linalg.cholesky(shared), rng.standard_normal((len(shared), m)))
    data = cells.data.copy()
    data["effect"] = data["effect"] + u[exp]
    data["noise_cov"] = data["noise_cov"] + shared[exp]
    data[SHARED] = ((dims.CELL, dims.METRIC, dims.METRIC_), shared[exp])
    return ps.CellEffects(data)


def _prepared(cells: ps.CellEffects) -> Prepared:
    return prepare(cells, "additive", Priors(min_levels_learned_scale=3), "shared", "as_given")


def test_fit_data_splits_each_cells_covariance_into_shared_and_own_parts() -> None:
    cells = with_shared(_cells(seed=1, k=2), 2.0, seed=1)
    data = _prepared(cells).data
    assert data.shared_cov is not None and data.shared_cov.shape == (6, 3, 3)
    shared = np.moveaxis(data.shared_cov[data.cell_experiment], 0, -1)
    np.testing.assert_allclose(data.own_cov + shared, data.s_cov, rtol=1e-13, atol=1e-15)
    low = data.chol_u
    assert low is not None
    np.testing.assert_allclose(low @ np.swapaxes(low, 1, 2), data.shared_cov, rtol=1e-9)
    # each cell's own part is a covariance (positive definite)
    assert np.all(np.linalg.eigvalsh(np.moveaxis(data.own_cov, -1, 0)) > 0)


def test_cells_without_a_shared_part_give_exactly_the_model_without_it() -> None:
    cells = _cells(seed=1, k=2)
    zero = ps.CellEffects(
        cells.data.assign({SHARED: (("cell", "metric", "metric_"), np.zeros_like(cells.noise_cov))})
    )
    a, b = _prepared(cells), _prepared(zero)
    assert b.data.shared_cov is None
    x = np.random.default_rng(0).normal(0.0, 0.5, a.layout.n_dim)
    lp_a, g_a = NativeDensity(a.layout, a.data).logp_and_grad(x)
    lp_b, g_b = NativeDensity(b.layout, b.data).logp_and_grad(x)
    assert lp_a == lp_b
    np.testing.assert_array_equal(g_a, g_b)


def test_the_compiled_posterior_gradient_with_shared_errors_matches_finite_differences() -> None:
    prepared = _prepared(with_shared(_cells(seed=3, k=2, interaction=0.2), 3.0, seed=3))
    density = NativeDensity(prepared.layout, prepared.data)
    x = np.random.default_rng(4).normal(0.0, 0.3, prepared.layout.n_dim)
    lp, grad = density.logp_and_grad(x)
    assert np.isfinite(lp)
    h = 1e-6
    for i in range(prepared.layout.n_dim):
        up, down = x.copy(), x.copy()
        up[i] += h
        down[i] -= h
        numeric = (density.logp_and_grad(up)[0] - density.logp_and_grad(down)[0]) / (2 * h)
        assert grad[i] == pytest.approx(numeric, rel=1e-5, abs=1e-6), i


@pytest.fixture(scope="module")
def shared_fit() -> ps.ProxyFit:
    cells = with_shared(_cells(seed=2, k=2, interaction=0.2), 3.0, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ps.ProxyModel(pooling="complete", followups=0).fit(
            cells, draws=200, tune=200, chains=2, random_seed=3, progress=False
        )


def _stacked_density(fit: ps.ProxyFit, p: dict, e: int) -> float:
    """log p(d_e | params) of experiment ``e`` (original units), with eta_e and u_e
    integrated out by stacking its cells into one Gaussian."""
    cells = np.flatnonzero(np.asarray(fit.effects.experiment) == fit.info.experiments[e])
    effects = fit.model_effects
    m = len(fit.info.metrics)
    mean, cov, y = [], np.zeros((m * len(cells),) * 2), []
    load = np.zeros((m * len(cells), m))
    still = {**p, "eta": 0 * p["eta"], "eta0": 0 * p["eta0"]}  # no experiment effect yet
    for i, c in enumerate(cells):
        prior_mean, prior_cov = _cell_moments(fit, still, c)
        block = slice(i * m, (i + 1) * m)
        mean.append(prior_mean)
        cov[block, block] = prior_cov + effects.noise_cov[c] - effects.variable(SHARED)[c]
        s = list(fit.structure.labels).index(fit.effects.segment_label[c])
        load[block] = np.eye(m)
        load[block][0, 1:] = p["beta"][s]  # eta0 + beta' eta on the outcome, eta on the proxies
        y.append(effects.effect[c])
    omega = np.zeros((m, m))
    omega[0, 0] = p["sd_y"] ** 2
    omega[1:, 1:] = p["omega_e"]
    shared = effects.variable(SHARED)[cells[0]]
    ones = np.kron(np.ones((len(cells), len(cells))), shared)
    total = cov + load @ omega @ load.T + ones
    return float(stats.multivariate_normal(np.concatenate(mean), total).logpdf(np.concatenate(y)))


def test_the_experiments_marginal_density_integrates_the_shared_error(
    shared_fit: ps.ProxyFit,
) -> None:
    stored = shared_fit.idata.log_likelihood["experiment_effect"].stack(
        sample=(dims.CHAIN, dims.DRAW)
    )
    for i in (5, 150):
        p = _draw_params(shared_fit, i)
        for e in (0, 4):
            want = _stacked_density(shared_fit, p, e)
            assert float(stored.isel(sample=i, **{dims.EXPERIMENT: e})) == pytest.approx(
                want, rel=1e-7
            )


def test_cells_are_read_given_the_recovered_shared_error(shared_fit: ps.ProxyFit) -> None:
    """Per cell: log N(d_c - u_e; m_c, V_s + S_c - U_e) and the latent conditional
    with d_c - u_e and S_c - U_e, u_e the posterior's recovered shared error."""
    post = shared_fit.posterior
    assert post[SHARED_ERROR].dims == (dims.CHAIN, dims.DRAW, dims.EXPERIMENT, dims.METRIC)
    i = 17
    p = _draw_params(shared_fit, i)
    stacked = post.stack(sample=(dims.CHAIN, dims.DRAW)).isel(sample=i)
    ll = shared_fit.idata.log_likelihood.stack(sample=(dims.CHAIN, dims.DRAW)).isel(sample=i)
    mean, cov = shared_fit.latent_moments(i)
    effects = shared_fit.model_effects
    for c in (0, 7, 20):
        e = list(shared_fit.info.experiments).index(effects.experiment[c])
        u = np.asarray(stacked[SHARED_ERROR].isel({dims.EXPERIMENT: e}).values)
        prior_mean, prior_cov = _cell_moments(shared_fit, p, c)
        error = effects.noise_cov[c] - effects.variable(SHARED)[c]
        d_c = effects.effect[c] - u
        dense = stats.multivariate_normal(prior_mean, prior_cov + error).logpdf(d_c)
        assert float(ll["effect"].isel({dims.CELL: c})) == pytest.approx(dense, rel=1e-6)
        gain = prior_cov @ np.linalg.inv(prior_cov + error)
        np.testing.assert_allclose(mean[c], prior_mean + gain @ (d_c - prior_mean), rtol=1e-7)
        np.testing.assert_allclose(cov[c], prior_cov - gain @ prior_cov, rtol=1e-6, atol=1e-12)


def test_held_out_experiments_with_a_shared_error_are_scored_as_in_the_fit(
    shared_fit: ps.ProxyFit,
) -> None:
    stored = shared_fit.idata.log_likelihood["experiment_effect"].stack(
        sample=(dims.CHAIN, dims.DRAW)
    )
    for e in (0, 3):
        got = heldout_experiment_loglik(shared_fit, shared_fit.model_effects.subset([e]))[:, 0]
        np.testing.assert_allclose(got, stored.sel({dims.EXPERIMENT: e}).values, rtol=1e-6)


def test_the_designs_table_counts_the_experiments_with_a_shared_error(
    shared_fit: ps.ProxyFit,
) -> None:
    report = ps.design_bias(shared_fit, refit=False)
    assert report.designs["shared_error_experiments"].tolist() == [6]
    assert "In 6 experiments the cells share part of their errors" in report.reading()

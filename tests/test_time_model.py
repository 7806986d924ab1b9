"""The relation's walk over periods in the compiled log posterior (DESIGN.md §9).

Checked against independent computations: the gradient against finite
differences; the walk's coordinates against the stated prior (HalfNormal step
scales, standard normal steps) plus a dense Gaussian likelihood per
experiment whose cells take their period's parameters, the walk summed here
from the steps; a walk at zero against the static model.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
from scipy import stats

import proxyscope as ps
from proxyscope import dims
from proxyscope.core import density as dn
from proxyscope.model.fitdata import FitData
from proxyscope.model.layout import FAMILY_PREFIX, time_drift_name, time_step_name, time_z_name
from proxyscope.model.native import NativeDensity
from proxyscope.model.posterior import std_parameters
from proxyscope.model.priors import Priors
from proxyscope.model.setup import Prepared, model_info, prepare

P = 4


def _cells() -> ps.CellEffects:
    cells, _ = ps.simulate.from_model(
        n_experiments=12,
        beta=(0.5, 0.2),
        mu=((1.0, 0.5), (0.5, 1.0), (1.5, 0.0), (0.0, 0.8)),
        sd_e=(1.0, 0.8),
        sd_c=(0.3, 0.3),
        sd_e_outcome=0.3,
        seed=1,
    )
    return cells


def _timed(prepared: Prepared, n_periods: int = P) -> Prepared:
    """The same model with the experiments spread over ``n_periods`` periods."""
    data = prepared.data
    exp_period = (np.arange(data.n_experiments) * 7) % n_periods
    timed = dataclasses.replace(
        data,
        cell_period=np.ascontiguousarray(exp_period[data.cell_experiment]),
        periods=tuple(f"p{i}" for i in range(n_periods)),
        n_segments=prepared.structure.n_segments,
    )
    return dataclasses.replace(prepared, data=timed)


@pytest.fixture(scope="module")
def prepared() -> Prepared:
    return prepare(_cells(), "additive", Priors(), "shared", "as_given")


def test_the_walk_adds_its_blocks_after_every_other_parameter(prepared: Prepared) -> None:
    static, timed = prepared.layout, _timed(prepared).layout
    n = static.n_dim
    assert [b.name for b in timed.blocks[: len(static.blocks)]] == [b.name for b in static.blocks]
    extra = {b.name: (b.rows, b.cols) for b in timed.blocks[len(static.blocks) :]}
    m, k = 3, 2
    assert extra == {
        time_step_name("loc"): (m, 1),
        time_z_name("loc"): (m, P - 1),
        time_drift_name("loc"): (m, 1),
        time_step_name("slope"): (k, 1),
        time_z_name("slope"): (k, P - 1),
        time_drift_name("slope"): (k, 1),
        time_step_name("log_sigma"): (1, 1),
        time_z_name("log_sigma"): (1, P - 1),
        time_drift_name("log_sigma"): (1, 1),
    }
    assert timed.n_dim == n + (m + k + 1) * (P + 1)
    assert timed.ints[dn.H_TIME_P] == P and static.ints[dn.H_TIME_P] == 0


def test_a_family_with_step_and_drift_sds_zero_does_not_move(prepared: Prepared) -> None:
    priors = Priors(time_step_location_sd=0.0, time_drift_location_sd=0.0, time_drift_slope_sd=0.0)
    fixed = dataclasses.replace(prepared, priors=priors)
    names = [b.name for b in _timed(fixed).layout.blocks]
    assert not [n for n in names if n.endswith("__loc")]
    assert time_step_name("slope") in names and time_drift_name("slope") not in names
    assert time_drift_name("log_sigma") in names


def test_compiled_gradient_with_time_matches_finite_differences(prepared: Prepared) -> None:
    timed = _timed(prepared)
    density = NativeDensity(timed.layout, timed.data)
    x = timed.layout.initial_point(np.random.default_rng(3))
    _, grad = density.logp_and_grad(x)
    h = 1e-6
    for i in range(x.size):
        up, down = x.copy(), x.copy()
        up[i] += h
        down[i] -= h
        numeric = (density.logp_and_grad(up)[0] - density.logp_and_grad(down)[0]) / (2 * h)
        assert grad[i] == pytest.approx(numeric, rel=1e-5, abs=1e-6), timed.layout.blocks


def _walk_prior(timed: Prepared, x: np.ndarray) -> float:
    """log prior of the walk's coordinates: log HalfNormal(s; sd) + log s per scale
    (the log scale's Jacobian), log N(z; 0, 1) per step, log N(d; 0, drift sd) per drift."""
    total = 0.0
    sds, drift_sds = timed.priors.time_step_sds(), timed.priors.time_drift_sds()
    for block in timed.layout.blocks:
        values = x[block.offset : block.offset + block.size]
        if not block.name.startswith("time_"):
            continue
        f = FAMILY_PREFIX.index(block.name.split("__")[1])
        if block.name.startswith("time_step__"):
            total += float(np.sum(stats.halfnorm(scale=sds[f]).logpdf(np.exp(values)) + values))
        elif block.name.startswith("time_z__"):
            total += float(np.sum(stats.norm.logpdf(values)))
        else:
            total += float(np.sum(stats.norm(scale=drift_sds[f]).logpdf(values)))
    return total


def _shifts(timed: Prepared, x: np.ndarray) -> dict[str, np.ndarray]:
    """Each family's shift per period, summed here from the steps and the drift: from
    period p to p + 1 a row moves by s z_p + d, and the middle period's shift (the
    sampler's anchor, (P - 1) // 2) is 0."""
    out = {}
    for prefix in FAMILY_PREFIX:
        block = {b.name: b for b in timed.layout.blocks}
        steps = block[time_z_name(prefix)]
        scale, drift = block[time_step_name(prefix)], block[time_drift_name(prefix)]
        s = np.exp(x[scale.offset : scale.offset + scale.rows])
        d = x[drift.offset : drift.offset + drift.rows]
        z = x[steps.offset : steps.offset + steps.size].reshape(steps.rows, steps.cols)
        level = np.zeros((steps.rows, steps.cols + 1))  # the parameter's path, from 0
        for p in range(steps.cols):
            level[:, p + 1] = level[:, p] + s * z[:, p] + d
        c = (steps.cols + 1 - 1) // 2
        out[prefix] = level - level[:, c : c + 1]
    return out


def _dense_loglik(
    data: FitData, loc: np.ndarray, slope: np.ndarray, sig2: np.ndarray, std: object
) -> float:
    """Sum over experiments of log N(d_e; stacked means, stacked covariance), each cell
    with its own (M,), (K,), () parameters, eta_e = (eta0_e, eta_e) integrated out."""
    chol_c, chol_e = std.chol_c[0], std.chol_e[0]  # type: ignore[attr-defined]
    omega_c, omega_e = chol_c @ chol_c.T, chol_e @ chol_e.T
    m = data.d.shape[0]
    total = 0.0
    for e in range(data.n_experiments):
        cells = np.flatnonzero(data.cell_experiment == e)
        n = len(cells)
        cov = np.zeros((m * n, m * n))
        load = np.zeros((m * n, m))
        mean = np.zeros(m * n)
        for i, c in enumerate(cells):
            block = slice(i * m, (i + 1) * m)
            jac = np.vstack([slope[:, c], np.eye(m - 1)])
            v = jac @ omega_c @ jac.T
            v[0, 0] += sig2[c]
            cov[block, block] = v + data.s_cov[:, :, c]
            load[block] = np.eye(m)
            load[block][0, 1:] = slope[:, c]
            mean[block] = loc[:, c]
        total_cov = cov + load @ omega_e @ load.T
        y = data.d[:, cells].T.reshape(-1)
        total += float(stats.multivariate_normal(mean, total_cov).logpdf(y))
    return total


def test_cells_take_their_periods_parameters_and_the_walk_its_prior(
    prepared: Prepared,
) -> None:
    """Moving only the walk's coordinates changes the log posterior by the change of
    the walk's prior plus that of the dense likelihood with per-period parameters."""
    timed = _timed(prepared)
    density = NativeDensity(timed.layout, timed.data)
    info = model_info(prepared, _cells())
    rng = np.random.default_rng(5)
    x = timed.layout.initial_point(rng)
    n_static = prepared.layout.n_dim
    std = std_parameters(timed.layout.dataset(x[None, None]), info)  # segment values

    def reference(point: np.ndarray) -> float:
        w = _shifts(timed, point)
        seg, per = timed.data.cell_segment, timed.data.cell_period
        loc = std.loc[0][:, seg] + w["loc"][:, per]
        slope = std.slope[0][:, seg] + w["slope"][:, per]
        sig2 = std.sig2[0][seg] * np.exp(2.0 * w["log_sigma"][0, per])
        return _walk_prior(timed, point) + _dense_loglik(timed.data, loc, slope, sig2, std)

    for _ in range(3):
        moved = x.copy()
        moved[n_static:] = rng.normal(0.0, 1.0, x.size - n_static)
        want = reference(moved) - reference(x)
        got = density.logp_and_grad(moved)[0] - density.logp_and_grad(x)[0]
        assert got == pytest.approx(want, rel=1e-8, abs=1e-8)
    w = _shifts(timed, x)
    assert np.any(w["slope"][:, -1] != 0) and np.all(w["slope"][:, (P - 1) // 2] == 0)


def test_a_walk_at_zero_is_the_static_model_plus_the_walks_prior(prepared: Prepared) -> None:
    timed = _timed(prepared)
    static = NativeDensity(prepared.layout, prepared.data)
    moving = NativeDensity(timed.layout, timed.data)
    x = timed.layout.initial_point(np.random.default_rng(8))
    n_static = prepared.layout.n_dim
    for block in timed.layout.blocks[len(prepared.layout.blocks) :]:
        if block.name.startswith(("time_z__", "time_drift__")):
            x[block.offset : block.offset + block.size] = 0.0
    want = static.logp_and_grad(x[:n_static])[0] + _walk_prior(timed, x)
    assert moving.logp_and_grad(x)[0] == pytest.approx(want, rel=1e-10)


# -- a fit with time -------------------------------------------------------------


def _world(timed: bool = True) -> tuple[ps.CellEffects, object]:
    cells, truth = ps.simulate.from_model(
        n_experiments=24,
        periods=4,
        drift={0: 0.2},
        beta=(0.8, 0.15),
        mu=((1.0, 0.5), (0.5, 1.0), (1.5, 0.0), (0.0, 0.8)),
        sd_e=(1.0, 0.8),
        sd_c=(0.3, 0.3),
        sd_e_outcome=0.3,
        seed=4,
    )
    if not timed:
        return cells, truth
    return cells.with_time(truth.starts, period="quarter"), truth  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def timed_fit() -> ps.ProxyFit:
    cells, _ = _world()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ps.ProxyModel(time=True, followups=0).fit(
            cells, draws=200, tune=300, chains=2, random_seed=2, progress=False
        )


def test_the_stored_experiment_likelihood_uses_each_periods_relation(
    timed_fit: ps.ProxyFit,
) -> None:
    """log p(d_e | params) stored per draw equals the stacked Gaussian of the
    experiment's cells, each with the ``*_path`` values of its period (original units)."""
    post = timed_fit.posterior.stack(sample=(dims.CHAIN, dims.DRAW))
    stored = timed_fit.idata.log_likelihood["experiment_effect"].stack(
        sample=(dims.CHAIN, dims.DRAW)
    )
    eff = timed_fit.effects
    labels = list(timed_fit.structure.labels)
    periods = list(eff.periods)
    for i in (7, 301):
        at = post.isel(sample=i)
        omega_e, omega_c = at["omega_e"].values, at["omega_c"].values
        sd_y = float(at["sd_e_outcome"].values)
        for e in (0, 5, 17):
            exp_id = timed_fit.info.experiments[e]
            cells = np.flatnonzero(np.asarray(eff.experiment) == exp_id)
            m = len(eff.metrics)
            mean, y = [], []
            cov = np.zeros((m * len(cells),) * 2)
            load = np.zeros((m * len(cells), m))
            for j, c in enumerate(cells):
                s = labels.index(eff.segment_label[c])
                p = periods[eff.period_index[c]]
                sel = {"period": p, dims.SEGMENT: labels[s]}
                beta = at["beta_path"].sel(sel).values
                jac = np.vstack([beta, np.eye(m - 1)])
                v = jac @ omega_c @ jac.T
                v[0, 0] += float(at["sigma_path"].sel(sel)) ** 2
                block = slice(j * m, (j + 1) * m)
                cov[block, block] = v + eff.noise_cov[c]
                load[block] = np.eye(m)
                load[block][0, 1:] = beta
                mean.append(np.r_[float(at["nu_path"].sel(sel)), at["mu_path"].sel(sel).values])
                y.append(eff.effect[c])
            omega = np.zeros((m, m))
            omega[0, 0] = sd_y**2
            omega[1:, 1:] = omega_e
            total = cov + load @ omega @ load.T
            want = stats.multivariate_normal(np.concatenate(mean), total).logpdf(np.concatenate(y))
            got = float(stored.isel(sample=i, **{dims.EXPERIMENT: e}))
            assert got == pytest.approx(float(want), rel=1e-7)


def test_the_latest_periods_path_is_the_posteriors_segment_values(
    timed_fit: ps.ProxyFit,
) -> None:
    post = timed_fit.posterior
    last = timed_fit.info.periods[-1]
    for name in ("nu", "mu", "beta", "sigma", "alpha"):
        np.testing.assert_allclose(
            post[f"{name}_path"].sel(period=last).values, post[name].values, rtol=1e-12
        )
    np.testing.assert_allclose(
        post["beta_global_path"].sel(period=last).values, post["beta_global"].values, rtol=1e-12
    )
    assert timed_fit.info.periods == ("2024-Q1", "2024-Q2", "2024-Q3", "2024-Q4")


def test_a_fit_with_time_saves_loads_and_draws_its_prior(
    timed_fit: ps.ProxyFit, tmp_path: object
) -> None:
    path = tmp_path / "timed.nc"  # type: ignore[operator]
    timed_fit.save(path)
    loaded = ps.load(path)
    assert loaded.info.periods == timed_fit.info.periods
    np.testing.assert_array_equal(
        loaded.posterior["beta_path"].values, timed_fit.posterior["beta_path"].values
    )
    prior = timed_fit.prior_predictive(draws=50, random_seed=1)
    assert "time_z__slope" in prior.prior
    assert np.isfinite(prior.prior_predictive["effect"].values).all()


def test_without_time_the_model_ignores_the_cells_start_dates() -> None:
    """ProxyModel() on cells that carry start dates gives the static fit, draw for draw."""
    cells, _ = _world()
    plain, _ = _world(timed=False)
    kw = {"draws": 60, "tune": 60, "chains": 1, "random_seed": 5, "progress": False}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = ps.ProxyModel(followups=0).fit(cells, **kw)
        b = ps.ProxyModel(followups=0).fit(plain, **kw)
    np.testing.assert_array_equal(a.posterior["beta"].values, b.posterior["beta"].values)
    assert a.config_hash == b.config_hash
    assert "beta_path" not in a.posterior and not a.info.periods


def test_time_errors_name_the_parameter() -> None:
    cells, _ = ps.simulate.from_model(n_experiments=6, seed=1)
    with pytest.raises(ps.errors.ParameterError, match="start dates"):
        ps.ProxyModel(time=True).fit(cells, draws=10, tune=10, chains=1, progress=False)
    with pytest.raises(ps.errors.ParameterError, match="'time' parameter"):
        ps.ProxyModel(time=3)
    with pytest.raises(ps.errors.ParameterError, match="time_step_slope_sd"):
        ps.ProxyModel(priors={"time_step_slope_sd": -1.0})

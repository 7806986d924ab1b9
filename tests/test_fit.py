"""A real fit: its InferenceData, recovered quantities, files and diagnostics."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import xarray as xr
from scipy import stats

import proxyscope as ps
from proxyscope import dims
from proxyscope.errors import ConvergenceWarning, IncompatibleFileError, ParameterError
from proxyscope.model import recover
from proxyscope.model.posterior import config_hash


def _draw_params(fit, i: int) -> dict:
    """Original-unit parameters of flattened draw ``i`` from the named posterior."""
    post = fit.posterior.stack(sample=(dims.CHAIN, dims.DRAW)).isel(sample=i)
    get = lambda name: np.asarray(post[name].values)  # noqa: E731
    return {
        "nu": get("nu"),
        "mu": get("mu"),
        "beta": get("beta"),
        "sigma": get("sigma"),
        "omega_e": get("omega_e"),
        "omega_c": get("omega_c"),
        "eta": get("eta"),
        "sd_y": get("sd_e_outcome"),  # sd of eta0, the long-term effect no proxy carries
        "eta0": get("eta_outcome"),
    }


def _cell_moments(fit, p: dict, cell: int) -> tuple[np.ndarray, np.ndarray]:
    """Prior mean and covariance (given eta and eta0) of cell ``cell``'s true effects."""
    labels = list(fit.structure.labels)
    s = labels.index(fit.effects.segment_label[cell])
    e = list(fit.info.experiments).index(fit.effects.experiment[cell])
    beta = p["beta"][s]
    jac = np.vstack([beta, np.eye(len(beta))])
    cov = jac @ p["omega_c"] @ jac.T
    cov[0, 0] += p["sigma"][s] ** 2
    mean = np.r_[p["nu"][s], p["mu"][s]] + jac @ p["eta"][e]
    mean[0] += p["eta0"][e]
    return mean, cov


def test_inference_data_groups_dims_and_attributes(small_fit, small_effects) -> None:
    idata = small_fit.idata
    for group in (
        "posterior",
        "sampled",
        "log_likelihood",
        "observed_data",
        "constant_data",
        "sample_stats",
    ):
        assert group in idata.groups()
    post = idata.posterior
    assert post["beta"].dims == (dims.CHAIN, dims.DRAW, dims.SEGMENT, dims.PROXY)
    assert list(post[dims.PROXY].values) == list(small_effects.proxies)
    assert set(post[dims.SEGMENT].values) == set(small_effects.segment_label)
    assert list(post["region"].values) == ["EU", "IN", "LATAM", "NA"]
    assert post["eta"].dims[-2:] == (dims.EXPERIMENT, dims.PROXY)
    assert post["eta_outcome"].dims[-1] == dims.EXPERIMENT
    assert post["sd_e_outcome"].dims == (dims.CHAIN, dims.DRAW)
    assert list(post[dims.EXPERIMENT].values) == list(small_effects.experiments)
    for group in idata.groups():
        for name in idata[group].dims:
            assert "_dim_" not in str(name), (group, name)
    ll = idata.log_likelihood
    assert ll["effect"].shape[-1] == small_effects.n_cells
    assert ll["outcome"].shape[-1] == small_effects.n_cells
    assert ll["experiment_effect"].shape[-1] == len(small_effects.experiments)
    np.testing.assert_array_equal(idata.observed_data["effect"].values, small_effects.effect)
    assert small_fit.effects.fingerprint() == small_effects.fingerprint()
    attrs = idata.attrs
    assert attrs["proxyscope_version"] == ps.__version__
    config = json.loads(attrs["proxyscope_config"])
    assert config["pooling"] == "additive" and config["proxies"] == list(small_effects.proxies)
    sampler = json.loads(attrs["proxyscope_sampler"])
    assert sampler["random_seed"] == 5 and sampler["chains"] == 2 and sampler["draws"] == 200
    assert sampler["name"] in ("nutpie", "pymc") and "target_accept" in sampler["settings"]


def test_save_and_load_round_trip_exactly(small_fit, tmp_path) -> None:
    path = small_fit.save(tmp_path / "fit.nc")
    again = ps.load(path)
    for group in small_fit.idata.groups():
        xr.testing.assert_identical(small_fit.idata[group], again.idata[group])
    assert again.idata.attrs == small_fit.idata.attrs
    # What ledgers and reports record of a fit: its data and its configuration.
    assert again.data_fingerprint == small_fit.effects.fingerprint() != ""
    assert again.config_hash == config_hash(small_fit.config) != ""
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write left no temporary file


def test_load_refuses_altered_incompatible_and_foreign_files(small_fit, tmp_path) -> None:
    path = small_fit.save(tmp_path / "fit.nc")
    idata = ps.load(path).idata
    config = json.loads(idata.attrs["proxyscope_config"])
    config["pooling"] = "complete"
    idata.attrs["proxyscope_config"] = json.dumps(config, sort_keys=True)
    idata.to_netcdf(tmp_path / "tampered.nc", engine="h5netcdf")
    with pytest.raises(IncompatibleFileError, match="does not match its recorded hash"):
        ps.load(tmp_path / "tampered.nc")
    idata = ps.load(path).idata
    idata.attrs["proxyscope_file_format"] = 99
    idata.to_netcdf(tmp_path / "future.nc", engine="h5netcdf")
    with pytest.raises(IncompatibleFileError, match="file format 99"):
        ps.load(tmp_path / "future.nc")
    xr.Dataset({"x": ("a", [1.0])}).to_netcdf(tmp_path / "other.nc", engine="h5netcdf")
    with pytest.raises(IncompatibleFileError, match="not a proxyscope fit"):
        ps.load(tmp_path / "other.nc")
    with pytest.raises(ParameterError, match="no file"):
        ps.load(tmp_path / "missing.nc")


def test_experiment_likelihood_and_eta_conditional_equal_dense_algebra(small_fit) -> None:
    """Per experiment: the marginal density and the conditional of (eta0, eta), by
    stacking its cells."""
    i = 17
    p = _draw_params(small_fit, i)
    effects = small_fit.effects
    exp_id = small_fit.info.experiments[3]
    cells = np.flatnonzero(effects.experiment == exp_id)
    k = len(small_fit.proxies)
    blocks, load, y, mean = [], [], [], []
    for c in cells:
        p_no_eta = {**p, "eta": np.zeros_like(p["eta"]), "eta0": np.zeros_like(p["eta0"])}
        m0, cov = _cell_moments(small_fit, p_no_eta, int(c))
        labels = list(small_fit.structure.labels)
        s = labels.index(effects.segment_label[c])
        # The likelihood's noise: moderated toward the segment's (the default).
        blocks.append(cov + small_fit.model_effects.noise_cov[c])
        jac = np.vstack([p["beta"][s], np.eye(k)])
        load.append(np.column_stack([np.eye(k + 1)[:, 0], jac]))  # (eta0, eta) -> cell
        y.append(effects.effect[c])
        mean.append(m0)
    n, m = len(cells), k + 1
    total = np.zeros((n * m, n * m))
    for j, b in enumerate(blocks):
        total[j * m : (j + 1) * m, j * m : (j + 1) * m] = b
    big_load = np.vstack(load)
    omega = np.zeros((k + 1, k + 1))
    omega[0, 0] = p["sd_y"] ** 2
    omega[1:, 1:] = p["omega_e"]
    total += big_load @ omega @ big_load.T
    y_all, mean_all = np.concatenate(y), np.concatenate(mean)
    dense = stats.multivariate_normal(mean_all, total).logpdf(y_all)
    stored = (
        small_fit.idata.log_likelihood["experiment_effect"]
        .stack(sample=(dims.CHAIN, dims.DRAW))
        .isel(sample=i)
        .sel({dims.EXPERIMENT: exp_id})
    )
    assert float(stored) == pytest.approx(dense, abs=1e-7)
    # (eta0, eta) | d_e: Gaussian with precision Omega^-1 + sum H' W H.
    w_blocks = np.linalg.inv(total - big_load @ omega @ big_load.T)
    prec = np.linalg.inv(omega) + big_load.T @ w_blocks @ big_load
    cond_mean = np.linalg.solve(prec, big_load.T @ w_blocks @ (y_all - mean_all))
    _, eta_mean, eta_cov = recover.experiment_conditionals(
        _one_draw(small_fit.std, i), small_fit.data
    )
    e = list(small_fit.info.experiments).index(exp_id)
    scales = small_fit.data.scales
    np.testing.assert_allclose(eta_mean[0, e] * scales, cond_mean, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(
        eta_cov[0, e] * np.outer(scales, scales), np.linalg.inv(prec), rtol=1e-6, atol=1e-12
    )


def _one_draw(std, i):
    from proxyscope.model.posterior import StdParameters

    return StdParameters(
        loc=std.loc[i : i + 1],
        slope=std.slope[i : i + 1],
        sig2=std.sig2[i : i + 1],
        chol_c=std.chol_c[i : i + 1],
        chol_e=std.chol_e[i : i + 1],
        bias_cov=std.bias_cov[i : i + 1],
    )


def test_cell_likelihoods_and_latent_effects_equal_dense_algebra(small_fit) -> None:
    i, c = 42, 11
    p = _draw_params(small_fit, i)
    prior_mean, prior_cov = _cell_moments(small_fit, p, c)
    s_c = small_fit.model_effects.noise_cov[c]  # the noise the likelihood saw
    d_c = small_fit.effects.effect[c]
    ll = small_fit.idata.log_likelihood.stack(sample=(dims.CHAIN, dims.DRAW)).isel(sample=i)
    dense = stats.multivariate_normal(prior_mean, prior_cov + s_c).logpdf(d_c)
    # Stored in single precision (ProxyFit.save): equal to about 1e-7 relative.
    assert float(ll["effect"].isel({dims.CELL: c})) == pytest.approx(dense, rel=1e-6)
    total = prior_cov + s_c
    cond_mean = prior_mean[0] + total[0, 1:] @ np.linalg.solve(
        total[1:, 1:], d_c[1:] - prior_mean[1:]
    )
    cond_var = total[0, 0] - total[0, 1:] @ np.linalg.solve(total[1:, 1:], total[1:, 0])
    outcome = stats.norm(cond_mean, np.sqrt(cond_var)).logpdf(d_c[0])
    assert float(ll["outcome"].isel({dims.CELL: c})) == pytest.approx(outcome, rel=1e-6)
    gain = prior_cov @ np.linalg.inv(prior_cov + s_c)
    mean, cov = small_fit.latent_moments(i)
    np.testing.assert_allclose(mean[c], prior_mean + gain @ (d_c - prior_mean), rtol=1e-7)
    np.testing.assert_allclose(cov[c], prior_cov - gain @ prior_cov, rtol=1e-6, atol=1e-12)
    draws = small_fit.latent_effects(n_draws=5, random_seed=1)
    assert draws.dims == (dims.SAMPLE, dims.CELL, dims.METRIC)
    assert draws.shape == (5, small_fit.effects.n_cells, len(small_fit.info.metrics))


def test_diagnostics_report_both_groups_and_fail_short_runs(small_fit) -> None:
    report = small_fit.diagnostics()
    assert set(report.table["group"]) == {"posterior", "sampled"}
    assert {"r_hat", "ess_bulk", "ess_tail", "ok"} <= set(report.table.columns)
    # 400 draws in total cannot reach a bulk ESS of 400 for every parameter.
    assert not report.passed and not small_fit.trustworthy
    assert "FAILED" in report.summary() and "Try:" in report.summary()
    assert report.to_dict()["failed_parameters"]
    relaxed = small_fit.diagnostics(rhat_max=2.0, ess_min=1)
    assert relaxed.table["ok"].all()
    with pytest.warns(ConvergenceWarning, match="FAILED its convergence diagnostics"):
        ps.surrogacy(small_fit)


def test_prior_predictive_simulates_every_cell(small_fit) -> None:
    ppc = small_fit.prior_predictive(draws=40, random_seed=3)
    sims = ppc.prior_predictive["effect"]
    assert sims.shape == (1, 40, small_fit.effects.n_cells, len(small_fit.info.metrics))
    assert np.isfinite(sims.values).all()
    assert "observed_data" in ppc.groups() and "prior" in ppc.groups()


@pytest.mark.slow
def test_same_seed_same_fit_bit_for_bit_and_a_warning_when_it_fails(small_effects) -> None:
    # The default settings (diagonal mass matrix; ProxyModel.fit says why the
    # low-rank one is not bit for bit). Between the two same-seed fits the
    # heap is churned and a low-rank fit of another seed runs, so the second
    # fit meets different memory than the first.
    model = ps.ProxyModel()
    with pytest.warns(ConvergenceWarning, match="NOT trustworthy"):
        a = model.fit(small_effects, draws=40, tune=40, chains=2, random_seed=9, progress=False)
    rng = np.random.default_rng(0)
    churn = [np.full(int(n), np.nan) for n in rng.integers(1, 50_000, 40)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ps.ProxyModel(sampler_settings={"low_rank_modified_mass_matrix": True}).fit(
            small_effects, draws=20, tune=20, chains=2, random_seed=3, progress=False
        )
        del churn[::2]
        b = model.fit(small_effects, draws=40, tune=40, chains=2, random_seed=9, progress=False)
        c = model.fit(small_effects, draws=40, tune=40, chains=2, random_seed=10, progress=False)
    for group in ("posterior", "sampled", "log_likelihood", "sample_stats"):
        # Values and coordinates bit for bit (only the creation-time attribute differs).
        xr.testing.assert_equal(a.idata[group], b.idata[group])
    assert a.sampler["settings"]["low_rank_modified_mass_matrix"] is False
    assert not np.array_equal(a.posterior["nu"].values, c.posterior["nu"].values)


@pytest.mark.slow
def test_pymc_sampler_path(small_effects) -> None:
    cells = small_effects.select_proxies(["early_watch_min"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fit = ps.ProxyModel(sampler="pymc", pooling="complete", followups=0).fit(
            cells, draws=60, tune=60, chains=2, random_seed=2, progress=False
        )
    assert fit.sampler["name"] == "pymc"
    assert fit.posterior["beta"].shape == (2, 60, len(fit.structure.labels), 1)
    assert np.isfinite(fit.idata.log_likelihood["experiment_effect"].values).all()


@pytest.mark.slow
def test_another_datasets_fit_in_between_changes_nothing(small_effects) -> None:
    # The compiled log posterior is shared by every dataset with as many
    # proxies; each fit passes its own data, layout and coordinates. A fit of
    # another dataset (other experiments, segments and coordinates) in between
    # must leave a same-seed fit unchanged bit for bit.
    world = ps.simulate.streaming(n_users=40_000, n_experiments=12, seed=12)
    roles = {**ps.simulate.column_roles(), "segments": ["region"]}
    model = ps.ProxyModel(followups=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other = ps.summarize(world.users, engine="pandas", **roles)
        a = model.fit(small_effects, draws=30, tune=30, chains=2, random_seed=4, progress=False)
        between = model.fit(other, draws=30, tune=30, chains=2, random_seed=4, progress=False)
        b = model.fit(small_effects, draws=30, tune=30, chains=2, random_seed=4, progress=False)
    assert between.structure.n_segments != a.structure.n_segments
    for group in ("posterior", "sampled", "log_likelihood", "sample_stats"):
        xr.testing.assert_equal(a.idata[group], b.idata[group])


def test_saved_log_likelihoods_are_single_precision_and_load_unchanged(small_fit, tmp_path) -> None:
    import h5py

    path = small_fit.save(tmp_path / "fit.nc")
    with h5py.File(path) as f:
        assert f["log_likelihood/effect"].dtype == np.float32
        assert f["log_likelihood/outcome"].dtype == np.float32
        assert f["posterior/beta"].dtype == np.float64  # draws stay in double
    back = ps.load(path)
    for name in ("effect", "outcome", "experiment_effect"):
        got = back.idata.log_likelihood[name]
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got.values, small_fit.idata.log_likelihood[name].values)

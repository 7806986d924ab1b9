"""The design-bias term of the model (DESIGN.md §8): cells of a design that may be
biased get b_c ~ N(0, Sigma_d), integrated out by adding Sigma_d to their covariance.

Checked against independent computations: the compiled log posterior equals the
model without the term on the same data with S_c + Sigma_d (scipy for the bias
priors), its gradient equals finite differences, and a history of randomized
cells only has exactly the parameter vector and density it had before.
"""

from __future__ import annotations

import dataclasses
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from test_fit import _cell_moments, _draw_params
from test_model_build import _cells

import proxyscope as ps
from proxyscope import dims
from proxyscope.analyses.designs import design_bias, slope_draws
from proxyscope.model.builder import corr_cholesky
from proxyscope.model.fitfile import SAMPLED_GROUP
from proxyscope.model.layout import bias_cpc_name, bias_sd_name, cpc_shapes
from proxyscope.model.native import NativeDensity
from proxyscope.model.posterior import BIAS_DESIGN
from proxyscope.model.priors import Priors
from proxyscope.model.setup import Prepared, prepare


def with_designs(cells: ps.CellEffects, by_experiment: dict[int, str]) -> ps.CellEffects:
    """The same cells with the designs given per experiment ("ab" elsewhere)."""
    design = np.array([by_experiment.get(int(e), "ab") for e in cells.experiment], dtype=object)
    return ps.CellEffects(cells.data.assign_coords({dims.DESIGN: (dims.CELL, design)}))


def _prepared(cells: ps.CellEffects, k: int, noise: str = "moderated") -> Prepared:
    return prepare(cells, "additive", Priors(min_levels_learned_scale=3), "shared", noise)


def _bias_prior(x: np.ndarray, prepared: Prepared) -> tuple[float, dict[str, np.ndarray]]:
    """log prior of every design's bias parameters (scipy) and each Sigma_d."""
    priors, m = prepared.priors, len(prepared.metrics)
    named = prepared.layout.named(x)
    shapes = cpc_shapes(m, priors.bias_lkj_eta)
    total, sigmas = 0.0, {}
    for design in prepared.data.bias_designs:
        sd = named[bias_sd_name(design)]
        u = named[bias_cpc_name(design)]
        total += float(np.sum(stats.halfnorm.logpdf(sd, scale=priors.bias_sd) + np.log(sd)))
        total += float(np.sum(stats.beta.logpdf(u, shapes, shapes) + np.log(u * (1 - u))))
        low = sd[:, None] * corr_cholesky(2 * u - 1, m, np)
        sigmas[design] = low @ low.T
    return total, sigmas


@pytest.mark.parametrize("k", [1, 2])
def test_the_bias_term_adds_sigma_d_to_the_cells_of_its_design(k: int) -> None:
    cells = with_designs(_cells(seed=2, k=k, interaction=0.2), {3: "did", 4: "did", 5: "ipw"})
    prepared = _prepared(cells, k)
    assert prepared.data.bias_designs == ("did", "ipw")
    density = NativeDensity(prepared.layout, prepared.data)
    plain_layout = dataclasses.replace(
        prepared, data=dataclasses.replace(prepared.data, cell_group=None, bias_designs=())
    ).layout
    n_plain = plain_layout.n_dim
    assert density.n_dim == n_plain + 2 * ((k + 1) + (k + 1) * k // 2)
    rng = np.random.default_rng(k)
    for _ in range(3):
        x = rng.normal(0.0, 0.5, density.n_dim)
        lp, _ = density.logp_and_grad(x)
        prior, sigmas = _bias_prior(x, prepared)
        data = prepared.data
        s_eff = data.s_cov.copy()
        for g, design in enumerate(data.bias_designs, start=1):
            s_eff[:, :, data.groups == g] += sigmas[design][:, :, None]
        plain = dataclasses.replace(data, s_cov=s_eff, cell_group=None, bias_designs=())
        reference = NativeDensity(plain_layout, plain).logp_and_grad(x[:n_plain])[0]
        assert lp == pytest.approx(reference + prior, rel=1e-10, abs=1e-8)


def test_the_bias_gradient_matches_finite_differences() -> None:
    cells = with_designs(_cells(seed=5, k=2), {2: "external", 4: "rdd", 5: "rdd"})
    prepared = _prepared(cells, 2)
    density = NativeDensity(prepared.layout, prepared.data)
    x = np.random.default_rng(3).normal(0.0, 0.5, density.n_dim)
    _, grad = density.logp_and_grad(x)
    h = 1e-6
    for i in range(density.n_dim):
        step = np.zeros(density.n_dim)
        step[i] = h
        fd = (density.logp_and_grad(x + step)[0] - density.logp_and_grad(x - step)[0]) / (2 * h)
        assert fd == pytest.approx(grad[i], rel=1e-5, abs=1e-5), i


def test_randomized_designs_give_exactly_the_model_without_the_term() -> None:
    cells = _cells(seed=1, k=2)
    clustered = with_designs(cells, {0: "cluster", 3: "cluster"})
    # (as given: moderation is for A/B cells only, so it would change the cluster cells' data)
    a, b = _prepared(cells, 2, "as_given"), _prepared(clustered, 2, "as_given")
    assert b.data.bias_designs == ()
    np.testing.assert_array_equal(a.layout.ints, b.layout.ints)
    np.testing.assert_array_equal(a.layout.floats, b.layout.floats)
    x = np.random.default_rng(0).normal(0.0, 0.5, a.layout.n_dim)
    lp_a, g_a = NativeDensity(a.layout, a.data).logp_and_grad(x)
    lp_b, g_b = NativeDensity(b.layout, b.data).logp_and_grad(x)
    assert lp_a == lp_b
    np.testing.assert_array_equal(g_a, g_b)


@pytest.fixture(scope="module")
def biased_fit() -> ps.ProxyFit:
    cells = with_designs(_cells(seed=2, k=2, interaction=0.2), {3: "did", 4: "did", 5: "ipw"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ps.ProxyModel(pooling="complete", followups=0).fit(
            cells, draws=200, tune=200, chains=2, random_seed=3, progress=False
        )


def test_the_fit_reports_sigma_d_per_design_in_original_units(biased_fit: ps.ProxyFit) -> None:
    post = biased_fit.posterior
    assert list(post[BIAS_DESIGN].values) == ["did", "ipw"]
    scales = np.asarray(biased_fit.info.scales)
    raw = biased_fit.idata[SAMPLED_GROUP]
    for design in ("did", "ipw"):
        std = np.asarray(raw[bias_sd_name(design)].values)
        np.testing.assert_allclose(
            post["bias_sd"].sel({BIAS_DESIGN: design}).values, std * scales, rtol=1e-12
        )
    corr = post["bias_corr"].values
    np.testing.assert_allclose(np.einsum("...ii->...i", corr), 1.0, atol=1e-12)
    assert set(np.unique(biased_fit.data.groups)) == {0, 1, 2}


def test_biased_cells_likelihood_and_latent_effects_include_sigma_d(
    biased_fit: ps.ProxyFit,
) -> None:
    """Per cell: log N(d_c; m_c, V_s + S_c + Sigma_d) and the latent conditional with
    S_c + Sigma_d as the estimate's error, against dense algebra (scipy)."""
    i = 17
    p = _draw_params(biased_fit, i)
    post = biased_fit.posterior.stack(sample=(dims.CHAIN, dims.DRAW)).isel(sample=i)
    ll = biased_fit.idata.log_likelihood.stack(sample=(dims.CHAIN, dims.DRAW)).isel(sample=i)
    mean, cov = biased_fit.latent_moments(i)
    design = biased_fit.effects.design
    for c in (int(np.flatnonzero(design == d)[0]) for d in ("ab", "did", "ipw")):
        prior_mean, prior_cov = _cell_moments(biased_fit, p, c)
        error = biased_fit.model_effects.noise_cov[c].copy()
        if design[c] != "ab":
            sd = np.asarray(post["bias_sd"].sel({BIAS_DESIGN: design[c]}).values)
            corr = np.asarray(post["bias_corr"].sel({BIAS_DESIGN: design[c]}).values)
            error += corr * np.outer(sd, sd)
        d_c = biased_fit.effects.effect[c]
        dense = stats.multivariate_normal(prior_mean, prior_cov + error).logpdf(d_c)
        assert float(ll["effect"].isel({dims.CELL: c})) == pytest.approx(dense, rel=1e-6)
        gain = prior_cov @ np.linalg.inv(prior_cov + error)
        np.testing.assert_allclose(mean[c], prior_mean + gain @ (d_c - prior_mean), rtol=1e-7)
        np.testing.assert_allclose(cov[c], prior_cov - gain @ prior_cov, rtol=1e-6, atol=1e-12)


def test_design_bias_tables_and_refits(biased_fit: ps.ProxyFit) -> None:
    report = design_bias(biased_fit, refit=True)
    assert list(report.designs["design"]) == ["ab", "did", "ipw"]
    assert list(report.designs["randomized"]) == [True, False, False]
    assert list(report.designs["experiments"]) == [3, 2, 1]
    assert len(report.bias) == 2 * 3 and len(report.correlation) == 2 * 2
    fits = list(dict.fromkeys(report.slopes["fit"]))
    assert fits == ["all cells", "without did", "without ipw", "randomized designs only"]
    base = report.slopes[report.slopes["fit"] == "all cells"].set_index("proxy")["mean"]
    for row in report.slopes.itertuples():
        assert row.shift == pytest.approx(row.mean - base[row.proxy], abs=1e-12)
        assert row.lower <= row.mean <= row.upper
    # the all-cells slope is the posterior's own global slope
    draws = biased_fit.posterior["beta_global"].stack(s=("chain", "draw")).values
    np.testing.assert_allclose(base.to_numpy(), draws.mean(axis=-1), rtol=1e-12)
    assert "did: bias sd on y" in report.reading()


def test_the_report_has_a_section_on_designs(biased_fit: ps.ProxyFit, tmp_path) -> None:
    import jsonschema

    from proxyscope.reporting import load_schema

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        files = ps.report(biased_fit, out=tmp_path / "r")
    doc = files.document
    jsonschema.validate(doc, load_schema())
    assert doc["designs"]["designs"][1]["design"] == "did"
    assert "Designs: which estimates may be biased" in files.markdown.read_text()


def test_held_out_experiments_of_a_biased_design_get_its_sigma_d(biased_fit: ps.ProxyFit) -> None:
    """The held-out density of an experiment the fit saw equals its in-fit marginal one."""
    from proxyscope.model.heldout import heldout_experiment_loglik

    stored = biased_fit.idata.log_likelihood["experiment_effect"].stack(
        sample=(dims.CHAIN, dims.DRAW)
    )
    for e in (0, 3, 5):  # ab, did, ipw
        got = heldout_experiment_loglik(biased_fit, biased_fit.model_effects.subset([e]))[:, 0]
        want = stored.sel({dims.EXPERIMENT: e}).values
        np.testing.assert_allclose(got, want, rtol=1e-6)
    other = with_designs(_cells(seed=9, k=2), {1: "rdd"}).subset([1])
    with pytest.raises(ps.errors.ParameterError, match="rdd"):
        heldout_experiment_loglik(biased_fit, other)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_the_bias_term_recovers_the_slopes_of_a_mixed_history(seed: int) -> None:
    """A history of six designs, the non-randomized cells biased (bias sd 6x the sampling
    sd, correlation 0.8 across metrics): with the bias term the 90% intervals hold both
    true slopes; taking every design as unbiased misses the strong proxy's, by more.
    (benchmarks/bench_designs.py runs 10 seeds: 10/10 and 10/10 held, against 0/10 and
    2/10 when every design is taken as unbiased.)"""
    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    from bench_designs import WORLD, as_unbiased

    world = ps.simulate.mixed_history(seed=seed, bias_sd_multiple=6.0, **WORLD)
    truth = np.asarray(world.truth.beta)
    got = {}
    for name, effects in (("bias", world.effects), ("unbiased", as_unbiased(world.effects))):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = ps.ProxyModel().fit(
                effects, draws=500, tune=500, random_seed=seed, progress=False
            )
        assert fit.trustworthy or name == "unbiased"
        draws = slope_draws(fit)
        got[name] = (draws.mean(axis=0), *np.quantile(draws, [0.05, 0.95], axis=0))
    mean, lo, hi = got["bias"]
    assert np.all((lo <= truth) & (truth <= hi)), (lo, hi, truth)
    naive, naive_lo, naive_hi = got["unbiased"]
    assert not naive_lo[0] <= truth[0] <= naive_hi[0]
    assert abs(naive[0] - truth[0]) > 2 * abs(mean[0] - truth[0])


def test_the_prior_predictive_draws_each_designs_bias(biased_fit: ps.ProxyFit) -> None:
    """Sigma_d's scales come from HalfNormal(bias_sd): their prior mean is bias_sd sqrt(2/pi),
    and a biased design's cells spread more than the A/B cells' under the prior."""
    pp = biased_fit.prior_predictive(draws=4000, random_seed=2)
    sd = np.asarray(pp.prior[bias_sd_name("did")].values).ravel()
    expected = Priors().bias_sd * np.sqrt(2 / np.pi)
    assert sd.mean() == pytest.approx(expected, abs=4 * sd.std() / np.sqrt(sd.size))
    effect = pp.prior_predictive["effect"].values[0]  # (draw, cell, metric), original units
    spread = effect.var(axis=0) / np.asarray(biased_fit.info.scales) ** 2
    design = biased_fit.effects.design
    assert (spread[design == "did"].mean() - spread[design == "ab"].mean()) > 0.5

"""The PyMC model's structure and log density, without sampling."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import proxyscope as ps
from proxyscope.errors import DataTypeError, DataWarning, ParameterError
from proxyscope.model.builder import build_model, corr_cholesky, cpc_shapes
from proxyscope.model.coordinates import location_weights
from proxyscope.model.fitdata import fit_data
from proxyscope.model.priors import Priors
from proxyscope.model.structure import SegmentStructure, principal_axes


def _cells(seed: int = 0, k: int = 2, interaction: float = 0.0) -> ps.CellEffects:
    """Hand-made per-arm summaries: 6 experiments x region (3) x device (2).

    ``interaction`` plants a deviation of the first proxy in one segment cell.
    """
    rng = np.random.default_rng(seed)
    rows = []
    proxies = [f"p{j}" for j in range(k)]
    for e in range(6):
        for region in ("EU", "IN", "NA"):
            for device in ("Mobile", "TV"):
                bump = interaction if (region, device) == ("IN", "Mobile") else 0.0
                for arm in (0, 1):
                    row = {"exp": e, "region": region, "device": device, "arm": arm, "n": 400}
                    base = rng.normal(size=k + 1) * 0.05
                    shift = np.r_[0.02 * e, np.full(k, 0.1 * e)] * arm
                    shift[1] += bump * arm
                    for j, name in enumerate(["y", *proxies]):
                        row[f"m_{name}"] = base[j] + shift[j]
                        row[f"v_{name}"] = 1.0 + 0.1 * j
                    rows.append(row)
    table = pd.DataFrame(rows)
    names = ["y", *proxies]
    return ps.from_arm_summaries(
        table,
        experiment="exp",
        arm="arm",
        treated_value=1,
        outcome="y",
        proxies=proxies,
        segments=["region", "device"],
        count="n",
        mean={n: f"m_{n}" for n in names},
        variance={n: f"v_{n}" for n in names},
        correlation=0.3,
    )


@pytest.mark.parametrize(
    ("pooling", "expected"),
    [
        (
            "additive",
            {
                "loc_global",
                "loc_main__region",
                "loc_main__device",
                "loc_int_sd",
                "loc_int_z",
                "slope_global",
                "slope_main__region",
                "slope_main__device",
                "slope_int_sd",
                "slope_int_z",
                "sigma_global",
                "log_sigma_main__region",
                "log_sigma_main__device",
                "log_sigma_int_sd",
                "log_sigma_int_z",
                "sd_e",
                "cpc_e",
                "sd_c",
                "sd_e_outcome",
            },
        ),
        (
            "exchangeable",
            {
                "loc_global",
                "loc_int_sd",
                "loc_int_z",
                "slope_global",
                "slope_int_sd",
                "slope_int_z",
                "sigma_global",
                "log_sigma_int_sd",
                "log_sigma_int_z",
                "sd_e",
                "cpc_e",
                "sd_c",
                "sd_e_outcome",
            },
        ),
        (
            "complete",
            {"loc_global", "slope_global", "sigma_global", "sd_e", "cpc_e", "sd_c", "sd_e_outcome"},
        ),
        ("none", {"loc_seg", "slope_seg", "sigma_seg", "sd_e", "cpc_e", "sd_c", "sd_e_outcome"}),
    ],
)
def test_free_parameters_follow_the_pooling(pooling: str, expected: set[str]) -> None:
    built = build_model(_cells(), pooling, Priors())
    names = {rv.name for rv in built.model.free_RVs}
    assert names == expected
    # The only derived variables: the segment deviations of the interactions.
    derived = {n.replace("_int_z", "_int_raw") for n in names if n.endswith("_int_z")}
    assert {v.name for v in built.model.deterministics} == derived
    # Named dims everywhere, never ArviZ's automatic *_dim_0.
    for var in [*built.model.free_RVs, *built.model.deterministics]:
        for dim in built.model.named_vars_to_dims.get(var.name, ()):
            assert not dim.endswith("_dim_0")


def test_no_segments_and_one_proxy_build() -> None:
    cells = _cells(k=1)
    table = cells.to_frame()
    assert table.shape[0] == 36
    built = build_model(cells, "additive", Priors())
    assert built.structure.n_segments == 6
    merged = ps.from_arm_summaries(
        pd.DataFrame(
            [
                {
                    "exp": e,
                    "arm": a,
                    "n": 300,
                    "m_y": 0.01 * e * a,
                    "v_y": 1.0,
                    "m_p0": 0.05 * e * a,
                    "v_p0": 2.0,
                }
                for e in range(5)
                for a in (0, 1)
            ]
        ),
        experiment="exp",
        arm="arm",
        treated_value=1,
        outcome="y",
        proxies=["p0"],
        count="n",
        mean={"y": "m_y", "p0": "m_p0"},
        variance={"y": "v_y", "p0": "v_p0"},
    )
    built = build_model(merged, "additive", Priors())
    assert built.structure.labels == ("all",)
    # One proxy: nothing to rotate.
    assert {rv.name for rv in built.model.free_RVs} == {
        "loc_global",
        "slope_global",
        "sigma_global",
        "sd_e",
        "sd_c",
    }
    logp = built.model.compile_logp()(built.model.initial_point())
    assert np.isfinite(logp)


def _constrained_point(built, rng: np.random.Generator) -> dict[str, np.ndarray]:
    model = built.model
    point = {}
    for rv in model.free_RVs:
        shape = model.initial_point()[model.rvs_to_values[rv].name].shape
        name = rv.name
        if name.startswith(("sd_", "sigma_")) or name.endswith(("_int_sd",)):
            point[name] = rng.uniform(0.2, 0.9, shape)
        elif name.startswith("cpc"):
            point[name] = rng.uniform(0.2, 0.8, shape)
        else:
            point[name] = rng.normal(0, 0.5, shape)
    return point


def _value_point(built, constrained: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The sampler's (transformed) values for given constrained values."""
    model = built.model
    out = {}
    for rv in model.free_RVs:
        value = model.rvs_to_values[rv]
        x = constrained[rv.name]
        transform = model.rvs_to_transforms[rv]
        if transform is None:
            out[value.name] = x
        else:
            out[value.name] = transform.forward(x, *rv.owner.inputs).eval()
    return out


def test_model_density_equals_an_independent_computation() -> None:
    cells = _cells(seed=3, k=2)
    priors = Priors()
    built = build_model(cells, "additive", priors)
    rng = np.random.default_rng(8)
    c = _constrained_point(built, rng)
    model = built.model
    values = _value_point(built, c)
    structure, cell_segment = SegmentStructure.from_effects(cells)
    data = fit_data(cells, cell_segment)

    # -- the likelihood, written out with loops and a dense Gaussian -------------
    k, m, n_seg = 2, 3, structure.n_segments
    basis = [structure.basis(j) for j in range(2)]
    # Interactions: scale x their coordinates along the axes of what the
    # intercept and the main effects cannot express (tested in test_density).
    axes = structure.interaction_basis("additive")
    inter_loc = c["loc_int_sd"][:, None] * (c["loc_int_z"] @ axes.T)
    inter_slope = c["slope_int_sd"][:, None] * (c["slope_int_z"] @ axes.T)
    inter_sigma = c["log_sigma_int_sd"] * (axes @ c["log_sigma_int_z"])
    loc = np.zeros((m, n_seg))
    slope = np.zeros((k, n_seg))
    log_sig = np.zeros(n_seg)
    for s in range(n_seg):
        lev = structure.level_index[s]
        for r in range(m):
            v = c["loc_global"][r]
            for j, col in enumerate(("region", "device")):
                v += basis[j][lev[j]] @ c[f"loc_main__{col}"][r]
            loc[r, s] = v + inter_loc[r, s]
        for r in range(k):
            v = c["slope_global"][r]
            for j, col in enumerate(("region", "device")):
                v += basis[j][lev[j]] @ c[f"slope_main__{col}"][r]
            slope[r, s] = v + inter_slope[r, s]
        v = np.log(c["sigma_global"])
        for j, col in enumerate(("region", "device")):
            v += basis[j][lev[j]] @ c[f"log_sigma_main__{col}"]
        log_sig[s] = v + inter_sigma[s]
    z = 2 * c["cpc_e"] - 1
    corr = np.array([[1.0, 0.0], [z[0], np.sqrt(1 - z[0] ** 2)]])
    chol_e = c["sd_e"][:, None] * corr
    chol_c = c["sd_c"][:, None] * corr
    oe, oc = chol_e @ chol_e.T, chol_c @ chol_c.T
    omega0 = c["sd_e_outcome"]  # sd of the experiment's long-term effect no proxy carries
    total = 0.0
    for e in range(data.n_experiments):
        idx = np.flatnonzero(data.cell_experiment == e)
        n = len(idx)
        mean, cov, load, y = np.zeros(n * m), np.zeros((n * m, n * m)), np.zeros((n * m, k)), []
        own = np.zeros(n * m)  # eta0 enters every cell's long-term effect
        for i, cell in enumerate(idx):
            s = data.cell_segment[cell]
            jac = np.vstack([slope[:, s], np.eye(k)])
            block = slice(i * m, (i + 1) * m)
            within = jac @ oc @ jac.T
            within[0, 0] += np.exp(2 * log_sig[s])
            cov[block, block] = within + data.s_cov[:, :, cell]
            mean[block] = loc[:, s]
            load[block] = jac
            own[i * m] = 1.0
            y.append(data.d[:, cell])
        shared = load @ oe @ load.T + omega0**2 * np.outer(own, own)
        total += stats.multivariate_normal(mean, cov + shared).logpdf(np.concatenate(y))

    potential = model.replace_rvs_by_values(model.potentials)[0]
    loglik = model.compile_fn(potential, inputs=model.value_vars, on_unused_input="ignore")(values)
    assert float(loglik) == pytest.approx(total, abs=1e-8)

    # -- the priors are what Priors documents ------------------------------------
    prior = 0.0
    prior += stats.norm(0, priors.global_location_sd).logpdf(c["loc_global"]).sum()
    prior += stats.norm(0, priors.global_slope_sd).logpdf(c["slope_global"]).sum()
    prior += stats.halfnorm(scale=priors.sigma_sd).logpdf(c["sigma_global"])
    for col in ("region", "device"):
        prior += stats.norm(0, priors.main_location_sd).logpdf(c[f"loc_main__{col}"]).sum()
        prior += stats.norm(0, priors.main_slope_sd).logpdf(c[f"slope_main__{col}"]).sum()
        prior += stats.norm(0, priors.main_log_sigma_sd).logpdf(c[f"log_sigma_main__{col}"]).sum()
    prior += stats.halfnorm(scale=priors.interaction_location_sd).logpdf(c["loc_int_sd"]).sum()
    prior += stats.halfnorm(scale=priors.interaction_slope_sd).logpdf(c["slope_int_sd"]).sum()
    prior += stats.halfnorm(scale=priors.interaction_log_sigma_sd).logpdf(c["log_sigma_int_sd"])
    # Interactions: standard normal coordinates (scaled in the model).
    for name in ("loc_int_z", "slope_int_z", "log_sigma_int_z"):
        prior += stats.norm().logpdf(c[name]).sum()
    prior += stats.halfnorm(scale=priors.experiment_sd).logpdf(c["sd_e"]).sum()
    prior += stats.halfnorm(scale=priors.cell_sd).logpdf(c["sd_c"]).sum()
    prior += stats.halfnorm(scale=priors.experiment_outcome_sd).logpdf(omega0)
    b = cpc_shapes(2, priors.lkj_eta)
    prior += stats.beta(b, b).logpdf(c["cpc_e"]).sum()
    full = model.compile_logp(jacobian=False)(values)
    # PyMC's half-normal constant differs from SciPy's by ~2e-9 per value; a
    # wrong prior (scale, family or wiring) would be off by O(1).
    assert float(full) == pytest.approx(total + prior, abs=1e-6)


def test_cpc_factor_is_a_valid_correlation_cholesky() -> None:
    rng = np.random.default_rng(0)
    z = rng.uniform(-0.99, 0.99, size=(5, 6))
    low = corr_cholesky(z, 4, np)
    corr = low @ np.swapaxes(low, -1, -2)
    np.testing.assert_allclose(np.einsum("nii->ni", corr), 1.0, atol=1e-12)
    assert np.all(np.linalg.eigvalsh(corr) > 0)


def test_location_axes_are_centred_only_where_an_interaction_is_clearly_there() -> None:
    cells = _cells(seed=5, k=2, interaction=2.0)
    structure, cell_segment = SegmentStructure.from_effects(cells)
    data = fit_data(cells, cell_segment)
    basis = structure.interaction_basis("additive")
    weights = location_weights(data, structure, basis)
    assert weights.shape == (3, 2)
    # The planted deviation of the first proxy (row 1) pins its axes down;
    # the other rows show no interaction and stay non-centred.
    assert weights[1].min() < 0.2
    np.testing.assert_array_equal(weights[[0, 2]], 1.0)
    no = _cells(seed=5, k=2, interaction=0.0)
    structure, cell_segment = SegmentStructure.from_effects(no)
    plain = location_weights(fit_data(no, cell_segment), structure, basis)
    np.testing.assert_array_equal(plain, 1.0)


@pytest.mark.parametrize(
    "cohort",
    [
        ps.simulate.FailureCohort(),
        ps.simulate.FailureCohort("LATAM", "TV", "Existing"),
        ps.simulate.FailureCohort.none(),
    ],
    ids=["default-cohort", "moved-cohort", "no-cohort"],
)
def test_location_centring_follows_the_cohort(cohort: Any) -> None:
    world = ps.simulate.streaming(n_users=250_000, n_experiments=50, seed=4, cohort=cohort)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        cells = ps.summarize(world.users, engine="duckdb", **ps.simulate.column_roles())
    structure, cell_segment = SegmentStructure.from_effects(cells)
    data = fit_data(cells, cell_segment)
    weights = location_weights(data, structure, structure.interaction_basis("additive"))
    rows = {metric: weights[cells.metrics.index(metric)] for metric in cells.metrics}
    # The proxies the cohort boosts have a clear interaction: mostly centred.
    # The ones it leaves alone are not (CTR and rebuffer rate have none).
    boosted = ("early_watch_min", "early_starts")
    for metric in ("early_ctr", "rebuffer_rate"):
        np.testing.assert_array_equal(rows[metric], 1.0)
    for metric in boosted:
        if cohort.active:
            assert rows[metric].mean() < 0.5, metric
        else:
            np.testing.assert_array_equal(rows[metric], 1.0)


def test_standardisation_uses_the_spread_of_true_effects() -> None:
    cells = _cells(seed=1)
    _structure, cell_segment = SegmentStructure.from_effects(cells)
    data = fit_data(cells, cell_segment)
    observed = cells.effect.var(axis=0, ddof=1)
    noise = np.einsum("cii->ci", cells.noise_cov).mean(axis=0)
    expected = np.sqrt(np.maximum(observed - noise, 0.04 * observed))
    np.testing.assert_allclose(data.scales, expected)


def test_configuration_errors_name_the_parameter_and_the_choices() -> None:
    with pytest.raises(ParameterError, match=r"'pooling' parameter of ProxyModel.*'additive'"):
        ps.ProxyModel(pooling="addtive")
    with pytest.raises(ParameterError, match="Did you mean 'lkj_eta'") as err:
        ps.ProxyModel(priors={"lkj_etta": 3})
    assert "experiment_sd" in str(err.value)  # the valid names are listed
    with pytest.raises(ParameterError, match="lkj_eta"):
        ps.ProxyModel(priors={"lkj_eta": -1})
    with pytest.raises(ParameterError, match="'sampler'"):
        ps.ProxyModel(sampler="stan")
    with pytest.raises(ParameterError, match="'cell_correlation'"):
        ps.ProxyModel(cell_correlation="full")
    model = ps.ProxyModel()
    with pytest.raises(DataTypeError, match="CellEffects"):
        model.fit(pd.DataFrame({"a": [1]}))
    with pytest.raises(ParameterError, match="'draws'"):
        model.fit(_cells(), draws=0)
    with pytest.raises(ParameterError, match="'random_seed'"):
        model.fit(_cells(), random_seed=-3)
    assert model.get_config()["pooling"] == "additive"  # the constructor stores, never samples


@pytest.mark.parametrize("sampler", ["nutpie", "pymc"])
def test_sampler_settings_are_checked_against_the_sampler_before_anything_compiles(
    sampler: str,
) -> None:
    from proxyscope.model.settings import sampler_keys

    keys = sampler_keys(sampler)
    assert "target_accept" in keys and "draws" not in keys and "kwargs" not in keys
    depth = "maxdepth" if sampler == "nutpie" else "max_treedepth"
    assert depth in keys
    with pytest.raises(ParameterError, match="Did you mean 'target_accept'") as err:
        ps.ProxyModel(sampler=sampler, sampler_settings={"target_acept": 0.95})
    assert depth in str(err.value)  # the valid settings are listed
    with pytest.raises(ParameterError, match=r"strictly between 0 and 1; got 2\.0"):
        ps.ProxyModel(sampler=sampler, sampler_settings={"target_accept": 2.0})
    with pytest.raises(ParameterError, match="'random_seed' argument of fit"):
        ps.ProxyModel(sampler=sampler, sampler_settings={"seed": 3})
    with pytest.raises(ParameterError, match=f"'{depth}' must be a positive integer"):
        ps.ProxyModel(sampler=sampler, sampler_settings={depth: 0})
    model = ps.ProxyModel(sampler=sampler, sampler_settings={"target_accept": 0.95, depth: 8})
    assert model.sampler_settings == {"target_accept": 0.95, depth: 8}
    # Changed after construction: fit checks again, before it compiles anything.
    model.sampler_settings["target_acept"] = 0.9
    with pytest.raises(ParameterError, match="target_acept"):
        model.fit(_cells(), draws=10, tune=10, chains=1)


def test_principal_axes_decorrelate_the_experiment_level_effects() -> None:
    cells = _cells(seed=2, k=3)
    _structure, cell_segment = SegmentStructure.from_effects(cells)
    data = fit_data(cells, cell_segment)
    basis = principal_axes(data)
    np.testing.assert_allclose(basis.T @ basis, np.eye(3), atol=1e-12)
    # Each axis is signed so that its largest entry is positive.
    assert all(col[np.argmax(np.abs(col))] > 0 for col in basis.T)
    # The experiment-level means, computed here from the table: precision-
    # weighted over each experiment's cells, in the model's standardized units.
    experiment = np.asarray(cells.experiment)
    means = []
    for j in range(len(cells.proxies)):
        w = 1.0 / cells.noise_cov[:, j + 1, j + 1]
        x = cells.effect[:, j + 1] / data.scales[j + 1]
        num = pd.Series(w * x).groupby(experiment).sum()
        den = pd.Series(w).groupby(experiment).sum()
        means.append((num / den).to_numpy())
    cov = np.cov(np.column_stack(means), rowvar=False)
    rotated = basis.T @ cov @ basis
    off = rotated - np.diag(np.diag(rotated))
    assert np.abs(off).max() < 1e-9 * np.abs(rotated).max()
    assert np.all(np.diff(np.diag(rotated)) <= 0)  # largest variance first
    # The proxies move together (all shift with the experiment): the first
    # axis weighs them all with the same sign.
    assert np.all(basis[:, 0] > 0)
    # One proxy: nothing to rotate.
    one = _cells(seed=2, k=1)
    _structure, one_segment = SegmentStructure.from_effects(one)
    np.testing.assert_array_equal(principal_axes(fit_data(one, one_segment)), np.eye(1))


def test_every_prior_says_what_it_governs() -> None:
    from proxyscope.model.priors import ROLES

    assert list(ROLES) == ps.Priors.names()
    assert all(ROLES.values())

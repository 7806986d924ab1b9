"""The simulator's truth: in-sample truth against the potential outcomes, population truth
against Monte Carlo, and the flip and accuracy definitions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy.special import ndtr

from proxyscope import simulate
from proxyscope.simulate import FailureCohort, SegmentMix

SEGMENTS = ["region", "device", "tenure"]
METRICS = ["long_retained", "early_watch_min", "early_starts", "early_ctr", "rebuffer_rate"]
PROXIES = METRICS[1:]
LEVELS = {
    "region": ["NA", "LATAM", "EU", "IN"],
    "device": ["TV", "Mobile", "Desktop"],
    "tenure": ["New", "Existing"],
}
EXACT = {"rtol": 1e-12, "atol": 1e-15}


def effects_frame(world: simulate.World) -> pd.DataFrame:
    """Per-user true effects from the potential outcomes, written out plainly."""
    po, users = world.potential_outcomes, world.users
    frame = pd.DataFrame(
        {
            "experiment": users["exp_id"].to_numpy(),
            "region": users["region"].astype(str).to_numpy(),
            "device": users["device"].astype(str).to_numpy(),
            "tenure": users["tenure"].astype(str).to_numpy(),
            "treatment": users["treatment"].to_numpy(),
            "long_retained": po["p_long_1"] - po["p_long_0"],
            "early_watch_min": po["early_watch_min_1"] - po["early_watch_min_0"],
            "early_starts": po["early_starts_1"] - po["early_starts_0"],
            "early_ctr": po["early_ctr_1"] - po["early_ctr_0"],
            # lower is better: read in the good direction
            "rebuffer_rate": po["rebuffer_rate_0"] - po["rebuffer_rate_1"],
        }
    )
    return frame


def as_frame(da: xr.DataArray, name: str) -> pd.Series:
    return da.to_series().rename(name)


@pytest.fixture(
    scope="module", params=[(250_000, 50, 7), (3_000, 12, 4)], ids=["default", "sparse"]
)
def world(request: pytest.FixtureRequest) -> simulate.World:
    n, e, seed = request.param
    return simulate.streaming(n_users=n, n_experiments=e, seed=seed)


# -- (b) truth == plain groupby on the potential outcomes ---------------------------


def test_truth_dims_and_variables(world: simulate.World) -> None:
    truth = world.truth
    assert truth["cell_effect"].dims == ("experiment", *SEGMENTS, "metric")
    assert truth["cell_users"].dims == ("experiment", *SEGMENTS)
    assert truth["experiment_effect"].dims == ("experiment", "metric")
    assert truth["segment_effect"].dims == (*SEGMENTS, "metric")
    assert truth["overall_effect"].dims == ("metric",)
    assert truth["flip_rate"].dims == (*SEGMENTS, "proxy")
    assert truth["decision_accuracy"].dims == ("proxy",)
    assert truth["pop_flip_prob"].dims == (*SEGMENTS, "proxy")
    assert truth["pop_effect_mean"].dims == (*SEGMENTS, "metric")
    assert truth["pop_effect_sd"].dims == (*SEGMENTS, "metric")
    assert truth["pop_decision_accuracy"].dims == ("proxy",)
    assert list(truth["metric"].values) == METRICS
    assert list(truth["proxy"].values) == PROXIES
    for col in SEGMENTS:
        assert list(truth[col].values) == LEVELS[col]
    assert list(truth["experiment"].values) == list(range(world.config.n_experiments))


def test_cell_effects_equal_groupby_of_potential_outcomes(world: simulate.World) -> None:
    eff = effects_frame(world)
    keys = ["experiment", *SEGMENTS]
    expected = eff.groupby(keys)[METRICS].mean()
    got = world.truth["cell_effect"].to_series().unstack("metric")[METRICS]
    counts = eff.groupby(keys).size()
    filled = got.loc[expected.index]
    np.testing.assert_allclose(filled.to_numpy(), expected.to_numpy(), **EXACT)
    # Every other cell is empty: NaN effect, 0 users.
    users = world.truth["cell_users"].to_series()
    np.testing.assert_array_equal(users.loc[counts.index].to_numpy(), counts.to_numpy())
    empty = users.index.difference(counts.index)
    assert (users.loc[empty] == 0).all()
    assert got.loc[empty].isna().all().all()
    assert int(users.sum()) == world.config.n_users
    treated = eff.groupby(keys)["treatment"].sum()
    np.testing.assert_array_equal(
        world.truth["cell_treated"].to_series().loc[treated.index].to_numpy(), treated.to_numpy()
    )


def test_experiment_segment_overall_effects(world: simulate.World) -> None:
    eff = effects_frame(world)
    by_exp = eff.groupby("experiment")[METRICS].mean()
    got = world.truth["experiment_effect"].to_series().unstack("metric")[METRICS]
    np.testing.assert_allclose(got.loc[by_exp.index].to_numpy(), by_exp.to_numpy(), **EXACT)
    by_seg = eff.groupby(SEGMENTS)[METRICS].mean()
    got = world.truth["segment_effect"].to_series().unstack("metric")[METRICS]
    np.testing.assert_allclose(got.loc[by_seg.index].to_numpy(), by_seg.to_numpy(), **EXACT)
    np.testing.assert_allclose(
        world.truth["overall_effect"].sel(metric=METRICS).to_numpy(),
        eff[METRICS].mean().to_numpy(),
        **EXACT,
    )
    np.testing.assert_array_equal(
        world.truth["segment_users"].to_series().loc[by_seg.index].to_numpy(),
        eff.groupby(SEGMENTS).size().to_numpy(),
    )


def test_flip_rate_and_decision_accuracy(world: simulate.World) -> None:
    eff = effects_frame(world)
    cells = eff.groupby(["experiment", *SEGMENTS])[METRICS].mean().reset_index()
    for proxy in PROXIES:
        cells[f"flip_{proxy}"] = (cells["long_retained"] * cells[proxy]) < 0
    flip = cells.groupby(SEGMENTS)[[f"flip_{p}" for p in PROXIES]].mean()
    got = world.truth["flip_rate"].to_series().unstack("proxy")[PROXIES]
    np.testing.assert_allclose(got.loc[flip.index].to_numpy(), flip.to_numpy(), **EXACT)
    n_exp = cells.groupby(SEGMENTS).size()
    np.testing.assert_array_equal(
        world.truth["flip_experiments"].to_series().loc[n_exp.index].to_numpy(), n_exp.to_numpy()
    )
    missing = got.index.difference(flip.index)
    assert got.loc[missing].isna().all().all()

    by_exp = eff.groupby("experiment")[METRICS].mean()
    for proxy in PROXIES:
        expected = (np.sign(by_exp["long_retained"]) == np.sign(by_exp[proxy])).mean()
        assert world.truth["decision_accuracy"].sel(proxy=proxy).item() == pytest.approx(
            expected, abs=1e-15
        )


def test_rebuffer_effect_is_exactly_zero_off_tv_and_never_a_flip(world: simulate.World) -> None:
    cell = world.truth["cell_effect"].sel(metric="rebuffer_rate")
    off_tv = cell.sel(device=["Mobile", "Desktop"])
    assert bool(((off_tv == 0) | off_tv.isnull()).all())
    on_tv = cell.sel(device="TV")
    assert bool(((on_tv > 0.0299) | on_tv.isnull()).all())
    assert bool(
        (
            world.truth["flip_rate"]
            .sel(proxy="rebuffer_rate", device=["Mobile", "Desktop"])
            .fillna(0)
            == 0
        ).all()
    )
    np.testing.assert_array_equal(world.truth["exp_tau"], world.experiments["exp_tau"])
    np.testing.assert_array_equal(world.truth["exp_bias"], world.experiments["exp_bias"])


def test_truth_on_default_seed_shows_the_planted_cohort() -> None:
    world = simulate.streaming(n_users=250_000, n_experiments=50, seed=7)
    flips = world.truth["flip_rate"].sel(proxy="early_watch_min")
    cohort = flips.sel(region="IN", device="Mobile", tenure="New").item()
    assert cohort > 0.8
    assert cohort == float(flips.max())
    assert float(flips.where(flips.region != "IN").max()) < 0.5


# -- (d) population truth -------------------------------------------------------------


@pytest.fixture(scope="module")
def default_world() -> simulate.World:
    return simulate.streaming(n_users=20_000, n_experiments=10, seed=7)


def test_pop_decision_accuracy_on_default_mix(default_world: simulate.World) -> None:
    acc = default_world.truth["pop_decision_accuracy"]
    # Exact values on the probability scale (Monte Carlo confirms them below).
    assert acc.sel(proxy="early_watch_min").item() == pytest.approx(0.9597, abs=5e-4)
    assert acc.sel(proxy="early_starts").item() == pytest.approx(0.9017, abs=5e-4)
    # ctr and (with TV in the mix) rebuffer always move up: accuracy = P(long-term effect > 0).
    assert acc.sel(proxy="early_ctr").item() == acc.sel(proxy="rebuffer_rate").item()


def test_issue_anchors_are_the_logit_scale_version(default_world: simulate.World) -> None:
    # The issue's anchors (0.956 / 0.898) are what one gets reading the sign of the
    # mix-level long-term effect from the mix-average logit shift Σ π_s (t + c_s);
    # the truth uses the probability scale, Σ π_s τ_s(t, b), which differs slightly.
    pi = default_world.config.mix.cell_probabilities()
    logit = default_world.mechanism.decision_accuracy(pi, scale="logit")
    assert round(logit[0], 3) == 0.956
    assert round(logit[1], 3) == 0.898


def test_pop_effect_functions_match_simulated_users() -> None:
    # One experiment, many users: the in-sample cell effect is a sample mean of
    # per-user effects whose population mean the quadrature gives exactly.
    world = simulate.streaming(n_users=1_200_000, n_experiments=1, seed=21, exp_tau_sd=0.3)
    t = world.experiments["exp_tau"].to_numpy()
    b = world.experiments["exp_bias"].to_numpy()
    exact = world.mechanism.cell_effects(t, b)[0]  # (24, 5)
    eff = effects_frame(world)
    grouped = eff.groupby(SEGMENTS)[METRICS]
    mean = grouped.mean()
    se = grouped.std() / np.sqrt(grouped.size().to_numpy()[:, None])
    order = pd.MultiIndex.from_product([LEVELS[c] for c in SEGMENTS], names=SEGMENTS)
    z = (mean.loc[order].to_numpy() - exact) / np.maximum(se.loc[order].to_numpy(), 1e-300)
    # Constant per-user effects in the sample: rebuffer (0 off TV) and ctr, whose cap at
    # 1 binds with probability < 1e-6 (so the population effect is a hair below the lift).
    constant = se.loc[order].to_numpy() < 1e-13
    assert np.all(np.abs(z[~constant]) < 5), z
    np.testing.assert_allclose(mean.loc[order].to_numpy()[constant], exact[constant], atol=1e-6)
    assert np.all(exact[:, 3] <= mean.loc[order].to_numpy()[:, 3] + 1e-15)


@pytest.fixture(scope="module")
def monte_carlo(default_world: simulate.World) -> dict[str, np.ndarray]:
    """200k new experiments: exact effects at Monte Carlo draws of (exp_tau, exp_bias)."""
    mech = default_world.mechanism
    rng = np.random.default_rng(12345)
    n = 200_000
    t = rng.normal(0, 0.12, n)
    b = rng.normal(0, 0.08, n)
    eff = np.empty((n, 24, 5))
    eff[..., 0] = mech.long_effect(t, b)
    eff[..., 1] = mech.watch_effect(t)
    eff[..., 2] = mech.starts_effect(t)
    eff[..., 3] = mech.ctr_effect
    eff[..., 4] = mech.rebuffer_effect
    return {"t": t, "b": b, "eff": eff}


def test_pop_decision_accuracy_matches_monte_carlo(
    default_world: simulate.World, monte_carlo: dict[str, np.ndarray]
) -> None:
    pi = default_world.config.mix.cell_probabilities()
    mix = np.einsum("nsm,s->nm", monte_carlo["eff"], pi)
    n = mix.shape[0]
    for k, proxy in enumerate(PROXIES, start=1):
        mc = np.mean(np.sign(mix[:, 0]) == np.sign(mix[:, k]))
        exact = default_world.truth["pop_decision_accuracy"].sel(proxy=proxy).item()
        se = np.sqrt(exact * (1 - exact) / n)
        assert abs(mc - exact) < 4 * se, (proxy, mc, exact)


def test_pop_moments_match_monte_carlo(
    default_world: simulate.World, monte_carlo: dict[str, np.ndarray]
) -> None:
    eff = monte_carlo["eff"]
    n = eff.shape[0]
    mean = default_world.truth["pop_effect_mean"].to_numpy().reshape(24, 5)
    sd = default_world.truth["pop_effect_sd"].to_numpy().reshape(24, 5)
    mc_mean = eff.mean(axis=0)
    mc_sd = eff.std(axis=0)
    varying = sd > 0
    assert np.all(np.abs(mc_mean - mean)[varying] < 4 * sd[varying] / np.sqrt(n))
    assert np.all(np.abs(mc_sd - sd)[varying] < 4 * sd[varying] / np.sqrt(2 * n))
    # ctr and rebuffer do not depend on the experiment: every draw has the same effect.
    np.testing.assert_array_equal(
        eff[:, ~varying], np.broadcast_to(mean[~varying], (n, int((~varying).sum())))
    )
    pi = default_world.config.mix.cell_probabilities()
    mix = np.einsum("nsm,s->nm", eff, pi)
    mix_mean = default_world.truth["pop_mix_effect_mean"].to_numpy()
    mix_sd = default_world.truth["pop_mix_effect_sd"].to_numpy()
    assert np.all(np.abs(mix.mean(axis=0) - mix_mean)[:3] < 4 * mix_sd[:3] / np.sqrt(n))
    assert np.all(np.abs(mix.std(axis=0) - mix_sd)[:3] < 4 * mix_sd[:3] / np.sqrt(2 * n))


def test_pop_flip_prob_closed_form(default_world: simulate.World) -> None:
    # Signs are sign(t + c_s) for long-term and sign(t + root shift) for watch/starts.
    flip = default_world.truth["pop_flip_prob"]
    cell = {"region": "NA", "device": "TV", "tenure": "Existing"}  # seg_tau = .06 + .03
    long_root, watch_root, starts_root = -0.09, -0.3 * 0.09, -0.2 * 0.09
    assert flip.sel(**cell, proxy="early_watch_min").item() == pytest.approx(
        ndtr(watch_root / 0.12) - ndtr(long_root / 0.12), abs=1e-14
    )
    assert flip.sel(**cell, proxy="early_starts").item() == pytest.approx(
        ndtr(starts_root / 0.12) - ndtr(long_root / 0.12), abs=1e-14
    )
    assert flip.sel(**cell, proxy="early_ctr").item() == pytest.approx(
        ndtr(long_root / 0.12), abs=1e-14
    )
    assert flip.sel(**cell, proxy="rebuffer_rate").item() == pytest.approx(
        ndtr(long_root / 0.12), abs=1e-14
    )
    assert float(flip.sel(proxy="rebuffer_rate", device="Mobile").max()) == 0.0


def test_pop_flip_prob_matches_in_sample_flip_rate_of_many_experiments() -> None:
    # Enough users per cell that a cell whose users are all clipped at 0 (effect 0) is rare.
    world = simulate.streaming(n_users=900_000, n_experiments=1_500, seed=17)
    truth = world.truth
    n = truth["flip_experiments"]
    rate, prob = truth["flip_rate"], truth["pop_flip_prob"]
    se = np.sqrt(prob * (1 - prob) / n)
    z = ((rate - prob) / se.where(se > 0)).to_numpy()
    assert np.nanmax(np.abs(z)) < 4.5
    assert float(rate.where(prob == 0).fillna(0).max()) == 0.0
    # Each in-sample flip is exactly "exp_tau between the two roots" (cells with users).
    tau = world.experiments["exp_tau"].to_numpy()[:, None, None, None]
    c = np.zeros((4, 3, 2))
    c[:, 0, :] += 0.06
    c[:, 1, :] -= 0.05
    c[3] -= 0.03
    c[:, :, 1] += 0.03
    watch_shift = 0.3 * c.copy()
    watch_shift[3, 1, 0] += 6 / 8
    c[3, 1, 0] -= 0.25
    expected = (np.sign(tau + c) * np.sign(tau + watch_shift)) < 0
    cell = truth["cell_effect"]
    observed = (
        cell.sel(metric="long_retained") * cell.sel(metric="early_watch_min") < 0
    ).to_numpy()
    # (a cell whose few users are all clipped at 0 in both arms has effect 0: not a flip)
    moved = cell.sel(metric="early_watch_min").fillna(0).to_numpy() != 0
    filled = (truth["cell_users"].to_numpy() > 0) & moved
    assert filled.mean() > 0.5
    np.testing.assert_array_equal(
        observed[filled], np.broadcast_to(expected, observed.shape)[filled]
    )


def test_population_truth_for_another_mix(default_world: simulate.World) -> None:
    no_tv = SegmentMix(device={"Mobile": 0.5, "Desktop": 0.5})
    pop = default_world.population_truth(no_tv)
    # Without TV, rebuffer never moves: it never agrees with a moving long-term effect.
    assert pop["pop_decision_accuracy"].sel(proxy="rebuffer_rate").item() == 0.0
    assert pop["pop_mix_effect_mean"].sel(metric="rebuffer_rate").item() == 0.0
    # Per-segment truth does not depend on the mix.
    for var in ("pop_effect_mean", "pop_effect_sd", "pop_flip_prob"):
        xr.testing.assert_identical(pop[var], default_world.truth[var])
    # All mass on the cohort: the mix-level truth is the cohort's own.
    cohort = default_world.population_truth({("IN", "Mobile", "New"): 1.0})
    cell = default_world.truth["pop_effect_mean"].sel(region="IN", device="Mobile", tenure="New")
    np.testing.assert_allclose(cohort["pop_mix_effect_mean"], cell, rtol=1e-12)
    flip = default_world.truth["pop_flip_prob"].sel(region="IN", device="Mobile", tenure="New")
    moving = PROXIES[:3]  # no TV in the cohort: rebuffer never moves there (accuracy 0)
    np.testing.assert_allclose(
        cohort["pop_decision_accuracy"].sel(proxy=moving), 1 - flip.sel(proxy=moving), atol=1e-9
    )
    assert cohort["pop_decision_accuracy"].sel(proxy="rebuffer_rate").item() == 0.0
    np.testing.assert_array_equal(cohort["mix_share"].sum(), 1.0)


def test_pop_truth_without_bias_and_with_other_sds() -> None:
    world = simulate.streaming(
        n_users=5_000, n_experiments=3, seed=1, exp_bias_sd=0.0, exp_tau_sd=0.3
    )
    acc = world.truth["pop_decision_accuracy"].to_numpy()
    mech = world.mechanism
    pi = world.config.mix.cell_probabilities()
    rng = np.random.default_rng(8)
    t = rng.normal(0, 0.3, 100_000)
    long = mech.long_effect(t, np.zeros_like(t)) @ pi
    for k, eff in enumerate((mech.watch_effect(t) @ pi, mech.starts_effect(t) @ pi)):
        mc = np.mean(np.sign(long) == np.sign(eff))
        assert abs(mc - acc[k]) < 4 * np.sqrt(acc[k] * (1 - acc[k]) / t.size)
    assert bool((world.truth["pop_effect_sd"].sel(metric="long_retained") > 0).all())


def test_new_experiment_effects(default_world: simulate.World) -> None:
    frame = default_world.new_experiment_effects(300, seed=5)
    assert len(frame) == 300 * 25
    assert list(frame.columns) == [
        "experiment", "exp_tau", "exp_bias", "scope", *SEGMENTS, "mix_share", *METRICS,
    ]  # fmt: skip
    again = default_world.new_experiment_effects(300, seed=5)
    pd.testing.assert_frame_equal(frame, again)
    rng = np.random.default_rng(5)
    t, b = rng.normal(0, 0.12, 300), rng.normal(0, 0.08, 300)
    per_exp = frame.groupby("experiment")
    np.testing.assert_array_equal(per_exp["exp_tau"].first(), t)
    np.testing.assert_array_equal(per_exp["exp_bias"].first(), b)
    seg = frame[frame["scope"] == "segment"]
    exact = default_world.mechanism.cell_effects(t, b).reshape(-1, 5)
    np.testing.assert_allclose(seg[METRICS].to_numpy(), exact, rtol=1e-12, atol=1e-15)
    # The mix row is the mix-weighted sum of the segment rows.
    mix = frame[frame["scope"] == "mix"].set_index("experiment")
    weighted = (seg[METRICS].mul(seg["mix_share"], axis=0)).groupby(seg["experiment"]).sum()
    np.testing.assert_allclose(mix[METRICS].to_numpy(), weighted.to_numpy(), rtol=1e-12, atol=1e-15)
    assert (mix[SEGMENTS] == "all").all().all()
    # Signs: long-term sign is sign(t + c_s); watch always agrees outside the cohort-free TV cells
    cohort = seg[(seg["region"] == "IN") & (seg["device"] == "Mobile") & (seg["tenure"] == "New")]
    assert np.array_equal(np.sign(cohort["long_retained"]), np.sign(cohort["exp_tau"] - 0.33))
    # Another mix and the interpolated path for many experiments agree with the direct one.
    big = default_world.new_experiment_effects(5_000, mix={("NA", "TV", "New"): 1.0}, seed=6)
    rng = np.random.default_rng(6)
    t, b = rng.normal(0, 0.12, 5_000), rng.normal(0, 0.08, 5_000)
    mix_rows = big[big["scope"] == "mix"]
    mech = default_world.mechanism
    direct_long = np.concatenate(
        [mech.long_effect(t[i : i + 500], b[i : i + 500])[:, 0] for i in range(0, 5_000, 500)]
    )
    np.testing.assert_allclose(mix_rows["long_retained"], direct_long, rtol=1e-12, atol=1e-15)
    direct_starts = mech.starts_effect(t[:2_000])[:, 0]  # few enough to evaluate directly
    np.testing.assert_allclose(
        mix_rows["early_starts"][:2_000], direct_starts, rtol=1e-12, atol=1e-14
    )
    with pytest.raises(ValueError, match="n must be an integer >= 1; got 0"):
        default_world.new_experiment_effects(0)


def test_world_repr_and_cohort_none_truth() -> None:
    world = simulate.streaming(n_users=10_000, n_experiments=5, seed=2, cohort=FailureCohort.none())
    assert "10,000 users" in repr(world)
    flips = world.truth["pop_flip_prob"].sel(proxy="early_watch_min")
    assert float(flips.max()) < 0.5


def test_pop_decision_accuracy_matches_brute_force_integration() -> None:
    # A mix and cohort where the mix-level long-term root r_L(b) crosses the proxy
    # roots as exp_bias varies (the integrand over b has kinks), with a large
    # exp_bias sd so that b matters: integrate on a dense uniform b-grid with a
    # root search per b (scipy brentq) and compare.
    from scipy.optimize import brentq

    from proxyscope.simulate.population import Mechanism

    sd_t, sd_b = 0.12, 1.5
    cohort = FailureCohort(long_penalty=-0.25, watch_boost=-0.672, starts_boost=-0.0336)
    mech = Mechanism(cohort, sd_t, sd_b)
    mix = SegmentMix.from_joint({("IN", "Mobile", "New"): 0.2, ("NA", "TV", "Existing"): 0.8})
    pi = mix.cell_probabilities()
    b = np.linspace(-8 * sd_b, 8 * sd_b, 1601)
    r_long = np.array(
        [
            brentq(
                lambda t, bb=bb: float(mech.long_effect(np.array(t), np.array(bb)) @ pi),
                -2,
                2,
                xtol=1e-15,
            )
            for bb in b
        ]
    )
    weight = np.exp(-0.5 * (b / sd_b) ** 2)
    weight /= weight.sum()
    exact = mech.decision_accuracy(pi)
    for k, effect in enumerate((mech.watch_effect, mech.starts_effect)):
        root = brentq(lambda t, f=effect: float(f(np.array([t]))[0] @ pi), -2, 2, xtol=1e-15)
        assert r_long.min() < root < r_long.max()  # the kink is there
        brute = weight @ (1 - np.abs(ndtr(r_long / sd_t) - ndtr(root / sd_t)))
        assert exact[k] == pytest.approx(brute, abs=2e-6)
    # ...and it is not what one gets at b = 0 alone.
    at_zero = Mechanism(cohort, sd_t, 0.0).decision_accuracy(pi)
    assert np.all(np.abs(at_zero[:2] - exact[:2]) > 1e-3)

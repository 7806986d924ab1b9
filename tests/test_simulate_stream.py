"""The simulator's random stream: draw-for-draw equality with the seed, potential outcomes.

The reference below re-derives the seed generator
(../shared/seeds/000-generator-baseline-patent.txt) from its formulas,
independently of proxyscope.simulate: string segments, pandas ``.map``, the
same draws in the same order, and ``rng.binomial`` for retention.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import ndtr

from proxyscope import simulate
from proxyscope.simulate import FailureCohort, SegmentMix
from proxyscope.simulate._bernoulli import bernoulli_pair, binomial_uniforms

SEGMENTS = ("region", "device", "tenure")
METRICS = ("long_retained", "early_watch_min", "early_starts", "early_ctr", "rebuffer_rate")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def seed_streaming(
    n_users: int, n_experiments: int, seed: int, force_treatment: int | None = None
) -> pd.DataFrame:
    """The seed generator's user table; ``force_treatment`` overrides the drawn arm (0 or 1).

    The arm is still drawn, so the stream is unchanged; with an override the
    table is what every user would show in that arm (plus ``long_prob``).
    """
    rng = np.random.default_rng(seed)
    exp_id = rng.integers(0, n_experiments, size=n_users)
    region = rng.choice(
        np.array(["NA", "LATAM", "EU", "IN"]), size=n_users, p=[0.35, 0.20, 0.25, 0.20]
    )
    device = rng.choice(np.array(["TV", "Mobile", "Desktop"]), size=n_users, p=[0.45, 0.45, 0.10])
    tenure = rng.choice(np.array(["New", "Existing"]), size=n_users, p=[0.30, 0.70])
    treatment = rng.integers(0, 2, size=n_users)
    if force_treatment is not None:
        treatment = np.full(n_users, force_treatment)
    region_w = pd.Series(region).map({"NA": 0.2, "LATAM": -0.1, "EU": 0.05, "IN": -0.15}).to_numpy()
    device_w = pd.Series(device).map({"TV": 0.25, "Mobile": -0.05, "Desktop": 0.0}).to_numpy()
    tenure_w = pd.Series(tenure).map({"New": -0.1, "Existing": 0.1}).to_numpy()
    exp_tau = rng.normal(0.0, 0.12, size=n_experiments)
    exp_bias = rng.normal(0.0, 0.08, size=n_experiments)
    tv = (device == "TV").astype(float)
    mobile = (device == "Mobile").astype(float)
    india = (region == "IN").astype(float)
    seg_tau = 0.06 * tv - 0.05 * mobile - 0.03 * india + 0.03 * (tenure == "Existing").astype(float)
    cohort = ((device == "Mobile") & (region == "IN") & (tenure == "New")).astype(float)
    sat = rng.normal(0.0, 1.0, size=n_users) + region_w + device_w + tenure_w
    eng = rng.normal(0.0, 1.0, size=n_users) + 0.5 * device_w - 0.2 * tenure_w
    base_logit = -0.3 + 0.7 * sat + 0.15 * eng + exp_bias[exp_id]
    tau_long = exp_tau[exp_id] + seg_tau
    tau_long = tau_long + -0.25 * cohort
    long_prob = _sigmoid(base_logit + treatment * tau_long)
    long_retained = rng.binomial(1, long_prob, size=n_users)
    noise = rng.normal(0.0, 1.0, size=n_users)
    watch = (
        25
        + 10 * eng
        + 6 * sat
        + 8 * treatment * (exp_tau[exp_id] + 0.3 * seg_tau)
        + 6 * treatment * cohort
        + 5 * noise
    )
    starts = (
        1.8
        + 0.7 * _sigmoid(eng)
        + 0.2 * _sigmoid(sat)
        + 0.4 * treatment * (exp_tau[exp_id] + 0.2 * seg_tau)
        + 0.6 * treatment * cohort
        + 0.3 * rng.normal(0, 1, size=n_users)
    )
    ctr = _sigmoid(0.3 * eng - 0.35 * sat + 0.1 * rng.normal(0, 1, size=n_users))
    ctr = ctr + 0.06 * treatment + 0.04 * mobile * treatment
    rebuffer = _sigmoid(
        -0.2 * sat + 0.25 * india + 0.15 * mobile + 0.1 * rng.normal(0, 1, size=n_users)
    )
    rebuffer = rebuffer - 0.03 * treatment * tv
    out = pd.DataFrame(
        {
            "exp_id": exp_id,
            "region": region,
            "device": device,
            "tenure": tenure,
            "treatment": treatment,
            "early_watch_min": np.clip(watch, 0, None),
            "early_starts": np.clip(starts, 0, None),
            "early_ctr": np.clip(ctr, 0, 1),
            "rebuffer_rate": np.clip(rebuffer, 0, 1),
            "long_retained": long_retained,
            "failure_cohort": cohort.astype(int),
        }
    )
    if force_treatment is not None:
        out["long_prob"] = long_prob
        out["exp_tau"] = exp_tau[exp_id]
        out["exp_bias"] = exp_bias[exp_id]
    return out


def assert_same_observed(users: pd.DataFrame, ref: pd.DataFrame) -> None:
    assert list(users.columns) == [c for c in ref.columns if c in users.columns]
    assert list(users.columns) == [
        "exp_id", *SEGMENTS, "treatment", "early_watch_min", "early_starts", "early_ctr",
        "rebuffer_rate", "long_retained", "failure_cohort",
    ]  # fmt: skip
    for col in users.columns:
        if col in SEGMENTS:
            np.testing.assert_array_equal(users[col].astype(str).to_numpy(), ref[col].to_numpy())
        else:
            assert users[col].dtype == ref[col].dtype, col
            # Bit-for-bit: exact equality, not a tolerance.
            np.testing.assert_array_equal(users[col].to_numpy(), ref[col].to_numpy(), strict=True)


# -- (a) draw for draw -------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_users", "n_experiments", "seed"),
    [(250_000, 50, 7), (100_003, 7, 123), (4_999, 1, 0), (20_000, 300, 2**40 + 5)],
)
def test_observed_columns_equal_seed_generator_draw_for_draw(
    n_users: int, n_experiments: int, seed: int
) -> None:
    world = simulate.streaming(n_users=n_users, n_experiments=n_experiments, seed=seed)
    ref = seed_streaming(n_users, n_experiments, seed)
    assert_same_observed(world.users, ref)
    # The per-experiment draws are the seed's too.
    rng = np.random.default_rng(seed)
    rng.integers(0, n_experiments, size=n_users)
    for p in ([0.35, 0.20, 0.25, 0.20], [0.45, 0.45, 0.10], [0.30, 0.70]):
        rng.choice(len(p), size=n_users, p=p)
    rng.integers(0, 2, size=n_users)
    np.testing.assert_array_equal(
        world.experiments["exp_tau"], rng.normal(0.0, 0.12, n_experiments)
    )
    np.testing.assert_array_equal(
        world.experiments["exp_bias"], rng.normal(0.0, 0.08, n_experiments)
    )


def test_a_different_seed_gives_different_draws() -> None:
    a = simulate.streaming(n_users=2_000, n_experiments=4, seed=1).users
    b = simulate.streaming(n_users=2_000, n_experiments=4, seed=2).users
    assert not np.array_equal(a["early_watch_min"], b["early_watch_min"])


# -- numpy's binomial(1, p): one double per draw -----------------------------------

_MULT = 0x2360ED051FC65DA44385DF649FCCF645  # PCG64's 128-bit LCG multiplier


def generator_whose_next_double_is(u: float) -> np.random.Generator:
    """A PCG64 Generator whose next ``random()`` (and next ``binomial`` uniform) is ``u``.

    PCG64 steps the 128-bit state, then outputs XSL-RR of it; pick a post-step
    state with rotation 0 whose output has ``u``'s 53 bits on top, and step
    the LCG back once.
    """
    k = int(u * 2**53)
    assert k / 2**53 == u
    out = k << 11
    high = 0x0123456789ABCDEF & ((1 << 58) - 1)  # top 6 bits 0: rotation 0
    state = (high << 64) | (out ^ high)
    g = np.random.default_rng(0)
    st = g.bit_generator.state
    inc = st["state"]["inc"]
    st["state"]["state"] = ((state - inc) * pow(_MULT, -1, 1 << 128)) % (1 << 128)
    st["has_uint32"] = 0
    g.bit_generator.state = st
    return g


def _rule(u: np.ndarray, p: np.ndarray) -> np.ndarray:
    return bernoulli_pair(u, p, p, p)[0]


def test_crafted_stream_sanity() -> None:
    for u in (0.25, 0.5, 1 - 2**-53, 2**-53, 0.0):
        assert generator_whose_next_double_is(u).random() == u


PROBES = [0.3, 0.1, 0.2718124957327114, 0.0204867619680973, 0.5, np.nextafter(0.5, 1),
          np.nextafter(0.5, 0), 0.7, 0.999, 0.6123456789, 1e-12, 1.0 - 1e-12, 1.0]  # fmt: skip


@pytest.mark.parametrize("p", PROBES)
def test_binomial_rule_bit_exact_at_the_threshold(p: float) -> None:
    # numpy's threshold is within an ulp or two of 1 - p (p <= .5) or of p (p > .5);
    # probe every double around it, plus the extremes.
    centre = 1.0 - p if p <= 0.5 else p
    ulp = 2.0**-53
    base = np.floor(centre / ulp) * ulp
    probes = [base + k * ulp for k in range(-3, 4)] + [0.0, ulp, 0.5, 1 - ulp]
    for u in probes:
        if not 0 <= u < 1:
            continue
        gen = generator_whose_next_double_is(u)
        numpy_draw = gen.binomial(1, p)
        ref = generator_whose_next_double_is(u)
        uniforms = binomial_uniforms(ref, np.array([p]))
        assert _rule(uniforms, np.array([p]))[0] == numpy_draw, (p, u)
        # ...and we are at the same place in the stream as numpy.
        assert gen.bit_generator.state == ref.bit_generator.state, (p, u)


def test_binomial_retry_branch_is_replayed() -> None:
    # For U = 1 - 2**-53, numpy's inversion loop discards U for some p and draws
    # again; find such p (numpy consumes two doubles) and check we follow it.
    top = 1 - 2.0**-53
    rng = np.random.default_rng(3)
    retried = []
    for p in np.concatenate([rng.random(400) * 0.5, 1 - rng.random(400) * 0.5]):
        gen = generator_whose_next_double_is(top)
        gen.binomial(1, p)
        one = generator_whose_next_double_is(top)
        one.random()
        if gen.bit_generator.state != one.bit_generator.state:
            retried.append(p)
    assert len(retried) > 5  # the branch is reachable...
    for p in retried[:20]:
        gen = generator_whose_next_double_is(top)
        expected = gen.binomial(1, np.array([p, 0.25, p]))
        ref = generator_whose_next_double_is(top)
        probs = np.array([p, 0.25, p])
        uniforms = binomial_uniforms(ref, probs)
        np.testing.assert_array_equal(_rule(uniforms, probs), expected)
        assert gen.bit_generator.state == ref.bit_generator.state


def test_binomial_rule_on_millions_of_draws() -> None:
    rng = np.random.default_rng(2024)
    n = 1_000_000
    p = np.concatenate(
        [
            rng.random(n),
            0.5 + rng.normal(0, 1e-12, n // 4),
            np.full(n // 8, 0.5),
            10.0 ** rng.uniform(-300, 0, n // 8),
            1.0 - 10.0 ** rng.uniform(-17, 0, n // 8),
            np.array([0.0, 1.0, 0.0, 1.0]),
        ]
    )
    p = np.clip(p, 0.0, 1.0)
    a = np.random.default_rng(99)
    b = np.random.default_rng(99)
    expected = a.binomial(1, p)
    u = binomial_uniforms(b, p)
    np.testing.assert_array_equal(_rule(u, p), expected)
    # Same position in the stream afterwards (p == 0 consumes nothing).
    assert a.bit_generator.state == b.bit_generator.state
    assert a.random() == b.random()


def test_bernoulli_pair_is_a_monotone_coupling() -> None:
    rng = np.random.default_rng(5)
    n = 400_000
    p0 = rng.random(n)
    p1 = np.clip(p0 + rng.normal(0, 0.2, n), 0, 1)
    treat = rng.integers(0, 2, n).astype(bool)
    p_obs = np.where(treat, p1, p0)
    u = binomial_uniforms(np.random.default_rng(6), p_obs)
    y0, y1 = bernoulli_pair(u, p_obs, p0, p1)
    assert np.all((y1 >= y0) | (p1 < p0))
    assert np.all((y1 <= y0) | (p1 > p0))
    # Each arm is Bernoulli(p) whichever arm was observed: mean(y - p) ~ 0.
    for y, p in ((y0, p0), (y1, p1)):
        for mask in (treat, ~treat):
            resid = y[mask] - p[mask]
            assert abs(resid.mean()) < 5 * np.sqrt((p[mask] * (1 - p[mask])).mean() / mask.sum())


# -- (c) observed = potential outcome of the assigned arm --------------------------


@pytest.fixture(scope="module")
def world() -> simulate.World:
    return simulate.streaming(n_users=120_000, n_experiments=20, seed=11)


def test_observed_is_the_assigned_potential_outcome(world: simulate.World) -> None:
    users, po = world.users, world.potential_outcomes
    treated = users["treatment"].to_numpy() == 1
    for metric in METRICS:
        chosen = np.where(treated, po[f"{metric}_1"], po[f"{metric}_0"])
        np.testing.assert_array_equal(users[metric].to_numpy(), chosen, strict=False)
    assert po.index.equals(users.index)
    assert set(po.columns) == {f"{m}_{a}" for m in METRICS for a in (0, 1)} | {
        "p_long_0",
        "p_long_1",
    }


def test_potential_outcomes_equal_seed_formulas_in_each_arm() -> None:
    # Forcing every user into arm a (the arm is still drawn) gives, by the
    # seed's formulas, what every user would show in arm a.
    n, e, seed = 60_000, 9, 31
    world = simulate.streaming(n_users=n, n_experiments=e, seed=seed)
    po = world.potential_outcomes
    observed_p = np.where(world.users["treatment"] == 1, po["p_long_1"], po["p_long_0"])
    for arm in (0, 1):
        ref = seed_streaming(n, e, seed, force_treatment=arm)
        for metric in METRICS[1:]:
            np.testing.assert_array_equal(po[f"{metric}_{arm}"].to_numpy(), ref[metric].to_numpy())
        np.testing.assert_array_equal(po[f"p_long_{arm}"].to_numpy(), ref["long_prob"].to_numpy())
        # The reference draws arm a's Bernoulli with numpy's branch for p_a; ours
        # uses the observed arm's branch. Where the branches agree, bit-equal.
        same_branch = (observed_p <= 0.5) == (ref["long_prob"].to_numpy() <= 0.5)
        assert same_branch.mean() > 0.8
        np.testing.assert_array_equal(
            po[f"long_retained_{arm}"].to_numpy()[same_branch],
            ref["long_retained"].to_numpy()[same_branch],
        )


def test_potential_outcome_structure(world: simulate.World) -> None:
    po, users = world.potential_outcomes, world.users
    cohort = users["failure_cohort"].to_numpy() == 1
    tv = (users["device"] == "TV").to_numpy()
    mobile = (users["device"] == "Mobile").to_numpy()
    # Monotone coupling: retention moves only in the direction of p.
    up = po["p_long_1"] > po["p_long_0"]
    assert (po["long_retained_1"][up] >= po["long_retained_0"][up]).all()
    assert (po["long_retained_1"][~up] <= po["long_retained_0"][~up]).all()
    # ctr: +0.06 (+0.04 on Mobile), capped at 1.
    lift = np.where(mobile, 0.1, 0.06)
    np.testing.assert_allclose(
        po["early_ctr_1"], np.minimum(po["early_ctr_0"] + lift, 1.0), rtol=0, atol=1e-15
    )
    # rebuffer: -0.03 on TV, unchanged elsewhere (exactly).
    np.testing.assert_array_equal(po["rebuffer_rate_1"][~tv], po["rebuffer_rate_0"][~tv])
    np.testing.assert_allclose(
        po["rebuffer_rate_1"][tv], np.maximum(po["rebuffer_rate_0"][tv] - 0.03, 0), atol=1e-15
    )
    # The cohort's watch boost: unclipped treated-minus-control is 8 (tau + .3 seg) + 6.
    both = (po["early_watch_min_0"] > 0) & (po["early_watch_min_1"] > 0)
    diff = (po["early_watch_min_1"] - po["early_watch_min_0"])[both]
    exp_tau = world.experiments["exp_tau"].to_numpy()[users["exp_id"].to_numpy()][both]
    seg = (
        0.06 * tv - 0.05 * mobile - 0.03 * (users["region"] == "IN").to_numpy()
        + 0.03 * (users["tenure"] == "Existing").to_numpy()
    )[both]  # fmt: skip
    np.testing.assert_allclose(diff, 8 * (exp_tau + 0.3 * seg) + 6 * cohort[both], atol=1e-11)


def test_segments_are_categoricals_in_level_order(world: simulate.World) -> None:
    assert list(world.users["region"].cat.categories) == ["NA", "LATAM", "EU", "IN"]
    assert list(world.users["device"].cat.categories) == ["TV", "Mobile", "Desktop"]
    assert list(world.users["tenure"].cat.categories) == ["New", "Existing"]
    assert world.experiments.index.name == "experiment"
    assert list(world.experiments.columns) == ["exp_tau", "exp_bias"]


# -- joint mix sampling --------------------------------------------------------------


def test_joint_mix_is_sampled_over_cells() -> None:
    cells = {
        ("IN", "Mobile", "New"): 0.6,
        ("NA", "TV", "Existing"): 0.3,
        ("EU", "Desktop", "New"): 0.1,
    }
    world = simulate.streaming(n_users=50_000, n_experiments=5, seed=3, mix=cells)
    counts = world.users.groupby(list(SEGMENTS), observed=True).size()
    assert set(counts.index) == set(cells)
    for key, p in cells.items():
        share = counts[key] / 50_000
        assert abs(share - p) < 5 * np.sqrt(p * (1 - p) / 50_000)
    assert world.config.mix.is_joint
    # One rng.choice over the 24 cells, right after exp_id.
    rng = np.random.default_rng(3)
    rng.integers(0, 5, size=50_000)
    cell = rng.choice(24, size=50_000, p=world.config.mix.cell_probabilities())
    region = np.array(["NA", "LATAM", "EU", "IN"])[cell // 6]
    np.testing.assert_array_equal(world.users["region"].astype(str).to_numpy(), region)


def test_independent_mix_other_than_default_uses_its_marginals() -> None:
    mix = SegmentMix(region={"IN": 0.5, "EU": 0.5}, device={"Mobile": 1.0})
    world = simulate.streaming(n_users=20_000, n_experiments=3, seed=8, mix=mix)
    assert set(world.users["region"].astype(str)) == {"IN", "EU"}
    assert set(world.users["device"].astype(str)) == {"Mobile"}
    assert abs((world.users["region"] == "IN").mean() - 0.5) < 0.02


# -- (e) the failure cohort -----------------------------------------------------------


def _long_sign_matches_logit_shift(world: simulate.World, shift: np.ndarray) -> None:
    """sign(true cell long-term effect) == sign(exp_tau + shift_cell), exactly, for every cell."""
    effect = world.truth["cell_effect"].sel(metric="long_retained").to_numpy()
    tau = world.experiments["exp_tau"].to_numpy()[:, None, None, None] + shift.reshape(1, 4, 3, 2)
    filled = world.truth["cell_users"].to_numpy() > 0
    np.testing.assert_array_equal(np.sign(effect[filled]), np.sign(tau[filled]))


SEG_TAU = (
    0.06 * np.array([1.0, 0, 0])[None, :, None]
    - 0.05 * np.array([0, 1.0, 0])[None, :, None]
    - 0.03 * np.array([0, 0, 0, 1.0])[:, None, None]
    + 0.03 * np.array([0, 1.0])[None, None, :]
)  # (region, device, tenure)


def test_default_cohort_penalty_is_in_the_cohort_cell() -> None:
    world = simulate.streaming(n_users=60_000, n_experiments=40, seed=5)
    shift = SEG_TAU.copy()
    shift[3, 1, 0] += -0.25
    _long_sign_matches_logit_shift(world, shift)
    flips = world.truth["pop_flip_prob"].sel(proxy="early_watch_min")
    assert flips.sel(region="IN", device="Mobile", tenure="New").item() > 0.95
    assert float(flips.where(flips.region != "IN").max()) < 0.5
    cohort = world.users["failure_cohort"] == 1
    expected = (
        (world.users["region"] == "IN")
        & (world.users["device"] == "Mobile")
        & (world.users["tenure"] == "New")
    )
    assert cohort.equals(expected)


def test_moved_cohort_moves_the_penalty() -> None:
    cohort = FailureCohort(region="EU", device="TV", tenure="Existing")
    world = simulate.streaming(n_users=60_000, n_experiments=40, seed=5, cohort=cohort)
    shift = SEG_TAU.copy()
    shift[2, 0, 1] += -0.25
    _long_sign_matches_logit_shift(world, shift)
    long = world.truth["segment_effect"].sel(metric="long_retained")
    assert long.sel(region="EU", device="TV", tenure="Existing").item() < 0
    pop = world.truth["pop_effect_mean"].sel(metric="long_retained")
    assert pop.sel(region="EU", device="TV", tenure="Existing").item() < -0.02
    watch = world.truth["pop_flip_prob"].sel(proxy="early_watch_min")
    # Long-term effect < 0 iff exp_tau < .25 - .06 - .03;
    # watch < 0 iff exp_tau < -(.3 * .09 + 6 / 8).
    expected = ndtr((0.25 - 0.09) / 0.12) - ndtr(-(0.3 * 0.09 + 0.75) / 0.12)
    assert watch.sel(region="EU", device="TV", tenure="Existing").item() == pytest.approx(
        expected, abs=1e-12
    )
    # The old cell keeps only its segment interaction (-.05 Mobile, -.03 IN).
    expected = ndtr(0.08 / 0.12) - ndtr(0.3 * 0.08 / 0.12)
    assert watch.sel(region="IN", device="Mobile", tenure="New").item() == pytest.approx(
        expected, abs=1e-12
    )
    assert expected < 0.2
    users = world.users
    expected = (
        (users["region"] == "EU") & (users["device"] == "TV") & (users["tenure"] == "Existing")
    )
    assert (users["failure_cohort"] == 1).equals(expected)
    # Same seed, same stream: users outside both cohort cells are identical to the default world.
    default = simulate.streaming(n_users=60_000, n_experiments=40, seed=5).users
    old = default["failure_cohort"] == 1
    outside = ~(expected | old)
    pd.testing.assert_frame_equal(
        users[outside].drop(columns="failure_cohort"),
        default[outside].drop(columns="failure_cohort"),
    )
    assert not np.array_equal(
        users.loc[expected, "early_watch_min"], default.loc[expected, "early_watch_min"]
    )


def test_zero_strength_removes_the_cohort() -> None:
    world = simulate.streaming(
        n_users=60_000, n_experiments=40, seed=5, cohort=FailureCohort.none()
    )
    _long_sign_matches_logit_shift(world, SEG_TAU)
    assert (world.users["failure_cohort"] == 0).all()
    watch = world.truth["cell_effect"].sel(metric="early_watch_min").to_numpy()
    tau = world.experiments["exp_tau"].to_numpy()[:, None, None, None] + 0.3 * SEG_TAU[None]
    filled = world.truth["cell_users"].to_numpy() > 0
    np.testing.assert_array_equal(np.sign(watch[filled]), np.sign(tau[filled]))
    flips = world.truth["pop_flip_prob"].sel(proxy="early_watch_min")
    assert float(flips.max()) < 0.5


def test_cohort_over_any_level_and_custom_strengths() -> None:
    cohort = FailureCohort(
        region=None, device="Mobile", tenure=None, long_penalty=-0.5, watch_boost=1.0
    )
    world = simulate.streaming(n_users=30_000, n_experiments=30, seed=9, cohort=cohort)
    shift = SEG_TAU.copy()
    shift[:, 1, :] += -0.5
    _long_sign_matches_logit_shift(world, shift)
    assert (world.users["failure_cohort"] == (world.users["device"] == "Mobile")).all()
    po, users = world.potential_outcomes, world.users
    both = (
        (po["early_watch_min_0"] > 0)
        & (po["early_watch_min_1"] > 0)
        & (users["device"] == "Mobile")
    )
    diff = (po["early_watch_min_1"] - po["early_watch_min_0"])[both].to_numpy()
    exp_tau = world.experiments["exp_tau"].to_numpy()[users["exp_id"][both]]
    seg = (
        -0.05
        - 0.03 * (users["region"][both] == "IN").to_numpy()
        + 0.03 * (users["tenure"][both] == "Existing").to_numpy()
    )
    np.testing.assert_allclose(diff, 8 * (exp_tau + 0.3 * seg) + 1.0, atol=1e-11)


# -- (g) shifted worlds ---------------------------------------------------------------


def test_shifted_world_keeps_the_mechanism_and_changes_the_mix() -> None:
    source = simulate.streaming(n_users=30_000, n_experiments=20, seed=7)
    target_mix = SegmentMix(region={"IN": 0.8, "EU": 0.2}, device={"Mobile": 0.9, "TV": 0.1})
    target = source.shifted(target_mix, n_users=40_000)
    assert target.config.cohort == source.config.cohort
    assert target.config.exp_tau_sd == source.config.exp_tau_sd
    assert target.config.exp_bias_sd == source.config.exp_bias_sd
    assert target.config.mix == target_mix
    assert target.config.n_experiments == 20 and len(target.users) == 40_000
    assert target.config.seed != source.config.seed
    assert not np.allclose(target.experiments["exp_tau"], source.experiments["exp_tau"])
    assert set(target.users["region"].astype(str)) == {"IN", "EU"}
    # Same mechanism: identical per-segment population truth.
    for var in ("pop_effect_mean", "pop_effect_sd", "pop_flip_prob"):
        np.testing.assert_array_equal(target.truth[var], source.truth[var])
    # Different mix: the mix-level truth moves (more of the failure cohort).
    assert not np.allclose(target.truth["mix_share"], source.truth["mix_share"])
    assert (
        target.truth["pop_decision_accuracy"].sel(proxy="early_watch_min")
        < source.truth["pop_decision_accuracy"].sel(proxy="early_watch_min") - 0.02
    )
    # The target's truth is its own (its users, its experiments).
    assert int(target.truth["cell_users"].sum()) == 40_000
    np.testing.assert_array_equal(target.truth["exp_tau"], target.experiments["exp_tau"])


def test_shifted_is_deterministic_and_available_as_a_function() -> None:
    source = simulate.streaming(n_users=5_000, n_experiments=4, seed=3)
    cells = {("IN", "Mobile", "New"): 1.0}
    a = source.shifted(cells)
    b = simulate.shifted(source, SegmentMix.from_joint(cells))
    pd.testing.assert_frame_equal(a.users, b.users)
    c = source.shifted(cells, seed=99, n_experiments=6)
    assert c.config.seed == 99 and c.config.n_experiments == 6
    assert (a.users["failure_cohort"] == 1).all()
    # Only one cell: the truth is NaN elsewhere and the target's segment effect is defined there.
    seg = a.truth["segment_effect"].sel(metric="long_retained")
    assert int(seg.notnull().sum()) == 1

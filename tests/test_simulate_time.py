"""Simulated worlds over time: experiments spread over periods with start dates, a proxy
whose link to the long-term effect weakens at a known rate, and its exact per-period truth."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pandas as pd
import pytest
from scipy import special

import proxyscope as ps
from proxyscope import simulate
from proxyscope.errors import DataWarning, ParameterError
from proxyscope.simulate import scenario as sc

WATCH = "early_watch_min"


def digest(*arrays: object) -> str:
    """sha256 (16 hex) of arrays: floats rounded to 9 decimals (robust to last-ulp BLAS
    differences), integers as int64, anything else as text."""
    h = hashlib.sha256()
    for value in arrays:
        a = np.asarray(value)
        if a.dtype.kind == "f":
            a = np.round(a.astype(np.float64), 9) + 0.0
        elif a.dtype.kind in "iub":
            a = a.astype(np.int64)
        else:
            h.update("|".join(str(v) for v in a.ravel()).encode())
            continue
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def frame_digest(df: pd.DataFrame) -> str:
    parts: list[object] = [np.asarray(df.columns)]
    for column in df.columns:
        col = df[column]
        if isinstance(col.dtype, pd.CategoricalDtype):
            parts += [col.cat.codes.to_numpy(), np.asarray(col.cat.categories)]
        else:
            parts.append(col.to_numpy())
    return digest(*parts)


# -- from_model ---------------------------------------------------------------------

# Checksums of from_model's output computed with the code BEFORE periods existed (the
# same digest() over effect, noise_cov, latent, eta, eta_outcome), by running these
# calls on that version: without periods the worlds must not move by one draw.
FROM_MODEL_BEFORE = [
    ({}, "08e690eb03ee0404"),
    ({"n_experiments": 12, "seed": 5, "sd_e_outcome": 0.3}, "f86c3589908ea012"),
    (
        {
            "n_experiments": 10,
            "levels": ("x", "y"),
            "nu": (0.1, -0.2),
            "mu": ((1.0, 0.5), (0.0, 0.2)),
            "beta": (0.5, -0.3),
            "sd_e": (1.0, 0.5),
            "sd_c": (0.3, 0.2),
            "seed": 3,
        },
        "341f2da751989f3b",
    ),
]


def model_digest(cells: object, truth: simulate.ModelTruth) -> str:
    data = cells.data  # type: ignore[attr-defined]
    return digest(
        data["effect"].values, data["noise_cov"].values, truth.latent, truth.eta, truth.eta_outcome
    )


@pytest.mark.parametrize(("options", "expected"), FROM_MODEL_BEFORE)
def test_from_model_without_periods_is_unchanged(options: dict, expected: str) -> None:
    cells, truth = simulate.from_model(**options)
    assert model_digest(cells, truth) == expected
    assert truth.beta_path is None and truth.starts is None and truth.period_labels is None


@pytest.mark.parametrize(("options", "_"), FROM_MODEL_BEFORE)
def test_periods_without_drift_are_from_models_draws(options: dict, _: str) -> None:
    cells, truth = simulate.from_model(**options)
    timed, ttruth = simulate.from_model(**options, periods=3, period="month")
    np.testing.assert_array_equal(timed.data["effect"].values, cells.data["effect"].values)
    np.testing.assert_array_equal(ttruth.latent, truth.latent)
    np.testing.assert_array_equal(ttruth.eta, truth.eta)
    assert ttruth.beta_path is not None and ttruth.nu_path is not None
    assert ttruth.mu_path is not None
    for p in range(3):  # every period's parameters are the static ones
        np.testing.assert_array_equal(ttruth.beta_path[p], truth.beta)
        np.testing.assert_array_equal(ttruth.nu_path[p], truth.nu)
        np.testing.assert_array_equal(ttruth.mu_path[p], truth.mu)


def test_beta_path_is_exact_and_the_drift_rate_is_recovered() -> None:
    beta = np.array([0.5, -0.3, 0.8])
    drift = {0: 0.2, "proxy_2": -0.1}  # proxy_3 does not drift
    _, truth = simulate.from_model(
        levels=("a", "b"),
        nu=(0.1, 0.0),
        mu=((1.0, 0.0, 0.5), (0.5, 0.2, 0.0)),
        beta=beta,
        sd_e=(1.0, 1.0, 1.0),
        sd_c=(0.3, 0.3, 0.3),
        n_experiments=20,
        noise_corr=0.0,
        periods=5,
        drift=drift,
    )
    assert truth.beta_path is not None
    assert truth.beta_path.shape == (5, 3)
    for p in range(5):
        expected = [0.5 * 0.8**p, -0.3 * 1.1**p, 0.8]
        np.testing.assert_allclose(truth.beta_path[p], expected, rtol=1e-14)
    # the rate, read back from the truth: 1 - beta_{p+1} / beta_p in every period
    recovered = 1.0 - truth.beta_path[1:] / truth.beta_path[:-1]
    np.testing.assert_allclose(recovered, np.tile([0.2, -0.1, 0.0], (4, 1)), atol=1e-14)


def test_cells_use_their_periods_parameters() -> None:
    # sigma = 0 and no within-cell spread: each latent effect is exactly its period's
    # nu + eta0 + beta_p'(theta - mu_p) with theta = mu_p + eta.
    nu_step, mu_step = (0.05, -0.02, 0.0), ((0.1, 0.0), (0.0, -0.1), (0.2, 0.2))
    mu = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    _, truth = simulate.from_model(
        n_experiments=13,
        levels=("a", "b", "c"),
        nu=(0.2, 0.0, -0.1),
        mu=mu,
        beta=(0.5, 0.25),
        sd_e=(1.0, 0.5),
        sd_c=(0.0, 0.0),
        sigma=0.0,
        sd_e_outcome=0.3,
        periods=4,
        drift={"proxy_1": 0.3},
        nu_step=nu_step,
        mu_step=mu_step,
        seed=8,
    )
    assert truth.experiment_period is not None and truth.eta_outcome is not None
    latent = truth.latent.reshape(13, 3, 3)
    for e in range(13):
        p = truth.experiment_period[e]
        mu_p = mu + p * np.asarray(mu_step)
        nu_p = np.array([0.2, 0.0, -0.1]) + p * np.asarray(nu_step)
        beta_p = np.array([0.5 * 0.7**p, 0.25])
        theta = mu_p + truth.eta[e]
        np.testing.assert_allclose(latent[e, :, 1:], theta, rtol=1e-12, atol=1e-12)
        tau = nu_p + truth.eta_outcome[e] + (theta - mu_p) @ beta_p
        np.testing.assert_allclose(latent[e, :, 0], tau, rtol=1e-12, atol=1e-12)
    assert truth.mu_path is not None and truth.nu_path is not None
    np.testing.assert_allclose(truth.mu_path[3], mu + 3 * np.asarray(mu_step), rtol=1e-14)
    np.testing.assert_allclose(truth.nu_path[2], [0.3, -0.04, -0.1], rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize(("n_experiments", "periods"), [(60, 4), (10, 4), (7, 7), (9, 1)])
def test_experiments_are_spread_evenly_over_the_periods(n_experiments: int, periods: int) -> None:
    _, truth = simulate.from_model(n_experiments=n_experiments, periods=periods)
    assert truth.experiment_period is not None
    counts = np.bincount(truth.experiment_period, minlength=periods)
    assert counts.sum() == n_experiments and counts.min() >= 1
    assert counts.max() - counts.min() <= 1
    assert np.all(np.diff(truth.experiment_period) >= 0)  # in experiment order


def _label(day: pd.Timestamp, grouping: str) -> str:
    """A date's period label, written out from the calendar (independent of the simulator)."""
    if grouping == "week":
        year, week, _ = day.date().isocalendar()
        return f"{year}-W{week:02d}"
    if grouping == "month":
        return f"{day.year}-{day.month:02d}"
    if grouping == "quarter":
        return f"{day.year}-Q{(day.month - 1) // 3 + 1}"
    return f"{day.year}"


@pytest.mark.parametrize(
    ("start", "grouping", "labels"),
    [
        ("2024-11-15", "quarter", ("2024-Q4", "2025-Q1", "2025-Q2")),
        ("2024-12-03", "month", ("2024-12", "2025-01", "2025-02")),
        ("2024-12-31", "week", ("2025-W01", "2025-W02", "2025-W03")),  # ISO week of 2025
        ("2023-06-01", "year", ("2023", "2024", "2025")),
    ],
)
def test_starts_fall_inside_their_periods(start: str, grouping: str, labels: tuple) -> None:
    _, truth = simulate.from_model(n_experiments=300, periods=3, start=start, period=grouping)
    assert truth.period_labels == labels and truth.period == grouping
    assert truth.starts is not None and truth.experiment_period is not None
    starts = truth.starts
    assert starts.index.name == "experiment" and starts.dtype == "datetime64[ns]"
    assert (starts == starts.dt.normalize()).all()  # whole days
    own = [_label(day, grouping) for day in starts]
    assert own == [labels[p] for p in truth.experiment_period]
    # uniform within the period: not piled on its first day
    first = starts.groupby(truth.experiment_period).min()
    last = starts.groupby(truth.experiment_period).max()
    span = {"week": 4, "month": 20, "quarter": 60, "year": 250}[grouping]
    assert ((last - first).dt.days >= span).all()


def test_cells_carry_the_start_dates_and_periods() -> None:
    cells, truth = simulate.from_model(n_experiments=30, periods=5, period="month", seed=2)
    plain, _ = simulate.from_model(n_experiments=30, seed=2)
    assert cells.has_time and not plain.has_time
    assert cells.periods == truth.period_labels
    assert truth.experiment_period is not None and truth.starts is not None
    np.testing.assert_array_equal(cells.period_index, np.repeat(truth.experiment_period, 4))
    pd.testing.assert_series_equal(cells.experiment_starts, truth.starts, check_names=False)


def test_starts_come_from_their_own_stream() -> None:
    _, a = simulate.from_model(periods=4, seed=3)
    _, b = simulate.from_model(periods=4, seed=3)
    _, c = simulate.from_model(periods=4, seed=4)
    assert a.starts is not None and b.starts is not None and c.starts is not None
    pd.testing.assert_series_equal(a.starts, b.starts)
    assert not a.starts.equals(c.starts)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"periods": 0}, r"'periods' parameter of from_model must be None or an integer in \[1"),
        ({"periods": 61}, r"'periods'.*n_experiments = 60.*got 61"),
        ({"periods": True}, r"'periods'.*got True"),
        ({"periods": 2, "period": "quater"}, r"'period'.*got 'quater'. Did you mean 'quarter'"),
        ({"periods": 2, "start": "someday"}, r"'start'.*got 'someday'"),
        ({"periods": 2, "start": "2300-01-01"}, r"'start'.*years 1900-2199.*got '2300-01-01'"),
        ({"periods": 2, "start": 20240101}, r"'start'.*got 20240101"),
        ({"periods": 2, "drift": {"proxy_9": 0.1}}, r"'drift'.*unknown proxy 'proxy_9'"),
        ({"periods": 2, "drift": {1: 0.1}}, r"'drift'.*unknown proxy 1; expected an index in"),
        ({"periods": 2, "drift": {0: 1.0}}, r"'drift\[0\]'.*a finite number < 1; got 1.0"),
        ({"periods": 2, "drift": {0: float("nan")}}, r"'drift\[0\]'.*got nan"),
        ({"periods": 2, "drift": [0.1]}, r"'drift'.*a mapping"),
        ({"periods": 2, "mu_step": (1.0, 2.0, 3.0)}, r"'mu_step'.*broadcastable to \(4, 1\)"),
        ({"periods": 2, "nu_step": float("inf")}, r"'nu_step'.*finite"),
        ({"drift": {0: 0.1}}, r"'drift'.*left unset without periods"),
        ({"nu_step": 0.1}, r"'nu_step'.*left unset without periods"),
    ],
)
def test_from_model_time_errors_name_the_parameter(options: dict, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        simulate.from_model(**options)


# -- the streaming world ------------------------------------------------------------

# Checksums of streaming(n_users=20_000, n_experiments=8, seed=3) computed with the code
# BEFORE time existed (frame_digest of users, potential_outcomes and experiments; digest of
# every truth variable in name order): without periods the world must not move by one bit.
STREAMING_BEFORE = {
    "users": "b96da0121e8e7010",
    "potential_outcomes": "026fc7c0639c83ff",
    "truth": "1ecc8912092e321f",
    "experiments": "797bd278d85facdc",
}


def test_streaming_without_periods_is_unchanged() -> None:
    world = simulate.streaming(n_users=20_000, n_experiments=8, seed=3)
    truth = world.truth
    assert frame_digest(world.users) == STREAMING_BEFORE["users"]
    assert frame_digest(world.potential_outcomes) == STREAMING_BEFORE["potential_outcomes"]
    assert frame_digest(world.experiments) == STREAMING_BEFORE["experiments"]
    names = sorted(truth.data_vars)
    assert digest(np.asarray(names), *[truth[v].values for v in names]) == STREAMING_BEFORE["truth"]
    with pytest.raises(ParameterError, match=r"no time: StreamingConfig\.periods is None"):
        _ = world.starts
    with pytest.raises(ParameterError, match="no time"):
        world.population_slope()


@pytest.fixture(scope="module")
def static_and_drifting() -> tuple[simulate.World, simulate.World, simulate.World]:
    options = {"n_users": 120_000, "n_experiments": 24, "seed": 5}
    plain = simulate.streaming(**options)
    static = simulate.streaming(**options, periods=4, watch_drift=0.0)
    drifting = simulate.streaming(**options, periods=4, watch_drift=0.4)
    return plain, static, drifting


def test_static_time_world_is_todays_world_with_start_dates(
    static_and_drifting: tuple[simulate.World, simulate.World, simulate.World],
) -> None:
    plain, static, _ = static_and_drifting
    users = static.users
    pd.testing.assert_frame_equal(users.drop(columns="start_date"), plain.users)
    pd.testing.assert_frame_equal(static.potential_outcomes, plain.potential_outcomes)
    for name in plain.truth.data_vars:
        np.testing.assert_array_equal(static.truth[name].values, plain.truth[name].values)
    # a start date per experiment, constant within it, spread over the quarters of 2024
    starts = static.starts
    assert users["start_date"].dtype == "datetime64[ns]"
    np.testing.assert_array_equal(
        users["start_date"].to_numpy(), starts.to_numpy()[users["exp_id"].to_numpy()]
    )
    assert static.period_labels == ("2024-Q1", "2024-Q2", "2024-Q3", "2024-Q4")
    labels = [_label(day, "quarter") for day in starts]
    assert labels == static.experiments["period"].tolist()
    assert labels == static.truth["experiment_period"].values.tolist()
    assert np.bincount(pd.Series(labels).map(static.period_labels.index)).tolist() == [6] * 4
    np.testing.assert_array_equal(static.experiments["watch_push"].to_numpy(), 0.0)
    assert "4 periods 2024-Q1..2024-Q4, watch_drift=0.0" in repr(static)


def test_summarized_users_carry_the_worlds_periods(
    static_and_drifting: tuple[simulate.World, simulate.World, simulate.World],
) -> None:
    _, _, drifting = static_and_drifting
    roles = simulate.column_roles()
    with pytest.warns(DataWarning, match="below min_users_per_arm"):  # a few rare cells
        effects = ps.summarize(drifting.users, **roles, time="start_date", period="quarter")
    assert effects.periods == drifting.period_labels
    pd.testing.assert_series_equal(
        effects.experiment_starts.sort_index(), drifting.starts, check_names=False
    )
    by_hand = drifting.experiments["period"].map(drifting.period_labels.index)
    experiment = np.asarray(effects.data["experiment"].values).astype(int)
    np.testing.assert_array_equal(effects.period_index, by_hand.to_numpy()[experiment])


def test_drifting_world_moves_only_treated_watch_minutes(
    static_and_drifting: tuple[simulate.World, simulate.World, simulate.World],
) -> None:
    _, static, drifting = static_and_drifting
    po_s, po_d = static.potential_outcomes, drifting.potential_outcomes
    for column in po_s.columns:
        if column != "early_watch_min_1":
            np.testing.assert_array_equal(po_d[column].to_numpy(), po_s[column].to_numpy())
    pd.testing.assert_series_equal(drifting.starts, static.starts)  # same timeline
    period = drifting.experiments["period"].map(drifting.period_labels.index).to_numpy()
    push = drifting.experiments["watch_push"].to_numpy()
    assert np.all(push[period == 0] == 0.0) and np.all(push[period > 0] != 0.0)
    changed = po_d["early_watch_min_1"].to_numpy() != po_s["early_watch_min_1"].to_numpy()
    exp_id = drifting.users["exp_id"].to_numpy()
    assert not changed[period[exp_id] == 0].any()
    assert changed[period[exp_id] > 0].mean() > 0.9  # (clipped-at-0 users may not move)
    observed = drifting.users[WATCH].to_numpy() != static.users[WATCH].to_numpy()
    treated = drifting.users["treatment"].to_numpy() == 1
    assert not observed[~treated].any() and np.array_equal(observed, changed & treated)
    # the push is gamma_p * g_e with g_e ~ N(0, 1) and gamma_p from the stated rate
    gamma = 0.12 * np.sqrt(0.6 ** -np.arange(4) - 1.0)
    np.testing.assert_allclose(drifting.truth["watch_gamma"].values, gamma, rtol=1e-14)
    g = push[period > 0] / gamma[period[period > 0]]
    assert abs(g.mean()) < 4 / math.sqrt(g.size) and 0.4 < g.std() < 1.6


def test_in_sample_watch_effects_carry_the_push() -> None:
    # Few experiments, many users: each cell's in-sample watch effect is a sample mean
    # whose population value is the response at exp_tau + push (not at exp_tau alone).
    world = simulate.streaming(
        n_users=600_000, n_experiments=6, seed=9, periods=3, watch_drift=0.6, exp_tau_sd=0.2
    )
    po = world.potential_outcomes
    users = world.users
    effect = po["early_watch_min_1"].to_numpy() - po["early_watch_min_0"].to_numpy()
    cell = sc.cell_index(
        users["region"].cat.codes.to_numpy(),
        users["device"].cat.codes.to_numpy(),
        users["tenure"].cat.codes.to_numpy(),
    )
    key = users["exp_id"].to_numpy() * 24 + cell
    frame = pd.DataFrame({"key": key, "effect": effect}).groupby("key")["effect"]
    mean, se, n = frame.mean(), frame.std() / np.sqrt(frame.size()), frame.size()
    exp = world.experiments
    tau, push = exp["exp_tau"].to_numpy(), exp["watch_push"].to_numpy()
    with_push = world.mechanism.watch_effect(tau + push).reshape(-1)
    without = world.mechanism.watch_effect(tau).reshape(-1)
    keys = mean.index.to_numpy()
    ok = n.to_numpy() >= 200
    z_with = ((mean.to_numpy() - with_push[keys]) / se.to_numpy())[ok]
    z_without = ((mean.to_numpy() - without[keys]) / se.to_numpy())[ok]
    assert np.abs(z_with).max() < 4.5
    moved = np.abs(push[keys // 24]) > 0.05
    assert np.abs(z_without[moved[ok]]).min() > 10


def _own_cell_effects(t: np.ndarray, b: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, ...]:
    """Population long-term and watch effects per cell of new experiments, written out from
    the scenario's definition (not the simulator's response code): long-term by
    Gauss-Hermite over the user's logit, watch minutes by the normal partial expectation."""
    member = simulate.FailureCohort().cells()
    shift = sc.SEG_TAU - 0.25 * member  # treated logit shift beyond exp_tau
    mean0 = sc.LOGIT_INTERCEPT + sc.LOGIT_SAT * sc.SAT_MEAN + sc.LOGIT_ENG * sc.ENG_MEAN
    sd0 = math.sqrt(sc.LOGIT_SAT**2 + sc.LOGIT_ENG**2)
    z, w = np.polynomial.hermite_e.hermegauss(24)
    w = w / w.sum()
    long = np.zeros((t.size, 24))
    for zi, wi in zip(z, w, strict=True):
        logit0 = mean0 + b[:, None] + sd0 * zi
        long += wi * (special.expit(logit0 + t[:, None] + shift) - special.expit(logit0))

    def partial(m: np.ndarray, s: float) -> np.ndarray:  # E[max(X, 0)], X ~ N(m, s^2)
        return m * special.ndtr(m / s) + s * np.exp(-0.5 * (m / s) ** 2) / math.sqrt(2 * math.pi)

    m = 25.0 + 10.0 * sc.ENG_MEAN + 6.0 * sc.SAT_MEAN
    s = math.sqrt(10.0**2 + 6.0**2 + 5.0**2)
    delta = 8.0 * (u[:, None] + 0.3 * sc.SEG_TAU) + 6.0 * member
    return long, partial(m + delta, s) - partial(m, s)


def _ols_slope(y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slope of y on x per column and its heteroscedasticity-robust (HC0) standard error."""
    xc = x - x.mean(axis=0)
    sxx = (xc**2).sum(axis=0)
    slope = (xc * (y - y.mean(axis=0))).sum(axis=0) / sxx
    resid = y - y.mean(axis=0) - slope * xc
    return slope, np.sqrt((xc**2 * resid**2).sum(axis=0)) / sxx


def test_population_slope_matches_monte_carlo_over_new_experiments(
    static_and_drifting: tuple[simulate.World, simulate.World, simulate.World],
) -> None:
    _, static, drifting = static_and_drifting
    slopes = drifting.population_slope()
    pi = drifting.config.mix.cell_probabilities()
    rng = np.random.default_rng(2024)
    n = 100_000
    for p, gamma in ((0, 0.0), (3, float(drifting.truth["watch_gamma"][3]))):
        t = rng.normal(0.0, 0.12, n)
        b = rng.normal(0.0, 0.08, n)
        u = t + gamma * rng.standard_normal(n)
        long, watch = _own_cell_effects(t, b, u)
        mc, se = _ols_slope(long, watch)
        mix_mc, mix_se = _ols_slope((long @ pi)[:, None], (watch @ pi)[:, None])
        exact = slopes["pop_slope"].isel(period=p).sel(proxy=WATCH).values.reshape(-1)
        mix_exact = float(slopes["pop_mix_slope"].isel(period=p).sel(proxy=WATCH))
        assert np.abs((mc - exact) / se).max() < 4.5
        assert abs((mix_mc[0] - mix_exact) / mix_se[0]) < 4.5
        assert se.max() / np.abs(exact).min() < 0.01  # the check can tell 2% apart
    # the drift is far outside the Monte Carlo error: period 3 is not period 0
    static_slope = static.population_slope()["pop_mix_slope"].isel(period=3).sel(proxy=WATCH)
    assert float(static_slope) > 4.0 * mix_exact


def test_slope_falls_at_the_stated_rate_and_is_constant_when_static() -> None:
    rate, periods = 0.25, 6
    options = {"n_users": 3_000, "n_experiments": 12, "seed": 1, "periods": periods}
    drifting = simulate.streaming(**options, watch_drift=rate)
    static = simulate.streaming(**options)
    d, s = drifting.population_slope(), static.population_slope()
    assert d["pop_slope"].dims == ("period", "region", "device", "tenure", "proxy")
    for name in ("pop_slope", "pop_mix_slope"):
        watch = d[name].sel(proxy=WATCH)
        ratio = (watch / watch.isel(period=0)).values
        expected = (1.0 - rate) ** np.arange(periods)
        expected = expected.reshape((periods,) + (1,) * (ratio.ndim - 1))
        # Exact for a linear watch response; its clipping at 0 bends the ratio a little
        # (measured: 1.3e-3 at most here), while a wrong drift law is off by several %
        # (1 - p rate instead of (1 - rate)^p: 12% at p = 2).
        np.testing.assert_allclose(ratio, np.broadcast_to(expected, ratio.shape), rtol=5e-3)
        assert np.all(np.diff(watch.values, axis=0) < 0)
        # the static world's slopes are the same in every period, and are period 0's
        for p in range(periods):
            np.testing.assert_array_equal(s[name].isel(period=p).values, s[name][0].values)
        np.testing.assert_array_equal(d[name].isel(period=0).values, s[name][0].values)
        # early_starts does not drift; ctr and rebuffer effects never vary: no slope
        starts = d[name].sel(proxy="early_starts").values
        np.testing.assert_array_equal(starts, np.broadcast_to(starts[0], starts.shape))
        assert np.isnan(d[name].sel(proxy=["early_ctr", "rebuffer_rate"]).values).all()
    assert float(d["pop_mix_slope"].sel(proxy=WATCH)[0]) > 0
    # the world's truth carries the same slopes for its own mix
    np.testing.assert_array_equal(drifting.truth["pop_slope"].values, d["pop_slope"].values)


def test_population_truth_is_the_latest_periods_and_matches_monte_carlo(
    static_and_drifting: tuple[simulate.World, simulate.World, simulate.World],
) -> None:
    _, static, drifting = static_and_drifting
    truth = drifting.truth
    latest = drifting.population_truth(period="2024-Q4")
    for name in latest.data_vars:
        np.testing.assert_array_equal(truth[name].values, latest[name].values)
    first = drifting.population_truth(period=0)
    for name in first.data_vars:
        np.testing.assert_array_equal(first[name].values, static.truth[name].values)
    # Monte Carlo over new experiments of the latest period (exact effects per draw)
    new = drifting.new_experiment_effects(100_000, seed=11, period=3)
    cells = new[new["scope"] == "segment"]
    n = new["experiment"].nunique()
    long = cells["long_retained"].to_numpy().reshape(n, 24)
    watch = cells[WATCH].to_numpy().reshape(n, 24)
    flip = (long * watch < 0).mean(axis=0)
    prob = latest["pop_flip_prob"].sel(proxy=WATCH).values.reshape(-1)
    se = np.sqrt(prob * (1 - prob) / n)
    assert np.abs((flip - prob) / se).max() < 4.5
    # the watch-only push makes flips far more common than in the static world
    assert prob.mean() > static.truth["pop_flip_prob"].sel(proxy=WATCH).values.mean() + 0.1
    sd = latest["pop_effect_sd"].sel(metric=WATCH).values.reshape(-1)
    np.testing.assert_allclose(watch.std(axis=0), sd, rtol=0.01)
    mix = new[new["scope"] == "mix"]
    same = np.sign(mix["long_retained"].to_numpy()) == np.sign(mix[WATCH].to_numpy())
    accuracy = float(latest["pop_decision_accuracy"].sel(proxy=WATCH))
    assert abs(same.mean() - accuracy) < 4.5 * math.sqrt(accuracy * (1 - accuracy) / n)
    push = mix["watch_push"].to_numpy()
    assert abs(push.std() - float(truth["watch_gamma"][3])) < 0.01


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"periods": 0}, r"StreamingConfig.periods: must be None or an integer in \[1"),
        ({"periods": 51}, r"StreamingConfig.periods:.*n_experiments = 50.*got 51"),
        ({"periods": 2.0}, r"StreamingConfig.periods:.*got 2.0"),
        ({"watch_drift": 0.1}, r"StreamingConfig.watch_drift: must be 0 without periods"),
        ({"periods": 3, "watch_drift": 1.0}, r"StreamingConfig.watch_drift:.*\[0, 1\); got 1.0"),
        ({"periods": 3, "watch_drift": -0.1}, r"StreamingConfig.watch_drift:.*got -0.1"),
        ({"periods": 3, "watch_drift": "0.1"}, r"StreamingConfig.watch_drift:.*got '0.1'"),
        ({"periods": 3, "period": "weeks"}, r"StreamingConfig.period:.*Did you mean 'week'"),
        ({"periods": 3, "start": "2024-13-01"}, r"StreamingConfig.start:.*got '2024-13-01'"),
    ],
)
def test_streaming_time_errors_name_the_field(options: dict, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        simulate.StreamingConfig(**options)


def test_period_argument_errors(
    static_and_drifting: tuple[simulate.World, simulate.World, simulate.World],
) -> None:
    _, _, drifting = static_and_drifting
    for bad in ("2025-Q1", 4, -1, True):
        with pytest.raises(ParameterError, match=r"'period' parameter must be one of the world"):
            drifting.population_truth(period=bad)
    with pytest.raises(ParameterError, match="no time"):
        simulate.streaming(n_users=500, n_experiments=3).population_truth(period=0)

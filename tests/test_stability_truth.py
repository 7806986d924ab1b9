"""Stability over time (ps.stability): its numbers against the posterior, and against the truth.

Fast: on a small timed fit, every number of the result is computed again here
from the fit's draws (slope paths, changes, P(changed), the reading's words and
numbers), and the argument errors. Slow: on the worlds of
``benchmarks/bench_stability.py`` (its first seed), the drift is found and the
latest slope's interval holds the true slope; the static twin shows no clear change.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

import proxyscope as ps
from proxyscope.analyses.stability import ALL, Stability
from proxyscope.core.draws import flat
from proxyscope.errors import ConvergenceWarning, DataTypeError, ParameterError

CI = 0.9
SMALL: dict[str, Any] = {
    "n_experiments": 20,
    "periods": 4,
    "beta": (0.8, 0.15),
    "mu": ((1.0, 0.5), (0.5, 1.0), (1.5, 0.0), (0.0, 0.8)),
    "sd_e": (1.0, 0.8),
    "sd_c": (0.3, 0.3),
    "drift": {0: 0.2},
    "seed": 4,
}
FAST: dict[str, Any] = {"draws": 300, "tune": 300, "chains": 2, "random_seed": 2, "progress": False}


@pytest.fixture(scope="module")
def fitted() -> tuple[ps.CellEffects, Any]:
    cells, truth = ps.simulate.from_model(**SMALL)
    timed = cells.with_time(truth.starts, period=truth.period)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # short test fit
        fit = ps.ProxyModel(time=True, followups=0).fit(timed, **FAST)
    return timed, fit


def _stability(fit: Any, **kw: Any) -> Stability:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return ps.stability(fit, **kw)


def _paths(fit: Any) -> np.ndarray:
    """Global slope draws (N, P, K), read here from the posterior."""
    post = fit.posterior["beta_global_path"].transpose("chain", "draw", "period", "proxy")
    return flat(post)


def test_paths_are_the_posteriors_slope_quantiles(fitted: tuple[Any, Any]) -> None:
    _, fit = fitted
    res = _stability(fit, ci=CI)
    draws = _paths(fit)
    periods = list(fit.info.periods)
    rows = res.paths[(res.paths["segment"] == ALL) & ~res.paths["forecast"]]
    assert len(rows) == len(periods) * len(fit.proxies)
    for row in rows.itertuples():
        d = draws[:, periods.index(row.period), list(fit.proxies).index(row.proxy)]
        assert row.mean == pytest.approx(d.mean(), rel=1e-12)
        lo, hi = np.quantile(d, [(1 - CI) / 2, (1 + CI) / 2])
        assert (row.lower, row.upper) == pytest.approx((lo, hi), rel=1e-12)


def test_the_forecast_is_one_more_step_of_the_walk(fitted: tuple[Any, Any]) -> None:
    _, fit = fitted
    res = _stability(fit)
    last = fit.info.periods[-1]
    step = flat(fit.posterior["time_step_sd_beta"])  # (N, K)
    drift = flat(fit.posterior["time_drift_beta"])  # (N, K): the steady change per period
    for k, proxy in enumerate(fit.proxies):
        rows = res.paths[(res.paths["segment"] == ALL) & (res.paths["proxy"] == proxy)]
        ahead = rows[rows["forecast"]].iloc[0]
        now = rows[rows["period"] == last].iloc[0]
        assert ahead["period"] == f"after {last}"
        # Centred one drift further, up to the steps' Monte Carlo error; wider by the step.
        bound = 4 * np.sqrt(np.mean(step[:, k] ** 2) / len(step))
        assert abs(ahead["mean"] - now["mean"] - drift[:, k].mean()) < bound
        assert ahead["upper"] - ahead["lower"] > now["upper"] - now["lower"]


def test_changes_and_p_changed_are_the_draws_shares(fitted: tuple[Any, Any]) -> None:
    _, fit = fitted
    res = _stability(fit, ci=CI)
    draws = _paths(fit)
    first, last = fit.info.periods[0], fit.info.periods[-1]
    changes = res.changes[res.changes["segment"] == ALL].set_index("proxy")
    for k, proxy in enumerate(fit.proxies):
        row = changes.loc[proxy]
        assert (row["from_period"], row["to_period"]) == (first, last)
        start = draws[:, 0, k]
        delta = draws[:, -1, k] - start
        assert row["change"] == pytest.approx(delta.mean(), rel=1e-12)
        lo, hi = np.quantile(delta, [(1 - CI) / 2, (1 + CI) / 2])
        assert (row["change_lower"], row["change_upper"]) == pytest.approx((lo, hi), rel=1e-12)
        share_up = np.count_nonzero(delta > 0) / len(delta)
        assert row["p_changed"] == pytest.approx(max(share_up, 1 - share_up), abs=1e-12)
        s_lo, s_hi = np.quantile(start, [(1 - CI) / 2, (1 + CI) / 2])
        if s_lo > 0 or s_hi < 0:
            assert row["relative"] == pytest.approx(np.median(delta / start), rel=1e-12)
        else:
            assert np.isnan(row["relative"])
        # Toward 0 (against the slope's sign) is "weakened".
        toward_zero = np.sign(delta.mean()) != np.sign(np.median(start))
        assert row["direction"] == ("weakened" if toward_zero else "strengthened")


@pytest.mark.parametrize("probability", [0.5, 0.999])
def test_the_readings_say_the_numbers(fitted: tuple[Any, Any], probability: float) -> None:
    _, fit = fitted
    res = _stability(fit, probability=probability)
    changes = res.changes[res.changes["segment"] == ALL]
    assert len(res.readings) == len(fit.proxies)
    for line, row in zip(res.readings, changes.itertuples(), strict=True):
        assert line.startswith(f"{row.proxy}'s link to {fit.outcome} ")
        assert f"between {row.from_period} and {row.to_period}" in line
        assert line.endswith(f"P(changed) = {row.p_changed:.2f}.")
        if row.p_changed < probability:
            assert "shows no clear change" in line
        elif np.isfinite(row.relative):
            assert f"has {row.direction} by {abs(100 * row.relative):.0f}% [" in line
        else:
            assert f"has {row.direction} by {abs(row.change):.3g} [" in line
    assert res.summary() == "\n".join(res.readings)


def test_between_pairs_and_segments(fitted: tuple[Any, Any]) -> None:
    _, fit = fitted
    p = fit.info.periods
    draws = _paths(fit)
    res = _stability(fit, between=[(p[1], p[2]), (p[0], p[3])])
    glob = res.changes[res.changes["segment"] == ALL]
    assert list(zip(glob["from_period"], glob["to_period"], strict=True)) == [
        (p[1], p[2]),
        (p[0], p[3]),
    ] * len(fit.proxies)
    row = glob[(glob["from_period"] == p[1]) & (glob["proxy"] == fit.proxies[0])].iloc[0]
    assert row["change"] == pytest.approx((draws[:, 2, 0] - draws[:, 1, 0]).mean(), rel=1e-12)
    one = _stability(fit, between=(p[0], p[2]))
    assert set(one.changes["to_period"]) == {p[2]}
    # The walk shifts every segment alike: each segment's change is the global one.
    seg = _stability(fit, segments=True)
    for _, part in seg.changes.groupby("proxy"):
        np.testing.assert_allclose(part["change"], part["change"].iloc[0], rtol=1e-9)
    assert set(seg.paths["segment"]) == {ALL, *map(str, fit.posterior["segment"].values)}


@pytest.mark.parametrize(
    ("between", "match"),
    [
        (("2024-Q1", "2024-Q1"), "two different periods"),
        (("2024-Q1", "2031-Q1"), "must be one of the fit's periods"),
        ([("2024-Q1",)], "must be a pair of periods or a list of pairs"),
        (["2024-Q1", "2024-Q2", "2024-Q3"], "must be a pair of periods or a list of pairs"),
        ("2024-Q1", r"list of pairs, e\.g\. \('2024-Q1', '2024-Q4'\); got '2024-Q1'"),
        (3, "must be a pair of periods or a list of pairs.*got 3"),
    ],
)
def test_bad_between(fitted: tuple[Any, Any], between: Any, match: str) -> None:
    _, fit = fitted
    with pytest.raises(ParameterError, match=match):
        _stability(fit, between=between)


def test_bad_arguments_and_a_static_fit(fitted: tuple[Any, Any]) -> None:
    cells, fit = fitted
    with pytest.raises(ParameterError, match="'ci' parameter of stability"):
        _stability(fit, ci=1.5)
    with pytest.raises(ParameterError, match="'probability' parameter of stability"):
        _stability(fit, probability=1.0)
    with pytest.raises(DataTypeError, match="'segments' parameter of stability"):
        _stability(fit, segments="yes")
    with pytest.raises(DataTypeError, match="'fit' parameter of stability"):
        ps.stability(cells)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        static = ps.ProxyModel(followups=0).fit(cells, **{**FAST, "draws": 100, "tune": 100})
    with pytest.raises(ParameterError, match="this fit is static"):
        _stability(static)


# -- against the truth (slow): benchmarks/bench_stability.py, seed 1 --------------------------

WORLD: dict[str, Any] = {
    "n_experiments": 50,
    "periods": 8,
    "beta": (0.8, 0.15),
    "mu": ((1.0, 0.5), (0.5, 1.0), (1.5, 0.0), (0.0, 0.8)),
    "sd_e": (1.0, 0.8),
    "sd_c": (0.3, 0.3),
    "seed": 1,
}


def _world_fit(drift: dict[int, float] | None) -> tuple[Any, Any]:
    cells, truth = ps.simulate.from_model(drift=drift, **WORLD)
    timed = cells.with_time(truth.starts, period=truth.period)
    fit = ps.ProxyModel(time=True).fit(timed, random_seed=1, progress=False)
    return fit, truth


@pytest.fixture(scope="module")
def drifting_world() -> tuple[Any, Any]:
    return _world_fit({0: 0.12})


@pytest.mark.slow
def test_the_latest_slope_interval_holds_its_truth(drifting_world: tuple[Any, Any]) -> None:
    fit, truth = drifting_world
    res = ps.stability(fit, ci=CI)
    latest = res.paths[
        (res.paths["segment"] == ALL)
        & (res.paths["proxy"] == "proxy_1")
        & (res.paths["period"] == fit.info.periods[-1])
    ].iloc[0]
    assert latest["lower"] <= truth.beta_path[-1, 0] <= latest["upper"]


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason=(
        "issue 25 point 7 target missed: P(changed) >= 0.95 for the drifting proxy in 8 of 10 "
        "seeds of benchmarks/bench_stability.py (target 9); seed 1 gives 0.76, its data alone "
        "(static fits of each half) 0.89. Remove the mark when the walk finds it."
    ),
)
def test_the_drift_is_found(drifting_world: tuple[Any, Any]) -> None:
    fit, _ = drifting_world
    res = ps.stability(fit)
    change = res.changes[(res.changes["segment"] == ALL) & (res.changes["proxy"] == "proxy_1")]
    assert change["p_changed"].iloc[0] >= 0.95


@pytest.mark.slow
def test_the_static_twin_shows_no_clear_change() -> None:
    fit, _ = _world_fit(None)
    res = ps.stability(fit)
    assert (res.changes["p_changed"] < 0.95).all()

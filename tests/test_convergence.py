"""The vectorized R-hat and bulk/tail ESS reproduce ArviZ's numbers, parameter by parameter."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from proxyscope import dims
from proxyscope.model import _convergence as conv
from proxyscope.model import diagnostics, stray

RTOL = 1e-10


def _ar1(rng: np.random.Generator, phi: float, shape: tuple[int, ...]) -> np.ndarray:
    """Stationary AR(1) draws along the last axis."""
    e = rng.normal(size=shape)
    x = np.empty(shape)
    x[..., 0] = e[..., 0] / np.sqrt(1.0 - phi**2)
    for t in range(1, shape[-1]):
        x[..., t] = phi * x[..., t - 1] + e[..., t]
    return x


def _cases() -> dict[str, np.ndarray]:
    """(n, chain, draw) arrays, each row one parameter."""
    rng = np.random.default_rng(20210101)
    cases = {f"ar1_{phi:+.2f}": _ar1(rng, phi, (8, 4, 1000)) for phi in (0.0, 0.5, 0.95, -0.3)}
    cases["strong_negative"] = _ar1(rng, -0.7, (6, 4, 300))
    cases["chain_means"] = _ar1(rng, 0.3, (6, 4, 400)) + np.array([0.0, 0.2, 0.5, 1.0])[:, None]
    cases["student_t"] = rng.standard_t(1.5, size=(8, 4, 500))
    cases["poisson_ties"] = rng.poisson(0.7, size=(8, 4, 300)).astype(float)
    cases["three_values"] = rng.integers(0, 3, size=(8, 4, 200)).astype(float)
    # 99% of draws at 1: the 5% quantile is the maximum, its indicator never varies.
    cases["rare_value"] = (rng.random((8, 4, 300)) > 0.01).astype(float)
    cases["odd_draws"] = _ar1(rng, 0.6, (8, 4, 501))
    cases["one_chain"] = _ar1(rng, 0.4, (8, 1, 600))
    cases["4x10"] = _ar1(rng, 0.3, (20, 4, 10))
    cases["2x4"] = rng.normal(size=(20, 2, 4))
    cases["3x5"] = _ar1(rng, 0.9, (20, 3, 5))
    cases["8x33"] = _ar1(rng, 0.2, (8, 8, 33))
    nan = rng.normal(size=(6, 4, 100))
    nan[1, 2, 50] = np.nan
    nan[4, :, :] = np.nan
    cases["nan"] = nan
    inf = rng.normal(size=(4, 4, 100))
    inf[0, 1, 5] = np.inf
    inf[1, :, :60] = np.inf  # the median is infinite: ArviZ's folded R-hat is NaN
    inf[2, :, :30], inf[2, :, 30:60] = np.inf, -np.inf
    inf[3, 0, 0], inf[3, 1, 1] = np.inf, -np.inf
    cases["infinite"] = inf
    cases["too_few_draws"] = rng.normal(size=(3, 4, 3))
    return cases


CASES = _cases()


def _arviz(draws: np.ndarray, fn: Callable[..., Any], method: str) -> np.ndarray:
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for d in draws:
            out.append(float(fn(d, method=method)))
    return np.array(out)


def _assert_matches(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=0)


@pytest.mark.parametrize("case", list(CASES))
def test_rhat_matches_arviz(case: str) -> None:
    draws = CASES[case]
    _assert_matches(conv.rhat_rank(draws), _arviz(draws, az.rhat, "rank"))


@pytest.mark.parametrize("case", list(CASES))
def test_ess_bulk_matches_arviz(case: str) -> None:
    draws = CASES[case]
    _assert_matches(conv.ess_bulk(draws), _arviz(draws, az.ess, "bulk"))


@pytest.mark.parametrize("case", list(CASES))
def test_ess_tail_matches_arviz(case: str) -> None:
    draws = CASES[case]
    _assert_matches(conv.ess_tail(draws), _arviz(draws, az.ess, "tail"))


@pytest.mark.parametrize("case", ["ar1_+0.50", "poisson_ties", "odd_draws", "one_chain", "nan"])
def test_diagnose_equals_the_single_functions(case: str) -> None:
    draws = CASES[case]
    r, b, t = conv.diagnose(draws)
    np.testing.assert_array_equal(r, conv.rhat_rank(draws))
    np.testing.assert_array_equal(b, conv.ess_bulk(draws))
    np.testing.assert_array_equal(t, conv.ess_tail(draws))


def test_cases_exercise_the_interesting_regimes() -> None:
    """The comparisons above cover what they claim to (so they could fail)."""
    size = 4 * 1000
    # Anticorrelated chains: tau < 1, so ESS exceeds the number of draws.
    assert (conv.ess_bulk(CASES["ar1_-0.30"]) > size).all()
    # Strong autocorrelation: a small fraction of the draws.
    assert (conv.ess_bulk(CASES["ar1_+0.95"]) < 0.1 * size).all()
    # Chains that disagree.
    assert (conv.rhat_rank(CASES["chain_means"]) > 1.05).all()
    # The indicator of the 5% quantile never varies: ESS is the number of split draws.
    assert (conv.ess_tail(CASES["rare_value"]) == 4 * 300).any()
    # One chain: no R-hat, but ESS; too few draws or NaN: nothing.
    assert np.isnan(conv.rhat_rank(CASES["one_chain"])).all()
    assert np.isfinite(conv.ess_bulk(CASES["one_chain"])).all()
    assert np.isnan(conv.diagnose(CASES["too_few_draws"])).all()
    assert np.isnan(conv.ess_tail(CASES["nan"])[[1, 4]]).all()
    assert np.isfinite(conv.ess_tail(CASES["nan"])[[0, 2, 3, 5]]).all()


def test_leading_shape_and_single_array() -> None:
    draws = CASES["ar1_+0.50"][:6].reshape(2, 3, 4, 1000)
    r, b, t = conv.diagnose(draws)
    assert r.shape == b.shape == t.shape == (2, 3)
    np.testing.assert_array_equal(r.reshape(-1), conv.rhat_rank(CASES["ar1_+0.50"][:6]))
    one = CASES["ar1_+0.50"][0]
    assert conv.ess_bulk(one).shape == ()
    np.testing.assert_allclose(float(conv.ess_bulk(one)), az.ess(one, method="bulk"), rtol=RTOL)
    with pytest.raises(ValueError, match="chain, draw"):
        conv.rhat_rank(np.zeros(10))


def test_many_parameters_in_blocks() -> None:
    """More parameters than one processing block: rows stay in their places."""
    rng = np.random.default_rng(7)
    draws = _ar1(rng, 0.5, (300, 4, 200)) * rng.uniform(0.1, 10, size=(300, 1, 1))
    draws[::7] += np.arange(4.0)[:, None]
    draws[5, 0, 0] = np.nan
    idx = [0, 5, 7, 150, 299]
    r, b, t = conv.diagnose(draws)
    _assert_matches(r[idx], _arviz(draws[idx], az.rhat, "rank"))
    _assert_matches(b[idx], _arviz(draws[idx], az.ess, "bulk"))
    _assert_matches(t[idx], _arviz(draws[idx], az.ess, "tail"))


# -- compute ---------------------------------------------------------------------------------


def _posterior(rng: np.random.Generator, n_chain: int = 4, n_draw: int = 300) -> xr.Dataset:
    cd = (dims.CHAIN, dims.DRAW)
    coords = {dims.CHAIN: np.arange(n_chain), dims.DRAW: np.arange(n_draw)}
    mu = _ar1(rng, 0.9, (n_chain, n_draw))
    tau = np.exp(_ar1(rng, 0.2, (n_chain, n_draw, 3)).transpose(0, 1, 2))
    tau[..., 1] += np.arange(n_chain)[:, None]  # one parameter that has not converged
    corr = np.broadcast_to(np.eye(2), (n_chain, n_draw, 2, 2)).copy()
    corr[..., 0, 1] = corr[..., 1, 0] = np.tanh(_ar1(rng, 0.5, (n_chain, n_draw)))
    count = rng.poisson(1.0, size=(n_chain, n_draw, 2))  # integer, many ties
    return xr.Dataset(
        {
            "mu": (cd, mu),
            "tau": ((*cd, dims.METRIC), tau),
            "corr": ((*cd, dims.PROXY, dims.PROXY_), corr),
            "count": ((*cd, dims.SEGMENT), count),
        },
        coords={
            **coords,
            dims.METRIC: ["revenue", "orders", "sessions"],
            dims.PROXY: ["p0", "p1"],
            dims.PROXY_: ["p0", "p1"],
            dims.SEGMENT: ["IN / Mobile", "all"],
        },
    )


def _old_table(posterior: xr.Dataset, sampled: xr.Dataset) -> pd.DataFrame:
    """The table as compute built it before: ArviZ, one parameter at a time."""
    rows = []
    entries = diagnostics._flat(posterior, "posterior") + diagnostics._flat(sampled, "sampled")
    for name, group, draws in entries:
        if np.ptp(draws) == 0:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            r = float(az.rhat(draws, method="rank"))
            eb = float(az.ess(draws, method="bulk"))
            et = float(az.ess(draws, method="tail"))
        rows.append((name, group, r, eb, et))
    table = pd.DataFrame(rows, columns=["parameter", "group", "r_hat", "ess_bulk", "ess_tail"])
    table["ok"] = (table["r_hat"] <= 1.01) & (table["ess_bulk"] >= 400)
    return table.sort_values("ess_bulk").reset_index(drop=True)


@pytest.mark.parametrize("n_chain", [4, 1])
def test_compute_matches_the_per_parameter_arviz_table(n_chain: int) -> None:
    rng = np.random.default_rng(3)
    posterior = _posterior(rng, n_chain=n_chain)
    sampled = xr.Dataset(
        {"z": ((dims.CHAIN, dims.DRAW, "z_dim"), rng.normal(size=(n_chain, 300, 2)))},
        coords={"z_dim": [0, 1]},
    )
    stats = xr.Dataset(
        {
            "diverging": ((dims.CHAIN, dims.DRAW), np.zeros((n_chain, 300), dtype=bool)),
            "reached_max_treedepth": ((dims.CHAIN, dims.DRAW), np.zeros((n_chain, 300), bool)),
            "energy": ((dims.CHAIN, dims.DRAW), rng.normal(size=(n_chain, 300))),
        }
    )
    got = diagnostics.compute(posterior, sampled, stats).table
    want = _old_table(posterior, sampled)

    assert list(got.columns) == ["parameter", "group", "r_hat", "ess_bulk", "ess_tail", "ok"]
    assert list(got["parameter"]) == list(want["parameter"])
    assert "corr[p0, p0]" not in set(got["parameter"])  # constants are skipped
    assert {"tau[orders]", "corr[p0, p1]", "count[IN / Mobile]", "z[1]"} <= set(got["parameter"])
    pd.testing.assert_series_equal(got["group"], want["group"])
    pd.testing.assert_series_equal(got["ok"], want["ok"])
    for col in ["r_hat", "ess_bulk", "ess_tail"]:
        assert got[col].dtype == np.float64
        _assert_matches(got[col].to_numpy(), want[col].to_numpy())
    if n_chain > 1:
        assert not got.set_index("parameter").loc["tau[orders]", "ok"]


def _stats(
    n_chain: int, n_draw: int, diverging: np.ndarray, rng: np.random.Generator
) -> xr.Dataset:
    return xr.Dataset(
        {
            "diverging": ((dims.CHAIN, dims.DRAW), diverging),
            "reached_max_treedepth": ((dims.CHAIN, dims.DRAW), np.zeros((n_chain, n_draw), bool)),
            "energy": ((dims.CHAIN, dims.DRAW), rng.normal(size=(n_chain, n_draw))),
        }
    )


def test_a_stuck_chain_is_named_with_its_parameter_and_divergences() -> None:
    rng = np.random.default_rng(11)
    draws = rng.normal(size=(4, 500, 30))
    draws[3, :, 17] += 2.5  # chain 3 sits elsewhere on one parameter only
    posterior = xr.Dataset(
        {"b": ((dims.CHAIN, dims.DRAW, "k"), draws)}, coords={"k": np.arange(30)}
    )
    diverging = np.zeros((4, 500), dtype=bool)
    diverging[3, ::10] = True
    diverging[0, 0] = True
    d = diagnostics.compute(posterior, xr.Dataset(), _stats(4, 500, diverging, rng))

    assert d.chain_divergences == [1, 0, 0, 50]
    assert [(c, p) for c, p, _ in d.stray_chains] == [(3, "b[17]")]
    assert d.stray_chains[0][2] == pytest.approx(2.5, abs=0.3)
    assert "(per chain: 1, 0, 0, 50)" in d.summary()
    assert "chain 3 settles elsewhere than the others on b[17]" in d.summary()
    assert "50 of the 51 divergences" in d.advice()[0]
    assert not d.passed


def test_a_chain_in_another_mode_fails_the_fit_in_every_later_run() -> None:
    rng = np.random.default_rng(13)
    draws = rng.normal(size=(4, 500, 6))
    draws[1, :, 2] += 9.0  # chain 1 samples another mode, moving as freely as the rest
    draws[2, :, 4] = 20.0 + 0.01 * rng.normal(size=500)  # chain 2 is stuck far out
    posterior = xr.Dataset({"b": ((dims.CHAIN, dims.DRAW, "k"), draws)}, coords={"k": range(6)})
    stats = _stats(4, 500, np.zeros((4, 500), dtype=bool), rng)
    d = diagnostics.compute(posterior, xr.Dataset(), stats)
    assert [(c, p) for c, p, _ in d.modes] == [(1, "b[2]")]  # not the stuck chain
    # A later run whose chains all sit in one mode: its own table passes, but
    # a fit that recorded the mode earlier does not.
    calm = xr.Dataset(
        {"b": ((dims.CHAIN, dims.DRAW, "k"), rng.normal(size=(4, 500, 6)))},
        coords={"k": range(6)},
    )
    record = {"modes": [{"run": 1, "chain": 1, "parameter": "b[2]", "distance": 9.0}]}
    later = diagnostics.compute(calm, xr.Dataset(), stats, sampler=record)
    assert later.table["ok"].all() and later.divergences == 0
    assert not later.passed
    assert "Chains sampled separate modes (run 1, chain 1 on b[2]" in later.summary()
    assert diagnostics.compute(calm, xr.Dataset(), stats).passed


def test_chains_of_one_posterior_are_not_called_stray() -> None:
    rng = np.random.default_rng(12)
    # AR(1) chains with few effective draws each: chain means scatter, but by
    # far less than a within-chain sd.
    eps = rng.normal(size=(4, 400, 200))
    draws = np.empty_like(eps)
    draws[:, 0] = eps[:, 0]
    for t in range(1, 400):
        draws[:, t] = 0.9 * draws[:, t - 1] + np.sqrt(1 - 0.81) * eps[:, t]
    assert stray.stray_chains(draws.transpose(2, 0, 1), [f"x{i}" for i in range(200)]) == []
    # Two chains cannot say which of them strays; constants are ignored.
    two = rng.normal(size=(3, 2, 100))
    two[0, 1] += 5
    assert stray.stray_chains(two, ["a", "b", "c"]) == []
    const = np.zeros((1, 4, 100))
    assert stray.stray_chains(const, ["c"]) == []

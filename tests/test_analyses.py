"""The analyses against values derived independently from the posterior draws.

Nothing here calls the helpers the analyses use (``implied``, ``bvn``,
``composite``). Reference values come from two routes written here:

- exact per draw: the implied joint of a new experiment's (tau_pi, theta_pi) is
  built as a linear map of the model's independent sources (eta, eta0, zeta
  per segment, epsilon per segment) with their covariance, Cov = A D A'; bivariate
  orthant probabilities use Sheppard's integral (checked against SciPy's Genz
  routine below);
- Monte Carlo: new experiments simulated from the structural model
  theta_s = mu_s + eta + zeta_s, tau_s = nu_s + eta0 + beta_s'(theta_s - mu_s) + eps_s
  for every posterior draw, signs counted (eta0: the experiment's long-term
  effect that no proxy carries, shared by its segments).

Monte Carlo tolerances are 5 standard errors of the estimate (computed from the
simulation itself); exact comparisons are to 1e-6 or tighter. A wrong
covariance (Omega_E alone, a missing sigma^2 or eta0, a mix that shares zeta), a wrong
sign convention or a wrong quantile fails them by a wide margin.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import STREAMING_ROLES, cached_fit
from scipy import stats
from scipy.optimize import brentq
from scipy.special import ndtr

import proxyscope as ps
from proxyscope.analyses.composite import weight_draws
from proxyscope.analyses.fragility import FragilityWarning
from proxyscope.errors import ColumnError, DataTypeError, ParameterError, ProxyscopeError

pytestmark = pytest.mark.filterwarnings("ignore::proxyscope.errors.ConvergenceWarning")

CI = 0.9
SEEDS = range(20)  # transport draws are pooled over these seeds (20 x 400 draws)


# -- reference computations ----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Post:
    """Posterior draws in original units, (chain, draw) stacked in C order."""

    labels: list[str]
    proxies: list[str]
    nu: np.ndarray  # (N, S)
    mu: np.ndarray  # (N, S, K)
    beta: np.ndarray  # (N, S, K)
    sigma: np.ndarray  # (N, S)
    omega_e: np.ndarray  # (N, K, K)
    omega_c: np.ndarray  # (N, K, K)
    sd_y: np.ndarray  # (N,) sd of eta0 (zeros for a model without it)

    @property
    def n(self) -> int:
        return self.nu.shape[0]

    @property
    def k(self) -> int:
        return self.mu.shape[2]

    @property
    def s(self) -> int:
        return self.nu.shape[1]


def posterior_arrays(fit: Any) -> Post:
    post = fit.idata.posterior.stack(sample=("chain", "draw"))

    def get(name: str, *rest: str) -> np.ndarray:
        return np.asarray(post[name].transpose("sample", *rest).values, dtype=float)

    return Post(
        labels=[str(v) for v in post["segment"].values],
        proxies=[str(v) for v in post["proxy"].values],
        nu=get("nu", "segment"),
        mu=get("mu", "segment", "proxy"),
        beta=get("beta", "segment", "proxy"),
        sigma=get("sigma", "segment"),
        omega_e=get("omega_e", "proxy", "proxy_"),
        omega_c=get("omega_c", "proxy", "proxy_"),
        sd_y=get("sd_e_outcome") if "sd_e_outcome" in post else np.zeros(post.sizes["sample"]),
    )


def user_shares(effects: Any, labels: list[str]) -> np.ndarray:
    """Share of users (both arms) per segment label, from the cell table."""
    frame = effects.to_frame()
    users = (frame["n_treat"] + frame["n_control"]).groupby(frame["segment_label"]).sum()
    users = users.reindex(labels).fillna(0.0).to_numpy(dtype=float)
    return users / users.sum()


def one_hot(p: Post, label: str) -> np.ndarray:
    out = np.zeros(p.s)
    out[p.labels.index(label)] = 1.0
    return out


def joint(p: Post, shares: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (N, 1+K) and covariance (N, 1+K, 1+K) of (tau_pi, theta_pi) per draw.

    Sources u = (eta, zeta_1..zeta_S, eps_1..eps_S, eta0) with covariance
    D = blockdiag(Omega_E, Omega_C, ..., Omega_C, I, omega0^2); (tau_pi, theta_pi) = m + A u.
    """
    n, s_n, k = p.n, p.s, p.k
    size = k + s_n * k + s_n + 1
    a = np.zeros((n, 1 + k, size))
    d = np.zeros((n, size, size))
    eye = np.eye(k)
    a[:, 0, :k] = np.einsum("s,nsk->nk", shares, p.beta)
    a[:, 1:, :k] = eye
    d[:, :k, :k] = p.omega_e
    for s in range(s_n):
        cols = slice(k + s * k, k + (s + 1) * k)
        a[:, 0, cols] = shares[s] * p.beta[:, s]
        a[:, 1:, cols] = shares[s] * eye
        d[:, cols, cols] = p.omega_c
        a[:, 0, k + s_n * k + s] = shares[s] * p.sigma[:, s]
        d[:, k + s_n * k + s, k + s_n * k + s] = 1.0
    a[:, 0, -1] = shares.sum()  # eta0 enters every segment's tau
    d[:, -1, -1] = p.sd_y**2
    mean = np.concatenate([(p.nu @ shares)[:, None], np.einsum("s,nsk->nk", shares, p.mu)], 1)
    cov = a @ d @ np.swapaxes(a, 1, 2)
    return mean, cov


_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(256)


def bvn_lower(h: np.ndarray, k: np.ndarray, r: np.ndarray) -> np.ndarray:
    """P(X <= h, Y <= k), standard normals with correlation r, by Sheppard's integral.

    Phi2 = Phi(h) Phi(k) + 1/(2 pi) int_0^asin(r) exp(-(h^2 + k^2 - 2hk sin t) / (2 cos^2 t)) dt,
    evaluated with 256-point Gauss-Legendre quadrature (vectorised).
    """
    h, k, r = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (h, k, r)))
    nodes, wts = _NODES, _WEIGHTS
    top = np.arcsin(np.clip(r, -1 + 1e-12, 1 - 1e-12))
    t = 0.5 * top[..., None] * (nodes + 1.0)
    sin, cos2 = np.sin(t), np.cos(t) ** 2
    hh, kk = h[..., None], k[..., None]
    f = np.exp(-(hh**2 + kk**2 - 2.0 * hh * kk * sin) / (2.0 * cos2))
    integral = 0.5 * top * (f @ wts)
    return np.asarray(ndtr(h) * ndtr(k) + integral / (2.0 * np.pi))


def opposite(mx: Any, my: Any, vx: Any, vy: Any, cxy: Any) -> np.ndarray:
    """P(X Y < 0) for jointly normal (X, Y) with the given moments."""
    sx, sy = np.sqrt(vx), np.sqrt(vy)
    h, k = -np.asarray(mx) / sx, -np.asarray(my) / sy
    both_neg = bvn_lower(h, k, np.asarray(cxy) / (sx * sy))
    return np.asarray(ndtr(h) + ndtr(k) - 2.0 * both_neg)


def pair_flips(mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Per draw P(sign tau != sign theta_k), (N, K), from joint moments."""
    k = mean.shape[1] - 1
    return np.column_stack(
        [
            opposite(mean[:, 0], mean[:, j], cov[:, 0, 0], cov[:, j, j], cov[:, 0, j])
            for j in range(1, k + 1)
        ]
    )


def chol(m: np.ndarray) -> np.ndarray:
    return np.linalg.cholesky(m + 1e-300 * np.eye(m.shape[-1]))


def simulate(
    p: Post, shares: np.ndarray, m: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """m new experiments per posterior draw on mix ``shares``: tau (N, m), theta (N, m, K).

    Literally the structural model: one eta and one eta0 per experiment shared
    by all segments, an independent zeta and eps per segment cell.
    """
    n, k = p.n, p.k
    le, lc = chol(p.omega_e), chol(p.omega_c)
    eta = np.einsum("nkl,nml->nmk", le, rng.standard_normal((n, m, k)))
    eta0 = p.sd_y[:, None] * rng.standard_normal((n, m))
    tau = np.zeros((n, m))
    theta = np.zeros((n, m, k))
    for s in np.flatnonzero(shares > 0):
        zeta = np.einsum("nkl,nml->nmk", lc, rng.standard_normal((n, m, k)))
        delta = eta + zeta
        theta_s = p.mu[:, None, s] + delta
        tau_s = (
            p.nu[:, None, s]
            + eta0
            + np.einsum("nmk,nk->nm", delta, p.beta[:, s])
            + p.sigma[:, None, s] * rng.standard_normal((n, m))
        )
        theta += shares[s] * theta_s
        tau += shares[s] * tau_s
    return tau, theta


def mc_tolerance(per_draw_rate: np.ndarray, m: int) -> np.ndarray:
    """Five standard errors of the mean over draws of per-draw MC rates (m samples each)."""
    var = np.mean(per_draw_rate * (1.0 - per_draw_rate), axis=0) / (m * per_draw_rate.shape[0])
    return 5.0 * np.sqrt(var) + 1e-4


def quantiles(draws: np.ndarray, ci: float = CI) -> tuple[np.ndarray, np.ndarray]:
    return np.quantile(draws, (1 - ci) / 2, axis=0), np.quantile(draws, (1 + ci) / 2, axis=0)


def regression(mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per draw intercept (N,) and slopes (N, K) of E[tau | theta], via the precision matrix."""
    prec = np.linalg.inv(cov)
    b = -prec[:, 0, 1:] / prec[:, :1, 0]
    a = mean[:, 0] - np.einsum("nk,nk->n", b, mean[:, 1:])
    return a, b


def pooled_transport(fit: Any, target: Any, **kwargs: Any) -> np.ndarray:
    """Transport draws pooled over SEEDS: (len(SEEDS), N)."""
    return np.stack([ps.transport(fit, target, random_seed=s, **kwargs).draws for s in SEEDS])


def assert_predictive(pooled: np.ndarray, mean: np.ndarray, var: np.ndarray) -> None:
    """Pooled draws (R, N) are one N(mean_n, var_n) draw per posterior draw n.

    The standardised draws must be standard normal: mean within 5 se, sd within
    5 se, and a Kolmogorov-Smirnov test.
    """
    z = ((pooled - mean) / np.sqrt(var)).ravel()
    se = 1.0 / np.sqrt(z.size)
    assert abs(z.mean()) < 5 * se, z.mean()
    assert abs(z.std() - 1.0) < 5 * se / np.sqrt(2) + 1e-3, z.std()
    assert stats.kstest(z, "norm").pvalue > 1e-3


def assert_cdf_matches(pooled: np.ndarray, reference: np.ndarray) -> None:
    """The share of pooled draws below reference quantiles is the quantile level."""
    levels = np.array([0.05, 0.25, 0.5, 0.75, 0.95])
    q = np.quantile(reference, levels)
    below = (pooled.ravel()[:, None] < q).mean(axis=0)
    tol = 5 * np.sqrt(levels * (1 - levels) * (1 / pooled.size + 1 / reference.size))
    assert np.all(np.abs(below - levels) < tol), (below, levels, tol)


def quiet(func: Any, *args: Any, **kwargs: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FragilityWarning)
        return func(*args, **kwargs)


# -- fits ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def noseg_effects(small_world: Any) -> Any:
    """The small world with no segment columns: one cell per experiment (20 cells)."""
    roles = {**STREAMING_ROLES, "segments": []}
    return ps.summarize(small_world.users, engine="pandas", **roles)


@pytest.fixture(scope="module")
def noseg_fit(noseg_effects: Any) -> Any:
    """All four proxies, no segment columns: 2 chains x 300 draws (cached on disk)."""
    return cached_fit(
        "analyses-no-segments",
        lambda: ps.ProxyModel(pooling="additive", followups=0).fit(
            noseg_effects, draws=300, tune=300, chains=2, random_seed=3, progress=False
        ),
    )


HOLE = ("IN", "Mobile")


@pytest.fixture(scope="module")
def holes_effects(small_world: Any) -> Any:
    """Region x device cells with every IN / Mobile user removed (an unseen combination)."""
    users = small_world.users
    keep = ~((users["region"] == HOLE[0]) & (users["device"] == HOLE[1]))
    roles = {**STREAMING_ROLES, "segments": ["region", "device"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a few small cells are dropped (reported)
        return ps.summarize(users[keep], engine="pandas", **roles)


@pytest.fixture(scope="module")
def holes_fit(holes_effects: Any) -> Any:
    """Additive pooling without IN / Mobile: 2 chains x 300 draws (cached on disk)."""
    return cached_fit(
        "analyses-holes",
        lambda: ps.ProxyModel(pooling="additive", followups=0).fit(
            holes_effects, draws=300, tune=300, chains=2, random_seed=3, progress=False
        ),
    )


@dataclasses.dataclass
class Case:
    fit: Any
    effects: Any
    post: Post
    hist: np.ndarray  # historical shares per segment, from the cell table


@pytest.fixture(scope="module", params=["segments", "no-segments"])
def case(request: pytest.FixtureRequest) -> Case:
    """The region x device fit, or the fit without segment columns."""
    fit_name, eff_name = {
        "segments": ("small_fit", "small_effects"),
        "no-segments": ("noseg_fit", "noseg_effects"),
    }[request.param]
    fit = request.getfixturevalue(fit_name)
    effects = request.getfixturevalue(eff_name)
    post = posterior_arrays(fit)
    return Case(fit, effects, post, user_shares(effects, post.labels))


@pytest.fixture(scope="module")
def small(small_fit: Any, small_effects: Any) -> Case:
    post = posterior_arrays(small_fit)
    return Case(small_fit, small_effects, post, user_shares(small_effects, post.labels))


def segment_flips(c: Case) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-draw flip probabilities: per segment (N, S, K) and historical mix (N, K)."""
    per_seg = np.stack(
        [pair_flips(*joint(c.post, one_hot(c.post, lab))) for lab in c.post.labels], axis=1
    )
    return per_seg, pair_flips(*joint(c.post, c.hist))


# -- the reference helpers themselves -------------------------------------------------


def test_reference_orthant_probability_matches_scipy(small: Case) -> None:
    """Sheppard's integral here agrees with SciPy's Genz routine on the fit's own moments."""
    rng = np.random.default_rng(0)
    p = small.post
    rows = []
    for _ in range(60):
        n, s = rng.integers(p.n), rng.integers(p.s)
        mean, cov = joint(p, one_hot(p, p.labels[s]))
        j = 1 + rng.integers(p.k)
        m2, c2 = mean[n, [0, j]], cov[n][np.ix_([0, j], [0, j])]
        lower = stats.multivariate_normal.cdf([0.0, 0.0], mean=m2, cov=c2, abseps=1e-9)
        upper = stats.multivariate_normal.cdf([0.0, 0.0], mean=-m2, cov=c2, abseps=1e-9)
        rows.append((1.0 - lower - upper, float(opposite(*m2, c2[0, 0], c2[1, 1], c2[0, 1]))))
    got = np.array(rows)
    np.testing.assert_allclose(got[:, 1], got[:, 0], atol=2e-6)


def test_lower_is_better_proxy_is_read_negated(small_world: Any, small_effects: Any) -> None:
    """Cell effects (and so every posterior quantity) read rebuffer_rate in its good direction."""
    users = small_world.users
    cells = small_effects.cells()
    eff = small_effects.effect
    j = 1 + list(small_effects.proxies).index("rebuffer_rate")
    w = 1 + list(small_effects.proxies).index("early_watch_min")
    for c in range(0, len(cells), 37):
        row = cells.iloc[c]
        sel = users[
            (users["exp_id"] == row["experiment"])
            & (users["region"] == row["region"])
            & (users["device"] == row["device"])
        ]
        arms = sel.groupby("treatment")[["rebuffer_rate", "early_watch_min"]].mean()
        raw = arms.loc[1] - arms.loc[0]
        assert eff[c, j] == pytest.approx(-raw["rebuffer_rate"], rel=1e-9, abs=1e-12)
        assert eff[c, w] == pytest.approx(raw["early_watch_min"], rel=1e-9, abs=1e-12)


# -- fragility -----------------------------------------------------------------------


def test_flip_prob_matches_monte_carlo(case: Case) -> None:
    frag = quiet(ps.fragility, case.fit)
    p = case.post
    rng = np.random.default_rng(1)
    m = 1000
    for label in p.labels:
        tau, theta = simulate(p, one_hot(p, label), m, rng)
        rate = (np.sign(tau)[..., None] != np.sign(theta)).mean(axis=1)  # (N, K)
        tol = mc_tolerance(rate, m)
        rows = frag[frag["segment"] == label].set_index("proxy").loc[p.proxies]
        got = rows["flip_prob"].to_numpy()
        assert np.all(np.abs(got - rate.mean(axis=0)) < tol), (label, got, rate.mean(0), tol)
    # The historical mix, with its own zeta and eps per segment cell.
    tau, theta = simulate(p, case.hist, m, rng)
    rate = (np.sign(tau)[..., None] != np.sign(theta)).mean(axis=1)
    got = frag.drop_duplicates("proxy").set_index("proxy").loc[p.proxies, "overall_flip"]
    assert np.all(np.abs(got.to_numpy() - rate.mean(axis=0)) < mc_tolerance(rate, m))


def test_flip_intervals_are_quantiles_of_per_draw_probabilities(case: Case) -> None:
    for ci in (0.9, 0.5):
        frag = quiet(ps.fragility, case.fit, ci=ci)
        per_seg, overall = segment_flips(case)
        lo, hi = quantiles(per_seg, ci)
        o_lo, o_hi = quantiles(overall, ci)
        p = case.post
        for s, label in enumerate(p.labels):
            rows = frag[frag["segment"] == label].set_index("proxy").loc[p.proxies]
            np.testing.assert_allclose(rows["flip_prob"], per_seg[:, s].mean(0), atol=1e-6)
            np.testing.assert_allclose(rows["flip_lo"], lo[s], atol=1e-6)
            np.testing.assert_allclose(rows["flip_hi"], hi[s], atol=1e-6)
            np.testing.assert_allclose(rows["overall_flip"], overall.mean(0), atol=1e-6)
            np.testing.assert_allclose(rows["overall_lo"], o_lo, atol=1e-6)
            np.testing.assert_allclose(rows["overall_hi"], o_hi, atol=1e-6)
        assert frag.attrs["ci"] == ci
    if case.fit.segments:
        assert list(frag.columns[:2]) == list(case.fit.segments)
        levels = frag["region"].astype(str) + " / " + frag["device"].astype(str)
        assert (levels == frag["segment"]).all()


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.6])
def test_flag_rule(small: Case, threshold: float) -> None:
    """flagged <=> mean flip >= threshold and the ci lower end of (segment - overall) > 0."""
    per_seg, overall = segment_flips(small)
    diff_lo, _ = quantiles(per_seg - overall[:, None, :])
    want = (per_seg.mean(0) >= threshold) & (diff_lo > 0)  # (S, K)
    frag = quiet(ps.fragility, small.fit, threshold=threshold)
    p = small.post
    got = np.stack(
        [
            frag[frag["segment"] == lab].set_index("proxy").loc[p.proxies, "flagged"].to_numpy()
            for lab in p.labels
        ]
    )
    np.testing.assert_array_equal(got, want)
    if threshold == 0.5:
        # The planted cohort (Mobile x IN) is flagged for the engagement proxies; a
        # flip mean above the threshold that is not credibly above overall is not.
        assert want[p.labels.index("IN / Mobile"), p.proxies.index("early_watch_min")]
        assert ((per_seg.mean(0) >= 0.5) & ~want).any()
    assert frag.attrs["threshold"] == threshold


def test_fragility_warnings_name_segment_and_proxy(small: Case) -> None:
    with pytest.warns(FragilityWarning) as record:
        frag = ps.fragility(small.fit)
    messages = [str(w.message) for w in record if issubclass(w.category, FragilityWarning)]
    flagged = frag[frag["flagged"]]
    assert len(flagged) >= 1
    assert sorted(messages) == sorted(flagged["warning"]) == sorted(frag.attrs["warnings"])
    for _, row in flagged.iterrows():
        text = row["warning"]
        assert row["segment"] in text and row["proxy"] in text
        assert f"{row['flip_prob']:.2f}" in text
        assert f"[{row['flip_lo']:.2f}, {row['flip_hi']:.2f}]" in text
    assert (frag.loc[~frag["flagged"], "warning"] == "").all()


def test_fragility_warn_false_is_silent(small: Case) -> None:
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        frag = ps.fragility(small.fit, warn=False)
    assert frag["flagged"].any()
    assert not [w for w in record if issubclass(w.category, FragilityWarning)]


def test_cell_fragility_uses_the_recovered_latent_effects(small: Case) -> None:
    fit = small.fit
    frag = ps.fragility(fit, by="cell", max_draws=40)
    k = len(fit.proxies)
    assert len(frag) == fit.effects.n_cells * k
    picks = np.unique(np.linspace(0, fit.n_draws - 1, 40).astype(int))
    assert frag.attrs["n_draws"] == len(picks)
    per_draw = []
    for i in picks:
        mean, cov = fit.latent_moments(int(i))
        per_draw.append(pair_flips(mean, cov))
    want = np.stack(per_draw)  # (draws, C, K)
    got = frag["flip_prob"].to_numpy().reshape(-1, k)
    np.testing.assert_allclose(got, want.mean(0), atol=1e-6)
    lo, hi = quantiles(want)
    np.testing.assert_allclose(frag["flip_lo"].to_numpy().reshape(-1, k), lo, atol=1e-6)
    np.testing.assert_allclose(frag["flip_hi"].to_numpy().reshape(-1, k), hi, atol=1e-6)


# -- decision accuracy (recommend) ------------------------------------------------------


def predictive_threshold(
    mean_tau: np.ndarray, var_tau: np.ndarray, m_x: np.ndarray, v_x: np.ndarray, c: np.ndarray
) -> tuple[float, int]:
    """Where the posterior predictive P(tau > 0 | X = x) crosses 0.5 (draws weighted by
    their density of x) nearest the readings' centre within 6 sds, by Brent's method,
    and whether it rises there (+1) or falls (-1); (nan, 0) if it never crosses."""
    slope = c / v_x
    sd = np.sqrt(var_tau - c * slope)

    def excess(x: float) -> float:
        # Bayes: draws weighted by their predictive density of the reading x.
        log_density = stats.norm.logpdf(x, m_x, np.sqrt(v_x))
        w = np.exp(log_density - log_density.max())
        return float(np.sum(w * (ndtr((mean_tau + slope * (x - m_x)) / sd) - 0.5)) / w.sum())

    centre, spread = float(np.mean(m_x)), float(np.sqrt(np.mean(v_x)))
    grid = centre + spread * np.linspace(-6, 6, 1201)
    e = np.array([excess(x) for x in grid])
    changes = np.flatnonzero(np.sign(e[:-1]) != np.sign(e[1:]))
    if changes.size == 0:
        return float("nan"), 0
    i = changes[np.argmin(np.abs(grid[changes] - centre))]  # the crossing nearest the centre
    lo, hi = grid[i], grid[i + 1]
    t = brentq(excess, lo, hi, xtol=1e-14 * max(1.0, spread))
    return float(t), 1 if excess(hi) > 0 else -1


def test_the_three_decision_rules_match_monte_carlo(case: Case) -> None:
    rec = ps.recommend(case.fit)
    p = case.post
    mean, cov = joint(p, case.hist)
    a, b = regression(mean, cov)
    a_bar, b_bar = a.mean(), b.mean(axis=0)  # the composite: posterior-mean coefficients
    rng = np.random.default_rng(2)
    m = 2000
    tau, theta = simulate(p, case.hist, m, rng)
    readings = np.concatenate([theta, (a_bar + theta @ b_bar)[..., None]], axis=2)  # (N, m, K+1)
    names = [*p.proxies, "composite"]
    got = rec.set_index("proxy").loc[names]
    # Per-draw moments of each reading X with tau.
    m_x = np.column_stack([mean[:, 1:], a_bar + mean[:, 1:] @ b_bar])
    v_x = np.column_stack(
        [
            np.einsum("nkk->nk", cov[:, 1:, 1:]),
            np.einsum("k,nkl,l->n", b_bar, cov[:, 1:, 1:], b_bar),
        ]
    )
    c_x = np.column_stack([cov[:, 0, 1:], cov[:, 0, 1:] @ b_bar])
    m_t, v_t = mean[:, 0], cov[:, 0, 0]

    # Naive rule: ship when the reading is positive.
    naive = (np.sign(tau)[..., None] == np.sign(readings)).mean(axis=1)
    tol = mc_tolerance(naive, m)
    assert np.all(np.abs(got["decision_accuracy"].to_numpy() - naive.mean(0)) < tol)
    exact = 1.0 - opposite(m_t[:, None], m_x, v_t[:, None], v_x, c_x)
    np.testing.assert_allclose(got["decision_accuracy"], exact.mean(0), atol=1e-6)
    lo, hi = quantiles(exact)
    np.testing.assert_allclose(got["decision_lo"], lo, atol=1e-6)
    np.testing.assert_allclose(got["decision_hi"], hi, atol=1e-6)

    # No proxy: always the sign the posterior predictive finds more likely.
    ship = np.mean(ndtr(m_t / np.sqrt(v_t))) >= 0.5
    none = ((tau > 0) == ship).mean(axis=1)
    assert abs(got["no_proxy_accuracy"].iloc[0] - none.mean()) < mc_tolerance(none, m)
    none_exact = ndtr(m_t / np.sqrt(v_t)) if ship else ndtr(-m_t / np.sqrt(v_t))
    np.testing.assert_allclose(got["no_proxy_accuracy"], none_exact.mean(), atol=1e-9)

    # Calibrated: the threshold where the predictive crosses 0.5 (Brent, all draws),
    # then each draw's accuracy of that fixed rule.
    calibrated = np.empty_like(naive)
    calibrated_exact = np.empty_like(exact)
    for j, name in enumerate(names):
        t, d = predictive_threshold(m_t, v_t, m_x[:, j], v_x[:, j], c_x[:, j])
        assert got.loc[name, "rule_direction"] == d
        if d == 0:
            calibrated[:, j], calibrated_exact[:, j] = none, none_exact
            continue
        # The recommend threshold uses 600 of the draws: close, not equal.
        assert got.loc[name, "rule_threshold"] == pytest.approx(
            t, abs=0.02 * np.sqrt(v_x[:, j].mean())
        )
        t = got.loc[name, "rule_threshold"]
        calibrated[:, j] = ((d * (readings[:, :, j] - t) > 0) == (tau > 0)).mean(axis=1)
        calibrated_exact[:, j] = 1.0 - opposite(
            m_t, d * (m_x[:, j] - t), v_t, v_x[:, j], d * c_x[:, j]
        )
    tol = mc_tolerance(calibrated, m)
    assert np.all(np.abs(got["calibrated_accuracy"].to_numpy() - calibrated.mean(0)) < tol)
    np.testing.assert_allclose(got["calibrated_accuracy"], calibrated_exact.mean(0), atol=1e-6)
    # The calibrated rule maximises the posterior expected accuracy: never below no proxy.
    assert np.all(got["calibrated_accuracy"] >= got["no_proxy_accuracy"] - 1e-6)

    # Gain and P(best): ties split evenly.
    gain = calibrated_exact - none_exact[:, None]
    np.testing.assert_allclose(got["gain"], gain.mean(0), atol=1e-6)
    top = gain.max(axis=1, keepdims=True)
    tied = np.abs(gain - top) <= 1e-9
    np.testing.assert_allclose(
        got["p_best"], (tied / tied.sum(1, keepdims=True)).mean(0), atol=0.01
    )
    assert got["p_best"].sum() == pytest.approx(1.0)
    # Ranked: candidates that may be decided on first, then by gain.
    ranked = rec[rec["credible"]]
    assert list(ranked["gain"]) == sorted(ranked["gain"], reverse=True)
    assert rec.iloc[0]["recommendation"].startswith("UNTRUSTWORTHY") != case.fit.trustworthy


def test_a_proxy_with_no_relation_is_never_recommended() -> None:
    """A reading independent of tau: its sign agrees as often as tau is positive (the
    naive rule looks good), but it gains nothing and is not credible."""
    from proxyscope.analyses.decisions import calibrated_rule, rule_accuracy, share_best

    n = 4000
    rng = np.random.default_rng(0)
    m_t = 1.0 + 0.05 * rng.standard_normal(n)  # tau mostly positive: P(tau > 0) ~ 0.84
    v_t = np.ones(n)
    m_x, v_x = 0.5 + 0.01 * rng.standard_normal(n), np.ones(n)
    c = 0.05 * rng.standard_normal(n)  # no credible covariance
    rule = calibrated_rule(m_t, v_t, m_x, v_x, c)
    assert rule.direction == 0 and rule.ship_without  # never crosses: ignores the reading
    acc = rule_accuracy(rule, m_t, v_t, m_x, v_x, c)
    np.testing.assert_allclose(acc, ndtr(m_t), atol=1e-12)
    naive = 1.0 - opposite(m_t, m_x, v_t, v_x, c)
    assert naive.mean() > 0.5  # the naive rule's 0.6 would look like information
    # Ties split evenly.
    np.testing.assert_allclose(share_best(np.zeros((10, 3))), [1 / 3] * 3)
    np.testing.assert_allclose(
        share_best(np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 1.0]])), [0.25, 0.75, 0]
    )


def test_decision_accuracy_for_a_target_mix(small: Case) -> None:
    """A target that is one segment: decision accuracy = 1 - that segment's flip probability."""
    rec = ps.recommend(small.fit, target={"IN / Mobile": 10})
    p = small.post
    per_seg, _ = segment_flips(small)
    acc = 1.0 - per_seg[:, p.labels.index("IN / Mobile")]
    got = rec.set_index("proxy").loc[p.proxies, "decision_accuracy"]
    np.testing.assert_allclose(got, acc.mean(0), atol=1e-6)
    frag = quiet(ps.fragility, small.fit)
    row = rec.set_index("proxy").loc["early_watch_min"]
    flagged = frag[(frag["proxy"] == "early_watch_min") & frag["flagged"]]["segment"]
    assert row["fragile_segments"] == [s for s in flagged if s == "IN / Mobile"]


# -- transport -----------------------------------------------------------------------


def test_transport_to_one_segment_is_that_segments_predictive(small: Case) -> None:
    p = small.post
    label = "IN / Mobile"
    shares = one_hot(p, label)
    mean, cov = joint(p, shares)
    target = {("IN", "Mobile"): 7}
    pooled = pooled_transport(small.fit, target)
    assert_predictive(pooled, mean[:, 0], cov[:, 0, 0])
    tau, _ = simulate(p, shares, 200, np.random.default_rng(3))
    assert_cdf_matches(pooled, tau)
    # Its segment's var: beta' (Omega_E + Omega_C) beta + omega0^2 + sigma^2 (DESIGN §4).
    s = p.labels.index(label)
    omega = p.omega_e + p.omega_c
    var = (
        np.einsum("nk,nkl,nl->n", p.beta[:, s], omega, p.beta[:, s])
        + p.sd_y**2
        + p.sigma[:, s] ** 2
    )
    np.testing.assert_allclose(cov[:, 0, 0], var, rtol=1e-10)
    res = ps.transport(small.fit, target, random_seed=0)
    hist_mean, _ = joint(p, small.hist)
    np.testing.assert_allclose(res.gap_draws, mean[:, 0] - hist_mean[:, 0], rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(res.flip_draws, pair_flips(mean, cov), atol=1e-6)
    r2 = np.einsum("nk,nkl,nl->n", p.beta[:, s], omega, p.beta[:, s]) / var
    np.testing.assert_allclose(res.r2_draws, r2, rtol=1e-8)
    assert_predictive(res.historical_draws[None], hist_mean[:, 0], joint(p, small.hist)[1][:, 0, 0])
    summary = res.summary()
    assert list(summary["quantity"][:4]) == [
        "long_term_effect",
        "p_positive",
        "gap_to_historical",
        "r2",
    ]
    lo, hi = quantiles(res.draws)
    assert summary.iloc[0][["mean", "lo", "hi"]].tolist() == pytest.approx(
        [res.draws.mean(), lo, hi]
    )
    assert summary.iloc[1]["mean"] == pytest.approx(np.mean(res.draws > 0))
    assert not res.target["extrapolated"].any()


def test_transport_to_a_mix_matches_monte_carlo(small: Case) -> None:
    p = small.post
    shares = 0.3 * one_hot(p, "IN / Mobile") + 0.7 * one_hot(p, "NA / TV")
    mean, cov = joint(p, shares)
    pooled = pooled_transport(small.fit, {("IN", "Mobile"): 30, ("NA", "TV"): 70})
    assert_predictive(pooled, mean[:, 0], cov[:, 0, 0])
    tau, theta = simulate(p, shares, 200, np.random.default_rng(4))
    assert_cdf_matches(pooled, tau)
    res = ps.transport(small.fit, {("IN", "Mobile"): 30, ("NA", "TV"): 70}, random_seed=1)
    rate = (np.sign(tau)[..., None] != np.sign(theta)).mean(axis=1)
    assert np.all(np.abs(res.flip_draws.mean(0) - rate.mean(0)) < mc_tolerance(rate, 200))
    np.testing.assert_allclose(res.flip_draws, pair_flips(mean, cov), atol=1e-6)
    prec = np.linalg.inv(cov)
    np.testing.assert_allclose(res.r2_draws, 1.0 - 1.0 / (prec[:, 0, 0] * cov[:, 0, 0]), rtol=1e-7)


def test_transport_target_forms_agree(small: Case) -> None:
    n_in, n_na = 30, 70
    users = pd.DataFrame(
        {
            "region": ["IN"] * n_in + ["NA"] * n_na,
            "device": ["Mobile"] * n_in + ["TV"] * n_na,
            "other": np.arange(n_in + n_na),
        }
    ).sample(frac=1.0, random_state=0)
    forms: list[Any] = [
        {("IN", "Mobile"): n_in, ("NA", "TV"): n_na},
        {("NA", "TV"): 0.7, ("IN", "Mobile"): 0.3},
        {"IN / Mobile": 3, "NA / TV": 7},
        pd.Series({"IN / Mobile": 0.3, "NA / TV": 0.7}),
        users,
        pd.DataFrame({"region": ["NA", "IN"], "device": ["TV", "Mobile"], "count": [7, 3]}),
        pd.DataFrame({"region": ["IN", "NA"], "device": ["Mobile", "TV"], "share": [0.3, 0.7]}),
    ]
    results = [ps.transport(small.fit, t, random_seed=5) for t in forms]
    first = results[0]
    assert first.target["share"].tolist() == pytest.approx([0.3, 0.7])
    assert first.target["segment"].tolist() == ["IN / Mobile", "NA / TV"]
    for res in results[1:]:
        np.testing.assert_allclose(res.draws, first.draws, rtol=1e-12)
        np.testing.assert_allclose(res.flip_draws, first.flip_draws, rtol=1e-12)
        assert res.target["share"].tolist() == pytest.approx([0.3, 0.7])


def test_transport_conditional_on_proxy_readings(small: Case) -> None:
    p = small.post
    shares = 0.3 * one_hot(p, "IN / Mobile") + 0.7 * one_hot(p, "NA / TV")
    mean, cov = joint(p, shares)
    target = {("IN", "Mobile"): 30, ("NA", "TV"): 70}
    idx = [p.proxies.index("early_watch_min"), p.proxies.index("rebuffer_rate")]
    sd_theta = np.sqrt(cov[:, 1:, 1:].mean(0).diagonal())
    readings = mean[:, 1:].mean(0)[idx] + 1.5 * sd_theta[idx] * np.array([1.0, -1.0])
    se = 0.5 * sd_theta[idx]
    effects = dict(zip(np.array(p.proxies)[idx], readings, strict=True))
    proxy_se = dict(zip(np.array(p.proxies)[idx], se, strict=True))
    # Gaussian conditioning through the precision matrix of (tau, readings).
    rows = [0, *(1 + i for i in idx)]
    j = cov[:, rows][:, :, rows].copy()
    j[:, 1:, 1:] += np.diag(se**2)
    prec = np.linalg.inv(j)
    cond_var = 1.0 / prec[:, 0, 0]
    resid = readings - mean[:, 1:][:, idx]
    cond_mean = mean[:, 0] - np.einsum("nk,nk->n", prec[:, 0, 1:], resid) * cond_var
    pooled = pooled_transport(small.fit, target, proxy_effects=effects, proxy_se=proxy_se)
    assert_predictive(pooled, cond_mean, cond_var)
    # The readings matter: the conditional is far from the unconditional prediction.
    shift = np.abs(cond_mean.mean() - mean[:, 0].mean()) / np.sqrt(cond_var.mean())
    assert shift > 1.0
    res = ps.transport(small.fit, target, proxy_effects=effects, proxy_se=proxy_se, random_seed=1)
    assert res.conditional and res.proxy_effects == pytest.approx(effects)
    same = ps.transport(
        small.fit, target, proxy_effects=effects, proxy_cov=np.diag(se**2), random_seed=1
    )
    np.testing.assert_allclose(same.draws, res.draws, rtol=1e-12)
    # Without reading noise: conditioning on the exact proxy effects.
    exact = pooled_transport(small.fit, target, proxy_effects=effects)
    j0 = cov[:, rows][:, :, rows]
    prec0 = np.linalg.inv(j0)
    mean0 = mean[:, 0] - np.einsum("nk,nk->n", prec0[:, 0, 1:], resid) / prec0[:, 0, 0]
    assert_predictive(exact, mean0, 1.0 / prec0[:, 0, 0])


def test_unseen_combination_is_extrapolated_from_main_effects(holes_fit: Any) -> None:
    fit = holes_fit
    assert "IN / Mobile" not in fit.structure.labels
    target = {("NA", "TV"): 3, HOLE: 1}
    res = ps.transport(fit, target, random_seed=0)
    table = res.target.set_index("segment")
    assert table.loc["IN / Mobile", "extrapolated"]
    assert not table.loc["NA / TV", "extrapolated"]
    assert table.loc["IN / Mobile", "share"] == pytest.approx(0.25)
    summary = res.summary()
    assert summary.attrs["n_extrapolated"] == 1
    assert summary.attrs["extrapolated_share"] == pytest.approx(0.25)
    assert "1 extrapolated" in repr(res)

    # Monte Carlo of the design: p_s = global + main effects + a fresh interaction
    # v ~ N(0, interaction sd^2), then a new experiment from the structural model.
    post = fit.idata.posterior.stack(sample=("chain", "draw"))
    p = posterior_arrays(fit)

    def g(name: str, *rest: str, **sel: str) -> np.ndarray:
        return np.asarray(post[name].sel(sel).transpose("sample", *rest).values, dtype=float)

    lev = {"region": HOLE[0], "device": HOLE[1]}
    nu0 = g("nu_global") + sum(g(f"nu_main_{c}", **{c: v}) for c, v in lev.items())
    mu0 = g("mu_global", "proxy") + sum(
        g(f"mu_main_{c}", "proxy", **{c: v}) for c, v in lev.items()
    )
    beta0 = g("beta_global", "proxy") + sum(
        g(f"beta_main_{c}", "proxy", **{c: v}) for c, v in lev.items()
    )
    logs0 = g("log_sigma_global") + sum(g(f"log_sigma_main_{c}", **{c: v}) for c, v in lev.items())
    rng = np.random.default_rng(6)
    m, n, k = 200, p.n, p.k
    sd_nu, sd_mu = g("nu_interaction_sd"), g("mu_interaction_sd", "proxy")
    sd_beta, sd_logs = g("beta_interaction_sd", "proxy"), g("log_sigma_interaction_sd")
    nu_u = nu0[:, None] + sd_nu[:, None] * rng.standard_normal((n, m))
    mu_u = mu0[:, None] + sd_mu[:, None] * rng.standard_normal((n, m, k))
    beta_u = beta0[:, None] + sd_beta[:, None] * rng.standard_normal((n, m, k))
    sig_u = np.exp(logs0[:, None] + sd_logs[:, None] * rng.standard_normal((n, m)))
    le, lc = chol(p.omega_e), chol(p.omega_c)
    eta = np.einsum("nkl,nml->nmk", le, rng.standard_normal((n, m, k)))
    eta0 = p.sd_y[:, None] * rng.standard_normal((n, m))
    d_u = eta + np.einsum("nkl,nml->nmk", lc, rng.standard_normal((n, m, k)))
    d_s = eta + np.einsum("nkl,nml->nmk", lc, rng.standard_normal((n, m, k)))
    s = p.labels.index("NA / TV")
    tau_u = (
        nu_u + eta0 + np.einsum("nmk,nmk->nm", d_u, beta_u) + sig_u * rng.standard_normal((n, m))
    )
    tau_s = (
        p.nu[:, None, s]
        + eta0
        + np.einsum("nmk,nk->nm", d_s, p.beta[:, s])
        + p.sigma[:, None, s] * rng.standard_normal((n, m))
    )
    tau = 0.25 * tau_u + 0.75 * tau_s
    theta = 0.25 * (mu_u + d_u) + 0.75 * (p.mu[:, None, s] + d_s)
    runs = [ps.transport(fit, target, random_seed=seed) for seed in SEEDS]
    pooled = np.stack([r.draws for r in runs])
    assert_cdf_matches(pooled, tau)
    assert abs(pooled.mean() - tau.mean()) < 5 * np.sqrt(pooled.var() / pooled.size)
    # Flip probabilities under the target, averaged over fresh interactions.
    flips = np.stack([r.flip_draws for r in runs])  # (R, N, K)
    rate = (np.sign(tau)[..., None] != np.sign(theta)).mean(axis=1)
    # Noise of the pooled mean: only the interaction draws (the posterior draws are shared).
    noise = np.sqrt(flips.var(axis=0, ddof=1).mean(axis=0) / (flips.shape[0] * flips.shape[1]))
    tol = mc_tolerance(rate, m) + 5 * noise
    assert np.all(np.abs(flips.mean(axis=(0, 1)) - rate.mean(axis=0)) < tol)
    # A main-effects-only prediction is not the NA / TV one: the check has power.
    assert abs(nu0.mean() - p.nu[:, s].mean()) > 5 * np.sqrt(pooled.var() / pooled.size)


def test_extrapolated_prediction_is_reproducible(holes_fit: Any) -> None:
    target = {HOLE: 1}
    readings = dict.fromkeys(holes_fit.proxies, 0.0)
    a = ps.surrogate_index(holes_fit, readings, target=target, random_seed=3)
    b = ps.surrogate_index(holes_fit, readings, target=target, random_seed=3)
    pd.testing.assert_frame_equal(a, b)
    np.testing.assert_array_equal(
        ps.transport(holes_fit, target, random_seed=3).draws,
        ps.transport(holes_fit, target, random_seed=3).draws,
    )


def test_extrapolated_analyses_default_to_the_fits_seed(holes_fit: Any) -> None:
    """Without random_seed, asking twice gives the same answer (the fit's seed is used)."""
    target = {HOLE: 1}
    first = ps.transport(holes_fit, target).draws
    np.testing.assert_array_equal(first, ps.transport(holes_fit, target).draws)
    own = holes_fit.sampler["random_seed"]
    np.testing.assert_array_equal(first, ps.transport(holes_fit, target, random_seed=own).draws)
    # The draws do depend on the seed: the check above has power.
    assert not np.array_equal(first, ps.transport(holes_fit, target, random_seed=own + 1).draws)
    pd.testing.assert_frame_equal(
        ps.recommend(holes_fit, target=target), ps.recommend(holes_fit, target=target)
    )
    pd.testing.assert_frame_equal(
        ps.weights(holes_fit, target=target), ps.weights(holes_fit, target=target)
    )


# -- surrogacy -----------------------------------------------------------------------


def test_r2_matches_posterior(case: Case) -> None:
    sur = ps.surrogacy(case.fit)
    p = case.post
    assert sur.iloc[0]["scope"] == "overall"
    mean, cov = joint(p, case.hist)
    prec = np.linalg.inv(cov)
    r2_all = 1.0 - 1.0 / (prec[:, 0, 0] * cov[:, 0, 0])  # 1 - Var(tau | theta) / Var(tau)
    by_scope = sur.set_index("scope")

    def check(scope: str, draws: np.ndarray) -> None:
        row = by_scope.loc[scope]
        lo, hi = quantiles(draws)
        assert [row["r2"], row["r2_lo"], row["r2_hi"]] == pytest.approx(
            [np.median(draws), lo, hi], rel=1e-7, abs=1e-12
        ), scope

    check("overall", r2_all)
    for j, proxy in enumerate(p.proxies):
        corr = cov[:, 0, 1 + j] / np.sqrt(cov[:, 0, 0] * cov[:, 1 + j, 1 + j])
        check(proxy, corr**2)
    omega = p.omega_e + p.omega_c
    for s, label in enumerate(p.labels):
        bob = np.einsum("nk,nkl,nl->n", p.beta[:, s], omega, p.beta[:, s])
        var_tau = bob + p.sd_y**2 + p.sigma[:, s] ** 2  # eta0 is what no proxy carries
        check(label, bob / var_tau)  # DESIGN §4
        for j, proxy in enumerate(p.proxies):
            wb = np.einsum("nkl,nl->nk", omega, p.beta[:, s])[:, j]
            check(f"{label}: {proxy}", wb**2 / (omega[:, j, j] * var_tau))
    # The composite: corr(tau, a + b' theta)^2 with the posterior-mean coefficients.
    _, b = regression(mean, cov)
    b_bar = b.mean(0)
    c_i = cov[:, 0, 1:] @ b_bar
    v_i = np.einsum("k,nkl,l->n", b_bar, cov[:, 1:, 1:], b_bar)
    check("composite", c_i**2 / (v_i * cov[:, 0, 0]))


def _p_positive_given(
    mean: np.ndarray, cov: np.ndarray, weights: np.ndarray, offset: float, x: np.ndarray
) -> np.ndarray:
    """mean over draws of P(tau > 0 | offset + weights' theta = x), exact per draw."""
    m_x = offset + mean[:, 1:] @ weights
    v_x = np.einsum("k,nkl,l->n", weights, cov[:, 1:, 1:], weights)
    c_x = cov[:, 0, 1:] @ weights
    j = np.stack([np.stack([cov[:, 0, 0], c_x], -1), np.stack([c_x, v_x], -1)], -2)
    prec = np.linalg.inv(j)
    cond_sd = 1.0 / np.sqrt(prec[:, 0, 0])
    cond_mean = mean[:, 0][:, None] - (prec[:, 0, 1] / prec[:, 0, 0])[:, None] * (
        x[None, :] - m_x[:, None]
    )
    return np.asarray(ndtr(cond_mean / cond_sd[:, None]).mean(axis=0))


def _mc_p_positive_given(
    sim: tuple[np.ndarray, np.ndarray],
    cov: np.ndarray,
    weights: np.ndarray,
    offset: float,
    x: float,
) -> tuple[float, float]:
    """Monte Carlo of P(tau > 0 | offset + weights' theta = x) and its tolerance.

    Structural draws (tau, theta) conditioned by Matheron's rule:
    (tau | X = x) is distributed as tau + Cov(tau, X) / Var(X) (x - X).
    """
    tau, theta = sim
    xs = offset + theta @ weights
    v_x = np.einsum("k,nkl,l->n", weights, cov[:, 1:, 1:], weights)
    slope = (cov[:, 0, 1:] @ weights) / v_x
    hit = (tau + slope[:, None] * (x - xs) > 0).mean(axis=1)
    return float(hit.mean()), float(mc_tolerance(hit[:, None], tau.shape[1])[0])


@pytest.mark.parametrize("probability", [0.95, 0.8])
def test_ste_is_where_p_positive_reaches_the_level(small: Case, probability: float) -> None:
    sur = ps.surrogacy(small.fit, probability=probability)
    p = small.post
    rng = np.random.default_rng(7)
    mean, cov = joint(p, small.hist)
    a, b = regression(mean, cov)
    checks: list[tuple[str, str, np.ndarray, float]] = [
        (proxy, "mix", np.eye(p.k)[j], 0.0) for j, proxy in enumerate(p.proxies)
    ]
    checks.append(("composite", "mix", b.mean(0), float(a.mean())))
    for label in ("EU / Desktop", "NA / TV"):
        checks.append((f"{label}: early_watch_min", label, np.eye(p.k)[0], 0.0))
    sims: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    finite = 0
    by_scope = sur.set_index("scope")
    for scope, where, weights, offset in checks:
        ste = by_scope.loc[scope, "ste"]
        shares = small.hist if where == "mix" else one_hot(p, where)
        mean_s, cov_s = joint(p, shares)
        # The search range: 12 sd of the proxy (index) either side of its mean.
        spread = np.sqrt(np.einsum("k,nkl,l->n", weights, cov_s[:, 1:, 1:], weights).mean())
        centre = offset + (mean_s[:, 1:] @ weights).mean()
        grid = centre + spread * np.linspace(-12.0, 12.0, 2001)
        on_grid = _p_positive_given(mean_s, cov_s, weights, offset, grid)
        if not np.isfinite(ste):
            # Not reached on the range, or reached already at its left end.
            assert on_grid.max() < probability or on_grid[0] >= probability, scope
            continue
        finite += 1
        exact = _p_positive_given(mean_s, cov_s, weights, offset, np.array([ste]))[0]
        assert exact == pytest.approx(probability, abs=1e-6), scope
        if where not in sims:
            sims[where] = simulate(p, shares, 1000, rng)
        hit, tol = _mc_p_positive_given(sims[where], cov_s, weights, offset, ste)
        assert abs(hit - probability) < tol, (scope, hit, tol)
        # The smallest such effect: everything to its left on the range is below.
        assert np.all(on_grid[grid < ste - 1e-6 * spread] < probability), scope
    assert finite >= 3
    assert sur.attrs["probability"] == probability


# -- weights and the composite -----------------------------------------------------------


def _shares(beta: np.ndarray, omega: np.ndarray) -> np.ndarray:
    contrib = np.abs(beta) * np.sqrt(np.diagonal(omega, axis1=-2, axis2=-1))
    return contrib / contrib.sum(axis=-1, keepdims=True)


def test_weights_are_slope_times_spread_shares(case: Case) -> None:
    w = ps.weights(case.fit)
    p = case.post
    omega = p.omega_e + p.omega_c
    bbar = np.einsum("s,nsk->nk", case.hist, p.beta)
    scopes = {"global": (_shares(bbar, omega), bbar)}
    for s, label in enumerate(p.labels):
        scopes[label] = (_shares(p.beta[:, s], omega), p.beta[:, s])
    assert list(w["scope"].unique()) == list(scopes)
    for scope, (shares, slopes) in scopes.items():
        np.testing.assert_allclose(shares.sum(axis=1), 1.0)
        rows = w[w["scope"] == scope].set_index("proxy").loc[p.proxies]
        lo, hi = quantiles(shares)
        np.testing.assert_allclose(rows["weight"], shares.mean(0), rtol=1e-9)
        np.testing.assert_allclose(rows["weight_lo"], lo, rtol=1e-9)
        np.testing.assert_allclose(rows["weight_hi"], hi, rtol=1e-9)
        assert rows["weight"].sum() == pytest.approx(1.0)
        s_lo, s_hi = quantiles(slopes)  # a direction only where the slope's sign is credible
        np.testing.assert_array_equal(
            rows["direction"], np.where(s_lo > 0, 1, np.where(s_hi < 0, -1, 0))
        )
        # The composite's coefficient: each draw's share signed by that draw's slope.
        np.testing.assert_allclose(
            rows["signed_weight"], (shares * np.sign(slopes)).mean(0), rtol=1e-9
        )
    # The per-draw weights the analysis itself uses are shares too.
    per_draw = weight_draws(bbar, omega)
    np.testing.assert_allclose(per_draw.sum(axis=1), 1.0)
    np.testing.assert_allclose(per_draw, scopes["global"][0], rtol=1e-10)


def test_weights_for_one_segment_target_are_that_segments(small: Case) -> None:
    w = ps.weights(small.fit, target={"IN / Mobile": 1})
    glob = w[w["scope"] == "global"].reset_index(drop=True)
    seg = w[w["scope"] == "IN / Mobile"].reset_index(drop=True)
    cols = ["proxy", "weight", "weight_lo", "weight_hi", "direction"]
    pd.testing.assert_frame_equal(glob[cols], seg[cols])


def test_surrogate_index_prediction(case: Case) -> None:
    p = case.post
    mean, cov = joint(p, case.hist)
    a, b = regression(mean, cov)
    a_bar, b_bar = a.mean(), b.mean(0)
    sd = np.sqrt(cov[:, 1:, 1:].mean(0).diagonal())
    theta = mean[:, 1:].mean(0) + sd * np.array([1.0, 0.5, -0.5, 0.0])[: p.k]
    readings = dict(zip(p.proxies, theta, strict=True))
    se = 0.3 * sd
    out = ps.surrogate_index(
        case.fit, readings, proxy_se=dict(zip(p.proxies, se, strict=True)), random_seed=2
    )
    row = out.set_index("quantity")
    assert row.loc["composite", "value"] == pytest.approx(a_bar + theta @ b_bar, rel=1e-9)
    assert out.attrs["intercept"] == pytest.approx(a_bar, rel=1e-9)
    assert list(out.attrs["coefficients"].values()) == pytest.approx(b_bar.tolist(), rel=1e-9)
    # The full prediction: tau given readings with noise, by precision-matrix conditioning.
    j = cov.copy()
    j[:, 1:, 1:] += np.diag(se**2)
    prec = np.linalg.inv(j)
    cond_var = 1.0 / prec[:, 0, 0]
    cond_mean = mean[:, 0] - np.einsum("nk,nk->n", prec[:, 0, 1:], theta - mean[:, 1:]) * cond_var
    tol = 5 * np.sqrt((cond_var.mean() + cond_mean.var()) / p.n)
    assert abs(row.loc["long_term_effect", "value"] - cond_mean.mean()) < tol
    p_pos = ndtr(cond_mean / np.sqrt(cond_var)).mean()
    assert abs(row.loc["p_positive", "value"] - p_pos) < 5 * np.sqrt(p_pos * (1 - p_pos) / p.n)
    assert row.loc["long_term_effect", "lo"] < row.loc["long_term_effect", "value"]
    assert row.loc["long_term_effect", "hi"] > row.loc["long_term_effect", "value"]


# -- no segment columns ---------------------------------------------------------------


def test_every_analysis_works_without_segment_columns(noseg_fit: Any) -> None:
    fit = noseg_fit
    assert fit.segments == () and fit.structure.labels == ("all",)
    k = len(fit.proxies)
    frag = ps.fragility(fit)
    assert len(frag) == k and (frag["segment"] == "all").all()
    # One segment: it is the historical mix, so it is never credibly above it.
    np.testing.assert_allclose(frag["flip_prob"], frag["overall_flip"], rtol=1e-12)
    assert not frag["flagged"].any()
    cells = ps.fragility(fit, by="cell", max_draws=20)
    assert len(cells) == fit.effects.n_cells * k
    sur = ps.surrogacy(fit)
    assert set(sur["segment"]) == {"overall", "all"}
    by_scope = sur.set_index("scope")
    for proxy in fit.proxies:  # the mix is the single segment
        assert by_scope.loc[proxy, "r2"] == pytest.approx(by_scope.loc[f"all: {proxy}", "r2"])
        assert by_scope.loc[proxy, "ste"] == pytest.approx(
            by_scope.loc[f"all: {proxy}", "ste"], nan_ok=True
        )
    w = ps.weights(fit)
    glob = w[w["scope"] == "global"].reset_index(drop=True)
    seg = w[w["scope"] == "all"].reset_index(drop=True)
    pd.testing.assert_frame_equal(glob.drop(columns="scope"), seg.drop(columns="scope"))
    rec = ps.recommend(fit)
    assert set(rec["proxy"]) == {*fit.proxies, "composite"}
    assert all(isinstance(v, list) for v in rec["fragile_segments"])
    # Targets: None, any table (no segment columns to read), the empty key or "all".
    p = posterior_arrays(fit)
    mean, cov = joint(p, np.ones(1))
    for target in (None, pd.DataFrame({"anything": [1, 2, 3]}), {(): 1.0}, {"all": 2.0}):
        res = ps.transport(fit, target, random_seed=0)
        assert res.target["share"].tolist() == [1.0]
        assert not res.target["extrapolated"].any()
        np.testing.assert_allclose(res.gap_draws, 0.0, atol=1e-15)
        np.testing.assert_allclose(res.flip_draws, pair_flips(mean, cov), atol=1e-6)
    pooled = pooled_transport(fit, None)
    assert_predictive(pooled, mean[:, 0], cov[:, 0, 0])
    idx = ps.surrogate_index(fit, dict.fromkeys(fit.proxies, 0.0), random_seed=1)
    assert list(idx["quantity"]) == ["composite", "long_term_effect", "p_positive"]


# -- bad input ------------------------------------------------------------------------


def _raises(exc: type[Exception], param: str, func: Any, *args: Any, **kwargs: Any) -> None:
    with pytest.raises(exc) as info:
        func(*args, **kwargs)
    assert isinstance(info.value, ProxyscopeError)
    assert re.search(rf"\b{re.escape(param)}\b", str(info.value)), str(info.value)


ANALYSES = {
    "fragility": lambda fit, **kw: ps.fragility(fit, **kw),
    "surrogacy": lambda fit, **kw: ps.surrogacy(fit, **kw),
    "weights": lambda fit, **kw: ps.weights(fit, **kw),
    "recommend": lambda fit, **kw: ps.recommend(fit, **kw),
    "transport": lambda fit, **kw: ps.transport(fit, {"IN / Mobile": 1}, **kw),
    "surrogate_index": lambda fit, **kw: ps.surrogate_index(
        fit, dict.fromkeys(fit.proxies, 0.0), **kw
    ),
}


@pytest.mark.parametrize("name", list(ANALYSES))
@pytest.mark.parametrize("ci", [0.0, 1.0, 1.5, -0.2, float("nan")])
def test_bad_ci_is_refused(small_fit: Any, name: str, ci: float) -> None:
    _raises(ParameterError, "ci", ANALYSES[name], small_fit, ci=ci)


@pytest.mark.parametrize("name", list(ANALYSES))
def test_non_numeric_ci_is_refused(small_fit: Any, name: str) -> None:
    _raises(DataTypeError, "ci", ANALYSES[name], small_fit, ci="90%")


TARGETED = {
    "transport": lambda fit, target: ps.transport(fit, target),
    "weights": lambda fit, target: ps.weights(fit, target=target),
    "recommend": lambda fit, target: ps.recommend(fit, target=target),
    "surrogate_index": lambda fit, target: ps.surrogate_index(
        fit, dict.fromkeys(fit.proxies, 0.0), target=target
    ),
}


@pytest.mark.parametrize("name", list(TARGETED))
@pytest.mark.parametrize(
    ("target", "exc", "words"),
    [
        ({("Mars", "TV"): 1}, ParameterError, ["region", "Mars"]),
        ({"IN / Phone": 1}, ParameterError, ["device", "Phone"]),
        ({("IN", "Mobile"): -3, ("NA", "TV"): 5}, ParameterError, ["negative"]),
        ({("IN", "Mobile"): float("nan")}, ParameterError, ["finite"]),
        ({("IN", "Mobile"): 0}, ParameterError, ["empty"]),
        ({("IN", "Mobile"): "many"}, DataTypeError, ["many"]),
        ({"IN": 1}, ParameterError, ["one level per segment column"]),
        (pd.DataFrame({"region": ["IN"], "device": ["TV"], "count": [-1]}), ParameterError, []),
        (pd.DataFrame({"region": ["IN"]}), ColumnError, ["device"]),
        (42, DataTypeError, []),
    ],
)
def test_bad_target_is_refused(
    small_fit: Any, name: str, target: Any, exc: type[Exception], words: list[str]
) -> None:
    with pytest.raises(exc) as info:
        TARGETED[name](small_fit, target)
    text = str(info.value)
    assert "'target'" in text, text
    for word in words:
        assert word in text, text


def test_bad_proxy_names_are_refused(small_fit: Any) -> None:
    target = {"IN / Mobile": 1}
    _raises(
        ParameterError,
        "proxy_effects",
        ps.transport,
        small_fit,
        target,
        proxy_effects={"early_watch": 1.0},
    )
    _raises(
        ParameterError,
        "proxy_effects",
        ps.transport,
        small_fit,
        target,
        proxy_effects={"early_watch_min": float("inf")},
    )
    _raises(
        ParameterError,
        "proxy_se",
        ps.transport,
        small_fit,
        target,
        proxy_effects={"early_watch_min": 1.0},
        proxy_se={"early_ctr": 0.1},
    )
    _raises(
        ParameterError,
        "proxy_cov",
        ps.transport,
        small_fit,
        target,
        proxy_effects={"early_watch_min": 1.0},
        proxy_cov=np.eye(2),
    )
    readings = dict.fromkeys(small_fit.proxies, 0.0)
    readings.pop("early_ctr")
    _raises(ParameterError, "proxy_effects", ps.surrogate_index, small_fit, readings)
    readings["early_cttr"] = 0.0
    with pytest.raises(ParameterError, match="early_ctr"):
        ps.surrogate_index(small_fit, readings)


@pytest.mark.parametrize(
    ("func", "kwargs", "param"),
    [
        (ps.fragility, {"threshold": 1.0}, "threshold"),
        (ps.fragility, {"by": "segmnet"}, "by"),
        (ps.surrogacy, {"probability": 1.2}, "probability"),
        (ps.recommend, {"probability": 0.0}, "probability"),
        (ps.recommend, {"threshold": 2.0}, "threshold"),
    ],
)
def test_bad_levels_are_refused(
    small_fit: Any, func: Any, kwargs: dict[str, Any], param: str
) -> None:
    _raises(ParameterError, param, func, small_fit, **kwargs)


# -- past experiments against the learned relation ----------------------------------------


def test_past_experiments_and_the_predictive_check_match_dense_algebra(small: Case) -> None:
    from proxyscope.analyses.relation import past_experiments

    fit, p = small.fit, small.post
    rel = past_experiments(fit, ci=0.8, flagged=[("IN / Mobile", "early_watch_min")])
    frame = small.effects.to_frame()
    users = (frame["n_treat"] + frame["n_control"]).to_numpy(dtype=float)
    for e in list(small.effects.experiments)[:4]:
        rows = np.flatnonzero(frame["experiment"].to_numpy() == e)
        w = users[rows] / users[rows].sum()
        est = w @ small.effects.effect[rows]
        noise = np.einsum("c,cij->ij", w**2, small.effects.noise_cov[rows])
        shares = np.zeros(p.s)
        for r, wc in zip(rows, w, strict=True):
            shares[p.labels.index(frame["segment_label"].iloc[r])] += wc
        mean, cov = joint(p, shares)
        total = cov + noise  # the estimates: truth plus sampling noise
        # y | x, per draw, from the full covariance's precision (independent of the code's solve)
        prec = np.linalg.inv(total)
        cond_var = 1.0 / prec[:, 0, 0]
        cond_mean = mean[:, 0] - cond_var * np.einsum(
            "nk,nk->n", prec[:, 0, 1:], est[1:] - mean[:, 1:]
        )
        pit = ndtr((est[0] - cond_mean) / np.sqrt(cond_var)).mean()
        row = rel.check.set_index("experiment").loc[e]
        assert row["y"] == pytest.approx(est[0], rel=1e-12)
        assert row["pit"] == pytest.approx(pit, abs=1e-9)
        assert row["inside"] == (0.1 <= pit <= 0.9)
        grid = np.linspace(row["pred_lo"], row["pred_hi"], 2)
        cdf = [ndtr((g - cond_mean) / np.sqrt(cond_var)).mean() for g in grid]
        np.testing.assert_allclose(cdf, [0.1, 0.9], atol=1e-6)  # exact mixture quantiles
        pts = rel.points[(rel.points["experiment"] == e)].set_index("proxy")
        for k, proxy in enumerate(p.proxies):
            assert pts.loc[proxy, "x"] == pytest.approx(est[k + 1], rel=1e-12)
            assert pts.loc[proxy, "x_se"] == pytest.approx(np.sqrt(noise[k + 1, k + 1]))
    # The lines: per draw, the regression of tau on one proxy at the historical mix.
    mean, cov = joint(p, small.hist)
    for k, proxy in enumerate(p.proxies):
        line = rel.lines[(rel.lines["proxy"] == proxy) & (rel.lines["scope"] == "historical mix")]
        slope = cov[:, 0, k + 1] / cov[:, k + 1, k + 1]
        values = (
            mean[:, 0, None]
            - (slope * mean[:, k + 1])[:, None]
            + slope[:, None] * line["x"].to_numpy()
        )
        np.testing.assert_allclose(line["mean"], values.mean(0), rtol=1e-9, atol=1e-12)
        lo, hi = quantiles(values, 0.8)
        np.testing.assert_allclose(line["lo"], lo, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(line["hi"], hi, rtol=1e-9, atol=1e-12)
    flagged = rel.lines[rel.lines["scope"] == "IN / Mobile"]
    assert set(flagged["proxy"]) == {"early_watch_min"}
    assert rel.coverage == pytest.approx(rel.check["inside"].mean())
    assert f"of {len(rel.check)}" in rel.reading()

"""Property-based hostile arguments to the analyses, judged by :func:`_fuzz.judge`.

One small fit (the session's ``small_fit``, region x device) is fuzzed through the
arguments of transport (target mixes as mappings, Series and user tables; proxy
readings, their standard errors and covariance), fragility, recommend, weights,
surrogacy and surrogate_index, and ``ci`` / ``random_seed`` everywhere. Each example
is a recipe (indices into the fit's segments and proxies, which argument to damage
and how) built against the fit by ``tests/_analysis_args.py``, which also says
whether it is valid. Valid answers are checked against the posterior draws with
the reference algebra of ``tests/test_analyses.py`` (the implied joint of a new
experiment, Sheppard's orthant integral), never with the package's code.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
from _analysis_args import (
    Arg,
    build_noise,
    build_readings,
    build_target,
    chosen,
    damage,
    levels,
    noises,
    readings,
    seeds,
    targets,
    verdict,
)
from _fuzz import judge
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import ndtr
from test_analyses import (
    Case,
    joint,
    posterior_arrays,
    quantiles,
    regression,
    segment_flips,
    user_shares,
)

import proxyscope as ps

pytestmark = [
    pytest.mark.filterwarnings("ignore::proxyscope.errors.ConvergenceWarning"),
    pytest.mark.filterwarnings("ignore::proxyscope.analyses.fragility.FragilityWarning"),
]


@dataclasses.dataclass(frozen=True)
class Ref:
    case: Case
    flips: tuple[np.ndarray, np.ndarray]  # per draw: per segment (N, S, K), historical (N, K)
    centre: np.ndarray  # a new experiment's proxy effects: predictive mean and sd (K,)
    sd: np.ndarray


@pytest.fixture(scope="module")
def ref(small_fit: Any, small_effects: Any) -> Ref:
    post = posterior_arrays(small_fit)
    case = Case(small_fit, small_effects, post, user_shares(small_effects, post.labels))
    mean, cov = joint(post, case.hist)
    sd = np.sqrt(np.diagonal(cov[:, 1:, 1:], axis1=1, axis2=2).mean(0))
    return Ref(case, segment_flips(case), mean[:, 1:].mean(0), sd)


def finite_summary(frame: pd.DataFrame, skip: tuple[str, ...] = ("p_positive",)) -> None:
    kept = frame[~frame["quantity"].isin(skip)]
    assert np.isfinite(kept[["mean", "lo", "hi"]].to_numpy(dtype=float)).all(), kept
    assert np.isfinite(frame["mean"].to_numpy(dtype=float)).all(), frame


# -- the properties ---------------------------------------------------------------------------


@pytest.mark.fuzz
@given(
    hit=damage("target", "readings", "noise", "ci", "seed"),
    target=targets,
    read=readings,
    noise=noises,
    ci=levels,
    seed=seeds,
)
def test_transport(
    ref: Ref, hit: str, target: Any, read: Any, noise: Any, ci: Any, seed: Any
) -> None:
    post = ref.case.post
    t = build_target(target, hit in ("target", "all"), ref)
    e = build_readings(read, hit in ("readings", "all"), ref)
    se, cov = build_noise(noise, hit in ("noise", "all"), e.extra if e.ok else {}, ref)
    c, s = chosen(ci, "ci", hit), chosen(seed, "random_seed", hit.replace("seed", "random_seed"))
    valid, names = verdict([t, e, se, cov, c, s])

    def check(res: Any) -> None:
        shares = t.extra
        assert np.isfinite(res.draws).all()
        finite_summary(res.summary())
        hist = ref.case.hist
        np.testing.assert_allclose(res.gap_draws, post.nu @ shares - post.nu @ hist, atol=1e-12)
        kept = res.target.set_index("segment")["share"]
        np.testing.assert_allclose(kept, shares[[post.labels.index(x) for x in kept.index]])
        mean, jc = joint(post, shares)
        rows = [0, *(1 + post.proxies.index(p) for p in e.extra)]
        j = jc[:, rows][:, :, rows]
        j[:, 1:, 1:] += se.extra
        prec = np.linalg.inv(j)
        var = 1.0 / prec[:, 0, 0]
        resid = np.array(list(e.extra.values())) - mean[:, rows[1:]]
        centre = mean[:, 0] - np.einsum("nk,nk->n", prec[:, 0, 1:], resid) * var
        z = (res.draws - centre) / np.sqrt(var)
        assert abs(z.mean()) < 6 / np.sqrt(z.size) and abs(z.std() - 1) < 6 / np.sqrt(z.size)
        assert res.conditional == bool(e.extra) and res.ci == float(c.value)

    def call() -> Any:
        fit = ref.case.fit
        return ps.transport(fit, t.value, e.value, se.value, cov.value, c.value, s.value)

    judge("transport", call, valid=valid, names=names, check=check, detail=(hit, target, read))


@pytest.mark.fuzz
@given(
    hit=damage("ci", "threshold", "by", "max_draws", "warn"),
    ci=levels,
    threshold=levels,
    by=st.tuples(st.sampled_from(["segment", "cell"]), st.sampled_from(["cells", None, ("cell",)])),
    max_draws=st.tuples(
        st.integers(1, 4), st.one_of(st.integers(-3, 0), st.sampled_from([2.0, "2", True, None]))
    ),
    warn=st.tuples(st.sampled_from([True, False, np.bool_(False)]), st.sampled_from([0, "no"])),
)
def test_fragility(
    ref: Ref, hit: str, ci: Any, threshold: Any, by: Any, max_draws: Any, warn: Any
) -> None:
    c, th = chosen(ci, "ci", hit), chosen(threshold, "threshold", hit)
    b, m = chosen(by, "by", hit, "'by'"), chosen(max_draws, "max_draws", hit)
    w = chosen(warn, "warn", hit, "'warn'")
    valid, names = verdict([c, th, b, m, w])
    per_seg, overall = ref.flips
    post = ref.case.post

    def check(out: pd.DataFrame) -> None:
        flips = out[["flip_prob", "flip_lo", "flip_hi"]].to_numpy(dtype=float)
        assert np.isfinite(flips).all() and (flips >= 0).all() and (flips <= 1).all()
        assert (out["flip_lo"] <= out["flip_hi"]).all()
        if b.value == "cell":
            assert out.attrs["n_draws"] == m.value
            return
        level, cut = float(c.value), float(th.value)
        lo, hi = quantiles(per_seg, level)
        diff_lo, _ = quantiles(per_seg - overall[:, None, :], level)
        for i, label in enumerate(post.labels):
            rows = out[out["segment"] == label].set_index("proxy").loc[post.proxies]
            mean = per_seg[:, i].mean(0)
            np.testing.assert_allclose(rows["flip_prob"], mean, atol=1e-6)
            np.testing.assert_allclose(rows["flip_lo"], lo[i], atol=1e-6)
            np.testing.assert_allclose(rows["flip_hi"], hi[i], atol=1e-6)
            sure = (np.abs(mean - cut) > 1e-6) & (np.abs(diff_lo[i]) > 1e-6)
            want = (mean >= cut) & (diff_lo[i] > 0)
            np.testing.assert_array_equal(rows["flagged"].to_numpy()[sure], want[sure])

    def call() -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ps.fragility(ref.case.fit, c.value, th.value, b.value, w.value, m.value)

    judge("fragility", call, valid=valid, names=names, check=check, detail=hit)


@pytest.mark.fuzz
@given(hit=damage("target", "probability", "ci"), target=targets, probability=levels, ci=levels)
def test_recommend(ref: Ref, hit: str, target: Any, probability: Any, ci: Any) -> None:
    t = build_target(target, hit in ("target", "all"), ref)
    p, c = chosen(probability, "probability", hit), chosen(ci, "ci", hit)
    valid, names = verdict([t, p, c])

    def check(out: pd.DataFrame) -> None:
        assert len(out) == len(ref.case.post.proxies) + 1
        assert out["p_best"].sum() == pytest.approx(1.0, abs=1e-9)
        for col in ("calibrated_accuracy", "decision_accuracy", "no_proxy_accuracy"):
            assert out[col].between(0, 1).all(), out[col]
        np.testing.assert_allclose(
            out["gain"], out["calibrated_accuracy"] - out["no_proxy_accuracy"], atol=1e-12
        )
        mean, cov = joint(ref.case.post, t.extra)
        positive = ndtr(mean[:, 0] / np.sqrt(cov[:, 0, 0]))
        none = positive if positive.mean() >= 0.5 else 1.0 - positive
        np.testing.assert_allclose(out["no_proxy_accuracy"], none.mean(), rtol=1e-9)
        assert out.attrs["probability"] == float(p.value)

    def call() -> Any:
        return ps.recommend(ref.case.fit, t.value, c.value, p.value)

    judge("recommend", call, valid=valid, names=names, check=check, detail=(hit, target))


@pytest.mark.fuzz
@given(
    hit=damage("target", "ci", "by_segment"),
    target=targets,
    ci=levels,
    by_segment=st.tuples(st.booleans(), st.sampled_from([1, 0, "yes", None, np.int64(1)])),
)
def test_weights(ref: Ref, hit: str, target: Any, ci: Any, by_segment: Any) -> None:
    t = build_target(target, hit in ("target", "all"), ref)
    c, flag = chosen(ci, "ci", hit), chosen(by_segment, "by_segment", hit)
    valid, names = verdict([t, c, flag])
    post = ref.case.post
    sd = np.sqrt(np.diagonal(post.omega_e + post.omega_c, axis1=1, axis2=2))

    def check(out: pd.DataFrame) -> None:
        k = len(post.proxies)
        assert len(out) == k * (1 + len(post.labels) * bool(flag.value))
        glob = out[out["scope"] == "global"].set_index("proxy").loc[post.proxies]
        contrib = np.abs(np.einsum("s,nsk->nk", t.extra, post.beta)) * sd
        shares = contrib / contrib.sum(axis=1, keepdims=True)
        lo, hi = quantiles(shares, float(c.value))
        np.testing.assert_allclose(glob["weight"], shares.mean(0), rtol=1e-9)
        np.testing.assert_allclose(glob["weight_lo"], lo, rtol=1e-9)
        np.testing.assert_allclose(glob["weight_hi"], hi, rtol=1e-9)

    def call() -> Any:
        return ps.weights(ref.case.fit, c.value, t.value, flag.value)

    judge("weights", call, valid=valid, names=names, check=check, detail=(hit, target))


@pytest.mark.fuzz
@given(
    hit=damage("fit", "probability", "ci", valid=1),  # a valid call costs a second
    probability=st.tuples(st.floats(0.3, 0.98), levels.map(lambda pair: pair[1])),
    ci=levels,
    fit=st.sampled_from(["fit.nc", None, 3]),
)
def test_surrogacy(ref: Ref, hit: str, probability: Any, ci: Any, fit: Any) -> None:
    f = chosen((ref.case.fit, fit), "fit", hit, "'fit'")
    p, c = chosen(probability, "probability", hit), chosen(ci, "ci", hit)
    valid, names = verdict([f, p, c])

    def check(out: pd.DataFrame) -> None:
        r2 = out[["r2", "r2_lo", "r2_hi"]].to_numpy(dtype=float)
        assert np.isfinite(r2).all() and (r2 >= -1e-12).all() and (r2 <= 1 + 1e-9).all()
        _, cov = joint(ref.case.post, ref.case.hist)
        cv, v = cov[:, 0, 1:], cov[:, 1:, 1:]
        want = np.einsum("nk,nk->n", cv, np.linalg.solve(v, cv[..., None])[..., 0]) / cov[:, 0, 0]
        assert out.iloc[0]["r2"] == pytest.approx(np.median(want), rel=1e-9)

    def call() -> Any:
        return ps.surrogacy(f.value, c.value, p.value)

    judge("surrogacy", call, valid=valid, names=names, check=check, detail=hit)


@pytest.mark.fuzz
@given(
    hit=damage("target", "readings", "ci", "seed"),
    read=st.lists(st.floats(-4.0, 4.0), min_size=4, max_size=4),
    bad_read=readings.map(lambda pair: pair[1]),
    target=targets,
    ci=levels,
    seed=seeds,
)
def test_surrogate_index(
    ref: Ref, hit: str, read: list[float], bad_read: Any, target: Any, ci: Any, seed: Any
) -> None:
    post = ref.case.post
    t = build_target(target, hit in ("target", "all"), ref)
    theta = ref.centre + np.array(read) * ref.sd
    values = dict(zip(post.proxies, theta, strict=True))
    e = Arg(values)
    if hit in ("readings", "all"):  # one reading damaged (or a list, or an unknown proxy)
        bad = build_readings((None, bad_read), True, ref)
        mixed = {**values, **bad.value} if isinstance(bad.value, dict) else bad.value
        e = dataclasses.replace(bad, value=mixed)
    c, s = chosen(ci, "ci", hit), chosen(seed, "random_seed", hit.replace("seed", "random_seed"))
    valid, names = verdict([t, e, c, s])

    def check(out: pd.DataFrame) -> None:
        assert np.isfinite(out["value"].to_numpy(dtype=float)).all()
        a, b = regression(*joint(post, t.extra))
        value = out.set_index("quantity").loc["composite", "value"]
        assert value == pytest.approx(a.mean() + theta @ b.mean(0), rel=1e-9, abs=1e-12)

    def call() -> Any:
        fit = ref.case.fit
        return ps.surrogate_index(fit, e.value, target=t.value, ci=c.value, random_seed=s.value)

    judge("surrogate_index", call, valid=valid, names=names, check=check, detail=(hit, target))

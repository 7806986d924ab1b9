"""Sharp regression discontinuity: rdrobust's numbers, the joint covariance, checks, the world.

Reference: rdrobust 2.1 (test-only). At a fixed bandwidth h every metric's jump and
standard error equal the "Conventional" row of ``rdrobust(y, x, c, h=h, kernel=k,
vce="hc1")`` (``vce="cr1", cluster=...`` with clusters) to 1e-6 relative; the default
bandwidth equals ``rdbwselect(..., bwselect="mserd")`` with the same vce (measured
agreement ~1e-12 relative; asserted at 1e-9).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest

from proxyscope.data.rdd import FACTORS, rdd
from proxyscope.data.rdd_bandwidth import mserd_bandwidth
from proxyscope.data.rdd_checks import density_test, holm
from proxyscope.errors import ColumnError, DataError, DataTypeError, DataWarning, ParameterError
from proxyscope.simulate.threshold_config import ThresholdConfig
from proxyscope.simulate.threshold_world import cutoff_effects, threshold

rdrobust_mod = pytest.importorskip("rdrobust")
METRICS = ["y", "p1", "p2"]
Z90 = 1.6448536269514722


def make_rows(n: int = 4000, seed: int = 0, n_exp: int = 2, clusters: int = 0) -> pd.DataFrame:
    """Rows of ``n_exp`` rules: curved, correlated metrics with jumps at 0.6."""
    rng = np.random.default_rng(seed)
    x = rng.beta(2.0, 2.0, n)
    e = rng.normal(size=(n, 2))
    d = (x >= 0.6).astype(float)
    frame = pd.DataFrame(
        {
            "exp": rng.integers(0, n_exp, n),
            "seg": rng.choice(["a", "b"], n),
            "x": x,
            "y": 0.2 + 0.9 * x - 1.2 * x**2 + 0.3 * d + 0.4 * e[:, 0],
            "p1": np.sin(3 * x) + 0.5 * d + 0.3 * e[:, 0] + 0.3 * e[:, 1],
            "p2": (rng.random(n) < 0.3 + 0.3 * x + 0.1 * d).astype(float),
        }
    )
    if clusters:
        # Clusters never span the cutoff (rdrobust adds the sides' variances).
        frame["cl"] = rng.integers(0, clusters, n) * 2 + d.astype(int)
    return frame


ROLES = {
    "experiment": "exp",
    "running": "x",
    "cutoff": 0.6,
    "outcome": "y",
    "proxies": ["p1", "p2"],
}


def reference(frame: pd.DataFrame, metric: str, h: float, kernel: str, cluster: str | None):
    vce = "cr1" if cluster else "hc1"
    cl = None if cluster is None else frame[cluster].to_numpy()
    out = rdrobust_mod.rdrobust(
        frame[metric].to_numpy(),
        frame["x"].to_numpy(),
        c=0.6,
        h=h,
        kernel=kernel,
        vce=vce,
        cluster=cl,
    )
    return float(out.coef.loc["Conventional"].iloc[0]), float(out.se.loc["Conventional"].iloc[0])


@pytest.mark.parametrize("cluster", [None, "cl"])
@pytest.mark.parametrize("kernel", ["triangular", "epanechnikov", "uniform"])
def test_jump_and_se_match_rdrobust_at_fixed_bandwidth(kernel: str, cluster: str | None) -> None:
    frame = make_rows(clusters=300 if cluster else 0)
    got = rdd(frame, **ROLES, bandwidth=0.2, kernel=kernel, cluster=cluster)
    assert list(got.design) == ["rdd", "rdd"]
    for c, e in enumerate(got.experiment):
        sub = frame[frame["exp"] == e]
        for j, m in enumerate(METRICS):
            tau, se = reference(sub, m, 0.2, kernel, cluster)
            assert got.effect[c, j] == pytest.approx(tau, rel=1e-6)
            assert math.sqrt(got.noise_cov[c, j, j]) == pytest.approx(se, rel=1e-6)
        inside = (sub["x"] - 0.6).abs() < 0.2
        assert got.data["n_treat"].values[c] == int((inside & (sub["x"] >= 0.6)).sum())
        assert got.data["n_control"].values[c] == int((inside & (sub["x"] < 0.6)).sum())


@pytest.mark.parametrize("cluster", [None, "cl"])
def test_cross_metric_covariance_from_the_sum_of_metrics(cluster: str | None) -> None:
    """Var(a + b) = Var a + Var b + 2 Cov(a, b), with rdrobust's SE of the summed metric."""
    frame = make_rows(seed=3, clusters=200 if cluster else 0)
    got = rdd(frame, **ROLES, bandwidth=0.25, cluster=cluster)
    for c, e in enumerate(got.experiment):
        sub = frame[frame["exp"] == e].copy()
        for i, j in ((0, 1), (0, 2), (1, 2)):
            sub["s"] = sub[METRICS[i]] + sub[METRICS[j]]
            _, se_sum = reference(sub, "s", 0.25, "triangular", cluster)
            var = got.noise_cov[c]
            cross = (se_sum**2 - var[i, i] - var[j, j]) / 2
            assert var[i, j] == pytest.approx(cross, abs=1e-7 * math.sqrt(var[i, i] * var[j, j]))


def test_clusters_spanning_the_cutoff_against_a_plain_loop() -> None:
    """A cluster with rows on both sides sums both sides' influence (rdrobust drops it)."""
    frame = make_rows(n=1500, seed=5)
    frame["user"] = np.random.default_rng(1).integers(0, 150, len(frame))
    h = 0.3
    got = rdd(frame, **ROLES, bandwidth=h, cluster="user")
    for c, e in enumerate(got.experiment):
        sub = frame[frame["exp"] == e]
        scores: dict[int, np.ndarray] = {}
        for above in (False, True):
            side = sub[(sub["x"] >= 0.6) == above]
            u = side["x"].to_numpy() - 0.6
            w = np.maximum(1 - np.abs(u) / h, 0) / h
            keep = w > 0
            xmat = np.column_stack([np.ones(keep.sum()), u[keep]])
            wts = w[keep]
            bread = np.linalg.inv(xmat.T @ (xmat * wts[:, None]))
            ymat = side[METRICS].to_numpy()[keep]
            beta = bread @ (xmat * wts[:, None]).T @ ymat
            resid = ymat - xmat @ beta
            users = side["user"].to_numpy()[keep]
            n, g = int(keep.sum()), len(set(users))
            factor = (n - 1) / (n - 2) * g / (g - 1)
            for r in range(n):
                a = (bread @ xmat[r])[0] * wts[r]
                psi = (1 if above else -1) * math.sqrt(factor) * a * resid[r]
                scores[users[r]] = scores.get(users[r], 0) + psi
        s = np.array(list(scores.values()))
        np.testing.assert_allclose(got.noise_cov[c], s.T @ s, rtol=1e-9)


@pytest.mark.parametrize("cluster", [None, "cl"])
def test_default_bandwidth_is_the_outcomes_mserd(cluster: str | None) -> None:
    frame = make_rows(n=6000, seed=2, clusters=400 if cluster else 0)
    got = rdd(frame, **ROLES, segments="seg", cluster=cluster)
    cells = got.meta["rdd"]["cells"]
    assert [c["bandwidth_source"] for c in cells] == ["mserd"] * 4
    for c, row in enumerate(cells):
        sub = frame[(frame["exp"] == row["experiment"]) & (frame["seg"] == row["segment_label"])]
        cl = None if cluster is None else sub[cluster].to_numpy()
        ref = rdrobust_mod.rdbwselect(
            sub["y"].to_numpy(),
            sub["x"].to_numpy(),
            c=0.6,
            vce="cr1" if cluster else "hc1",
            cluster=cl,
            bwselect="mserd",
        )
        assert row["bandwidth"] == pytest.approx(float(ref.bws.iloc[0, 0]), rel=1e-9)
        tau, se = reference(sub, "p1", row["bandwidth"], "triangular", cluster)
        assert got.effect[c, 1] == pytest.approx(tau, rel=1e-6)
        assert math.sqrt(got.noise_cov[c, 1, 1]) == pytest.approx(se, rel=1e-6)


@pytest.mark.parametrize("kernel", ["epanechnikov", "uniform"])
def test_mserd_with_mass_points_and_other_kernels(kernel: str) -> None:
    """Rounded scores (mass points: rdrobust's bwcheck=10 branch) and the other kernels."""
    rng = np.random.default_rng(4)
    x = np.round(rng.uniform(0, 1, 3000), 2)
    y = np.cos(2 * x) + 0.4 * (x >= 0.5) + rng.normal(0, 0.5, x.size)
    ref = rdrobust_mod.rdbwselect(y, x, c=0.5, kernel=kernel, vce="hc1", bwselect="mserd")
    mine = mserd_bandwidth(x, y, 0.5, kernel=kernel)
    assert mine == pytest.approx(float(ref.bws.iloc[0, 0]), rel=1e-9)


def test_sensitivity_table_and_direction() -> None:
    frame = make_rows(seed=6)
    got = rdd(frame, **ROLES, directions={"p2": "lower"}, bandwidth=0.2)
    table = got.meta["rdd"]["sensitivity"]
    assert len(table) == 2 * len(FACTORS)
    for c, e in enumerate(got.experiment):
        rows = [r for r in table if r["experiment"] == e]
        assert [r["factor"] for r in rows] == list(FACTORS)
        one = rows[FACTORS.index(1.0)]
        assert [one["effect"][m] for m in METRICS] == pytest.approx(list(got.effect[c]))
        assert [one["se"][m] for m in METRICS] == pytest.approx(
            list(np.sqrt(np.diag(got.noise_cov[c])))
        )
        twice = rows[FACTORS.index(2.0)]
        tau, se = reference(frame[frame["exp"] == e], "p2", 0.4, "triangular", None)
        assert twice["effect"]["p2"] == pytest.approx(-tau, rel=1e-6)  # good direction
        assert twice["se"]["p2"] == pytest.approx(se, rel=1e-6)
    assert got.effect[0, 2] < 0  # p2 jumps up; "lower is better" reads it as worse


def test_cutoff_column_equals_centred_running_variable() -> None:
    frame = make_rows(seed=7)
    frame["c"] = np.where(frame["exp"] == 0, 0.6, 0.55)
    frame["x"] = frame["x"] + frame["c"] - 0.6  # the same data, thresholds moved
    by_column = rdd(frame, **{**ROLES, "cutoff": "c"})
    centred = frame.assign(z=frame["x"] - frame["c"])
    by_hand = rdd(centred, **{**ROLES, "running": "z", "cutoff": 0.0})
    np.testing.assert_allclose(by_column.effect, by_hand.effect, rtol=1e-12)
    np.testing.assert_allclose(by_column.noise_cov, by_hand.noise_cov, rtol=1e-12)
    assert by_column.meta["rdd"]["columns"]["cutoff"] == "c"


def test_input_is_not_modified() -> None:
    frame = make_rows(seed=8, clusters=100)
    frame["seg"] = frame["seg"].astype("category")
    before = frame.copy(deep=True)
    rdd(frame, **ROLES, segments=["seg"], cluster="cl")
    pd.testing.assert_frame_equal(frame, before)


@pytest.mark.parametrize(
    ("change", "error", "words"),
    [
        ({"cutoff": float("nan")}, ParameterError, "'cutoff'"),
        ({"cutoff": True}, ParameterError, "'cutoff'"),
        ({"cutoff": "y"}, ColumnError, "two roles"),
        ({"cutoff": "thresh"}, ColumnError, "'thresh' (given as 'cutoff')"),
        ({"running": "xx"}, ColumnError, "Did you mean 'x'"),
        ({"bandwidth": 0}, ParameterError, "'bandwidth'"),
        ({"bandwidth": "wide"}, ParameterError, "'bandwidth'"),
        ({"kernel": "triangle"}, ParameterError, "Did you mean 'triangular'"),
        ({"min_users_per_arm": 1}, ParameterError, "min_users_per_arm"),
        ({"density_alpha": 1.0}, ParameterError, "density_alpha"),
        ({"density_window": -0.1}, ParameterError, "density_window"),
        ({"directions": {"p9": "lower"}}, ParameterError, "not a proxy"),
        ({"proxies": []}, ParameterError, "at least one"),
        ({"outcome": "x"}, ColumnError, "two roles"),
    ],
)
def test_bad_arguments(change: dict, error: type, words: str) -> None:
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        rdd(make_rows(n=500), **{**ROLES, **change})


def test_bad_data() -> None:
    frame = make_rows(n=800)
    with pytest.raises(DataTypeError, match="pandas DataFrame"):
        rdd(frame.to_dict(), **ROLES)
    with pytest.raises(DataTypeError, match=r"'x' \(given as 'running'\) must be numeric"):
        rdd(frame.assign(x=frame["x"].astype(str)), **ROLES)
    with pytest.raises(DataTypeError, match="not boolean"):
        rdd(frame.assign(x=frame["x"] > 0.6), **ROLES)
    with pytest.raises(DataError, match=r"'p1' \(proxies\): 1"):
        rdd(frame.assign(p1=frame["p1"].where(frame.index != 3)), **ROLES)
    with pytest.raises(DataError, match="Infinite"):
        rdd(frame.assign(y=frame["y"].where(frame.index != 3, np.inf)), **ROLES)
    with pytest.raises(DataError, match="at least two"):
        rdd(frame.assign(exp=0), **ROLES)
    with pytest.raises(DataError, match="empty"):
        rdd(frame.iloc[:0], **ROLES)


def test_cells_without_data_on_a_side_are_dropped_with_a_warning() -> None:
    frame = make_rows(n=3000, n_exp=3)
    frame = frame[~((frame["exp"] == 2) & (frame["x"] >= 0.6))]
    with pytest.warns(DataWarning, match="dropped 1 of 3 cells"):
        got = rdd(frame, **ROLES, bandwidth=0.2)
    assert list(got.experiment) == [0, 1]
    assert got.dropped["reason"].tolist() == ["no rows on one side of the cutoff"]


def test_density_check() -> None:
    rng = np.random.default_rng(0)
    smooth = rng.beta(5, 2, 20_000) - 0.85
    assert density_test(smooth, 0.05)["p_value"] > 0.01
    bunched = np.concatenate([smooth, rng.uniform(0, 0.01, 300)])
    got = density_test(bunched, 0.05)
    assert got["p_value"] < 1e-6 and got["log_density_ratio"] > 0
    assert holm([0.01, None, 0.04, 0.03]) == pytest.approx([0.03, None, 0.06, 0.06])
    assert density_test(smooth[:1], 0.05)["p_value"] is None


def test_world_manipulation_fires_the_density_warning() -> None:
    world = threshold(n_experiments=3, n_users=20_000, manipulation=0.6, segments=(), seed=2)
    with pytest.warns(DataWarning, match=r"jumps at the cutoff in 3 of 3 cells"):
        got = rdd(world.rows, **world.column_roles())
    cells = got.meta["rdd"]["cells"]
    assert all(c["density"]["p_holm"] < 1e-3 for c in cells)
    assert got.meta["rdd"]["density_failed"] == 3
    clean = threshold(n_experiments=3, n_users=20_000, segments=(), seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rdd(clean.rows, **clean.column_roles())


def test_world_config_and_reproducibility() -> None:
    a = threshold(n_experiments=2, n_users=500, seed=4)
    b = threshold(n_experiments=2, n_users=500, seed=4)
    pd.testing.assert_frame_equal(a.rows, b.rows)
    assert a.truth.identical(b.truth)
    assert (a.rows["treatment"] == (a.rows["score"] >= a.rows["threshold"])).all()
    varied = threshold(n_experiments=3, n_users=500, cutoff=(0.7, 0.9), seed=1)
    assert varied.column_roles()["cutoff"] == "threshold"
    for bad in (
        {"n_users": 5},
        {"cutoff": (0.9, 0.7)},
        {"cutoff": (0.0, 0.5)},
        {"manipulation": 1.0},
        {"segments": ("country",)},
        {"score_shape": (0.0, 2.0)},
        {"seed": -1},
    ):
        with pytest.raises(ParameterError, match="ThresholdConfig"):
            ThresholdConfig(**bad)
    with pytest.raises(ParameterError, match="Did you mean 'n_users'"):
        threshold(n_user=10)


def test_world_truth_against_monte_carlo() -> None:
    """Users drawn exactly at the cutoff: their mean effect matches the quadrature truth."""
    from proxyscope.simulate import scenario as sc

    cfg = ThresholdConfig()
    rng = np.random.default_rng(9)
    n, cell = 400_000, 21  # IN / Mobile / Existing (not TV, not the cohort)
    tau, bias = np.array([0.1]), np.array([-0.05])
    truth = cutoff_effects(cfg, np.array([0.85]), tau, bias)[0, cell]
    mean, sd = cfg.score_moments
    z = (0.85 - mean) / sd
    sat = sc.SAT_MEAN[cell] + cfg.score_sat * z + rng.standard_normal(n)
    eng = sc.ENG_MEAN[cell] + cfg.score_eng * z + rng.standard_normal(n)
    logit0 = sc.LOGIT_INTERCEPT + sc.LOGIT_SAT * sat + sc.LOGIT_ENG * eng + bias[0]
    long = 1 / (1 + np.exp(-(logit0 + tau[0] + sc.SEG_TAU[cell]))) - 1 / (1 + np.exp(-logit0))
    watch = 25 + 10 * eng + 6 * sat + 5 * rng.standard_normal(n)
    dw = 8 * (tau[0] + 0.3 * sc.SEG_TAU[cell])
    ctr = 1 / (1 + np.exp(-(0.3 * eng - 0.35 * sat + 0.1 * rng.standard_normal(n))))
    mc = [long.mean(), (np.maximum(watch + dw, 0) - np.maximum(watch, 0)).mean()]
    mc.append(np.minimum(ctr + 0.06 + 0.04, 1).mean() - ctr.mean())
    np.testing.assert_allclose(truth[[0, 1, 3]], mc, rtol=2e-3)


@pytest.mark.slow
def test_world_intervals_hold_the_truth() -> None:
    """Three worlds: 90% intervals hold the exact effect at the cutoff at a plausible rate."""
    held, z2 = [], []
    for seed in (1, 2, 3):
        world = threshold(n_experiments=8, n_users=20_000, seed=seed)
        got = rdd(world.rows, **world.column_roles())
        truth = world.truth_for()
        cells = got.cells()
        t = np.stack(
            [
                truth.sel(experiment=e, tenure=s).values
                for e, s in zip(cells["experiment"], cells["tenure"], strict=True)
            ]
        )
        se = np.sqrt(np.einsum("cii->ci", got.noise_cov))
        held.append(np.abs(got.effect - t) <= Z90 * se)
        z2.append(((got.effect - t) / se) ** 2)
    rate = np.concatenate(held).mean()
    assert 0.78 <= rate <= 0.98, rate
    assert 0.6 <= np.concatenate(z2).mean() <= 1.6

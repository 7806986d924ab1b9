"""The doubly robust (AIPW) design for opt-in features: ``proxyscope.data.ipw.ipw``.

Reference: DoubleML 0.11's ``DoubleMLIRM`` with the same learners, the same folds
(passed with ``set_sample_splitting``) and the same clipping threshold gives, per
metric, the same ATE / ATT and standard error (1e-6 relative). The cross-metric
blocks are checked against influence functions computed here in plain loops from
DoubleML's own nuisance predictions, and against DoubleML run on the sum of two
metrics (AIPW with linear outcome models is linear in the metric, so
Var(a + b) = Var a + Var b + 2 Cov(a, b)).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.model_selection import KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeRegressor

from proxyscope.data.ipw import ipw
from proxyscope.errors import (
    ColumnError,
    DataError,
    DataTypeError,
    DataWarning,
    ParameterError,
)
from proxyscope.simulate.optin_config import OptinConfig
from proxyscope.simulate.optin_world import optin

dml = pytest.importorskip("doubleml")
from doubleml.utils import PSProcessorConfig  # noqa: E402

METRICS = ["y", "z", "w"]
ROLES = {
    "experiment": "exp",
    "treatment": "t",
    "outcome": "y",
    "proxies": ["z", "w"],
    "covariates": ["x1", "x2"],
    "directions": {"w": "lower"},
}
SIGN = np.array([1.0, 1.0, -1.0])
RTOL = 1e-6


def make_rows(n: int = 1200, n_exp: int = 2, seed: int = 0, strength: float = 0.8) -> pd.DataFrame:
    """Selection on x1, x2; a binary outcome, a continuous proxy, a lower-is-better proxy."""
    rng = np.random.default_rng(seed)
    parts = []
    for e in range(n_exp):
        x1, x2 = rng.normal(size=n), rng.normal(size=n)
        p = 1 / (1 + np.exp(-(-0.3 + strength * x1 - 0.5 * strength * x2)))
        t = (rng.random(n) < p).astype(int)
        y = (rng.random(n) < 1 / (1 + np.exp(-(0.2 + x1 + 0.4 * t)))).astype(int)
        z = 1 + x1 + 0.5 * x2 + t * (0.5 + 0.3 * x1) + rng.normal(size=n)
        w = 2 - x1 - 0.2 * t + 0.5 * rng.normal(size=n) + 0.3 * z
        seg = rng.choice(["a", "b", "c"], size=n, p=[0.5, 0.3, 0.2])
        parts.append(
            pd.DataFrame(
                {"exp": f"e{e}", "t": t, "y": y, "z": z, "w": w, "x1": x1, "x2": x2, "seg": seg}
            )
        )
    return pd.concat(parts, ignore_index=True)


def learners(propensity=None, outcome=None):
    ps = propensity or make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return ps, outcome or LinearRegression()


def kfold(units: np.ndarray, rs: int = 0, k: int = 5) -> list[tuple[np.ndarray, np.ndarray]]:
    """The documented rule, rebuilt: KFold over the units in order of first appearance."""
    codes, uniq = pd.factorize(units)
    out = []
    for _, test_u in KFold(k, shuffle=True, random_state=rs).split(np.zeros((len(uniq), 1))):
        test = np.isin(codes, test_u)
        out.append((np.flatnonzero(~test), np.flatnonzero(test)))
    return out


def doubleml(sub, metric, x_cols, estimand, trim=0.01, propensity=None, outcome=None, **data):
    ps, out = learners(propensity, outcome)
    d = dml.DoubleMLData(sub, y_col=metric, d_cols="t", x_cols=x_cols, **data)
    model = dml.DoubleMLIRM(
        d,
        ml_g=out,
        ml_m=ps,
        n_folds=5,
        score="ATE" if estimand == "ate" else "ATTE",
        ps_processor_config=PSProcessorConfig(clipping_threshold=trim),
        draw_sample_splitting=False,
    )
    return model


def fitted(model, smpls, smpls_cluster=None):
    if smpls_cluster is None:
        model.set_sample_splitting(smpls)
    else:
        model.set_sample_splitting([smpls], [smpls_cluster])
    return model.fit(store_predictions=True)


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    return make_rows()


# -- the reference: DoubleML per metric -----------------------------------------------


@pytest.mark.parametrize(("estimand", "trim"), [("ate", 0.01), ("att", 0.01), ("ate", 0.1)])
def test_matches_doubleml_per_metric(rows, estimand, trim):
    got = ipw(rows, **ROLES, estimand=estimand, trim=trim)
    assert list(got.metrics) == METRICS
    for c, e in enumerate(["e0", "e1"]):
        sub = rows[rows.exp == e].reset_index(drop=True)
        smpls = kfold(np.arange(len(sub)))
        for j, m in enumerate(METRICS):
            ref = fitted(doubleml(sub, m, ["x1", "x2"], estimand, trim), smpls)
            assert got.effect[c, j] * SIGN[j] == pytest.approx(ref.coef[0], rel=RTOL)
            assert np.sqrt(got.noise_cov[c, j, j]) == pytest.approx(ref.se[0], rel=RTOL)


def test_other_learners_and_seed_match_doubleml(rows):
    """A learner without the multi-output shortcut (one fit per metric), another seed."""
    tree = DecisionTreeRegressor(max_depth=3, random_state=0)
    ps = LogisticRegression(C=0.3, max_iter=1000)
    got = ipw(rows, **ROLES, propensity_model=ps, outcome_model=tree, random_state=11)
    sub = rows[rows.exp == "e1"].reset_index(drop=True)
    smpls = kfold(np.arange(len(sub)), rs=11)
    for j, m in enumerate(METRICS):
        ref = fitted(doubleml(sub, m, ["x1", "x2"], "ate", propensity=ps, outcome=tree), smpls)
        assert got.effect[1, j] * SIGN[j] == pytest.approx(ref.coef[0], rel=RTOL)
        assert np.sqrt(got.noise_cov[1, j, j]) == pytest.approx(ref.se[0], rel=RTOL)


# -- the cross-metric blocks ------------------------------------------------------------


def loop_covariance(sub, preds, estimand, trim):
    """V = Σ ψ ψᵀ / n² with ψ computed unit by unit, metric by metric, in plain loops."""
    n, m = len(sub), len(METRICS)
    psi = np.zeros((n, m))
    for j, metric in enumerate(METRICS):
        g0, g1, e = preds[metric]
        y, t = sub[metric].to_numpy(float), sub["t"].to_numpy(float)
        b, d = [], []
        for i in range(n):
            p = min(max(e[i], trim), 1 - trim)
            if estimand == "ate":
                b.append(g1[i] - g0[i] + t[i] * (y[i] - g1[i]) / p)
                b[-1] -= (1 - t[i]) * (y[i] - g0[i]) / (1 - p)
                d.append(1.0)
            else:
                b.append(t[i] * (y[i] - g0[i]) - p * (1 - t[i]) * (y[i] - g0[i]) / (1 - p))
                d.append(t[i])
        theta = sum(b) / sum(d)
        scale = n / sum(d)
        for i in range(n):
            psi[i, j] = (b[i] - d[i] * theta) * scale
    cov = np.zeros((m, m))
    for i in range(n):
        cov += np.outer(psi[i], psi[i])
    return cov / n**2


@pytest.mark.parametrize("estimand", ["ate", "att"])
def test_joint_covariance_matches_loops_and_sum_metric(rows, estimand):
    got = ipw(rows, **ROLES, estimand=estimand)
    sub = rows[rows.exp == "e0"].reset_index(drop=True).assign(zw=lambda d: d.z + d.w)
    smpls = kfold(np.arange(len(sub)))
    preds = {}
    for m in METRICS:
        ref = fitted(doubleml(sub, m, ["x1", "x2"], estimand), smpls)
        p = ref.predictions
        preds[m] = (p["ml_g0"][:, 0, 0], p["ml_g1"][:, 0, 0], p["ml_m"][:, 0, 0])
    want = loop_covariance(sub, preds, estimand, 0.01) * np.outer(SIGN, SIGN)
    np.testing.assert_allclose(got.noise_cov[0], want, rtol=RTOL, atol=0)
    corr = got.noise_cov[0] / np.sqrt(np.outer(*[np.diag(got.noise_cov[0])] * 2))
    assert np.abs(corr[1, 2]) > 0.2  # the blocks are not trivially zero
    # DoubleML on z + w: Var z + Var w + 2 Cov(z, w), in the raw directions.
    ref = fitted(doubleml(sub, "zw", ["x1", "x2"], estimand), smpls)
    raw = got.noise_cov[0] * np.outer(SIGN, SIGN)
    assert raw[1, 1] + raw[2, 2] + 2 * raw[1, 2] == pytest.approx(ref.se[0] ** 2, rel=RTOL)


def test_segment_cells_average_doubleml_scores(rows):
    """Per cell: the mean of the experiment's DoubleML scores, V from its scores in the cell."""
    got = ipw(rows, **ROLES, segments="seg")
    sub = rows[rows.exp == "e1"].reset_index(drop=True)
    levels = pd.unique(rows["seg"])  # indicators of every level but the first in the data
    sub = sub.assign(**{f"s_{v}": (sub.seg == v).astype(float) for v in levels[1:]})
    x_cols = ["x1", "x2", *[f"s_{v}" for v in levels[1:]]]
    smpls = kfold(np.arange(len(sub)))
    for j, m in enumerate(METRICS):
        ref = fitted(doubleml(sub, m, x_cols, "ate"), smpls)
        b = ref.psi_elements["psi_b"][:, 0, 0]
        for level in ("a", "b", "c"):
            c = np.flatnonzero((got.experiment == "e1") & (got.cells()["seg"] == level))[0]
            cell = b[(sub.seg == level).to_numpy()]
            theta = cell.mean()
            var = np.sum((cell - theta) ** 2) / len(cell) ** 2
            assert got.effect[c, j] * SIGN[j] == pytest.approx(theta, rel=RTOL)
            assert got.noise_cov[c, j, j] == pytest.approx(var, rel=RTOL)


@pytest.mark.parametrize("estimand", ["ate", "att"])
def test_cluster_is_cr1_times_doubleml_clustered(estimand):
    """Folds of 10 clusters each: DoubleML's clustered variance is Σ_g s_g² / n², ours G/(G−1)×."""
    rows = make_rows(n=1000, seed=3)
    rows["team"] = rows["exp"] + "-" + (np.arange(len(rows)) % 50).astype(str)
    got = ipw(rows, **ROLES, cluster="team", estimand=estimand)
    assert got.variable("n_clusters_treat")[0] == 50
    sub = rows[rows.exp == "e0"].reset_index(drop=True)
    sub["team_code"] = pd.factorize(sub["team"])[0]
    smpls = kfold(sub["team_code"].to_numpy())
    clusters = [
        ([np.unique(sub.team_code.to_numpy()[tr])], [np.unique(sub.team_code.to_numpy()[te])])
        for tr, te in smpls
    ]
    for j, m in enumerate(METRICS):
        model = doubleml(sub, m, ["x1", "x2"], estimand, cluster_cols="team_code")
        ref = fitted(model, smpls, clusters)
        assert got.effect[0, j] * SIGN[j] == pytest.approx(ref.coef[0], rel=RTOL)
        assert got.noise_cov[0, j, j] == pytest.approx(50 / 49 * ref.se[0] ** 2, rel=RTOL)
    assert json.loads(json.dumps(got.meta["ipw"]))["small_sample_factor"].startswith("CR1")


# -- metadata, warnings, errors -----------------------------------------------------------


def test_meta_reports_overlap_and_balance(rows):
    before = rows.copy(deep=True)
    got = ipw(rows, **ROLES, segments=["seg"])
    pd.testing.assert_frame_equal(rows, before)  # never mutated
    assert set(got.data["design"].values) == {"ipw"}
    meta = got.meta["ipw"]
    json.dumps(meta)
    first = pd.unique(rows["seg"])
    assert meta["features"] == ["x1", "x2", *[f"seg={v}" for v in first[1:]]]
    assert len(meta["cells"]) == 6 and len(meta["experiments"]) == 2
    cell = meta["cells"][0]
    for arm in ("treated", "control"):
        assert 0 < cell[arm]["propensity_min"] <= cell[arm]["propensity_max"] < 1
        n_arm = got.data["n_treat" if arm == "treated" else "n_control"].values[0]
        assert 1 < cell[arm]["effective_n"] <= n_arm
    smd = meta["experiments"][0]["smd"]["x1"]
    assert smd["before"] > 0.4 and abs(smd["after"]) < 0.1
    assert meta["poor_overlap_cells"] == [] and meta["unbalanced_experiments"] == []


def test_poor_overlap_and_imbalance_warn():
    rows = make_rows(n=800, strength=3.0)
    with (
        pytest.warns(DataWarning, match="poor overlap in .* cells"),
        pytest.warns(DataWarning, match="unbalanced"),  # clipped weights balance less
    ):
        got = ipw(rows, **ROLES)
    assert got.meta["ipw"]["poor_overlap_cells"][0]["experiment"] == "e0"
    ignorant = DummyClassifier(strategy="prior")  # weights that balance nothing
    with pytest.warns(DataWarning, match=r"unbalanced \(\|SMD\| after weighting > 0.1\)"):
        ipw(make_rows(n=800), **ROLES, propensity_model=ignorant)


def test_small_cells_are_dropped_with_a_warning(rows):
    small = rows.assign(seg=np.where(np.arange(len(rows)) % 400 == 0, "tiny", rows["seg"]))
    with pytest.warns(DataWarning, match="dropped 2 of 8 cells"):
        got = ipw(small, **ROLES, segments="seg")
    assert "tiny" not in set(got.cells()["seg"])


class Broken(RegressorMixin, BaseEstimator):
    def fit(self, x, y):
        raise ValueError("cannot fit this")

    def predict(self, x):
        return np.zeros(len(x))


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"estimand": "atc"}, ParameterError, "'estimand' parameter of ipw must be one of"),
        ({"trim": 0.5}, ParameterError, r"'trim' parameter of ipw must be a number in \[0, 0.5\)"),
        ({"n_folds": 1}, ParameterError, "'n_folds' parameter of ipw must be an integer >= 2"),
        ({"random_state": -1}, ParameterError, "'random_state'"),
        ({"propensity_model": Ridge()}, ParameterError, "must be a scikit-learn estimator"),
        ({"outcome_model": LogisticRegression()}, ParameterError, "must be a regressor"),
        ({"covariates": ["x1", "z"]}, ColumnError, "'z' is given two roles"),
        ({"covariates": ["x1", "x3"]}, ColumnError, r"'x3' \(given as 'covariates'\).*'x1'"),
        ({"outcome_model": Broken()}, DataError, "Broken failed .experiment 'e0', fold 0"),
        ({"n_folds": 2000}, DataError, "fewer than n_folds=2000"),
        ({"min_users_per_arm": 1}, ParameterError, "min_users_per_arm"),
    ],
)
def test_bad_settings(rows, change, error, match):
    with pytest.raises(error, match=match):
        ipw(rows, **{**ROLES, **change})


def test_bad_data(rows):
    with pytest.raises(DataTypeError, match="must be a pandas DataFrame"):
        ipw(rows.to_dict(), **ROLES)
    with pytest.raises(DataTypeError, match=r"Column 'x2' \(given as 'covariates'\) must be num"):
        ipw(rows.assign(x2="high"), **ROLES)
    with pytest.raises(DataError, match=r"'x1' \(covariates\): 1 rows"):
        ipw(rows.assign(x1=rows.x1.where(rows.index != 5)), **ROLES)
    with pytest.raises(DataError, match="Infinite values"):
        ipw(rows.assign(z=rows.z.replace(rows.z[3], np.inf)), **ROLES)
    with pytest.raises(DataError, match="only one arm"):
        ipw(rows.assign(t=np.where(rows.exp == "e1", 1, rows.t)), **ROLES)
    with pytest.raises(DataError, match="at least two"):
        ipw(rows[rows.exp == "e0"], **ROLES)
    with pytest.raises(ParameterError, match="treated_value"):
        ipw(rows.assign(t=np.where(rows.t == 1, "in", "out")), **ROLES)
    with pytest.raises(DataError, match="fewer than 2 treated or 2 control"):
        few = rows[(rows.t == 0) | (rows.index.isin(rows.index[rows.t == 1][:1]))]
        ipw(pd.concat([few, rows[rows.exp == "e1"]]), **ROLES, n_folds=2)


# -- the simulated world ------------------------------------------------------------------


def test_world_is_reproducible_and_checked():
    a = optin(n_experiments=3, users_per_experiment=300, seed=5)
    b = optin(OptinConfig(n_experiments=3, users_per_experiment=300, seed=5))
    pd.testing.assert_frame_equal(a.users, b.users)
    assert a.truth["cell_ate"].dims == ("experiment", "device", "tenure", "metric")
    assert set(a.users["opt_in"]) == {0, 1}
    with pytest.raises(ParameterError, match=r"OptinConfig.optin_rate: must be a number in \(0"):
        optin(optin_rate=1.0)
    with pytest.raises(ParameterError, match=r"OptinConfig\.segments"):
        optin(segments=("country",))
    with pytest.raises(ParameterError, match="Did you mean 'selection'"):
        optin(selektion=1.0)
    world = optin(n_experiments=2, users_per_experiment=500, segments=(), seed=1)
    assert world.truth["cell_att"].dims == ("experiment", "metric")


def cell_errors(world, estimand, warns=False):
    roles = world.column_roles()
    if warns:  # a hidden confounder widens the propensities: poor overlap in some cells
        with pytest.warns(DataWarning, match="poor overlap"):
            got = ipw(world.users, **roles, estimand=estimand)
    else:
        got = ipw(world.users, **roles, estimand=estimand)
    truth = world.cell_truth(estimand).transpose("experiment", *roles["segments"], "metric")
    cells = got.cells()
    index = [np.asarray(got.experiment)]
    for s in roles["segments"]:
        index.append(pd.Index(truth[s].values).get_indexer(cells[s].astype(str)))
    err = got.effect - truth.values[tuple(index)]
    return err, np.sqrt(np.einsum("cii->ci", got.noise_cov))


@pytest.mark.slow
@pytest.mark.parametrize("estimand", ["ate", "att"])
def test_world_intervals_hold_the_truth(estimand):
    z = []
    for seed in (1, 2):
        err, se = cell_errors(optin(n_experiments=8, seed=seed), estimand)
        z.append(err / se)
    z = np.concatenate(z)  # 96 cells x 5 metrics
    assert 0.84 <= np.mean(np.abs(z) <= 1.645) <= 0.96
    world = optin(n_experiments=8, seed=1)
    naive = world.users.groupby("opt_in")["long_retained"].mean().diff().iloc[-1]
    assert naive - float(world.truth["experiment_ate"].sel(metric="long_retained").mean()) > 0.05


@pytest.mark.slow
def test_hidden_confounder_biases_every_cell():
    world = optin(n_experiments=8, hidden_confounding=1.0, seed=1)
    err, se = cell_errors(world, "ate", warns=True)
    assert np.mean(err[:, 0] / se[:, 0]) > 1.0  # retention overstated: biased, not noisy
    assert np.mean(np.abs(err / se) <= 1.645) < 0.75

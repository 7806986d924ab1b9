"""summarize(cluster=, exposure=) against pyfixest and linearmodels, on three engines."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import ENGINES

from proxyscope import dims
from proxyscope.data import CellEffects, summarize
from proxyscope.data.exposure import spillover_effects
from proxyscope.errors import ColumnError, DataError, DataWarning, ParameterError

METRICS = ["retained", "watch", "rebuffer"]
SIGNS = np.array([1.0, 1.0, -1.0])  # rebuffer is "lower is better"
ROLES: dict[str, Any] = {
    "experiment": "exp_id",
    "treatment": "treated",
    "outcome": "retained",
    "proxies": ["watch", "rebuffer"],
    "segments": ["region"],
    "directions": {"rebuffer": "lower"},
    "cluster": "ws",
}
FEW = "fewer than 30 clusters"
SPAN = "span several segment cells"
INFLATION = "experiment_variance_inflation"
UNEXPLAINED = "experiment_variance_inflation_unexplained"
#: meta["cluster"] entries computed from sums of floats (equal across engines to rounding).
MEASURED = (INFLATION, UNEXPLAINED, "shared_noise")
#: pyfixest 0.60 under pandas 3.1 (third-party noise).
PYFIXEST_NOISE = pytest.mark.filterwarnings(
    "ignore:The inplace keyword:pandas.errors.Pandas4Warning:pyfixest"
)


def make_clustered(seed: int = 3) -> pd.DataFrame:
    """3 experiments x 2 regions, 40-60 workspaces each, randomized by workspace.

    A workspace baseline moves every metric (so metrics correlate within a
    workspace); in experiment 15 the first 8 workspaces are randomized user by
    user (clusters shared by both arms). Control users are "spillover" with
    probability 0.3 (else "pure_control"); treated users are "direct".
    """
    rng = np.random.default_rng(seed)
    parts = []
    for exp_id in (5, 15, 25):
        n_ws = int(rng.integers(40, 61))
        arm = rng.permutation(np.arange(n_ws) % 2)
        for g in range(n_ws):
            size = int(rng.integers(4, 40))
            base = rng.normal()
            t = rng.integers(0, 2, size) if (exp_id == 15 and g < 8) else np.full(size, arm[g])
            spill = (t == 0) & (rng.random(size) < 0.3)
            lift = 0.3 * t + 0.1 * spill
            parts.append(
                pd.DataFrame(
                    {
                        "exp_id": exp_id,
                        "region": rng.choice(np.array(["NA", "EU"]), size),
                        "treated": t,
                        "ws": g,  # the same workspace ids in every experiment
                        "exposure": np.where(
                            t == 1, "direct", np.where(spill, "spillover", "pure_control")
                        ),
                        "retained": (base + lift + rng.normal(size=size) > 0).astype(float),
                        "watch": 1e6 + 5 * base + 6 * lift + rng.normal(0, 3, size),
                        "rebuffer": 0.1 - 0.02 * base + 0.03 * lift + 0.02 * rng.normal(size=size),
                    }
                )
            )
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return make_clustered()


def run(data: Any, **kw: Any) -> CellEffects:
    """summarize with ROLES, expecting the few-clusters warning (every arm has < 30)
    (and the one about workspaces spanning regions, tested on its own)."""
    with pytest.warns(DataWarning, match=FEW), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*" + SPAN)
        return summarize(data, **{**ROLES, **kw})


def cells_of(frame: pd.DataFrame) -> Iterator[tuple[int, pd.DataFrame]]:
    """(cell index, the cell's users) in summarize's order: experiment, then region."""
    for c, (_, cell) in enumerate(frame.groupby(["exp_id", "region"], sort=True)):
        yield c, cell


def close(got: np.ndarray, want: np.ndarray, scale: np.ndarray, rtol: float = 1e-8) -> None:
    np.testing.assert_array_less(np.abs(got - want), rtol * scale + 1e-300)


# -- reference libraries -------------------------------------------------------------


@PYFIXEST_NOISE
def test_standard_errors_equal_pyfixest_crv1_and_linearmodels(frame: pd.DataFrame) -> None:
    pf = pytest.importorskip("pyfixest")
    iv = pytest.importorskip("linearmodels.iv")
    got = run(frame, engine="duckdb")
    assert got.n_cells == 6
    assert set(got.design) == {"cluster"}
    se = np.sqrt(np.einsum("cii->ci", got.noise_cov))
    for c, cell in cells_of(frame):
        n_ws = cell["ws"].nunique()
        for k, m in enumerate(METRICS):
            fit = pf.feols(
                f"{m} ~ treated",
                data=cell,
                vcov={"CRV1": "ws"},
                ssc=pf.ssc(k_adj=False, G_adj=True),
            )
            close(got.effect[c, k], SIGNS[k] * fit.coef()["treated"], se[c, k])
            close(se[c, k], fit.se()["treated"], se[c, k])
            # linearmodels without debiasing is CR0: CR1 = G/(G-1) x CR0.
            x = pd.DataFrame({"const": 1.0, "treated": cell["treated"].astype(float)})
            lm = iv.IV2SLS(cell[m], x, None, None).fit(
                cov_type="clustered", clusters=cell["ws"].to_numpy(), debiased=False
            )
            want = lm.cov.loc["treated", "treated"] * n_ws / (n_ws - 1)
            close(got.noise_cov[c, k, k], want, got.noise_cov[c, k, k])


def test_cross_metric_blocks_equal_linearmodels_clustered_sur(frame: pd.DataFrame) -> None:
    system = pytest.importorskip("linearmodels.system")
    got = run(frame, engine="pandas")
    for c, cell in cells_of(frame):
        x = pd.DataFrame({"const": 1.0, "treated": cell["treated"].astype(float)})
        res = system.SUR.multivariate_ls(cell[METRICS], x).fit(
            cov_type="clustered",
            clusters=cell["ws"].to_numpy(),
            group_debias=True,
            debiased=False,
        )
        names = [f"{m}_treated" for m in METRICS]
        # group_debias scales CR0 by G/(G-1) (N-1)/N; CR1 drops the (N-1)/N.
        n = len(cell)
        want = res.cov.loc[names, names].to_numpy() * n / (n - 1) * np.outer(SIGNS, SIGNS)
        diag = np.sqrt(np.diag(want))
        close(got.noise_cov[c], want, np.outer(diag, diag))
        assert abs(want[0, 1]) > 0.1 * diag[0] * diag[1]  # metrics do co-move


@PYFIXEST_NOISE
def test_direct_and_spillover_equal_pyfixest_two_exposure_model(frame: pd.DataFrame) -> None:
    pf = pytest.importorskip("pyfixest")
    got = run(frame, engine="duckdb", exposure="exposure")
    spill = got.variable("spillover")
    spill_cov = got.variable("spillover_cov")
    se = np.sqrt(np.einsum("cii->ci", got.noise_cov))
    se_spill = np.sqrt(np.einsum("cii->ci", spill_cov))
    for c, cell in cells_of(frame):
        data = cell.assign(
            is_direct=(cell["exposure"] == "direct").astype(float),
            is_spillover=(cell["exposure"] == "spillover").astype(float),
        )
        assert got.data[dims.N_TREAT].values[c] == (data["is_direct"] == 1).sum()
        assert got.variable("n_spillover")[c] == (data["is_spillover"] == 1).sum()
        for k, m in enumerate(METRICS):
            fit = pf.feols(
                f"{m} ~ is_direct + is_spillover",
                data=data,
                vcov={"CRV1": "ws"},
                ssc=pf.ssc(k_adj=False, G_adj=True),
            )
            coef, fse = fit.coef(), fit.se()
            close(got.effect[c, k], SIGNS[k] * coef["is_direct"], se[c, k])
            close(se[c, k], fse["is_direct"], se[c, k])
            close(spill[c, k], SIGNS[k] * coef["is_spillover"], se_spill[c, k])
            close(se_spill[c, k], fse["is_spillover"], se_spill[c, k])


def test_one_user_clusters_give_the_user_level_covariance_times_its_factor() -> None:
    # Every cluster one user, equal arms n per cell (N = 2n). CR1 is
    # N/(N-1) sum_a (n_a-1)/n_a^2 S_a; the user-level one is sum_a S_a/n_a, so
    # V_clustered = 2(n-1)/(2n-1) V_user exactly.
    rng = np.random.default_rng(8)
    parts = []
    for exp_id in (1, 2, 3):
        for region in ("NA", "EU"):
            n = int(rng.integers(30, 46))
            t = rng.permutation(np.repeat([0, 1], n))
            b = rng.normal(size=2 * n)
            parts.append(
                pd.DataFrame(
                    {
                        "exp_id": exp_id,
                        "region": region,
                        "treated": t,
                        "retained": b + 0.2 * t + rng.normal(size=2 * n),
                        "watch": 50 + 3 * b + t + rng.normal(size=2 * n),
                        "rebuffer": 0.1 - 0.01 * b + 0.01 * rng.normal(size=2 * n),
                    }
                )
            )
    data = pd.concat(parts, ignore_index=True)
    data["ws"] = np.arange(len(data))
    got = summarize(data, engine="pandas", **ROLES)
    user = summarize(data, engine="pandas", **{**ROLES, "cluster": None})
    n = got.data[dims.N_TREAT].values
    assert np.array_equal(n, got.data[dims.N_CONTROL].values)
    factor = (2 * (n - 1) / (2 * n - 1))[:, None, None]
    diag = np.sqrt(np.einsum("cii->ci", user.noise_cov))
    close(got.noise_cov, factor * user.noise_cov, diag[:, :, None] * diag[:, None, :], 1e-10)
    np.testing.assert_allclose(got.effect, user.effect, rtol=1e-12)
    assert got.variable("n_clusters_treat").tolist() == n.tolist()
    assert got.variable("n_clusters_shared").tolist() == [0] * 6


def test_cluster_counts_and_shared_clusters(frame: pd.DataFrame) -> None:
    got = run(frame, engine="pandas")
    shared = []
    for c, cell in cells_of(frame):
        arms = cell.groupby("ws")["treated"].nunique()
        shared.append(int((arms == 2).sum()))
        assert got.variable("n_clusters_treat")[c] == cell.loc[cell.treated == 1, "ws"].nunique()
        assert got.variable("n_clusters_control")[c] == cell.loc[cell.treated == 0, "ws"].nunique()
    assert got.variable("n_clusters_shared").tolist() == shared
    assert shared[:2] == [0, 0] and min(shared[2:4]) > 0 and shared[4:] == [0, 0]
    assert {k: v for k, v in got.meta["cluster"].items() if k not in MEASURED} == {
        "column": "ws",
        "shared_clusters": sum(shared),
        "cells_with_shared": 2,
        "small_sample_factor": "CR1: G/(G-1), G = distinct clusters in the cell",
    }


# -- engines ---------------------------------------------------------------------------


def _input(engine: str, frame: pd.DataFrame, request: pytest.FixtureRequest) -> Any:
    if engine == "spark":
        return request.getfixturevalue("spark").createDataFrame(frame)
    return frame


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("exposure", [None, "exposure"])
def test_engines_agree(
    engine: str, exposure: str | None, frame: pd.DataFrame, request: pytest.FixtureRequest
) -> None:
    before = copy.deepcopy(frame)
    ref = run(frame, engine="pandas", exposure=exposure)
    got = run(_input(engine, frame, request), engine=engine, exposure=exposure)
    pd.testing.assert_frame_equal(frame, before)
    assert got.meta["engine"] == engine
    np.testing.assert_array_equal(got.experiment, ref.experiment)
    np.testing.assert_array_equal(got.segment_label, ref.segment_label)
    np.testing.assert_allclose(got.effect, ref.effect, rtol=1e-12)
    np.testing.assert_allclose(got.noise_cov, ref.noise_cov, rtol=1e-10, atol=1e-18)
    names = ["n_clusters_treat", "n_clusters_control", "n_clusters_shared"]
    if exposure:
        names.append("n_spillover")
        np.testing.assert_allclose(got.variable("spillover"), ref.variable("spillover"), rtol=1e-12)
        np.testing.assert_allclose(
            got.variable("spillover_cov"), ref.variable("spillover_cov"), rtol=1e-10, atol=1e-18
        )
    for name in names:
        np.testing.assert_array_equal(got.variable(name), ref.variable(name))
    mine, theirs = got.meta["cluster"], ref.meta["cluster"]  # (copies)
    for key in (INFLATION, UNEXPLAINED):
        assert mine.pop(key) == pytest.approx(theirs.pop(key), rel=1e-9)
    shared, shared_ref = mine.pop("shared_noise"), theirs.pop("shared_noise")
    assert shared.pop("method") == shared_ref.pop("method")
    assert shared == pytest.approx(shared_ref, rel=1e-9)
    np.testing.assert_allclose(
        got.variable("shared_cov"), ref.variable("shared_cov"), rtol=1e-9, atol=1e-18
    )
    assert mine == theirs


@pytest.mark.parametrize("engine", ["pandas", "duckdb"])
def test_missing_cluster_values_are_missing_keys(engine: str, frame: pd.DataFrame) -> None:
    data = frame.astype({"ws": "float64", "exposure": object})
    data.loc[[3, 50, 700], "ws"] = np.nan
    data.loc[[4, 800], "watch"] = np.nan
    data.loc[[900], "exposure"] = None
    with pytest.raises(DataError, match=r"'ws' \(cluster\): 3, 'exposure' \(exposure\): 1"):
        summarize(data, engine=engine, exposure="exposure", **ROLES)
    with pytest.warns(DataWarning, match="dropped 6 of"), pytest.warns(DataWarning, match=FEW):
        got = summarize(data, engine=engine, dropna=True, exposure="exposure", **ROLES)
    ref = run(data.dropna(), engine="pandas", exposure="exposure")
    assert got.meta["dropna"]["missing_by_column"] == {"ws": 3, "exposure": 1, "watch": 2}
    np.testing.assert_allclose(got.effect, ref.effect, rtol=1e-12)
    np.testing.assert_allclose(got.noise_cov, ref.noise_cov, rtol=1e-10)
    np.testing.assert_allclose(got.variable("spillover"), ref.variable("spillover"), rtol=1e-12)


# -- spillover -------------------------------------------------------------------------


def test_spillover_effects_as_cells_and_too_few_spillover_users(frame: pd.DataFrame) -> None:
    data = frame.copy()
    lone = (data.exp_id == 25) & (data.region == "EU") & (data.exposure == "spillover")
    data.loc[lone[lone].index[1:], "exposure"] = "pure_control"  # one spillover user left
    got = run(data, engine="pandas", exposure="exposure")
    spill = got.variable("spillover")
    assert np.isnan(spill[4]).all() and np.isfinite(spill[[0, 1, 2, 3, 5]]).all()
    assert got.meta["exposure"]["cells_without_spillover"] == [
        {"experiment": 25, "segment_label": "EU", "n_spillover": 1, "spillover_clusters": 1}
    ]
    cells = spillover_effects(got)
    assert cells.n_cells == 5 and set(cells.design) == {"cluster"}
    keep = [0, 1, 2, 3, 5]
    np.testing.assert_array_equal(cells.effect, spill[keep])
    np.testing.assert_array_equal(cells.noise_cov, got.variable("spillover_cov")[keep])
    np.testing.assert_array_equal(
        cells.data[dims.N_TREAT].values, got.variable("n_spillover")[keep]
    )
    assert cells.dropped.iloc[-1][["experiment", "region", "n_treat"]].tolist() == [25, "EU", 1]
    assert cells.meta["estimand"] == "spillover"
    with pytest.raises(DataError, match="none of the 6 cells has a spillover"):
        spillover_effects(run(frame, engine="pandas"))


def test_exposure_values_map_other_labels(frame: pd.DataFrame) -> None:
    codes = {"direct": 2, "spillover": 1, "pure_control": 0}
    data = frame.assign(exposure=frame["exposure"].map(codes))
    ref = run(frame, engine="pandas", exposure="exposure")
    got = run(data, engine="duckdb", exposure="exposure", exposure_values=codes)
    np.testing.assert_allclose(got.variable("spillover"), ref.variable("spillover"), rtol=1e-12)
    assert got.meta["exposure"]["values"] == codes


# -- errors and warnings ------------------------------------------------------------


def test_few_clusters_warning_names_cells_and_counts(frame: pd.DataFrame) -> None:
    with pytest.warns(DataWarning, match=FEW) as record:
        summarize(frame, engine="pandas", **ROLES)
    text = str(record[0].message)
    assert "6 of 6 cells" in text and "column 'ws'" in text
    cell = frame[(frame.exp_id == 5) & (frame.region == "EU")]
    n_t = cell.loc[cell.treated == 1, "ws"].nunique()
    n_c = cell.loc[cell.treated == 0, "ws"].nunique()
    assert f"(experiment 5, segment 'EU'): {n_t} treatment and {n_c} control clusters" in text


def test_fewer_than_two_clusters_in_an_arm_is_an_error(frame: pd.DataFrame) -> None:
    data = frame.copy()
    cell = (data.exp_id == 15) & (data.region == "NA") & (data.treated == 1)
    data.loc[cell, "ws"] = 999  # every treated user of the cell in one workspace
    with pytest.raises(DataError, match=r"\(experiment 15, segment 'NA'\): 1 treatment and"):
        summarize(data, engine="duckdb", **ROLES)
    # A cell dropped for too few users is not checked.
    small = data[~cell | (data.index.isin(data[cell].index[:3]))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        got = summarize(small, engine="duckdb", min_users_per_arm=5, **ROLES)
    assert got.n_cells == 5


def test_exposure_errors(frame: pd.DataFrame) -> None:
    with pytest.raises(ParameterError, match="'exposure' parameter of summarize needs 'cluster'"):
        summarize(frame, engine="pandas", exposure="exposure", **{**ROLES, "cluster": None})
    with pytest.raises(ParameterError, match=r"'exposure_values' .* key 'direkt'.*'direct'"):
        summarize(frame, exposure="exposure", exposure_values={"direkt": "d"}, **ROLES)
    with pytest.raises(ParameterError, match="maps 'direct' to 'x', as it does 'spillover'"):
        values = {"direct": "x", "spillover": "x"}
        summarize(frame, exposure="exposure", exposure_values=values, **ROLES)
    with pytest.raises(ParameterError, match="applies only with 'exposure'"):
        summarize(frame, exposure_values={"direct": "d"}, **ROLES)
    odd = frame.assign(exposure=frame["exposure"].replace({"spillover": "leak"}))
    with pytest.raises(DataError, match=r"'exposure'.* unexpected value\(s\).*\['leak'\]"):
        summarize(odd, engine="duckdb", exposure="exposure", **ROLES)
    wrong = frame.copy()
    wrong.loc[wrong.index[wrong.treated == 0][:4], "exposure"] = "direct"
    with pytest.raises(DataError, match=r"'exposure'.*'treated'.* 4 users: 4 direct users"):
        summarize(wrong, engine="pandas", exposure="exposure", **ROLES)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"cluster": "region"},
            "'region' is given two roles: it appears as 'segments' and 'cluster'",
        ),
        ({"cluster": "treated"}, "'treated' is given two roles"),
        ({"cluster": "watch"}, "'watch' is given two roles"),
        ({"exposure": "ws"}, "'ws' is given two roles: it appears as 'cluster' and 'exposure'"),
        ({"segments": ["design"], "cluster": "ws"}, "Segment column 'design' has a name reserved"),
    ],
)
def test_cluster_column_with_another_role(
    overrides: dict[str, Any], message: str, frame: pd.DataFrame
) -> None:
    with pytest.raises(ColumnError, match=message):
        summarize(frame, **{**ROLES, **overrides})


def test_clusters_spanning_cells_are_measured_and_the_shared_part_explains_them(
    frame: pd.DataFrame,
) -> None:
    """The inflation of an experiment's overall effect variance that per-cell covariances
    miss, against a direct computation from per-user influence functions; the shared part
    (shared_cov) explains it, so no warning (tests/test_shared_noise.py has one that fires)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        warnings.filterwarnings("ignore", message=".*" + FEW)
        effects = summarize(frame, **ROLES)
    got = effects.meta["cluster"]["experiment_variance_inflation"]
    want: dict[str, list[float]] = {m: [] for m in METRICS}
    for _, exp in frame.groupby("exp_id"):
        share = exp.groupby("region").size() / len(exp)
        psi = pd.DataFrame(index=exp.index, columns=METRICS, dtype=float)
        for (region, t), arm in exp.groupby(["region", "treated"]):
            sign = 1.0 if t == 1 else -1.0
            psi.loc[arm.index] = (
                sign * share[region] * (arm[METRICS] - arm[METRICS].mean()) / len(arm)
            ).to_numpy()
        joint = psi.groupby(exp["ws"]).sum().pow(2).sum()
        apart = psi.groupby([exp["region"], exp["ws"]]).sum().pow(2).sum()
        for m in METRICS:
            want[m].append(joint[m] / apart[m])
    for m in METRICS:
        assert got[m] == pytest.approx(float(np.median(want[m])), rel=1e-9)
        assert got[m] > 1.3  # workspaces span both regions
        assert 0.9 < effects.meta["cluster"][UNEXPLAINED][m] < 1.1  # (measured 1.037-1.041)
    # Segments of the cluster itself (each workspace in one cell): nothing to warn about.
    nested = frame.assign(region=np.where(frame["ws"] % 2 == 0, "NA", "EU"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        warnings.filterwarnings("ignore", message=".*" + FEW)
        inner = summarize(nested, **ROLES)
    for key in (INFLATION, UNEXPLAINED):
        assert all(v == pytest.approx(1.0, abs=1e-12) for v in inner.meta["cluster"][key].values())
    assert not inner.variable("shared_cov").any()

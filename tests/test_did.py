"""did(): the 2×2 against pyfixest's two-way fixed effects, staggered against loops, the world."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from proxyscope.data.cells import CellEffects
from proxyscope.data.did import did
from proxyscope.errors import ColumnError, DataError, DataTypeError, DataWarning, ParameterError
from proxyscope.simulate.did_config import DidConfig
from proxyscope.simulate.did_world import rollout

METRICS = ["retained", "watch", "rebuffer"]
SIGNS = np.array([1.0, 1.0, -1.0])  # rebuffer is "lower is better"
ROLES: dict[str, Any] = {
    "experiment": "exp_id",
    "unit": "market",
    "period": "week",
    "first_treated": "launch",
    "outcome": "retained",
    "proxies": ["watch", "rebuffer"],
    "directions": {"rebuffer": "lower"},
}
#: pyfixest 0.60 under pandas 3.1 (third-party noise).
PYFIXEST_NOISE = pytest.mark.filterwarnings(
    "ignore:The inplace keyword:pandas.errors.Pandas4Warning:pyfixest"
)
PRETREND = "rejects parallel trends"


def make_panel(
    seed: int,
    *,
    periods: tuple[int, ...] = (10, 11, 12, 13, 14, 15),
    cohorts: tuple[float, ...] = (12, 14, math.nan),
    n_units: int = 36,
    experiments: tuple[Any, ...] = ("a", "b"),
    drift: float = 0.0,
) -> pd.DataFrame:
    """Units in two regions, cohorts drawn from ``cohorts`` (NaN: never treated).

    Unit baselines, a common trend, AR(1) unit shocks shared by the metrics (so
    they co-move), effects that grow with time since treatment and differ by
    region, and ``drift`` per period for treated units (a parallel-trend violation).
    Each market id belongs to a city of four markets (``city``, a cluster column).
    """
    rng = np.random.default_rng(seed)
    rows = []
    for exp in experiments:
        trend = np.cumsum(rng.normal(0, 0.3, (len(periods), 3)), axis=0)
        for u in range(n_units):
            region = "NA" if u % 2 else "EU"
            launch = cohorts[u % len(cohorts)]
            base = rng.normal(size=3) * [1.0, 5.0, 0.02]
            shock = np.zeros(3)
            for k, t in enumerate(periods):
                shock = 0.6 * shock + rng.normal(size=3) * [0.4, 2.0, 0.01]
                common = rng.normal()
                on = not math.isnan(launch) and t >= launch
                lift = (1 + t - launch) * (0.2 if region == "NA" else 0.1) if on else 0.0
                ever = 0.0 if math.isnan(launch) else drift * k
                y = base + trend[k] + shock + common * np.array([0.3, 1.0, 0.005])
                y += np.array([lift, 4 * lift, -0.01 * lift]) + ever * np.array([1.0, 5.0, -0.02])
                rows.append(
                    {
                        "exp_id": exp,
                        "market": f"m{u}",
                        "city": u // 4,
                        "region": region,
                        "week": t,
                        "launch": launch,
                        **dict(zip(METRICS, y, strict=True)),
                    }
                )
    return pd.DataFrame(rows)


def run(panel: pd.DataFrame, **kw: Any) -> CellEffects:
    return did(panel, **{**ROLES, **kw})


def se_of(cells: CellEffects) -> np.ndarray:
    return np.sqrt(np.einsum("cii->ci", cells.noise_cov))


# -- the 2×2 against pyfixest ------------------------------------------------------


def two_by_two(seed: int = 5) -> pd.DataFrame:
    return make_panel(seed, periods=(1, 2), cohorts=(2, math.nan, math.nan), n_units=60)


def feols(pf: Any, formula: str, data: pd.DataFrame, cluster: str) -> tuple[float, float]:
    fit = pf.feols(formula, data=data, vcov={"CRV1": cluster}, ssc=pf.ssc(k_adj=False, G_adj=True))
    return float(fit.coef()["treat_post"]), float(fit.se()["treat_post"])


@PYFIXEST_NOISE
@pytest.mark.parametrize("cluster", [None, "city"])
def test_two_by_two_equals_pyfixest_twfe_crv1(cluster: str | None) -> None:
    pf = pytest.importorskip("pyfixest")
    panel = two_by_two()
    got = run(panel, segments=["region"], cluster=cluster)
    assert got.n_cells == 4 and set(got.design) == {"did"}
    se = se_of(got)
    data = panel.assign(treat_post=(panel["week"] >= panel["launch"]).astype(float))
    cells = got.cells()
    for c in range(got.n_cells):
        cell = data[
            (data["exp_id"] == cells["experiment"][c]) & (data["region"] == cells["region"][c])
        ]
        assert got.data["n_treat"].values[c] == cell.loc[cell["launch"].notna(), "market"].nunique()
        assert (
            got.data["n_control"].values[c] == cell.loc[cell["launch"].isna(), "market"].nunique()
        )
        for k, m in enumerate(METRICS):
            coef, want_se = feols(
                pf, f"{m} ~ treat_post | market + week", cell, cluster or "market"
            )
            assert got.effect[c, k] == pytest.approx(SIGNS[k] * coef, rel=1e-9, abs=1e-12)
            assert se[c, k] == pytest.approx(want_se, rel=1e-9)
        # Cross-metric blocks: Var(a + b) = Var a + Var b + 2 Cov(a, b), from the sum's SE.
        for i, j in ((0, 1), (0, 2), (1, 2)):
            total = cell.assign(both=cell[METRICS[i]] + cell[METRICS[j]])
            _, se_sum = feols(pf, "both ~ treat_post | market + week", total, cluster or "market")
            want = (se_sum**2 - se[c, i] ** 2 - se[c, j] ** 2) / 2 * SIGNS[i] * SIGNS[j]
            assert got.noise_cov[c, i, j] == pytest.approx(want, rel=1e-7, abs=1e-12 * se_sum**2)
    assert abs(got.noise_cov[0, 0, 1]) > 0.1 * se[0, 0] * se[0, 1]  # metrics co-move


# -- staggered adoption against plain loops ------------------------------------------


def reference(cell: pd.DataFrame, control: str) -> dict[str, Any]:
    """Callaway–Sant'Anna "simple" aggregation written with loops over units, groups, periods.

    Weights' influence in CS's own form (``wif``: pg = P(G = g) over all units,
    numerator and denominator terms), influence functions on the sum scale.
    """
    periods = sorted(cell["week"].unique())
    units = sorted(cell["market"].unique())
    y = {(r.market, r.week): np.array([getattr(r, m) for m in METRICS]) for r in cell.itertuples()}
    first = {r.market: r.launch for r in cell.itertuples()}
    group = {u: (math.inf if math.isnan(first[u]) else first[u]) for u in units}
    n = len(units)

    def pairs(pre: bool) -> list[tuple[float, int, int, list[str], list[str]]]:
        out = []
        for g in sorted({v for v in group.values() if v != math.inf}):
            for t in periods:
                if (t < g) != pre or t == periods[0]:
                    continue
                base = periods[periods.index(g) - 1] if t >= g else periods[periods.index(t) - 1]
                treat = [u for u in units if group[u] == g]
                if control == "never":
                    comp = [u for u in units if group[u] == math.inf]
                else:
                    comp = [u for u in units if group[u] > max(t, base) and group[u] != g]
                if len(comp) >= 2:
                    out.append((g, t, base, treat, comp))
        return out

    def aggregate(chosen: list[tuple[float, int, int, list[str], list[str]]]) -> Any:
        att, psi = [], []
        for _, t, base, treat, comp in chosen:
            dt = {u: y[u, t] - y[u, base] for u in treat}
            dc = {u: y[u, t] - y[u, base] for u in comp}
            mt, mc = sum(dt.values()) / len(dt), sum(dc.values()) / len(dc)
            att.append(mt - mc)
            inf = {u: np.zeros(len(METRICS)) for u in units}
            for u in treat:
                inf[u] = (dt[u] - mt) / len(treat)
            for u in comp:
                inf[u] = -(dc[u] - mc) / len(comp)
            psi.append(inf)
        pg = [sum(group[u] == g for u in units) / n for g, *_ in chosen]
        total = sum(pg)
        theta = sum(p * a for p, a in zip(pg, att, strict=True)) / total
        score = {}
        for u in units:
            s = sum(p / total * inf[u] for p, inf in zip(pg, psi, strict=True))
            if1 = [((group[u] == g) - p) / total for (g, *_), p in zip(chosen, pg, strict=True)]
            both = sum((group[u] == g) - p for (g, *_), p in zip(chosen, pg, strict=True))
            wif = [a - both * p / total**2 for a, p in zip(if1, pg, strict=True)]
            score[u] = s + sum(w * a for w, a in zip(wif, att, strict=True)) / n
        used = {u for *_, treat, comp in chosen for u in [*treat, *comp]}
        s = np.array([score[u] for u in sorted(used)])
        return theta, len(used) / (len(used) - 1) * s.T @ s, len(used)

    theta, cov, _ = aggregate(pairs(pre=False))
    pre_mean, pre_cov, g_pre = aggregate(pairs(pre=True))
    t_stat = pre_mean / np.sqrt(np.diag(pre_cov))
    p = 2 * stats.t.sf(np.abs(t_stat), g_pre - 1)
    return {"theta": theta, "cov": cov, "pre": pre_mean, "p": p, "p_cell": min(1, 3 * p.min())}


@pytest.mark.parametrize("control", ["never", "not_yet"])
def test_staggered_equals_loop_reference(control: str) -> None:
    panel = make_panel(11, n_units=40)
    got = run(panel, segments=["region"], control=control)
    cells = got.cells()
    rows = got.meta["did"]["cells"]
    for c in range(got.n_cells):
        cell = panel[
            (panel["exp_id"] == cells["experiment"][c]) & (panel["region"] == cells["region"][c])
        ]
        want = reference(cell, control)
        signs = np.outer(SIGNS, SIGNS)
        scale = np.sqrt(np.outer(np.diag(want["cov"]), np.diag(want["cov"])))
        np.testing.assert_allclose(got.effect[c], SIGNS * want["theta"], rtol=1e-9, atol=1e-12)
        np.testing.assert_array_less(np.abs(got.noise_cov[c] - signs * want["cov"]), 1e-9 * scale)
        assert rows[c]["segment_label"] == cells["region"][c]
        pre = np.array(list(rows[c]["pretrend_effect"].values()))
        np.testing.assert_allclose(pre, want["pre"], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(list(rows[c]["pretrend_p"].values()), want["p"], rtol=1e-8)
        assert rows[c]["pretrend_p_cell"] == pytest.approx(want["p_cell"], rel=1e-8)
        assert rows[c]["cohorts"] == [12, 14]
        # With not_yet, the later cohort serves as comparison for the earlier one.
        compared = cell["launch"].isna() | ((cell["launch"] == 14) & (control == "not_yet"))
        assert got.data["n_control"].values[c] == cell.loc[compared, "market"].nunique()


def test_not_yet_estimates_without_never_treated_units() -> None:
    panel = make_panel(3, cohorts=(12, 14), n_units=40)
    with pytest.raises(DataError, match="no cell has at least min_units"):
        run(panel)
    got = run(panel, control="not_yet")
    # Only the first cohort has comparison units (the second, before it is treated).
    assert got.meta["did"]["cells"][0]["cohorts"] == [12]
    assert (got.data["n_treat"].values == 20).all() and (got.data["n_control"].values == 20).all()


# -- diagnostics, metadata and bad input -------------------------------------------


def test_pretrend_warning_names_cells_with_a_differential_drift() -> None:
    panel = make_panel(7, drift=0.5, n_units=40)
    with pytest.warns(DataWarning, match=PRETREND + r".*\(experiment 'a'"):
        got = run(panel)
    assert got.meta["did"]["pretrend_failing_cells"] == 2
    quiet = run(make_panel(7, n_units=40), pretrend_level=0.01)
    assert all(r["pretrend_p_cell"] > 0.01 for r in quiet.meta["did"]["cells"])


def test_metadata_counts_and_json() -> None:
    panel = make_panel(2)
    panel.loc[panel["market"] == "m2", "launch"] = 10.0  # treated from the first week on
    panel.loc[panel["market"] == "m5", "launch"] = 99.0  # after the last week: never treated
    with pytest.warns(DataWarning, match="no pre-period; they are left out"):
        got = run(panel, cluster="city", pre_periods=1)
    meta = got.meta["did"]
    assert meta["always_treated_units"] == {"a": 1, "b": 1}
    assert meta["late_treated_units"] == {"a": 1, "b": 1}
    assert meta["small_sample_factor"].startswith("CR1: G/(G-1)")
    assert meta["cells"][0]["pre_pairs"] == 2  # one pre-period for each of two cohorts
    assert got.variable("n_clusters_treat").max() <= 9
    assert (got.data["n_treat"].values + got.data["n_control"].values == 35).all()


def test_small_cells_are_dropped_and_reported() -> None:
    panel = pd.concat([make_panel(1), make_panel(2, experiments=("c",), n_units=12)])
    with pytest.warns(DataWarning, match=r"did dropped 2 of 6 cells \(2 below min_units=5\)"):
        got = run(panel, segments=["region"])
    assert list(got.dropped["experiment"]) == ["c", "c"]
    assert list(got.dropped["n_control"]) == [2, 2]
    with pytest.raises(DataError, match="no cell has at least min_units=20"):
        run(panel, min_units=20)
    with pytest.raises(DataError, match="at least 2 clusters of column 'one'"):
        run(panel.assign(one=1), cluster="one")


def test_cluster_spanning_segments_gives_shared_cov() -> None:
    got = run(make_panel(4, n_units=48), segments=["region"], cluster="city")
    shared = got.variable("shared_cov")
    assert "shared_noise" in got.meta["did"]
    assert np.abs(shared).sum() > 0
    assert (np.linalg.eigvalsh(shared) > -1e-12).all()


def test_does_not_modify_the_panel() -> None:
    panel = make_panel(1)
    panel["region"] = panel["region"].astype("category")
    before = panel.copy(deep=True)
    run(panel, segments=["region"])
    pd.testing.assert_frame_equal(panel, before)


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"outcome": "retaind"}, ColumnError, "Did you mean 'retained'"),
        ({"unit": "retained"}, ColumnError, "two roles"),
        ({"control": "not-yet"}, ParameterError, "'control' parameter"),
        ({"min_units": 1}, ParameterError, "'min_units'"),
        ({"pre_periods": 0}, ParameterError, "'pre_periods'"),
        ({"pretrend_level": 1.5}, ParameterError, "'pretrend_level'"),
        ({"directions": {"watch": "up"}}, ParameterError, "directions"),
        ({"segments": ["cell"]}, ColumnError, "reserved"),
    ],
)
def test_bad_arguments(change: dict[str, Any], error: type[Exception], match: str) -> None:
    panel = make_panel(1).assign(cell=1)
    with pytest.raises(error, match=match):
        run(panel, **change)


def edit(panel: pd.DataFrame, how: str) -> pd.DataFrame:
    out = panel.copy()
    first = out.index[0]
    if how == "duplicate":
        return pd.concat([out, out.iloc[[0]]], ignore_index=True)
    if how == "unbalanced":
        return out.drop(index=first)
    if how == "segment":
        out.loc[first, "region"] = "IN"
    elif how == "launch":
        out.loc[first, "launch"] = 15.0
    elif how == "between":
        out.loc[out["market"] == "m0", "launch"] = 12.5
    elif how == "nan":
        out.loc[first, "watch"] = np.nan
    elif how == "inf":
        out.loc[first, "watch"] = np.inf
    elif how == "text":
        out["watch"] = out["watch"].astype(str)
    elif how == "dates":
        out["week"] = pd.to_datetime("2024-01-01") + pd.to_timedelta(out["week"], unit="W")
    elif how == "one":
        out = out[out["exp_id"] == "a"]
    elif how == "one_period":
        out = out[out["week"] == 10]
    return out


@pytest.mark.parametrize(
    ("how", "error", "match"),
    [
        ("duplicate", DataError, "duplicated \\(unit, period\\)"),
        ("unbalanced", DataError, "unbalanced"),
        ("segment", DataError, "'region' \\(given as 'segments'\\) must be fixed within a unit"),
        ("launch", DataError, "'launch' \\(given as 'first_treated'\\) must be fixed"),
        ("between", DataError, "between its periods"),
        ("nan", DataError, "Missing values"),
        ("inf", DataError, "Infinite values"),
        ("text", DataTypeError, "must be numeric"),
        ("dates", DataTypeError, "'week' \\(given as 'period'\\) must hold numbers"),
        ("one", DataError, "at least two experiments"),
        ("one_period", DataError, "single period"),
    ],
)
def test_bad_panels(how: str, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        run(edit(make_panel(1), how), segments=["region"])


def test_not_a_dataframe() -> None:
    with pytest.raises(DataTypeError, match="pandas DataFrame"):
        run(make_panel(1).to_dict())


# -- the simulated rollout world ---------------------------------------------------


def test_world_config_fails_closed() -> None:
    with pytest.raises(ParameterError, match=r"DidConfig\.waves"):
        DidConfig(n_periods=4, waves=(2, 4))
    with pytest.raises(ParameterError, match=r"DidConfig\.never_share"):
        DidConfig(never_share=1.0)
    with pytest.raises(ParameterError, match=r"DidConfig\.n_units: every region needs"):
        DidConfig(n_units=20)
    with pytest.raises(ParameterError, match="Did you mean 'n_units'"):
        rollout(n_unit=5)


def test_world_truth_is_the_weighted_mean_of_group_time_truth() -> None:
    world = rollout(n_experiments=2, n_units=60, seed=3)
    again = rollout(n_experiments=2, n_units=60, seed=3)
    pd.testing.assert_frame_equal(world.panel, again.panel)
    truth = world.truth
    gt = truth["group_time_effect"]
    for exp in (0, 1):
        for region in ("NA", "IN"):
            units = world.units[
                (world.units["experiment"] == exp) & (world.units["region"] == region)
            ]
            n_g = units["first_treated"].value_counts()
            num = sum(
                n_g[g] * gt.sel(experiment=exp, region=region, cohort=g).sum("period")
                for g in (4, 6)
            )
            den = sum(n_g[g] * (8 - g) for g in (4, 6))
            np.testing.assert_allclose(
                truth["cell_effect"].sel(experiment=exp, region=region), num / den, rtol=1e-12
            )
    assert (world.panel["users"] >= 24).all()


def coverage(world: Any, cells: CellEffects) -> np.ndarray:
    """Per cell and metric: is the truth inside the 90% interval?"""
    region = cells.cells()["region"].astype(str)
    truth = world.truth["cell_effect"].sel(
        experiment=xr_index(cells.experiment), region=xr_index(region)
    )
    return np.abs(cells.effect - truth.values) <= 1.6448536269514722 * se_of(cells)


def xr_index(values: Any) -> Any:
    import xarray as xr

    return xr.DataArray(np.asarray(values), dims="cell")


@pytest.mark.slow
def test_world_intervals_hold_the_truth() -> None:
    held = []
    for seed in (1, 2, 3):
        world = rollout(n_experiments=12, seed=seed)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*" + PRETREND, category=DataWarning)
            held.append(coverage(world, did(world.panel, **world.column_roles())))
    rate = np.concatenate(held).mean(axis=0)
    assert ((rate > 0.82) & (rate < 0.97)).all(), rate


def test_world_violation_fires_the_pretrend_check() -> None:
    world = rollout(n_experiments=6, n_units=120, violation=1.0, seed=5)
    with pytest.warns(DataWarning, match=PRETREND):
        got = did(world.panel, **world.column_roles())
    assert got.meta["did"]["pretrend_failing_cells"] >= 0.8 * got.n_cells
    bias = (
        got.effect
        - world.truth["cell_effect"]
        .sel(
            experiment=xr_index(got.experiment), region=xr_index(got.cells()["region"].astype(str))
        )
        .values
    )
    assert (bias[:, 1] > 0).mean() > 0.9  # the drift is taken for an effect

"""did and ipw on every engine: the same rows give the same CellEffects, bit for bit.

The reference is the pandas path on a pandas DataFrame, which tests/test_did.py and
tests/test_ipw.py check against pyfixest, DoubleML and loops. Here DuckDB (on a
DataFrame, an Arrow table, Parquet and CSV files) and Spark (local mode) must give
exactly its effects, covariances, shared covariances, metadata, dropped cells and
warnings, and the same errors with the same messages; DuckDB and Spark must hold
one batch of experiments at a time, never the whole table.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import xarray as xr

from proxyscope.data import design_source
from proxyscope.data.cells import CellEffects
from proxyscope.data.did import did
from proxyscope.data.engines.duckdb_rows import DuckDBRows
from proxyscope.data.ipw import ipw
from proxyscope.errors import ColumnError, DataError, DataTypeError, ParameterError
from proxyscope.simulate.did_world import rollout
from proxyscope.simulate.optin_world import optin

Result = tuple[CellEffects, list[str]]


def run(fn: Callable[..., CellEffects], *args: Any, **kwargs: Any) -> Result:
    """The CellEffects and the text of every warning the call gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = fn(*args, **kwargs)
    return got, [str(w.message) for w in caught]


def assert_same(got: Result, want: Result, engine: str) -> None:
    """Every array equal bit for bit, the same metadata, dropped cells and warnings."""
    (g, g_warn), (w, w_warn) = got, want
    assert g.meta["engine"] == engine and w.meta["engine"] == "pandas"
    xr.testing.assert_identical(g.data.drop_attrs(), w.data.drop_attrs())
    g_meta, w_meta = g.meta, w.meta
    g_meta.pop("engine"), w_meta.pop("engine")
    assert g_meta == w_meta
    pd.testing.assert_frame_equal(g.dropped, w.dropped)
    assert g_warn == w_warn


def error_of(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[type, str]:
    """The class and message of the error ``fn`` raises (warnings on the way ignored)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(Exception) as info:  # the class is compared by the caller
            fn(*args, **kwargs)
    return type(info.value), str(info.value)


# -- the rollout world, read by did ------------------------------------------------------

#: Staggered rollouts read two ways: with a cluster column spanning the segment cells
#: (shared_cov; some cells fail the pre-trend test), and with cells dropped below min_units.
DID_SETTINGS: dict[str, dict[str, Any]] = {
    "shared": {"cluster": "city", "control": "not_yet"},
    "dropped": {"min_units": 12, "control": "not_yet"},
}


@pytest.fixture(scope="module")
def did_world() -> Any:
    return rollout(n_experiments=4, n_units=90, n_periods=6, waves=(2, 4), seed=3)


@pytest.fixture(scope="module")
def panel(did_world: Any) -> pd.DataFrame:
    """The world's panel with cities of three markets, its rows shuffled (so experiments,
    units and periods interleave: the layout must not depend on the row order)."""
    p = did_world.panel.assign(city=lambda d: "c" + (d["unit"] // 3).astype(str))
    return p.sample(frac=1.0, random_state=7).reset_index(drop=True)


@pytest.fixture(scope="module")
def did_roles(did_world: Any) -> dict[str, Any]:
    return {**did_world.column_roles(), **DID_SETTINGS["shared"]}


@pytest.fixture(scope="module", params=list(DID_SETTINGS))
def did_case(request: pytest.FixtureRequest, did_world: Any, panel: pd.DataFrame) -> Any:
    """(roles, the pandas result) of each setting."""
    roles = {**did_world.column_roles(), **DID_SETTINGS[request.param]}
    got = run(did, panel, **roles)
    if request.param == "shared":
        assert "shared_cov" in got[0].data
        assert any("rejects parallel trends" in w for w in got[1])
    else:
        assert len(got[0].dropped) == 8
        assert any("did dropped 8 of 16 cells" in w for w in got[1])
    return roles, got


def test_did_pandas_layout_ignores_row_order(panel: pd.DataFrame, did_case: Any) -> None:
    """Rows sorted by (experiment, unit, period) or shuffled: the same bits."""
    roles, want = did_case
    ordered = panel.sort_values(["exp_id", "unit", "period"], ignore_index=True)
    got = run(did, ordered, **roles)
    xr.testing.assert_identical(got[0].data, want[0].data)
    assert got[1] == want[1]


@pytest.mark.parametrize("form", ["frame", "arrow", "parquet_glob", "csv"])
def test_did_duckdb_is_pandas(
    form: str, panel: pd.DataFrame, did_case: Any, tmp_path: Path
) -> None:
    roles, want = did_case
    if form == "frame":
        data: Any = panel
    elif form == "arrow":
        data = pa.Table.from_pandas(panel, preserve_index=False)
    elif form == "parquet_glob":
        for i, part in enumerate(np.array_split(np.arange(len(panel)), 3)):
            panel.iloc[part].to_parquet(tmp_path / f"part-{i}.parquet", index=False)
        data = str(tmp_path / "*.parquet")
    else:
        panel.to_csv(tmp_path / "panel.csv", index=False)
        data = tmp_path / "panel.csv"
    before = panel.copy(deep=True)
    assert_same(run(did, data, engine="duckdb", **roles), want, "duckdb")
    pd.testing.assert_frame_equal(panel, before)  # never mutated


def test_did_pandas_engine_reads_files(panel: pd.DataFrame, did_case: Any, tmp_path: Path) -> None:
    roles, want = did_case
    panel.to_parquet(tmp_path / "panel.parquet", index=False)
    assert_same(run(did, tmp_path / "panel.parquet", engine="pandas", **roles), want, "pandas")
    default = run(did, str(tmp_path / "panel.parquet"), **roles)  # paths: DuckDB by default
    assert_same(default, want, "duckdb")


def test_did_duckdb_fetches_one_batch_at_a_time(
    panel: pd.DataFrame, did_case: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches of at most 600 rows (experiments of 540): four fetches of one experiment
    each; of at most 1100: two of two. The same bits either way."""
    roles, want = did_case
    fetched: list[int] = []
    original = DuckDBRows.fetch

    def spy(self: DuckDBRows, *args: Any, **kwargs: Any) -> Any:
        table = original(self, *args, **kwargs)
        fetched.append(table.num_rows)
        return table

    monkeypatch.setattr(DuckDBRows, "fetch", spy)
    monkeypatch.setattr(design_source, "BATCH_ROWS", 600)
    assert_same(run(did, panel, engine="duckdb", **roles), want, "duckdb")
    assert fetched == [540] * 4
    fetched.clear()
    monkeypatch.setattr(design_source, "BATCH_ROWS", 1100)
    assert_same(run(did, panel, engine="duckdb", **roles), want, "duckdb")
    assert fetched == [1080] * 2


def test_batches_hold_at_most_the_limit() -> None:
    assert design_source.batches([3, 3, 3, 10, 1, 1], 6) == [(0, 1), (2, 2), (3, 3), (4, 5)]
    assert design_source.batches([], 6) == []
    assert design_source.batches([7], 6) == [(0, 0)]


@pytest.mark.spark
@pytest.mark.slow  # about 40 s in local mode on 2 cores, most of it Spark's start and jobs
def test_did_spark_is_pandas(
    panel: pd.DataFrame, did_case: Any, spark: Any, tmp_path: Path
) -> None:
    roles, want = did_case
    assert_same(run(did, spark.createDataFrame(panel), **roles), want, "spark")
    panel.to_parquet(tmp_path / "panel.parquet", index=False)
    got = run(did, str(tmp_path / "panel.parquet"), engine="spark", spark=spark, **roles)
    assert_same(got, want, "spark")


# -- errors: the same class and message on every engine ------------------------------------


def _broken(panel: pd.DataFrame, how: str) -> pd.DataFrame:
    """A panel with one defect; the rows keep the shuffled order."""
    out = panel.copy()
    unit0 = out["unit"] == 275  # of experiment 3 (units 270-359)
    if how == "duplicate":
        return pd.concat([out, out[unit0].iloc[[1]]], ignore_index=True)
    if how == "unbalanced":
        return out.drop(index=out.index[unit0][2])
    if how == "segment":
        at = out.index[unit0][0]
        out.loc[at, "region"] = next(
            r for r in out["region"].cat.categories if r != out.at[at, "region"]
        )
    elif how == "between":
        out.loc[unit0, "first_treated"] = 2.5
    elif how == "missing":
        out.loc[out.index[3], "early_ctr"] = np.nan
    elif how == "infinite":
        out.loc[out.index[3], "early_ctr"] = -np.inf
    elif how == "single_period":
        out = out[out["period"] == 3]
    elif how == "one_experiment":
        out = out[out["exp_id"] == 1]
    elif how == "column":
        out = out.drop(columns="region")
    return out


DID_ERRORS = [
    (
        "duplicate",
        DataError,
        r"1 duplicated \(unit, period\) row\(s\) in experiment 3, e.g. unit 275",
    ),
    ("unbalanced", DataError, r"unbalanced: 1 unit\(s\) of experiment 3 .* unit 275 .*\(5 of 6\)"),
    ("segment", DataError, "'region' .* must be fixed within a unit .* 1 unit.*: unit 275 of exp"),
    ("between", DataError, "experiment 3 has 1 unit.* with a value between its periods, e.g. 2.5"),
    ("missing", DataError, r"Missing values \(NaN/None\) in the panel: 'early_ctr' \(proxies\): 1"),
    ("infinite", DataError, r"Infinite values in the panel: 'early_ctr' \(proxies\): 1 rows"),
    ("single_period", DataError, "has a single period"),
    ("one_experiment", DataError, "at least two experiments; found 1"),
    ("column", ColumnError, r"Column 'region' \(given as 'segments'\) is not in the panel"),
]


@pytest.mark.parametrize(("how", "error", "match"), DID_ERRORS)
def test_did_errors_are_the_same_on_every_engine(
    how: str,
    error: type[Exception],
    match: str,
    panel: pd.DataFrame,
    did_roles: dict[str, Any],
    tmp_path: Path,
) -> None:
    bad = _broken(panel, how)
    want = error_of(did, bad, **did_roles)
    assert want[0] is error
    assert re.search(match, want[1]), want[1]
    bad.to_parquet(tmp_path / "bad.parquet", index=False)
    assert error_of(did, bad, engine="duckdb", **did_roles) == want
    assert error_of(did, str(tmp_path / "bad.parquet"), **did_roles) == want


@pytest.mark.spark
def test_did_errors_on_spark(panel: pd.DataFrame, did_roles: dict[str, Any], spark: Any) -> None:
    for how in ("duplicate", "unbalanced", "segment", "column"):
        bad = _broken(panel, how)
        assert error_of(did, spark.createDataFrame(bad), **did_roles) == error_of(
            did, bad, **did_roles
        )


def test_type_errors_name_the_column_on_every_engine(
    panel: pd.DataFrame, did_roles: dict[str, Any]
) -> None:
    text = panel.assign(early_ctr=panel["early_ctr"].astype(str))
    dates = panel.assign(period=pd.Timestamp("2025-01-06") + pd.to_timedelta(panel["period"], "W"))
    for engine in ("pandas", "duckdb"):
        with pytest.raises(DataTypeError, match=r"'early_ctr' \(given as 'proxies'\) must be num"):
            did(text, engine=engine, **did_roles)
        with pytest.raises(DataTypeError, match=r"'period' \(given as 'period'\) must hold num"):
            did(dates, engine=engine, **did_roles)


# -- the opt-in world, read by ipw -----------------------------------------------------


@pytest.fixture(scope="module")
def optin_world() -> Any:
    return optin(n_experiments=3, users_per_experiment=1200, seed=2)


@pytest.fixture(scope="module")
def users(optin_world: Any) -> pd.DataFrame:
    """Opt-in users with teams (a cluster spanning the segment cells), rows shuffled so
    that experiments interleave: cells and folds follow the rows' order."""
    out = optin_world.users.assign(team=np.arange(len(optin_world.users)) % 61)
    return out.sample(frac=1.0, random_state=3).reset_index(drop=True)


@pytest.fixture(scope="module")
def ipw_roles(optin_world: Any) -> dict[str, Any]:
    return {**optin_world.column_roles(), "cluster": "team"}


@pytest.fixture(scope="module")
def ipw_reference(users: pd.DataFrame, ipw_roles: dict[str, Any]) -> Result:
    got = run(ipw, users, **ipw_roles)
    assert "shared_cov" in got[0].data
    return got


@pytest.mark.parametrize("form", ["frame", "arrow", "parquet_list", "csv"])
def test_ipw_duckdb_is_pandas(
    form: str,
    users: pd.DataFrame,
    ipw_roles: dict[str, Any],
    ipw_reference: Result,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Files in the order given (not sorted by name), batches of one experiment."""
    monkeypatch.setattr(design_source, "BATCH_ROWS", 1000)
    if form == "frame":
        data: Any = users
    elif form == "arrow":
        data = pa.Table.from_pandas(users, preserve_index=False)
    elif form == "parquet_list":
        data = []
        for name, part in zip("cab", np.array_split(np.arange(len(users)), 3), strict=True):
            users.iloc[part].to_parquet(tmp_path / f"{name}.parquet", index=False)
            data.append(tmp_path / f"{name}.parquet")
    else:
        users.to_csv(tmp_path / "users.csv", index=False)
        data = str(tmp_path / "users.csv")
    assert_same(run(ipw, data, engine="duckdb", **ipw_roles), ipw_reference, "duckdb")


def test_ipw_without_clusters_or_segments(users: pd.DataFrame, ipw_roles: dict[str, Any]) -> None:
    roles = {**ipw_roles, "cluster": None, "segments": [], "estimand": "att"}
    want = run(ipw, users, **roles)
    assert_same(run(ipw, users, engine="duckdb", **roles), want, "duckdb")


IPW_ERRORS: list[tuple[Callable[[pd.DataFrame], pd.DataFrame], type, str]] = [
    (lambda u: u.drop(columns="prior_starts"), ColumnError, "'prior_starts' .* not in the data"),
    (lambda u: u.assign(early_ctr=u.early_ctr.where(u.index != 4)), DataError, "Missing values"),
    (lambda u: u.assign(prior_starts=np.inf), DataError, "Infinite values"),
    (lambda u: u.assign(opt_in=np.where(u.exp_id == 1, 1, u.opt_in)), DataError, "only one arm"),
    (lambda u: u[u.exp_id == 2], DataError, "at least two experiments"),
    (lambda u: u.assign(opt_in=u.index % 3), DataError, "exactly two values"),
    (lambda u: u.iloc[:0], DataError, "is empty"),
]


@pytest.mark.parametrize(("edit", "error", "match"), IPW_ERRORS)
def test_ipw_errors_are_the_same_on_both_engines(
    edit: Callable[[pd.DataFrame], pd.DataFrame],
    error: type,
    match: str,
    users: pd.DataFrame,
    ipw_roles: dict[str, Any],
) -> None:
    bad = edit(users)
    want = error_of(ipw, bad, **ipw_roles)
    assert want[0] is error
    assert re.search(match, want[1]), want[1]
    assert error_of(ipw, bad, engine="duckdb", **ipw_roles) == want


# -- engine arguments ------------------------------------------------------------------


def test_engine_arguments_are_checked(panel: pd.DataFrame, did_roles: dict[str, Any]) -> None:
    with pytest.raises(ParameterError, match="'memory_limit' and 'threads' parameters of did"):
        did(panel, engine="pandas", threads=2, **did_roles)
    with pytest.raises(ParameterError, match="'spark' parameter of did applies to engine='spark'"):
        did(panel, engine="duckdb", spark=object(), **did_roles)
    with pytest.raises(ParameterError, match="'engine' parameter of did must be one of"):
        did(panel, engine="polars", **did_roles)
    with pytest.raises(ParameterError, match="'threads' parameter of did must be a positive"):
        did(panel, engine="duckdb", threads=0, **did_roles)
    with pytest.raises(DataTypeError, match="with engine='spark' must be a pyspark"):
        did(panel, engine="spark", **did_roles)
    with pytest.raises(DataTypeError, match="'data' parameter of did must be a pandas DataFrame"):
        did(panel.to_dict(), **did_roles)
    with pytest.raises(ParameterError, match="write the Spark DataFrame to Parquet"):
        ipw(
            panel,
            engine="spark",
            experiment="exp_id",
            treatment="t",
            outcome="y",
            proxies="z",
            covariates="x",
        )

"""Every bad input to summarize gets a clear error, on every engine it applies to.

Each message names the parameter or column, what was expected and what was
found; the caller's DataFrame is left exactly as it was, error or not.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import ENGINES, ROLES, make_users

from proxyscope.data import summarize
from proxyscope.errors import (
    ColumnError,
    DataError,
    DataTypeError,
    ParameterError,
    ProxyscopeError,
)


@pytest.fixture(scope="module")
def base() -> pd.DataFrame:
    return make_users(n=400, seed=2)


def _set(column: str, rows: Any, value: Any) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def edit(frame: pd.DataFrame) -> pd.DataFrame:
        out = frame.copy()
        if value is None and out[column].dtype.kind in "iu":
            out[column] = out[column].astype(float)
        out.loc[rows, column] = value
        return out

    return edit


def _assign(**cols: Callable[[pd.DataFrame], Any]) -> Callable[[pd.DataFrame], pd.DataFrame]:
    return lambda frame: frame.assign(**{k: f(frame) for k, f in cols.items()})


# name: (edit of the data, override of the arguments, error class, message pattern)
DATA_CASES: dict[str, tuple[Any, dict[str, Any], type[Exception], str]] = {
    "misspelled_column": (
        None,
        {"proxies": ["watch_mins", "starts", "ctr", "rebuffer"]},
        ColumnError,
        r"Column 'watch_mins' \(given as 'proxies'\) is not in the data\. "
        r"Did you mean 'watch_min'\? Available columns: 'exp_id'",
    ),
    "missing_segment": (
        None,
        {"segments": ["region", "tenure"]},
        ColumnError,
        r"Column 'tenure' \(given as 'segments'\) is not in the data",
    ),
    "non_numeric_metric": (
        _assign(ctr=lambda f: np.where(f.index == 7, "n/a", f["ctr"].astype(str))),
        {},
        DataTypeError,
        r"Column 'ctr' \(given as 'proxies'\) must be numeric or boolean; found type "
        r".+ \(e\.g\. the value 'n/a'\)",
    ),
    "treatment_three_values": (
        _set("treatment", [0, 1, 2], 2),
        {},
        DataError,
        r"Column 'treatment' \(given as 'treatment'\) must hold exactly two values "
        r"\(control and treatment\); found 3 values",
    ),
    "treatment_one_value": (
        _assign(treatment=lambda f: np.ones(len(f), dtype=np.int64)),
        {},
        DataError,
        r"must hold exactly two values \(control and treatment\); found only one value, 1",
    ),
    "treatment_not_inferable": (
        _assign(treatment=lambda f: np.where(f["treatment"] == 1, "B", "A")),
        {},
        ParameterError,
        r"Cannot tell which value of column 'treatment' is the treatment: found "
        r"\['[AB]', '[AB]'\]; pass treated_value= one of them",
    ),
    "treated_value_absent": (
        None,
        {"treated_value": 5},
        ParameterError,
        r"The 'treated_value' parameter of summarize must be one of the values of column "
        r"'treatment': \[[01], [01]\]\. Got 5 instead",
    ),
    "experiment_with_one_arm": (
        lambda f: f.assign(treatment=np.where(f["exp_id"] == 23, 1, f["treatment"])),
        {},
        DataError,
        r"1 experiment\(s\) in column 'exp_id' have only one arm \(one value of "
        r"'treatment'\): \[23\]",
    ),
    "infinite_metric": (
        _set("watch_min", [0, 5], np.inf),
        {},
        DataError,
        r"Infinite values in the data: 'watch_min' \(proxies\): 2 rows; expected finite",
    ),
    "nan_metric": (
        _set("ctr", [0, 1, 2], np.nan),
        {},
        DataError,
        r"Missing values \(NaN/NULL\) in the data: 'ctr' \(proxies\): 3 rows; expected none\. "
        r"Pass dropna=True",
    ),
    "null_segment": (
        _set("region", [3, 4], None),
        {},
        DataError,
        r"Missing values \(NaN/NULL\) in the data: 'region' \(segments\): 2 rows",
    ),
    "null_experiment": (
        _set("exp_id", [3], None),
        {},
        DataError,
        r"Missing values \(NaN/NULL\) in the data: 'exp_id' \(experiment\): 1 rows",
    ),
    "empty": (
        lambda f: f.iloc[:0],
        {},
        DataError,
        r"The data passed to summarize is empty: it has no rows",
    ),
    "one_experiment": (
        _assign(exp_id=lambda f: np.full(len(f), 3)),
        {},
        DataError,
        r"Column 'exp_id' \(given as 'experiment'\) must hold at least two experiments; "
        r"found 1 \[3\]",
    ),
    "every_cell_too_small": (
        None,
        {"min_users_per_arm": 1000},
        DataError,
        r"no cell has at least min_users_per_arm=1000 users in both arms",
    ),
}


def _spark_input(spark: Any, frame: pd.DataFrame) -> Any:
    if len(frame) == 0:
        return spark.createDataFrame(make_users(n=20)).limit(0)
    return spark.createDataFrame(frame)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", list(DATA_CASES))
def test_bad_data(
    case: str, engine: str, base: pd.DataFrame, request: pytest.FixtureRequest
) -> None:
    edit, override, exc, pattern = DATA_CASES[case]
    frame = edit(base) if edit is not None else base.copy()
    before = copy.deepcopy(frame)
    data: Any = frame
    if engine == "spark":
        data = _spark_input(request.getfixturevalue("spark"), frame)
    args = {**ROLES, **override}
    with pytest.raises(exc, match=pattern) as info:
        if case == "every_cell_too_small":
            with pytest.warns(Warning):
                summarize(data, engine=engine, **args)
        else:
            summarize(data, engine=engine, **args)
    pd.testing.assert_frame_equal(frame, before)
    message = str(info.value)
    assert "\n" not in message
    assert isinstance(info.value, ValueError | TypeError)
    assert isinstance(info.value, ProxyscopeError)


# -- wrong input type for the engine ---------------------------------------------


@pytest.mark.parametrize(
    ("engine", "data", "pattern"),
    [
        ("pandas", {"exp_id": [1]}, r"engine='pandas' must be a pandas DataFrame or "),
        ("duckdb", np.zeros((3, 3)), r"engine='duckdb' must be a pandas DataFrame, a pyarrow "),
        ("spark", None, r"engine='spark' must be a pyspark\.sql\.DataFrame .*; got "),
    ],
)
def test_wrong_input_type(engine: str, data: Any, pattern: str, base: pd.DataFrame) -> None:
    if data is None:
        data = base  # a pandas DataFrame is not a Spark input
    before = copy.deepcopy(base)
    with pytest.raises(DataTypeError, match=pattern):
        summarize(data, engine=engine, **ROLES)
    pd.testing.assert_frame_equal(base, before)


@pytest.mark.spark
@pytest.mark.parametrize("engine", ["pandas", "duckdb"])
def test_spark_frame_to_in_process_engine(engine: str, base: pd.DataFrame, spark: Any) -> None:
    sdf = spark.createDataFrame(base.iloc[:50])
    with pytest.raises(DataTypeError, match=r"got pyspark\.DataFrame\. Use engine='spark'"):
        summarize(sdf, engine=engine, **ROLES)


# -- arguments (checked before any data is read) ---------------------------------

ARG_CASES: dict[str, tuple[dict[str, Any], type[Exception], str]] = {
    "two_roles": (
        {"segments": ["region", "ctr"]},
        ColumnError,
        r"Column 'ctr' is given two roles: it appears as 'proxies' and 'segments'",
    ),
    "outcome_also_proxy": (
        {"proxies": ["retained", "ctr"]},
        ColumnError,
        r"Column 'retained' is given two roles: it appears as 'outcome' and 'proxies'",
    ),
    "proxy_twice": (
        {"proxies": ["ctr", "ctr"]},
        ColumnError,
        r"Column 'ctr' is given two roles: it appears twice in 'proxies'",
    ),
    "no_proxies": (
        {"proxies": []},
        ParameterError,
        r"The 'proxies' parameter of summarize needs at least one column name",
    ),
    "unknown_direction": (
        {"directions": {"rebuffer": "lowr"}},
        ParameterError,
        r"The \"directions\['rebuffer'\]\" parameter of summarize must be one of "
        r"\{'higher', 'lower'\}\. Got 'lowr' instead\. Did you mean 'lower'\?",
    ),
    "direction_for_unknown_proxy": (
        {"directions": {"rebufer": "lower"}},
        ParameterError,
        r"The 'directions' parameter of summarize names 'rebufer', which is not a proxy; .*"
        r"Did you mean 'rebuffer'\?",
    ),
    "min_users_below_two": (
        {"min_users_per_arm": 1},
        ParameterError,
        r"The 'min_users_per_arm' parameter of summarize must be an integer >= 2 .*"
        r"Got 1 instead",
    ),
    "reserved_segment_name": (
        {"segments": ["metric"]},
        ColumnError,
        r"Segment column 'metric' has a name reserved by CellEffects",
    ),
    "dropna_not_bool": (
        {"dropna": "yes"},
        DataTypeError,
        r"The 'dropna' parameter of summarize must be True or False; got 'yes'",
    ),
}


@pytest.mark.parametrize("engine", ["pandas", "duckdb", "spark"])
@pytest.mark.parametrize("case", list(ARG_CASES))
def test_bad_arguments(case: str, engine: str, base: pd.DataFrame) -> None:
    # Raised before the data is looked at, so a pandas frame serves every engine.
    override, exc, pattern = ARG_CASES[case]
    before = copy.deepcopy(base)
    with pytest.raises(exc, match=pattern):
        summarize(base, engine=engine, **{**ROLES, **override})
    pd.testing.assert_frame_equal(base, before)


def test_unknown_engine(base: pd.DataFrame) -> None:
    with pytest.raises(
        ParameterError,
        match=re.escape(
            "The 'engine' parameter of summarize must be one of {'duckdb', 'pandas', 'spark'}. "
            "Got 'duckbd' instead. Did you mean 'duckdb'?"
        ),
    ):
        summarize(base, engine="duckbd", **ROLES)


def test_duckdb_options_on_other_engines(base: pd.DataFrame) -> None:
    with pytest.raises(ParameterError, match=r"apply to engine='duckdb' only; got engine='pandas'"):
        summarize(base, engine="pandas", memory_limit="1GB", **ROLES)


def test_bad_memory_limit(base: pd.DataFrame) -> None:
    with pytest.raises(ParameterError, match=r"DuckDB rejected memory_limit='lots'"):
        summarize(base, memory_limit="lots", **ROLES)


# -- paths ----------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["pandas", "duckdb"])
def test_bad_paths(engine: str, tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match=r"no file or directory at '.*nope\.parquet'"):
        summarize(str(tmp_path / "nope.parquet"), engine=engine, **ROLES)
    with pytest.raises(ParameterError, match=r"the glob '.*\*\.parquet' matches no file"):
        summarize(str(tmp_path / "*.parquet"), engine=engine, **ROLES)
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ParameterError, match=r"must name Parquet .* or CSV .* files; got"):
        summarize(str(tmp_path / "x.json"), engine=engine, **ROLES)


@pytest.mark.parametrize("engine", ["pandas", "duckdb"])
def test_nan_in_parquet_file(engine: str, tmp_path: Path, base: pd.DataFrame) -> None:
    # Parquet keeps NaN distinct from NULL: both count as missing.
    frame = base.copy()
    frame.loc[[0, 1], "ctr"] = np.nan
    frame.loc[[2], "ctr"] = None
    path = tmp_path / "nan.parquet"
    frame.to_parquet(path, index=False)
    with pytest.raises(DataError, match=r"'ctr' \(proxies\): 3 rows"):
        summarize(str(path), engine=engine, **ROLES)
    with pytest.warns(Warning, match=r"dropped 3 of 400 rows"):
        got = summarize(str(path), engine=engine, dropna=True, **ROLES)
    assert got.meta["dropna"]["missing_by_column"] == {"ctr": 3}


def test_csv_with_text_in_a_metric(tmp_path: Path, base: pd.DataFrame) -> None:
    frame = base.astype({"starts": object})
    frame.loc[4, "starts"] = "many"
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataTypeError, match=r"Column 'starts' .* the value 'many'"):
        summarize(str(path), **ROLES)

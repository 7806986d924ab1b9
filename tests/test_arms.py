"""CellEffects.from_arm_summaries: per-arm statistics in, the same object out."""

from __future__ import annotations

import copy
import itertools
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import ROLES, make_users

from proxyscope import dims
from proxyscope.data import CellEffects, from_arm_summaries, summarize
from proxyscope.errors import (
    ColumnError,
    DataError,
    DataTypeError,
    DataWarning,
    ParameterError,
)

METRICS = [ROLES["outcome"], *ROLES["proxies"]]
KEYS = ["exp_id", *ROLES["segments"], "treatment"]


def arm_table(users: pd.DataFrame) -> pd.DataFrame:
    """Per-arm count / mean / variance / covariances, computed with plain pandas."""
    rows = []
    for key, g in users.groupby(KEYS, sort=False):
        row = dict(zip(KEYS, key, strict=True))
        row["n"] = len(g)
        for m in METRICS:
            row[f"mean_{m}"] = g[m].mean()
            row[f"var_{m}"] = g[m].var(ddof=1)
        for a, b in itertools.combinations(METRICS, 2):
            row[f"cov_{a}_{b}"] = g[a].cov(g[b])
        rows.append(row)
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def users() -> pd.DataFrame:
    # No 1e9 offset here: a per-arm mean near 1e9 is already rounded in the
    # table, so its difference keeps only ~7 digits whatever reads it.
    return make_users(offset=0.0)


def from_table(table: pd.DataFrame, **over: Any) -> CellEffects:
    metrics = [over.get("outcome", ROLES["outcome"]), *over.get("proxies", ROLES["proxies"])]
    args: dict[str, Any] = {
        "experiment": "exp_id",
        "arm": "treatment",
        "treated_value": 1,
        "outcome": ROLES["outcome"],
        "proxies": ROLES["proxies"],
        "segments": ROLES["segments"],
        "directions": ROLES["directions"],
        "count": "n",
        "mean": {m: f"mean_{m}" for m in metrics},
        "variance": {m: f"var_{m}" for m in metrics},
        "covariance": {(a, b): f"cov_{a}_{b}" for a, b in itertools.combinations(metrics, 2)},
    }
    args.update(over)
    return CellEffects.from_arm_summaries(table, **args)


def test_matches_summarize_when_covariances_are_given(users: pd.DataFrame) -> None:
    table = arm_table(users)
    before = copy.deepcopy(table)
    got = from_table(table)
    pd.testing.assert_frame_equal(table, before)
    ref = summarize(users, **ROLES)
    pd.testing.assert_frame_equal(got.cells(), ref.cells())
    np.testing.assert_array_equal(got.data[dims.N_TREAT], ref.data[dims.N_TREAT])
    np.testing.assert_array_equal(got.data[dims.N_CONTROL], ref.data[dims.N_CONTROL])
    np.testing.assert_allclose(got.effect, ref.effect, rtol=1e-9)
    scale = np.sqrt(np.einsum("cii,cjj->cij", ref.noise_cov, ref.noise_cov))
    assert np.all(np.abs(got.noise_cov - ref.noise_cov) <= 1e-9 * scale)
    assert got.assumed_correlation is None
    assert "ASSUMED" not in repr(got)
    assert got.meta["engine"] == "arm_summaries"


def test_function_and_classmethod_agree(users: pd.DataFrame) -> None:
    table = arm_table(users)
    args: dict[str, Any] = {
        "experiment": "exp_id",
        "arm": "treatment",
        "treated_value": 1,
        "outcome": "retained",
        "proxies": ["ctr"],
        "count": "n",
        "mean": {"retained": "mean_retained", "ctr": "mean_ctr"},
        "variance": {"retained": "var_retained", "ctr": "var_ctr"},
        "segments": ["region", "device"],
    }
    a = from_arm_summaries(table, **args)
    b = CellEffects.from_arm_summaries(table, **args)
    assert a.fingerprint() == b.fingerprint()


def _hand_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "exp": ["e1", "e1", "e2", "e2"],
            "arm": ["treatment", "control"] * 2,
            "n_y": [400, 380, 900, 910],
            "n_x": [100, 95, 300, 290],
            "y": [0.52, 0.50, 0.61, 0.60],
            "x": [12.0, 11.0, 9.5, 9.9],
            "vy": [0.25, 0.24, 0.23, 0.24],
            "vx": [16.0, 15.0, 9.0, 8.0],
        }
    )


def test_assumed_correlation_by_hand() -> None:
    table = _hand_table()
    got = CellEffects.from_arm_summaries(
        table,
        experiment="exp",
        arm="arm",
        treated_value="treatment",
        outcome="y",
        proxies=["x"],
        count={"y": "n_y", "x": "n_x"},
        mean={"y": "y", "x": "x"},
        variance={"y": "vy", "x": "vx"},
        correlation=0.3,
    )
    assert list(got.experiment) == ["e1", "e2"]
    # Experiment e1: nested samples, so Cov(mean_y, mean_x) = rho * sd_y * sd_x / max(n_y, n_x).
    cov_t = 0.3 * math.sqrt(0.25 * 16.0) / 400
    cov_c = 0.3 * math.sqrt(0.24 * 15.0) / 380
    want = np.array(
        [
            [0.25 / 400 + 0.24 / 380, cov_t + cov_c],
            [cov_t + cov_c, 16.0 / 100 + 15.0 / 95],
        ]
    )
    np.testing.assert_allclose(got.noise_cov[0], want, rtol=1e-14)
    np.testing.assert_allclose(got.effect[0], [0.52 - 0.50, 12.0 - 11.0], rtol=1e-12)
    assert got.data[dims.N_TREAT].values.tolist() == [400, 900]
    assert got.data[dims.N_CONTROL].values.tolist() == [380, 910]
    assert got.assumed_correlation == {"y|x": 0.3}
    assert got.meta["assumed_correlation"] == {"y|x": 0.3}
    assert "ASSUMED noise correlations (not estimated): y|x: 0.3" in repr(got)


def test_default_assumed_correlation_is_zero_and_recorded() -> None:
    got = CellEffects.from_arm_summaries(
        _hand_table(),
        experiment="exp",
        arm="arm",
        treated_value="treatment",
        outcome="y",
        proxies=["x"],
        count="n_y",
        mean={"y": "y", "x": "x"},
        variance={"y": "vy", "x": "vx"},
        directions={"x": "lower"},
    )
    assert got.assumed_correlation == {"y|x": 0.0}
    assert "y|x: 0" in repr(got)
    np.testing.assert_array_equal(got.noise_cov[:, 0, 1], [0.0, 0.0])
    np.testing.assert_allclose(got.effect[:, 1], [-(12.0 - 11.0), -(9.5 - 9.9)], rtol=1e-12)


def test_correlation_per_pair_and_covariance_columns_mix(users: pd.DataFrame) -> None:
    table = arm_table(users)
    given = {("retained", "watch_min"): "cov_retained_watch_min"}
    got = from_table(
        table,
        proxies=["watch_min", "ctr"],
        directions=None,
        covariance=given,
        correlation={("ctr", "watch_min"): 0.25},
    )
    assert got.assumed_correlation == {"retained|ctr": 0.0, "watch_min|ctr": 0.25}
    ref = summarize(users, **{**ROLES, "proxies": ["watch_min", "ctr"], "directions": None})
    np.testing.assert_allclose(got.noise_cov[:, 0, 1], ref.noise_cov[:, 0, 1], rtol=1e-9)
    np.testing.assert_array_equal(got.noise_cov[:, 0, 2], 0.0)


def test_one_arm_cell_dropped_and_reported(users: pd.DataFrame) -> None:
    table = arm_table(users)
    lonely = (table["exp_id"] == 3) & (table["region"] == "EU") & (table["device"] == "TV")
    table = table[~(lonely & (table["treatment"] == 0))]
    with pytest.warns(DataWarning, match=r"dropped 1 of 12 cells \(1 one arm missing\)"):
        got = from_table(table)
    assert got.n_cells == 11
    assert got.dropped.iloc[0]["reason"] == "one arm missing"


def test_dropna(users: pd.DataFrame) -> None:
    table = arm_table(users)
    table.loc[0, "mean_ctr"] = np.nan
    with pytest.raises(DataError, match=r"Missing values \(NaN/NULL\) in the arm table: "):
        from_table(table)
    with pytest.warns(DataWarning):
        got = from_table(table, dropna=True)
    assert got.meta["dropna"]["rows_dropped"] == 1
    assert got.n_cells == 11


BAD: dict[str, tuple[dict[str, Any], type[Exception], str]] = {
    "mean_lacks_metric": (
        {"mean": {"retained": "mean_retained"}},
        ParameterError,
        r"The 'mean' parameter of CellEffects\.from_arm_summaries must give a column for every "
        r"metric .*; missing: \['watch_min'",
    ),
    "variance_unknown_metric": (
        {"variance": {**{m: f"var_{m}" for m in METRICS}, "ctrr": "var_ctr"}},
        ParameterError,
        r"The 'variance' parameter .* names 'ctrr', which is not the outcome or a proxy.*"
        r"Did you mean 'ctr'\?",
    ),
    "misspelled_count": (
        {"count": "nn"},
        ColumnError,
        r"Column 'nn' is not in the table passed to CellEffects\.from_arm_summaries\. "
        r"Did you mean 'n'\?",
    ),
    "correlation_out_of_range": (
        {"covariance": None, "correlation": 1.5},
        ParameterError,
        r"The 'correlation' parameter .* must be a correlation in \[-1, 1\]\. Got 1\.5",
    ),
    "correlation_bad_pair": (
        {"covariance": None, "correlation": {("ctr", "ctr"): 0.2}},
        ParameterError,
        r"keyed by pairs of two different metrics",
    ),
    "pair_given_twice": (
        {"correlation": {("retained", "ctr"): 0.2}},
        ParameterError,
        r"sets \('retained', 'ctr'\), which also has a covariance column",
    ),
    "not_a_dataframe": ({"table": {"a": 1}}, DataTypeError, r"must be a pandas DataFrame"),
    "treated_value_absent": (
        {"treated_value": "T"},
        ParameterError,
        r"The 'treated_value' parameter of CellEffects\.from_arm_summaries must be one of the "
        r"values of column 'treatment'",
    ),
    "stat_column_is_a_key": (
        {"count": "exp_id"},
        ColumnError,
        r"Column 'exp_id' is given two roles",
    ),
    "inconsistent_correlations": (
        {
            "proxies": ["watch_min", "ctr"],
            "directions": None,
            "covariance": None,
            "correlation": {
                ("retained", "watch_min"): 0.95,
                ("retained", "ctr"): 0.95,
                ("watch_min", "ctr"): -0.95,
            },
        },
        DataError,
        r"is not positive semi-definite",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_arguments(case: str, users: pd.DataFrame) -> None:
    over, exc, pattern = BAD[case]
    table = arm_table(users)
    before = copy.deepcopy(table)
    if "table" in over:
        table_arg = over.pop("table")
        with pytest.raises(exc, match=pattern):
            from_table(table_arg, **over)
        over["table"] = table_arg
        return
    with pytest.raises(exc, match=pattern):
        from_table(table, **over)
    pd.testing.assert_frame_equal(table, before)


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (lambda t: t.assign(n=-t["n"]), r"Column 'n' \(given in 'count'\) has 24 negative values"),
        (
            lambda t: pd.concat([t, t.iloc[:1]]),
            r"has 2 rows that repeat a \(experiment, segments, arm\) combination",
        ),
        (
            lambda t: t[~((t["exp_id"] == 23) & (t["treatment"] == 0))],
            r"1 experiment\(s\) in column 'exp_id' have only one arm .*\[23\]",
        ),
        (
            lambda t: t.assign(treatment=np.arange(len(t)) % 3),
            r"Column 'treatment' \(given as 'arm'\) must hold exactly two values",
        ),
        (lambda t: t[t["exp_id"] == 3], r"must hold at least two experiments; found 1 \[3\]"),
        (lambda t: t.iloc[:0], r"is empty"),
        (
            lambda t: t.assign(var_ctr=np.where(t.index == 0, np.inf, t["var_ctr"])),
            r"Column 'var_ctr' has 1 infinite values",
        ),
    ],
)
def test_bad_tables(edit: Any, pattern: str, users: pd.DataFrame) -> None:
    table = edit(arm_table(users))
    with pytest.raises(DataError, match=pattern):
        from_table(table)

"""summarize on three engines against an exact computation, and its contract."""

from __future__ import annotations

import copy
import glob
import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import ENGINES, ROLES, make_users

from proxyscope import dims
from proxyscope.data import CellEffects, summarize
from proxyscope.errors import DataWarning

METRICS = [ROLES["outcome"], *ROLES["proxies"]]


# -- the independent reference: exact rational arithmetic ----------------------


def _exact_ints(values: np.ndarray) -> tuple[list[int], int]:
    """Each double as an integer over one common power-of-two denominator (exact)."""
    ratios = [float(v).as_integer_ratio() for v in values]
    den = max(d for _, d in ratios)
    return [n * (den // d) for n, d in ratios], den


def exact_arm(frame: pd.DataFrame, metrics: Sequence[str]) -> tuple[int, list[Any], Any]:
    """Count, means and sample covariances (ddof=1) of one arm, as Fractions."""
    n = len(frame)
    cols = [_exact_ints(frame[m].to_numpy(dtype=float)) for m in metrics]
    sums = [sum(v) for v, _ in cols]
    means = [Fraction(s, n * d) for s, (_, d) in zip(sums, cols, strict=True)]
    cov = [[Fraction(0)] * len(metrics) for _ in metrics]
    for i, (vi, di) in enumerate(cols):
        for j, (vj, dj) in enumerate(cols):
            if j < i:
                cov[i][j] = cov[j][i]
                continue
            sxy = sum(a * b for a, b in zip(vi, vj, strict=True))
            cov[i][j] = (Fraction(sxy) - Fraction(sums[i] * sums[j], n)) / ((n - 1) * di * dj)
    return n, means, cov


def exact_effects(
    frame: pd.DataFrame,
    *,
    segments: Sequence[str],
    metrics: Sequence[str],
    signs: Sequence[int],
) -> dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray]]:
    """Per cell key: (effect, noise_cov) computed exactly, then rounded once to float."""
    out = {}
    for key, g in frame.groupby(["exp_id", *segments], sort=True):
        key = key if isinstance(key, tuple) else (key,)
        n_t, m_t, c_t = exact_arm(g[g["treatment"] == 1], metrics)
        n_c, m_c, c_c = exact_arm(g[g["treatment"] == 0], metrics)
        k = len(metrics)
        eff = np.array([float(signs[i] * (m_t[i] - m_c[i])) for i in range(k)])
        cov = np.array(
            [
                [float(signs[i] * signs[j] * (c_t[i][j] / n_t + c_c[i][j] / n_c)) for j in range(k)]
                for i in range(k)
            ]
        )
        out[tuple(str(v) for v in key)] = (eff, cov)
    return out


def assert_matches_exact(got: CellEffects, exact: dict[Any, Any], rtol: float = 1e-9) -> None:
    cells = got.cells()
    assert len(cells) == len(exact)
    for c in range(got.n_cells):
        key = tuple(str(v) for v in cells.iloc[c][[dims.EXPERIMENT, *got.segments]])
        eff, cov = exact[key]
        se = np.sqrt(np.diag(cov))
        # Relative to the exact value; a value that is exactly zero is judged
        # against a millionth of its standard error instead.
        tol_e = rtol * np.maximum(np.abs(eff), 1e-6 * se)
        np.testing.assert_array_less(np.abs(got.effect[c] - eff), tol_e + 1e-300)
        scale = np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
        tol_c = rtol * np.maximum(np.abs(cov), 1e-6 * scale)
        np.testing.assert_array_less(np.abs(got.noise_cov[c] - cov), tol_c + 1e-300)


def _input(engine: str, frame: pd.DataFrame, spark: Any) -> Any:
    return spark.createDataFrame(frame) if engine == "spark" else frame


@pytest.fixture
def spark_if(request: pytest.FixtureRequest) -> Any:
    """The Spark session for the spark-parametrized cases, None otherwise."""
    if "spark" in request.node.keywords:
        return request.getfixturevalue("spark")
    return None


# -- parity with the exact computation -----------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_engines_match_exact_arithmetic(engine: str, users: pd.DataFrame, spark_if: Any) -> None:
    signs = [1, 1, 1, 1, -1]  # rebuffer is "lower is better"
    exact = exact_effects(users, segments=ROLES["segments"], metrics=METRICS, signs=signs)
    before = copy.deepcopy(users)
    got = summarize(_input(engine, users, spark_if), engine=engine, **ROLES)
    pd.testing.assert_frame_equal(users, before)
    assert got.meta["engine"] == engine
    assert got.n_cells == 12
    assert_matches_exact(got, exact)


def test_exact_check_would_catch_unshifted_means(users: pd.DataFrame) -> None:
    # The 1e9 metric: rounding each arm's mean to a double already costs more
    # than 1e-9 of the effect, so the parity test above does bite.
    exact = exact_effects(users, segments=[], metrics=["watch_min"], signs=[1])
    worst = 0.0
    for key, g in users.groupby("exp_id"):
        naive = (
            g.loc[g.treatment == 1, "watch_min"].mean()
            - g.loc[g.treatment == 0, "watch_min"].mean()
        )
        eff = exact[(str(key),)][0][0]
        worst = max(worst, abs(naive - eff) / abs(eff))
    assert worst > 1e-9


@pytest.mark.parametrize("engine", ENGINES)
def test_no_segments_one_cell_per_experiment(
    engine: str, users: pd.DataFrame, spark_if: Any
) -> None:
    roles = {**ROLES, "segments": []}
    exact = exact_effects(users, segments=[], metrics=METRICS, signs=[1, 1, 1, 1, -1])
    got = summarize(_input(engine, users, spark_if), engine=engine, **roles)
    assert got.n_cells == 3
    assert list(got.segment_label) == ["all"] * 3
    assert_matches_exact(got, exact)


def test_engines_give_identical_objects(users: pd.DataFrame) -> None:
    a = summarize(users, engine="pandas", **ROLES)
    b = summarize(users, engine="duckdb", **ROLES)
    pd.testing.assert_frame_equal(a.cells(), b.cells())
    np.testing.assert_array_equal(a.data[dims.N_TREAT], b.data[dims.N_TREAT])
    np.testing.assert_allclose(a.effect, b.effect, rtol=1e-12)
    np.testing.assert_allclose(a.noise_cov, b.noise_cov, rtol=1e-10, atol=1e-18)
    meta_a, meta_b = a.meta, b.meta
    for m in (meta_a, meta_b):
        m.pop("engine")
    assert meta_a == meta_b


@pytest.mark.spark
def test_spark_identical_to_duckdb(users: pd.DataFrame, spark: Any) -> None:
    a = summarize(spark.createDataFrame(users), engine="spark", **ROLES)
    b = summarize(users, engine="duckdb", **ROLES)
    pd.testing.assert_frame_equal(a.cells(), b.cells())
    np.testing.assert_allclose(a.effect, b.effect, rtol=1e-12)


def test_cells_sorted_and_experiment_ids_kept_as_ints(users: pd.DataFrame) -> None:
    got = summarize(users, **ROLES)
    exp = got.data[dims.EXPERIMENT].values
    assert exp.dtype.kind == "i"
    assert list(exp) == [3] * 4 + [13] * 4 + [23] * 4
    assert list(got.segment_label[:4]) == ["EU / Mobile", "EU / TV", "NA / Mobile", "NA / TV"]
    assert got.metrics == tuple(METRICS)


def test_string_experiment_ids_sort_as_text(users: pd.DataFrame) -> None:
    frame = users.assign(exp_id="e" + users["exp_id"].astype(str))
    got = summarize(frame, **{**ROLES, "segments": []})
    assert list(got.experiment) == ["e13", "e23", "e3"]


def test_lower_direction_flips_effect_and_covariance(users: pd.DataFrame) -> None:
    up = summarize(users, **{**ROLES, "directions": None})
    down = summarize(users, **ROLES)
    k = METRICS.index("rebuffer")
    np.testing.assert_array_equal(down.effect[:, k], -up.effect[:, k])
    sign = np.ones(len(METRICS))
    sign[k] = -1
    np.testing.assert_array_equal(down.noise_cov, up.noise_cov * np.outer(sign, sign))
    assert down.directions["rebuffer"] == "lower"


# -- dropping and reporting ---------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_small_cells_dropped_and_reported(engine: str, spark_if: Any) -> None:
    frame = make_users(n=1200, seed=3)
    # A tiny extra cell: 4 users, 2 per arm, in experiment 3.
    extra = frame.iloc[:4].copy()
    extra["exp_id"] = 3
    extra["region"] = "IN"
    extra["device"] = "TV"
    extra["treatment"] = [0, 1, 0, 1]
    frame = pd.concat([frame, extra], ignore_index=True)
    with pytest.warns(DataWarning, match=r"dropped 1 of 13 cells"):
        got = summarize(
            _input(engine, frame, spark_if), engine=engine, min_users_per_arm=5, **ROLES
        )
    assert got.n_cells == 12
    dropped = got.dropped
    assert len(dropped) == 1
    row = dropped.iloc[0]
    assert (row["experiment"], row["region"], row["n_treat"], row["n_control"]) == (3, "IN", 2, 2)
    assert "min_users_per_arm=5" in row["reason"]
    assert "dropped: 1 cells" in repr(got)


@pytest.mark.parametrize("engine", ENGINES)
def test_dropna_drops_rows_and_reports_counts(engine: str, spark_if: Any) -> None:
    frame = make_users(n=1500, seed=5)
    frame.loc[[1, 2, 3], "ctr"] = np.nan
    frame.loc[[3, 4], "region"] = None
    before = copy.deepcopy(frame)
    with pytest.warns(DataWarning, match=r"dropped 4 of 1500 rows"):
        got = summarize(_input(engine, frame, spark_if), engine=engine, dropna=True, **ROLES)
    pd.testing.assert_frame_equal(frame, before)
    info = got.meta["dropna"]
    assert info["rows_dropped"] == 4
    assert info["missing_by_column"] == {"region": 2, "ctr": 3}
    assert got.meta["n_rows"] == 1496
    clean = frame.drop(index=[1, 2, 3, 4]).reset_index(drop=True)
    ref = summarize(clean, engine="pandas", **ROLES)
    np.testing.assert_allclose(got.effect, ref.effect, rtol=1e-10)


def test_whole_float_experiment_ids_become_ints() -> None:
    frame = make_users(n=1500, seed=5)
    frame["exp_id"] = frame["exp_id"].astype(float)
    frame.loc[0, "exp_id"] = np.nan
    with pytest.warns(DataWarning):
        got = summarize(frame, engine="pandas", dropna=True, **ROLES)
    assert got.data[dims.EXPERIMENT].values.dtype.kind == "i"


# -- treatment values -----------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "treated"),
    [
        ((False, True), None),
        (("Control", "Treatment"), None),
        (("ctrl", "test"), None),
        (("A", "B"), "B"),
        ((2, 7), 7),
    ],
)
def test_treatment_values(values: tuple[Any, Any], treated: Any, users: pd.DataFrame) -> None:
    frame = users.assign(treatment=np.where(users["treatment"] == 1, values[1], values[0]))
    if isinstance(values[0], bool):
        frame["treatment"] = frame["treatment"].astype(bool)
    got = summarize(frame, treated_value=treated, **ROLES)
    ref = summarize(users, **ROLES)
    np.testing.assert_allclose(got.effect, ref.effect, rtol=1e-12)
    assert got.meta["treated_value"] == values[1]


def test_treated_value_zero_flips_every_effect(users: pd.DataFrame) -> None:
    got = summarize(users, treated_value=0, **ROLES)
    ref = summarize(users, **ROLES)
    np.testing.assert_allclose(got.effect, -ref.effect, rtol=1e-12)
    np.testing.assert_array_equal(got.data[dims.N_TREAT], ref.data[dims.N_CONTROL])


def test_bool_and_nullable_metrics(users: pd.DataFrame) -> None:
    frame = users.assign(
        retained=users["retained"].astype(bool), starts=users["starts"].astype("Int64")
    )
    got = summarize(frame, **ROLES)
    ref = summarize(users, **ROLES)
    np.testing.assert_allclose(got.effect, ref.effect, rtol=1e-12)


# -- inputs: files, globs, Arrow ------------------------------------------------


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, users: pd.DataFrame) -> Path:
    root = tmp_path_factory.mktemp("users")
    users.to_parquet(root / "all.parquet", index=False)
    users.to_csv(root / "all.csv", index=False)
    parts = root / "parts"
    parts.mkdir()
    for i, chunk in enumerate(np.array_split(np.arange(len(users)), 3)):
        users.iloc[chunk].to_parquet(parts / f"part-{i}.parquet", index=False)
    return root


@pytest.mark.parametrize("engine", ["pandas", "duckdb"])
@pytest.mark.parametrize("which", ["all.parquet", "all.csv", "parts", "parts/*.parquet", "list"])
def test_file_inputs(engine: str, which: str, files: Path, users: pd.DataFrame) -> None:
    data: Any
    if which == "list":
        data = sorted(glob.glob(str(files / "parts" / "*.parquet")))
    else:
        data = str(files / which)
    got = summarize(data, engine=engine, **ROLES)
    ref = summarize(users, engine="pandas", **ROLES)
    pd.testing.assert_frame_equal(got.cells(), ref.cells())
    np.testing.assert_allclose(got.effect, ref.effect, rtol=1e-11)
    np.testing.assert_allclose(got.noise_cov, ref.noise_cov, rtol=1e-9, atol=1e-18)


@pytest.mark.spark
def test_spark_reads_paths(files: Path, users: pd.DataFrame, spark: Any) -> None:
    got = summarize(str(files / "parts" / "*.parquet"), engine="spark", spark=spark, **ROLES)
    ref = summarize(users, engine="pandas", **ROLES)
    np.testing.assert_allclose(got.effect, ref.effect, rtol=1e-11)
    assert got.meta["source"].endswith("and 2 more files")


def test_arrow_table_input(users: pd.DataFrame) -> None:
    got = summarize(pa.Table.from_pandas(users), **ROLES)
    ref = summarize(users, engine="pandas", **ROLES)
    np.testing.assert_allclose(got.effect, ref.effect, rtol=1e-12)


def test_duckdb_out_of_core_on_a_file_larger_than_its_memory_limit(
    tmp_path: Path,
) -> None:
    # 1M users, ~38 MB of Parquet, aggregated under a 16 MB DuckDB memory limit.
    rng = np.random.default_rng(0)
    n = 1_000_000
    t = rng.integers(0, 2, n)
    table = pa.table(
        {
            "exp_id": rng.integers(0, 4, n),
            "region": rng.choice(np.array(["NA", "EU", "IN"]), n),
            "treatment": t,
            "y": rng.normal(size=n) + 0.01 * t,
            "a": rng.normal(size=n) + 1e9,
            "b": rng.normal(size=n) + 0.02 * t,
            "c": rng.normal(size=n),
        }
    )
    path = tmp_path / "big.parquet"
    pq.write_table(table, path, row_group_size=65_536)
    assert os.path.getsize(path) > 2 * 16 * 2**20
    roles = {
        "experiment": "exp_id",
        "treatment": "treatment",
        "outcome": "y",
        "proxies": ["a", "b", "c"],
        "segments": ["region"],
    }
    got = summarize(str(path), engine="duckdb", memory_limit="16MB", threads=1, **roles)
    ref = summarize(table.to_pandas(), engine="pandas", **roles)
    assert got.n_cells == 12
    np.testing.assert_allclose(got.effect, ref.effect, rtol=1e-9)
    np.testing.assert_allclose(got.noise_cov, ref.noise_cov, rtol=1e-9, atol=1e-20)


def test_duckdb_runs_on_one_thread_unless_told(users: pd.DataFrame) -> None:
    from proxyscope.data.engines.duckdb_engine import DuckDBSource

    def threads(source: DuckDBSource) -> int:
        return int(source._fetch("SELECT current_setting('threads')")[0][0])

    assert threads(DuckDBSource(users)) == 1
    assert threads(DuckDBSource(users, threads=2)) == 2


_CHILD = """
import hashlib, warnings
import numpy as np
import proxyscope as ps
from proxyscope.simulate import column_roles

users = ps.simulate.streaming(n_users=250_000, n_experiments=50, seed=7).users
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    got = ps.summarize(users, **column_roles())
digest = hashlib.sha256(np.ascontiguousarray(got.effect).tobytes())
digest.update(np.ascontiguousarray(got.noise_cov).tobytes())
print(digest.hexdigest())
"""


def test_default_summary_repeats_bit_for_bit_in_new_processes() -> None:
    # What a user sees when a job is run again on the same rows. With DuckDB's
    # parallel aggregation (2 threads here) 4 processes gave 2 or 3 different
    # digests; with the default single thread they must all agree.
    import subprocess
    import sys

    digests = {
        subprocess.run(
            [sys.executable, "-c", _CHILD], check=True, capture_output=True, text=True
        ).stdout.strip()
        for _ in range(4)
    }
    assert len(digests) == 1 and len(next(iter(digests))) == 64


def test_single_names_as_strings_and_save_load(users: pd.DataFrame, tmp_path: Path) -> None:
    got = summarize(
        users,
        experiment="exp_id",
        treatment="treatment",
        outcome="retained",
        proxies="ctr",
        segments="region",
    )
    assert got.proxies == ("ctr",)
    assert got.segments == ("region",)
    back = CellEffects.load(got.save(tmp_path / "cells.nc"))
    assert back.fingerprint() == got.fingerprint()
    assert back.meta == got.meta


def test_one_list_of_duckdb_number_types() -> None:
    # The engine and the spec checker read DuckDB's type names from one list.
    from proxyscope.data.engines.duckdb_engine import numeric_type
    from proxyscope.run.check.users import _is_numeric

    assert numeric_type("DECIMAL(18,3)") and numeric_type("real") and numeric_type("UBIGINT")
    assert not numeric_type("BOOLEAN") and not numeric_type("VARCHAR")
    assert _is_numeric("BOOLEAN") and _is_numeric("FLOAT") and not _is_numeric("DATE")

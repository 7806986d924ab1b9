"""Hostile data at the data entry points (issue #22): one test per problem class.

Each input here once ended in a raw library traceback or a silently wrong number
(summarize on pandas and DuckDB, from_arm_summaries, the CellEffects constructor,
the ASOS loader, the CLI's summarize and validate). Now each is refused with one
of proxyscope's errors naming the column, parameter or file, or (where noted)
supported with the same numbers on every engine.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from proxyscope import dims
from proxyscope.cli import main
from proxyscope.data import CellEffects, from_arm_summaries, summarize
from proxyscope.data.cells import META_ATTR
from proxyscope.datasets.asos import COLUMNS, asos_arm_table, load_asos
from proxyscope.errors import (
    ColumnError,
    DataError,
    DataTypeError,
    DataWarning,
    ParameterError,
    ProxyscopeError,
)

ENGINES = ["pandas", "duckdb"]
ROLES: dict[str, Any] = {
    "experiment": "exp_id",
    "treatment": "arm",
    "outcome": "ltv",
    "proxies": ["clicks"],
}


def users(n: int = 600, n_exp: int = 3, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "exp_id": rng.integers(0, n_exp, n),
            "arm": rng.integers(0, 2, n),
            "ltv": rng.normal(size=n),
            "clicks": rng.normal(size=n),
        }
    )


def arm_table(n: Any = 100, exp: Any = (1, 2)) -> pd.DataFrame:
    rows = []
    for e in exp:
        for a in (0, 1):
            rows.append(
                {"exp_id": e, "arm": a, "n": n, "m_ltv": 0.1 * a, "v_ltv": 1.0}
                | {"m_clicks": 0.2 * a, "v_clicks": 2.0}
            )
    return pd.DataFrame(rows)


ARMS: dict[str, Any] = {
    "experiment": "exp_id",
    "arm": "arm",
    "treated_value": 1,
    "outcome": "ltv",
    "proxies": ["clicks"],
    "count": "n",
    "mean": {"ltv": "m_ltv", "clicks": "m_clicks"},
    "variance": {"ltv": "v_ltv", "clicks": "v_clicks"},
}


def quiet(call: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return call()


# -- 1. segment values that hold the label separator -------------------------------


def test_segment_value_with_the_label_separator_is_refused_everywhere() -> None:
    d = users(800)
    rng = np.random.default_rng(1)
    d["s1"] = rng.choice(np.array(["a / y", "a"]), len(d))
    d["s2"] = rng.choice(np.array(["z", "y / z"]), len(d))
    for engine in ENGINES:
        with pytest.raises(ColumnError, match=r"'s1'.*'a / y'.*separator"):
            quiet(lambda e=engine: summarize(d, **ROLES, segments=["s1", "s2"], engine=e))
    table = arm_table()
    table["seg"] = ["x / y", "x / y", "z", "z"]
    with pytest.raises(ColumnError, match=r"'seg'.*'x / y'"):
        from_arm_summaries(table, **ARMS, segments=["seg"], min_users_per_arm=2)
    # The constructor (a dataset built or edited by hand) runs the same check.
    good = quiet(lambda: summarize(d.assign(s1="a"), **ROLES, segments=["s1"]))
    data = good.data.assign_coords(s1=(dims.CELL, np.full(good.n_cells, "p / q", dtype=object)))
    with pytest.raises(ColumnError, match=r"'s1'.*'p / q'"):
        CellEffects(data)


# -- 2. a key column that mixes types ----------------------------------------------


def test_mixed_type_key_column_is_refused_on_both_engines() -> None:
    d = users()
    d["exp_id"] = d["exp_id"].astype(object)
    d.loc[d.index % 2 == 0, "exp_id"] = d.loc[d.index % 2 == 0, "exp_id"].astype(str)
    for engine in ENGINES:
        with pytest.raises(DataTypeError, match=r"'exp_id'.*mixes value types"):
            summarize(d, **ROLES, engine=engine)
    table = arm_table(exp=(1, "1")).astype({"exp_id": object})
    with pytest.raises(DataTypeError, match=r"'exp_id'.*mixes value types"):
        from_arm_summaries(table, **ARMS)
    # ints and floats in an object column: DuckDB reads 1.0, pandas 1, so refused too.
    d2 = users()
    d2["exp_id"] = pd.Series([1, 2.5] * (len(d2) // 2), dtype=object)
    with pytest.raises(DataTypeError, match="'exp_id'"):
        summarize(d2, **ROLES, engine="duckdb")


# -- 3 and 12. duplicated, integer and case-twin column labels ------------------------


def test_duplicated_used_column_is_refused() -> None:
    d = users()
    doubled = pd.concat([d, d[["ltv"]] * 100], axis=1)
    for engine in ENGINES:
        with pytest.raises(ColumnError, match=r"'ltv'.*appears 2 times"):
            summarize(doubled, **ROLES, engine=engine)
    table = pd.concat([arm_table(), arm_table()[["n"]]], axis=1)
    with pytest.raises(ColumnError, match=r"'n'.*appears 2 times"):
        from_arm_summaries(table, **ARMS)


def test_unused_odd_columns_do_not_matter_and_integer_labels_work() -> None:
    d = users()
    odd = d.assign(LTV=1.0, junk=d["ltv"] + 1j)
    odd = pd.concat([odd, odd[["junk"]]], axis=1)  # an unused duplicated complex column
    numbered = d.set_axis(range(4), axis=1)
    for engine in ENGINES:
        ref = summarize(d, **ROLES, engine=engine)
        for frame, roles in (
            (odd, ROLES),
            (numbered, {"experiment": "0", "treatment": "1", "outcome": "2", "proxies": ["3"]}),
        ):
            got = summarize(frame, **roles, engine=engine)
            np.testing.assert_array_equal(got.effect, ref.effect)
            np.testing.assert_array_equal(got.noise_cov, ref.noise_cov)


def test_columns_that_differ_only_in_case() -> None:
    d = users().assign(LTV=lambda f: f["ltv"] * 3)
    for engine in ENGINES:
        with pytest.raises(ColumnError, match=r"'ltv'.*'LTV'.*differ only in case"):
            summarize(d, **{**ROLES, "proxies": ["clicks", "LTV"]}, engine=engine)
        # One of them used: the other is not read, on every engine.
        got = summarize(d, **{**ROLES, "outcome": "LTV"}, engine=engine)
        np.testing.assert_allclose(got.effect[:, 0], 3 * summarize(d, **ROLES).effect[:, 0])


def test_empty_and_complex_frames() -> None:
    for engine in ENGINES:
        with pytest.raises(ColumnError, match=r"'exp_id'.*no columns"):
            summarize(pd.DataFrame(), **ROLES, engine=engine)
        with pytest.raises(DataTypeError, match=r"'clicks'.*complex128"):
            summarize(users().assign(clicks=lambda f: f["clicks"] + 1j), **ROLES, engine=engine)
        seg = users().assign(s=lambda f: f["clicks"] + 1j)
        with pytest.raises(DataTypeError, match=r"'s'.*complex"):
            summarize(seg, **ROLES, segments=["s"], engine=engine)
    complex_table = arm_table().assign(v_ltv=1 + 1j)
    with pytest.raises(DataTypeError, match="'v_ltv'"):
        from_arm_summaries(complex_table, **ARMS)


# -- 4. counts that are not numbers of users ------------------------------------------


@pytest.mark.parametrize("bad", [1e19, 10.5, 2**53 + 2])
def test_counts_must_be_whole_numbers_that_fit(bad: float) -> None:
    table = arm_table()
    table["n"] = table["n"].astype(float)
    table.loc[0, "n"] = bad
    with pytest.raises(DataError, match=r"'n'.*'count'.*whole numbers"):
        from_arm_summaries(table, **ARMS)


# -- 10. corrupt, empty and mismatched files ----------------------------------------


def _write_files(tmp: Path) -> dict[str, Any]:
    d = users()
    (tmp / "garbage.parquet").write_bytes(os.urandom(300))
    (tmp / "garbage.csv").write_bytes(b"\xff\xfe\x00garbage\x00\x81")
    (tmp / "empty.csv").write_bytes(b"")
    (tmp / "empty.parquet").write_bytes(b"")
    mix = tmp / "mix"
    mix.mkdir()
    d.to_parquet(mix / "a.parquet")
    d.assign(ltv=d["ltv"].astype(str).where(d.index > 0, "abc")).to_parquet(mix / "b.parquet")
    miss = tmp / "miss"
    miss.mkdir()
    d.to_parquet(miss / "a.parquet")
    d.drop(columns="clicks").to_parquet(miss / "b.parquet")
    d.to_csv(miss / "a.csv", index=False)
    d.drop(columns="clicks").to_csv(miss / "b.csv", index=False)
    ragged = tmp / "ragged.csv"
    ragged.write_text(d.to_csv(index=False) + "1,0,3,4,5,6\n")
    late = tmp / "late.csv"  # a bad value after the rows DuckDB samples for types
    big = users(30000)
    late.write_text(big.to_csv(index=False) + "1,0,abc,0.5\n")
    return {
        "garbage.parquet": (DataError, "garbage.parquet"),
        "garbage.csv": (DataError, "garbage.csv"),
        "empty.csv": (DataError, "empty.csv"),
        "empty.parquet": (DataError, "empty.parquet"),
        "mix": (DataTypeError, r"'ltv'.*b\.parquet"),
        "miss/*.parquet": (ColumnError, r"'clicks'.*b\.parquet"),
        "miss/*.csv": (ColumnError, r"b\.csv.*lacks"),
        "ragged.csv": (DataError, "ragged.csv"),
        "late.csv": (ProxyscopeError, r"ltv"),
    }


def test_bad_files_are_refused_naming_the_file(tmp_path: Path) -> None:
    cases = _write_files(tmp_path)
    for name, (kind, pattern) in cases.items():
        for engine in ENGINES:
            with pytest.raises(kind, match=pattern):
                summarize(str(tmp_path / name), **ROLES, engine=engine)


def cli(capsys: pytest.CaptureFixture[str], *argv: Any) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def test_cli_summarize_and_validate_on_bad_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_files(tmp_path)
    spec = tmp_path / "spec.toml"
    spec.write_text(
        'name = "t"\n[data]\nkind = "users"\npath = "garbage.parquet"\n'
        '[columns]\nexperiment = "exp_id"\ntreatment = "arm"\noutcome = "ltv"\n'
        'proxies = ["clicks"]\n'
    )
    flags = ["--experiment", "exp_id", "--treatment", "arm", "--outcome", "ltv"]
    for name in ("garbage.parquet", "empty.csv", "mix"):
        data = tmp_path / name
        for argv in (
            ["summarize", "--data", data, *flags, "--proxies", "clicks", "-o", tmp_path / "c.nc"],
            ["validate", spec, "--data", data],
        ):
            code, err = cli(capsys, *argv)
            lines = [x for x in err.splitlines() if x.startswith("proxyscope:")]
            assert code == 2 and "Traceback" not in err, err
            assert len(lines) == 1 and lines[0].startswith("proxyscope: error:"), err
            assert name.split(".")[0] in lines[0], err


# -- 11. experiment ids beyond int64 --------------------------------------------------


def test_experiment_ids_beyond_int64_are_kept_exactly(tmp_path: Path) -> None:
    d = users()
    d["exp_id"] = d["exp_id"].astype(np.uint64) + np.uint64(2**63)
    want = [2**63, 2**63 + 1, 2**63 + 2]
    plain = summarize(users(), **ROLES)
    for engine in ENGINES:
        got = summarize(d, **ROLES, engine=engine)
        assert got.experiment.dtype == np.uint64
        assert [int(x) for x in got.experiment] == want
        np.testing.assert_allclose(got.effect, plain.effect, rtol=1e-12)
    table = arm_table(exp=(2**64 - 1, 2**63)).astype({"exp_id": np.uint64})
    arms = from_arm_summaries(table, **ARMS)
    assert [int(x) for x in arms.experiment] == [2**63, 2**64 - 1]
    # Ids below zero and above int64 cannot share an integer type: kept as text.
    mixed = arm_table(exp=(-1, 2**64 - 1)).astype({"exp_id": object})
    assert list(from_arm_summaries(mixed, **ARMS).experiment) == ["-1", str(2**64 - 1)]


# -- 16. misleading messages ----------------------------------------------------------


def test_control_characters_in_column_names_are_refused() -> None:
    d = users().rename(columns={"clicks": "clicks\x00"})
    for engine in ENGINES:
        with pytest.raises(ParameterError, match=r"'proxies'.*control character"):
            summarize(d, **{**ROLES, "proxies": ["clicks\x00"]}, engine=engine)
    with pytest.raises(ParameterError, match=r"'outcome'.*control character"):
        from_arm_summaries(arm_table(), **{**ARMS, "outcome": "ltv\n"})


def test_overflowing_covariances_and_effects_are_named_as_such() -> None:
    table = arm_table()
    table[["v_ltv", "v_clicks"]] = 1e308
    with pytest.raises(DataError, match=r"covariance of 'ltv' and 'clicks'.*overflow") as err:
        from_arm_summaries(table, **ARMS, correlation=0.5)
    assert "inconsistent" not in str(err.value)
    d = users()
    d["ltv"] = np.where(d["arm"] == 1, 1.7e308, -1.7e308)
    for engine in ENGINES:
        with pytest.raises(DataError, match=r"'ltv'.*overflow"):
            summarize(d, **ROLES, engine=engine)
    good = summarize(users(), **ROLES)
    data = good.data.copy()
    data[dims.NOISE_COV] = data[dims.NOISE_COV] * np.inf
    with pytest.raises(DataError, match=r"CellEffects: the sampling variance of 'ltv'"):
        CellEffects(data)


def test_constructor_refuses_repeated_cells_and_bad_counts() -> None:
    good = summarize(users(), **ROLES)
    twice = xr.concat([good.data, good.data], dim=dims.CELL)
    twice.attrs[META_ATTR] = good.data.attrs[META_ATTR]
    with pytest.raises(DataError, match="repeat one"):
        CellEffects(twice)
    data = good.data.copy()
    data[dims.N_TREAT] = data[dims.N_TREAT] * -1
    with pytest.raises(DataError, match="'n_treat'"):
        CellEffects(data)


# -- the ASOS file --------------------------------------------------------------------


def test_asos_file_problems_are_named(tmp_path: Path) -> None:
    (tmp_path / "garbage.csv").write_bytes(os.urandom(200))
    (tmp_path / "empty.csv").write_bytes(b"")
    rng = np.random.default_rng(2)
    raw = pd.DataFrame({c: rng.integers(1, 5, 40).astype(float) for c in COLUMNS})
    raw["experiment_id"] = "e1"
    raw.astype({"count_c": object}).assign(count_c="x").to_csv(tmp_path / "s.csv", index=False)
    raw.assign(metric_id=np.nan).to_csv(tmp_path / "m.csv", index=False)
    raw.assign(mean_t=np.inf).to_csv(tmp_path / "i.csv", index=False)
    cases = {
        "garbage.csv": (DataError, "garbage.csv"),
        "empty.csv": (DataError, "empty.csv"),
        "s.csv": (DataTypeError, "'count_c'"),
        "m.csv": (DataError, "'metric_id'"),
        "i.csv": (DataError, "'mean_t'"),
    }
    for name, (kind, pattern) in cases.items():
        with pytest.raises(kind, match=pattern):
            load_asos(tmp_path / name)
    for bad in (["a"], "12", 3):
        with pytest.raises(ParameterError, match="'variants'"):
            asos_arm_table(raw, variants=bad)


def test_read_table_names_a_file_no_reader_can_read(tmp_path: Path) -> None:
    """Arm-summary and target tables read by the CLI and validate: a ragged CSV is a
    DataError naming the file, not a pandas ParserError."""
    from proxyscope.run.load import read_table

    ragged = tmp_path / "arms.csv"
    ragged.write_text("a,b\n1,2\n3,4,5,6\n")
    with pytest.raises(DataError, match=r"arms\.csv"):
        read_table(ragged)


def test_a_target_label_keeps_a_slash_inside_a_level() -> None:
    """'a/b / x' is the levels ('a/b', 'x'); 'A/B' without spaces still reads as two."""
    from proxyscope.analyses.implied import _key_parts

    assert _key_parts("a/b / x", ["s1", "s2"]) == ("a/b", "x")
    assert _key_parts("IN/Mobile", ["s1", "s2"]) == ("IN", "Mobile")

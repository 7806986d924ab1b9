"""Property-based hostile data at the data entry points, judged by :func:`_fuzz.judge`.

``summarize`` (pandas and DuckDB engines, in process) and ``from_arm_summaries``
get tables drawn here: valid worlds (ids as ints, text, beyond int64 or negative;
unicode segment values; metrics near 1e9 or 1e-3, integers, booleans; a proxy read
"lower is better") and the same worlds damaged in one way (NaN, inf, text or
complex values, a duplicated, missing, renamed or case-twin column, mixed-type ids,
a segment value holding the label separator, one arm, three arms, no rows,
overflowing values, bad counts). Whether an input is valid, and the answer it must
give, is decided in this file: each cell's effect is the difference of the arms'
means and its sampling covariance the per-arm sample covariance (ddof=1) over n,
summed over the arms, computed here with pandas/numpy on the rows (or on the
drawn per-arm statistics), never with the package's code.
"""

from __future__ import annotations

import dataclasses
import itertools
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from _fuzz import judge
from hypothesis import given
from hypothesis import strategies as st

from proxyscope.data import CellEffects, from_arm_summaries, summarize
from proxyscope.errors import DataWarning

EXP, ARM, OUT, PA, PB, SEG = "exp_id", "arm_col", "ltv_out", "proxy_a", "proxy_b", "seg_r"
METRICS = [OUT, PA, PB]
LEVELS = ["NA", "Ünïcode", "日本", "a/b", "1", "with space", "-"]
ENGINES = ["pandas", "duckdb"]


@dataclasses.dataclass(frozen=True)
class World:
    """A valid user table and what an independent computation says of it."""

    users: pd.DataFrame
    ids: str  # "int", "text", "big" (>= 2**63), "negative"
    lower: bool  # proxy_b is "lower is better"
    scale: float


@st.composite
def worlds(draw: st.DrawFn) -> World:
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n_exp = draw(st.integers(2, 4))
    levels = draw(st.lists(st.sampled_from(LEVELS), min_size=1, max_size=3, unique=True))
    ids = draw(st.sampled_from(["int", "text", "big", "negative"]))
    offset = draw(st.sampled_from([0.0, 1e3, -1e6, 1e9]))
    scale = draw(st.sampled_from([1e-3, 1.0, 1e4]))
    kind_a = draw(st.sampled_from(["float", "int", "bool"]))
    exp_ids: list[Any] = {
        "int": [3 + 10 * i for i in range(n_exp)],
        "text": [f"exp-{i}" for i in range(n_exp)],
        "big": [2**63 + 7 * i for i in range(n_exp)],
        "negative": [-5 - i for i in range(n_exp)],
    }[ids]
    rows = []
    for e, lev, arm in itertools.product(range(n_exp), levels, (0, 1)):
        k = int(rng.integers(3, 12))
        rows.append(
            pd.DataFrame(
                {
                    EXP: [exp_ids[e]] * k,
                    SEG: [lev] * k,
                    ARM: [arm] * k,
                    OUT: offset + scale * (rng.normal(size=k) + 0.3 * arm),
                    PA: rng.normal(size=k) * scale,
                    PB: rng.normal(size=k) + arm,
                }
            )
        )
    users = pd.concat(rows, ignore_index=True).sample(frac=1.0, random_state=seed % 2**31)
    users = users.reset_index(drop=True)
    if kind_a == "int":
        users[PA] = rng.poisson(3.0, len(users)).astype(np.int64)
    elif kind_a == "bool":
        users[PA] = rng.random(len(users)) < 0.5
    if ids == "big":
        users[EXP] = users[EXP].astype(np.uint64)
    return World(users, ids, draw(st.booleans()), scale)


def roles(world: World, **over: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "experiment": EXP,
        "treatment": ARM,
        "outcome": OUT,
        "proxies": [PA, PB],
        "segments": [SEG],
        "directions": {PB: "lower"} if world.lower else None,
        "min_users_per_arm": 2,
    }
    out.update(over)
    return out


def expected_cells(users: pd.DataFrame, lower: bool) -> dict[tuple[str, str], Any]:
    """Per cell: n_t, n_c, effect, noise covariance; written with pandas/numpy only."""
    x = users[METRICS].astype(float)
    x = x - x.iloc[0]  # shift by a value of the data: keeps the digits of ~1e9 metrics
    sign = np.array([1.0, 1.0, -1.0 if lower else 1.0])
    out = {}
    for (e, s), g in users.groupby([EXP, SEG], sort=False):
        t = x.loc[g.index[g[ARM] == 1]].to_numpy()
        c = x.loc[g.index[g[ARM] == 0]].to_numpy()
        effect = (t.mean(axis=0) - c.mean(axis=0)) * sign
        noise = np.cov(t, rowvar=False, ddof=1) / len(t) + np.cov(c, rowvar=False, ddof=1) / len(c)
        out[(str(e), str(s))] = (len(t), len(c), effect, noise * np.outer(sign, sign))
    return out


def matches(users: pd.DataFrame, world: World) -> Callable[[CellEffects], None]:
    want = expected_cells(users, world.lower)

    def check(got: CellEffects) -> None:
        seg = got.cells()[got.segments[0]]  # SEG, or its position when labels are ints
        keys = [(str(e), str(s)) for e, s in zip(got.experiment, seg, strict=True)]
        assert sorted(keys) == sorted(want), (keys, list(want))
        if world.ids in ("int", "negative"):
            assert got.experiment.dtype == np.int64
        elif world.ids == "big":
            assert got.experiment.dtype == np.uint64
        scale = np.array([world.scale, world.scale, 1.0])
        for i, key in enumerate(keys):
            n_t, n_c, effect, noise = want[key]
            assert int(got.data["n_treat"][i]) == n_t and int(got.data["n_control"][i]) == n_c
            close(got.effect[i], effect, 1e-9 * scale)
            close(got.noise_cov[i], noise, 1e-9 * np.outer(scale, scale))

    return check


def close(got: np.ndarray, want: np.ndarray, atol: np.ndarray) -> None:
    """Equal to a relative 1e-7, or within ``atol`` (per element) of zero."""
    ok = np.abs(got - want) <= 1e-7 * np.abs(want) + atol
    assert ok.all(), (got, want)


def run(call: Callable[[], Any]) -> Callable[[], Any]:
    def quiet() -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataWarning)
            return call()

    return quiet


@pytest.mark.fuzz
@given(world=worlds(), engine=st.sampled_from(ENGINES))
def test_summarize_valid_worlds(world: World, engine: str) -> None:
    call = run(lambda: summarize(world.users, **roles(world), engine=engine))
    judge(
        f"summarize[{engine}]",
        call,
        valid=True,
        check=matches(world.users, world),
        detail=(world.ids, world.scale),
    )


# -- damage --------------------------------------------------------------------------

#: name -> (what it does to the table and roles) -> (table, roles, valid, names)
Damage = Callable[[pd.DataFrame, dict[str, Any], str, np.random.Generator], tuple[Any, ...]]


def _put(frame: pd.DataFrame, col: str, value: Any, row: int) -> pd.DataFrame:
    out = frame.copy()
    out[col] = out[col].astype(object)
    out.loc[out.index[row], col] = value
    return out


def nan_value(f: pd.DataFrame, r: dict, c: str, g: np.random.Generator) -> tuple[Any, ...]:
    row = int(g.integers(len(f)))
    if c in METRICS:
        out = f.assign(**{c: f[c].astype(float)})
        out.loc[out.index[row], c] = np.nan
        return out, r, False, [c]
    return _put(f, c, None, row), r, False, [c]


def inf_value(f: pd.DataFrame, r: dict, c: str, g: np.random.Generator) -> tuple[Any, ...]:
    m = c if c in METRICS else OUT
    out = f.assign(**{m: f[m].astype(float)})
    out.loc[out.index[int(g.integers(len(f)))], m] = -np.inf
    return out, r, False, [m]


def text_value(f: pd.DataFrame, r: dict, c: str, g: np.random.Generator) -> tuple[Any, ...]:
    m = c if c in METRICS else PB
    return _put(f, m, "abc", int(g.integers(len(f)))), r, False, [m]


def complex_value(f: pd.DataFrame, r: dict, c: str, g: np.random.Generator) -> tuple[Any, ...]:
    values = np.array([complex(len(str(v)), 1) for v in f[c]], dtype=np.complex128)
    return f.assign(**{c: values}), r, False, [c]


def duplicate(f: pd.DataFrame, r: dict, c: str, g: np.random.Generator) -> tuple[Any, ...]:
    return pd.concat([f, f[[c]]], axis=1), r, False, [c]


def missing(f: pd.DataFrame, r: dict, c: str, g: np.random.Generator) -> tuple[Any, ...]:
    return f.drop(columns=c), r, False, [c]


def case_twin(f: pd.DataFrame, r: dict, c: str, g: np.random.Generator) -> tuple[Any, ...]:
    twin = PA.upper()
    out = f.assign(**{twin: f[PB]})
    return out, {**r, "proxies": [PA, twin]}, False, [PA, twin]


def mixed_ids(f: pd.DataFrame, r: dict, c: str, g: np.random.Generator) -> tuple[Any, ...]:
    key = c if c in (EXP, SEG) else EXP
    out = f.copy()
    out[key] = out[key].astype(object)
    first = out[key].iloc[0]
    # One row of the first value changes type: '3' beside 3, or 7 beside 'NA'.
    out.loc[out.index[0], key] = str(first) if not isinstance(first, str) else 7
    return out, r, False, [key]


def separator(f: pd.DataFrame, r: dict, c: str, g: np.random.Generator) -> tuple[Any, ...]:
    out = f.copy()
    out[SEG] = out[SEG].astype(str) + " / x"
    return out, r, False, [SEG]


def one_arm(f: pd.DataFrame, r: dict, c: str, g: np.random.Generator) -> tuple[Any, ...]:
    first = f[EXP].iloc[0]
    out = f[~((f[EXP] == first) & (f[ARM] == 0))]
    return out, r, False, [EXP]


def three_arms(f: pd.DataFrame, r: dict, c: str, g: np.random.Generator) -> tuple[Any, ...]:
    out = f.copy()
    out.loc[out.index[int(g.integers(len(f)))], ARM] = 2
    return out, r, False, [ARM]


def no_rows(f: pd.DataFrame, r: dict, c: str, g: np.random.Generator) -> tuple[Any, ...]:
    return f.iloc[:0], r, False, ["data"]


def overflow(f: pd.DataFrame, r: dict, c: str, g: np.random.Generator) -> tuple[Any, ...]:
    out = f.assign(**{OUT: np.where(f[ARM] == 1, 1.7e308, -1.7e308)})
    return out, r, False, [OUT]


def control_char(f: pd.DataFrame, r: dict, c: str, g: np.random.Generator) -> tuple[Any, ...]:
    bad = PA + "\x00"
    return f.rename(columns={PA: bad}), {**r, "proxies": [bad, PB]}, False, ["proxies"]


def int_labels(f: pd.DataFrame, r: dict, c: str, g: np.random.Generator) -> tuple[Any, ...]:
    names = list(f.columns)
    out = f.set_axis(range(len(names)), axis=1)
    pos = {n: str(i) for i, n in enumerate(names)}
    new = {
        **r,
        "experiment": pos[EXP],
        "treatment": pos[ARM],
        "outcome": pos[OUT],
        "proxies": [pos[PA], pos[PB]],
        "segments": [pos[SEG]],
        "directions": {pos[PB]: "lower"} if r["directions"] else None,
    }
    return out, new, True, []


def junk_columns(f: pd.DataFrame, r: dict, c: str, g: np.random.Generator) -> tuple[Any, ...]:
    out = f.assign(junk=1j, LTV_OUT=0.0, **{"Seg_R": "x"})
    return pd.concat([out, out[["junk"]]], axis=1), r, True, []


def object_numbers(f: pd.DataFrame, r: dict, c: str, g: np.random.Generator) -> tuple[Any, ...]:
    return f.assign(**{PB: f[PB].astype(object)}), r, True, []


def odd_names(f: pd.DataFrame, r: dict, c: str, g: np.random.Generator) -> tuple[Any, ...]:
    """Used columns renamed to unicode, quotes, dots, spaces, backticks: still valid."""
    new = dict(zip([EXP, ARM, OUT, PA, PB, SEG], ODD_NAMES, strict=True))
    out = f.rename(columns=new)
    roles2 = {
        **r,
        "experiment": new[EXP],
        "treatment": new[ARM],
        "outcome": new[OUT],
        "proxies": [new[PA], new[PB]],
        "segments": [new[SEG]],
        "directions": {new[PB]: "lower"} if r["directions"] else None,
    }
    return out, roles2, True, []


ODD_NAMES = ['exp "id"', "arm.col", "ltv 日本", "prox`y", "Ünï-b", "seg's r"]


def reserved(f: pd.DataFrame, r: dict, c: str, g: np.random.Generator) -> tuple[Any, ...]:
    return f.rename(columns={SEG: "cell"}), {**r, "segments": ["cell"]}, False, ["cell"]


def not_a_frame(f: pd.DataFrame, r: dict, c: str, g: np.random.Generator) -> tuple[Any, ...]:
    choice = [f.to_dict(), f.to_numpy(), None, 3, [1, 2]][int(g.integers(5))]
    return choice, r, False, ["data"]


def extension_dtypes(f: pd.DataFrame, r: dict, c: str, g: np.random.Generator) -> tuple[Any, ...]:
    """Nullable number dtypes and a categorical segment column: valid as they are."""
    out = f.assign(**{OUT: f[OUT].astype("Float64"), SEG: f[SEG].astype("category")})
    if f[EXP].dtype == np.int64:
        out[EXP] = out[EXP].astype("Int64")
    return out, r, True, []


DAMAGES: dict[str, Damage] = {
    d.__name__: d
    for d in (
        nan_value,
        inf_value,
        text_value,
        complex_value,
        duplicate,
        missing,
        case_twin,
        mixed_ids,
        separator,
        one_arm,
        three_arms,
        no_rows,
        overflow,
        control_char,
        int_labels,
        junk_columns,
        object_numbers,
        odd_names,
        reserved,
        not_a_frame,
        extension_dtypes,
    )
}


@pytest.mark.fuzz
@given(
    world=worlds(),
    engine=st.sampled_from(ENGINES),
    damage=st.sampled_from(sorted(DAMAGES)),
    column=st.sampled_from([EXP, ARM, OUT, PA, PB, SEG]),
    seed=st.integers(0, 2**16),
)
def test_summarize_damaged_worlds(
    world: World, engine: str, damage: str, column: str, seed: int
) -> None:
    frame, r, valid, names = DAMAGES[damage](
        world.users, roles(world), column, np.random.default_rng(seed)
    )
    call = run(lambda: summarize(frame, **r, engine=engine))
    check = matches(world.users, world) if valid else None
    judge(
        f"summarize[{engine}]",
        call,
        valid=valid,
        names=names,
        check=check,
        detail=(damage, column, world.ids),
    )


# -- from_arm_summaries ---------------------------------------------------------------

STATS = {m: (f"m_{m}", f"v_{m}") for m in METRICS}


@st.composite
def arm_tables(draw: st.DrawFn) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per-arm statistics drawn directly: counts, means, and a valid covariance matrix."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n_exp = draw(st.integers(2, 4))
    levels = draw(st.lists(st.sampled_from(LEVELS), min_size=1, max_size=3, unique=True))
    ids = draw(st.sampled_from(["int", "text", "big"]))
    scale = draw(st.sampled_from([1e-3, 1.0, 1e5]))
    exp_ids: list[Any] = {
        "int": list(range(n_exp)),
        "text": [f"e{i}" for i in range(n_exp)],
        "big": [2**64 - 1 - i for i in range(n_exp)],
    }[ids]
    rows = []
    for e, lev, arm in itertools.product(exp_ids, levels, (0, 1)):
        root = rng.normal(size=(3, 3)) * scale
        cov = root @ root.T + 1e-3 * scale**2 * np.eye(3)
        row = {EXP: e, SEG: lev, ARM: arm, "n_users": int(rng.integers(10, 10**6))}
        for j, m in enumerate(METRICS):
            row[STATS[m][0]] = rng.normal() * scale
            row[STATS[m][1]] = cov[j, j]
        for (a, ma), (b, mb) in itertools.combinations(enumerate(METRICS), 2):
            row[f"c_{ma}_{mb}"] = cov[a, b]
        rows.append(row)
    table = pd.DataFrame(rows)
    if ids == "big":
        table[EXP] = table[EXP].astype(np.uint64)
    args: dict[str, Any] = {
        "experiment": EXP,
        "arm": ARM,
        "treated_value": 1,
        "outcome": OUT,
        "proxies": [PA, PB],
        "segments": [SEG],
        "count": "n_users",
        "mean": {m: s[0] for m, s in STATS.items()},
        "variance": {m: s[1] for m, s in STATS.items()},
        "covariance": {(a, b): f"c_{a}_{b}" for a, b in itertools.combinations(METRICS, 2)},
    }
    return table, args


def expected_arm_cells(table: pd.DataFrame) -> dict[tuple[str, str], Any]:
    out = {}
    for (e, s), g in table.groupby([EXP, SEG], sort=False):
        t, c = g[g[ARM] == 1].iloc[0], g[g[ARM] == 0].iloc[0]
        effect = np.array([t[STATS[m][0]] - c[STATS[m][0]] for m in METRICS])
        noise = np.zeros((3, 3))
        for row in (t, c):
            cov = np.zeros((3, 3))
            for j, m in enumerate(METRICS):
                cov[j, j] = row[STATS[m][1]]
            for (a, ma), (b, mb) in itertools.combinations(enumerate(METRICS), 2):
                cov[a, b] = cov[b, a] = row[f"c_{ma}_{mb}"]
            noise += cov / row["n_users"]
        out[(str(e), str(s))] = (int(t["n_users"]), int(c["n_users"]), effect, noise)
    return out


def arm_check(table: pd.DataFrame) -> Callable[[CellEffects], None]:
    want = expected_arm_cells(table)

    def check(got: CellEffects) -> None:
        keys = [(str(e), str(s)) for e, s in zip(got.experiment, got.cells()[SEG], strict=True)]
        assert sorted(keys) == sorted(want)
        for i, key in enumerate(keys):
            n_t, n_c, effect, noise = want[key]
            assert int(got.data["n_treat"][i]) == n_t and int(got.data["n_control"][i]) == n_c
            np.testing.assert_allclose(got.effect[i], effect, rtol=1e-12, atol=0)
            np.testing.assert_allclose(got.noise_cov[i], noise, rtol=1e-12, atol=0)

    return check


def _set(table: pd.DataFrame, col: str, value: Any) -> pd.DataFrame:
    """``table`` with row 0 of ``col`` set to ``value`` (pandas picks the column's dtype)."""
    values = list(table[col])
    values[0] = value
    return table.assign(**{col: pd.Series(values, index=table.index)})


def _count_ok(value: Any) -> bool:
    whole = (isinstance(value, int | np.integer) and not isinstance(value, bool)) or (
        isinstance(value, float) and np.isfinite(value) and value.is_integer()
    )
    return whole and 2 <= value <= 2**53


ARM_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "count": st.one_of(
        st.sampled_from([-1, 10.5, 1e19, np.inf, np.nan, 2**53 + 2, 2**70, "12", None, 5.0]),
        st.integers(-(2**66), 2**66).filter(lambda v: v not in (0, 1)),
        st.floats(allow_nan=True, allow_infinity=True).filter(lambda v: not 0 <= v < 2),
    ),
    "variance": st.sampled_from([-1.0, -1e-300, np.nan, np.inf, -np.inf, "abc", None]),
}


def arm_damage(table: pd.DataFrame, args: dict[str, Any], what: str, value: Any) -> tuple:
    """The table and arguments with one thing damaged; (table, args, valid, names)."""
    t = table.copy()
    if what == "count":
        return _set(t, "n_users", value), args, _count_ok(value), ["n_users"]
    if what == "variance":
        return _set(t, STATS[PA][1], value), args, False, [STATS[PA][1]]
    if what == "huge_variance":
        t[[STATS[OUT][1], STATS[PA][1]]] = 1e308
        return t, {**args, "covariance": None, "correlation": 0.5}, False, [OUT, PA]
    if what == "duplicate_row":
        return pd.concat([t, t.iloc[:1]], ignore_index=True), args, False, [EXP, ARM, SEG]
    if what == "duplicate_column":
        return pd.concat([t, t[["n_users"]]], axis=1), args, False, ["n_users"]
    if what == "missing_column":
        return t.drop(columns=STATS[PB][0]), args, False, [STATS[PB][0]]
    if what == "mixed_ids":
        t[EXP] = t[EXP].astype(object)
        first = t[EXP].iloc[0]
        t.loc[0, EXP] = str(first) if not isinstance(first, str) else 1
        return t, args, False, [EXP]
    if what == "separator":
        t[SEG] = t[SEG].astype(str) + " / z"
        return t, args, False, [SEG]
    if what == "three_arms":
        t.loc[0, ARM] = 5
        return t, args, False, [ARM]
    if what == "complex":
        t[STATS[OUT][0]] = t[STATS[OUT][0]] + 1j
        return t, args, False, [STATS[OUT][0]]
    if what == "unknown_metric":
        return t, {**args, "mean": {**args["mean"], "zzz": "x"}}, False, ["mean"]
    raise AssertionError(what)


@pytest.mark.fuzz
@given(drawn=arm_tables())
def test_from_arm_summaries_valid_tables(drawn: tuple[pd.DataFrame, dict[str, Any]]) -> None:
    table, args = drawn
    call = run(lambda: from_arm_summaries(table, **args))
    judge("from_arm_summaries", call, valid=True, check=arm_check(table), detail=len(table))


@pytest.mark.fuzz
@given(
    drawn=arm_tables(),
    what=st.sampled_from(
        [
            "count",
            "variance",
            "huge_variance",
            "duplicate_row",
            "duplicate_column",
            "missing_column",
            "mixed_ids",
            "separator",
            "three_arms",
            "complex",
            "unknown_metric",
        ]
    ),
    data=st.data(),
)
def test_from_arm_summaries_damaged_tables(
    drawn: tuple[pd.DataFrame, dict[str, Any]], what: str, data: st.DataObject
) -> None:
    table, args = drawn
    value = data.draw(ARM_VALUES[what], label="value") if what in ARM_VALUES else None
    t, a, valid, names = arm_damage(table, args, what, value)
    check = arm_check(t.astype({"n_users": np.float64})) if valid else None
    call = run(lambda: from_arm_summaries(t, **{**a, "min_users_per_arm": 2}))
    judge(
        "from_arm_summaries",
        call,
        valid=valid,
        names=names,
        check=check,
        detail=(what, value),
    )

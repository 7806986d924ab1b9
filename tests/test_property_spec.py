"""Hostile specs: a valid spec mutated key by key must read back as written or be
refused with a SpecError naming the key.

Each example takes a valid spec, changes one thing (a key's value to a wrong type,
an out-of-range or huge number, NaN, unicode, a table or an array; an unknown key;
a section replaced by a scalar; a section emptied), writes it as TOML and reads it
with :func:`proxyscope.spec.loads_spec` through :func:`_fuzz.judge`. Whether the
change is valid, and what value the spec must then hold, is decided here from the
rules the spec format documents, written out again (ranges as literals) and checked
against the TOML read back with :mod:`tomllib`, not against the package's parser.
"""

from __future__ import annotations

import copy
import math
import tomllib
from collections.abc import Callable
from typing import Any

import pytest
import tomli_w
from _fuzz import judge
from hypothesis import given
from hypothesis import strategies as st

from proxyscope.errors import SpecError
from proxyscope.spec import load_spec, loads_spec

BASE: dict[str, Any] = {
    "spec_version": 1,
    "name": "base",
    "description": "a spec to mutate",
    "data": {"path": "users.csv", "engine": "duckdb", "min_users_per_arm": 10},
    "columns": {
        "experiment": "exp_id",
        "treatment": "treatment",
        "outcome": "retained",
        "proxies": ["watch_min", "starts"],
        "segments": ["region", "device"],
        "treated_value": 1,
    },
    "model": {"pooling": "additive", "priors": {"global_slope_sd": 1.0}},
    "sampler": {"draws": 200, "tune": 200, "chains": 2, "seed": 1},
    "analysis": {
        "ci": 0.9,
        "transport": {
            "shares": {"NA / TV": 1.0},
            "proxy_effects": {"watch_min": 1.0},
            "proxy_se": {"watch_min": 0.5},
        },
        "compare": {"poolings": ["complete"], "max_refits": 5},
    },
}
SIMULATED: dict[str, Any] = {
    **copy.deepcopy(BASE),
    "data": {"simulate": {"n_users": 1000, "n_experiments": 10, "seed": 3}},
}
ROLES = ("exp_id", "treatment", "retained", "watch_min", "starts", "region", "device")


# -- the rules, written out -------------------------------------------------------

Rule = Callable[[Any], bool]


def integer(low: int, high: int) -> Rule:
    return lambda v: type(v) is int and low <= v <= high


def number(low: float, high: float = math.inf, *, open_low: bool = False) -> Rule:
    def ok(v: Any) -> bool:
        if type(v) not in (int, float) or not math.isfinite(v):
            return False
        x = float(v)
        above = x > low if open_low else x >= low
        return above and x <= high

    return ok


def fraction(v: Any) -> bool:
    return type(v) in (int, float) and math.isfinite(v) and 0 < v < 1


def choice(*allowed: str) -> Rule:
    return lambda v: isinstance(v, str) and v in allowed


def text(v: Any) -> bool:
    return isinstance(v, str) and v.strip() != ""


def path_text(v: Any) -> bool:
    return text(v) and "\x00" not in v  # no file system takes a NUL


def spec_name(v: Any) -> bool:
    ascii_alnum = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
    return (
        isinstance(v, str)
        and v != ""
        and v[0] in ascii_alnum
        and all(c in ascii_alnum or c in "_.-" for c in v)
    )


def new_role(v: Any) -> bool:
    """A column name no other role uses (the outcome is replaced)."""
    return text(v) and v not in ROLES[:2] + ROLES[3:]


def treated(v: Any) -> bool:
    if isinstance(v, bool | str):
        return True
    if type(v) is int:
        return -(2**63) <= v < 2**63
    return type(v) is float and math.isfinite(v)


def standard_error(v: Any) -> bool:
    return number(0.0, open_low=True)(v) and math.isfinite(float(v) * float(v))


def never(v: Any) -> bool:
    return False


#: (base, key path, rule, what the spec holds). A valid value must come back equal
#: (and an integer as an int); an invalid one must be refused naming the last key.
KEYS: list[tuple[dict[str, Any], tuple[str, ...], Rule, Callable[[Any], Any]]] = [
    (BASE, ("spec_version",), lambda v: type(v) is int and v == 1, lambda s: s.spec_version),
    (BASE, ("name",), spec_name, lambda s: s.name),
    (BASE, ("description",), text, lambda s: s.description),
    (BASE, ("sampler", "draws"), integer(1, 100_000), lambda s: s.sampler.draws),
    (BASE, ("sampler", "tune"), integer(0, 100_000), lambda s: s.sampler.tune),
    (BASE, ("sampler", "chains"), integer(1, 64), lambda s: s.sampler.chains),
    (BASE, ("sampler", "seed"), integer(0, 2**32 - 1), lambda s: s.sampler.seed),
    (BASE, ("sampler", "followups"), integer(0, 5), lambda s: s.sampler.followups),
    (
        BASE,
        ("sampler", "followup_budget"),
        number(0.0, open_low=True),
        lambda s: s.sampler.followup_budget,
    ),
    (BASE, ("sampler", "name"), choice("auto", "nutpie", "pymc"), lambda s: s.sampler.name),
    (
        BASE,
        ("model", "pooling"),
        choice("additive", "exchangeable", "complete", "none"),
        lambda s: s.model.pooling,
    ),
    (BASE, ("model", "noise"), choice("moderated", "as_given"), lambda s: s.model.noise),
    (
        BASE,
        ("model", "priors", "global_slope_sd"),
        number(0.0, open_low=True),
        lambda s: s.model.priors["global_slope_sd"],
    ),
    (
        BASE,
        ("model", "priors", "min_levels_learned_scale"),
        integer(2, 2**31 - 1),
        lambda s: s.model.priors["min_levels_learned_scale"],
    ),
    (
        BASE,
        ("data", "min_users_per_arm"),
        integer(2, 2**31 - 1),
        lambda s: s.data.min_users_per_arm,
    ),
    (BASE, ("data", "dropna"), lambda v: type(v) is bool, lambda s: s.data.dropna),
    (BASE, ("data", "engine"), choice("duckdb", "pandas", "spark"), lambda s: s.data.engine),
    (BASE, ("data", "correlation"), never, lambda s: s.data.correlation),  # users: never
    (BASE, ("columns", "outcome"), new_role, lambda s: s.columns.outcome),
    (BASE, ("columns", "treated_value"), treated, lambda s: s.columns.treated_value),
    (BASE, ("analysis", "ci"), fraction, lambda s: s.analysis.ci),
    (BASE, ("analysis", "threshold"), fraction, lambda s: s.analysis.threshold),
    (BASE, ("analysis", "ledger"), path_text, lambda s: s.analysis.ledger),
    (BASE, ("data", "path"), path_text, lambda s: s.data.path),
    (
        BASE,
        ("analysis", "compare", "max_refits"),
        integer(1, 2**31 - 1),
        lambda s: s.analysis.compare.max_refits,
    ),
    (
        BASE,
        ("analysis", "transport", "shares", "NA / TV"),
        number(0.0, open_low=True),  # the only share: the total must be positive
        lambda s: s.analysis.transport.shares["NA / TV"],
    ),
    (
        BASE,
        ("analysis", "transport", "proxy_effects", "watch_min"),
        number(-math.inf),
        lambda s: s.analysis.transport.proxy_effects["watch_min"],
    ),
    (
        BASE,
        ("analysis", "transport", "proxy_se", "watch_min"),
        standard_error,
        lambda s: s.analysis.transport.proxy_se["watch_min"],
    ),
    (
        SIMULATED,
        ("data", "simulate", "n_users"),
        integer(1, 100_000_000),
        lambda s: s.data.simulate.n_users,
    ),
    (
        SIMULATED,
        ("data", "simulate", "n_experiments"),
        integer(2, 100_000),
        lambda s: s.data.simulate.n_experiments,
    ),
    (
        SIMULATED,
        ("data", "simulate", "seed"),
        integer(0, 2**32 - 1),
        lambda s: s.data.simulate.seed,
    ),
]

#: The keys each table accepts (an unknown key is refused naming it).
TABLE_KEYS: dict[tuple[str, ...], set[str]] = {
    (): {"spec_version", "name", "description", "citation", "data", "columns", "model"}
    | {"sampler", "analysis", "report"},
    ("data",): {"kind", "path", "simulate", "engine", "min_users_per_arm", "dropna"}
    | {"correlation", "asos"},
    ("columns",): {"experiment", "treatment", "outcome", "proxies", "segments"}
    | {"treated_value", "directions", "count", "mean", "variance", "covariance"},
    ("model",): {"pooling", "cell_correlation", "noise", "priors"},
    ("sampler",): {"name", "draws", "tune", "chains", "seed", "settings", "followups"}
    | {"followup_budget"},
    ("analysis",): {"ci", "threshold", "probability", "ledger", "transport", "compare"}
    | {"sensitivity"},
}

# -- hostile values -----------------------------------------------------------------

EDGES = [0, 1, -1, 2, 5, 6, 64, 65, 100_000, 100_001, 2**31 - 1, 2**31, 2**32 - 1, 2**32]
EDGES += [2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, 2**70, -(2**70), 10**30]
UNICODE = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)

values = st.one_of(
    st.sampled_from(EDGES),
    st.integers(min_value=-(2**72), max_value=2**72),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 1.0, 0.5, 1e-320, 1e154, 1e155, 1e308, -0.0]),
    st.booleans(),
    UNICODE,
    st.sampled_from(["additive", "pymc", "duckdb", "as_given", "ok-name", " ", "", "ünï"]),
    st.lists(st.integers(min_value=0, max_value=3), max_size=3),
    st.dictionaries(UNICODE, st.integers(min_value=0, max_value=3), max_size=2),
)


#: The keys that hold a number as a float (an integer written there reads as a float).
FLOAT_KEYS = {"followup_budget", "global_slope_sd", "ci", "threshold", "NA / TV", "watch_min"}


def same(got: Any, written: Any, path: tuple[str, ...]) -> bool:
    """Whether the spec holds what the TOML says, of the type it says."""
    if path[-1] in FLOAT_KEYS:
        assert type(got) is float and got == float(written), (got, written)
    else:
        assert got == written and type(got) is type(written), (got, written)
    return True


def put(raw: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = raw
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


def get(raw: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = raw
    for part in path:
        node = node[part]
    return node


def read(text: str) -> Any:
    return loads_spec(text, origin="fuzz.toml")


# -- the properties -----------------------------------------------------------------


@pytest.mark.fuzz
@given(key=st.sampled_from(KEYS), value=values)
def test_a_key_reads_back_as_written_or_is_refused_by_name(key: Any, value: Any) -> None:
    base, path, rule, held = key
    raw = copy.deepcopy(base)
    put(raw, path, value)
    text = tomli_w.dumps(raw)
    written = get(tomllib.loads(text), path)  # what the TOML says, read independently

    def check(spec: Any) -> bool:
        return same(held(spec), written, path)

    valid = rule(written)
    names = [path[-1]] + (["shares"] if "shares" in path else [])
    judge("loads_spec", lambda: read(text), valid=valid, names=names, check=check, detail=text)


@pytest.mark.fuzz
@given(
    table=st.sampled_from(sorted(TABLE_KEYS)),
    name=UNICODE.filter(lambda s: s != ""),
    value=values,
)
def test_an_unknown_key_is_refused_by_name(table: tuple[str, ...], name: str, value: Any) -> None:
    raw = copy.deepcopy(BASE)
    if name in TABLE_KEYS[table]:
        return
    put(raw, (*table, name), value)
    text = tomli_w.dumps(raw)
    judge("loads_spec", lambda: read(text), valid=False, names=[name], detail=text)


SECTIONS = ["data", "columns", "model", "sampler", "analysis"]
NESTED = [("analysis", "transport"), ("analysis", "compare"), ("model", "priors")]


@pytest.mark.fuzz
@given(
    path=st.sampled_from([(s,) for s in SECTIONS] + NESTED),
    value=st.one_of(values.filter(lambda v: not isinstance(v, dict)), st.just({})),
)
def test_a_section_of_the_wrong_kind_or_emptied(path: tuple[str, ...], value: Any) -> None:
    raw = copy.deepcopy(BASE)
    put(raw, path, value)
    text = tomli_w.dumps(raw)
    if value != {}:  # a scalar or an array where a table belongs
        judge("loads_spec", lambda: read(text), valid=False, names=[path[-1]], detail=text)
        return
    # An emptied table: its keys take their defaults, where the section has them.
    required = {
        ("data",): ["data"],  # no source
        ("columns",): ["experiment"],
        ("analysis", "transport"): ["transport"],  # no target
        ("analysis", "compare"): ["compare"],  # nothing to compare
    }
    if path in required:
        judge("loads_spec", lambda: read(text), valid=False, names=required[path], detail=text)
        return
    defaults: dict[tuple[str, ...], Callable[[Any], bool]] = {
        ("model",): lambda s: (
            (s.model.pooling, s.model.noise, dict(s.model.priors)) == ("additive", "moderated", {})
        ),
        ("sampler",): lambda s: (
            (s.sampler.draws, s.sampler.tune, s.sampler.chains, s.sampler.seed)
            == (1000, 1000, 4, None)
        ),
        ("analysis",): lambda s: (
            (s.analysis.ci, s.analysis.transport, s.analysis.compare) == (0.9, None, None)
        ),
        ("model", "priors"): lambda s: dict(s.model.priors) == {},
    }
    judge("loads_spec", lambda: read(text), valid=True, check=defaults[path], detail=text)


#: Overrides as ``--set`` gives them: the value is read as TOML.
SCALARS = st.one_of(
    st.sampled_from(EDGES),
    st.integers(min_value=-(2**72), max_value=2**72),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    UNICODE,
)


@pytest.mark.fuzz
@given(key=st.sampled_from([k for k in KEYS if k[0] is BASE]), value=SCALARS)
def test_an_override_reads_back_as_written_or_is_refused_by_name(key: Any, value: Any) -> None:
    _, path, rule, held = key
    literal = tomli_w.dumps({"v": value})[len("v = ") :].strip()
    written = tomllib.loads(f"v = {literal}")["v"]
    dotted = ".".join(path)
    if "." in path[-1] or " " in path[-1]:
        return  # a key with a dot or a space cannot be named on the command line
    base_text = tomli_w.dumps(BASE)

    def check(spec: Any) -> bool:
        return same(held(spec), written, path)

    judge(
        "loads_spec(overrides)",
        lambda: loads_spec(base_text, origin="fuzz.toml", overrides=[f"{dotted}={literal}"]),
        valid=rule(written),
        names=[path[-1]],
        check=check,
        detail=(dotted, literal),
    )


# -- the examples the issue names ---------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("name", "ok\n", "name must be a short name"),  # "$" matched before a newline
        ("data.path", "a\x00b.csv", "[data].path must be a file path"),
        ("sampler.draws", 2**70, "[sampler].draws must be at most 100000"),
        ("sampler.tune", 10**6, "[sampler].tune must be at most 100000"),
        ("sampler.chains", 65, "[sampler].chains must be at most 64"),
        ("sampler.seed", 2**32, "[sampler].seed must be at most 4294967295 (a 32-bit seed)"),
        ("sampler.followups", 6, "[sampler].followups must be at most 5"),
        ("data.min_users_per_arm", 2**31, "[data].min_users_per_arm must be at most"),
        ("model.priors.min_levels_learned_scale", 2**40, "min_levels_learned_scale must be at"),
        ("columns.treated_value", 2**63, "[columns].treated_value must fit a 64-bit integer"),
        ("columns.treated_value", math.nan, "[columns].treated_value must be a finite number"),
        ("analysis.compare.max_refits", 2**70, "[analysis.compare].max_refits must be at most"),
        ("analysis.transport.proxy_se.watch_min", 0, "proxy_se].watch_min must be a number > 0"),
        ("analysis.transport.proxy_se.watch_min", 1e200, "proxy_se].watch_min must be below"),
    ],
)
def test_out_of_range_integers_and_values_are_refused(key: str, value: Any, needle: str) -> None:
    raw = copy.deepcopy(BASE)
    put(raw, tuple(key.split(".")), value)
    with pytest.raises(SpecError) as info:
        read(tomli_w.dumps(raw))
    assert needle in str(info.value)


def test_the_largest_values_are_accepted() -> None:
    raw = copy.deepcopy(BASE)
    raw["sampler"].update(draws=100_000, tune=100_000, chains=64, seed=2**32 - 1, followups=5)
    spec = read(tomli_w.dumps(raw))
    assert (spec.sampler.draws, spec.sampler.seed) == (100_000, 2**32 - 1)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        # the transport needs a standard error for every reading, or none
        (
            {"proxy_effects": {"watch_min": 1.0, "starts": 2.0}, "proxy_se": {"watch_min": 1.0}},
            "must give a standard error for every reading in proxy_effects; missing ['starts']",
        ),
        ({"shares": {}}, "[analysis.transport].shares must give at least one segment"),
        ({"shares": {"NA / TV": 1e308, "EU / TV": 1e308}}, "shares must add up to a finite"),
    ],
)
def test_transport_tables_are_checked_as_the_transport_checks_them(
    change: dict[str, Any], needle: str
) -> None:
    raw = copy.deepcopy(BASE)
    raw["analysis"]["transport"].update(change)
    with pytest.raises(SpecError) as info:
        read(tomli_w.dumps(raw))
    assert needle in str(info.value)


@pytest.mark.parametrize(
    ("sets", "needle"),
    [
        ({"complete": ["watch_min"]}, "would be saved as fit-complete.nc, as pooling 'complete'"),
        ({"a b": ["watch_min"], "a_b": ["starts"]}, "would be saved as fit-a_b.nc"),
        ({"all proxies": ["watch_min"]}, "'all proxies' names the main fit"),
        ({" ": ["watch_min"]}, "has a set with an empty name"),
    ],
)
def test_comparison_fits_cannot_share_a_file_or_a_name(sets: dict[str, Any], needle: str) -> None:
    raw = copy.deepcopy(BASE)
    raw["analysis"]["compare"]["proxy_sets"] = sets
    with pytest.raises(SpecError) as info:
        read(tomli_w.dumps(raw))
    assert needle in str(info.value)


def test_a_spec_that_is_not_a_spec(tmp_path: Any) -> None:
    (tmp_path / "dir.toml").mkdir()
    with pytest.raises(SpecError, match="is a directory, not a spec file"):
        load_spec(tmp_path / "dir.toml")
    (tmp_path / "bytes.toml").write_bytes(b"\x00\xff\xfe garbage")
    with pytest.raises(SpecError, match=r"is not a spec \(TOML is UTF-8 text; byte 1 is 0xff\)"):
        load_spec(tmp_path / "bytes.toml")
    deep = "a = " + "[" * 2000 + "]" * 2000
    with pytest.raises(SpecError, match="nest more than 16 deep"):
        loads_spec(deep)
    with pytest.raises(SpecError, match="nest more than 16 deep"):
        loads_spec("a = " + "[" * 400 + "]" * 400)
    with pytest.raises(SpecError, match="a spec's text must be a string"):
        loads_spec(b"name = 'x'")  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="must be a file path"):
        load_spec(3)  # type: ignore[arg-type]

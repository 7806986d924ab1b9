"""Hostile and valid arguments of the analyses, as recipes built against a fit.

Used by ``tests/test_property_analyses.py``: hypothesis draws a recipe (indices
into the fit's segments and proxies, a kind of damage); :func:`build_target`,
:func:`build_readings` and :func:`build_noise` turn it into the argument, whether
it is valid, the names a refusal must give and, for a valid one, what the answer
depends on (a target's shares over the fit's segments, the readings' noise
matrix). ``r`` is the test's reference (``case``: the fit, its posterior and
historical shares; ``centre``, ``sd``: a new experiment's proxy effects).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd
from hypothesis import strategies as st


@dataclasses.dataclass(frozen=True)
class Arg:
    """A built argument: its value, whether it is valid, the names a refusal must give."""

    value: Any
    ok: bool = True
    names: tuple[str, ...] = ()
    extra: Any = None  # targets: the shares over the fit's segments; noise: the matrix


# -- arguments every analysis takes: (valid, hostile) pairs ------------------------------------
#
# Each example damages one argument (or none, or all): its value is drawn from the
# hostile half of its pair; every other argument from the valid half.

HOSTILE_NUMBERS = [np.nan, np.inf, -np.inf, "0.9", True, np.bool_(False), None, [0.5], b"1"]
unit = st.floats(min_value=0.0, max_value=1.0, exclude_min=True, exclude_max=True)
levels = st.tuples(
    st.one_of(unit, unit.map(np.float64), st.sampled_from([0.5, 0.9]).map(np.float32)),
    st.one_of(
        st.sampled_from([0, 1, 0.0, 1.0]),
        st.floats(min_value=1.0, allow_nan=False, exclude_min=True),
        st.floats(max_value=0.0, allow_nan=False),
        st.integers(min_value=2),
        st.sampled_from(HOSTILE_NUMBERS),
        st.text(max_size=4),
    ),
)
seeds = st.tuples(
    st.one_of(
        st.none(),
        st.integers(min_value=0, max_value=2**80),
        st.integers(min_value=0, max_value=2**62).map(np.int64),
    ),
    st.one_of(
        st.integers(max_value=-1),
        st.floats(allow_nan=True),
        st.sampled_from([True, "1", [1], np.bool_(True)]),
    ),
)


def damage(*names: str, valid: int = 0) -> st.SearchStrategy[str]:
    """Which argument an example damages: none (half the time, or ``valid`` in
    len(names) + 1 + valid), one, or all."""
    return st.sampled_from(["none"] * (valid or len(names) + 1) + list(names) + ["all"])


def chosen(pair: tuple[Any, Any], name: str, hit: str, label: str | None = None) -> Arg:
    bad = hit in (name, "all")
    return Arg(pair[1], ok=False, names=(label or name,)) if bad else Arg(pair[0])


# -- targets: recipes built against the fit ---------------------------------------------------

weights_ = st.one_of(st.integers(0, 1000), st.floats(0.0, 1e6), st.floats(0.0, 1e6).map(np.float32))
VALID_FORMS = ["none", "label", "tuple", "series", "users", "counts"]
DAMAGE = [
    "nan-segment", "unknown-level", "negative", "nan-weight", "inf-weight", "str-weight",
    "bool-weight", "empty-dict", "empty-frame", "not-a-target", "duplicate-column",
    "missing-column", "overflow",
]  # fmt: skip
targets = st.tuples(
    st.sampled_from(VALID_FORMS),
    st.sampled_from(DAMAGE),
    st.dictionaries(st.integers(0, 11), weights_, min_size=1, max_size=6),
    st.integers(0, 59),
)


def build_target(recipe: tuple[str, str, dict[int, Any], int], bad: bool, r: Any) -> Arg:
    form, harm, picks, salt = recipe
    labels = r.case.post.labels
    cols = list(r.case.fit.structure.columns)
    items = {labels[i % len(labels)]: w for i, w in picks.items()}
    split = {lab: tuple(lab.split(" / ")) for lab in items}
    if bad:
        return _damaged(harm, items, split, cols, salt)
    if form == "none":
        return Arg(None, extra=r.case.hist)
    if form == "users":
        items = {lab: int(w) % 20 for lab, w in items.items()}
    w = np.array([float(v) for v in items.values()])
    if not w.sum() > 0:  # nothing in the mix
        return Arg(dict.fromkeys(items, 0.0), ok=False, names=("'target'",))
    shares = np.zeros(len(labels))
    for lab, v in zip(items, w, strict=True):
        shares[labels.index(lab)] += v
    shares /= shares.sum()
    if form == "label":
        return Arg(dict(items), extra=shares)
    if form == "tuple":
        return Arg({split[lab]: v for lab, v in items.items()}, extra=shares)
    if form == "series":
        return Arg(pd.Series(items), extra=shares)
    if form == "users":
        rows = [split[lab] for lab, n in items.items() for _ in range(n)]
        table = pd.DataFrame(rows, columns=cols).assign(other="x")
        return Arg(table.sample(frac=1.0, random_state=salt), extra=shares)
    table = pd.DataFrame([split[lab] for lab in items], columns=cols)
    return Arg(table.assign(count=list(items.values())), extra=shares)


def _damaged(
    form: str, items: dict[str, Any], split: dict[str, tuple[str, ...]], cols: list[str], salt: int
) -> Arg:
    table = pd.DataFrame([split[lab] for lab in items], columns=cols)
    bad = {
        "negative": -1.0 - salt,
        "nan-weight": np.nan,
        "inf-weight": np.inf,
        "str-weight": "one",
        "bool-weight": True,
    }
    target = ("'target'",)
    if form in bad:
        value = bad[form]
        first = next(iter(items))
        if salt % 2:  # as a mapping
            return Arg({**items, first: value}, ok=False, names=target)
        counts = [value, *list(items.values())[1:]]
        return Arg(table.assign(count=counts), ok=False, names=("'count'",))
    col = cols[salt % len(cols)]
    if form == "nan-segment":
        table.loc[0, col] = [np.nan, None, pd.NA][salt % 3]
        return Arg(table, ok=False, names=(repr(col),))
    if form == "unknown-level":
        table.loc[0, col] = ["Mars", "ÉU", "eu", " ", "None"][salt % 5]
        return Arg(table, ok=False, names=target)
    if form == "duplicate-column":
        return Arg(pd.concat([table, table[[col]]], axis=1), ok=False, names=(repr(col),))
    if form == "missing-column":
        return Arg(table.drop(columns=[col]), ok=False, names=(repr(col),))
    if form == "overflow":
        return Arg(dict.fromkeys(split.values(), 1e308) | {("x", "y"): 1e308}, False, target)
    empty = {"empty-dict": {}, "empty-frame": table.iloc[:0]}
    if form in empty:
        return Arg(empty[form], ok=False, names=target)
    return Arg([42, "EU / TV", (1,), np.ones(3)][salt % 4], ok=False, names=target)


# -- proxy readings and their noise -----------------------------------------------------------

readings = st.tuples(
    st.one_of(st.none(), st.dictionaries(st.integers(0, 3), st.floats(-5.0, 5.0), max_size=4)),
    st.tuples(
        st.integers(0, 3),
        st.sampled_from([*HOSTILE_NUMBERS, 1e308, -1e300, 1e12, "big", "unknown", "list"]),
    ),
)
noises = st.tuples(
    st.sampled_from(["none", "se", "cov"]),
    st.sampled_from(["se-bad", "cov-bad", "both", "alone"]),
    st.lists(st.floats(0.01, 10.0), min_size=16, max_size=16),
    st.integers(0, 7),
)


def build_readings(recipe: Any, bad: bool, r: Any) -> Arg:
    proxies = r.case.post.proxies
    if not bad:
        if recipe[0] is None:
            return Arg(None, extra={})
        values = {proxies[k]: float(r.centre[k] + z * r.sd[k]) for k, z in recipe[0].items()}
        return Arg(values, extra=values)
    k, harm = recipe[1]
    if harm == "list":
        return Arg([0.1], ok=False, names=("proxy_effects",))
    if harm == "unknown":
        return Arg({"early_wtch_min": 0.1}, ok=False, names=("early_wtch_min",))
    return Arg({proxies[k]: harm}, ok=False, names=("proxy_effects",))


def build_noise(recipe: Any, bad: bool, read: dict[str, float], r: Any) -> tuple[Arg, Arg]:
    """(proxy_se, proxy_cov) for the readings ``read``; the noise matrix in ``extra``."""
    kind, harm, scale, salt = recipe
    k = len(read)
    sd = np.array([r.sd[r.case.post.proxies.index(p)] for p in read])
    if k == 0 and bad:  # the noise of no readings
        return Arg({"early_ctr": 0.1}, ok=False, names=("proxy_se",)), Arg(None)
    if (kind == "none" and not bad) or k == 0:
        return Arg(None, extra=np.zeros((k, k))), Arg(None)
    se = np.array(scale[:k]) * sd
    ses = dict(zip(read, se, strict=True))
    a = np.array(scale[: k * k]).reshape(k, k) - 5.0
    cov = (a @ a.T / k) * np.outer(sd, sd)
    if not bad:
        if kind == "se":
            return Arg(ses, extra=np.diag(se**2)), Arg(None)
        return Arg(None, extra=cov), Arg(cov)
    if harm in ("both", "alone"):  # se with cov; se of a proxy not read
        alone = {**ses, "early_ctr" if "early_ctr" not in read else "zz": 0.1}
        return Arg(alone if harm == "alone" else ses, ok=False, names=("proxy_se",)), Arg(
            None if harm == "alone" else cov
        )
    if harm == "se-bad":
        value = [0.0, -1.0, np.nan, np.inf, 1e200, "0.1", True, None][salt]
        return Arg({**ses, next(iter(read)): value}, ok=False, names=("proxy_se",)), Arg(None)
    wrong = [
        cov - 2.0 * np.trace(cov) * np.eye(k),  # negative definite
        np.full((k, k), np.nan),
        np.eye(k + 1),
        "cov",
        cov + np.triu(np.ones((k, k)), 1) if k > 1 else -np.eye(1),
        [[1.0] * (k + 1)] * k,
        np.full((k, k), np.inf),
        np.eye(k).astype(bool),
    ][salt]
    return Arg(None), Arg(wrong, ok=False, names=("proxy_cov",))


def verdict(args: list[Arg]) -> tuple[bool, list[str]]:
    """Valid when every argument is; else the names a refusal may give."""
    return all(a.ok for a in args), [n for a in args if not a.ok for n in a.names]

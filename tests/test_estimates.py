"""ps.from_estimates: estimates made elsewhere in, the same CellEffects out.

The reference is :func:`proxyscope.summarize` on user rows: its effects and
joint covariances, written out as a scorecard would (one row per cell and
metric, in natural directions, plus the covariances as pairs or matrices),
must come back exactly.
"""

from __future__ import annotations

import copy
import itertools
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import ROLES, make_users

import proxyscope as ps
from proxyscope import dims
from proxyscope.data import CellEffects, summarize
from proxyscope.data.estimates import from_estimates
from proxyscope.errors import ColumnError, DataError, DataTypeError, ParameterError

OUTCOME = ROLES["outcome"]
PROXIES = ROLES["proxies"]
METRICS = [OUTCOME, *PROXIES]
SEGMENTS = ROLES["segments"]
#: Natural direction of each metric (summarize's cells read "lower" proxies negated).
SIGN = np.asarray([-1.0 if ROLES["directions"].get(m) == "lower" else 1.0 for m in METRICS])


@pytest.fixture(scope="module")
def reference() -> CellEffects:
    return summarize(make_users(offset=0.0), **ROLES)


def natural(cells: CellEffects) -> tuple[np.ndarray, np.ndarray]:
    """Effects and covariances in the metrics' natural directions."""
    return cells.effect * SIGN, cells.noise_cov * SIGN[:, None] * SIGN[None, :]


def long_table(cells: CellEffects) -> pd.DataFrame:
    """One row per (experiment, segments, metric): estimate, se, arm counts."""
    eff, cov = natural(cells)
    keys = cells.cells()
    rows = []
    for c in range(cells.n_cells):
        for j, m in enumerate(METRICS):
            row = {"exp": keys[dims.EXPERIMENT].iloc[c], **{s: keys[s].iloc[c] for s in SEGMENTS}}
            row.update(
                metric=m,
                est=eff[c, j],
                se=np.sqrt(cov[c, j, j]),
                nt=int(cells.data[dims.N_TREAT][c]),
                nc=int(cells.data[dims.N_CONTROL][c]),
            )
            rows.append(row)
    return pd.DataFrame(rows)


def pair_table(cells: CellEffects, *, diagonal: bool = False) -> pd.DataFrame:
    _, cov = natural(cells)
    keys = cells.cells()
    rows = []
    for c in range(cells.n_cells):
        pairs = itertools.combinations_with_replacement(range(len(METRICS)), 2)
        for i, j in pairs:
            if i == j and not diagonal:
                continue
            row = {"exp": keys[dims.EXPERIMENT].iloc[c], **{s: keys[s].iloc[c] for s in SEGMENTS}}
            # Pairs in either order: they are unordered.
            a, b = (METRICS[j], METRICS[i]) if (c + i) % 2 else (METRICS[i], METRICS[j])
            row.update(metric_a=a, metric_b=b, covariance=cov[c, i, j])
            rows.append(row)
    return pd.DataFrame(rows)


def build(table: pd.DataFrame, **over: Any) -> CellEffects:
    args: dict[str, Any] = {
        "experiment": "exp",
        "metric": "metric",
        "estimate": "est",
        "se": "se",
        "outcome": OUTCOME,
        "proxies": PROXIES,
        "segments": SEGMENTS,
        "directions": ROLES["directions"],
    }
    args.update(over)
    return from_estimates(table, **args)


def assert_same_numbers(got: CellEffects, ref: CellEffects) -> None:
    pd.testing.assert_frame_equal(got.cells(), ref.cells())
    np.testing.assert_allclose(got.effect, ref.effect, rtol=1e-14, atol=0)
    np.testing.assert_allclose(got.noise_cov, ref.noise_cov, rtol=1e-12, atol=0)
    assert got.metrics == ref.metrics and got.directions == ref.directions


def test_a_table_of_pairs_gives_back_summarize(reference: CellEffects) -> None:
    table, pairs = long_table(reference), pair_table(reference, diagonal=True)
    before = (copy.deepcopy(table), copy.deepcopy(pairs))
    # Rows in any order: cells are sorted by experiment and segment values.
    got = build(table.sample(frac=1.0, random_state=3), covariance=pairs)
    pd.testing.assert_frame_equal(table, before[0])
    pd.testing.assert_frame_equal(pairs, before[1])
    assert_same_numbers(got, reference)
    assert list(got.design) == ["external"] * got.n_cells
    assert got.assumed_correlation is None and "ASSUMED" not in repr(got)
    assert (got.data[dims.N_TREAT].values == 0).all()
    assert got.meta["counts"] == "not given: n_treat = n_control = 0"
    assert got.meta["engine"] == "estimates"
    assert got.meta["covariance_source"] == "table of pairs"


def test_matrices_per_cell_and_counts(reference: CellEffects) -> None:
    table = long_table(reference)
    _, cov = natural(reference)
    keys = reference.cells()
    as_arrays = {
        (keys[dims.EXPERIMENT].iloc[c], *keys[SEGMENTS].iloc[c]): cov[c]
        for c in range(reference.n_cells)
    }
    shuffled = METRICS[::-1]
    order = [METRICS.index(m) for m in shuffled]
    as_frames = {
        k: pd.DataFrame(v[np.ix_(order, order)], index=shuffled, columns=shuffled)
        for k, v in as_arrays.items()
    }
    a = build(table, covariance=as_arrays, n_treat="nt", n_control="nc", design="ab")
    b = build(table, covariance=as_frames, n_treat="nt", n_control="nc", design="ab")
    assert_same_numbers(a, reference)
    assert a.fingerprint() == b.fingerprint()
    np.testing.assert_array_equal(a.data[dims.N_TREAT], reference.data[dims.N_TREAT])
    np.testing.assert_array_equal(a.data[dims.N_CONTROL], reference.data[dims.N_CONTROL])
    assert a.meta["covariance_source"] == "matrix per cell"


def _two_cells() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "exp": ["e1", "e1", "e2", "e2"],
            "metric": ["ltv", "d7", "d7", "ltv"],
            "est": [0.4, -1.1, 0.3, -0.2],
            "se": [0.2, 0.3, 0.5, 0.25],
        }
    )


def test_an_assumed_correlation_by_hand() -> None:
    args = {"experiment": "exp", "metric": "metric", "estimate": "est", "se": "se"}
    args |= {"outcome": "ltv", "proxies": ["d7"], "directions": {"d7": "lower"}}
    got = from_estimates(_two_cells(), **args, correlation=0.3)
    # Cells e1, e2; metrics ltv, d7 with d7 negated (lower is better).
    np.testing.assert_array_equal(got.effect, [[0.4, 1.1], [-0.2, -0.3]])
    cov_e1 = 0.3 * 0.2 * 0.3
    cov_e2 = 0.3 * 0.25 * 0.5
    np.testing.assert_allclose(
        got.noise_cov,
        [[[0.04, -cov_e1], [-cov_e1, 0.09]], [[0.0625, -cov_e2], [-cov_e2, 0.25]]],
        rtol=1e-15,
    )
    assert got.assumed_correlation == {"ltv|d7": 0.3}
    assert "ASSUMED noise correlations (not estimated): ltv|d7: 0.3" in repr(got)
    for keyed in ({"ltv|d7": 0.3}, {"d7|ltv": 0.3}, {("d7", "ltv"): 0.3}):
        assert from_estimates(_two_cells(), **args, correlation=keyed).fingerprint() == (
            got.fingerprint()
        )


def test_correlation_per_pair_must_name_every_pair(reference: CellEffects) -> None:
    table = long_table(reference)
    rho = {f"{a}|{b}": 0.1 for a, b in itertools.combinations(METRICS, 2)}
    got = build(table, correlation=rho)
    _, cov = natural(reference)
    sd = np.sqrt(np.einsum("cii->ci", cov))
    want = 0.1 * sd[:, :, None] * sd[:, None, :]
    want[:, np.arange(5), np.arange(5)] = sd**2
    np.testing.assert_allclose(got.noise_cov, want * SIGN[:, None] * SIGN[None, :], rtol=1e-12)
    del rho["retained|ctr"]
    with pytest.raises(
        ParameterError, match=r"must give every pair .* missing: \['retained\|ctr'\]"
    ):
        build(table, correlation=rho)


def test_design_per_row() -> None:
    args = {"experiment": "exp", "metric": "metric", "estimate": "est", "se": "se"}
    args |= {"outcome": "ltv", "proxies": ["d7"], "correlation": 0.0}
    table = _two_cells().assign(how=["did", "did", "rdd", "rdd"])
    got = from_estimates(table, **args, design="how")
    assert list(got.design) == ["did", "rdd"] and got.designs == ["did", "rdd"]
    assert "designs: did (1 cells), rdd (1 cells)" in repr(got)
    with pytest.raises(
        DataError, match=r"gives cell \(experiment 'e2', segment 'all'\) the designs"
    ):
        from_estimates(table.assign(how=["did", "did", "rdd", "ipw"]), **args, design="how")
    with pytest.raises(DataError, match=r"Column 'how' \(given as 'design'\) holds 'dd'"):
        from_estimates(table.assign(how=["dd", "dd", "rdd", "rdd"]), **args, design="how")
    with pytest.raises(ParameterError, match=r"neither a design .* nor a column"):
        from_estimates(table, **args, design="hwo")


def _pd_pairs() -> pd.DataFrame:
    return pd.DataFrame(
        {"exp": ["e1", "e2"], "metric_a": ["ltv", "d7"], "metric_b": ["d7", "ltv"],
         "covariance": [0.01, 0.2]}
    )  # fmt: skip


@pytest.mark.parametrize(
    ("change", "error", "pattern"),
    [
        ({"correlation": None}, ParameterError, r"needs exactly one of 'covariance'.*independent"),
        ({"covariance": _pd_pairs()}, ParameterError, r"needs exactly one .*; got both\."),
        ({"correlation": 1.0}, ParameterError, r"must be a correlation in \(-1, 1\)"),
        ({"correlation": float("nan")}, ParameterError, r"must be a correlation in \(-1, 1\)"),
        ({"correlation": True}, ParameterError, r"must be a correlation in \(-1, 1\)"),
        ({"correlation": {"ltv|x": 0.1}}, ParameterError, r"pairs of two different metrics"),
        ({"directions": {"ltv": "lower"}}, ParameterError, r"sets a direction for the outcome"),
        ({"directions": {"d8": "lower"}}, ParameterError, r"names 'd8', which is not a proxy"),
        ({"directions": {"d7": "down"}}, ParameterError, r"must be one of \{'higher', 'lower'\}"),
        ({"proxies": ["d7", "ltv"]}, ParameterError, r"names 'ltv', which is also the outcome"),
        ({"se": "sd"}, ColumnError, r"Column 'sd' \(given as 'se'\) is not in the table"),
        ({"se": "est"}, ColumnError, r"Column 'est' is given two roles"),
        ({"segments": ["design"]}, ColumnError, r"reserved"),
        ({"units": {"ltv": "usd"}}, ParameterError, r"must give a unit for every metric"),
        ({"design": 3}, DataTypeError, r"must be a design name or a column name"),
        (
            {"covariance": [[1.0]], "correlation": None},
            DataTypeError,
            r"must be a DataFrame of pairs or a dict",
        ),
    ],
)
def test_bad_arguments_name_the_parameter(
    change: dict[str, Any], error: type, pattern: str
) -> None:
    args: dict[str, Any] = {"experiment": "exp", "metric": "metric", "estimate": "est", "se": "se"}
    args |= {"outcome": "ltv", "proxies": ["d7"], "correlation": 0.2} | change
    with pytest.raises(error, match=pattern):
        from_estimates(_two_cells(), **args)


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (lambda t: t.assign(se=[0.2, 0.0, 0.5, 0.25]), r"'se'\) must hold positive finite.*0\.0"),
        (lambda t: t.assign(se=[0.2, -1.0, 0.5, 0.25]), r"'se'\) must hold positive finite"),
        (lambda t: t.assign(se=[0.2, np.inf, 0.5, 0.25]), r"'se'\) must hold positive finite"),
        (lambda t: t.assign(se=[0.2, np.nan, 0.5, 0.25]), r"Missing values .* 'se' \(se\): 1"),
        (lambda t: t.assign(est=[0.2, np.inf, 0.5, 0.25]), r"'estimate'\) must hold finite"),
        (lambda t: t.iloc[:3], r"Cell \(experiment 'e2', segment 'all'\) .* lacks .* \['ltv'\]"),
        (lambda t: pd.concat([t, t.iloc[:1]]), r"repeat a \(experiment, segments, metric\)"),
        (lambda t: t.assign(metric=["ltv", "d7", "d8", "ltv"]), r"holds 'd8', which is neither"),
        (lambda t: t[t["exp"] == "e1"], r"must hold at least two experiments; found 1"),
        (lambda t: t.iloc[:0], r"is empty"),
        (lambda t: t.assign(se=["a", "b", "c", "d"]), r"'se'\) must be numeric"),
    ],
)
def test_bad_tables_name_the_column_and_cell(edit: Any, pattern: str) -> None:
    args = {"experiment": "exp", "metric": "metric", "estimate": "est", "se": "se"}
    with pytest.raises((DataError, DataTypeError), match=pattern):
        from_estimates(edit(_two_cells()), **args, outcome="ltv", proxies=["d7"], correlation=0.2)


def test_covariance_errors_name_the_cell() -> None:
    args = {"experiment": "exp", "metric": "metric", "estimate": "est", "se": "se"}
    args |= {"outcome": "ltv", "proxies": ["d7"]}
    table = _two_cells()
    # e1: |cov| = 0.1 > se_ltv * se_d7 = 0.06: not positive definite.
    pairs = _pd_pairs().assign(covariance=[0.1, 0.02])
    smallest = np.linalg.eigvalsh([[0.04, 0.1], [0.1, 0.09]])[0]
    with pytest.raises(
        DataError,
        match=re.escape(
            f"the covariance of cell (experiment 'e1', segment 'all') is not positive definite: "
            f"its smallest eigenvalue is {smallest:.4g}"
        ),
    ):
        from_estimates(table, **args, covariance=pairs)
    with pytest.raises(DataError, match=r"lacks the covariance of \['ltv\|d7'\] in cell .*'e2'"):
        from_estimates(table, **args, covariance=_pd_pairs().iloc[:1])
    diag = pd.concat([_pd_pairs(), _pd_pairs().iloc[:1].assign(metric_b="ltv", covariance=0.05)])
    with pytest.raises(DataError, match=r"variance of 'ltv' in cell .*'e1'.* is 0\.05, but its"):
        from_estimates(table, **args, covariance=diag)
    twice = pd.concat([_pd_pairs(), _pd_pairs().iloc[:1]])
    with pytest.raises(DataError, match=r"gives the pair 'ltv', 'd7' of cell .*'e1'.* twice"):
        from_estimates(table, **args, covariance=twice)
    with pytest.raises(DataError, match=r"cell \(experiment 'e3'.* the estimates table does not"):
        from_estimates(table, **args, covariance=_pd_pairs().assign(exp=["e1", "e3"]))
    with pytest.raises(ColumnError, match=r"Column 'covariance' is not in the 'covariance' table"):
        from_estimates(table, **args, covariance=_pd_pairs().rename(columns={"covariance": "c"}))
    # A matrix per cell: the shape, the diagonal and the symmetry are checked.
    good = {"e1": np.array([[0.04, 0.01], [0.01, 0.09]]), "e2": np.diag([0.0625, 0.25])}
    assert from_estimates(table, **args, covariance=good).n_cells == 2
    with pytest.raises(ParameterError, match=r"for cell .*'e2'.* must be a \(2, 2\) matrix"):
        from_estimates(table, **args, covariance={**good, "e2": np.eye(3)})
    with pytest.raises(DataError, match=r"variance of 'd7' in cell .*'e2'.* is 1, but"):
        from_estimates(table, **args, covariance={**good, "e2": np.diag([0.0625, 1.0])})
    with pytest.raises(DataError, match=r"cell .*'e1'.* is not symmetric"):
        from_estimates(
            table, **args, covariance={**good, "e1": np.array([[0.04, 0.01], [0, 0.09]])}
        )
    with pytest.raises(DataError, match=r"lacks the covariance .* in cell .*'e2'"):
        from_estimates(table, **args, covariance={"e1": good["e1"]})
    with pytest.raises(ParameterError, match=r"keyed by cells: the experiment id; got"):
        from_estimates(table, **args, covariance={("e1", "x"): good["e1"]})


def test_assumed_correlations_that_contradict_each_other() -> None:
    table = pd.DataFrame(
        {"exp": np.repeat(["e1", "e2"], 3), "metric": ["y", "a", "b"] * 2,
         "est": np.arange(6.0), "se": np.ones(6)}
    )  # fmt: skip
    rho = {"y|a": 0.9, "y|b": 0.9, "a|b": -0.9}
    with pytest.raises(DataError, match=r"not positive definite.*contradict each other"):
        from_estimates(table, experiment="exp", metric="metric", estimate="est", se="se",
                       outcome="y", proxies=["a", "b"], correlation=rho)  # fmt: skip


def test_counts_must_be_one_per_cell() -> None:
    args = {"experiment": "exp", "metric": "metric", "estimate": "est", "se": "se"}
    args |= {"outcome": "ltv", "proxies": ["d7"], "correlation": 0.0}
    table = _two_cells().assign(nt=[100, 100, 50, 50], nc=[90, 90, 40, 40])
    got = from_estimates(table, **args, n_treat="nt", n_control="nc")
    assert list(got.data[dims.N_TREAT].values) == [100, 50]
    assert list(got.data[dims.N_CONTROL].values) == [90, 40]
    assert got.meta["counts"] == "given"
    with pytest.raises(DataError, match=r"'nt' \(given as 'n_treat'\) differs between the rows"):
        from_estimates(table.assign(nt=[100, 99, 50, 50]), **args, n_treat="nt")
    with pytest.raises(DataError, match=r"whole numbers of units"):
        from_estimates(table.assign(nt=[1.5, 1.5, 50, 50]), **args, n_treat="nt")


def test_saved_and_joined_with_user_level_cells(reference: CellEffects, tmp_path: Path) -> None:
    table = long_table(reference).assign(exp=lambda t: "ext-" + t["exp"].astype(str))
    units = dict.fromkeys(METRICS, "per user")
    external = build(table, correlation=0.2, design="did", units=units)
    path = external.save(tmp_path / "ext.nc")
    back = CellEffects.load(path)
    assert back.fingerprint() == external.fingerprint()
    assert list(back.design) == ["did"] * back.n_cells and back.units == units
    assert back.assumed_correlation == external.assumed_correlation
    own = build(long_table(reference), correlation=0.2, units=units)
    joined = CellEffects.concat([own, external])
    assert joined.designs == ["did", "external"]
    assert joined.n_cells == 2 * reference.n_cells


def test_exported_at_the_top_level() -> None:
    from proxyscope.data import exposure

    assert ps.from_estimates is from_estimates
    assert ps.spillover_effects is exposure.spillover_effects
    assert {"from_estimates", "spillover_effects"} <= set(dir(ps))

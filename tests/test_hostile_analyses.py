"""Hostile arguments to the analyses: one test per class of problem (issue #22).

Each class ended in a raw library traceback or a silently wrong answer before the
analyses checked their arguments where they enter
(:mod:`proxyscope.analyses.arguments`, the target reader in
:mod:`proxyscope.analyses.implied` and :func:`proxyscope.run.load.read_target`).
Every refusal must be one of proxyscope's errors naming the parameter or column.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import proxyscope as ps
from proxyscope.cli import main
from proxyscope.errors import DataError, DataTypeError, ParameterError, ProxyscopeError
from proxyscope.run.load import read_target

pytestmark = [
    pytest.mark.filterwarnings("ignore::proxyscope.errors.ConvergenceWarning"),
    pytest.mark.filterwarnings("ignore::proxyscope.analyses.fragility.FragilityWarning"),
]


def refused(
    kind: type[ProxyscopeError], names: str | tuple[str, ...], call: Callable[[], Any]
) -> str:
    """The message of the error ``call`` raises; it must be ``kind`` and name one of ``names``."""
    with pytest.raises(kind) as info:
        call()
    message = str(info.value)
    wanted = (names,) if isinstance(names, str) else names
    assert any(n in message for n in wanted), message
    return message


@pytest.fixture(scope="module")
def fit(small_fit: Any) -> Any:
    return small_fit


@pytest.fixture(scope="module")
def two(fit: Any) -> tuple[str, str]:
    return fit.proxies[0], fit.proxies[1]


# -- 6. a target table with missing segments ------------------------------------------


def test_missing_segment_values_in_a_target_table_are_refused(fit: Any) -> None:
    """Before: rows with NaN in a segment column were dropped (1,000 of 1,001 users) and
    the answer described the one user left."""
    for missing in (np.nan, None, pd.NA):
        table = pd.DataFrame(
            {"region": [missing] * 1000 + ["EU"], "device": ["TV"] * 1001}, dtype=object
        )
        message = refused(DataError, "'region'", lambda t=table: ps.transport(fit, t))
        assert "1,000 of 1,001 rows" in message and "'target'" in message
    # the same table through every analysis that takes a target
    table = pd.DataFrame({"region": ["EU", "IN"], "device": ["TV", np.nan], "count": [3, 4]})
    for call in (
        lambda: ps.recommend(fit, target=table),
        lambda: ps.weights(fit, target=table, by_segment=False),
        lambda: ps.surrogate_index(fit, dict.fromkeys(fit.proxies, 0.0), target=table),
    ):
        refused(DataError, "'device'", call)


def test_missing_segment_in_a_target_file_fails_the_cli(
    fit: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: exit 0 and an answer for the rows that had a segment."""
    fit.save(tmp_path / "fit.nc")
    target = tmp_path / "target.csv"
    target.write_text("region,device\nEU,TV\n" + "IN,\n" * 50)
    code = main(["transport", str(tmp_path / "fit.nc"), str(target)])
    err = capsys.readouterr().err
    assert code != 0
    assert "Traceback" not in err and "'device'" in err and "50 of 51 rows" in err


def test_bad_target_tables_are_refused(fit: Any) -> None:
    good = pd.DataFrame({"region": ["EU", "IN"], "device": ["TV", "Mobile"]})
    refused(ParameterError, "'target'", lambda: ps.transport(fit, {}))
    refused(ParameterError, "'target'", lambda: ps.transport(fit, pd.Series(dtype=float)))
    refused(
        DataTypeError, "'target'", lambda: ps.transport(fit, {("EU", "TV"): "0.5"})
    )  # a string is not a share
    refused(DataTypeError, "'target'", lambda: ps.transport(fit, {("EU", "TV"): True}))
    refused(
        ps.errors.ColumnError,
        "'region'",
        lambda: ps.transport(fit, pd.concat([good, good[["region"]]], axis=1)),
    )
    refused(DataTypeError, "'share'", lambda: ps.transport(fit, good.assign(share=[True, False])))
    message = refused(
        ParameterError, "'count'", lambda: ps.transport(fit, good.assign(count=["a", 1]))
    )
    assert "1 of 2 rows" in message
    huge = {("EU", "TV"): 1e308, ("IN", "Mobile"): 1e308}
    refused(ParameterError, "'target'", lambda: ps.transport(fit, huge))


def test_bad_target_files_are_refused(tmp_path: Path) -> None:
    files = {
        "empty.csv": b"",
        "garbage.csv": bytes(range(128, 256)),
        "bad.parquet": b"not parquet",
        "garbage.json": bytes(range(128, 256)),
        "twice.json": b'{"EU / TV": 1, "EU / TV": 2}',
        "nan.json": b'{"EU / TV": NaN}',
        "inf.json": b'{"EU / TV": 1e400}',
        "bool.json": b'{"EU / TV": true}',
        "empty.json": b"{}",
        "no-records.json": b"[]",
        "target.xlsx": b"region,device\n",
    }
    for name, content in files.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ProxyscopeError) as info:
            read_target(path)
        assert str(path) in str(info.value), (name, str(info.value))


# -- 7. proxy readings and their noise ----------------------------------------------------


def test_a_covariance_that_is_not_one_is_refused(fit: Any, two: tuple[str, str]) -> None:
    """Before: proxy_cov=[[-1e6]] and non-PSD matrices were used as they were."""
    one = {two[0]: 0.1}
    both = {two[0]: 0.1, two[1]: 0.2}
    bad: list[tuple[dict[str, float], Any, type[ProxyscopeError], str]] = [
        (one, [[-1e6]], ParameterError, "positive semi-definite"),
        (both, [[1.0, 2.0], [2.0, 1.0]], ParameterError, "positive semi-definite"),
        (both, [[1.0, 0.5], [0.4, 1.0]], ParameterError, "symmetric"),
        (one, [[np.nan]], ParameterError, "finite"),
        (one, [[np.inf]], ParameterError, "finite"),
        (both, np.eye(3), ParameterError, "2x2"),
        (one, 0.01, ParameterError, "1x1"),
        (one, "1", DataTypeError, "matrix of numbers"),
        (both, [[1, 2], [3]], DataTypeError, "matrix of numbers"),
        (one, [[True]], DataTypeError, "matrix of numbers"),
    ]
    for readings, cov, kind, word in bad:
        message = refused(
            kind,
            "'proxy_cov'",
            lambda r=readings, c=cov: ps.transport(fit, None, proxy_effects=r, proxy_cov=c),
        )
        assert word in message, message
    # A valid covariance (rounding-level asymmetry, a singular PSD one) is used as given.
    cov = np.array([[0.01, 0.002], [0.002 + 1e-18, 0.02]])
    res = ps.transport(fit, None, proxy_effects=both, proxy_cov=cov, random_seed=1)
    assert np.isfinite(res.draws).all()
    res = ps.transport(fit, None, proxy_effects=both, proxy_cov=np.zeros((2, 2)), random_seed=1)
    exact = ps.transport(fit, None, proxy_effects=both, random_seed=1)
    np.testing.assert_array_equal(res.draws, exact.draws)


def test_readings_must_be_finite_numbers_within_reach(fit: Any, two: tuple[str, str]) -> None:
    """Before: {'early_ctr': 1e308} returned NaN; 'big' and a list raised Python errors."""
    p = two[0]
    message = refused(
        ParameterError, "'proxy_effects'", lambda: ps.transport(fit, None, proxy_effects={p: 1e308})
    )
    assert "standard deviations" in message
    refused(ParameterError, "'proxy_effects'", lambda: ps.transport(fit, None, {p: np.nan}))
    refused(DataTypeError, "'proxy_effects'", lambda: ps.transport(fit, None, {p: "big"}))
    refused(DataTypeError, "'proxy_effects'", lambda: ps.transport(fit, None, {p: True}))
    refused(DataTypeError, "'proxy_effects'", lambda: ps.transport(fit, None, [0.1]))
    refused(ParameterError, "early_watch", lambda: ps.transport(fit, None, {"early_watch": 0.1}))
    every = dict.fromkeys(fit.proxies, 0.0)
    refused(
        DataTypeError,
        "'proxy_effects'",
        lambda: ps.surrogate_index(fit, {**every, p: "x"}),
    )
    refused(DataTypeError, "'proxy_effects'", lambda: ps.surrogate_index(fit, [0.0] * 4))
    # numpy numbers and a Series are readings like Python floats
    res = ps.transport(fit, None, proxy_effects=pd.Series({p: np.float64(0.1)}), random_seed=3)
    same = ps.transport(fit, None, proxy_effects={p: 0.1}, random_seed=3)
    np.testing.assert_array_equal(res.draws, same.draws)


def test_noise_without_readings_or_of_unknown_proxies_is_refused(
    fit: Any, two: tuple[str, str]
) -> None:
    """Before: proxy_se without proxy_effects (even SE -5 for an unknown proxy) was ignored."""
    p, q = two
    refused(ParameterError, "'proxy_se'", lambda: ps.transport(fit, None, proxy_se={"zz": -5}))
    refused(ParameterError, "'proxy_se'", lambda: ps.transport(fit, None, {}, proxy_se={p: 1}))
    refused(ParameterError, "'proxy_cov'", lambda: ps.transport(fit, None, proxy_cov=[[1.0]]))
    one = {p: 0.1}
    for se in ({p: -5}, {p: 0.0}, {p: np.nan}, {p: 1e200}):
        refused(ParameterError, "'proxy_se'", lambda s=se: ps.transport(fit, None, one, s))
    refused(DataTypeError, "'proxy_se'", lambda: ps.transport(fit, None, one, {p: "0.1"}))
    refused(DataTypeError, "'proxy_se'", lambda: ps.transport(fit, None, one, [0.1]))
    refused(ParameterError, "'proxy_se'", lambda: ps.transport(fit, None, one, {p: 1, "zz": 1}))
    refused(ParameterError, "'proxy_se'", lambda: ps.transport(fit, None, one, {p: 1, q: 1}))
    refused(ParameterError, "'proxy_se'", lambda: ps.transport(fit, None, one, {}))


# -- 14. every other argument of every analysis ------------------------------------------


def test_a_path_or_anything_else_instead_of_a_fit_is_refused(fit: Any) -> None:
    calls: dict[str, Callable[[Any], Any]] = {
        "transport": lambda f: ps.transport(f, None),
        "fragility": ps.fragility,
        "recommend": ps.recommend,
        "weights": ps.weights,
        "surrogacy": ps.surrogacy,
        "surrogate_index": lambda f: ps.surrogate_index(f, {"x": 0.0}),
        "compare": lambda f: ps.compare({"a": f, "b": fit}),
    }
    for owner, call in calls.items():
        message = refused(DataTypeError, "'fit'", lambda c=call: c("fit.nc"))
        assert owner in message and "ps.load('fit.nc')" in message, message
        refused(DataTypeError, "'fit'", lambda c=call: c(Path("fit.nc")))
        refused(DataTypeError, "'fit'", lambda c=call: c(None))
    refused(DataTypeError, "'fits'", lambda: ps.compare([fit, fit]))
    refused(ParameterError, "'fits'", lambda: ps.compare({"a": fit}))


def test_integer_arguments_are_checked(fit: Any) -> None:
    """Before: max_draws=0 IndexError, -1 ValueError, 'x' TypeError."""
    for value in (0, -1):
        refused(
            ParameterError,
            "'max_draws'",
            lambda v=value: ps.fragility(fit, by="cell", max_draws=v),
        )
    for value in ("x", 2.5, True, None):
        refused(
            DataTypeError,
            "'max_draws'",
            lambda v=value: ps.fragility(fit, by="cell", max_draws=v),
        )
    both = {"a": fit, "b": fit}
    refused(ParameterError, "'max_refits'", lambda: ps.compare(both, max_refits=0))
    refused(DataTypeError, "'max_refits'", lambda: ps.compare(both, max_refits="3"))
    # a numpy integer is an integer
    out = ps.fragility(fit, by="cell", max_draws=np.int64(2))
    assert out.attrs["n_draws"] == 2


def test_random_seeds_are_checked(fit: Any) -> None:
    """Before: random_seed=-1 / 'a' raised numpy's and Python's errors."""
    every = dict.fromkeys(fit.proxies, 0.0)
    calls: list[Callable[[Any], Any]] = [
        lambda s: ps.transport(fit, None, random_seed=s),
        lambda s: ps.surrogate_index(fit, every, random_seed=s),
        lambda s: ps.compare({"a": fit, "b": fit}, random_seed=s),
    ]
    for call in calls:
        refused(ParameterError, "'random_seed'", lambda c=call: c(-1))
        for value in ("a", 1.5, True, [1]):
            refused(DataTypeError, "'random_seed'", lambda c=call, v=value: c(v))
    a = ps.transport(fit, None, random_seed=np.int64(4))
    b = ps.transport(fit, None, random_seed=4)
    np.testing.assert_array_equal(a.draws, b.draws)


def test_levels_are_numbers_in_the_open_unit_interval(fit: Any) -> None:
    """Before: probability='0.9' raised TypeError; threshold=True was read as 1."""
    calls: list[tuple[str, Callable[[Any], Any]]] = [
        ("ci", lambda v: ps.transport(fit, None, ci=v)),
        ("ci", lambda v: ps.fragility(fit, ci=v)),
        ("ci", lambda v: ps.recommend(fit, ci=v)),
        ("ci", lambda v: ps.weights(fit, ci=v)),
        ("ci", lambda v: ps.surrogacy(fit, ci=v)),
        ("ci", lambda v: ps.surrogate_index(fit, dict.fromkeys(fit.proxies, 0.0), ci=v)),
        ("threshold", lambda v: ps.fragility(fit, threshold=v)),
        ("threshold", lambda v: ps.recommend(fit, threshold=v)),
        ("probability", lambda v: ps.recommend(fit, probability=v)),
        ("probability", lambda v: ps.surrogacy(fit, probability=v)),
    ]
    for param, call in calls:
        for value in (0, 1, 1.5, -0.1, np.nan, np.inf):
            refused(ParameterError, f"'{param}'", lambda c=call, v=value: c(v))
        for value in ("0.9", True, np.bool_(True), None, [0.9]):
            refused(DataTypeError, f"'{param}'", lambda c=call, v=value: c(v))
    # numpy scalars are numbers
    a = ps.fragility(fit, ci=np.float32(0.8), threshold=np.float64(0.4), warn=False)
    b = ps.fragility(fit, ci=float(np.float32(0.8)), threshold=0.4, warn=False)
    pd.testing.assert_frame_equal(a, b)


def test_flags_and_names_are_checked(fit: Any) -> None:
    refused(DataTypeError, "'by_segment'", lambda: ps.weights(fit, by_segment="no"))
    refused(DataTypeError, "'warn'", lambda: ps.fragility(fit, warn=1))
    refused(DataTypeError, "'by'", lambda: ps.fragility(fit, by=["cell"]))
    refused(ParameterError, "'by'", lambda: ps.fragility(fit, by="cells"))
    refused(DataTypeError, "'ledger'", lambda: ps.weights(fit, ledger=3))
    refused(DataTypeError, "'note'", lambda: ps.weights(fit, note=3))
    both = {"a": fit, "b": fit}
    refused(DataTypeError, "'refit'", lambda: ps.compare(both, refit="yes"))
    refused(DataTypeError, "'kind'", lambda: ps.compare(both, kind=None))


def test_past_experiments_flagged_pairs_are_checked(fit: Any) -> None:
    from proxyscope.analyses.relation import past_experiments

    label, proxy = fit.structure.labels[0], fit.proxies[0]
    refused(ParameterError, "'flagged'", lambda: past_experiments(fit, flagged=[("Mars", proxy)]))
    refused(ParameterError, "'flagged'", lambda: past_experiments(fit, flagged=[(label, "zz")]))
    refused(DataTypeError, "'flagged'", lambda: past_experiments(fit, flagged=[label]))
    refused(DataTypeError, "'fit'", lambda: past_experiments("fit.nc"))


def test_baseline_arguments_are_checked(fit: Any) -> None:
    from proxyscope.analyses.baseline import reliability_scores, sign_counting

    refused(DataTypeError, "'effects'", lambda: sign_counting(fit))
    refused(DataTypeError, "'effects'", lambda: reliability_scores("cells.csv"))
    refused(DataTypeError, "'min_count'", lambda: sign_counting(fit.effects, min_count="400"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = sign_counting(fit.effects, min_count=np.int64(10))
        b = sign_counting(fit.effects, min_count=10)
    pd.testing.assert_frame_equal(a, b)

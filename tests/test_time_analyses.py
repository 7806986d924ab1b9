"""What holds now: the analyses of a fit with time read one period (DESIGN.md §9).

One model with time is fitted on a simulated world whose first proxy's slope
drifts from 0.8 to 0.33 over eight quarters (``simulate.from_model``, exact
truth). Checked here: every analysis reads the latest period by default and
another with ``period=``; at the first period the weights and a segment's flip
probability equal those computed in this file from the posterior's paths
(``beta_path``, ``mu_path``, ...), with scipy for the orthant probability; the
drifting proxy's weight and flip probability move between periods the way the
simulator's truth does; every result names its period; a period on a static fit
or one the fit does not have is refused; and the weights ledger records each
entry's period, also in ledgers written before periods were recorded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pytest
from scipy.stats import multivariate_normal

import proxyscope as ps
from proxyscope.analyses.fragility import FragilityWarning, segment_flip_draws
from proxyscope.analyses.relation import past_experiments
from proxyscope.analyses.weights import surrogate_index
from proxyscope.errors import DataError, IncompatibleFileError, ParameterError
from proxyscope.ledger import current_weights, record_weights, weights_history

DRIFTING = "proxy_1"
READINGS = {"proxy_1": 0.5, "proxy_2": 0.2}


@pytest.fixture(scope="module")
def world() -> tuple[Any, Any]:
    # 100 experiments: with 50 the fit of 2 x 1000 draws misses the ESS bar.
    return ps.simulate.from_model(
        n_experiments=100,
        periods=8,
        drift={0: 0.12},
        beta=(0.8, 0.15),
        mu=((1.0, 0.5), (0.5, 1.0), (1.5, 0.0), (0.0, 0.8)),
        sd_e=(1.0, 0.8),
        sd_c=(0.3, 0.3),
        seed=3,
    )


@pytest.fixture(scope="module")
def fit(world: tuple[Any, Any]) -> Any:
    cells, truth = world
    timed = cells.with_time(truth.starts, period="quarter")
    return ps.ProxyModel(time=True).fit(
        timed, draws=1000, tune=1000, chains=2, random_seed=1, progress=False
    )


@pytest.fixture(scope="module")
def periods(fit: Any) -> tuple[str, str]:
    """(first, latest) period labels."""
    return fit.info.periods[0], fit.info.periods[-1]


def draws_of(fit: Any, name: str, *order: str) -> np.ndarray:
    """A posterior variable as (sample, *order) — flattened here, not by the package."""
    value = fit.posterior[name].stack(sample=("chain", "draw"))
    return np.asarray(value.transpose("sample", *order).values, dtype=float)


def hand_weights(fit: Any, period: str) -> tuple[np.ndarray, np.ndarray]:
    """Per draw, from the paths: weights per segment (N, S, K) and global (N, K) at
    the historical mix (users per segment from the cells' arm sizes)."""
    beta = draws_of(fit, "beta_path", "period", "segment", "proxy")
    beta = beta[:, list(fit.info.periods).index(period)]
    omega = draws_of(fit, "omega_e", "proxy", "proxy_") + draws_of(
        fit, "omega_c", "proxy", "proxy_"
    )
    sd = np.sqrt(np.einsum("nkk->nk", omega))

    def shares(b: np.ndarray) -> np.ndarray:
        c = np.abs(b) * sd.reshape(sd.shape[0], *([1] * (b.ndim - 2)), sd.shape[1])
        return c / c.sum(axis=-1, keepdims=True)

    data = fit.effects.data
    users = pd.Series(
        (data["n_treat"] + data["n_control"]).values,
        index=pd.Index(data["segment_label"].values),
    )
    pi = users.groupby(level=0).sum().reindex(list(fit.posterior["segment"].values))
    pi = (pi / pi.sum()).to_numpy()
    return shares(beta), shares(np.einsum("s,nsk->nk", pi, beta))


def test_the_timed_fit_converged_over_the_worlds_periods(fit: Any, world: Any) -> None:
    assert fit.trustworthy
    assert fit.info.periods == world[1].period_labels


def _transport(fit: Any, **kw: Any) -> pd.DataFrame:
    """transport's summary and its predictive draws, in one frame."""
    result = ps.transport(fit, {"a": 2, "d": 1}, proxy_effects=READINGS, **kw)
    out = pd.concat([result.summary(), pd.DataFrame({"mean": result.draws})], ignore_index=True)
    out.attrs = result.summary().attrs
    return out


@pytest.mark.parametrize(
    "call",
    [
        lambda fit, **kw: ps.fragility(fit, warn=False, **kw),
        lambda fit, **kw: ps.surrogacy(fit, **kw),
        lambda fit, **kw: ps.weights(fit, **kw),
        lambda fit, **kw: ps.recommend(fit, **kw),
        lambda fit, **kw: surrogate_index(fit, READINGS, **kw),
        _transport,
        lambda fit, **kw: past_experiments(fit, **kw).lines,
    ],
    ids=["fragility", "surrogacy", "weights", "recommend", "index", "transport", "relation"],
)
def test_the_default_is_the_latest_period_and_another_reads_differently(
    fit: Any, periods: tuple[str, str], call: Any
) -> None:
    first, latest = periods
    default = call(fit)
    assert default.attrs["period"] == latest
    pd.testing.assert_frame_equal(default, call(fit, period=latest))
    earlier = call(fit, period=first)
    assert earlier.attrs["period"] == first
    numbers = default.select_dtypes("number").columns
    assert not np.allclose(default[numbers].to_numpy(), earlier[numbers].to_numpy())


def test_weights_at_the_first_period_are_those_of_its_slopes(
    fit: Any, periods: tuple[str, str]
) -> None:
    first, latest = periods
    for period in (first, latest):
        per_segment, overall = hand_weights(fit, period)
        out = ps.weights(fit, period=period)
        got = out[out["scope"] == "global"]["weight"].to_numpy()
        np.testing.assert_allclose(got, overall.mean(axis=0), rtol=1e-10)
        for s, label in enumerate(fit.posterior["segment"].values):
            rows = out[out["scope"] == label]
            np.testing.assert_allclose(rows["weight"], per_segment[:, s].mean(axis=0), rtol=1e-10)
            lo, hi = np.quantile(per_segment[:, s], [0.05, 0.95], axis=0)
            np.testing.assert_allclose(rows["weight_lo"], lo, rtol=1e-10)
            np.testing.assert_allclose(rows["weight_hi"], hi, rtol=1e-10)


def test_a_segments_flip_probability_at_the_first_period_is_that_of_its_paths(
    fit: Any, periods: tuple[str, str]
) -> None:
    first, _ = periods
    p = list(fit.info.periods).index(first)
    s, k = 3, 0  # segment d, the drifting proxy
    nu = draws_of(fit, "nu_path", "period", "segment")[:, p, s]
    mu = draws_of(fit, "mu_path", "period", "segment", "proxy")[:, p, s]
    beta = draws_of(fit, "beta_path", "period", "segment", "proxy")[:, p, s]
    sigma = draws_of(fit, "sigma_path", "period", "segment")[:, p, s]
    omega = draws_of(fit, "omega_e", "proxy", "proxy_") + draws_of(
        fit, "omega_c", "proxy", "proxy_"
    )
    outcome = draws_of(fit, "sd_e_outcome") ** 2
    flips = np.empty(len(nu))
    for n in range(len(nu)):
        wb = omega[n] @ beta[n]
        cov = [[beta[n] @ wb + sigma[n] ** 2 + outcome[n], wb[k]], [wb[k], omega[n, k, k]]]
        mean = np.array([nu[n], mu[n, k]])
        both_negative = multivariate_normal(mean, cov).cdf([0.0, 0.0])
        both_positive = multivariate_normal(-mean, cov).cdf([0.0, 0.0])
        flips[n] = 1.0 - both_negative - both_positive
    got, _ = segment_flip_draws(fit, first)
    np.testing.assert_allclose(got[:, s, k], flips, atol=1e-7)
    table = ps.fragility(fit, period=first, warn=False)
    row = table[(table["segment"] == "d") & (table["proxy"] == DRIFTING)].iloc[0]
    assert row["flip_prob"] == pytest.approx(flips.mean(), abs=1e-7)


def test_the_drifting_proxy_moves_between_periods_as_the_truth_does(
    fit: Any, world: Any, periods: tuple[str, str]
) -> None:
    truth = world[1]
    first, latest = periods
    # The truth: the drifting proxy's weight falls from 0.87 to 0.73 (its slope from
    # 0.8 to 0.33); the other proxy's slope stays.
    sd = np.sqrt(np.diag(truth.omega_e + truth.omega_c))
    true_w = np.abs(truth.beta_path) * sd / (np.abs(truth.beta_path) * sd).sum(axis=1)[:, None]
    assert true_w[0, 0] - true_w[-1, 0] > 0.1
    # The slope that drives it has credibly fallen; the weight's fall (weights are
    # shares, compressed near 1) has the truth's sign and holds the truth.
    slope = draws_of(fit, "beta_global_path", "period", "proxy")[:, :, 0]
    assert np.quantile(slope[:, 0] - slope[:, -1], 0.05) > 0
    _, w_first = hand_weights(fit, first)
    _, w_latest = hand_weights(fit, latest)
    change = w_first[:, 0] - w_latest[:, 0]
    lo, hi = np.quantile(change, [0.05, 0.95])
    assert change.mean() > 0 and lo < true_w[0, 0] - true_w[-1, 0] < hi
    at = {p: ps.weights(fit, period=p, by_segment=False).set_index("proxy") for p in periods}
    assert at[first].loc[DRIFTING, "weight"] > at[latest].loc[DRIFTING, "weight"] + 0.05
    # Its R^2 falls with its slope; segment d's flip probability rises (true 0.15 -> 0.29).
    r2 = {p: ps.surrogacy(fit, period=p).set_index("scope").loc[DRIFTING, "r2"] for p in periods}
    assert r2[first] > r2[latest]
    flips = {
        p: ps.fragility(fit, period=p, warn=False)
        .set_index(["segment", "proxy"])
        .loc[("d", DRIFTING), "flip_prob"]
        for p in periods
    }
    assert flips[latest] > flips[first] + 0.05


def test_every_result_names_its_period(fit: Any, periods: tuple[str, str]) -> None:
    first, latest = periods
    with pytest.warns(FragilityWarning) as caught:
        frag = ps.fragility(fit, threshold=0.3)
    head = f"{DRIFTING} is fragile in c in {latest}: P(flip)"
    assert any(text.startswith(head) for text in frag.attrs["warnings"])
    assert [str(w.message) for w in caught] == frag.attrs["warnings"]
    assert all(f" in {latest}: " in text for text in frag.attrs["warnings"])
    rec = ps.recommend(fit, period=first)
    assert rec["recommendation"].str.startswith(f"In {first}: ").all()
    moved = ps.transport(fit, {"a": 1}, period=first)
    assert moved.period == first and moved.summary().attrs["period"] == first
    assert f"(new experiment in {first})" in repr(moved)
    cells = ps.fragility(fit, by="cell", max_draws=10, period=first)
    assert cells.attrs["period"] == first
    assert fit.summary().attrs["period"] == latest
    rel = past_experiments(fit, period=first)
    assert rel.period == first and rel.lines.attrs["period"] == first
    assert "the period it started in" in rel.reading()


def test_cell_fragility_reads_the_cells_of_the_period(
    fit: Any, world: Any, periods: tuple[str, str]
) -> None:
    truth = world[1]
    for p, label in enumerate(fit.info.periods[:2]):
        cells = ps.fragility(fit, by="cell", max_draws=10, period=label)
        expected = set(np.flatnonzero(truth.experiment_period == p))
        assert set(cells["experiment"]) == expected
    assert len(ps.fragility(fit, by="cell", max_draws=10)) == len(
        ps.fragility(fit, by="cell", max_draws=10, period=periods[1])
    )


def test_past_experiments_are_checked_in_the_period_they_started(
    fit: Any, world: Any, periods: tuple[str, str]
) -> None:
    truth = world[1]
    rel = past_experiments(fit)
    started = [truth.period_labels[p] for p in truth.experiment_period]
    assert rel.check["period"].tolist() == started
    # Which period the lines show does not change the check.
    pd.testing.assert_frame_equal(rel.check, past_experiments(fit, period=periods[0]).check)


CALLS = {
    "fragility": lambda fit, p: ps.fragility(fit, period=p),
    "surrogacy": lambda fit, p: ps.surrogacy(fit, period=p),
    "transport": lambda fit, p: ps.transport(fit, None, period=p),
    "weights": lambda fit, p: ps.weights(fit, period=p),
    "surrogate_index": lambda fit, p: surrogate_index(
        fit, dict.fromkeys(fit.proxies, 0.01), period=p
    ),
    "recommend": lambda fit, p: ps.recommend(fit, period=p),
    "past_experiments": lambda fit, p: past_experiments(fit, period=p),
}


@pytest.mark.parametrize("name", list(CALLS))
def test_a_period_the_fit_does_not_have_is_refused(fit: Any, name: str) -> None:
    with pytest.raises(
        ParameterError,
        match=rf"'period' parameter of {name} must be one of the fit's periods \['2024-Q1', "
        r".*; got '2025Q4'\. Did you mean '2025-Q4'\?",
    ):
        CALLS[name](fit, "2025Q4")


@pytest.mark.filterwarnings("ignore::proxyscope.errors.ConvergenceWarning")
@pytest.mark.parametrize("name", list(CALLS))
def test_a_period_on_a_static_fit_is_refused(small_fit: Any, name: str) -> None:
    with pytest.raises(
        ParameterError, match=rf"'period' parameter of {name} needs a fit with time.*static"
    ):
        CALLS[name](small_fit, "2025-Q4")


@pytest.mark.filterwarnings("ignore::proxyscope.errors.ConvergenceWarning")
def test_a_static_fit_states_no_period_and_adds_nothing(small_fit: Any, tmp_path: Path) -> None:
    frames = {
        "fragility": ps.fragility(small_fit, warn=False),
        "surrogacy": ps.surrogacy(small_fit),
        "weights": ps.weights(small_fit, ledger=tmp_path / "l.duckdb"),
        "recommend": ps.recommend(small_fit),
        "summary": small_fit.summary(),
    }
    for name, frame in frames.items():
        assert frame.attrs["period"] is None, name
        assert "period" not in frame.columns, name
    assert not frames["recommend"]["recommendation"].str.startswith("In ").any()
    moved = ps.transport(small_fit, None)
    assert moved.period is None and " in " not in repr(moved).split(":")[0]
    rel = past_experiments(small_fit)
    assert rel.period is None and "period" not in rel.check.columns
    assert weights_history(tmp_path / "l.duckdb")["period"].isna().all()


# ----------------------------------------------------------------------------
# The weights ledger records each entry's period
# ----------------------------------------------------------------------------


def test_the_ledger_records_the_period_of_each_entry(
    fit: Any, periods: tuple[str, str], tmp_path: Path
) -> None:
    first, latest = periods
    path = tmp_path / "weights.duckdb"
    for p in fit.info.periods:
        ps.weights(fit, period=p, by_segment=False, ledger=path, note="quarterly")
    now = ps.weights(fit, by_segment=False, ledger=path)
    history = weights_history(path)
    assert list(history.columns[:5]) == ["entry_id", "timestamp", "kind", "period", "scope"]
    by_entry = history.groupby("entry_id")["period"].first().tolist()
    assert by_entry == [*fit.info.periods, latest]
    # The history shows how the weights moved: the drifting proxy's weight per period.
    moved = history[history["proxy"] == DRIFTING]
    assert moved["weight"].iloc[0] > moved["weight"].iloc[-1]
    assert moved["period"].iloc[0] == first
    assert moved["weight"].iloc[-1] == now.set_index("proxy").loc[DRIFTING, "weight"]
    current = current_weights(path)
    assert set(current["period"]) == {latest}


def test_a_ledger_from_before_periods_reads_and_gains_them(
    fit: Any, periods: tuple[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "old.duckdb"
    table = pd.DataFrame({"scope": "global", "proxy": ["x", "y"], "weight": [0.6, 0.4]})
    record_weights(path, table, note="old")
    with duckdb.connect(str(path)) as con:  # as written before periods were recorded
        con.execute("DROP TABLE ledger_periods")
        before = con.execute(
            "SELECT table_name, column_name, data_type, is_nullable FROM "
            "information_schema.columns ORDER BY table_name, ordinal_position"
        ).fetchall()
    old = weights_history(path)
    assert len(old) == 2 and old["period"].isna().all()
    ps.weights(fit, period=periods[0], by_segment=False, ledger=path)
    history = weights_history(path)
    assert history.groupby("entry_id")["period"].first().isna().tolist() == [True, False]
    assert history["period"].dropna().unique().tolist() == [periods[0]]
    with duckdb.connect(str(path), read_only=True) as con:
        after = con.execute(
            "SELECT table_name, column_name, data_type, is_nullable FROM "
            "information_schema.columns WHERE table_name <> 'ledger_periods' "
            "ORDER BY table_name, ordinal_position"
        ).fetchall()
        version = con.execute(
            "SELECT value FROM ledger_meta WHERE key = 'schema_version'"
        ).fetchone()
    assert after == before and version == ("1",)  # the tables older versions read: unchanged


def test_a_bad_period_is_refused_by_the_ledger(tmp_path: Path) -> None:
    path = tmp_path / "l.duckdb"
    table = pd.DataFrame({"scope": "global", "proxy": ["x"], "weight": [1.0]})
    for bad in ("", "  ", 2025):
        with pytest.raises(ParameterError, match=r"'period' parameter must be a non-empty"):
            record_weights(path, table, period=bad)
    assert not path.exists()


@pytest.mark.parametrize(
    ("sql", "error", "pattern"),
    [
        (
            "CREATE TABLE ledger_periods (entry_id BIGINT PRIMARY KEY, period VARCHAR NOT NULL);"
            "INSERT INTO ledger_periods VALUES (9, '2025-Q4')",
            DataError,
            r"is damaged: it has periods of entries \[9\] that do not exist",
        ),
        (
            "CREATE TABLE ledger_periods (entry_id BIGINT PRIMARY KEY, period INTEGER NOT NULL)",
            IncompatibleFileError,
            r"altered outside proxyscope: column ledger_periods\.period has type INTEGER",
        ),
    ],
)
def test_a_damaged_or_altered_periods_table_is_refused_and_left_alone(
    tmp_path: Path, sql: str, error: type[Exception], pattern: str
) -> None:
    path = tmp_path / "l.duckdb"
    table = pd.DataFrame({"scope": "global", "proxy": ["x"], "weight": [1.0]})
    record_weights(path, table, period="2025-Q3")
    with duckdb.connect(str(path)) as con:
        con.execute("DROP TABLE ledger_periods")
        for statement in sql.split(";"):
            con.execute(statement)
    kept = path.read_bytes()
    for call in (
        lambda: weights_history(path),
        lambda: record_weights(path, table, period="2025-Q4"),
    ):
        with pytest.raises(error, match=pattern):
            call()
    assert path.read_bytes() == kept

"""Fragility, recommendations and transport judged against the simulator's exact truth.

Real sampling (slow; run in CI): the default world (250k users, 50
experiments, seed 7, the fit shared with ``test_recovery``) and a world whose
failure cohort sits in another cell (chosen by a seeded draw; nothing here
names it). The truth is the world's population structure:
``pop_flip_prob`` (a new experiment's flip probability per cell),
``pop_decision_accuracy`` and new experiments drawn from the world.

Thresholds and why a wrong implementation fails them:

- ranking: the cohort cell must come first among 24 for both engagement
  proxies; a sign error or a mix-up of segments puts it anywhere else.
- flip probabilities: correlation with the truth across the 24 cells >= 0.6
  (measured 0.88-0.93 here; reading P(same sign) instead gives about -0.9) and
  mean absolute error below the seed's sign-counting baseline and <= 0.22
  (measured 0.09-0.10 on these two fits, baseline 0.23-0.32). The posterior
  mean of a probability whose truth is near 0 sits above it when the
  long-term effects are this noisy (measured over 30 seeds of
  ``benchmarks/bench_truth.py``: MAE 0.09-0.20 per seed), so the bound is not the
  issue's 0.10 target; reading P(same sign) instead of P(flip) gives MAE 0.71-0.74.
- decisions: per proxy the naive, calibrated and no-proxy rules judged on new
  experiments' true effects; the first-ranked proxy's true gain within 0.03 of the
  best, proxies with no relation never credible nor first (the measured figures are
  in the test's docstring; ranking by the naive accuracy puts CTR first in one cell).
- transport: the 90% predictive interval holds 80-97% of 2,000 new
  experiments' true long-term effects in a mix with 60% of users in the
  cohort cell (measured 0.86 and 0.88; binomial noise at 2,000 draws is about
  0.007); the prediction for the historical mix covers fewer (0.47 and 0.82).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import STREAMING_ROLES, cached_fit

import proxyscope as ps
from proxyscope.analyses.baseline import SEED_MIN_COUNT, sign_counting
from proxyscope.errors import DataWarning
from proxyscope.simulate import FailureCohort
from proxyscope.simulate.scenario import cell_labels

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::proxyscope.errors.ConvergenceWarning"),
]
PROXIES = ("early_watch_min", "early_starts")
KEYS = ["region", "device", "tenure"]
TARGET_SHARE = 0.6


def _label(cell: tuple[str, str, str]) -> str:
    return " / ".join(cell)


def _cohort_cell(world: Any) -> tuple[str, str, str]:
    return _cell(world.config.cohort)


def _cell(c: FailureCohort) -> tuple[str, str, str]:
    return (str(c.region), str(c.device), str(c.tenure))


def _flip_table(fit: Any, world: Any) -> pd.DataFrame:
    truth = world.truth["pop_flip_prob"].to_dataframe().reset_index()
    return ps.fragility(fit, warn=False).merge(truth, on=[*KEYS, "proxy"])


@pytest.fixture(scope="module")
def moved_world() -> Any:
    """The default world's size with the cohort in a cell drawn from a seeded RNG."""
    rng = np.random.default_rng(2026)
    cells = cell_labels()
    default = _cell(FailureCohort())
    choices = [c for c in cells if c != default]
    cell = choices[int(rng.integers(len(choices)))]
    cohort = FailureCohort(region=cell[0], device=cell[1], tenure=cell[2])
    return ps.simulate.streaming(n_users=250_000, n_experiments=50, seed=23, cohort=cohort)


@pytest.fixture(scope="module")
def moved_fit(moved_world: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # a few small cells are dropped
        effects = ps.summarize(moved_world.users, engine="duckdb", **STREAMING_ROLES)
    return cached_fit(
        "truth-moved-cohort",
        lambda: ps.ProxyModel(followups=0).fit(
            effects, draws=400, tune=400, chains=4, random_seed=23, progress=False
        ),
    )


@pytest.fixture(params=["default", "moved"])
def world_fit(request: pytest.FixtureRequest) -> tuple[Any, Any]:
    if request.param == "default":
        return request.getfixturevalue("sim_world"), request.getfixturevalue("sim_fit")
    return request.getfixturevalue("moved_world"), request.getfixturevalue("moved_fit")


def test_moved_cohort_is_elsewhere(moved_world: Any, sim_world: Any) -> None:
    assert _cohort_cell(moved_world) != _cohort_cell(sim_world)


def test_the_cohort_is_the_most_fragile_segment(world_fit: tuple[Any, Any]) -> None:
    world, fit = world_fit
    cohort = _label(_cohort_cell(world))
    table = _flip_table(fit, world)
    for proxy in PROXIES:
        rows = table[table.proxy == proxy]
        # The truth agrees that the cohort is where this proxy breaks ...
        assert rows.loc[rows.pop_flip_prob.idxmax(), "segment"] == cohort
        # ... and the posterior ranks it first and flags it.
        top = rows.sort_values("flip_prob", ascending=False).iloc[0]
        assert top.segment == cohort, (
            proxy,
            rows.nlargest(3, "flip_prob")[["segment", "flip_prob"]],
        )
        assert bool(top.flagged)


def test_the_seed_baseline_filter_hides_the_default_cohort(sim_world: Any, sim_fit: Any) -> None:
    """The comparator: the seed's sign counting at its 400-user filter does not list it."""
    cohort = _label(_cohort_cell(sim_world))
    with pytest.warns(DataWarning, match="left no cell"):
        filtered = sign_counting(sim_fit.effects, min_count=SEED_MIN_COUNT)
    assert cohort not in set(filtered.segment)


def test_flip_probabilities_track_the_population_truth(world_fit: tuple[Any, Any]) -> None:
    world, fit = world_fit
    table = _flip_table(fit, world)
    baseline = sign_counting(fit.effects).merge(
        world.truth["pop_flip_prob"].to_dataframe().reset_index(), on=[*KEYS, "proxy"]
    )
    for proxy in PROXIES:
        rows = table[table.proxy == proxy]
        mae = float((rows.flip_prob - rows.pop_flip_prob).abs().mean())
        base = baseline[baseline.proxy == proxy]
        base_mae = float((base.flip_rate - base.pop_flip_prob).abs().mean())
        corr = rows[["flip_prob", "pop_flip_prob"]].corr().iloc[0, 1]
        assert corr >= 0.6, (proxy, corr)
        assert mae <= 0.22, (proxy, mae)
        assert mae < base_mae, (proxy, mae, base_mae)
        assert np.all(rows.flip_lo <= rows.flip_prob) and np.all(rows.flip_prob <= rows.flip_hi)


@pytest.mark.parametrize("where", ["historical mix", "one cell"])
def test_the_three_decision_accuracies_match_new_experiments(
    world_fit: tuple[Any, Any], where: str
) -> None:
    """Naive, calibrated and no-proxy decisions judged on 20,000 new experiments drawn from
    the world (their exact true effects), the fitted calibrated rule applied to them as a
    team would; in the historical mix and in one cell (NA / TV / Existing), where the
    long-term effect is positive in 78% of new experiments.

    Measured on the two worlds' test fits (the numbers: truth):
    - the calibrated rule beats the naive one for the engagement proxies (0.88-0.99
      against 0.72-0.96) and gains 0.10-0.44 over no proxy; CTR and rebuffer rate are
      never credible, gain 0.00-0.01 in the posterior and are never ranked first (their
      naive accuracy 0.55-0.78 is the long-term effect's sign rate);
    - the first single proxy's true gain is the best or within 0.011 of it;
    - the no-proxy accuracy lies in its 90% interval in all four cases; the naive one
      within 0.033 of its interval (CTR in the moved world); the calibrated rule's
      posterior mean is within 0.104 of its true accuracy for the credible proxies (it
      understates: the model leaves more noise between the effects than the world has).
    A rule read the wrong way round, or ranking by the naive accuracy (CTR first in one
    cell), fails these.
    """
    world, fit = world_fit
    cell = ("NA", "TV", "Existing")
    if where == "one cell":
        mix, target = world.config.mix.concentrated(cell, 1.0), {_label(cell): 1.0}
    else:
        mix, target = world.config.mix, None
    found = ps.recommend(fit, target=target)
    rec = found.set_index("proxy")
    new = world.new_experiment_effects(20_000, mix, seed=11)
    new = new[new.scope == "mix"]
    tau = new["long_retained"].to_numpy()
    p_pos = float(np.mean(tau > 0))
    none = max(p_pos, 1.0 - p_pos)
    first = rec.iloc[0]
    assert first.no_proxy_lo <= none <= first.no_proxy_hi, (where, none)
    gains = {}
    for proxy in fit.proxies:
        row = rec.loc[proxy]
        theta = new[proxy].to_numpy()
        naive = float(np.mean(np.sign(theta) == np.sign(tau)))
        assert row.decision_lo - 0.05 <= naive <= row.decision_hi + 0.05, (where, proxy, naive)
        if row.rule_direction == 0:  # the no-proxy rule the posterior chose
            calibrated = float(np.mean((tau > 0) == found.attrs["no_proxy_ships"]))
        else:
            calibrated = float(
                np.mean((row.rule_direction * (theta - row.rule_threshold) > 0) == (tau > 0))
            )
        gains[proxy] = calibrated - none
        assert calibrated >= none - 0.04, (where, proxy, calibrated, none)
        if row.credible:
            assert abs(row.calibrated_accuracy - calibrated) <= 0.12, (where, proxy, calibrated)
            assert calibrated >= naive - 0.01, (where, proxy, calibrated, naive)
            assert gains[proxy] >= 0.05, (where, proxy, gains)
    first_single = next(p for p in rec.index if p in gains)
    assert gains[first_single] >= max(gains.values()) - 0.03, (where, first_single, gains)
    for proxy in ("early_ctr", "rebuffer_rate"):
        assert not rec.loc[proxy, "credible"], (where, proxy)
        assert rec.loc[proxy, "gain"] <= 0.02, (where, proxy)
        assert rec.index[0] != proxy


def test_transport_interval_holds_new_experiments_of_a_shifted_mix(
    world_fit: tuple[Any, Any],
) -> None:
    world, fit = world_fit
    mix = world.config.mix.concentrated(_cohort_cell(world), TARGET_SHARE)
    target = dict(zip(cell_labels(), mix.cell_probabilities().tolist(), strict=True))
    result = ps.transport(fit, target, random_seed=1)
    lo, hi = np.quantile(result.draws, [0.05, 0.95])
    new = world.new_experiment_effects(2000, mix, seed=5)
    true_long = new.loc[new.scope == "mix", "long_retained"].to_numpy()
    cover = float(np.mean((true_long >= lo) & (true_long <= hi)))
    assert 0.80 <= cover <= 0.97, cover
    # The historical-mix prediction is a different answer: the target matters.
    hist = ps.transport(fit, None, random_seed=1).draws
    h_lo, h_hi = np.quantile(hist, [0.05, 0.95])
    assert np.mean((true_long >= h_lo) & (true_long <= h_hi)) < cover

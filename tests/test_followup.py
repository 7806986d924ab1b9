"""What a fit does after a failed run, and what its diagnostics advise, on every surface."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from proxyscope.model.advice import describe, failed_families
from proxyscope.model.coordinates import Coordinates
from proxyscope.model.diagnostics import Diagnostics
from proxyscope.model.followup import Run, next_run


def _diag(
    *,
    ess: float = 1000.0,
    rhat: float = 1.001,
    divergences: int = 0,
    sampler: dict[str, Any] | None = None,
    stray: list[tuple[int, str, float]] | None = None,
    names: tuple[str, ...] = ("mu_interaction_sd[early_starts]", "loc_int_z[early_starts, 0]"),
) -> Diagnostics:
    table = pd.DataFrame(
        {
            "parameter": [*names, "sd_e[early_ctr]"],
            "group": ["posterior"] * (len(names) + 1),
            "r_hat": [rhat] * len(names) + [1.0],
            "ess_bulk": [ess] * len(names) + [3000.0],
            "ess_tail": [ess] * len(names) + [3000.0],
        }
    )
    table["ok"] = (table["r_hat"] <= 1.01) & (table["ess_bulk"] >= 400)
    passed = bool(table["ok"].all() and divergences == 0)
    return Diagnostics(
        table=table,
        divergences=divergences,
        n_draws=4000,
        treedepth_saturation=0.0,
        ebfmi=[0.9] * 4,
        rhat_max=1.01,
        ess_min=400,
        passed=passed,
        chain_divergences=[divergences, 0, 0, 0],
        stray_chains=stray or [],
        sampler=sampler or {"settings": {"target_accept": 0.9}, "draws": 1000, "tune": 1000},
    )


def _run(number: int = 1, target: float = 0.9, draws: int = 1000) -> Run:
    return Run(
        number=number,
        draws=draws,
        tune=draws,
        settings={"target_accept": target},
        coordinates=Coordinates.natural(1, np.zeros((2, 0)), ()),
        action="first run",
    )


def _next(diag: Diagnostics, run: Run, rechosen: bool = True, **kw: Any) -> tuple[Run | None, str]:
    # The re-chosen coordinates are tested in test_density; here the policy.
    # ``rechosen``: whether re-choosing them gives anything new.
    import proxyscope.model.followup as fu

    new = run.coordinates.replace(rotation=-run.coordinates.rotation)
    original = fu.repilot
    fu.repilot = lambda layout, raw: new if rechosen else run.coordinates  # type: ignore[assignment]
    try:
        options = {"followup_seconds": 0.0, "first_seconds": 10.0, "first_length": 2000}
        options.update(kw)
        return next_run(run, diag, None, None, **options)  # type: ignore[arg-type]
    finally:
        fu.repilot = original


def test_a_passed_run_has_no_follow_up() -> None:
    nxt, why = _next(_diag(), _run())
    assert nxt is None and why == "passed"


def test_divergences_raise_target_accept_step_by_step_and_say_why() -> None:
    nxt, _ = _next(_diag(divergences=7), _run())
    assert nxt is not None and nxt.number == 2
    assert nxt.settings["target_accept"] == 0.95
    assert "target_accept 0.9 -> 0.95 (7 divergences)" in nxt.action
    # Divergences alone keep the coordinates; slow mixing re-chooses them.
    assert "coordinates re-chosen" not in nxt.action
    assert nxt.draws == 1000  # the second run keeps the length
    third, _ = _next(_diag(divergences=2, ess=300), nxt)
    assert third is not None and third.settings["target_accept"] == 0.99
    assert "coordinates re-chosen" in third.action
    # At the highest target_accept, divergences alone leave nothing to try.
    last, why = _next(_diag(divergences=2), _run(number=2, target=0.99))
    assert last is None and "highest target_accept" in why


def test_a_short_ess_doubles_the_length_from_the_third_run() -> None:
    second, _ = _next(_diag(ess=300), _run())
    assert second is not None and second.draws == 1000 and "doubled" not in second.action
    third, _ = _next(_diag(ess=300), second)
    assert third is not None and (third.draws, third.tune) == (2000, 2000)
    assert "doubled to 2000 + 2000 (min bulk ESS 300 < 400)" in third.action


def test_a_run_that_re_choosing_cannot_change_is_lengthened_at_once() -> None:
    """With nothing to re-choose (pooling "none"), the same coordinates, settings
    and seed would repeat the failed run draw for draw: it runs twice as long."""
    second, _ = _next(_diag(rhat=1.011), _run(), rechosen=False)
    assert second is not None and (second.draws, second.tune) == (2000, 2000)
    assert "coordinates re-chosen" not in second.action
    assert "doubled to 2000 + 2000 (max R-hat 1.0110 > 1.01)" in second.action
    # A slow R-hat (ESS fine) is lengthened from the third run on as well.
    third, _ = _next(_diag(rhat=1.011), _run(number=2))
    assert third is not None and third.draws == 2000 and "coordinates re-chosen" in third.action


def test_follow_ups_stop_at_the_run_limit_and_within_the_budget() -> None:
    nxt, why = _next(_diag(ess=300), _run(number=3))
    assert nxt is None and "after 3 runs" in why
    # A 10 s first run: the third run is twice as long (20 s), which fits the
    # budget of 4 x 10 s after 15 s of follow-ups, and not after 25 s.
    nxt, why = _next(_diag(ess=300), _run(number=2), followup_seconds=25.0)
    assert nxt is None and "budget" in why and "about 20 s" in why
    nxt, _ = _next(_diag(ess=300), _run(number=2), followup_seconds=15.0)
    assert nxt is not None


def test_families_name_the_piece_and_the_metric() -> None:
    assert describe("mu_interaction_sd[early_starts]") == (
        "locations (segment means of the long-term and proxy effects), interaction scale"
    )
    assert describe("beta_main_region[NA, early_ctr]") == "slopes, main effects of region"
    assert describe("slope_main_sd__device[early_ctr]") == "slopes, main-effect scale of device"
    assert describe("sd_e[early_ctr]") == "experiment-effect covariance, scales"
    assert describe("log_sigma_global") == "residual scale (what the proxies miss), global value"
    families = failed_families(_diag(ess=200))
    assert families == [
        "locations (segment means of the long-term and proxy effects), interaction scale "
        "(early_starts)",
        "locations (segment means of the long-term and proxy effects), interactions (early_starts)",
    ]


@pytest.mark.parametrize(
    ("surface", "target", "length", "pooling"),
    [
        (
            "python",
            "ProxyModel(sampler_settings={'target_accept': 0.99})",
            "fit(..., draws=4000, tune=4000)",
            "ProxyModel(pooling='complete')",
        ),
        ("cli", "--setting target_accept=0.99", "--draws 4000 --tune 4000", "--pooling complete"),
        (
            "spec",
            "[sampler] settings = { target_accept = 0.99 }",
            "[sampler] draws = 4000, tune = 4000",
            '[model] pooling = "complete"',
        ),
    ],
)
def test_advice_speaks_the_surface_and_never_repeats_what_was_done(
    surface: str, target: str, length: str, pooling: str
) -> None:
    # The fit ended at target_accept 0.95 with 2000 draws after its follow-ups.
    done = {"settings": {"target_accept": 0.95}, "draws": 2000, "tune": 2000, "random_seed": 4}
    diag = _diag(ess=300, divergences=3, sampler=done).for_surface(surface)
    advice = " ".join(diag.advice())
    assert target in advice and length in advice
    assert "0.95)" not in advice.replace("from 0.95", "")  # never suggests what it did
    # At the highest target_accept, the advice turns to the pooling instead.
    top = {"settings": {"target_accept": 0.99}, "draws": 2000, "tune": 2000}
    advice = " ".join(_diag(divergences=3, sampler=top).advice(surface))
    assert "target_accept" in advice and pooling in advice
    assert "raise target_accept" not in advice
    # A stray chain: compare with another seed, in the surface's syntax.
    stray = _diag(rhat=1.5, stray=[(1, "beta_global[rebuffer_rate]", 9.0)], sampler=done)
    text = " ".join(stray.advice(surface))
    seed = {"python": "fit(..., random_seed=5)", "cli": "--seed 5", "spec": "[sampler] seed = 5"}
    assert seed[surface] in text and "slopes, global value" in text
    assert "run longer" not in text  # more draws would not join separate modes


def test_the_summary_lists_every_run() -> None:
    runs = [
        {
            "number": 1,
            "action": "first run",
            "passed": False,
            "max_rhat": 1.02,
            "min_ess_bulk": 210.0,
            "divergences": 4,
        },
        {
            "number": 2,
            "action": "run 1 failed: ...; target_accept 0.9 -> 0.95 (4 divergences)",
            "passed": True,
            "max_rhat": 1.004,
            "min_ess_bulk": 800.0,
            "divergences": 0,
        },
    ]
    diag = _diag(sampler={"settings": {"target_accept": 0.95}, "attempts": runs})
    text = diag.summary()
    assert text.startswith("Convergence PASSED")
    assert "The fit made 2 runs: 1. first run (failed: max R-hat 1.020" in text
    assert "2. run 1 failed: ...; target_accept 0.9 -> 0.95 (4 divergences) (passed)." in text
    assert diag.to_dict()["runs"] == runs

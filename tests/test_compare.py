"""The reading of a LOO comparison table, independent of any fit."""

from __future__ import annotations

import pandas as pd

from proxyscope.analyses.compare import Comparison


def test_comparison_reading_says_when_refits_were_grouped() -> None:
    table = pd.DataFrame(
        {
            "rank": [0, 1],
            "elpd_loo": [10.0, 2.0],
            "p_loo": [3.0, 2.0],
            "elpd_diff": [0.0, 8.0],
            "weight": [1.0, 0.0],
            "se": [2.0, 2.0],
            "dse": [0.0, 1.0],
            "warning": [False, False],
            "n_high_k": [0, 0],
            "max_pareto_k": [0.5, 0.5],
            "n_refitted": [3, 4],
        },
        index=["a", "b"],
    )
    refitted = {"a": ["e1", "e2", "e3"], "b": ["e1", "e2", "e3", "e4"]}
    comp = Comparison(table, "experiment", refitted, {}, refit_folds={"a": 3, "b": 2})
    text = comp.reading()
    assert "one at a time (exact leave-one-experiment-out) because Pareto k > 0.7: a: 3." in text
    assert "held out in groups" in text and "b: 4 experiments in 2 groups" in text
    assert "'b' is clearly worse: 8.0 lower" in text


def _table(trustworthy: list[bool]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "rank": [0, 1, 2],
            "elpd_loo": [10.0, 8.0, 2.0],
            "p_loo": [3.0, 2.0, 2.0],
            "elpd_diff": [0.0, 2.0, 8.0],
            "weight": [0.7, 0.3, 0.0],
            "se": [2.0, 2.0, 2.0],
            "dse": [0.0, 1.5, 1.0],
            "warning": [False, False, False],
            "n_high_k": [0, 0, 0],
            "max_pareto_k": [0.5, 0.5, 0.5],
            "n_refitted": [0, 0, 0],
            "trustworthy": trustworthy,
        },
        index=["additive", "complete", "none"],
    )


def test_a_failed_fit_is_never_called_best_without_the_caveat() -> None:
    comp = Comparison(_table([False, True, True]), "experiment", {}, {})
    assert comp.failed == ["additive"]
    text = comp.reading()
    assert "'additive' (its fit FAILED its diagnostics) scores best" in text
    assert "do not choose it; of the fits that passed, 'complete' scores best." in text
    none_passed = Comparison(_table([False, False, False]), "experiment", {}, {})
    assert "no fit passed its diagnostics" in none_passed.reading()
    assert "'complete' (its fit FAILED its diagnostics) is" in none_passed.reading()
    fine = Comparison(_table([True, True, True]), "experiment", {}, {})
    assert fine.failed == [] and "FAILED" not in fine.reading()
    assert "'additive' scores best" in fine.reading()

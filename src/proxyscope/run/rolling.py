"""The rolling-origin backtest a spec asks for (``[analysis.rolling_backtest]``, DESIGN.md
§9): at each origin, the spec's model over time and the same model without time are
fitted on the experiments up to it and judged on the later ones
(:func:`proxyscope.analyses.backtest.rolling.rolling_backtest`)."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from proxyscope.analyses.backtest.rolling import rolling_backtest
from proxyscope.errors import ConvergenceWarning
from proxyscope.run.fit import proxy_model
from proxyscope.run.progress import Log, quiet
from proxyscope.spec import ModelSection, RollingSpec, SamplerSpec

if TYPE_CHECKING:
    from proxyscope.analyses.backtest.rolling_result import RollingBacktest
    from proxyscope.data.cells import CellEffects


def run_rolling(
    model: ModelSection,
    sampler: SamplerSpec,
    rb: RollingSpec,
    effects: CellEffects,
    *,
    ci: float,
    progress: bool = False,
    log: Log = quiet,
) -> tuple[RollingBacktest, list[str]]:
    """The backtest of a spec's ``[model]`` (over time) against the same model without
    time, and the fits of it that failed their diagnostics ("rolling backtest 2024-Q3
    (static)", ...); its fits' sampler is ``[sampler]``'s, with the draws, tune and
    chains ``[analysis.rolling_backtest]`` (``rb``) sets."""
    assert model.time is not None
    s = sampler
    draws = s.draws if rb.draws is None else rb.draws
    tune = s.tune if rb.tune is None else rb.tune
    chains = s.chains if rb.chains is None else rb.chains
    models = (proxy_model(model, s), proxy_model(model, s, time=None))
    log(
        "rolling backtest: the model over time against the static one at "
        + (", ".join(rb.origins) if rb.origins else "the default origins")
        + f" ({chains} chain{'s' if chains != 1 else ''} x ({tune} tune + {draws} draws) "
        "per fit)"
    )
    with warnings.catch_warnings():
        # Said once below, naming each failed fit, not per origin.
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        result = rolling_backtest(
            effects,
            list(rb.origins) or None,
            models=models,
            draws=draws,
            tune=tune,
            chains=chains,
            random_seed=s.seed,
            ci=ci,
            progress=progress,
        )
    failed = [
        f"rolling backtest {origin} ({model})"
        for (origin, model), ok in result.trustworthy.items()
        if not ok
    ]
    log(result.verdict())
    return result, failed

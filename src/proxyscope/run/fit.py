"""Fitting the model a spec configures: :class:`proxyscope.ProxyModel` from its
``[model]`` and ``[sampler]``, with one progress line before and after."""

from __future__ import annotations

import time
import warnings
from typing import TYPE_CHECKING, Any

from proxyscope.errors import ConvergenceWarning
from proxyscope.model.proxy_model import FAILED_FIT, ProxyModel
from proxyscope.run.preflight import check_settings
from proxyscope.run.progress import Log, quiet
from proxyscope.spec import ModelSection, ModelSpec, SamplerSpec

if TYPE_CHECKING:
    from proxyscope.data.cells import CellEffects
    from proxyscope.model.fit import ProxyFit


def fit_effects(
    spec: ModelSpec,
    effects: CellEffects,
    *,
    pooling: str | None = None,
    progress: bool = True,
    log: Log = quiet,
    label: str = "",
) -> ProxyFit:
    """Fit the spec's model (or another ``pooling``) to ``effects``.

    A failed fit is returned (marked untrustworthy), not raised; its
    ConvergenceWarning is left to the caller's warning filters.
    """
    return fit_model(
        spec.model, spec.sampler, effects, pooling=pooling, progress=progress, log=log, label=label
    )


def proxy_model(
    model: ModelSection, sampler: SamplerSpec, *, pooling: str | None = None, time: Any = ...
) -> ProxyModel:
    """The :class:`proxyscope.ProxyModel` a spec's ``[model]`` and ``[sampler]`` configure
    (``pooling`` and ``time``, when given, replace the spec's: the rolling backtest's
    static model has ``time=None``)."""
    return ProxyModel(
        pooling=pooling or model.pooling,
        priors=dict(model.priors) or None,
        sampler=sampler.name,
        sampler_settings=dict(sampler.settings) or None,
        cell_correlation=model.cell_correlation,
        noise=model.noise,
        followups=sampler.followups,
        followup_budget=sampler.followup_budget,
        time=model.time_argument() if time is ... else time,
    )


def fit_model(
    model: ModelSection,
    sampler: SamplerSpec,
    effects: CellEffects,
    *,
    pooling: str | None = None,
    progress: bool = True,
    log: Log = quiet,
    label: str = "",
    surface: str = "spec",
) -> ProxyFit:
    """Fit :class:`proxyscope.ProxyModel` configured by a spec's ``[model]`` and ``[sampler]``.

    A failed fit's ConvergenceWarning advises in the syntax of ``surface``
    (spec keys, or command-line flags for ``"cli"``), not in Python's.
    """
    chosen = pooling or model.pooling
    check_settings(sampler, surface)
    configured = proxy_model(model, sampler, pooling=chosen)
    what = f" ({label})" if label else ""
    timed = "" if model.time is None else ", relation moving over time"
    log(
        f"fitting {chosen} pooling{what}{timed}: {effects.n_cells} cells, "
        f"{sampler.chains} chains x ({sampler.tune} tune + {sampler.draws} draws)"
    )
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = configured.fit(
            effects,
            draws=sampler.draws,
            tune=sampler.tune,
            chains=sampler.chains,
            random_seed=sampler.seed,
            progress=progress,
        )
    for w in caught:
        if not issubclass(w.category, ConvergenceWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if not fit.trustworthy:
        warnings.warn(
            FAILED_FIT + fit.diagnostics().for_surface(surface).summary(),
            ConvergenceWarning,
            stacklevel=2,
        )
    verdict = "passed" if fit.trustworthy else "FAILED"
    log(f"fitted in {time.perf_counter() - t0:.0f} s; diagnostics {verdict}")
    return fit

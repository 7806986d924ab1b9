"""proxyscope: Bayesian hierarchical validation of proxy metrics in online experiments.

Learn from past randomized experiments how the long-term effect moves with
early proxy effects, segment by segment, and get honest answers to: which
proxy to trust, where it breaks (fragility), what it predicts for another
population (transport), how to weight a composite decision metric, and which
model structure the data support.

Quick start::

    import proxyscope as ps
    world = ps.simulate.streaming(n_users=250_000, n_experiments=50, seed=7)
    effects = ps.summarize(world.users, experiment="exp_id", treatment="treatment",
                           outcome="long_retained",
                           proxies=["early_watch_min", "early_starts", "early_ctr",
                                    "rebuffer_rate"],
                           segments=["region", "device", "tenure"],
                           directions={"rebuffer_rate": "lower"})
    fit = ps.ProxyModel(pooling="additive").fit(effects, random_seed=1)
    ps.fragility(fit); ps.recommend(fit); ps.report(fit, out="report/")

Names are imported on first use, so ``import proxyscope`` stays light (no PyMC
until a model is built).
"""

from __future__ import annotations

import importlib
import os
from typing import Any

# nutpie may run linear algebra on Rust's rayon pool; one thread is faster on
# small machines, where extra threads compete with the chains. The pool reads
# this once, when it starts, so it is set as early as possible (see
# proxyscope.model.sampling); a value the user set is kept.
os.environ.setdefault("RAYON_NUM_THREADS", "1")

from proxyscope._version import __version__

_EXPORTS: dict[str, tuple[str, str]] = {
    "CellEffects": ("proxyscope.data.cells", "CellEffects"),
    "summarize": ("proxyscope.data.summarize", "summarize"),
    "from_arm_summaries": ("proxyscope.data.arms", "from_arm_summaries"),
    "from_estimates": ("proxyscope.data.estimates", "from_estimates"),
    "spillover_effects": ("proxyscope.data.exposure", "spillover_effects"),
    "did": ("proxyscope.data.did", "did"),
    "ipw": ("proxyscope.data.ipw", "ipw"),
    "rdd": ("proxyscope.data.rdd", "rdd"),
    "synthetic_control": ("proxyscope.data.synthetic_control", "synthetic_control"),
    "load_asos": ("proxyscope.datasets.asos", "load_asos"),
    "ProxyModel": ("proxyscope.model.proxy_model", "ProxyModel"),
    "ProxyFit": ("proxyscope.model.fit", "ProxyFit"),
    "Priors": ("proxyscope.model.priors", "Priors"),
    "Diagnostics": ("proxyscope.model.diagnostics", "Diagnostics"),
    "load": ("proxyscope.model.fit", "load"),
    "fragility": ("proxyscope.analyses.fragility", "fragility"),
    "surrogacy": ("proxyscope.analyses.surrogacy", "surrogacy"),
    "transport": ("proxyscope.analyses.transport", "transport"),
    "TransportResult": ("proxyscope.analyses.transport", "TransportResult"),
    "weights": ("proxyscope.analyses.weights", "weights"),
    "surrogate_index": ("proxyscope.analyses.weights", "surrogate_index"),
    "recommend": ("proxyscope.analyses.recommend", "recommend"),
    "override_weights": ("proxyscope.ledger", "override_weights"),
    "weights_history": ("proxyscope.ledger", "weights_history"),
    "current_weights": ("proxyscope.ledger", "current_weights"),
    "backtest": ("proxyscope.analyses.backtest", "backtest"),
    "rolling_backtest": ("proxyscope.analyses.backtest.rolling", "rolling_backtest"),
    "RollingBacktest": ("proxyscope.analyses.backtest.rolling_result", "RollingBacktest"),
    "stability": ("proxyscope.analyses.stability", "stability"),
    "Stability": ("proxyscope.analyses.stability", "Stability"),
    "compare": ("proxyscope.analyses.compare", "compare"),
    "design_bias": ("proxyscope.analyses.designs", "design_bias"),
    "DesignReport": ("proxyscope.analyses.designs", "DesignReport"),
    "report": ("proxyscope.reporting", "report"),
}
_MODULES = ("simulate", "data", "model", "analyses", "core", "errors", "dims")

__all__ = ["__version__", *_EXPORTS, *_MODULES]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module, attr = _EXPORTS[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    if name in _MODULES:
        value = importlib.import_module(f"proxyscope.{name}")
        globals()[name] = value
        return value
    raise AttributeError(f"module 'proxyscope' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)

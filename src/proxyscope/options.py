"""Every allowed value and default that several layers share (standard library only,
importable from anywhere): the model, the data layer and the spec format read the
same tuples, so a spec is checked against exactly what the package accepts."""

from __future__ import annotations

#: Interval level of every analysis, report and spec: 90% equal-tailed.
DEFAULT_CI = 0.9

#: How segment effects are pooled (see :class:`proxyscope.ProxyModel`).
POOLINGS = ("additive", "exchangeable", "complete", "none")
#: Cell-level correlation of the latent effects: one shared matrix or one per segment.
CELL_CORRELATIONS = ("shared", "free")
#: What a fit does with each cell's sampling covariance.
NOISE_MODES = ("moderated", "as_given")
#: The samplers a fit can use (a spec also accepts "auto": nutpie when installed).
SAMPLERS = ("nutpie", "pymc")
#: The engines ``summarize`` runs on.
ENGINES = ("duckdb", "pandas", "spark")
#: A metric's good direction.
DIRECTIONS = ("higher", "lower")
#: How the ASOS loader expresses effects.
ASOS_SCALES = ("relative", "absolute")
#: What a LOO comparison leaves out, and the log-likelihood group each reads.
COMPARE_LEVELS = {"experiment": "experiment_effect", "cell": "effect", "outcome": "outcome"}
#: The kinds of entries in the weights ledger.
LEDGER_KINDS = ("computed", "override")

"""The spec format's own constants: its version, the samplers and LOO levels a spec
accepts, the prior names, and the ASOS adapter's fixed roles. The allowed values
shared with the rest of the package live in :mod:`proxyscope.options`."""

from __future__ import annotations

from proxyscope import options

SPEC_VERSION = 1
SAMPLERS = ("auto", *options.SAMPLERS)
COMPARE_KINDS = tuple(options.COMPARE_LEVELS)
#: Prior names of :class:`proxyscope.model.priors.Priors`; all positive
#: numbers except ``min_levels_learned_scale`` (an integer >= 2).
PRIOR_NAMES = (
    "global_location_sd",
    "global_slope_sd",
    "sigma_sd",
    "main_location_sd",
    "main_slope_sd",
    "main_log_sigma_sd",
    "interaction_location_sd",
    "interaction_slope_sd",
    "interaction_log_sigma_sd",
    "none_location_sd",
    "none_slope_sd",
    "none_log_sigma_sd",
    "experiment_sd",
    "experiment_outcome_sd",
    "cell_sd",
    "lkj_eta",
    "min_levels_learned_scale",
)
INTEGER_PRIORS = ("min_levels_learned_scale",)
ASOS_ENV = "PROXYSCOPE_ASOS_PATH"
#: The ASOS adapter's fixed roles (see :func:`proxyscope.load_asos`).
ASOS_OUTCOME, ASOS_PROXY, ASOS_SEGMENT = "final", "early", "metric_id"

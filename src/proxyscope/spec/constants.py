"""The spec format's own constants: its version, the kinds of data and the samplers
and LOO levels a spec accepts, the prior names, the designs and exposure roles
(mirrored from the data layer, which a spec does not import), and the ASOS
adapter's fixed roles. The allowed values shared with the rest of the package
live in :mod:`proxyscope.options`."""

from __future__ import annotations

from proxyscope import options

SPEC_VERSION = 1
#: The kinds of data a spec reads (``[data].kind``).
DATA_KINDS = ("users", "arm_summaries", "asos", "estimates")
#: The kinds an extra source (``[[data.extra]]``) may be: the ASOS adapter's roles
#: are fixed, and a simulated world is the main source only.
EXTRA_KINDS = ("users", "arm_summaries", "estimates")
#: The designs a cell may have (:data:`proxyscope.data.designs.DESIGNS`; the spec
#: reads no data module, a test keeps the two equal).
DESIGNS = ("ab", "cluster", "did", "rdd", "ipw", "synthetic_control", "external")
#: The designs whose own estimator reads a source's rows (``design`` on kind = "users",
#: with a ``[data.<design>]`` table; :mod:`proxyscope.spec.parse_design`).
ROW_DESIGNS = ("did", "rdd", "ipw", "synthetic_control")
#: The allowed values of those designs' settings (mirrored from the data layer:
#: ``did_checks.CONTROLS``, ``rdd_bandwidth.KERNELS``, ``ipw_checks.ESTIMANDS``).
DID_CONTROLS = ("never", "not_yet")
RDD_KERNELS = ("triangular", "epanechnikov", "uniform")
IPW_ESTIMANDS = ("ate", "att")
#: The keys of ``[data.exposure_values]``: which value of the exposure column marks a
#: treated user, a control user exposed to treated ones, and a control user who is
#: not (:data:`proxyscope.data.exposure.EXPOSURE_ROLES`; a test keeps them equal).
EXPOSURE_ROLES = ("direct", "spillover", "pure_control")
#: The periods ``[data].period`` names (or it lists bin edges), mirrored from
#: :data:`proxyscope.data.time.PERIOD_NAMES` (a test keeps them equal).
PERIODS = ("week", "month", "quarter", "year", "number")
#: The kinds of data whose source may give ``[data].time`` (the ASOS adapter's may not).
TIME_KINDS = ("users", "arm_summaries", "estimates")
SAMPLERS = ("auto", *options.SAMPLERS)
COMPARE_KINDS = tuple(options.COMPARE_LEVELS)
#: Prior names of :class:`proxyscope.model.priors.Priors`; all positive
#: numbers except ``min_levels_learned_scale`` (an integer >= 2) and the
#: walk's step sds (:data:`TIME_PRIORS`, >= 0: 0 keeps a family fixed over time).
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
    "bias_sd",
    "bias_lkj_eta",
    "min_levels_learned_scale",
    "time_step_location_sd",
    "time_step_slope_sd",
    "time_step_log_sigma_sd",
    "time_drift_location_sd",
    "time_drift_slope_sd",
    "time_drift_log_sigma_sd",
)
INTEGER_PRIORS = ("min_levels_learned_scale",)
TIME_PRIORS = (
    "time_step_location_sd",
    "time_step_slope_sd",
    "time_step_log_sigma_sd",
    "time_drift_location_sd",
    "time_drift_slope_sd",
    "time_drift_log_sigma_sd",
)

# The largest integers a spec (and the command-line flags that set the same keys)
# accepts, so a typo such as ``draws = 10000000000`` is refused when the spec is read,
# not by the sampler after the data were read.
#: Seeds (sampler, simulation, analyses): 32 bits, the range every consumer takes
#: (NumPy's legacy seeding, the seeds proxyscope draws itself).
MAX_SEED = 2**32 - 1
#: Draws and tuning steps per chain: far beyond any fit of this model (1,000 is the
#: default), well within the sampler's integer types and memory.
MAX_DRAWS = 100_000
MAX_TUNE = 100_000
MAX_CHAINS = 64
#: Simulated users and experiments (``[data.simulate]``): the simulator holds the users
#: in memory.
MAX_USERS = 100_000_000
MAX_EXPERIMENTS = 100_000
#: Counts and identifiers (users per arm, ASOS metric and variant ids, refits, the
#: integer prior): a 32-bit signed integer, what the data engines store them as.
MAX_COUNT = 2**31 - 1
#: Follow-up runs after a failed fit.
MAX_FOLLOWUPS = 5
ASOS_ENV = "PROXYSCOPE_ASOS_PATH"
#: The ASOS adapter's fixed roles (see :func:`proxyscope.load_asos`).
ASOS_OUTCOME, ASOS_PROXY, ASOS_SEGMENT = "final", "early", "metric_id"

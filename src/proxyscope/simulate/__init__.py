"""Simulated experiment logs with exact ground truth.

``streaming`` reproduces the seed streaming scenario (regions NA/LATAM/EU/IN,
devices TV/Mobile/Desktop, tenure New/Existing; proxies early_watch_min,
early_starts, early_ctr, rebuffer_rate; outcome long_retained; a planted
failure cohort) draw for draw, with both potential outcomes of every metric
for every user, so that ``world.truth`` is exact.

>>> from proxyscope import simulate
>>> world = simulate.streaming(n_users=250_000, n_experiments=50, seed=7)
>>> world.users.columns[:5].tolist()
['exp_id', 'region', 'device', 'tenure', 'treatment']

Layout: ``scenario`` (levels and coefficients), ``config`` (settings),
``mix`` (the distribution over segment cells), ``generate`` (the random
stream), ``truth`` (in-sample truth), ``response`` (each cell's effects given
an experiment) and ``population`` (truth for a new experiment, by quadrature,
with ``_quadrature``), ``world`` (the result object), ``model_time``
(calendar, start dates, drift paths and the per-period truth of worlds over
time).
``from_model`` draws cell effects from the proxy model itself at known
parameters, for parameter-recovery checks.

``workspace`` randomizes the streaming world's users by workspace, with
workspace baselines (users of one workspace are alike) and spillover to
collaborating control users, with the direct and spillover truth of every
cell (``workspace_config`` holds its settings). ``mixed_history`` is a history
of experiments of several designs drawn from the proxy model, the
non-randomized ones biased by confounding of a known size and direction;
``designed_history`` a history of A/B tests and quasi-experiments whose cells
come from the real did, rdd, ipw and synthetic_control estimators run on unit
data simulated around from_model's latent effects (``designed_naive``: the same
units read by naive differences in means, for contrast).

The quasi-experimental designs each have a world with exact truth: ``rollout``
(a staggered wave rollout with a time trend, read by difference-in-differences;
``did_config`` holds its settings) and ``launch`` (a global launch in one
market per experiment with donor markets, read by synthetic control;
``launch_config``), ``threshold`` (a routing rule at a confidence threshold,
read by regression discontinuity; ``threshold_config``) and ``optin`` (an
opt-in feature chosen on engagement, read by propensity scores;
``optin_config``).
"""

from __future__ import annotations

from proxyscope.simulate.config import FailureCohort, StreamingConfig
from proxyscope.simulate.designed import DesignedHistory, designed_history
from proxyscope.simulate.designed_naive import naive_effects
from proxyscope.simulate.did_config import DidConfig
from proxyscope.simulate.did_world import DidWorld, rollout
from proxyscope.simulate.launch_config import LaunchConfig
from proxyscope.simulate.launch_world import LaunchWorld, launch
from proxyscope.simulate.mix import SegmentMix
from proxyscope.simulate.mixed import MixedConfig, MixedHistory, mixed_history
from proxyscope.simulate.model_world import ModelTruth, from_model
from proxyscope.simulate.optin_config import OptinConfig
from proxyscope.simulate.optin_world import OptinWorld, optin
from proxyscope.simulate.scenario import METRICS, OUTCOME, PROXIES, column_roles
from proxyscope.simulate.threshold_config import ThresholdConfig
from proxyscope.simulate.threshold_world import ThresholdWorld, threshold
from proxyscope.simulate.workspace_config import WorkspaceConfig
from proxyscope.simulate.workspace_world import WorkspaceWorld, workspace
from proxyscope.simulate.world import World, shifted, streaming

__all__ = [
    "METRICS",
    "OUTCOME",
    "PROXIES",
    "DesignedHistory",
    "DidConfig",
    "DidWorld",
    "FailureCohort",
    "LaunchConfig",
    "LaunchWorld",
    "MixedConfig",
    "MixedHistory",
    "ModelTruth",
    "OptinConfig",
    "OptinWorld",
    "SegmentMix",
    "StreamingConfig",
    "ThresholdConfig",
    "ThresholdWorld",
    "WorkspaceConfig",
    "WorkspaceWorld",
    "World",
    "column_roles",
    "designed_history",
    "from_model",
    "launch",
    "mixed_history",
    "naive_effects",
    "optin",
    "rollout",
    "shifted",
    "streaming",
    "threshold",
    "workspace",
]

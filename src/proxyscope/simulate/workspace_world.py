"""The workspace world: the streaming scenario's users, randomized by workspace, with spillover.

Users and both potential outcomes of every metric are the streaming world's
(:func:`proxyscope.simulate.generate.draw`, same segments, proxies, outcome and
directions); on top of them, from a random stream of their own:

- every experiment's users are split at random into ``n_workspaces``
  workspaces, so a workspace's users span segments and a workspace appears
  in several cells;
- each workspace has a baseline per metric, drawn jointly normal (sd
  ``sigma_b = sigma_u sqrt(icc / (1 - icc))``, ``sigma_u`` the metric's
  pooled within-experiment sd of Y(0); correlation ``baseline_corr`` between
  metrics in their good directions), added to every potential outcome of its
  users, so that users of one workspace are alike and the in-sample truth
  (a difference of potential outcomes) is unchanged;
- in each experiment half of the workspaces (rounded down) are treated: the
  ``treatment`` of a user is their workspace's;
- a control user collaborates with treated workspaces with probability
  ``spillover_share``, independently of everything else (so of their
  outcomes): that user's outcome is the spillover potential outcome
  ``Y(s) = Y(0) + f (Y(1) - Y(0))`` with ``f`` the metric's
  ``spillover_fraction``; ``exposure`` is "direct" (treated), "spillover" or
  "pure_control".

Observed values include the baselines, so a metric may leave its natural
range (long_retained is no longer 0/1, a rate may fall below 0); its mean
effects keep their meaning.

The workspace stream draws, in order: target sizes, the order of users within
experiments, the arms, the exposure uniforms, the baselines' normals. The
in-sample truth of a cell is the streaming world's (``truth``); the spillover
truth of a cell is the mean over its spillover-exposed users of
``f (Y(1) - Y(0))`` in the good direction, on the probability scale for the
long-term outcome (``spillover_truth``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from proxyscope import dims
from proxyscope.simulate import generate, population
from proxyscope.simulate import scenario as sc
from proxyscope.simulate.config import StreamingConfig
from proxyscope.simulate.mix import SegmentMix
from proxyscope.simulate.options import resolve_config
from proxyscope.simulate.truth import sample_truth, user_effects
from proxyscope.simulate.workspace_config import WorkspaceConfig
from proxyscope.simulate.world import DESCRIPTIONS, as_mix

#: Stream key of the workspace generator (its draws never move the streaming world's).
_WORKSPACE_KEY = 0x3057_0A5E
WORKSPACE = "workspace"
EXPOSURE = "exposure"
DIRECT, SPILLOVER, PURE_CONTROL = "direct", "spillover", "pure_control"
#: Values of the ``exposure`` column, in category order.
EXPOSURES: tuple[str, str, str] = (DIRECT, SPILLOVER, PURE_CONTROL)

_USER_COLUMNS = (
    "exp_id",
    *sc.SEGMENT_COLUMNS,
    WORKSPACE,
    "treatment",
    EXPOSURE,
    *sc.PROXIES,
    sc.OUTCOME,
    "failure_cohort",
)
_CONVENTIONS = (
    "Effects are means over users of Y(1) - Y(0), both potential outcomes of the same users; "
    "proxies in their good direction (rebuffer_rate negated); long_retained on the probability "
    "scale (p_long_1 - p_long_0). Workspace baselines are added to both potential outcomes, "
    "so they cancel. Spillover effects are means over a cell's spillover-exposed control users "
    "of f * (Y(1) - Y(0)), f the metric's spillover fraction. pop_* variables are for a new "
    "experiment on infinitely many users of the world's mix (they do not depend on workspaces)."
)


class WorkspaceWorld:
    """A simulated world randomized by workspace, with spillover and exact truth.

    Built by :func:`proxyscope.simulate.workspace`; not meant to be constructed
    directly.

    Attributes
    ----------
    config : WorkspaceConfig
        The settings it was drawn from.
    streaming_config : StreamingConfig
        The streaming world that drew the users and their potential outcomes.
    users : pandas.DataFrame
        One row per user: exp_id, region, device, tenure (categoricals),
        workspace (int, unique over experiments), treatment (the workspace's
        arm), exposure (categorical: direct, spillover, pure_control), the
        five metrics (observed, baselines included), failure_cohort.
    potential_outcomes : pandas.DataFrame
        Same rows: ``<metric>_0``, ``<metric>_1`` and the spillover potential
        outcome ``<metric>_s`` (raw scale, baselines included), and
        ``p_long_0``, ``p_long_1`` (retention probabilities, no baseline).
    workspaces : pandas.DataFrame
        Per workspace (index ``workspace``): experiment, users, treatment and
        ``baseline_<metric>`` (raw scale).
    experiments : pandas.DataFrame
        Per experiment: exp_tau, exp_bias, users, workspaces, treated_workspaces.
    baseline_sd : pandas.Series
        The sd of the workspace baseline per metric (raw scale).
    truth : xarray.Dataset
        The streaming world's in-sample and population truth
        (:class:`~proxyscope.simulate.World`), computed on this world's
        users and arms: ``cell_effect`` is the direct effect of each
        (experiment, cell).
    spillover_truth : xarray.Dataset
        ``spillover_effect[experiment, region, device, tenure, metric]`` (NaN
        where the cell has no spillover-exposed user), ``spillover_users``,
        ``experiment_spillover_effect[experiment, metric]``,
        ``spillover_fraction[metric]``.
    """

    def __init__(
        self,
        *,
        config: WorkspaceConfig,
        streaming_config: StreamingConfig,
        users: pd.DataFrame,
        potential_outcomes: pd.DataFrame,
        workspaces: pd.DataFrame,
        experiments: pd.DataFrame,
        baseline_sd: pd.Series,
        truth: xr.Dataset,
        spillover_truth: xr.Dataset,
    ) -> None:
        self.config = config
        self.streaming_config = streaming_config
        self.users = users
        self.potential_outcomes = potential_outcomes
        self.workspaces = workspaces
        self.experiments = experiments
        self.baseline_sd = baseline_sd
        self.truth = truth
        self.spillover_truth = spillover_truth

    def column_roles(self) -> dict[str, Any]:
        """Column roles of ``users`` for :func:`proxyscope.summarize` (a new dict each call).

        The streaming world's roles plus ``cluster`` ("workspace") and
        ``exposure`` ("exposure").
        """
        return {**sc.column_roles(), "cluster": WORKSPACE, "exposure": EXPOSURE}

    @property
    def mechanism(self) -> population.Mechanism:
        """The world's structure (cohort, segment effects, sds), without mix or draws."""
        return population.Mechanism.of(self.streaming_config)

    def population_truth(
        self, mix: SegmentMix | Mapping[tuple[str, str, str], float] | None = None
    ) -> xr.Dataset:
        """Population-level truth of a new experiment run on ``mix`` (default the world's).

        Workspaces move no effect, so this is the streaming world's
        (:meth:`proxyscope.simulate.World.population_truth`).
        """
        chosen = as_mix(mix) or self.config.mix
        return population.population_truth(self.mechanism, chosen)

    def __repr__(self) -> str:
        c = self.config
        return (
            f"<WorkspaceWorld: {len(self.users):,} users, {c.n_experiments} experiments x "
            f"{c.n_workspaces} workspaces, seed={c.seed}>"
        )


def _scaled_sizes(target: np.ndarray, users: np.ndarray) -> np.ndarray:
    """Per experiment (row), sizes proportional to ``target`` summing to ``users`` (largest
    remainder; ties to the lower workspace number)."""
    raw = target / target.sum(axis=1, keepdims=True) * users[:, None]
    sizes = np.floor(raw).astype(np.int64)
    short = users - sizes.sum(axis=1)
    order = np.argsort(-(raw - sizes), axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(target.shape[1]), order.shape), 1)
    return np.asarray(sizes + (rank < short[:, None]))


def _within_sd(values: np.ndarray, group: np.ndarray, n_groups: int) -> float:
    """Pooled within-group sd of ``values``."""
    counts = np.bincount(group, minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.bincount(group, weights=values, minlength=n_groups) / counts
    resid = values - np.nan_to_num(means)[group]
    df = max(values.size - int((counts > 0).sum()), 1)
    return float(np.sqrt(resid @ resid / df))


def _cell_means(index: np.ndarray, values: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of each column of ``values`` per group (NaN if empty; one residual correction
    pass) and the group counts."""
    counts = np.bincount(index, minlength=size)
    out = np.empty((size, values.shape[1]))
    with np.errstate(invalid="ignore", divide="ignore"):
        for j in range(values.shape[1]):
            mean = np.bincount(index, weights=values[:, j], minlength=size) / counts
            resid = values[:, j] - np.nan_to_num(mean)[index]
            out[:, j] = mean + np.bincount(index, weights=resid, minlength=size) / counts
    return out, counts


def _spillover_truth(
    po: pd.DataFrame, fraction: np.ndarray, exp: np.ndarray, cell: np.ndarray, n_exp: int
) -> xr.Dataset:
    """The spillover truth per (experiment, cell) and per experiment over exposed users."""
    effect = np.column_stack(
        [f * user_effects(po, m) for f, m in zip(fraction, sc.METRICS, strict=True)]
    )
    index = exp * sc.N_CELLS + cell
    means, counts = _cell_means(index, effect, n_exp * sc.N_CELLS)
    exp_means, _ = _cell_means(exp, effect, n_exp)
    grid = (n_exp, *sc.SHAPE)
    cell_dims = (dims.EXPERIMENT, *sc.SEGMENT_COLUMNS)
    out = xr.Dataset(
        {
            "spillover_effect": ((*cell_dims, dims.METRIC), means.reshape(*grid, -1)),
            "spillover_users": (cell_dims, counts.reshape(grid)),
            "experiment_spillover_effect": ((dims.EXPERIMENT, dims.METRIC), exp_means),
            "spillover_fraction": (dims.METRIC, fraction),
        },
        coords={
            dims.EXPERIMENT: np.arange(n_exp),
            **{col: list(sc.LEVELS[col]) for col in sc.SEGMENT_COLUMNS},
            dims.METRIC: list(sc.METRICS),
        },
    )
    out["spillover_effect"].attrs["description"] = (
        "mean over the cell's spillover-exposed users of f * (Y(1) - Y(0)) (NaN if none)"
    )
    out["spillover_users"].attrs["description"] = "spillover-exposed users in the cell"
    out.attrs["conventions"] = _CONVENTIONS
    return out


def build(config: WorkspaceConfig) -> WorkspaceWorld:
    """Draw a workspace world from ``config`` and compute its truth (see the module docstring)."""
    rng = np.random.default_rng([config.seed, _WORKSPACE_KEY])
    n_exp, n_ws = config.n_experiments, config.n_workspaces
    low, high = config.workspace_size
    target = rng.integers(low, high + 1, size=(n_exp, n_ws))
    stream = StreamingConfig(
        n_users=int(target.sum()),
        n_experiments=n_exp,
        seed=config.seed,
        mix=config.mix,
        cohort=config.cohort,
        exp_tau_sd=config.exp_tau_sd,
        exp_bias_sd=config.exp_bias_sd,
    )
    draws = generate.draw(stream)
    n, exp = stream.n_users, draws.experiment
    sizes = _scaled_sizes(target, np.bincount(exp, minlength=n_exp))
    workspace = np.empty(n, dtype=np.int64)
    workspace[np.lexsort((rng.random(n), exp))] = np.repeat(np.arange(n_exp * n_ws), sizes.ravel())
    first = np.arange(n_ws) < n_ws // 2
    arm = rng.permuted(np.tile(first, (n_exp, 1)), axis=1).ravel().astype(np.int64)
    treatment = arm[workspace]
    treated = treatment.astype(bool)
    spill = (rng.random(n) < config.spillover_share) & ~treated
    z = rng.standard_normal((n_exp * n_ws, len(sc.METRICS)))

    raw = draws.potential_outcomes
    icc = config.icc_array()
    sigma_u = np.array([_within_sd(raw[f"{m}_0"].to_numpy(), exp, n_exp) for m in sc.METRICS])
    baseline_sd = sigma_u * np.sqrt(icc / (1.0 - icc))
    baseline = (z @ np.linalg.cholesky(config.baseline_correlation()).T) * baseline_sd
    fraction = config.fraction_array()
    po: dict[str, np.ndarray] = {}
    users: dict[str, Any] = {col: draws.users[col] for col in ("exp_id", *sc.SEGMENT_COLUMNS)}
    users[WORKSPACE] = workspace
    users["treatment"] = treatment
    code = np.where(treated, 0, np.where(spill, 1, 2)).astype(np.int8)
    users[EXPOSURE] = pd.Categorical.from_codes(code, categories=pd.Index(list(EXPOSURES)))
    for j, m in enumerate(sc.METRICS):
        y0, y1 = raw[f"{m}_0"].to_numpy(), raw[f"{m}_1"].to_numpy()
        ys = y0 + fraction[j] * (y1 - y0)
        b = baseline[workspace, j]
        po[f"{m}_0"], po[f"{m}_1"], po[f"{m}_s"] = y0 + b, y1 + b, ys + b
        users[m] = np.where(treated, po[f"{m}_1"], np.where(spill, po[f"{m}_s"], po[f"{m}_0"]))
    po["p_long_0"], po["p_long_1"] = raw["p_long_0"].to_numpy(), raw["p_long_1"].to_numpy()
    users["failure_cohort"] = draws.users["failure_cohort"]
    potential_outcomes = pd.DataFrame(po, copy=False)
    user_frame = pd.DataFrame(users, copy=False)[list(_USER_COLUMNS)]

    truth = sample_truth(potential_outcomes, exp, draws.cell, treatment, n_exp)
    truth["exp_tau"] = (dims.EXPERIMENT, draws.exp_tau)
    truth["exp_bias"] = (dims.EXPERIMENT, draws.exp_bias)
    truth = truth.merge(population.population_truth(population.Mechanism.of(stream), config.mix))
    for name, text in DESCRIPTIONS.items():
        truth[name].attrs["description"] = text
    truth["cell_effect"].attrs["description"] += "; the direct effect"
    truth.attrs["conventions"] = _CONVENTIONS
    truth.attrs["outcome"] = sc.OUTCOME
    truth.attrs["lower_is_better"] = ",".join(sorted(sc.LOWER_IS_BETTER))
    spill_index = np.flatnonzero(spill)
    spillover = _spillover_truth(
        potential_outcomes.iloc[spill_index],
        fraction,
        exp[spill_index],
        draws.cell[spill_index],
        n_exp,
    )

    ws_index = pd.RangeIndex(n_exp * n_ws, name=WORKSPACE)
    workspaces = pd.DataFrame(
        {
            "experiment": np.repeat(np.arange(n_exp), n_ws),
            "users": sizes.ravel(),
            "treatment": arm,
            **{f"baseline_{m}": baseline[:, j] for j, m in enumerate(sc.METRICS)},
        },
        index=ws_index,
    )
    experiments = pd.DataFrame(
        {
            "exp_tau": draws.exp_tau,
            "exp_bias": draws.exp_bias,
            "users": sizes.sum(axis=1),
            "workspaces": n_ws,
            "treated_workspaces": n_ws // 2,
        },
        index=pd.RangeIndex(n_exp, name=dims.EXPERIMENT),
    )
    return WorkspaceWorld(
        config=config,
        streaming_config=stream,
        users=user_frame,
        potential_outcomes=potential_outcomes,
        workspaces=workspaces,
        experiments=experiments,
        baseline_sd=pd.Series(baseline_sd, index=pd.Index(list(sc.METRICS), name=dims.METRIC)),
        truth=truth,
        spillover_truth=spillover,
    )


def workspace(config: WorkspaceConfig | None = None, **options: Any) -> WorkspaceWorld:
    """Simulate the streaming world randomized by workspace, with spillover and exact truth.

    Parameters
    ----------
    config : WorkspaceConfig, optional
        All settings at once; keyword options replace its fields.
    **options
        Fields of :class:`WorkspaceConfig`: n_experiments, n_workspaces,
        workspace_size, icc, baseline_corr, spillover_share,
        spillover_fraction, seed, mix (a SegmentMix or a mapping of
        (region, device, tenure) to share), cohort, exp_tau_sd, exp_bias_sd.

    Returns
    -------
    WorkspaceWorld

    Raises
    ------
    ParameterError
        An unknown option, or any invalid setting (naming the field and the value).

    Examples
    --------
    >>> from proxyscope import simulate
    >>> world = simulate.workspace(n_experiments=4, n_workspaces=10, seed=1)
    >>> world.users["exposure"].cat.categories.tolist()
    ['direct', 'spillover', 'pure_control']
    """
    return build(
        resolve_config(
            config,
            options,
            WorkspaceConfig,
            function="workspace",
            example="workspace(n_workspaces=60)",
        )
    )

"""The rollout world: the streaming scenario's users, a feature rolled out to markets in waves.

Users and both potential outcomes of every metric are the streaming world's
(:func:`proxyscope.simulate.generate.draw`: segments, proxies, outcome,
directions and failure cohort). On top of them, from a random stream of their own:

- each rollout (a streaming experiment) has ``n_units`` units (markets), each
  in one region, regions getting units in proportion to their share of users;
  in every region some units are never treated and the others are split
  over the waves (first treated in period ``waves[w]``); early waves go to
  units with high outcome baselines when ``selection`` > 0 (a rollout
  calendar, not a coin flip);
- a rollout's users of a region are split at random and evenly over the
  region's (unit, period) slots; a slot's value of a metric is the mean over
  its users of Y(1) if the unit is treated in that period, else Y(0);
- on top: the unit's baseline (jointly normal over metrics, sd ``unit_sd``
  user-level sds), a common time trend per rollout and metric (a random walk,
  steps of sd ``trend_sd`` user-level sds), unit-period shocks (AR(1) over
  periods, autocorrelation ``shock_ar``, sd ``shock_sd`` times the sd of a
  slot's mean) and, with ``violation`` ≠ 0, a drift of ``violation`` slot sds
  per period (in the good direction of every metric) in the units ever
  treated. Baselines, trend, shocks and drift enter both potential outcomes,
  so they never move an effect; only the drift breaks parallel trends.

Truth (exact, in sample, in the metrics' good directions, long_retained on the
probability scale, like :func:`proxyscope.simulate.workspace`): a slot's
effect is the mean over its users of Y(1) − Y(0); ATT(g, t) the mean over the
units of wave g of their slot effects in period t ≥ g; and the cell's effect
— what :func:`proxyscope.data.did.did` estimates with either comparison group —
the mean over the cell's treated (unit, period ≥ first treated) slots of their
effects, which is the cohort-size-weighted mean of its ATT(g, t).

The rollout stream draws, in order: the selection noise of the units, the
users' order within (rollout, region), the baselines' normals, the trend's
normals, the shocks' normals.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from proxyscope import dims
from proxyscope.errors import ParameterError
from proxyscope.simulate import generate
from proxyscope.simulate import scenario as sc
from proxyscope.simulate.config import StreamingConfig
from proxyscope.simulate.did_config import DidConfig, good_sign
from proxyscope.simulate.options import resolve_config
from proxyscope.simulate.truth import user_effects

#: Stream key of the rollout generator (its draws never move the streaming world's).
_ROLLOUT_KEY = 0xD1D_0A11
UNIT, PERIOD, FIRST_TREATED, USERS = "unit", "period", "first_treated", "users"
COHORT = "cohort"
_CONVENTIONS = (
    "Effects are means over a slot's users of Y(1) - Y(0), both potential outcomes of the same "
    "users; proxies in their good direction (rebuffer_rate negated); long_retained on the "
    "probability scale (p_long_1 - p_long_0). Baselines, trend, shocks and the violation drift "
    "enter both potential outcomes, so they cancel. cell_effect is the mean over the cell's "
    "treated (unit, period >= first treated) slots; group_time_effect the mean over a wave's "
    "units in a period (NaN before the wave's first treated period)."
)


class DidWorld:
    """A simulated rollout world with exact truth; built by :func:`rollout`.

    Attributes
    ----------
    config : DidConfig
    streaming_config : StreamingConfig
        The streaming world that drew the users and their potential outcomes.
    panel : pandas.DataFrame
        One row per (rollout, unit, period): exp_id, unit (int, unique over
        rollouts), region (categorical), period, first_treated (float, NaN for
        never treated), users, and the five metrics (slot means).
    units : pandas.DataFrame
        Per unit (index ``unit``): experiment, region, first_treated and
        ``baseline_<metric>`` (raw scale).
    trend : xarray.DataArray
        The common trend, (experiment, period, metric), raw scale.
    truth : xarray.Dataset
        ``cell_effect[experiment, region, metric]`` (NaN for a region without
        units), ``cell_units`` and ``cell_treated_units`` [experiment, region],
        ``group_time_effect[experiment, region, cohort, period, metric]``.
    """

    def __init__(
        self,
        *,
        config: DidConfig,
        streaming_config: StreamingConfig,
        panel: pd.DataFrame,
        units: pd.DataFrame,
        trend: xr.DataArray,
        truth: xr.Dataset,
    ) -> None:
        self.config = config
        self.streaming_config = streaming_config
        self.panel = panel
        self.units = units
        self.trend = trend
        self.truth = truth

    def column_roles(self) -> dict[str, Any]:
        """Column roles of ``panel`` for :func:`proxyscope.data.did.did` (a new dict each call)."""
        return {
            "experiment": "exp_id",
            "unit": UNIT,
            "period": PERIOD,
            "first_treated": FIRST_TREATED,
            "outcome": sc.OUTCOME,
            "proxies": list(sc.PROXIES),
            "segments": [sc.REGION],
            "directions": dict.fromkeys(sorted(sc.LOWER_IS_BETTER), "lower"),
        }

    def __repr__(self) -> str:
        c = self.config
        return (
            f"<DidWorld: {c.n_experiments} rollouts x {c.n_units} units x {c.n_periods} "
            f"periods, waves {list(c.waves)}, seed={c.seed}>"
        )


def _slot_means(slot: np.ndarray, values: np.ndarray, n_slots: int) -> np.ndarray:
    """Mean of each column of ``values`` per slot (every slot has users)."""
    counts = np.bincount(slot, minlength=n_slots).astype(float)
    return np.stack(
        [
            np.bincount(slot, weights=values[:, j], minlength=n_slots) / counts
            for j in range(values.shape[1])
        ],
        axis=1,
    )


def build(config: DidConfig) -> DidWorld:
    """Draw a rollout world from ``config`` and compute its truth (module docstring)."""
    rng = np.random.default_rng([config.seed, _ROLLOUT_KEY])
    n_exp, n_t, m = config.n_experiments, config.n_periods, len(sc.METRICS)
    groups = config.region_units()  # (regions, 1 + waves)
    per_region = groups.sum(axis=1)
    n_units = int(per_region.sum())
    stream = StreamingConfig(
        n_users=n_exp * n_units * n_t * config.users_per_period,
        n_experiments=n_exp,
        seed=config.seed,
        mix=config.mix,
        cohort=config.cohort,
        exp_tau_sd=config.exp_tau_sd,
        exp_bias_sd=config.exp_bias_sd,
    )
    draws = generate.draw(stream)
    exp, po = draws.experiment, draws.potential_outcomes
    region = sc.CELL_REGION[draws.cell]

    # Units: experiment-major, then region, then position within the region.
    unit_region = np.tile(np.repeat(np.arange(len(sc.REGIONS)), per_region), n_exp)
    unit_exp = np.repeat(np.arange(n_exp), n_units)
    first = np.concatenate([np.zeros(1, dtype=np.int64), np.cumsum(per_region)[:-1]])
    waves = np.array([n_t, *config.waves])  # never treated: n_t
    y0 = np.column_stack([po[f"{x}_0"].to_numpy() for x in sc.METRICS])
    sigma_u = y0.std(axis=0, ddof=1)
    z = (
        rng.standard_normal((n_exp * n_units, m))
        @ np.linalg.cholesky(config.baseline_correlation()).T
    )
    noise = rng.standard_normal(n_exp * n_units)
    score = config.selection * z[:, 0] + np.sqrt(1.0 - config.selection**2) * noise
    cohort = np.empty(n_exp * n_units, dtype=np.int64)
    for e in range(n_exp):
        for r in np.flatnonzero(per_region):
            ids = e * n_units + first[r] + np.arange(per_region[r])
            ranked = ids[np.argsort(-score[ids], kind="stable")]
            # Earliest wave to the highest scores; the never treated last.
            labels = np.repeat(np.r_[waves[1:], waves[0]], np.r_[groups[r, 1:], groups[r, 0]])
            cohort[ranked] = labels

    # Users to slots: (rollout, region) users in random order, split evenly over its slots.
    order = np.lexsort((rng.random(len(exp)), region, exp))
    group = (exp * len(sc.REGIONS) + region)[order]
    sizes = np.bincount(group, minlength=n_exp * len(sc.REGIONS))
    slots = np.tile(per_region, n_exp) * n_t
    if ((sizes < slots) & (slots > 0)).any() or (sizes[slots == 0] > 0).any():
        raise ParameterError(
            "DidConfig.users_per_period: some (rollout, region) has fewer users than "
            f"(unit, period) slots; raise it (got {config.users_per_period})."
        )
    start = np.concatenate([np.zeros(1, dtype=np.int64), np.cumsum(sizes)[:-1]])
    rank = np.arange(len(exp)) - start[group]
    local = rank * slots[group] // sizes[group]  # slot within (rollout, region)
    slot_start = np.concatenate([np.zeros(1, dtype=np.int64), np.cumsum(slots)[:-1]])
    slot = np.empty(len(exp), dtype=np.int64)
    slot[order] = slot_start[group] + local  # slot = unit * n_t + period, units in order
    unit_of = slot // n_t
    period_of = slot % n_t
    treated = period_of >= cohort[unit_of]
    y1 = np.column_stack([po[f"{x}_1"].to_numpy() for x in sc.METRICS])
    n_slots = n_exp * n_units * n_t
    observed = _slot_means(slot, np.where(treated[:, None], y1, y0), n_slots)
    effects = np.column_stack([user_effects(po, x) for x in sc.METRICS])
    slot_effect = _slot_means(slot, effects, n_slots)
    users = np.bincount(slot, minlength=n_slots)

    sign = good_sign()
    slot_sd = sigma_u * config.period_sd_factor
    baseline = config.unit_sd * sigma_u * z
    steps = rng.standard_normal((n_exp, n_t, m)) * config.trend_sd * sigma_u
    steps[:, 0] = 0.0
    trend = np.cumsum(steps, axis=1)
    chol = np.linalg.cholesky(config.baseline_correlation()).T
    innov = (rng.standard_normal((n_exp * n_units, n_t, m)) @ chol) * config.shock_sd * slot_sd
    shock = np.empty_like(innov)
    shock[:, 0] = innov[:, 0]
    rho = config.shock_ar
    for t in range(1, n_t):
        shock[:, t] = rho * shock[:, t - 1] + np.sqrt(1.0 - rho**2) * innov[:, t]
    ever = (cohort < n_t).astype(float)
    drift = config.violation * ever[:, None, None] * np.arange(n_t)[None, :, None] * slot_sd * sign
    value = (
        observed.reshape(n_exp * n_units, n_t, m)
        + baseline[:, None, :]
        + trend[unit_exp]
        + shock
        + drift
    )

    treated_at = np.where(cohort < n_t, cohort, np.nan).astype(float)
    unit_ids = np.arange(n_exp * n_units)
    panel: dict[str, Any] = {
        "exp_id": np.repeat(unit_exp, n_t),
        UNIT: np.repeat(unit_ids, n_t),
        sc.REGION: sc.categorical(np.repeat(unit_region, n_t), sc.REGION),
        PERIOD: np.tile(np.arange(n_t), n_exp * n_units),
        FIRST_TREATED: np.repeat(treated_at, n_t),
        USERS: users,
    }
    flat = value.reshape(n_slots, m)
    for j, x in enumerate(sc.METRICS):
        panel[x] = flat[:, j]
    units = pd.DataFrame(
        {
            "experiment": unit_exp,
            sc.REGION: sc.categorical(unit_region, sc.REGION),
            FIRST_TREATED: treated_at,
            **{f"baseline_{x}": baseline[:, j] for j, x in enumerate(sc.METRICS)},
        },
        index=pd.Index(unit_ids, name=UNIT),
    )
    truth = _truth(
        slot_effect.reshape(n_exp * n_units, n_t, m), cohort, unit_exp, unit_region, config
    )
    trend_da = xr.DataArray(
        trend,
        dims=(dims.EXPERIMENT, PERIOD, dims.METRIC),
        coords={
            dims.EXPERIMENT: np.arange(n_exp),
            PERIOD: np.arange(n_t),
            dims.METRIC: list(sc.METRICS),
        },
    )
    return DidWorld(
        config=config,
        streaming_config=stream,
        panel=pd.DataFrame(panel, copy=False),
        units=units,
        trend=trend_da,
        truth=truth,
    )


def _truth(
    effect: np.ndarray,
    cohort: np.ndarray,
    unit_exp: np.ndarray,
    unit_region: np.ndarray,
    config: DidConfig,
) -> xr.Dataset:
    """Cell and group-time truth from the slot effects (units, periods, metrics)."""
    n_exp, n_t, m = config.n_experiments, config.n_periods, len(sc.METRICS)
    n_r, waves = len(sc.REGIONS), config.waves
    post = np.arange(n_t)[None, :] >= cohort[:, None]  # (units, periods)
    cell = unit_exp * n_r + unit_region
    n_cells = n_exp * n_r
    total = np.zeros((n_cells, m))
    np.add.at(total, cell, (effect * post[:, :, None]).sum(axis=1))
    slots = np.bincount(cell, weights=post.sum(axis=1), minlength=n_cells)
    with np.errstate(invalid="ignore", divide="ignore"):
        cell_effect = total / slots[:, None]
    gt = np.full((n_cells, len(waves), n_t, m), np.nan)
    for w, g in enumerate(waves):
        mine = cohort == g
        sums = np.zeros((n_cells, n_t, m))
        np.add.at(sums, cell[mine], effect[mine])
        count = np.bincount(cell[mine], minlength=n_cells).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            gt[:, w, g:] = (sums / count[:, None, None])[:, g:]
    units_in = np.bincount(cell, minlength=n_cells).reshape(n_exp, n_r)
    treated_in = np.bincount(cell, weights=cohort < n_t, minlength=n_cells).reshape(n_exp, n_r)
    cell_dims = (dims.EXPERIMENT, sc.REGION)
    out = xr.Dataset(
        {
            "cell_effect": ((*cell_dims, dims.METRIC), cell_effect.reshape(n_exp, n_r, m)),
            "cell_units": (cell_dims, units_in),
            "cell_treated_units": (cell_dims, treated_in.astype(np.int64)),
            "group_time_effect": (
                (*cell_dims, COHORT, PERIOD, dims.METRIC),
                gt.reshape(n_exp, n_r, len(waves), n_t, m),
            ),
        },
        coords={
            dims.EXPERIMENT: np.arange(n_exp),
            sc.REGION: list(sc.REGIONS),
            COHORT: list(waves),
            PERIOD: np.arange(n_t),
            dims.METRIC: list(sc.METRICS),
        },
    )
    out["cell_effect"].attrs["description"] = (
        "mean over the cell's treated (unit, period >= first treated) slots of the slot's "
        "mean Y(1) - Y(0) (NaN without units)"
    )
    out.attrs["conventions"] = _CONVENTIONS
    out.attrs["outcome"] = sc.OUTCOME
    out.attrs["lower_is_better"] = ",".join(sorted(sc.LOWER_IS_BETTER))
    return out


def rollout(config: DidConfig | None = None, **options: Any) -> DidWorld:
    """Simulate the streaming world rolled out to markets in waves, with exact truth.

    Parameters
    ----------
    config : DidConfig, optional
        All settings at once; keyword options replace its fields.
    **options
        Fields of :class:`~proxyscope.simulate.did_config.DidConfig`:
        n_experiments, n_units, n_periods, waves, never_share,
        users_per_period, unit_sd, baseline_corr, trend_sd, shock_sd,
        shock_ar, selection, violation, seed, mix (a SegmentMix or a mapping of
        (region, device, tenure) to share), cohort, exp_tau_sd, exp_bias_sd.

    Returns
    -------
    DidWorld

    Raises
    ------
    ParameterError
        An unknown option, or any invalid setting (naming the field and the value).

    Examples
    --------
    >>> from proxyscope.simulate.did_world import rollout
    >>> world = rollout(n_experiments=3, n_units=40, seed=1)
    >>> sorted(world.panel["period"].unique().tolist()) == list(range(8))
    True
    """
    return build(
        resolve_config(
            config, options, DidConfig, function="rollout", example="rollout(n_units=120)"
        )
    )

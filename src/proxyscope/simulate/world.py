"""The simulated world: observed users, their potential outcomes, and the exact truth."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping

import numpy as np
import pandas as pd
import xarray as xr

from proxyscope.errors import ParameterError
from proxyscope.simulate import generate, population
from proxyscope.simulate import model_time as mt
from proxyscope.simulate.config import FailureCohort, StreamingConfig
from proxyscope.simulate.mix import SegmentMix
from proxyscope.simulate.truth import DESCRIPTIONS as DESCRIPTIONS  # workspace_world's
from proxyscope.simulate.truth import world_truth


def as_mix(mix: SegmentMix | Mapping[tuple[str, str, str], float] | None) -> SegmentMix | None:
    if mix is None or isinstance(mix, SegmentMix):
        return mix
    if isinstance(mix, Mapping):
        return SegmentMix.from_joint(mix)
    raise ParameterError(
        "mix must be a SegmentMix or a mapping of (region, device, tenure) to share; "
        f"got {type(mix).__name__} {mix!r}."
    )


class World:
    """A simulated streaming world with exact ground truth.

    Built by :func:`proxyscope.simulate.streaming`; not meant to be constructed
    directly.

    Attributes
    ----------
    config : StreamingConfig
        The settings it was drawn from.
    users : pandas.DataFrame
        One row per user, the seed scenario's columns: exp_id, region, device,
        tenure (categoricals), treatment, early_watch_min, early_starts,
        early_ctr, rebuffer_rate, long_retained, failure_cohort.
    potential_outcomes : pandas.DataFrame
        Same rows: ``<metric>_0`` and ``<metric>_1`` for the five metrics (raw
        scale, rebuffer_rate not negated) and ``p_long_0``, ``p_long_1``, the
        long-term retention probabilities.
    experiments : pandas.DataFrame
        Per experiment (index ``experiment``): exp_tau, exp_bias; with periods
        also start_date, period (label) and watch_push (the watch-only push
        gamma_p g_e in exp_tau units, 0 in a static world).
    truth : xarray.Dataset
        In-sample truth — ``cell_effect[experiment, region, device, tenure,
        metric]`` (NaN for empty cells), ``cell_users``, ``cell_treated``,
        ``experiment_effect[experiment, metric]``, ``experiment_users``,
        ``segment_effect[region, device, tenure, metric]``, ``segment_users``,
        ``overall_effect[metric]``, ``flip_rate[region, device, tenure, proxy]``,
        ``flip_experiments``, ``decision_accuracy[proxy]``, ``exp_tau``,
        ``exp_bias`` — and population truth for a new experiment on the
        world's mix (see :meth:`population_truth`). With periods also
        ``experiment_start``, ``experiment_period``, ``watch_push``
        [experiment] and the per-period population slopes (see
        :meth:`population_slope`); pop_* are then the latest period's.
    """

    def __init__(
        self,
        config: StreamingConfig,
        users: pd.DataFrame,
        potential_outcomes: pd.DataFrame,
        experiments: pd.DataFrame,
        truth: xr.Dataset,
    ) -> None:
        self.config = config
        self.users = users
        self.potential_outcomes = potential_outcomes
        self.experiments = experiments
        self.truth = truth

    @property
    def mechanism(self) -> population.Mechanism:
        """The world's structure (cohort, segment effects, sds), without mix or draws; with
        periods, that of the latest period."""
        return population.Mechanism.of(self.config)

    def _periods(self) -> int:
        if self.config.periods is None:
            raise ParameterError(
                "This world has no time: StreamingConfig.periods is None. Draw one with "
                "streaming(periods=4, ...)."
            )
        return self.config.periods

    @property
    def period_labels(self) -> tuple[str, ...]:
        """The labels of the world's periods ("2024-Q1", ...), first to last."""
        c = self.config
        return mt.Calendar.of(pd.Timestamp(c.start), c.period, self._periods()).labels

    @property
    def starts(self) -> pd.Series:
        """Start date of each experiment (index ``experiment``), for
        ``CellEffects.with_time(world.starts, period=world.config.period)``."""
        self._periods()
        return self.experiments[mt.START_COLUMN].rename("start")

    def _period(self, period: int | str | None) -> int | None:
        """Index of ``period`` (a label or an index; None: the latest)."""
        if period is None:
            return None
        labels = self.period_labels
        if isinstance(period, str) and period in labels:
            return labels.index(period)
        is_index = isinstance(period, int | np.integer) and not isinstance(period, bool)
        if is_index and 0 <= int(period) < len(labels):
            return int(period)
        raise ParameterError(
            f"The 'period' parameter must be one of the world's periods {list(labels)} or an "
            f"index in [0, {len(labels)}); got {period!r}."
        )

    def population_truth(
        self,
        mix: SegmentMix | Mapping[tuple[str, str, str], float] | None = None,
        *,
        period: int | str | None = None,
    ) -> xr.Dataset:
        """Population-level truth of a new experiment run on ``mix``.

        Parameters
        ----------
        mix : SegmentMix or mapping of (region, device, tenure) to share, optional
            The population; default the world's own mix.
        period : str or int, optional
            A world with periods: the period of the new experiment (a label or an
            index; default the latest).

        Returns
        -------
        xarray.Dataset
            ``pop_effect_mean``, ``pop_effect_sd`` [region, device, tenure,
            metric]: mean and sd over new experiments of the cell's true
            effect; ``pop_flip_prob`` [region, device, tenure, proxy];
            ``pop_mix_effect_mean``, ``pop_mix_effect_sd`` [metric]: of the
            mix-level effect Σ_s π_s θ_s; ``pop_decision_accuracy`` [proxy]:
            P(sign of the mix-level proxy effect == sign of the mix-level
            long-term effect); ``mix_share`` [region, device, tenure].
        """
        chosen = as_mix(mix) or self.config.mix
        mechanism = population.Mechanism.of(self.config, self._period(period))
        return population.population_truth(mechanism, chosen)

    def population_slope(
        self, mix: SegmentMix | Mapping[tuple[str, str, str], float] | None = None
    ) -> xr.Dataset:
        """Per-period population regression slopes of the long-term effect on each proxy.

        Over new experiments of each period, on infinitely many users (no Monte
        Carlo): Cov(τ, θ_k) / Var(θ_k) per cell and for the mix-level effects. In a
        drifting world early_watch_min's falls by about ``1 - watch_drift`` a
        period; the other proxies' do not move.

        Parameters
        ----------
        mix : SegmentMix or mapping, optional
            The population of the mix-level slopes; default the world's mix.

        Returns
        -------
        xarray.Dataset
            ``pop_slope`` [period, region, device, tenure, proxy], ``pop_mix_slope``
            [period, proxy] (NaN for early_ctr and rebuffer_rate, whose effects do
            not vary across experiments) and ``watch_gamma`` [period].

        Raises
        ------
        ParameterError
            If the world has no periods.
        """
        self._periods()
        return mt.population_slopes(self.config, as_mix(mix) or self.config.mix)

    def new_experiment_effects(
        self,
        n: int,
        mix: SegmentMix | Mapping[tuple[str, str, str], float] | None = None,
        *,
        seed: int | None = None,
        period: int | str | None = None,
    ) -> pd.DataFrame:
        """Exact population-level true effects of ``n`` freshly drawn experiments.

        Parameters
        ----------
        n : int
            Number of experiments (> 0); exp_tau ~ N(0, exp_tau_sd) and
            exp_bias ~ N(0, exp_bias_sd) are drawn with ``seed``.
        mix : SegmentMix or mapping, optional
            The population for the mix-level rows; default the world's mix.
        seed : int, optional
            Seed of the draws.
        period : str or int, optional
            A world with periods: the experiments' period (default the latest);
            in a drifting world its watch-only push is drawn too (``watch_push``).

        Returns
        -------
        pandas.DataFrame
            Long format, 25 rows per experiment: columns experiment, exp_tau,
            exp_bias, scope ("segment" for each of the 24 cells, "mix" for the
            mix-level row, whose region/device/tenure are "all"), region,
            device, tenure, mix_share, and one column per metric with the
            true effect (good direction, long-term on the probability scale).
        """
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
            raise ParameterError(f"new_experiment_effects: n must be an integer >= 1; got {n!r}.")
        chosen = as_mix(mix) or self.config.mix
        mechanism = population.Mechanism.of(self.config, self._period(period))
        return population.new_experiment_effects(mechanism, int(n), chosen, seed)

    def shifted(
        self,
        mix: SegmentMix | Mapping[tuple[str, str, str], float],
        *,
        n_users: int | None = None,
        n_experiments: int | None = None,
        seed: int | None = None,
    ) -> World:
        """A new world with the same mechanism and another segment mix.

        Same cohort, segment effects and experiment sds; fresh users and
        experiments, with its own truth.

        Parameters
        ----------
        mix : SegmentMix or mapping of (region, device, tenure) to share
            The target cohort's mix.
        n_users, n_experiments : int, optional
            Default: this world's.
        seed : int, optional
            Default: a seed derived deterministically from this world's, so the
            experiments are fresh draws.

        Returns
        -------
        World
        """
        return shifted(self, mix, n_users=n_users, n_experiments=n_experiments, seed=seed)

    def __repr__(self) -> str:
        c = self.config
        time = ""
        if c.periods is not None:
            labels = self.period_labels
            time = f", {c.periods} periods {labels[0]}..{labels[-1]}, watch_drift={c.watch_drift}"
        return (
            f"<World streaming: {c.n_users:,} users, {c.n_experiments} experiments, "
            f"seed={c.seed}, mix={c.mix!r}, cohort={c.cohort!r}{time}>"
        )


def build(config: StreamingConfig) -> World:
    """Draw a world from ``config`` and compute its truth."""
    draws = generate.draw(config)
    truth, experiments = world_truth(config, draws)
    return World(config, draws.users, draws.potential_outcomes, experiments, truth)


def streaming(
    config: StreamingConfig | None = None,
    *,
    n_users: int | None = None,
    n_experiments: int | None = None,
    seed: int | None = None,
    mix: SegmentMix | Mapping[tuple[str, str, str], float] | None = None,
    cohort: FailureCohort | None = None,
    exp_tau_sd: float | None = None,
    exp_bias_sd: float | None = None,
    periods: int | None = None,
    start: str | dt.date | None = None,
    period: str | None = None,
    watch_drift: float | None = None,
) -> World:
    """Simulate the seed's streaming world with both potential outcomes and exact truth.

    With the default settings and the same seed, the observed columns of
    ``world.users`` equal the seed generator's output draw for draw.

    Parameters
    ----------
    config : StreamingConfig, optional
        All settings at once; keyword options below replace its fields.
    n_users, n_experiments, seed, mix, cohort, exp_tau_sd, exp_bias_sd
        Fields of :class:`StreamingConfig` (``mix`` may also be a mapping of
        (region, device, tenure) to share, taken as a joint mix).
    periods, start, period, watch_drift
        Time (fields of :class:`StreamingConfig`): the experiments spread over
        ``periods`` calendar periods with a ``start_date`` column, and a watch
        proxy whose link to retention weakens at the rate ``watch_drift``
        (0: the static control world, the same users).

    Returns
    -------
    World

    Raises
    ------
    ParameterError
        On any invalid setting, naming the field and the value.

    Examples
    --------
    >>> from proxyscope import simulate
    >>> world = simulate.streaming(n_users=20_000, n_experiments=10, seed=7)
    >>> world.truth["cell_effect"].dims
    ('experiment', 'region', 'device', 'tenure', 'metric')
    """
    options = {
        "n_users": n_users,
        "n_experiments": n_experiments,
        "seed": seed,
        "mix": as_mix(mix),
        "cohort": cohort,
        "exp_tau_sd": exp_tau_sd,
        "exp_bias_sd": exp_bias_sd,
        "periods": periods,
        "start": start,
        "period": period,
        "watch_drift": watch_drift,
    }
    return build(generate.make_config(config, options))


def shifted(
    world: World,
    mix: SegmentMix | Mapping[tuple[str, str, str], float],
    *,
    n_users: int | None = None,
    n_experiments: int | None = None,
    seed: int | None = None,
) -> World:
    """A world with ``world``'s mechanism and another segment mix (a shifted target cohort).

    Parameters
    ----------
    world : World
        The source world; its cohort, segment effects and sds are kept.
    mix : SegmentMix or mapping of (region, device, tenure) to share
        The target's mix.
    n_users, n_experiments : int, optional
        Default: the source world's.
    seed : int, optional
        Default: derived deterministically from the source's seed (fresh draws).

    Returns
    -------
    World
    """
    if not isinstance(world, World):
        raise ParameterError(f"shifted: world must be a World; got {type(world).__name__}.")
    target = as_mix(mix)
    if target is None:
        raise ParameterError("shifted: mix is required (the target cohort's segment mix).")
    changes: dict[str, object] = {"mix": target}
    if n_users is not None:
        changes["n_users"] = n_users
    if n_experiments is not None:
        changes["n_experiments"] = n_experiments
    changes["seed"] = seed if seed is not None else generate.child_seed(world.config.seed)
    return build(dataclasses.replace(world.config, **changes))  # type: ignore[arg-type]

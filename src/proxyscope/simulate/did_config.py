"""Settings of the simulated rollout world: a frozen dataclass that fails closed.

Every check runs in ``__post_init__`` and raises
:class:`proxyscope.errors.ParameterError` naming the field and the bad value,
so an invalid world cannot be built (like
:class:`~proxyscope.simulate.WorkspaceConfig`, whose segment mix, failure
cohort and experiment sds it shares).
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np

from proxyscope.errors import ParameterError
from proxyscope.simulate import scenario as sc
from proxyscope.simulate.config import (
    Bound,
    FailureCohort,
    check_mix_and_cohort,
    is_int,
    set_ints,
    set_numbers,
)
from proxyscope.simulate.mix import SegmentMix

_OWNER = "DidConfig"


@dataclasses.dataclass(frozen=True)
class DidConfig:
    """Settings of :func:`proxyscope.simulate.did_world.rollout`.

    Parameters
    ----------
    n_experiments : int
        Rollouts (>= 1); each is a streaming experiment rolled out to its own units.
    n_units : int
        Units (markets) per rollout, each in one region; regions get units in
        proportion to the mix's region shares (largest remainder), and every
        region with users needs at least two units in each wave and among the
        never treated.
    n_periods : int
        Periods 0 .. n_periods − 1 of every rollout (>= 2).
    waves : tuple of int
        The first treated period of each wave, strictly increasing, each in
        [1, n_periods − 1]. ``n_periods=2, waves=(1,)`` is a 2×2.
    never_share : float
        Share of each region's units never treated, in (0, 1); the rest are
        split evenly over the waves (largest remainder).
    users_per_period : int
        Users behind a unit's value in a period (>= 1), on average: each
        rollout's users of a region are split evenly over the region's
        (unit, period) slots.
    unit_sd : float
        Sd of the unit baselines (fixed effects), in units of each metric's
        user-level sd (>= 0).
    baseline_corr : float
        Correlation of the unit baselines (and of the unit-period shocks) of
        every pair of metrics in their good directions, in (-0.25, 1).
    trend_sd : float
        Sd of the per-period steps of the common time trend (a random walk per
        rollout and metric), in units of the user-level sd (>= 0).
    shock_sd : float
        Sd of the unit-period shocks, in units of the sd of a unit's period
        mean (user-level sd / sqrt(users_per_period)) (>= 0).
    shock_ar : float
        Autocorrelation of a unit's shocks from one period to the next, in [0, 1).
    selection : float
        Correlation, in [0, 1], between a unit's outcome baseline and how early
        it is treated (early waves get high-baseline units; levels cancel in a
        difference in differences).
    violation : float
        Extra drift per period of every unit that is ever treated, in units of
        the sd of a unit's period mean, on every metric in its good direction,
        before and after its first treated period (a parallel-trend
        violation); 0 (the default) for parallel trends.
    seed : int
        Seed (>= 0) of both random streams (the streaming world's and the rollout's).
    mix, cohort, exp_tau_sd, exp_bias_sd
        As in :class:`~proxyscope.simulate.StreamingConfig`.

    Raises
    ------
    ParameterError
        Naming the field and the bad value.
    """

    n_experiments: int = 20
    n_units: int = 120
    n_periods: int = 8
    waves: tuple[int, ...] = (4, 6)
    never_share: float = 0.4
    users_per_period: int = 25
    unit_sd: float = 0.5
    baseline_corr: float = 0.5
    trend_sd: float = 0.05
    shock_sd: float = 0.5
    shock_ar: float = 0.5
    selection: float = 0.5
    violation: float = 0.0
    seed: int = 7
    mix: SegmentMix = dataclasses.field(default_factory=SegmentMix)
    cohort: FailureCohort = dataclasses.field(default_factory=FailureCohort)
    exp_tau_sd: float = 0.12
    exp_bias_sd: float = 0.08

    def __post_init__(self) -> None:
        set_ints(
            self,
            _OWNER,
            (
                ("n_experiments", 1),
                ("n_units", 4),
                ("n_periods", 2),
                ("users_per_period", 1),
                ("seed", 0),
            ),
        )
        waves = self.waves
        if (
            not isinstance(waves, tuple | list)
            or not waves
            or not all(is_int(w) and 1 <= w < self.n_periods for w in waves)
            or any(b <= a for a, b in itertools.pairwise(waves))
        ):
            raise ParameterError(
                f"{_OWNER}.waves: must be a non-empty, strictly increasing tuple of periods "
                f"in [1, n_periods - 1] = [1, {self.n_periods - 1}]; got {waves!r}."
            )
        object.__setattr__(self, "waves", tuple(int(w) for w in waves))
        bounds: dict[str, Bound] = {
            "never_share": (0.0, 1.0, True, True),
            "unit_sd": (0.0, None, False, False),
            "baseline_corr": (-1.0 / (len(sc.METRICS) - 1), 1.0, True, True),
            "trend_sd": (0.0, None, False, False),
            "shock_sd": (0.0, None, False, False),
            "shock_ar": (0.0, 1.0, False, True),
            "selection": (0.0, 1.0, False, False),
            "violation": (None, None, False, False),
        }
        set_numbers(self, _OWNER, bounds)
        check_mix_and_cohort(self, _OWNER)
        self.region_units()  # enough units in every region and group

    def region_units(self) -> np.ndarray:
        """Units per region and group, shape (regions, 1 + waves): never treated, then waves.

        Raises
        ------
        ParameterError
            A region with users gets fewer than two units in some group.
        """
        share = self.mix.marginal(sc.REGION)
        per_region = _largest_remainder(self.n_units * share)
        groups = np.array(
            [self.never_share] + [(1 - self.never_share) / len(self.waves)] * len(self.waves)
        )
        out = np.stack([_largest_remainder(n * groups) for n in per_region])
        short = (share > 0) & (out.min(axis=1) < 2)
        if short.any():
            r = int(np.flatnonzero(short)[0])
            raise ParameterError(
                f"{_OWNER}.n_units: every region needs at least 2 units in each wave and among "
                f"the never treated; with n_units={self.n_units}, never_share="
                f"{self.never_share:g} and {len(self.waves)} wave(s), region "
                f"{sc.REGIONS[r]!r} (share {share[r]:g}) gets {out[r].tolist()}. Raise n_units."
            )
        return out

    @property
    def period_sd_factor(self) -> float:
        """1 / sqrt(users_per_period): the sd of a unit's period mean per user-level sd."""
        return 1.0 / math.sqrt(self.users_per_period)

    def baseline_correlation(self) -> np.ndarray:
        """Correlation matrix of baselines and shocks in the metrics' raw directions."""
        m = len(sc.METRICS)
        corr = np.full((m, m), self.baseline_corr)
        np.fill_diagonal(corr, 1.0)
        return np.asarray(corr * np.outer(good_sign(), good_sign()))


def good_sign() -> np.ndarray:
    """+1 per metric, −1 for a lower-is-better one (raw = sign × good direction)."""
    return np.array([-1.0 if m in sc.LOWER_IS_BETTER else 1.0 for m in sc.METRICS])


def _largest_remainder(raw: np.ndarray) -> np.ndarray:
    """Whole numbers summing to round(sum(raw)), each floor or ceil of its entry."""
    total = round(float(raw.sum()))
    out = np.floor(raw).astype(np.int64)
    order = np.argsort(-(raw - out), kind="stable")
    out[order[: total - int(out.sum())]] += 1
    return out

"""Settings of the simulated global-launch world: a frozen dataclass that fails closed.

Every check runs in ``__post_init__`` and raises
:class:`proxyscope.errors.ParameterError` naming the field and the bad value,
so an invalid world cannot be built (like
:class:`~proxyscope.simulate.WorkspaceConfig`, whose segment mix, failure
cohort and experiment sds it shares).
"""

from __future__ import annotations

import dataclasses

from proxyscope.errors import ParameterError, suggestion
from proxyscope.simulate import scenario as sc
from proxyscope.simulate.config import (
    Bound,
    FailureCohort,
    check_mix_and_cohort,
    set_ints,
    set_numbers,
)
from proxyscope.simulate.mix import SegmentMix

_OWNER = "LaunchConfig"


@dataclasses.dataclass(frozen=True)
class LaunchConfig:
    """Settings of :func:`proxyscope.simulate.launch_world.launch`.

    Parameters
    ----------
    n_experiments : int
        Past launches (>= 2), each in its own panel of markets.
    n_markets : int
        Markets per launch (>= 3): one launched, the others donors.
    pre_periods, post_periods : int
        Periods before the launch (>= 2) and from it on (>= 1).
    users_per_period : int
        Users behind a market's value in one period, all segment cells
        together (>= 10); a segment cell's share follows ``mix``.
    n_factors : int
        Time-varying latent factors (>= 0) besides a constant market level.
    market_sd : float
        Sd of a market's latent component of each metric, as a multiple of the
        metric's user-level sd (>= 0).
    factor_persistence : float
        AR(1) coefficient of every factor path, in [0, 1).
    metric_corr : float
        Correlation, in their good directions, of the metrics' loadings on each
        factor (and of the common shocks), in [0, 1].
    common_sd : float
        Sd of the period shocks shared by all markets of a launch, as a multiple
        of each metric's user-level sd (>= 0).
    ramp_periods : int
        Periods the effect takes to reach its full size (>= 1; 1 = at once):
        in post-launch period k (0, 1, ...) it is min(1, (k + 1) / ramp_periods)
        of the full effect.
    segments : tuple of str
        Segment columns crossed into cells (some of region, device, tenure);
        () for one cell per launch.
    seed : int
        Seed (>= 0).
    mix, cohort, exp_tau_sd, exp_bias_sd
        As in :class:`~proxyscope.simulate.StreamingConfig`: the segment mix,
        the planted failure cohort and the sds of each launch's long-term
        tendency and baseline shift, which set its effects.

    Raises
    ------
    ParameterError
        Naming the field and the bad value.
    """

    n_experiments: int = 20
    n_markets: int = 25
    pre_periods: int = 20
    post_periods: int = 8
    users_per_period: int = 4000
    n_factors: int = 2
    market_sd: float = 0.05
    factor_persistence: float = 0.8
    metric_corr: float = 0.6
    common_sd: float = 0.05
    ramp_periods: int = 1
    segments: tuple[str, ...] = ()
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
                ("n_experiments", 2),
                ("n_markets", 3),
                ("pre_periods", 2),
                ("post_periods", 1),
                ("users_per_period", 10),
                ("n_factors", 0),
                ("ramp_periods", 1),
                ("seed", 0),
            ),
        )
        bounds: dict[str, Bound] = {
            "market_sd": (0.0, None, False, False),
            "factor_persistence": (0.0, 1.0, False, True),
            "metric_corr": (0.0, 1.0, False, False),
            "common_sd": (0.0, None, False, False),
        }
        set_numbers(self, _OWNER, bounds)
        segs = self.segments
        if isinstance(segs, str) or not isinstance(segs, tuple | list):
            raise ParameterError(
                f"{_OWNER}.segments: must be a tuple of segment columns (some of "
                f"{list(sc.SEGMENT_COLUMNS)}); got {segs!r}."
            )
        for s in segs:
            if s not in sc.SEGMENT_COLUMNS:
                hint = suggestion(s, sc.SEGMENT_COLUMNS) if isinstance(s, str) else ""
                raise ParameterError(
                    f"{_OWNER}.segments: unknown segment column {s!r}; expected some of "
                    f"{list(sc.SEGMENT_COLUMNS)}.{hint}"
                )
        if len(set(segs)) != len(segs):
            raise ParameterError(f"{_OWNER}.segments: a column appears twice in {segs!r}.")
        # In scenario order, so cells and truth share one layout.
        object.__setattr__(self, "segments", tuple(s for s in sc.SEGMENT_COLUMNS if s in segs))
        check_mix_and_cohort(self, _OWNER)

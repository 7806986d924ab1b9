"""Settings of the simulated threshold world: a frozen dataclass that fails closed.

Every check runs in ``__post_init__`` and raises
:class:`proxyscope.errors.ParameterError` naming the field and the bad value,
so an invalid world cannot be built (like
:class:`~proxyscope.simulate.WorkspaceConfig`, whose segment mix, failure
cohort and experiment sds it shares).
"""

from __future__ import annotations

import dataclasses

from proxyscope.errors import ParameterError
from proxyscope.simulate import scenario as sc
from proxyscope.simulate.config import (
    Bound,
    FailureCohort,
    check_mix_and_cohort,
    set_ints,
    set_numbers,
)
from proxyscope.simulate.mix import SegmentMix, check_number

_OWNER = "ThresholdConfig"


@dataclasses.dataclass(frozen=True)
class ThresholdConfig:
    """Settings of :func:`proxyscope.simulate.threshold_world.threshold`.

    Parameters
    ----------
    n_experiments : int
        Threshold rules (experiments), >= 1.
    n_users : int
        Users per experiment (>= 20).
    cutoff : tuple of two floats
        (lowest, highest) threshold; each experiment's is drawn uniformly in
        that range (equal bounds: one threshold for all), within (0, 1).
    score_shape : tuple of two floats
        (a, b) of the Beta distribution of the score (the running variable),
        both > 0; the same in every segment cell.
    score_sat, score_eng : float
        How much a user's mean satisfaction and engagement move per sd of the
        score: ``sat = SAT_MEAN[cell] + score_sat · z(x) + N(0, 1)`` with z the
        standardized score, likewise eng. Finite.
    manipulation : float
        Share, in [0, 1), of the users whose score falls within
        ``manipulation_width`` below the threshold who move it to just above
        it (uniform within ``manipulation_width`` above). Their potential
        outcomes stay those of their own score, so the density jumps and the
        estimate is biased there.
    manipulation_width : float
        In (0, 0.5).
    segments : tuple of str
        The segment columns :meth:`ThresholdWorld.column_roles` passes (a
        subset of region, device, tenure).
    seed : int
        Seed (>= 0).
    mix, cohort, exp_tau_sd, exp_bias_sd
        As in :class:`~proxyscope.simulate.StreamingConfig`.

    Raises
    ------
    ParameterError
        Naming the field and the bad value.
    """

    n_experiments: int = 20
    n_users: int = 20_000
    cutoff: tuple[float, float] = (0.85, 0.85)
    score_shape: tuple[float, float] = (5.0, 2.0)
    score_sat: float = 0.5
    score_eng: float = 0.3
    manipulation: float = 0.0
    manipulation_width: float = 0.02
    segments: tuple[str, ...] = (sc.TENURE,)
    seed: int = 7
    mix: SegmentMix = dataclasses.field(default_factory=SegmentMix)
    cohort: FailureCohort = dataclasses.field(default_factory=FailureCohort)
    exp_tau_sd: float = 0.12
    exp_bias_sd: float = 0.08

    def __post_init__(self) -> None:
        set_ints(self, _OWNER, (("n_experiments", 1), ("n_users", 20), ("seed", 0)))
        for name, (lo, hi) in (("cutoff", (0.0, 1.0)), ("score_shape", (0.0, None))):
            pair = getattr(self, name)
            if not isinstance(pair, tuple | list) or len(pair) != 2:
                raise ParameterError(f"{_OWNER}.{name}: must be two numbers; got {pair!r}.")
            got = tuple(
                check_number(f"{_OWNER}.{name}[{i}]", v, lo, hi, open_low=True, open_high=True)
                for i, v in enumerate(pair)
            )
            object.__setattr__(self, name, got)
        if self.cutoff[0] > self.cutoff[1]:
            raise ParameterError(
                f"{_OWNER}.cutoff: must be (lowest, highest) with lowest <= highest; "
                f"got {self.cutoff!r}."
            )
        bounds: dict[str, Bound] = {
            "score_sat": (None, None, False, False),
            "score_eng": (None, None, False, False),
            "manipulation": (0.0, 1.0, False, True),
            "manipulation_width": (0.0, 0.5, True, True),
        }
        set_numbers(self, _OWNER, bounds)
        segs = self.segments
        if isinstance(segs, str) or not isinstance(segs, tuple | list):
            raise ParameterError(
                f"{_OWNER}.segments: must be a tuple of segment columns; got {segs!r}."
            )
        bad = [s for s in segs if s not in sc.SEGMENT_COLUMNS]
        if bad or len(set(segs)) != len(segs):
            raise ParameterError(
                f"{_OWNER}.segments: must be distinct names among {list(sc.SEGMENT_COLUMNS)}; "
                f"got {segs!r}."
            )
        object.__setattr__(self, "segments", tuple(segs))
        check_mix_and_cohort(self, _OWNER)

    @property
    def score_moments(self) -> tuple[float, float]:
        """Mean and sd of the Beta score."""
        a, b = self.score_shape
        return a / (a + b), (a * b / ((a + b) ** 2 * (a + b + 1))) ** 0.5

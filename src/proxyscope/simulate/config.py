"""Settings of the simulated streaming world: frozen dataclasses that fail closed.

Every check runs in ``__post_init__`` and raises
:class:`proxyscope.errors.ParameterError` naming the field and the bad value,
so an invalid world cannot be built. The distribution of users over segment
cells, :class:`~proxyscope.simulate.mix.SegmentMix`, is in its own module.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from proxyscope.errors import ParameterError
from proxyscope.simulate import scenario as sc
from proxyscope.simulate.mix import SegmentMix, _check_level, check_number, is_real


def is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class FailureCohort:
    """The planted cohort where treatment lifts early engagement and lowers retention.

    Users in the cohort get, when treated, ``long_penalty`` added to the
    long-term logit, ``watch_boost`` to early_watch_min and ``starts_boost``
    to early_starts (before clipping). The default reproduces the seed:
    IN × Mobile × New, −0.25 / +6 / +0.6.

    Parameters
    ----------
    region, device, tenure : str or None
        The cohort's level of each segment column; None means any level.
    long_penalty, watch_boost, starts_boost : float
        Strengths (finite). All three zero disables the cohort; see
        :meth:`none`.

    Raises
    ------
    ParameterError
        On an unknown level or a non-finite strength.
    """

    region: str | None = "IN"
    device: str | None = "Mobile"
    tenure: str | None = "New"
    long_penalty: float = -0.25
    watch_boost: float = 6.0
    starts_boost: float = 0.6

    def __post_init__(self) -> None:
        for column in sc.SEGMENT_COLUMNS:
            level = getattr(self, column)
            if level is not None:
                _check_level(f"FailureCohort.{column}", column, level)
        for name in ("long_penalty", "watch_boost", "starts_boost"):
            value = getattr(self, name)
            if not is_real(value) or not math.isfinite(float(value)):
                raise ParameterError(
                    f"FailureCohort.{name}: must be a finite number; got {value!r}."
                )
            object.__setattr__(self, name, float(value))

    @classmethod
    def none(cls) -> FailureCohort:
        """A disabled cohort: every strength 0 (no user is marked as in it)."""
        return cls(long_penalty=0.0, watch_boost=0.0, starts_boost=0.0)

    @property
    def active(self) -> bool:
        """Whether any strength is non-zero."""
        return bool(self.long_penalty or self.watch_boost or self.starts_boost)

    def cells(self) -> np.ndarray:
        """Membership of each of the 24 cells (float 1.0 / 0.0, cell order).

        All zeros when the cohort is not :attr:`active`.
        """
        member = np.full(sc.N_CELLS, self.active)
        for column, codes in zip(
            sc.SEGMENT_COLUMNS, (sc.CELL_REGION, sc.CELL_DEVICE, sc.CELL_TENURE), strict=True
        ):
            level = getattr(self, column)
            if level is not None:
                member &= codes == sc.LEVELS[column].index(level)
        return member.astype(float)


@dataclasses.dataclass(frozen=True)
class StreamingConfig:
    """Settings of :func:`proxyscope.simulate.streaming`.

    Parameters
    ----------
    n_users : int
        Users in the world (> 0), assigned uniformly to experiments.
    n_experiments : int
        Past experiments (>= 1; the model needs >= 2).
    seed : int
        Seed of ``numpy.random.default_rng`` (>= 0).
    mix : SegmentMix
        Distribution of users over segment cells.
    cohort : FailureCohort
        The planted failure cohort.
    exp_tau_sd : float
        Sd of each experiment's long-term tendency exp_tau (> 0).
    exp_bias_sd : float
        Sd of each experiment's baseline shift exp_bias (>= 0).

    Raises
    ------
    ParameterError
        Naming the field and the bad value.
    """

    n_users: int = 250_000
    n_experiments: int = 50
    seed: int = 7
    mix: SegmentMix = dataclasses.field(default_factory=SegmentMix)
    cohort: FailureCohort = dataclasses.field(default_factory=FailureCohort)
    exp_tau_sd: float = 0.12
    exp_bias_sd: float = 0.08

    def __post_init__(self) -> None:
        for name, low in (("n_users", 1), ("n_experiments", 1), ("seed", 0)):
            value = getattr(self, name)
            if not is_int(value):
                raise ParameterError(
                    f"StreamingConfig.{name}: must be an integer >= {low}; got {value!r}."
                )
            if value < low:
                raise ParameterError(f"StreamingConfig.{name}: must be >= {low}; got {value!r}.")
            object.__setattr__(self, name, int(value))
        for name, strict in (("exp_tau_sd", True), ("exp_bias_sd", False)):
            value = getattr(self, name)
            ok = is_real(value) and math.isfinite(float(value))
            ok = ok and (float(value) > 0 if strict else float(value) >= 0)
            if not ok:
                bound = "> 0" if strict else ">= 0"
                raise ParameterError(
                    f"StreamingConfig.{name}: must be a finite number {bound}; got {value!r}."
                )
            object.__setattr__(self, name, float(value))
        if not isinstance(self.mix, SegmentMix):
            raise ParameterError(
                f"StreamingConfig.mix: must be a SegmentMix; got {type(self.mix).__name__} "
                f"{self.mix!r}."
            )
        if not isinstance(self.cohort, FailureCohort):
            raise ParameterError(
                f"StreamingConfig.cohort: must be a FailureCohort; got "
                f"{type(self.cohort).__name__} {self.cohort!r}."
            )


#: Bounds (low, high, open low, open high) of a number field (None: unbounded).
Bound = tuple[float | None, float | None, bool, bool]
#: The experiment sds every simulated world shares with :class:`StreamingConfig`.
SCENARIO_BOUNDS: dict[str, Bound] = {
    "exp_tau_sd": (0.0, None, True, False),
    "exp_bias_sd": (0.0, None, False, False),
}


def set_ints(config: Any, owner: str, lows: Iterable[tuple[str, int]]) -> None:
    """Check the integer fields of a frozen ``config`` (each ``>= low``) and store them as int.

    Raises
    ------
    ParameterError
        Naming ``owner.field``, the bound and the value.
    """
    for name, low in lows:
        value = getattr(config, name)
        if not is_int(value) or value < low:
            raise ParameterError(f"{owner}.{name}: must be an integer >= {low}; got {value!r}.")
        object.__setattr__(config, name, int(value))


def set_numbers(config: Any, owner: str, bounds: Mapping[str, Bound]) -> None:
    """Check the number fields of a frozen ``config`` within ``bounds`` (then the shared
    :data:`SCENARIO_BOUNDS`) and store them as float (:func:`check_number`'s errors)."""
    for name, (low, high, open_low, open_high) in {**bounds, **SCENARIO_BOUNDS}.items():
        value = check_number(
            f"{owner}.{name}",
            getattr(config, name),
            low,
            high,
            open_low=open_low,
            open_high=open_high,
        )
        object.__setattr__(config, name, value)


def check_mix_and_cohort(config: Any, owner: str) -> None:
    """A world config's ``mix`` must be a SegmentMix and its ``cohort`` a FailureCohort.

    Raises
    ------
    ParameterError
        Naming ``owner.field`` and what was found.
    """
    for name, kind in (("mix", SegmentMix), ("cohort", FailureCohort)):
        value = getattr(config, name)
        if not isinstance(value, kind):
            raise ParameterError(
                f"{owner}.{name}: must be a {kind.__name__}; got {type(value).__name__} {value!r}."
            )

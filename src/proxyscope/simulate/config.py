"""Settings of the simulated streaming world: frozen dataclasses that fail closed.

Every check runs in ``__post_init__`` and raises
:class:`proxyscope.errors.ParameterError` naming the field and the bad value,
so an invalid world cannot be built. The distribution of users over segment
cells, :class:`~proxyscope.simulate.mix.SegmentMix`, is in its own module. The
checks of the time settings (``periods``, ``start``, ``period``) are shared
with :func:`proxyscope.simulate.from_model`, as is :func:`watch_gamma`, the
drifting watch proxy's push per period.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from proxyscope.errors import ParameterError, suggestion
from proxyscope.simulate import scenario as sc
from proxyscope.simulate.mix import SegmentMix, _check_level, check_number, is_real


def is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


#: Period groupings of a simulated world's calendar and the pandas frequency of each
#: (weeks are ISO weeks, Monday first).
GROUPINGS: dict[str, str] = {"week": "W-SUN", "month": "M", "quarter": "Q", "year": "Y"}


def time_error(owner: str, name: str, want: str, got: Any, hint: str = "") -> ParameterError:
    """The error for a bad time setting, naming the field (``Config.name``) or parameter."""
    if owner.endswith("Config"):
        return ParameterError(f"{owner}.{name}: must be {want}; got {got!r}.{hint}")
    return ParameterError(f"The {name!r} parameter of {owner} must be {want}; got {got!r}.{hint}")


def check_periods(owner: str, periods: Any, n_experiments: int) -> int | None:
    """``periods`` as an int in [1, n_experiments], or None."""
    if periods is None:
        return None
    ok = isinstance(periods, int | np.integer) and not isinstance(periods, bool)
    if not ok or not 1 <= periods <= n_experiments:
        raise time_error(
            owner,
            "periods",
            f"None or an integer in [1, n_experiments = {n_experiments}] (every period needs "
            "an experiment)",
            periods,
        )
    return int(periods)


def check_start(owner: str, start: Any) -> pd.Timestamp:
    """``start`` (an ISO date string, date or naive Timestamp in the years 1900-2199; time
    of day dropped) as a Timestamp."""
    if isinstance(start, str | dt.date | np.datetime64):
        try:
            stamp = pd.Timestamp(start)
        except (TypeError, ValueError):
            stamp = None
        if (
            isinstance(stamp, pd.Timestamp)
            and not pd.isna(stamp)
            and stamp.tzinfo is None
            and 1900 <= stamp.year < 2200
        ):
            return stamp.normalize()
    want = "a date in the years 1900-2199 (ISO string, date or naive Timestamp)"
    raise time_error(owner, "start", want, start)


def check_grouping(owner: str, period: Any) -> str:
    """``period`` as one of :data:`GROUPINGS`."""
    if isinstance(period, str) and period in GROUPINGS:
        return period
    hint = suggestion(period, GROUPINGS) if isinstance(period, str) else ""
    raise time_error(owner, "period", f"one of {list(GROUPINGS)}", period, hint)


def watch_gamma(exp_tau_sd: float, rate: float, n_periods: int) -> np.ndarray:
    """Sd (in exp_tau units) of the watch-only push per period: ``gamma_p = sd sqrt((1 -
    rate)^-p - 1)``, so that Var(t) / Var(t + gamma_p g) = (1 - rate)^p: the share of the
    watch response's variation across experiments that moves retention falls by (1 - rate)
    a period (the slope of retention on a linear watch response would fall by exactly that)."""
    p = np.arange(n_periods, dtype=float)
    return np.asarray(exp_tau_sd * np.sqrt(np.expm1(-p * math.log1p(-rate))))


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
    periods : int, optional
        Spread the experiments evenly over this many consecutive calendar
        periods (in [1, n_experiments]), each with a start date (the users'
        ``start_date`` column); None (default) is the world without time, the
        same draw for draw as before time existed.
    start : str or date
        A day in the first period (default "2024-01-01"); stored as a Timestamp.
    period : {"week", "month", "quarter", "year"}
        The periods' grouping (default "quarter").
    watch_drift : float
        In [0, 1), needs ``periods``: how fast early_watch_min's link to the
        long-term effect weakens. Treatment in an experiment of period p also
        moves watch minutes by ``WATCH_TAU * gamma_p * g_e`` (g_e ~ N(0, 1) per
        experiment), a push that carries no long-term effect, with
        ``gamma_p = exp_tau_sd * sqrt((1 - watch_drift)^-p - 1)``: the share of
        the watch effect's variation that moves retention falls by
        ``1 - watch_drift`` a period. 0 (default) is the static control world:
        the same users, draw for draw, with the push switched off.

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
    periods: int | None = None
    start: str | dt.date = "2024-01-01"
    period: str = "quarter"
    watch_drift: float = 0.0

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
        self._check_time()

    def _check_time(self) -> None:
        owner = "StreamingConfig"
        object.__setattr__(self, "periods", check_periods(owner, self.periods, self.n_experiments))
        object.__setattr__(self, "start", check_start(owner, self.start))
        object.__setattr__(self, "period", check_grouping(owner, self.period))
        rate = check_number(f"{owner}.watch_drift", self.watch_drift, 0.0, 1.0, open_high=True)
        if rate and self.periods is None:
            want = "0 without periods (drift is between periods)"
            raise time_error(owner, "watch_drift", want, rate)
        object.__setattr__(self, "watch_drift", rate)

    def watch_gammas(self) -> np.ndarray:
        """Sd of the watch-only push per period (:func:`watch_gamma`); empty without periods."""
        if self.periods is None:
            return np.zeros(0)
        return watch_gamma(self.exp_tau_sd, self.watch_drift, self.periods)


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

"""Each segment cell's population effect given an experiment's (exp_tau, exp_bias).

A new experiment draws ``t = exp_tau ~ N(0, exp_tau_sd)`` and
``b = exp_bias ~ N(0, exp_bias_sd)`` and runs on infinitely many users with
the world's within-segment distributions. In segment cell ``s`` user_sat and
user_eng are independent ``N(mean_s, 1)``, so the population effect of each
metric given (t, b) is an expectation over the user distribution:

- long_retained (probability scale): the control logit is Gaussian,
  ``L ~ N(mu_s + b, 0.7² + 0.15²)``, and the treated logit is ``L + t + c_s``
  (``c_s`` = segment interaction + cohort penalty), so the effect is
  ``G(mu_s + b + t + c_s) - G(mu_s + b)`` with ``G`` the logistic-normal mean
  (Gauss–Hermite). Its sign is ``sign(t + c_s)`` whatever b is.
- early_watch_min: ``max(W + delta_s(t), 0) - max(W, 0)`` with
  ``W ~ N(25 + 10 eng_s + 6 sat_s, 10² + 6² + 5²)``; closed form with the
  normal partial expectation. Increasing in t, sign of ``delta_s(t)``.
- early_starts: ``max(S + delta_s(t) + 0.3 e, 0) - max(S + 0.3 e, 0)`` with
  ``S = 1.8 + 0.7 sigmoid(eng) + 0.2 sigmoid(sat)``; normal partial expectation
  in e, 2-D Gauss–Hermite over (eng, sat). Sign of ``delta_s(t)``.
- early_ctr: ``min(c + a_s, 1) - c`` with ``c = sigmoid(X)``, ``X`` Gaussian;
  independent of (t, b), always > 0.
- rebuffer_rate (good direction, negated): ``c - max(c - 0.03, 0)`` on TV,
  exactly 0 elsewhere; independent of (t, b).

Their distribution over new experiments is in
:mod:`proxyscope.simulate.population`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import special

from proxyscope.simulate import scenario as sc
from proxyscope.simulate._quadrature import (
    direct_or_spline,
    hermite,
    normal_partial,
    tail_integral,
)
from proxyscope.simulate.config import FailureCohort

_N_USER_NODES = 32  # Gauss–Hermite nodes over the long-term logit (error < 1e-15)
_N_STARTS_NODES = 24  # per dimension, over (eng, sat)
_STARTS_GRID_STEP = 2.5e-3  # t-grid step of the starts interpolant (delta step 1e-3)
_LOGIT_GRID_STEP = 1e-3  # grid step of the logistic-normal interpolant
_LOGIT_SD = math.hypot(sc.LOGIT_SAT, sc.LOGIT_ENG)
_LOGIT_MEAN = sc.LOGIT_INTERCEPT + sc.LOGIT_SAT * sc.SAT_MEAN + sc.LOGIT_ENG * sc.ENG_MEAN
#: Mean per cell and sd of the control user's watch minutes before clipping at 0.
WATCH_MEAN = 25.0 + 10.0 * sc.ENG_MEAN + 6.0 * sc.SAT_MEAN
WATCH_SD = math.sqrt(10.0**2 + 6.0**2 + sc.WATCH_NOISE**2)


def _logistic_normal_direct(m: np.ndarray, derivative: bool = False) -> np.ndarray:
    z, w = hermite(_N_USER_NODES)
    p = special.expit(m[..., None] + _LOGIT_SD * z)
    return np.asarray((p * (1.0 - p) if derivative else p) @ w)


def _logistic_normal(m: np.ndarray, derivative: bool = False) -> np.ndarray:
    """G(m) = E[sigmoid(m + sd Z)] (or G'(m)), sd = the long-term logit's user sd."""
    m = np.asarray(m, dtype=float)
    if derivative:
        flat = _logistic_normal_direct(m.reshape(-1), derivative=True)
    else:
        flat = direct_or_spline(
            _logistic_normal_direct,
            lambda x: _logistic_normal_direct(x, derivative=True),
            m.reshape(-1),
            _LOGIT_GRID_STEP,
        )
    return flat.reshape(m.shape)


@dataclass(frozen=True)
class CellResponse:
    """How each segment cell responds to an experiment: its population effects given (t, b).

    Parameters
    ----------
    cohort : FailureCohort
        The planted cohort, whose cells respond differently.
    """

    cohort: FailureCohort

    # -- per-cell constants ------------------------------------------------
    @cached_property
    def member(self) -> np.ndarray:
        """Cohort membership per cell (1.0 / 0.0)."""
        return self.cohort.cells()

    @cached_property
    def long_shift(self) -> np.ndarray:
        """c_s: the long-term logit shift of a treated user beyond exp_tau."""
        return np.asarray(sc.SEG_TAU + self.cohort.long_penalty * self.member)

    @cached_property
    def long_root(self) -> np.ndarray:
        """exp_tau at which the cell's long-term effect is 0."""
        return -self.long_shift

    @cached_property
    def watch_root(self) -> np.ndarray:
        """exp_tau at which the cell's early_watch_min effect is 0."""
        shift = sc.WATCH_SEG * sc.SEG_TAU + self.cohort.watch_boost * self.member / sc.WATCH_TAU
        return np.asarray(-shift)

    @cached_property
    def starts_root(self) -> np.ndarray:
        """exp_tau at which the cell's early_starts effect is 0."""
        shift = sc.STARTS_SEG * sc.SEG_TAU + self.cohort.starts_boost * self.member / sc.STARTS_TAU
        return np.asarray(-shift)

    # -- effects given (t, b) ----------------------------------------------
    def _long(self, t: np.ndarray, b: np.ndarray, slope: bool) -> tuple[np.ndarray, np.ndarray]:
        t = np.asarray(t, dtype=float)[..., None]
        b = np.asarray(b, dtype=float)[..., None]
        m0 = _LOGIT_MEAN + b
        m1 = m0 + (t + self.long_shift)
        effect = _logistic_normal(m1) - _logistic_normal(m0)
        return effect, (_logistic_normal(m1, derivative=True) if slope else effect)

    def long_effect(self, t: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Population long-term effect per cell, shape ``broadcast(t, b) + (24,)``."""
        return self._long(t, b, slope=False)[0]

    def watch_effect(self, t: np.ndarray, spread: float = 0.0) -> np.ndarray:
        """Population early_watch_min effect per cell, shape ``t.shape + (24,)``.

        ``spread``: the sd of an independent normal push ``gamma g`` added to t in
        the watch response alone (a drifting world's watch-only push); the effect
        is then averaged over it, in closed form: the push widens the treated
        user's normal by ``WATCH_TAU * spread``.
        """
        t = np.asarray(t, dtype=float)[..., None]
        delta = (
            sc.WATCH_TAU * (t + sc.WATCH_SEG * sc.SEG_TAU) + self.cohort.watch_boost * self.member
        )
        treated_sd = math.hypot(WATCH_SD, sc.WATCH_TAU * spread) if spread else WATCH_SD
        treated = normal_partial(WATCH_MEAN + delta, treated_sd)
        return np.asarray(treated - normal_partial(WATCH_MEAN, WATCH_SD))

    @cached_property
    def _starts_nodes(self) -> tuple[np.ndarray, np.ndarray]:
        z, w = hermite(_N_STARTS_NODES)
        eng = sc.ENG_MEAN[:, None, None] + z[None, :, None]
        sat = sc.SAT_MEAN[:, None, None] + z[None, None, :]
        base = 1.8 + 0.7 * special.expit(eng) + 0.2 * special.expit(sat)
        return base.reshape(sc.N_CELLS, -1), np.outer(w, w).reshape(-1)

    def _starts_delta(self, t: np.ndarray) -> np.ndarray:
        return np.asarray(
            sc.STARTS_TAU * (t[..., None] + sc.STARTS_SEG * sc.SEG_TAU)
            + self.cohort.starts_boost * self.member
        )

    def _starts_direct(self, t: np.ndarray, derivative: bool = False) -> np.ndarray:
        """E[max(S + delta + 0.3 e, 0)] per cell (or its t-derivative), flat t."""
        base, w = self._starts_nodes
        out = np.empty((t.size, sc.N_CELLS))
        for i in range(0, t.size, 64):
            m = base + self._starts_delta(t[i : i + 64])[..., None]
            if derivative:
                out[i : i + 64] = sc.STARTS_TAU * (special.ndtr(m / sc.STARTS_NOISE) @ w)
            else:
                out[i : i + 64] = normal_partial(m, sc.STARTS_NOISE) @ w
        return out

    @cached_property
    def _starts_control(self) -> np.ndarray:
        base, w = self._starts_nodes
        return np.asarray(normal_partial(base, sc.STARTS_NOISE) @ w)

    def starts_effect(self, t: np.ndarray) -> np.ndarray:
        """Population early_starts effect per cell, shape ``t.shape + (24,)``.

        Evaluated directly for a few hundred t values, beyond that through a
        cubic Hermite interpolant with exact derivatives (see
        :func:`~proxyscope.simulate._quadrature.direct_or_spline`).
        """
        t = np.asarray(t, dtype=float)
        treated = direct_or_spline(
            self._starts_direct,
            lambda x: self._starts_direct(x, derivative=True),
            t.reshape(-1),
            _STARTS_GRID_STEP,
        )
        return np.asarray(treated - self._starts_control).reshape((*t.shape, sc.N_CELLS))

    @cached_property
    def ctr_effect(self) -> np.ndarray:
        """Population early_ctr effect per cell (does not depend on the experiment)."""
        m = 0.3 * sc.ENG_MEAN - 0.35 * sc.SAT_MEAN
        s = math.sqrt(0.3**2 + 0.35**2 + sc.CTR_NOISE**2)
        lift = sc.CTR_LIFT + sc.CTR_LIFT_MOBILE
        out = np.empty(sc.N_CELLS)
        for i in range(sc.N_CELLS):
            # E[min(c + a, 1) - c] = a - E[(c + a - 1)+], c = sigmoid(X); the excess
            # lives above x0 = logit(1 - a).
            a = float(lift[i])
            x0 = float(special.logit(1.0 - a))
            excess = tail_integral(functools.partial(_ctr_excess, lift=a), m[i], s, x0, +1)
            out[i] = a - excess
        return out

    @cached_property
    def rebuffer_effect(self) -> np.ndarray:
        """Population rebuffer_rate effect per cell in the good direction (negated)."""
        m = -0.2 * sc.SAT_MEAN + sc.REBUFFER_IN + sc.REBUFFER_MOBILE
        s = math.sqrt(0.2**2 + sc.REBUFFER_NOISE**2)
        out = np.zeros(sc.N_CELLS)
        for i in np.flatnonzero(sc.REBUFFER_DROP):
            d = float(sc.REBUFFER_DROP[i])
            # E[c - max(c - d, 0)] = d - E[(d - c)+]; the shortfall lives below logit(d).
            x0 = float(special.logit(d))
            short = tail_integral(functools.partial(_shortfall, drop=d), m[i], s, x0, -1)
            out[i] = d - short
        return out

    def cell_effects(self, t: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Population effect of every metric per cell, shape ``t.shape + (24, 5)``."""
        t = np.asarray(t, dtype=float)
        b = np.broadcast_to(np.asarray(b, dtype=float), t.shape)
        out = np.empty((*t.shape, sc.N_CELLS, len(sc.METRICS)))
        out[..., 0] = self.long_effect(t, b)
        out[..., 1] = self.watch_effect(t)
        out[..., 2] = self.starts_effect(t)
        out[..., 3] = self.ctr_effect
        out[..., 4] = self.rebuffer_effect
        return out


def _ctr_excess(x: float, lift: float) -> float:
    """sigmoid(x) + lift - 1: by how much a lifted ctr would exceed 1."""
    return float(special.expit(x)) + lift - 1.0


def _shortfall(x: float, drop: float) -> float:
    """drop - sigmoid(x): by how much a lowered rebuffer rate would fall below 0."""
    return drop - float(special.expit(x))

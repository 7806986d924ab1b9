"""Population-level truth for a new experiment, from the world's structure (no Monte Carlo).

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

Moments over (t, b) use Gauss–Hermite; sign-flip probabilities are normal
probabilities between the two roots in t; decision accuracy for a mix finds
the root in t of the mix-level effects and integrates over b piecewise
(Gauss–Legendre between the points where the two roots cross).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import xarray as xr
from scipy import integrate, interpolate, special

from proxyscope import dims
from proxyscope.errors import ParameterError
from proxyscope.simulate import scenario as sc
from proxyscope.simulate.config import FailureCohort, SegmentMix, StreamingConfig

_N_USER_NODES = 32  # Gauss–Hermite nodes over the long-term logit (error < 1e-15)
_N_STARTS_NODES = 24  # per dimension, over (eng, sat)
_N_T_NODES = 64  # over exp_tau
_N_B_NODES = 48  # over exp_bias
_N_LEGENDRE = 32
_MAX_ITER = 100
_STARTS_GRID_STEP = 2.5e-3  # t-grid step of the starts interpolant (delta step 1e-3)
_LOGIT_GRID_STEP = 1e-3  # grid step of the logistic-normal interpolant
_DIRECT_MAX = 2048  # up to this many points, evaluate directly instead of interpolating
_LOGIT_SD = math.hypot(sc.LOGIT_SAT, sc.LOGIT_ENG)
_LOGIT_MEAN = sc.LOGIT_INTERCEPT + sc.LOGIT_SAT * sc.SAT_MEAN + sc.LOGIT_ENG * sc.ENG_MEAN


@functools.cache
def _hermite(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilists' Gauss–Hermite nodes and weights for E[f(Z)], Z ~ N(0, 1)."""
    x, w = np.polynomial.hermite_e.hermegauss(n)
    return x, w / math.sqrt(2.0 * math.pi)


_SQRT_2PI = math.sqrt(2.0 * math.pi)


def _normal_partial(m: np.ndarray, s: float) -> np.ndarray:
    """E[max(X, 0)] for X ~ N(m, s²)."""
    z = m / s
    return np.asarray(m * special.ndtr(z) + s * np.exp(-0.5 * z * z) / _SQRT_2PI)


def _direct_or_spline(
    fn: Callable[[np.ndarray], np.ndarray],
    dfn: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    step: float,
) -> np.ndarray:
    """``fn(x)`` for a flat ``x``: directly when small, else by cubic Hermite interpolation.

    The interpolant uses the exact derivative ``dfn`` on a grid of ``step``
    over [min x, max x]; for the smooth expectations here its error is below
    1e-15 (fourth-order in the step), far under any statistical use.
    """
    if x.size <= _DIRECT_MAX:
        return fn(x)
    lo, hi = float(x.min()), float(x.max())
    if hi - lo < step:
        hi = lo + step
    grid = np.linspace(lo, hi, math.ceil((hi - lo) / step) + 1)
    spline = interpolate.CubicHermiteSpline(grid, fn(grid), dfn(grid), axis=0)
    return np.asarray(spline(x))


def _logistic_normal_direct(m: np.ndarray, derivative: bool = False) -> np.ndarray:
    z, w = _hermite(_N_USER_NODES)
    p = special.expit(m[..., None] + _LOGIT_SD * z)
    return np.asarray((p * (1.0 - p) if derivative else p) @ w)


def _logistic_normal(m: np.ndarray, derivative: bool = False) -> np.ndarray:
    """G(m) = E[sigmoid(m + sd Z)] (or G'(m)), sd = the long-term logit's user sd."""
    m = np.asarray(m, dtype=float)
    if derivative:
        flat = _logistic_normal_direct(m.reshape(-1), derivative=True)
    else:
        flat = _direct_or_spline(
            _logistic_normal_direct,
            lambda x: _logistic_normal_direct(x, derivative=True),
            m.reshape(-1),
            _LOGIT_GRID_STEP,
        )
    return flat.reshape(m.shape)


def _prob_below(x: np.ndarray | float, sd: float) -> np.ndarray:
    """P(t < x) for t ~ N(0, sd²); x may be ±inf."""
    return np.asarray(special.ndtr(np.asarray(x, dtype=float) / sd))


@dataclass(frozen=True)
class Mechanism:
    """The world's causal structure, per segment cell (everything but the mix and the draws).

    Parameters
    ----------
    cohort : FailureCohort
    exp_tau_sd, exp_bias_sd : float
    """

    cohort: FailureCohort
    exp_tau_sd: float
    exp_bias_sd: float

    @classmethod
    def of(cls, config: StreamingConfig) -> Mechanism:
        """The mechanism of a world's settings."""
        return cls(config.cohort, config.exp_tau_sd, config.exp_bias_sd)

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

    def watch_effect(self, t: np.ndarray) -> np.ndarray:
        """Population early_watch_min effect per cell, shape ``t.shape + (24,)``."""
        m = 25.0 + 10.0 * sc.ENG_MEAN + 6.0 * sc.SAT_MEAN
        s = math.sqrt(10.0**2 + 6.0**2 + sc.WATCH_NOISE**2)
        t = np.asarray(t, dtype=float)[..., None]
        delta = (
            sc.WATCH_TAU * (t + sc.WATCH_SEG * sc.SEG_TAU) + self.cohort.watch_boost * self.member
        )
        return np.asarray(_normal_partial(m + delta, s) - _normal_partial(m, s))

    @cached_property
    def _starts_nodes(self) -> tuple[np.ndarray, np.ndarray]:
        z, w = _hermite(_N_STARTS_NODES)
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
                out[i : i + 64] = _normal_partial(m, sc.STARTS_NOISE) @ w
        return out

    @cached_property
    def _starts_control(self) -> np.ndarray:
        base, w = self._starts_nodes
        return np.asarray(_normal_partial(base, sc.STARTS_NOISE) @ w)

    def starts_effect(self, t: np.ndarray) -> np.ndarray:
        """Population early_starts effect per cell, shape ``t.shape + (24,)``.

        Evaluated directly for a few hundred t values, beyond that through a
        cubic Hermite interpolant with exact derivatives (see
        :func:`_direct_or_spline`).
        """
        t = np.asarray(t, dtype=float)
        treated = _direct_or_spline(
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
            excess = _tail_integral(functools.partial(_ctr_excess, lift=a), m[i], s, x0, +1)
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
            short = _tail_integral(functools.partial(_shortfall, drop=d), m[i], s, x0, -1)
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

    # -- per-cell population summaries ---------------------------------------
    def flip_prob(self) -> np.ndarray:
        """P(long-term and proxy effect have opposite signs), shape (24, 4)."""
        sd = self.exp_tau_sd
        below_long = _prob_below(self.long_root, sd)
        out = np.empty((sc.N_CELLS, len(sc.PROXIES)))
        out[:, 0] = np.abs(below_long - _prob_below(self.watch_root, sd))
        out[:, 1] = np.abs(below_long - _prob_below(self.starts_root, sd))
        # ctr's effect is always > 0: a flip is a negative long-term effect.
        out[:, 2] = below_long
        # rebuffer: > 0 on TV, exactly 0 elsewhere (never a flip).
        out[:, 3] = np.where(self.rebuffer_effect > 0, below_long, 0.0)
        return out

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and sd over new experiments of each cell's effect, each of shape (24, 5).

        Gauss–Hermite over exp_tau (and exp_bias for long_retained, the only
        effect that depends on it).
        """
        zt, wt = _hermite(_N_T_NODES)
        zb, wb = _hermite(_N_B_NODES) if self.exp_bias_sd > 0 else (np.zeros(1), np.ones(1))
        t = zt * self.exp_tau_sd
        long = self.long_effect(t[:, None], (zb * self.exp_bias_sd)[None, :])  # (nt, nb, 24)
        mean = np.empty((sc.N_CELLS, len(sc.METRICS)))
        sd = np.zeros((sc.N_CELLS, len(sc.METRICS)))
        w2 = np.outer(wt, wb)
        mean[:, 0] = np.einsum("tb,tbs->s", w2, long)
        sd[:, 0] = np.sqrt(np.einsum("tb,tbs->s", w2, (long - mean[:, 0]) ** 2))
        for j, eff in ((1, self.watch_effect(t)), (2, self.starts_effect(t))):
            mean[:, j] = wt @ eff
            sd[:, j] = np.sqrt(wt @ (eff - mean[:, j]) ** 2)
        mean[:, 3] = self.ctr_effect
        mean[:, 4] = self.rebuffer_effect
        return mean, sd

    def mix_moments(self, pi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and sd over new experiments of the mix-level effect Σ_s π_s θ_s, per metric."""
        zt, wt = _hermite(_N_T_NODES)
        zb, wb = _hermite(_N_B_NODES) if self.exp_bias_sd > 0 else (np.zeros(1), np.ones(1))
        t = zt * self.exp_tau_sd
        long = self.long_effect(t[:, None], (zb * self.exp_bias_sd)[None, :]) @ pi
        w2 = np.outer(wt, wb)
        mean = np.empty(len(sc.METRICS))
        sd = np.zeros(len(sc.METRICS))
        mean[0] = float(np.sum(w2 * long))
        sd[0] = math.sqrt(float(np.sum(w2 * (long - mean[0]) ** 2)))
        for j, eff in ((1, self.watch_effect(t) @ pi), (2, self.starts_effect(t) @ pi)):
            mean[j] = float(wt @ eff)
            sd[j] = math.sqrt(float(wt @ (eff - mean[j]) ** 2))
        mean[3] = float(self.ctr_effect @ pi)
        mean[4] = float(self.rebuffer_effect @ pi)
        return mean, sd

    # -- mix-level decision accuracy ------------------------------------------
    def _long_root(self, b: np.ndarray, pi: np.ndarray) -> np.ndarray:
        """exp_tau where the mix-level long-term effect Σ π_s τ_s(t, b) is 0, per b."""
        live = pi > 0

        def f(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            eff, slope = self._long(t, b, slope=True)
            return eff @ pi, slope @ pi

        # Every τ_s ≤ 0 at t = min root, ≥ 0 at t = max root: the mix root lies between.
        lo = np.full(b.shape, float(self.long_root[live].min()))
        hi = np.full(b.shape, float(self.long_root[live].max()))
        return _newton(f, lo, hi, float(-(self.long_shift @ pi)))

    def _proxy_root(self, k: int, pi: np.ndarray) -> float:
        """exp_tau where the mix-level proxy effect is 0; -inf if it is always > 0; nan if ≡ 0."""
        live = pi > 0
        if k >= 2:
            const = float((self.ctr_effect if k == 2 else self.rebuffer_effect) @ pi)
            return -math.inf if const > 0 else math.nan
        if k == 0:
            roots = self.watch_root
            s = math.sqrt(10.0**2 + 6.0**2 + sc.WATCH_NOISE**2)
            m = 25.0 + 10.0 * sc.ENG_MEAN + 6.0 * sc.SAT_MEAN

            def f(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                delta = sc.WATCH_TAU * (t[..., None] + sc.WATCH_SEG * sc.SEG_TAU) + (
                    self.cohort.watch_boost * self.member
                )
                eff = _normal_partial(m + delta, s) - _normal_partial(m, s)
                return eff @ pi, (sc.WATCH_TAU * special.ndtr((m + delta) / s)) @ pi
        else:
            roots = self.starts_root

            def f(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                eff = self._starts_direct(t) - self._starts_control
                return eff @ pi, self._starts_direct(t, derivative=True) @ pi

        lo = np.array([roots[live].min()])
        hi = np.array([roots[live].max()])
        return float(_newton(f, lo, hi, float(roots @ pi))[0])

    def decision_accuracy(self, pi: np.ndarray, scale: str = "probability") -> np.ndarray:
        """P(mix-level long-term and proxy effects have the same sign), per proxy.

        Parameters
        ----------
        pi : numpy.ndarray
            Cell probabilities (24, cell order).
        scale : {"probability", "logit"}
            "probability" (the truth): the long-term effect Σ π_s τ_s(t, b) on
            the probability scale. "logit": the sign of the mix-average logit
            shift Σ π_s (t + c_s) instead — an approximation, kept to compare.
        """
        sd_t, sd_b = self.exp_tau_sd, self.exp_bias_sd
        roots = [self._proxy_root(k, pi) for k in range(len(sc.PROXIES))]
        below = [float(_prob_below(r, sd_t)) if not math.isnan(r) else math.nan for r in roots]
        out = np.zeros(len(sc.PROXIES))
        if scale == "logit":
            r_long = float(-(self.long_shift @ pi))
            for k, below_k in enumerate(below):
                if not math.isnan(below_k):
                    out[k] = 1.0 - abs(float(_prob_below(r_long, sd_t)) - below_k)
            return out
        if scale != "probability":
            raise ParameterError(f"scale must be 'probability' or 'logit'; got {scale!r}.")
        if sd_b == 0:
            r0 = self._long_root(np.zeros(1), pi)
            for k, below_k in enumerate(below):
                if not math.isnan(below_k):
                    out[k] = 1.0 - abs(float(_prob_below(r0, sd_t)[0]) - below_k)
            return out
        # The integrand over b has a kink where the long-term root crosses a
        # proxy's root: split the b-integral there, then Gauss–Legendre per piece.
        breaks = list(np.array([-10.0, -6.0, -3.0, -1.5, 0.0, 1.5, 3.0, 6.0, 10.0]) * sd_b)
        grid = np.linspace(-10.0 * sd_b, 10.0 * sd_b, 801)
        for r_k in roots:
            if not math.isfinite(r_k):
                continue
            side = np.sign(self.long_effect(np.full(grid.shape, r_k), grid) @ pi)
            for i in np.flatnonzero(side[:-1] * side[1:] < 0):
                breaks.append(self._crossing(r_k, grid[i], grid[i + 1], pi))
        b, weight = _normal_nodes(np.sort(np.array(breaks)), sd_b)
        below_long = _prob_below(self._long_root(b, pi), sd_t)
        for k, below_k in enumerate(below):
            if not math.isnan(below_k):  # a proxy that never moves never agrees: 0
                out[k] = float((1.0 - np.abs(below_long - below_k)) @ weight)
        return out

    def _crossing(self, t: float, b_lo: float, b_hi: float, pi: np.ndarray) -> float:
        """exp_bias in [b_lo, b_hi] where the mix long-term effect at exp_tau = t changes sign."""
        f_lo = float(self.long_effect(np.array(t), np.array(b_lo)) @ pi)
        for _ in range(_MAX_ITER):
            mid = 0.5 * (b_lo + b_hi)
            f_mid = float(self.long_effect(np.array(t), np.array(mid)) @ pi)
            if (f_mid > 0) == (f_lo > 0):
                b_lo, f_lo = mid, f_mid
            else:
                b_hi = mid
            if b_hi - b_lo <= 4 * np.spacing(max(abs(b_lo), abs(b_hi))):
                break
        return 0.5 * (b_lo + b_hi)


def _ctr_excess(x: float, lift: float) -> float:
    """sigmoid(x) + lift - 1: by how much a lifted ctr would exceed 1."""
    return float(special.expit(x)) + lift - 1.0


def _shortfall(x: float, drop: float) -> float:
    """drop - sigmoid(x): by how much a lowered rebuffer rate would fall below 0."""
    return drop - float(special.expit(x))


def _tail_integral(
    f: Callable[[float], float], m: float, s: float, x0: float, direction: int
) -> float:
    """E[f(X) 1{X > x0}] (direction +1) or E[f(X) 1{X < x0}] (-1), X ~ N(m, s²)."""

    def integrand(x: float) -> float:
        return f(x) * math.exp(-0.5 * ((x - m) / s) ** 2) / (s * _SQRT_2PI)

    lo, hi = (x0, math.inf) if direction > 0 else (-math.inf, x0)
    value, _ = integrate.quad(integrand, lo, hi, epsabs=1e-15, epsrel=1e-12, limit=200)
    return float(value)


def _newton(
    f: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    lo: np.ndarray,
    hi: np.ndarray,
    start: float,
) -> np.ndarray:
    """Vectorized safeguarded Newton for the root of increasing ``f`` in each [lo, hi].

    ``f`` returns (value, derivative). Steps leaving the bracket are replaced by
    bisection, so it converges whenever f(lo) <= 0 <= f(hi).
    """
    lo = lo.astype(float).copy()
    hi = hi.astype(float).copy()
    x = np.clip(np.full(lo.shape, start), lo, hi)
    for _ in range(_MAX_ITER):
        val, slope = f(x)
        lo = np.where(val <= 0, x, lo)
        hi = np.where(val >= 0, x, hi)
        with np.errstate(divide="ignore", invalid="ignore"):
            step = x - val / slope
        ok = np.isfinite(step) & (step > lo) & (step < hi)
        new = np.where(val == 0, x, np.where(ok, step, 0.5 * (lo + hi)))
        tol = 4 * np.spacing(np.maximum(np.abs(x), 1e-300))
        if np.all((np.abs(new - x) <= tol) | (hi - lo <= tol)):
            return new
        x = new
    return x


def _normal_nodes(breaks: np.ndarray, sd: float) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights for E[g(b)], b ~ N(0, sd²): Gauss–Legendre on each piece.

    The mass outside the outermost breaks (±10 sd) is below 1e-22 and ignored.
    """
    x, w = np.polynomial.legendre.leggauss(_N_LEGENDRE)
    nodes, weights = [], []
    for a, c in itertools.pairwise(breaks):
        if c <= a:
            continue
        half = 0.5 * (c - a)
        b = a + half * (x + 1.0)
        nodes.append(b)
        weights.append(half * w * np.exp(-0.5 * (b / sd) ** 2) / (sd * _SQRT_2PI))
    return np.concatenate(nodes), np.concatenate(weights)


_DESCRIPTIONS = {
    "pop_effect_mean": "mean over new experiments of the cell's population effect",
    "pop_effect_sd": "sd over new experiments of the cell's population effect",
    "pop_flip_prob": "P(a new experiment's long-term and proxy effects in the cell have "
    "opposite signs)",
    "pop_mix_effect_mean": "mean over new experiments of the mix-level effect",
    "pop_mix_effect_sd": "sd over new experiments of the mix-level effect",
    "pop_decision_accuracy": "P(a new experiment's mix-level long-term and proxy effects "
    "have the same sign)",
    "mix_share": "the mix's probability of each segment cell",
}


def _cell_array(values: np.ndarray, name: str, extra: dict[str, list[str]]) -> xr.DataArray:
    coords: dict[str, list[str]] = {col: list(sc.LEVELS[col]) for col in sc.SEGMENT_COLUMNS}
    coords.update(extra)
    shape = sc.SHAPE + tuple(len(v) for v in extra.values())
    return xr.DataArray(
        values.reshape(shape), dims=(*sc.SEGMENT_COLUMNS, *extra), coords=coords, name=name
    )


def population_truth(mechanism: Mechanism, mix: SegmentMix) -> xr.Dataset:
    """Population-level truth of a new experiment for ``mix`` (see the module docstring).

    Parameters
    ----------
    mechanism : Mechanism
        The world's structure.
    mix : SegmentMix
        The population the new experiment runs on.

    Returns
    -------
    xarray.Dataset
        ``pop_effect_mean``, ``pop_effect_sd`` [region, device, tenure, metric];
        ``pop_flip_prob`` [region, device, tenure, proxy];
        ``pop_mix_effect_mean``, ``pop_mix_effect_sd`` [metric];
        ``pop_decision_accuracy`` [proxy]; ``mix_share`` [region, device, tenure].
    """
    pi = mix.cell_probabilities()
    mean, sd = mechanism.moments()
    mix_mean, mix_sd = mechanism.mix_moments(pi)
    metric = {dims.METRIC: list(sc.METRICS)}
    proxy = {dims.PROXY: list(sc.PROXIES)}
    out = xr.Dataset(
        {
            "pop_effect_mean": _cell_array(mean, "pop_effect_mean", metric),
            "pop_effect_sd": _cell_array(sd, "pop_effect_sd", metric),
            "pop_flip_prob": _cell_array(mechanism.flip_prob(), "pop_flip_prob", proxy),
            "pop_mix_effect_mean": xr.DataArray(mix_mean, dims=dims.METRIC, coords=metric),
            "pop_mix_effect_sd": xr.DataArray(mix_sd, dims=dims.METRIC, coords=metric),
            "pop_decision_accuracy": xr.DataArray(
                mechanism.decision_accuracy(pi), dims=dims.PROXY, coords=proxy
            ),
            "mix_share": mix.joint(),
        }
    )
    for name, text in _DESCRIPTIONS.items():
        out[name].attrs["description"] = text
    return out


def new_experiment_effects(
    mechanism: Mechanism, n: int, mix: SegmentMix, seed: int | None
) -> pd.DataFrame:
    """Exact population effects for ``n`` freshly drawn experiments (long format).

    One row per experiment and segment cell plus one mix-level row per
    experiment (region, device and tenure equal to ``"all"``).
    """
    rng = np.random.default_rng(seed)
    t = rng.normal(0.0, mechanism.exp_tau_sd, size=n)
    b = rng.normal(0.0, mechanism.exp_bias_sd, size=n)
    pi = mix.cell_probabilities()
    eff = np.empty((n, sc.N_CELLS, len(sc.METRICS)))
    for i in range(0, n, 4096):
        eff[i : i + 4096, :, 0] = mechanism.long_effect(t[i : i + 4096], b[i : i + 4096])
    eff[..., 1] = mechanism.watch_effect(t)
    eff[..., 2] = mechanism.starts_effect(t)
    eff[..., 3] = mechanism.ctr_effect
    eff[..., 4] = mechanism.rebuffer_effect
    mix_eff = np.einsum("nsm,s->nm", eff, pi)
    all_eff = np.concatenate([eff, mix_eff[:, None, :]], axis=1).reshape(-1, len(sc.METRICS))
    n_rows = sc.N_CELLS + 1
    all_code = np.array([sc.SHAPE[0], sc.SHAPE[1], sc.SHAPE[2]])  # "all" after the levels
    codes = [
        np.tile(np.append(cell_codes, all_code[i]).astype(np.int8), n)
        for i, cell_codes in enumerate((sc.CELL_REGION, sc.CELL_DEVICE, sc.CELL_TENURE))
    ]
    scope = np.tile(np.append(np.zeros(sc.N_CELLS, np.int8), np.int8(1)), n)
    columns: dict[str, object] = {
        "experiment": np.repeat(np.arange(n), n_rows),
        "exp_tau": np.repeat(t, n_rows),
        "exp_bias": np.repeat(b, n_rows),
        "scope": pd.Categorical.from_codes(scope, dtype=pd.CategoricalDtype(["segment", "mix"])),
    }
    for i, col in enumerate(sc.SEGMENT_COLUMNS):
        levels = [*sc.LEVELS[col], dims.ALL_SEGMENTS]
        columns[col] = pd.Categorical.from_codes(codes[i], dtype=pd.CategoricalDtype(levels))
    columns["mix_share"] = np.tile(np.append(pi, 1.0), n)
    frame = pd.DataFrame(columns)
    for j, metric in enumerate(sc.METRICS):
        frame[metric] = all_eff[:, j]
    return frame

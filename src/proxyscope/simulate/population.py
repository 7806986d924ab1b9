"""Population-level truth for a new experiment, from the world's structure (no Monte Carlo).

Each cell's population effect given the experiment's (t, b) is
:class:`~proxyscope.simulate.response.CellResponse`'s (the formulas are in
that module). Moments over (t, b) use Gauss–Hermite; sign-flip probabilities
are normal probabilities between the two roots in t; decision accuracy for a
mix finds the root in t of the mix-level effects and integrates over b
piecewise (Gauss–Legendre between the points where the two roots cross).

In a world whose watch proxy drifts (``StreamingConfig.watch_drift``), a new
experiment of period p moves watch minutes as if its exp_tau were
``u = t + gamma_p g`` (g ~ N(0, 1), independent): ``Mechanism.watch_gamma``.
Every watch quantity then integrates over u (sd ``watch_sd``), flips are
bivariate normal orthant probabilities of (t, u), and :meth:`Mechanism.slopes`
gives the population regression slope of the long-term effect on each proxy's
effect, the truth the per-period slopes of a time-aware model are judged by.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr
from scipy import special

from proxyscope import dims
from proxyscope.core.bvn import bvn_cdf
from proxyscope.errors import ParameterError
from proxyscope.simulate import scenario as sc
from proxyscope.simulate._quadrature import (
    MAX_ITER,
    hermite,
    newton,
    normal_nodes,
    normal_partial,
    prob_below,
)
from proxyscope.simulate.config import StreamingConfig
from proxyscope.simulate.mix import SegmentMix
from proxyscope.simulate.response import WATCH_MEAN, WATCH_SD, CellResponse

_N_T_NODES = 64  # over exp_tau
_N_B_NODES = 48  # over exp_bias


@dataclass(frozen=True)
class Mechanism(CellResponse):
    """The world's causal structure, per segment cell (everything but the mix and the draws).

    Parameters
    ----------
    cohort : FailureCohort
    exp_tau_sd, exp_bias_sd : float
    watch_gamma : float
        Sd of the watch-only push (exp_tau units) of a drifting world's period; 0: none.
    """

    exp_tau_sd: float
    exp_bias_sd: float
    watch_gamma: float = 0.0

    @classmethod
    def of(cls, config: StreamingConfig, period: int | None = None) -> Mechanism:
        """The mechanism of a world's settings, for new experiments of ``period`` (an index
        into the world's periods; default the latest). Without drift every period's is the
        same."""
        gamma = 0.0
        if config.periods is not None and config.watch_drift:
            p = config.periods - 1 if period is None else period
            gamma = float(config.watch_gammas()[p])
        return cls(config.cohort, config.exp_tau_sd, config.exp_bias_sd, gamma)

    @property
    def watch_sd(self) -> float:
        """Sd of what the watch response sees: exp_tau plus the watch-only push."""
        if not self.watch_gamma:
            return self.exp_tau_sd
        return math.hypot(self.exp_tau_sd, self.watch_gamma)

    def _watch_disagree(self, long_root: np.ndarray, watch_root: np.ndarray) -> np.ndarray:
        """P(sign of the long-term effect != sign of the watch effect) over new experiments,
        given the roots: t < long_root makes the first negative, u < watch_root the second."""
        sd = self.exp_tau_sd
        below_long = prob_below(long_root, sd)
        if not self.watch_gamma:
            return np.abs(below_long - prob_below(watch_root, sd))
        su = self.watch_sd
        both = bvn_cdf(np.asarray(long_root) / sd, np.asarray(watch_root) / su, np.asarray(sd / su))
        return np.asarray(below_long + prob_below(watch_root, su) - 2.0 * both)

    # -- per-cell population summaries ---------------------------------------
    def flip_prob(self) -> np.ndarray:
        """P(long-term and proxy effect have opposite signs), shape (24, 4)."""
        sd = self.exp_tau_sd
        below_long = prob_below(self.long_root, sd)
        out = np.empty((sc.N_CELLS, len(sc.PROXIES)))
        out[:, 0] = self._watch_disagree(self.long_root, self.watch_root)
        out[:, 1] = np.abs(below_long - prob_below(self.starts_root, sd))
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
        zt, wt = hermite(_N_T_NODES)
        zb, wb = hermite(_N_B_NODES) if self.exp_bias_sd > 0 else (np.zeros(1), np.ones(1))
        t = zt * self.exp_tau_sd
        long = self.long_effect(t[:, None], (zb * self.exp_bias_sd)[None, :])  # (nt, nb, 24)
        mean = np.empty((sc.N_CELLS, len(sc.METRICS)))
        sd = np.zeros((sc.N_CELLS, len(sc.METRICS)))
        w2 = np.outer(wt, wb)
        mean[:, 0] = np.einsum("tb,tbs->s", w2, long)
        sd[:, 0] = np.sqrt(np.einsum("tb,tbs->s", w2, (long - mean[:, 0]) ** 2))
        watch = self.watch_effect(zt * self.watch_sd)
        for j, eff in ((1, watch), (2, self.starts_effect(t))):
            mean[:, j] = wt @ eff
            sd[:, j] = np.sqrt(wt @ (eff - mean[:, j]) ** 2)
        mean[:, 3] = self.ctr_effect
        mean[:, 4] = self.rebuffer_effect
        return mean, sd

    def mix_moments(self, pi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and sd over new experiments of the mix-level effect Σ_s π_s θ_s, per metric."""
        zt, wt = hermite(_N_T_NODES)
        zb, wb = hermite(_N_B_NODES) if self.exp_bias_sd > 0 else (np.zeros(1), np.ones(1))
        t = zt * self.exp_tau_sd
        long = self.long_effect(t[:, None], (zb * self.exp_bias_sd)[None, :]) @ pi
        w2 = np.outer(wt, wb)
        mean = np.empty(len(sc.METRICS))
        sd = np.zeros(len(sc.METRICS))
        mean[0] = float(np.sum(w2 * long))
        sd[0] = math.sqrt(float(np.sum(w2 * (long - mean[0]) ** 2)))
        watch = self.watch_effect(zt * self.watch_sd) @ pi
        for j, eff in ((1, watch), (2, self.starts_effect(t) @ pi)):
            mean[j] = float(wt @ eff)
            sd[j] = math.sqrt(float(wt @ (eff - mean[j]) ** 2))
        mean[3] = float(self.ctr_effect @ pi)
        mean[4] = float(self.rebuffer_effect @ pi)
        return mean, sd

    def slopes(
        self, pi: np.ndarray, watch_gammas: Sequence[float] | np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Population regression slope of the long-term effect on each proxy's effect.

        Over new experiments: Cov(τ, θ_k) / Var(θ_k), per cell and for the
        mix-level effects Σ_s π_s (·); NaN for early_ctr and rebuffer_rate,
        whose effects do not vary across experiments. Exact up to quadrature
        error: Gauss–Hermite over exp_tau (and exp_bias), and the watch push
        integrated in closed form (it is independent of τ, so Cov(τ, θ) =
        Cov(τ, E[θ | t])).

        Parameters
        ----------
        pi : numpy.ndarray
            Cell probabilities (24, cell order) of the mix.
        watch_gammas : sequence of float, optional
            Sds of the watch-only push to evaluate at (e.g. one per period);
            default this mechanism's own.

        Returns
        -------
        (numpy.ndarray, numpy.ndarray)
            Shapes (G, 24, 4) and (G, 4), one row per push sd.
        """
        gammas = [self.watch_gamma] if watch_gammas is None else [float(g) for g in watch_gammas]
        zt, wt = hermite(_N_T_NODES)
        zb, wb = hermite(_N_B_NODES) if self.exp_bias_sd > 0 else (np.zeros(1), np.ones(1))
        t = zt * self.exp_tau_sd
        long = np.einsum("b,tbs->ts", wb, self.long_effect(t[:, None], (zb * self.exp_bias_sd)))
        starts = self.starts_effect(t)
        cell = np.full((len(gammas), sc.N_CELLS, len(sc.PROXIES)), np.nan)
        mix = np.full((len(gammas), len(sc.PROXIES)), np.nan)
        cell[:, :, 1] = _slope(wt, long, starts, starts)
        mix[:, 1] = _slope(wt, long @ pi, starts @ pi, starts @ pi)
        for i, gamma in enumerate(gammas):
            watch_sd = math.hypot(self.exp_tau_sd, gamma) if gamma else self.exp_tau_sd
            given_t = self.watch_effect(t, spread=gamma)  # E[θ | t]
            own = self.watch_effect(zt * watch_sd)  # θ over its own distribution
            cell[i, :, 0] = _slope(wt, long, given_t, own)
            mix[i, 0] = _slope(wt, long @ pi, given_t @ pi, own @ pi)
        return cell, mix

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
        return newton(f, lo, hi, float(-(self.long_shift @ pi)))

    def _proxy_root(self, k: int, pi: np.ndarray) -> float:
        """exp_tau where the mix-level proxy effect is 0; -inf if it is always > 0; nan if ≡ 0."""
        live = pi > 0
        if k >= 2:
            const = float((self.ctr_effect if k == 2 else self.rebuffer_effect) @ pi)
            return -math.inf if const > 0 else math.nan
        if k == 0:
            roots = self.watch_root
            s, m = WATCH_SD, WATCH_MEAN

            def f(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                delta = sc.WATCH_TAU * (t[..., None] + sc.WATCH_SEG * sc.SEG_TAU) + (
                    self.cohort.watch_boost * self.member
                )
                eff = normal_partial(m + delta, s) - normal_partial(m, s)
                return eff @ pi, (sc.WATCH_TAU * special.ndtr((m + delta) / s)) @ pi
        else:
            roots = self.starts_root

            def f(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                eff = self._starts_direct(t) - self._starts_control
                return eff @ pi, self._starts_direct(t, derivative=True) @ pi

        lo = np.array([roots[live].min()])
        hi = np.array([roots[live].max()])
        return float(newton(f, lo, hi, float(roots @ pi))[0])

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
        below = [float(prob_below(r, sd_t)) if not math.isnan(r) else math.nan for r in roots]

        def agree(k: int, long_root: np.ndarray) -> np.ndarray:
            """P(same sign) for proxy k given the long-term root(s) in exp_tau."""
            if k == 0:
                return 1.0 - self._watch_disagree(long_root, np.asarray(roots[0]))
            return 1.0 - np.abs(prob_below(long_root, sd_t) - below[k])

        out = np.zeros(len(sc.PROXIES))
        live = [k for k, below_k in enumerate(below) if not math.isnan(below_k)]
        if scale == "logit":
            r_long = np.asarray(float(-(self.long_shift @ pi)))
            for k in live:
                out[k] = float(agree(k, r_long))
            return out
        if scale != "probability":
            raise ParameterError(f"scale must be 'probability' or 'logit'; got {scale!r}.")
        if sd_b == 0:
            r0 = self._long_root(np.zeros(1), pi)
            for k in live:
                out[k] = float(agree(k, r0)[0])
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
        b, weight = normal_nodes(np.sort(np.array(breaks)), sd_b)
        r_long_b = self._long_root(b, pi)
        for k in live:  # a proxy that never moves never agrees: 0
            out[k] = float(agree(k, r_long_b) @ weight)
        return out

    def _crossing(self, t: float, b_lo: float, b_hi: float, pi: np.ndarray) -> float:
        """exp_bias in [b_lo, b_hi] where the mix long-term effect at exp_tau = t changes sign."""
        f_lo = float(self.long_effect(np.array(t), np.array(b_lo)) @ pi)
        for _ in range(MAX_ITER):
            mid = 0.5 * (b_lo + b_hi)
            f_mid = float(self.long_effect(np.array(t), np.array(mid)) @ pi)
            if (f_mid > 0) == (f_lo > 0):
                b_lo, f_lo = mid, f_mid
            else:
                b_hi = mid
            if b_hi - b_lo <= 4 * np.spacing(max(abs(b_lo), abs(b_hi))):
                break
        return 0.5 * (b_lo + b_hi)


def _slope(w: np.ndarray, y: np.ndarray, x_given_t: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Cov(y, x) / Var(x) from quadrature values: y and E[x | t] at the same t nodes, x at
    nodes of its own distribution (weights ``w`` on both)."""
    mean_y, mean_x = w @ y, w @ x
    return np.asarray((w @ ((y - mean_y) * (x_given_t - mean_x))) / (w @ (x - mean_x) ** 2))


DESCRIPTIONS = {
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


def cell_array(values: np.ndarray, name: str, extra: dict[str, list[str]]) -> xr.DataArray:
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
            "pop_effect_mean": cell_array(mean, "pop_effect_mean", metric),
            "pop_effect_sd": cell_array(sd, "pop_effect_sd", metric),
            "pop_flip_prob": cell_array(mechanism.flip_prob(), "pop_flip_prob", proxy),
            "pop_mix_effect_mean": xr.DataArray(mix_mean, dims=dims.METRIC, coords=metric),
            "pop_mix_effect_sd": xr.DataArray(mix_sd, dims=dims.METRIC, coords=metric),
            "pop_decision_accuracy": xr.DataArray(
                mechanism.decision_accuracy(pi), dims=dims.PROXY, coords=proxy
            ),
            "mix_share": mix.joint(),
        }
    )
    for name, text in DESCRIPTIONS.items():
        out[name].attrs["description"] = text
    return out


def new_experiment_effects(
    mechanism: Mechanism, n: int, mix: SegmentMix, seed: int | None
) -> pd.DataFrame:
    """Exact population effects for ``n`` freshly drawn experiments (long format).

    One row per experiment and segment cell plus one mix-level row per
    experiment (region, device and tenure equal to ``"all"``); with a
    watch-only push (``mechanism.watch_gamma > 0``) also its draw, ``watch_push``.
    """
    rng = np.random.default_rng(seed)
    t = rng.normal(0.0, mechanism.exp_tau_sd, size=n)
    b = rng.normal(0.0, mechanism.exp_bias_sd, size=n)
    # A drifting world's watch-only push, drawn after (t, b) so they do not move.
    push = mechanism.watch_gamma * rng.standard_normal(n) if mechanism.watch_gamma else None
    pi = mix.cell_probabilities()
    eff = np.empty((n, sc.N_CELLS, len(sc.METRICS)))
    for i in range(0, n, 4096):
        eff[i : i + 4096, :, 0] = mechanism.long_effect(t[i : i + 4096], b[i : i + 4096])
    eff[..., 1] = mechanism.watch_effect(t if push is None else t + push)
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
        **({} if push is None else {"watch_push": np.repeat(push, n_rows)}),
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

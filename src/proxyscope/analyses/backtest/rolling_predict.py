"""Predictions of a rolling-origin backtest: both methods, and the predictive interval.

Per judged experiment and fit: the adaptive weights' prediction (the backtest's
own, :func:`proxyscope.analyses.backtest.predict._one_fold`) and the posterior
predictive mean and equal-tailed interval of its long-term effect given its
readings, for a drifting fit with the relation carried past the fit's latest
period by the walk (:func:`proxyscope.model.periods.forecast_shift`; the z's are
seeded by the fit's seed and the horizon, so the same fit gives the same numbers).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.special import ndtr

from proxyscope.analyses.backtest.mix import MixEffects, mix_effects
from proxyscope.analyses.backtest.predict import _one_fold
from proxyscope.errors import ConvergenceWarning

if TYPE_CHECKING:
    from proxyscope.data.cells import CellEffects
    from proxyscope.model.fit import ProxyFit
    from proxyscope.model.segments import SegmentDraws

#: Trees of the random forest that the backtest's fold also fits; its predictions
#: are not scored here, so one tree keeps the cost away.
_UNSCORED_TREES = 1
#: Judged experiments per block of the per-draw arrays (bounds their memory).
_BLOCK = 256


def conditional_moments(
    seg: SegmentDraws, shares: np.ndarray, mix: MixEffects, observed: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Per draw, the mean and variance of each experiment's long-term effect given its
    readings: (N, E) each.

    The historical mix's (tau, theta) moments per draw (:meth:`SegmentDraws.mix_moments`)
    conditioned on the readings x, whose sampling covariance S is added to theta's:
    mean = m_tau + c' (Sigma + S_xx)^-1 (x - m), var = v_tau - c' (Sigma + S_xx)^-1 c,
    with c = Cov(tau, theta). ``observed``: of the observed long-term effect instead
    (tau plus its sampling error: v_tau + S_yy, and c + S_xy, the errors' covariance).
    """
    mom = seg.mix_moments(shares)
    cov = mix.noise_cov
    c = mom["cov_tau_theta"][:, None] + (cov[None, :, 0, 1:] if observed else 0.0)  # (N, E, K)
    v = mom["cov_theta"][:, None] + cov[None, :, 1:, 1:]  # (N, E, K, K)
    resid = mix.proxies[None] - mom["mean_theta"][:, None]  # (N, E, K)
    c = np.broadcast_to(c, resid.shape)
    sol = np.linalg.solve(v, np.stack([resid, c], axis=-1))  # (N, E, K, 2)
    mean = mom["mean_tau"][:, None] + np.einsum("nek,nek->ne", c, sol[..., 0])
    var = mom["var_tau"][:, None] + (cov[None, :, 0, 0] if observed else 0.0)
    var = var - np.einsum("nek,nek->ne", c, sol[..., 1])
    return mean, np.maximum(var, 0.0)


def mixture_interval(mean: np.ndarray, var: np.ndarray, ci: float) -> tuple[np.ndarray, np.ndarray]:
    """Equal-tailed ``ci`` interval of each column's equal-weight mixture of N(mean_n, var_n)
    over draws n (rows), by bisection on the mixture's CDF: (E,) lower and upper ends."""
    sd = np.sqrt(np.maximum(var, 1e-300))
    ends = []
    for p in ((1 - ci) / 2, (1 + ci) / 2):
        lo = np.min(mean - 40 * sd, axis=0)
        hi = np.max(mean + 40 * sd, axis=0)
        for _ in range(80):
            mid = 0.5 * (lo + hi)
            below = ndtr((mid - mean) / sd).mean(axis=0) < p
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
        ends.append(0.5 * (lo + hi))
    return ends[0], ends[1]


def predict_experiments(
    fit: ProxyFit,
    train: CellEffects,
    test: CellEffects,
    horizon: np.ndarray,
    ci: float,
    observed: bool,
) -> pd.DataFrame:
    """Both methods' predictions of ``test``'s experiments (in their order) by ``fit``
    (trained on ``train``), and the posterior predictive interval.

    ``horizon``: per experiment of ``test``, periods after the fit's latest one
    (the drifting fit's walk is carried that far; a static fit ignores it).
    ``observed``: the interval is for the observed long-term effect, else the true one.
    """
    from proxyscope.analyses.implied import resolve_mix
    from proxyscope.model.periods import forecast_shift
    from proxyscope.model.segments import analysis_seed, segments_for, shifted

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # reported once, by the caller
        fold, _ = _one_fold(fit, train, test, "experiment", _UNSCORED_TREES, 0, "raw")
        combos, shares = resolve_mix(fit, None)
        latest = segments_for(fit, combos)
    mix = mix_effects(test)
    seed = analysis_seed(fit, None)
    mean = np.empty(len(mix.experiments))
    lower, upper = np.empty_like(mean), np.empty_like(mean)
    # A static fit has no walk to carry: one group.
    steps = np.asarray(horizon) if fit.info.periods else np.zeros(len(mix.experiments), int)
    for h in np.unique(steps):
        seg = shifted(latest, forecast_shift(fit, int(h), np.random.default_rng([seed, int(h)])))
        same = np.flatnonzero(steps == h)
        for lo in range(0, len(same), _BLOCK):
            rows = same[lo : lo + _BLOCK]
            part = MixEffects(mix.experiments[rows], mix.effect[rows], mix.noise_cov[rows])
            m, v = conditional_moments(seg, shares, part, observed=False)
            mean[rows] = m.mean(axis=0)
            if observed:
                m, v = conditional_moments(seg, shares, part, observed=True)
            lower[rows], upper[rows] = mixture_interval(m, v, ci)
    adaptive = fold.set_index("experiment")["adaptive"].reindex(mix.experiments).to_numpy()
    return pd.DataFrame(
        {
            "experiment": mix.experiments,
            "observed": mix.outcome,
            "adaptive": adaptive,
            "posterior_predictive": mean,
            "lower": lower,
            "upper": upper,
        }
    )

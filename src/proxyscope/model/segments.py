"""A fit's segment parameters per draw, and the joint distribution they imply for a new experiment.

For segment s (DESIGN §4), a new experiment's true long-term and proxy
effects are jointly Gaussian given the parameters:

    (tau_s, theta_s) ~ N((nu_s, mu_s), [[b' W b + omega0^2 + sigma_s^2, (W b)'], [W b, W]]),
    W = Omega_E + Omega_C, b = beta_s,

with omega0 the sd of eta0, the experiment's long-term effect that no proxy
carries (0 for a model without it). For a segment mix pi (shares summing to
one) the experiment effects (eta0, eta) are shared by all segments while the
within-cell deviations are independent, so

    mean       = (sum pi_s nu_s, sum pi_s mu_s)
    Var theta  = Omega_E + sum pi_s^2 Omega_C
    Cov(tau, theta) = bbar' Omega_E + sum pi_s^2 beta_s' Omega_C,   bbar = sum pi_s beta_s
    Var tau    = bbar' Omega_E bbar + omega0^2 + sum pi_s^2 (beta_s' Omega_C beta_s + sigma_s^2).

Everything is in original units and vectorised over posterior draws. The
analyses (:mod:`proxyscope.analyses`) and the fit's own summary read these;
:func:`segments_for` gives them for segment combinations the data never had,
from the pooled structure.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from proxyscope import dims
from proxyscope.core.draws import flat
from proxyscope.errors import ParameterError
from proxyscope.model.periods import PeriodShift, period_shift

if TYPE_CHECKING:
    from proxyscope.model.fit import ProxyFit


@dataclasses.dataclass(frozen=True)
class SegmentDraws:
    """Segment parameters per draw (original units) for a list of segments.

    nu (N, S), mu (N, S, K), beta (N, S, K), sigma2 (N, S), omega_e and
    omega_c (N, K, K), omega_y (N,) the variance of the experiments' long-term
    effect that no proxy carries; ``labels`` name the S segments and ``extrapolated``
    marks segment combinations not seen in the data (predicted from the
    pooled main effects and a fresh interaction).
    """

    labels: tuple[str, ...]
    nu: np.ndarray
    mu: np.ndarray
    beta: np.ndarray
    sigma2: np.ndarray
    omega_e: np.ndarray
    omega_c: np.ndarray
    omega_y: np.ndarray
    extrapolated: np.ndarray

    @property
    def n_draws(self) -> int:
        return self.nu.shape[0]

    @property
    def omega(self) -> np.ndarray:
        """Omega_E + Omega_C: spread of a segment's true proxy effects across experiments."""
        return self.omega_e + self.omega_c

    def segment_moments(self) -> dict[str, np.ndarray]:
        """Per draw and segment: means and covariances of (tau_s, theta_s)."""
        w = self.omega
        wb = np.einsum("nkl,nsl->nsk", w, self.beta)
        var_tau = np.einsum("nsk,nsk->ns", self.beta, wb) + self.sigma2 + self.omega_y[:, None]
        return {
            "mean_tau": self.nu,
            "mean_theta": self.mu,
            "var_tau": var_tau,
            "cov_tau_theta": wb,
            "cov_theta": np.broadcast_to(w[:, None], (*self.mu.shape, self.mu.shape[-1])),
        }

    def mix_moments(self, shares: np.ndarray) -> dict[str, np.ndarray]:
        """Per draw: means and covariances of the mix-level (tau_pi, theta_pi)."""
        pi = np.asarray(shares, dtype=float)
        pi2 = pi**2
        bbar = np.einsum("s,nsk->nk", pi, self.beta)
        oe, oc = self.omega_e, self.omega_c
        cov_theta = oe + pi2.sum() * oc
        cov_tau_theta = np.einsum("nk,nkl->nl", bbar, oe) + np.einsum(
            "s,nsk,nkl->nl", pi2, self.beta, oc
        )
        var_tau = (
            np.einsum("nk,nkl,nl->n", bbar, oe, bbar)
            + np.einsum("s,nsk,nkl,nsl->n", pi2, self.beta, oc, self.beta)
            + self.sigma2 @ pi2
            + self.omega_y
        )
        return {
            "mean_tau": self.nu @ pi,
            "mean_theta": np.einsum("s,nsk->nk", pi, self.mu),
            "var_tau": var_tau,
            "cov_tau_theta": cov_tau_theta,
            "cov_theta": cov_theta,
        }


def shifted(draws: SegmentDraws, shift: PeriodShift | None) -> SegmentDraws:
    """``draws`` moved to another period of a fit with time (every segment alike)."""
    if shift is None:
        return draws
    return dataclasses.replace(
        draws,
        nu=draws.nu + shift.nu[:, None],
        mu=draws.mu + shift.mu[:, None],
        beta=draws.beta + shift.beta[:, None],
        sigma2=draws.sigma2 * np.exp(2.0 * shift.log_sigma)[:, None],
    )


def fitted_segments(fit: ProxyFit, period: str | None = None) -> SegmentDraws:
    """The fit's own segments, per draw; for a fit with time, in ``period``
    (default the latest; :func:`proxyscope.model.periods.resolve_period`)."""
    post = fit.posterior
    labels = tuple(fit.structure.labels)
    draws = SegmentDraws(
        labels=labels,
        nu=flat(post["nu"]),
        mu=flat(post["mu"].transpose(dims.CHAIN, dims.DRAW, dims.SEGMENT, dims.PROXY)),
        beta=flat(post["beta"].transpose(dims.CHAIN, dims.DRAW, dims.SEGMENT, dims.PROXY)),
        sigma2=flat(post["sigma"]) ** 2,
        omega_e=flat(post["omega_e"]),
        omega_c=flat(post["omega_c"]),
        omega_y=outcome_variance(fit),
        extrapolated=np.zeros(len(labels), dtype=bool),
    )
    return shifted(draws, period_shift(fit, period))


def outcome_variance(fit: ProxyFit) -> np.ndarray:
    """Per draw, the variance of eta0 (the experiments' long-term effect that no
    proxy carries; original units); zeros for a model without it."""
    post = fit.posterior
    if "sd_e_outcome" in post:
        return flat(post["sd_e_outcome"]) ** 2
    return np.zeros(flat(post["sigma"]).shape[0])


def historical_mix(fit: ProxyFit) -> pd.Series:
    """Share of users in each of the fit's segments (treatment and control arms)."""
    eff = fit.effects
    users = eff.users()
    labels = pd.Series(eff.segment_label)
    shares = pd.Series(users, index=labels).groupby(level=0).sum()
    shares = shares.reindex(list(fit.structure.labels)).fillna(0.0)
    return shares / shares.sum()


def analysis_seed(fit: ProxyFit, random_seed: int | None) -> int:
    """The seed of an analysis's random draws: ``random_seed``, or the fit's own.

    Defaulting to the seed the fit was sampled with makes every analysis of
    one fit reproducible: asking twice gives the same numbers.
    """
    if random_seed is not None:
        return int(random_seed)
    return int(fit.sampler.get("random_seed", 0))


def segments_for(
    fit: ProxyFit,
    combos: pd.DataFrame,
    random_seed: int | None = None,
    period: str | None = None,
) -> SegmentDraws:
    """Segment parameters for arbitrary combinations of segment-column levels.

    Combinations seen in the data use their posterior draws; unseen ones are
    predicted from the pooled structure: global + main effects + a fresh
    interaction drawn from the posterior interaction scale (additive), global
    + fresh interaction (exchangeable), or the global value (complete). With
    ``pooling="none"`` unseen combinations cannot be predicted. The fresh
    interactions are drawn with :func:`analysis_seed` (the fit's seed unless
    ``random_seed`` is given), so the same call gives the same draws. For a
    fit with time, every combination is read in ``period`` (default the latest).
    """
    structure = fit.structure
    base = fitted_segments(fit)
    if not structure.columns:
        return shifted(base, period_shift(fit, period))
    codes = structure.level_codes(combos)
    for j, col in enumerate(structure.columns):
        bad = codes[:, j] < 0
        if bad.any():
            unknown = sorted(set(combos.loc[bad, col].astype(str)))
            raise ParameterError(
                f"Segment column {col!r} has level(s) {unknown} that the fit never saw; known "
                f"levels: {list(structure.levels[j])}. A level the model has no data on cannot "
                "be predicted."
            )
    seen = structure.fitted_segment(codes)
    labels = tuple(
        structure.label_of([str(v) for v in combos.iloc[i][list(structure.columns)]])
        for i in range(len(combos))
    )
    n = base.n_draws
    k = base.mu.shape[-1]
    nu = np.empty((n, len(combos)))
    mu = np.empty((n, len(combos), k))
    beta = np.empty((n, len(combos), k))
    sigma2 = np.empty((n, len(combos)))
    rng = np.random.default_rng(analysis_seed(fit, random_seed))
    extrapolated = np.array([i is None for i in seen])
    if extrapolated.any() and fit.pooling == "none":
        missing = [labels[i] for i in np.flatnonzero(extrapolated)]
        raise ParameterError(
            f"Segment combinations {missing[:5]} were not in the data and pooling='none' "
            "cannot predict them; use additive or exchangeable pooling."
        )
    post = fit.posterior
    for row, idx in enumerate(seen):
        if idx is not None:
            nu[:, row] = base.nu[:, idx]
            mu[:, row] = base.mu[:, idx]
            beta[:, row] = base.beta[:, idx]
            sigma2[:, row] = base.sigma2[:, idx]
            continue
        levels = codes[row]
        nu_r = flat(post["nu_global"]).copy()
        mu_r = flat(post["mu_global"]).copy()
        beta_r = flat(post["beta_global"]).copy()
        logs_r = flat(post["log_sigma_global"]).copy()
        if fit.pooling == "additive":
            for j, col in enumerate(structure.columns):
                lev = structure.levels[j][levels[j]]
                nu_r += flat(post[f"nu_main_{col}"].sel({col: lev}))
                mu_r += flat(post[f"mu_main_{col}"].sel({col: lev}))
                beta_r += flat(post[f"beta_main_{col}"].sel({col: lev}))
                logs_r += flat(post[f"log_sigma_main_{col}"].sel({col: lev}))
        if "nu_interaction_sd" in post:
            nu_r += rng.standard_normal(n) * flat(post["nu_interaction_sd"])
            mu_r += rng.standard_normal((n, k)) * flat(post["mu_interaction_sd"])
            beta_r += rng.standard_normal((n, k)) * flat(post["beta_interaction_sd"])
            logs_r += rng.standard_normal(n) * flat(post["log_sigma_interaction_sd"])
        nu[:, row], mu[:, row], beta[:, row] = nu_r, mu_r, beta_r
        sigma2[:, row] = np.exp(2.0 * logs_r)
    draws = SegmentDraws(
        labels=labels,
        nu=nu,
        mu=mu,
        beta=beta,
        sigma2=sigma2,
        omega_e=base.omega_e,
        omega_c=base.omega_c,
        omega_y=base.omega_y,
        extrapolated=extrapolated,
    )
    return shifted(draws, period_shift(fit, period))

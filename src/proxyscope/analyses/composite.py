"""The composite proxy: adaptive weights and the surrogate index they describe.

Per posterior draw the adaptive weight of proxy k is its share of the
movement of the long-term effect that the proxies carry (DESIGN §4):

    w_k = |beta_k| sd(theta_k) / sum_j |beta_j| sd(theta_j),

with beta the slopes (the mix average of the segment slopes) and sd(theta_k)
the spread of proxy k's true effect across experiments (sqrt of the diagonal
of Omega_E + Omega_C).

The composite proxy is the surrogate index: the long-term effect predicted
from a new experiment's proxy effects, I(theta) = a + b' theta, with
b = Var(theta)^-1 Cov(theta, tau) and a = E[tau] - b' E[theta] for the mix.
Its coefficients are FIXED at their posterior means — the index a team would
deploy — so its decision accuracy is judged per draw against each draw's
truth, not re-fitted per draw. It is in units of the long-term effect; the
intercept absorbs proxies whose effect is a constant shift (which a sum of
standardised proxies would let dominate).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from proxyscope.model.segments import SegmentDraws


def weight_draws(beta: np.ndarray, omega: np.ndarray) -> np.ndarray:
    """Per draw weights (N, ..., K) from slopes (N, ..., K) and Omega (N, K, K)."""
    sd = np.sqrt(np.einsum("nkk->nk", omega))
    extra = beta.ndim - 2
    sd = sd.reshape(sd.shape[0], *([1] * extra), sd.shape[1])
    contrib = np.abs(beta) * sd
    total = contrib.sum(axis=-1, keepdims=True)
    return np.asarray(np.divide(contrib, total, out=np.zeros_like(contrib), where=total > 0))


@dataclasses.dataclass(frozen=True)
class Composite:
    """A fixed surrogate index I(theta) = intercept + coef' theta (long-term units)."""

    intercept: float
    coef: np.ndarray  # (K,)

    def value(self, theta: np.ndarray) -> np.ndarray:
        return np.asarray(self.intercept + np.asarray(theta) @ self.coef)


def index_coefficients(moments: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per draw regression of tau on theta: intercepts (N,) and slopes (N, K)."""
    b = np.linalg.solve(moments["cov_theta"], moments["cov_tau_theta"][..., None])[..., 0]
    a = moments["mean_tau"] - np.einsum("...k,...k->...", b, moments["mean_theta"])
    return a, b


def mix_composite(seg: SegmentDraws, shares: np.ndarray) -> Composite:
    """The surrogate index for a segment mix, coefficients at their posterior means."""
    a, b = index_coefficients(seg.mix_moments(shares))
    return Composite(intercept=float(a.mean()), coef=b.mean(axis=0))


def project(
    moments: dict[str, np.ndarray], comp: Composite
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and variance of I(theta) and Cov(tau, I), per draw (and segment)."""
    coef = comp.coef
    mean = comp.intercept + moments["mean_theta"] @ coef
    var = np.einsum("k,...kl,l->...", coef, moments["cov_theta"], coef)
    cov = moments["cov_tau_theta"] @ coef
    return mean, var, cov

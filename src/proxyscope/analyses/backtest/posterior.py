"""The fitted model's posterior of the historical mix, applied to held-out readings.

Per draw, the moments of a new experiment's true mix-level effects; from them
the denoised readings (what ``adaptive`` reads) and the posterior predictive
mean of the long-term effect (the ``posterior_predictive`` method).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from proxyscope.analyses.backtest.mix import MixEffects

if TYPE_CHECKING:
    from proxyscope.model.segments import SegmentDraws

#: Posterior draws used for the posterior predictive mean (thinned evenly).
MAX_PREDICTIVE_DRAWS = 1000


@dataclasses.dataclass(frozen=True)
class PosteriorMix:
    """The fit's posterior moments of the historical mix, thinned (internal).

    ``mean_tau`` (N,), ``mean_theta`` (N, K), ``cov_tau_theta`` (N, K) and
    ``cov_theta`` (N, K, K): per draw, the mean and covariance of a new
    experiment's true mix-level long-term and proxy effects.
    """

    mean_tau: np.ndarray
    mean_theta: np.ndarray
    cov_tau_theta: np.ndarray
    cov_theta: np.ndarray

    @classmethod
    def of(cls, seg: SegmentDraws, shares: np.ndarray) -> PosteriorMix:
        """From segment draws and the mix's shares, thinned to MAX_PREDICTIVE_DRAWS."""
        mom = seg.mix_moments(shares)
        n = len(mom["mean_tau"])
        take = np.unique(np.linspace(0, n - 1, min(n, MAX_PREDICTIVE_DRAWS)).astype(int))
        return cls(
            mean_tau=mom["mean_tau"][take],
            mean_theta=mom["mean_theta"][take],
            cov_tau_theta=mom["cov_tau_theta"][take],
            cov_theta=mom["cov_theta"][take],
        )

    @property
    def centre(self) -> np.ndarray:
        """Posterior mean of the true proxy effects' mean (K,)."""
        return np.asarray(self.mean_theta.mean(axis=0))

    @property
    def spread(self) -> np.ndarray:
        """Posterior mean of sd(theta_k), the spread the adaptive weights use (K,)."""
        return np.asarray(np.sqrt(np.einsum("nkk->nk", self.cov_theta)).mean(axis=0))

    def _conditional(self, mix: MixEffects, rhs: np.ndarray) -> np.ndarray:
        """Per draw (Sigma + S_e)^-1 (x_e - m) contracted with ``rhs`` (N, K, J): (N, E, J)."""
        out = np.empty((len(self.mean_tau), len(mix.experiments), rhs.shape[-1]))
        for lo in range(0, len(mix.experiments), 256):
            part = slice(lo, lo + 256)
            v = self.cov_theta[:, None] + mix.noise_cov[None, part, 1:, 1:]  # (N, e, K, K)
            resid = mix.proxies[None, part] - self.mean_theta[:, None]  # (N, e, K)
            solved = np.linalg.solve(v, resid[..., None])[..., 0]
            out[:, part] = np.einsum("nek,nkj->nej", solved, rhs)
        return out

    def denoise(self, mix: MixEffects) -> np.ndarray:
        """Posterior mean of each experiment's true mix-level proxy effects (E, K).

        Per draw E[theta | x] = m + Sigma (Sigma + S_e)^-1 (x - m), with S_e the
        readings' sampling covariance; averaged over draws.
        """
        cond = self.mean_theta[:, None] + self._conditional(mix, self.cov_theta)
        return np.asarray(cond.mean(axis=0))

    def predictive_mean(self, mix: MixEffects) -> np.ndarray:
        """Posterior predictive mean of each experiment's long-term effect given its readings."""
        gain = self._conditional(mix, self.cov_tau_theta[..., None])[..., 0]
        cond = self.mean_tau[:, None] + gain
        return np.asarray(cond.mean(axis=0))

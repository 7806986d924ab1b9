"""Mix-level effects: each experiment's user-weighted average of its cell effects.

What every method of the backtest reads and predicts: per experiment, the
average of its cell effects over its own mix of users, for the long-term
outcome and every proxy, with the sampling covariance of that average.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from proxyscope.data.cells import CellEffects


@dataclasses.dataclass(frozen=True)
class MixEffects:
    """Mix-level effects per experiment (internal).

    ``effect`` (E, 1 + K): outcome first, then proxies; ``noise_cov``
    (E, 1 + K, 1 + K): the sampling covariance of that weighted average.
    """

    experiments: np.ndarray
    effect: np.ndarray
    noise_cov: np.ndarray

    @property
    def outcome(self) -> np.ndarray:
        return self.effect[:, 0]

    @property
    def proxies(self) -> np.ndarray:
        return self.effect[:, 1:]


def mix_effects(effects: CellEffects) -> MixEffects:
    """Each experiment's user-weighted average of its cell effects.

    The weights are the cells' users (both arms) within the experiment, so the
    average is the experiment's stratified difference in means on its own mix.
    """
    users = effects.users()
    ids = effects.experiments
    codes = pd.Index(ids).get_indexer(effects.experiment)
    totals = np.bincount(codes, weights=users, minlength=len(ids))
    share = users / totals[codes]
    n_metrics = len(effects.metrics)
    eff = np.zeros((len(ids), n_metrics))
    cov = np.zeros((len(ids), n_metrics, n_metrics))
    np.add.at(eff, codes, share[:, None] * effects.effect)
    np.add.at(cov, codes, (share**2)[:, None, None] * effects.noise_cov)
    return MixEffects(experiments=ids, effect=eff, noise_cov=cov)

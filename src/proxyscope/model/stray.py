"""Chains that disagree with the others: stray chains, and those sampling another mode.

A stray chain's mean of some parameter sits far from every other chain's
(in their within-chain sds); one that is also as free to move as they are
samples a separate mode of the posterior rather than being stuck.
"""

from __future__ import annotations

import numpy as np

#: A chain whose mean of some parameter is this many within-chain sds from the
#: median of the other chains' means is reported as stray. Chains that sample
#: the same posterior differ by about sd / sqrt(ESS per chain): 0.1 sd or less
#: at a few hundred effective draws, so 1 leaves a wide margin.
STRAY_DISTANCE = 1.0
#: A stray chain this far from the others (in their within-chain sds) that
#: moves as freely as they do (its own sd at least MODE_SPREAD of theirs) is
#: sampling another mode, not stuck: a later run whose chains all land in one
#: mode does not make the posterior unimodal.
MODE_DISTANCE = 5.0
MODE_SPREAD = 0.5


def separate_modes(
    draws: np.ndarray, names: list[str], stray: list[tuple[int, str, float]]
) -> list[tuple[int, str, float]]:
    """The stray chains that sample another mode rather than being stuck.

    A chain counts when it is at least :data:`MODE_DISTANCE` within-chain sds
    from the others on its parameter and its own within-chain sd there is at
    least :data:`MODE_SPREAD` of theirs.
    """
    out = []
    index = {name: i for i, name in enumerate(names)}
    for chain, parameter, distance in stray:
        if distance < MODE_DISTANCE:
            continue
        x = draws[index[parameter]]
        others = np.delete(np.arange(x.shape[0]), chain)
        own = float(np.std(x[chain], ddof=1))
        theirs = float(np.mean(np.std(x[others], axis=1, ddof=1)))
        if theirs > 0 and own >= MODE_SPREAD * theirs:
            out.append((chain, parameter, distance))
    return out


def stray_chains(
    draws: np.ndarray, names: list[str], distance: float = STRAY_DISTANCE
) -> list[tuple[int, str, float]]:
    """Chains whose mean of some parameter sits far from every other chain's.

    ``draws`` is (parameters, chains, draws). For chain c and each parameter:
    |mean_c - median of the other chains' means| / (mean within-chain sd of
    the other chains); a chain is stray when its largest such distance is
    above ``distance``. Returns (chain, parameter, distance) per stray chain.
    """
    n_chains = draws.shape[1] if draws.ndim == 3 else 0
    if n_chains < 3 or draws.shape[2] < 2:
        return []
    with np.errstate(invalid="ignore"):
        means = draws.mean(axis=2)
        sds = draws.std(axis=2, ddof=1)
    out = []
    for c in range(n_chains):
        others = np.delete(np.arange(n_chains), c)
        scale = sds[:, others].mean(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            gap = np.abs(means[:, c] - np.median(means[:, others], axis=1)) / scale
        gap = np.where(np.isfinite(gap) & (scale > 0), gap, 0.0)
        worst = int(np.argmax(gap)) if gap.size else 0
        if gap.size and gap[worst] > distance:
            out.append((c, names[worst], float(gap[worst])))
    return out

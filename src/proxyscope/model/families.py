"""Segment parameters from their pooled pieces — one code path for PyMC and numpy.

A "family" is a set of R parameter rows that vary by segment: the locations
(nu_s and mu_s: R = 1 + K), the slopes (beta_s: R = K) or log sigma_s (R = 1).
With additive pooling each row is

    p[r, s] = global[r] + sum_col main_col[r] @ X_col[s] + interaction[r, s]

where ``X_col`` is the sum-to-zero basis of the column's levels and the
interactions lie in the space of what the other terms cannot express. The same
function builds the symbolic PyMC expression (tensors) and evaluates posterior
draws (numpy arrays with leading chain/draw axes), so the two cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def combine(
    where: Callable[[Any, Any, Any], Any],
    global_: Any,
    mains: Sequence[Any],
    designs: Sequence[Any],
    interaction_raw: Any | None,
    interaction_sd: Any | None,
    centred: np.ndarray,
) -> Any:
    """Segment values ``(..., R, S)`` of one family.

    Parameters
    ----------
    where : ``np.where`` or ``pytensor.tensor.where``.
    global_ : (..., R) global values.
    mains : per segment column, (..., R, L - 1) main effects in contrast space
        (already multiplied by their scale).
    designs : per segment column, (S, L - 1) rows of the sum-to-zero basis
        (numpy arrays, or shared tensors in the PyMC graph).
    interaction_raw : (..., R, S) or None. Centred entries hold the interaction
        itself; non-centred entries hold standard variates to be scaled.
    interaction_sd : (..., R) interaction scales, or None.
    centred : (R, S) which entries are centred (bool array, or a 0/1 tensor).
    """
    out = global_[..., None]
    for main, design in zip(mains, designs, strict=True):
        out = out + main @ design.T
    if interaction_raw is not None and interaction_sd is not None:
        scale = where(centred, 1.0, interaction_sd[..., None])
        out = out + interaction_raw * scale
    return out


def level_effects(main: Any, basis: np.ndarray) -> Any:
    """Main effects per level, ``(..., R, L)``, from contrast space ``(..., R, L - 1)``."""
    return main @ basis.T

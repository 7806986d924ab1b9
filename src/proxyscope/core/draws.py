"""Posterior draws as numpy arrays, and the intervals every analysis reports."""

from __future__ import annotations

from typing import Any

import numpy as np

from proxyscope import dims
from proxyscope.errors import DataTypeError, ParameterError


def flat(values: Any) -> np.ndarray:
    """An xarray variable with (chain, draw, ...) as a (draws, ...) array."""
    arr = np.asarray(values.transpose(dims.CHAIN, dims.DRAW, ...).values, dtype=float)
    return arr.reshape(-1, *arr.shape[2:])


def check_ci(ci: Any, owner: str = "") -> float:
    """``ci`` as a float in (0, 1), or a DataTypeError / ParameterError naming it
    (and ``owner``, the function it was given to, when given)."""
    where = f" of {owner}" if owner else ""
    if isinstance(ci, bool) or not isinstance(ci, (int, float, np.integer, np.floating)):
        raise DataTypeError(
            f"The 'ci' parameter{where} must be a number in (0, 1), e.g. 0.9; got "
            f"{type(ci).__name__} {ci!r}."
        )
    if not 0 < ci < 1:
        raise ParameterError(
            f"The 'ci' parameter{where} must be a number in (0, 1), e.g. 0.9; got {ci!r}."
        )
    return float(ci)


def interval(draws: np.ndarray, ci: float, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Equal-tailed ``ci`` interval of draws along ``axis``."""
    ci = check_ci(ci)
    lo, hi = np.quantile(draws, [(1 - ci) / 2, (1 + ci) / 2], axis=axis)
    return lo, hi

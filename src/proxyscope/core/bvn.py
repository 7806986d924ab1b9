"""Bivariate normal probabilities, exact and vectorised.

Fragility and decision accuracy are, per posterior draw, probabilities that
two jointly Gaussian effects have opposite (or equal) signs: orthant
probabilities of a bivariate normal. They are computed in closed form with
Owen's T function, so they carry no Monte Carlo noise:

    Phi2(h, k; r) = [Phi(h) + Phi(k)] / 2 - T(h, a_h) - T(k, a_k) - c,
    a_h = (k - r h) / (h sqrt(1 - r^2)),  a_k = (h - r k) / (k sqrt(1 - r^2)),
    c = 0 if h k > 0 or (h k = 0 and h + k >= 0), else 1/2

(Owen, 1956, "Tables for computing bivariate normal probabilities").
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr, owens_t


def _owen_term(h: np.ndarray, k: np.ndarray, s: np.ndarray, r: np.ndarray) -> np.ndarray:
    """T(h, a_h) with its limits where h = 0 (a_h infinite): sign(k - r h) / 4."""
    with np.errstate(divide="ignore", invalid="ignore"):
        a = (k - r * h) / (h * s)
        t = owens_t(h, a)
    at_zero = 0.25 * np.sign(k - r * h)
    return np.where(h == 0.0, at_zero, t)


def bvn_cdf(h: np.ndarray, k: np.ndarray, r: np.ndarray) -> np.ndarray:
    """P(X <= h, Y <= k) for standard normals X, Y with correlation r (|r| < 1)."""
    h, k, r = np.broadcast_arrays(
        np.asarray(h, dtype=float), np.asarray(k, dtype=float), np.asarray(r, dtype=float)
    )
    r = np.clip(r, -1.0 + 1e-15, 1.0 - 1e-15)
    s = np.sqrt((1.0 - r) * (1.0 + r))
    c = np.where((h * k > 0) | ((h * k == 0) & (h + k >= 0)), 0.0, 0.5)
    out = 0.5 * (ndtr(h) + ndtr(k)) - _owen_term(h, k, s, r) - _owen_term(k, h, s, r) - c
    # At the origin both Owen arguments are 0/0; the exact value is Sheppard's.
    origin = (h == 0.0) & (k == 0.0)
    out = np.where(origin, 0.25 + np.arcsin(r) / (2.0 * np.pi), out)
    return np.asarray(np.clip(out, 0.0, 1.0))


def prob_opposite_signs(
    mean_x: np.ndarray,
    mean_y: np.ndarray,
    var_x: np.ndarray,
    var_y: np.ndarray,
    cov_xy: np.ndarray,
) -> np.ndarray:
    """P(X * Y < 0) for (X, Y) jointly normal with the given moments.

    A variable with zero variance is a constant: its sign is the sign of its
    mean (a zero constant never has an opposite sign).
    """
    mx, my, vx, vy, cxy = np.broadcast_arrays(
        *(np.asarray(a, dtype=float) for a in (mean_x, mean_y, var_x, var_y, cov_xy))
    )
    sx = np.sqrt(np.maximum(vx, 0.0))
    sy = np.sqrt(np.maximum(vy, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        a = mx / sx
        b = my / sy
        r = cxy / (sx * sy)
    both = (sx > 0) & (sy > 0)
    a_s = np.where(both, a, 0.0)
    b_s = np.where(both, b, 0.0)
    r_s = np.where(both, np.nan_to_num(r), 0.0)
    same = bvn_cdf(a_s, b_s, r_s) + bvn_cdf(-a_s, -b_s, r_s)
    out = 1.0 - same
    # Degenerate cases: one (or both) variables constant.
    only_y = (sx == 0) & (sy > 0)
    only_x = (sy == 0) & (sx > 0)
    neither = (sx == 0) & (sy == 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_y_pos = ndtr(my / sy)
        p_x_pos = ndtr(mx / sx)
    out = np.where(only_y, np.where(mx > 0, 1 - p_y_pos, np.where(mx < 0, p_y_pos, 0.0)), out)
    out = np.where(only_x, np.where(my > 0, 1 - p_x_pos, np.where(my < 0, p_x_pos, 0.0)), out)
    out = np.where(neither, (mx * my < 0).astype(float), out)
    return np.asarray(np.clip(out, 0.0, 1.0))

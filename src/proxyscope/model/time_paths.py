"""The relation's walk over periods, read from a fit's draws (DESIGN.md §9).

A model with time samples, per family of relation parameters (locations,
slopes, log sigma), step scales and standardized steps
(:mod:`proxyscope.core.timewalk`); the segment values the rest of the
posterior describes are those of the LATEST period, and period p adds the
family's shift w[p] (the same for every segment; 0 at the latest period).
This module turns the sampled steps into shifts, expands per-segment arrays
to the kernel's virtual (period, segment) ones, and names the paths of the
user-facing parameters over periods, in original units.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from proxyscope import dims
from proxyscope.core.timewalk import walk_from
from proxyscope.model.layout import FAMILY_PREFIX, time_drift_name, time_step_name, time_z_name


def walk_shifts(raw: xr.Dataset, periods: Sequence[str], n_proxies: int) -> list[np.ndarray]:
    """Each family's shifts (chain, draw, rows, P) from the sampler's anchor period
    (:func:`proxyscope.core.timewalk.anchor`), from the sampled steps and drifts (zeros
    for a static family).

    Rows: M = K + 1 locations (the outcome's first), K slopes, 1 log sigma.
    """
    p_n = len(periods)
    first = next(iter(raw.data_vars.values()))
    lead = tuple(first.shape[:2])
    out = []
    for prefix, rows in zip(FAMILY_PREFIX, (n_proxies + 1, n_proxies, 1), strict=True):
        scale = steps = drift = None
        if p_n >= 2 and time_step_name(prefix) in raw:
            scale = np.asarray(raw[time_step_name(prefix)].values, dtype=float)
            scale = scale.reshape(*lead, rows)
            steps = np.asarray(raw[time_z_name(prefix)].values, dtype=float)
            steps = steps.reshape(*lead, rows, p_n - 1)
        if p_n >= 2 and time_drift_name(prefix) in raw:
            drift = np.asarray(raw[time_drift_name(prefix)].values, dtype=float)
            drift = drift.reshape(*lead, rows)
        if scale is None and drift is None:
            out.append(np.zeros((*lead, rows, max(p_n, 1))))
        else:
            out.append(walk_from(scale, steps, drift, p_n))
    return out


def expand(values: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Per-segment values (..., R, S) plus per-period shifts (..., R, P) as the
    virtual segments (..., R, P * S), v = p * S + s."""
    out = values[..., None, :] + shift[..., :, None]
    return np.asarray(out.reshape(*out.shape[:-2], -1))


def named_paths(
    raw: xr.Dataset,
    periods: Sequence[str],
    proxies: Sequence[str],
    scales: np.ndarray,
    segment_values: dict[str, np.ndarray],
    global_values: dict[str, np.ndarray] | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Posterior variables of the relation per period, original units, and their coords.

    ``segment_values``: the latest period's ``nu`` (c, d, S), ``mu`` and ``beta``
    (c, d, S, K) and ``log_sigma`` (c, d, S) in original units (log sigma of
    sigma in original units); ``global_values`` the same without the segment
    axis (None with pooling "none"). Returns ``nu_path``, ``mu_path``,
    ``beta_path``, ``sigma_path``, ``alpha_path`` (period before segment) and
    the ``*_global_path`` ones, and per parameter its walk's step sd
    (``time_step_sd_nu``, ``_mu``, ``_beta``, ``_log_sigma``) and drift, the steady
    change per period (``time_drift_nu``, ...), where the model has them.
    """
    k = len(proxies)
    sy, sp = scales[0], np.asarray(scales[1:])
    # shifts from the latest period (the sampler's are from its anchor period)
    w_loc, w_slope, w_sig = (w - w[..., -1:] for w in walk_shifts(raw, periods, k))
    d_nu = w_loc[:, :, 0, :] * sy  # (c, d, P)
    d_mu = np.swapaxes(w_loc[:, :, 1:, :] * sp[:, None], -1, -2)  # (c, d, P, K)
    d_beta = np.swapaxes(w_slope * (sy / sp)[:, None], -1, -2)  # (c, d, P, K)
    d_ls = w_sig[:, :, 0, :]  # (c, d, P)
    cd = (dims.CHAIN, dims.DRAW)
    out: dict[str, Any] = {}

    def paths(values: dict[str, np.ndarray], seg: tuple[str, ...], suffix: str) -> None:
        axis = (slice(None), slice(None), slice(None)) + (None,) * len(seg)
        nu = values["nu"][:, :, None] + d_nu[axis]
        mu = values["mu"][:, :, None] + d_mu[(*axis, slice(None))]
        beta = values["beta"][:, :, None] + d_beta[(*axis, slice(None))]
        log_sigma = values["log_sigma"][:, :, None] + d_ls[axis]
        alpha = nu - np.sum(beta * mu, axis=-1)
        out[f"nu{suffix}"] = ((*cd, dims.PERIOD, *seg), nu)
        out[f"mu{suffix}"] = ((*cd, dims.PERIOD, *seg, dims.PROXY), mu)
        out[f"beta{suffix}"] = ((*cd, dims.PERIOD, *seg, dims.PROXY), beta)
        out[f"alpha{suffix}"] = ((*cd, dims.PERIOD, *seg), alpha)
        key = "sigma_path" if seg else "log_sigma_global_path"
        out[key] = ((*cd, dims.PERIOD, *seg), np.exp(log_sigma) if seg else log_sigma)

    paths(segment_values, (dims.SEGMENT,), "_path")
    if global_values is not None:
        paths(global_values, (), "_global_path")
    units = {"loc": None, "slope": sy / sp, "log_sigma": None}
    for prefix, unit in units.items():
        for kind, name in (("step_sd", time_step_name(prefix)), ("drift", time_drift_name(prefix))):
            if name not in raw:
                continue
            value = np.asarray(raw[name].values, dtype=float)
            if prefix == "loc":
                out[f"time_{kind}_nu"] = (cd, value[:, :, 0] * sy)
                out[f"time_{kind}_mu"] = ((*cd, dims.PROXY), value[:, :, 1:] * sp)
            elif prefix == "slope":
                out[f"time_{kind}_beta"] = ((*cd, dims.PROXY), value * unit)
            else:
                out[f"time_{kind}_log_sigma"] = (cd, value)
    return out, {dims.PERIOD: list(periods)}

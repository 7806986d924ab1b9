"""A fit's own coefficient table (what ``fit.summary()``, the demo and the reports print)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from proxyscope import dims
from proxyscope.core.draws import interval
from proxyscope.model.periods import fit_periods
from proxyscope.model.segments import fitted_segments, historical_mix
from proxyscope.options import DEFAULT_CI

if TYPE_CHECKING:
    from proxyscope.model.fit import ProxyFit


def coefficient_table(fit: ProxyFit, ci: float = DEFAULT_CI) -> pd.DataFrame:
    """Segment coefficients with equal-tailed intervals, original units.

    Rows per scope (the historical-mix average first, then each segment):
    ``nu`` (mean long-term effect of a new experiment), ``alpha`` (long-term
    effect when every proxy effect is zero), ``sigma`` (what the proxies
    miss), and per proxy ``mu[...]`` (mean proxy effect) and ``beta[...]``
    (change of the long-term effect per unit of proxy effect); for the
    historical mix also ``sd_e_outcome`` where the model has it (the sd across
    experiments of the long-term effect that no proxy carries, shared by an
    experiment's segments).

    Columns: ``scope``, ``parameter``, ``mean``, ``lo``, ``hi``.

    For a fit with time the table is the LATEST period's relation ("what holds
    now"), named in ``attrs["period"]`` (None for a static fit); the analyses read
    other periods with ``period=``, and :func:`proxyscope.stability` the paths.
    """
    seg = fitted_segments(fit)
    pi = historical_mix(fit).to_numpy()
    alpha = seg.nu - np.einsum("nsk,nsk->ns", seg.beta, seg.mu)
    blocks: dict[str, np.ndarray] = {
        "nu": seg.nu,
        "alpha": alpha,
        "sigma": np.sqrt(seg.sigma2),
    }
    for k, proxy in enumerate(fit.proxies):
        blocks[f"mu[{proxy}]"] = seg.mu[:, :, k]
        blocks[f"beta[{proxy}]"] = seg.beta[:, :, k]
    rows = []
    scopes = [dims.HISTORICAL_MIX, *fit.structure.labels]
    for i, scope in enumerate(scopes):
        for name, draws in blocks.items():
            values = draws @ pi if i == 0 else draws[:, i - 1]
            lo, hi = interval(values, ci)
            rows.append((scope, name, float(values.mean()), float(lo), float(hi)))
        if i == 0 and "sd_e_outcome" in fit.posterior:
            values = np.sqrt(seg.omega_y)
            lo, hi = interval(values, ci)
            rows.append((scope, "sd_e_outcome", float(values.mean()), float(lo), float(hi)))
    out = pd.DataFrame(rows, columns=["scope", "parameter", "mean", "lo", "hi"])
    periods = fit_periods(fit)
    out.attrs.update(ci=ci, trustworthy=fit.trustworthy, period=periods[-1] if periods else None)
    return out

"""Which period of a fit with time an analysis reads (DESIGN.md §9: "what holds now").

A fit with time (``ProxyModel(time=...)``) describes the relation in every
period of its history; its segment values (``nu``, ``mu``, ``beta``,
``sigma``) are the latest period's, and ``*_path`` variables give the others.
The walk shifts every segment alike, so moving an analysis to another period
is one shift per draw: :func:`period_shift`. A static fit has no periods;
asking it for one is an error that says so.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np

from proxyscope import dims
from proxyscope.core.draws import flat
from proxyscope.errors import ParameterError, suggestion

if TYPE_CHECKING:
    from proxyscope.model.fit import ProxyFit


def fit_periods(fit: ProxyFit) -> tuple[str, ...]:
    """The fit's periods in order (empty for a static fit)."""
    return tuple(fit.info.periods)


def resolve_period(fit: ProxyFit, period: Any, owner: str) -> str | None:
    """The period an analysis reads: ``period``, or the latest one by default (None
    for a static fit).

    Raises
    ------
    ParameterError
        A period for a static fit, or one the fit does not have (listing them).
    """
    periods = fit_periods(fit)
    if period is None:
        return periods[-1] if periods else None
    if not periods:
        raise ParameterError(
            f"The 'period' parameter of {owner} needs a fit with time (ProxyModel(time=...)); "
            f"this fit is static. Got {period!r}."
        )
    if str(period) not in periods:
        raise ParameterError(
            f"The 'period' parameter of {owner} must be one of the fit's periods "
            f"{list(periods)}; got {period!r}.{suggestion(str(period), periods)}"
        )
    return str(period)


@dataclasses.dataclass(frozen=True)
class PeriodShift:
    """How the relation in one period differs from the latest one, per draw (original
    units): nu (N,), mu and beta (N, K), log_sigma (N,)."""

    nu: np.ndarray
    mu: np.ndarray
    beta: np.ndarray
    log_sigma: np.ndarray


def period_shift(fit: ProxyFit, period: str | None) -> PeriodShift | None:
    """The shift from the latest period to ``period`` (None: no shift to apply)."""
    periods = fit_periods(fit)
    if period is None or not periods or period == periods[-1]:
        return None
    post = fit.posterior.isel({dims.SEGMENT: 0})
    at = post.sel({dims.PERIOD: period})

    def diff(name: str) -> np.ndarray:
        value = at[f"{name}_path"]
        base = post[name]
        if dims.PROXY in value.dims:
            value = value.transpose(dims.CHAIN, dims.DRAW, dims.PROXY)
            base = base.transpose(dims.CHAIN, dims.DRAW, dims.PROXY)
        return flat(value) - flat(base)

    log_sigma = np.log(flat(at["sigma_path"])) - np.log(flat(post["sigma"]))
    return PeriodShift(nu=diff("nu"), mu=diff("mu"), beta=diff("beta"), log_sigma=log_sigma)


#: Step sd variables of a fit with time, per family of the walk (absent: the family is fixed).
_STEP_SD = {
    "nu": "time_step_sd_nu",
    "mu": "time_step_sd_mu",
    "beta": "time_step_sd_beta",
    "log_sigma": "time_step_sd_log_sigma",
}


def forecast_shift(fit: ProxyFit, steps: int, rng: np.random.Generator) -> PeriodShift | None:
    """The walk's shift from the latest period to ``steps`` periods after it, per draw.

    Beyond the fit's history the relation keeps walking: after h steps each
    parameter has moved by the sum of h independent steps, so per draw and
    parameter ``shift = step_sd * sqrt(h) * z`` with z ~ N(0, 1) (nu, mu, beta
    and log sigma alike; a family whose step sd is fixed at 0 does not move).
    Added to the latest period's values (:func:`proxyscope.model.segments.shifted`),
    the draws are those of the relation h periods ahead: the relation's
    uncertainty now plus the walk's. A model with drifts also moves each
    parameter by its drift per period: ``+ drift * h``.

    Parameters
    ----------
    fit : ProxyFit
        A fit with time; for a static fit there is nothing to shift.
    steps : int
        How many periods after the fit's latest one (>= 0).
    rng : numpy.random.Generator
        Source of the z's (drawn in the order nu, mu, beta, log sigma).

    Returns
    -------
    PeriodShift or None
        None for a static fit or ``steps == 0``.

    Raises
    ------
    ParameterError
        ``steps`` is not an integer >= 0.
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ParameterError(
            f"The 'steps' parameter of forecast_shift must be an integer >= 0; got {steps!r}."
        )
    if steps == 0 or not fit_periods(fit):
        return None
    post = fit.posterior
    n = int(post.sizes[dims.CHAIN] * post.sizes[dims.DRAW])
    k = len(fit.info.proxies)
    root = float(np.sqrt(steps))
    out: dict[str, np.ndarray] = {}
    for name, var in _STEP_SD.items():
        shape = (n, k) if name in ("mu", "beta") else (n,)
        z = rng.standard_normal(shape)
        out[name] = np.zeros(shape)
        if var in post:
            out[name] += flat(post[var]) * root * z
        drift = f"time_drift_{name}"
        if drift in post:
            out[name] += flat(post[drift]) * steps
    return PeriodShift(**out)

"""Cell effects drawn from the proxy model itself, at known parameters.

For parameter-recovery checks (and simulation-based calibration): a world in
which the model is exactly right, so its posterior intervals must cover the
parameters at close to their nominal rate.

One segment column (``segment`` with the given levels); per experiment e and
level l:

    eta_e ~ N(0, Omega_E),  eta0_e ~ N(0, sd_e_outcome^2),
    zeta_c ~ N(0, Omega_C),  eps_c ~ N(0, sigma^2)
    theta_c = mu_l + eta_e + zeta_c
    tau_c = nu_l + eta0_e + beta'(theta_c - mu_l) + eps_c
    d_c ~ N((tau_c, theta_c), S)

(eta0_e: the experiment's long-term effect that no proxy carries; drawn from
a stream of its own, so a world with ``sd_e_outcome = 0`` is the same draws
as one made before it existed.)

with S the same sampling covariance in every cell (``noise_sd``, and
correlation ``noise_corr`` between every pair of metrics).

Over time (``periods = P``): the experiments are spread evenly over P calendar
periods, each with a start date (:mod:`proxyscope.simulate.model_time`), and
a cell of an experiment in period p uses that period's parameters:
beta_p = beta * (1 - rate)^p for a proxy with a ``drift`` rate, nu_p = nu +
p * nu_step and mu_p = mu + p * mu_step. The start dates come from a stream of
their own, so without drift the cells' effects are from_model's without
periods, draw for draw; the cells carry the start dates and periods
(:meth:`CellEffects.with_time`).

:class:`ModelParameters` holds any set of the model's parameters (segment
slopes and residual scales per level too, and a leading axis of draws, e.g.
draws from the model's prior), and :func:`simulate_cells` draws one world per
set at once (vectorised), for simulation-based calibration
(``benchmarks/bench_sbc.py``); both live in :mod:`proxyscope.simulate.model_draws`
and are re-exported here. :func:`from_model` keeps its own random stream, so
its worlds are the same draw for draw as before these existed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from proxyscope import dims
from proxyscope.data.cellbuild import build
from proxyscope.data.cells import CellEffects
from proxyscope.errors import ParameterError
from proxyscope.simulate import model_time as mt
from proxyscope.simulate.config import check_grouping, check_periods, check_start
from proxyscope.simulate.model_draws import ModelParameters, SimulatedCells, simulate_cells

__all__ = ["ModelParameters", "ModelTruth", "SimulatedCells", "from_model", "simulate_cells"]


#: Stream key of the start dates (their draws never move the cells').
_TIME_KEY = 2


@dataclasses.dataclass(frozen=True)
class ModelTruth:
    """The parameters a :func:`from_model` world was drawn from (and its draws).

    With ``periods = P`` also the parameters per period (``beta_path`` (P, K),
    ``nu_path`` (P, L), ``mu_path`` (P, L, K); equal over periods without
    drift), the periods' labels, their grouping ("quarter", ...), each
    experiment's period (``experiment_period`` (E,)) and start date
    (``starts``: a Series experiment -> Timestamp, for
    ``CellEffects.with_time(truth.starts, period=truth.period)``). Without
    periods they are None.
    """

    levels: tuple[str, ...]
    nu: np.ndarray  # (L,)
    mu: np.ndarray  # (L, K)
    beta: np.ndarray  # (K,)
    sigma: float
    omega_e: np.ndarray  # (K, K)
    omega_c: np.ndarray  # (K, K)
    eta: np.ndarray  # (E, K) realised experiment effects
    latent: np.ndarray  # (C, 1 + K) realised true cell effects
    sd_e_outcome: float = 0.0
    eta_outcome: np.ndarray | None = None  # (E,) realised eta0_e
    beta_path: np.ndarray | None = None  # (P, K)
    nu_path: np.ndarray | None = None  # (P, L)
    mu_path: np.ndarray | None = None  # (P, L, K)
    period_labels: tuple[str, ...] | None = None  # (P,)
    period: str | None = None  # the grouping: "week", "month", "quarter" or "year"
    experiment_period: np.ndarray | None = None  # (E,) index into period_labels
    starts: pd.Series | None = None  # experiment -> start date (Timestamp)


def from_model(
    *,
    n_experiments: int = 60,
    levels: Sequence[str] = ("a", "b", "c", "d"),
    nu: Sequence[float] = (0.2, 0.0, -0.1, 0.3),
    mu: Sequence[Sequence[float]] = ((1.0,), (0.5,), (1.5,), (0.0,)),
    beta: Sequence[float] = (0.5,),
    sigma: float = 0.2,
    sd_e: Sequence[float] = (1.0,),
    sd_e_outcome: float = 0.0,
    sd_c: Sequence[float] = (0.3,),
    corr_e: np.ndarray | None = None,
    noise_sd: float = 0.5,
    noise_corr: float = -0.5,
    users_per_arm: int = 500,
    seed: int = 0,
    periods: int | None = None,
    start: str | dt.date = "2024-01-01",
    period: str = "quarter",
    drift: Mapping[int | str, float] | None = None,
    nu_step: float | Sequence[float] = 0.0,
    mu_step: float | Sequence[float] | Sequence[Sequence[float]] = 0.0,
) -> tuple[CellEffects, ModelTruth]:
    """Draw CellEffects from the proxy model at the given parameters.

    Parameters
    ----------
    n_experiments, levels, nu, mu, beta, sigma, sd_e, sd_e_outcome, sd_c, corr_e
        The model's parameters (see the module docstring).
    noise_sd, noise_corr, users_per_arm
        The sampling covariance of every cell and its nominal arm sizes.
    seed : int
        Seed of the draws.
    periods : int, optional
        Spread the experiments evenly over this many consecutive periods (in
        [1, n_experiments]); None (default) is the world without time.
    start : str or date
        A day in the first period (default "2024-01-01").
    period : {"week", "month", "quarter", "year"}
        The periods' grouping.
    drift : mapping of proxy index or name to rate, optional
        Proxy k's slope in period p is ``beta_k (1 - rate)^p`` (rate < 1; a
        negative rate strengthens it). Needs ``periods``.
    nu_step, mu_step : float or array
        Added to nu (per level) and mu (per level and proxy) once a period:
        ``nu_p = nu + p nu_step``. Broadcast to nu's and mu's shapes. Need
        ``periods``.

    Returns
    -------
    (CellEffects, ModelTruth)
        The cells (outcome ``long_term``, proxies ``proxy_1..K``, segment
        column ``segment``; with ``periods``, their experiments' start dates and
        periods attached by :meth:`CellEffects.with_time`) and the truth (with
        per-period paths and start dates when ``periods`` is given).

    Raises
    ------
    ParameterError
        Naming the parameter and the bad value.
    """
    levels = tuple(str(lv) for lv in levels)
    nu_a = np.asarray(nu, dtype=float)
    mu_a = np.asarray(mu, dtype=float)
    beta_a = np.asarray(beta, dtype=float)
    k = beta_a.size
    n_lev = len(levels)
    if nu_a.shape != (n_lev,) or mu_a.shape != (n_lev, k):
        raise ParameterError(
            f"from_model: nu must have one value per level ({n_lev}) and mu one row of "
            f"{k} per level; got {nu_a.shape} and {mu_a.shape}."
        )
    if n_experiments < 2 or sigma < 0 or noise_sd <= 0 or not -1 < noise_corr < 1:
        raise ParameterError(
            "from_model: need n_experiments >= 2, sigma >= 0, noise_sd > 0 and "
            f"|noise_corr| < 1; got {n_experiments}, {sigma}, {noise_sd}, {noise_corr}."
        )
    if not sd_e_outcome >= 0:
        raise ParameterError(f"from_model: sd_e_outcome must be >= 0; got {sd_e_outcome!r}.")
    proxies = [f"proxy_{j + 1}" for j in range(k)]
    n_periods = check_periods("from_model", periods, n_experiments)
    paths = mt.model_paths(
        nu_a,
        mu_a,
        beta_a,
        n_periods=n_periods,
        drift=drift,
        nu_step=nu_step,
        mu_step=mu_step,
        proxies=proxies,
    )
    timeline = None
    if n_periods is not None:
        timeline = mt.Timeline.draw(
            np.random.default_rng([seed, _TIME_KEY]),
            check_start("from_model", start),
            check_grouping("from_model", period),
            n_periods,
            n_experiments,
        )
    rng = np.random.default_rng(seed)
    corr = np.eye(k) if corr_e is None else np.asarray(corr_e, dtype=float)
    sde = np.asarray(sd_e, dtype=float)
    sdc = np.asarray(sd_c, dtype=float)
    omega_e = corr * np.outer(sde, sde)
    omega_c = corr * np.outer(sdc, sdc)
    m = k + 1
    noise = noise_sd**2 * (np.full((m, m), noise_corr) + (1 - noise_corr) * np.eye(m))
    eta = rng.multivariate_normal(np.zeros(k), omega_e, size=n_experiments)
    own = sd_e_outcome * np.random.default_rng([seed, 1]).standard_normal(n_experiments)
    rows = []
    latent = []
    effect = []
    for e in range(n_experiments):
        if paths is None or timeline is None:
            nu_e, mu_e, beta_e = nu_a, mu_a, beta_a
        else:
            p = timeline.experiment_period[e]
            nu_e, mu_e, beta_e = paths.nu[p], paths.mu[p], paths.beta[p]
        for lv, level in enumerate(levels):
            zeta = rng.multivariate_normal(np.zeros(k), omega_c)
            theta = mu_e[lv] + eta[e] + zeta
            tau = nu_e[lv] + own[e] + beta_e @ (theta - mu_e[lv]) + sigma * rng.standard_normal()
            truth = np.r_[tau, theta]
            latent.append(truth)
            effect.append(rng.multivariate_normal(truth, noise))
            rows.append({dims.EXPERIMENT: e, "segment": level})
    keys = pd.DataFrame(rows)
    n = len(keys)
    cells = build(
        keys,
        np.full(n, users_per_arm),
        np.full(n, users_per_arm),
        np.asarray(effect),
        np.broadcast_to(noise, (n, m, m)).copy(),
        outcome="long_term",
        proxies=proxies,
        segments=["segment"],
        directions=dict.fromkeys(proxies, "higher"),
        engine="simulate.from_model",
    )
    truth = ModelTruth(
        levels=levels,
        nu=nu_a,
        mu=mu_a,
        beta=beta_a,
        sigma=float(sigma),
        omega_e=omega_e,
        omega_c=omega_c,
        eta=eta,
        latent=np.asarray(latent),
        sd_e_outcome=float(sd_e_outcome),
        eta_outcome=own,
    )
    if paths is not None and timeline is not None:
        cells = cells.with_time(timeline.starts, period=timeline.calendar.grouping)
        truth = dataclasses.replace(
            truth,
            beta_path=paths.beta,
            nu_path=paths.nu,
            mu_path=paths.mu,
            period_labels=timeline.calendar.labels,
            period=timeline.calendar.grouping,
            experiment_period=timeline.experiment_period,
            starts=timeline.starts,
        )
    return cells, truth

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
from collections.abc import Sequence

import numpy as np
import pandas as pd

from proxyscope import dims
from proxyscope.data.cellbuild import build
from proxyscope.data.cells import CellEffects
from proxyscope.errors import ParameterError
from proxyscope.simulate.model_draws import ModelParameters, SimulatedCells, simulate_cells

__all__ = ["ModelParameters", "ModelTruth", "SimulatedCells", "from_model", "simulate_cells"]


@dataclasses.dataclass(frozen=True)
class ModelTruth:
    """The parameters a :func:`from_model` world was drawn from (and its draws)."""

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
) -> tuple[CellEffects, ModelTruth]:
    """Draw CellEffects from the proxy model at the given parameters.

    Returns the cells (outcome ``long_term``, proxies ``proxy_1..K``,
    segment column ``segment``) and the truth.
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
        for lv, level in enumerate(levels):
            zeta = rng.multivariate_normal(np.zeros(k), omega_c)
            theta = mu_a[lv] + eta[e] + zeta
            tau = nu_a[lv] + own[e] + beta_a @ (theta - mu_a[lv]) + sigma * rng.standard_normal()
            truth = np.r_[tau, theta]
            latent.append(truth)
            effect.append(rng.multivariate_normal(truth, noise))
            rows.append({dims.EXPERIMENT: e, "segment": level})
    keys = pd.DataFrame(rows)
    n = len(keys)
    proxies = [f"proxy_{j + 1}" for j in range(k)]
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
    return cells, truth

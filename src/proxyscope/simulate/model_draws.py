"""Worlds drawn from the proxy model at many parameter sets at once.

:class:`ModelParameters` is one or many sets of the proxy model's parameters
for one segment column (per-level means, slopes and residual sds; experiment
and within-cell covariances; the sd of the experiments' long-term effect no
proxy carries), checked where they enter. :func:`simulate_cells` draws one
world of cells per set, vectorised over sets, so that thousands of worlds cost
milliseconds: what simulation-based calibration needs when it screens draws
from the model's prior (``benchmarks/bench_sbc.py``).
:meth:`SimulatedCells.cells` turns one of them into :class:`CellEffects`.
The model is the one of :mod:`proxyscope.simulate.model_world`.
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


def _param_error(name: str, want: str, got: object) -> ParameterError:
    return ParameterError(f"The {name!r} parameter of ModelParameters must be {want}; got {got}.")


@dataclasses.dataclass(frozen=True)
class ModelParameters:
    """Parameters of the proxy model for one segment column, one set per draw.

    Every array has a leading axis of N draws (N = 1 for a single set), L
    levels and K proxies: ``nu`` (N, L) and ``mu`` (N, L, K) the segment means
    of the long-term and proxy effects, ``beta`` (N, L, K) the slopes,
    ``sigma`` (N, L) the residual sd, ``omega_e`` and ``omega_c`` (N, K, K) the
    covariances of the experiment and within-cell proxy effects,
    ``sd_e_outcome`` (N,) the sd of eta0_e (the experiment's long-term effect
    no proxy carries). Units are whatever the caller's are (the model's
    standardized units for draws from its prior; :meth:`in_units` converts).
    """

    levels: tuple[str, ...]
    nu: np.ndarray
    mu: np.ndarray
    beta: np.ndarray
    sigma: np.ndarray
    omega_e: np.ndarray
    omega_c: np.ndarray
    sd_e_outcome: np.ndarray

    def __post_init__(self) -> None:
        levels = self.levels
        if (
            isinstance(levels, str)
            or not isinstance(levels, Sequence)
            or not levels
            or not all(isinstance(v, str) and v for v in levels)
            or len(set(levels)) != len(levels)
        ):
            raise _param_error("levels", "a sequence of distinct non-empty strings", repr(levels))
        object.__setattr__(self, "levels", tuple(levels))
        arrays = {}
        for name in ("nu", "mu", "beta", "sigma", "omega_e", "omega_c", "sd_e_outcome"):
            value = getattr(self, name)
            try:
                arr = np.array(value, dtype=float)
            except (TypeError, ValueError):
                raise _param_error(name, "an array of numbers", type(value).__name__) from None
            if not np.isfinite(arr).all():
                raise _param_error(name, "finite (no NaN or inf)", "non-finite values")
            arrays[name] = arr
            object.__setattr__(self, name, arr)
        n_lev = len(self.levels)
        mu = arrays["mu"]
        if mu.ndim != 3 or mu.shape[0] < 1 or mu.shape[1] != n_lev or mu.shape[2] < 1:
            raise _param_error("mu", f"an array (draws, {n_lev} levels, proxies)", mu.shape)
        n, _, k = mu.shape
        shapes = {
            "nu": (n, n_lev),
            "beta": (n, n_lev, k),
            "sigma": (n, n_lev),
            "omega_e": (n, k, k),
            "omega_c": (n, k, k),
            "sd_e_outcome": (n,),
        }
        for name, shape in shapes.items():
            if arrays[name].shape != shape:
                raise _param_error(
                    name, f"of shape {shape} (from mu's {mu.shape})", arrays[name].shape
                )
        for name in ("sigma", "sd_e_outcome"):
            if (arrays[name] < 0).any():
                raise _param_error(name, ">= 0", float(arrays[name].min()))
        for name in ("omega_e", "omega_c"):
            om = arrays[name]
            size = max(1.0, float(np.abs(om).max()))
            if not np.allclose(om, np.swapaxes(om, -1, -2), rtol=0, atol=1e-10 * size):
                raise _param_error(name, "symmetric", "an asymmetric matrix")
            low = float(np.linalg.eigvalsh(om).min())
            if low < -1e-10 * size:
                raise _param_error(name, "positive semi-definite", f"eigenvalue {low!r}")

    @property
    def n_draws(self) -> int:
        return int(self.mu.shape[0])

    @property
    def n_proxies(self) -> int:
        return int(self.mu.shape[2])

    def take(self, i: int) -> ModelParameters:
        """The ``i``-th set, as parameters with one draw."""
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < self.n_draws:
            raise ParameterError(
                f"The draw index must be an integer in [0, {self.n_draws}); got {i!r}."
            )
        pick = slice(int(i), int(i) + 1)
        return ModelParameters(
            self.levels,
            self.nu[pick],
            self.mu[pick],
            self.beta[pick],
            self.sigma[pick],
            self.omega_e[pick],
            self.omega_c[pick],
            self.sd_e_outcome[pick],
        )

    def in_units(self, units: Sequence[float] | np.ndarray) -> ModelParameters:
        """The same parameters when metric j's effects are multiplied by ``units[j]``
        (outcome first, then the K proxies)."""
        u = _check_units(units, self.n_proxies + 1)
        uy, up = u[0], u[1:]
        return ModelParameters(
            self.levels,
            self.nu * uy,
            self.mu * up,
            self.beta * (uy / up),
            self.sigma * uy,
            self.omega_e * np.outer(up, up),
            self.omega_c * np.outer(up, up),
            self.sd_e_outcome * uy,
        )


def _check_units(units: object, m: int) -> np.ndarray:
    try:
        u = np.array(units, dtype=float)
    except (TypeError, ValueError):
        raise ParameterError(
            f"The 'units' parameter must be {m} positive numbers; got {units!r}."
        ) from None
    if u.shape != (m,) or not np.isfinite(u).all() or (u <= 0).any():
        raise ParameterError(
            f"The 'units' parameter must be {m} positive finite numbers (outcome first); "
            f"got {units!r}."
        )
    return u


def psd_factor(cov: np.ndarray) -> np.ndarray:
    """A matrix A with A A' = cov, per leading index (symmetric square root;
    exact for semi-definite matrices, where a Cholesky factor does not exist)."""
    values, vectors = np.linalg.eigh(cov)
    return np.asarray(vectors * np.sqrt(np.maximum(values, 0.0))[..., None, :])


@dataclasses.dataclass(frozen=True)
class SimulatedCells:
    """One simulated world per parameter set: true and observed cell effects.

    ``eta`` (N, E, 1 + K): the experiment effects (eta0_e first); ``latent``
    and ``effect`` (N, C, 1 + K): true and observed effects (outcome first)
    of the C = E x L cells, experiment-major; ``noise`` (1 + K, 1 + K): the
    sampling covariance of every cell. Units: those of ``params``.
    """

    params: ModelParameters
    n_experiments: int
    noise: np.ndarray
    eta: np.ndarray
    latent: np.ndarray
    effect: np.ndarray

    @property
    def level_index(self) -> np.ndarray:
        """Level of each cell (C,)."""
        return np.tile(np.arange(len(self.params.levels)), self.n_experiments)

    @property
    def experiment_index(self) -> np.ndarray:
        """Experiment of each cell (C,)."""
        return np.repeat(np.arange(self.n_experiments), len(self.params.levels))

    def cells(
        self,
        i: int = 0,
        *,
        units: Sequence[float] | np.ndarray | None = None,
        users_per_arm: int = 500,
    ) -> tuple[CellEffects, ModelParameters]:
        """World ``i`` as CellEffects (outcome ``long_term``, proxies ``proxy_1..K``,
        segment column ``segment``), in ``units`` (effects of metric j multiplied
        by ``units[j]``; default 1), and its parameters in the same units."""
        params = self.params.take(i)
        m = params.n_proxies + 1
        u = np.ones(m) if units is None else _check_units(units, m)
        if (
            isinstance(users_per_arm, bool)
            or not isinstance(users_per_arm, (int, np.integer))
            or users_per_arm < 2
        ):
            raise ParameterError(
                f"The 'users_per_arm' parameter must be an integer >= 2; got {users_per_arm!r}."
            )
        keys = pd.DataFrame(
            {
                dims.EXPERIMENT: self.experiment_index,
                "segment": [params.levels[j] for j in self.level_index],
            }
        )
        n = len(keys)
        proxies = [f"proxy_{j + 1}" for j in range(params.n_proxies)]
        cells = build(
            keys,
            np.full(n, users_per_arm),
            np.full(n, users_per_arm),
            self.effect[i] * u,
            np.broadcast_to(self.noise * np.outer(u, u), (n, m, m)).copy(),
            outcome="long_term",
            proxies=proxies,
            segments=["segment"],
            directions=dict.fromkeys(proxies, "higher"),
            engine="simulate.simulate_cells",
        )
        return cells, params.in_units(u)


def simulate_cells(
    params: ModelParameters,
    *,
    n_experiments: int = 16,
    noise_sd: float = 0.5,
    noise_corr: float = 0.0,
    seed: int = 0,
) -> SimulatedCells:
    """Draw one world of cells per parameter set of ``params`` (vectorised over sets).

    Per set, experiment e and level l (the model of this module's docstring,
    with slopes and residual sd per level):
    (eta0_e, eta_e) ~ N(0, diag(sd_e_outcome^2, Omega_E)), zeta_c ~ N(0, Omega_C),
    theta_c = mu_l + eta_e + zeta_c, tau_c = nu_l + eta0_e + beta_l'(theta_c - mu_l)
    + sigma_l eps_c, d_c ~ N((tau_c, theta_c), S) with S = noise_sd^2 times an
    equicorrelation matrix (``noise_corr``). The normal variates are drawn in that
    order (eta, zeta, eps, noise) from one generator seeded with ``seed``.
    """
    if not isinstance(params, ModelParameters):
        raise ParameterError(
            f"simulate_cells expects ModelParameters; got {type(params).__name__}."
        )
    if (
        isinstance(n_experiments, bool)
        or not isinstance(n_experiments, (int, np.integer))
        or n_experiments < 2
    ):
        raise ParameterError(
            f"The 'n_experiments' parameter must be an integer >= 2; got {n_experiments!r}."
        )
    k = params.n_proxies
    m = k + 1
    ok_sd = isinstance(noise_sd, (int, float, np.number)) and np.isfinite(noise_sd) and noise_sd > 0
    if isinstance(noise_sd, bool) or not ok_sd:
        raise ParameterError(f"The 'noise_sd' parameter must be > 0 and finite; got {noise_sd!r}.")
    low = -1.0 / (m - 1)
    if (
        isinstance(noise_corr, bool)
        or not isinstance(noise_corr, (int, float, np.number))
        or not low < noise_corr < 1
    ):
        raise ParameterError(
            f"The 'noise_corr' parameter must be in ({low:.3g}, 1) for {m} metrics (a "
            f"positive-definite noise covariance); got {noise_corr!r}."
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ParameterError(f"The 'seed' parameter must be a non-negative integer; got {seed!r}.")
    n, n_lev, e = params.n_draws, len(params.levels), int(n_experiments)
    noise = noise_sd**2 * (np.full((m, m), noise_corr) + (1 - noise_corr) * np.eye(m))
    rng = np.random.default_rng(seed)
    z_eta = rng.standard_normal((n, e, m))
    z_zeta = rng.standard_normal((n, e, n_lev, k))
    z_eps = rng.standard_normal((n, e, n_lev))
    z_noise = rng.standard_normal((n, e, n_lev, m))
    eta_p = np.einsum("nkj,nej->nek", psd_factor(params.omega_e), z_eta[..., 1:])
    eta = np.concatenate([params.sd_e_outcome[:, None, None] * z_eta[..., :1], eta_p], axis=-1)
    zeta = np.einsum("nkj,nelj->nelk", psd_factor(params.omega_c), z_zeta)
    dev = eta_p[:, :, None, :] + zeta  # theta_c - mu_l
    theta = params.mu[:, None] + dev
    tau = (
        params.nu[:, None]
        + eta[:, :, None, 0]
        + np.einsum("nlk,nelk->nel", params.beta, dev)
        + params.sigma[:, None] * z_eps
    )
    latent = np.concatenate([tau[..., None], theta], axis=-1)
    effect = latent + z_noise @ psd_factor(noise).T
    return SimulatedCells(
        params=params,
        n_experiments=e,
        noise=noise,
        eta=eta,
        latent=latent.reshape(n, e * n_lev, m),
        effect=effect.reshape(n, e * n_lev, m),
    )

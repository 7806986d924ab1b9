"""From sampled draws (standardized units) to named posterior variables.

Pure numpy on arrays with leading (chain, draw) axes; needs only the
:class:`ModelInfo` saved with a fit, not the PyMC model, so it also works on a
loaded file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import numpy as np
import xarray as xr

from proxyscope import dims
from proxyscope._format import plain
from proxyscope.core.kernels import experiment_cholesky
from proxyscope.model import families
from proxyscope.model.builder import corr_cholesky
from proxyscope.model.layout import OUTCOME_SD, bias_cpc_name, bias_sd_name
from proxyscope.model.structure import SegmentStructure
from proxyscope.model.time_paths import expand, named_paths, walk_shifts

FAMILIES = ("loc", "slope", "log_sigma")
#: Dim of the designs with a bias term in the posterior (bias_sd, bias_corr).
BIAS_DESIGN = "bias_design"
#: The posterior variable of the experiments' recovered shared errors u_e.
SHARED_ERROR = "shared_error"


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """Everything needed to read a fit's draws, saved as JSON in its attributes."""

    pooling: str
    priors: dict[str, Any]
    outcome: str
    proxies: tuple[str, ...]
    directions: dict[str, str]
    structure: SegmentStructure
    scales: tuple[float, ...]
    centred: tuple[tuple[bool, ...], ...]
    learned_main: tuple[bool, ...]
    experiments: tuple[Any, ...]
    order: tuple[int, ...]
    cell_correlation: str = "shared"
    noise: str = "as_given"
    #: Designs whose cells have a bias term (DESIGN.md §8), in DESIGNS order.
    bias_designs: tuple[str, ...] = ()
    #: The periods the relation moves over (DESIGN.md §9), in order; empty: static.
    periods: tuple[str, ...] = ()

    @property
    def metrics(self) -> tuple[str, ...]:
        return (self.outcome, *self.proxies)

    @property
    def n_proxies(self) -> int:
        return len(self.proxies)

    def config(self) -> dict[str, Any]:
        """The model configuration (what the config hash covers)."""
        out = self._config()
        if self.bias_designs:  # (absent otherwise: earlier fits keep their hash)
            out["bias_designs"] = list(self.bias_designs)
        if self.periods:  # (likewise)
            out["periods"] = list(self.periods)
        return out

    def _config(self) -> dict[str, Any]:
        return {
            "pooling": self.pooling,
            "priors": self.priors,
            "outcome": self.outcome,
            "proxies": list(self.proxies),
            "directions": self.directions,
            "segments": list(self.structure.columns),
            "cell_correlation": self.cell_correlation,
            "noise": self.noise,
        }

    def to_json(self) -> str:
        raw = {
            "pooling": self.pooling,
            "priors": self.priors,
            "outcome": self.outcome,
            "proxies": list(self.proxies),
            "directions": self.directions,
            "structure": json.loads(self.structure.to_json()),
            "scales": list(self.scales),
            "centred": [list(row) for row in self.centred],
            "learned_main": list(self.learned_main),
            "experiments": [plain(e) for e in self.experiments],
            "order": list(self.order),
            "cell_correlation": self.cell_correlation,
            "noise": self.noise,
        }
        if self.bias_designs:
            raw["bias_designs"] = list(self.bias_designs)
        if self.periods:
            raw["periods"] = list(self.periods)
        return json.dumps(raw, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelInfo:
        raw = json.loads(text)
        return cls(
            pooling=raw["pooling"],
            priors=raw["priors"],
            outcome=raw["outcome"],
            proxies=tuple(raw["proxies"]),
            directions=raw["directions"],
            structure=SegmentStructure.from_json(json.dumps(raw["structure"])),
            scales=tuple(float(x) for x in raw["scales"]),
            centred=tuple(tuple(bool(x) for x in row) for row in raw["centred"]),
            learned_main=tuple(bool(x) for x in raw["learned_main"]),
            experiments=tuple(raw["experiments"]),
            order=tuple(int(x) for x in raw["order"]),
            cell_correlation=raw.get("cell_correlation", "shared"),
            noise=raw.get("noise", "as_given"),
            bias_designs=tuple(raw.get("bias_designs", ())),
            periods=tuple(str(p) for p in raw.get("periods", ())),
        )


def config_hash(config: dict[str, Any]) -> str:
    """SHA-256 of a configuration's canonical JSON."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def _rows(raw: xr.Dataset, name: str) -> np.ndarray:
    """A sampled variable as (chain, draw, rows, ...) with a row axis for scalars."""
    arr = np.asarray(raw[name].values, dtype=float)
    return arr


def family_values(raw: xr.Dataset, info: ModelInfo, prefix: str) -> np.ndarray:
    """Segment values (chain, draw, R, S) of a family, in standardized units."""
    structure = info.structure
    n_seg = structure.n_segments
    scalar = prefix == "log_sigma"
    if prefix == "loc":
        centred = np.asarray(info.centred, dtype=bool)
    else:
        centred = np.zeros((1 if scalar else info.n_proxies, n_seg), dtype=bool)

    def rows(name: str) -> np.ndarray:
        arr = _rows(raw, name)
        return arr[:, :, None, ...] if scalar else arr

    if info.pooling == "none":
        if scalar:
            return np.log(rows("sigma_seg"))
        return rows(f"{prefix}_seg")
    g = np.log(rows("sigma_global")) if scalar else rows(f"{prefix}_global")
    mains = []
    designs = []
    if info.pooling == "additive" and structure.columns:
        designs = structure.design()
        for j, col in enumerate(structure.columns):
            main = rows(f"{prefix}_main__{col}")
            if info.learned_main[j]:
                main = main * rows(f"{prefix}_main_sd__{col}")[..., None]
            mains.append(main)
    int_raw = int_sd = None
    if f"{prefix}_int_raw" in raw:
        int_raw = rows(f"{prefix}_int_raw")
        int_sd = rows(f"{prefix}_int_sd")
    out = families.combine(
        np.where, g, mains, designs, int_raw, int_sd, np.asarray(centred, dtype=bool)
    )
    return np.asarray(out + np.zeros((1, n_seg)))


def cholesky_values(
    raw: xr.Dataset, suffix: str, k: int, cell_correlation: str = "shared"
) -> np.ndarray:
    """The Cholesky factor (chain, draw, K, K) of Omega_E or Omega_C (standardized)."""
    sd = np.asarray(raw[f"sd_{suffix}"].values, dtype=float)
    if k == 1:
        return sd[..., None]
    cpc = "cpc_e" if (suffix == "c" and cell_correlation == "shared") else f"cpc_{suffix}"
    u = np.asarray(raw[cpc].values, dtype=float)
    return np.asarray(sd[..., :, None] * corr_cholesky(2.0 * u - 1.0, k, np))


def bias_covariance(raw: xr.Dataset, design: str, m: int) -> np.ndarray:
    """Sigma_d (chain, draw, M, M) of a design's bias, standardized units."""
    sd = np.asarray(raw[bias_sd_name(design)].values, dtype=float)
    u = np.asarray(raw[bias_cpc_name(design)].values, dtype=float)
    low = sd[..., :, None] * corr_cholesky(2.0 * u - 1.0, m, np)
    return np.asarray(low @ np.swapaxes(low, -1, -2))


def outcome_experiment_sd(raw: xr.Dataset) -> np.ndarray:
    """The sd (chain, draw) of eta0_e, the experiment's long-term effect no proxy
    carries (standardized); zeros for a model without it (one cell per experiment,
    or a file saved before it existed)."""
    if OUTCOME_SD in raw:
        return np.asarray(raw[OUTCOME_SD].values, dtype=float)
    first = next(iter(raw.data_vars.values()))
    return np.zeros(first.shape[:2])


@dataclasses.dataclass(frozen=True)
class StdParameters:
    """Per-draw model parameters in standardized units, flattened over draws.

    loc (N, M, S), slope (N, K, S), sig2 (N, S), chol_c (N, K, K) and chol_e
    (N, M, M) with N = chains x draws; with time, S is the number of virtual
    (period, segment) pairs, v = p * S_seg + s, as ``FitData.param_segment``
    indexes them; chol_e is the factor of the experiment
    effects (eta0_e, eta_e), the outcome's own first
    (:func:`proxyscope.core.kernels.experiment_cholesky`). bias_cov (N, G, M,
    M): the bias covariance Sigma_d of each design group, group 0 (the
    randomized designs) zeros, group g the fit's ``bias_designs[g - 1]``.
    """

    loc: np.ndarray
    slope: np.ndarray
    sig2: np.ndarray
    chol_c: np.ndarray
    chol_e: np.ndarray
    bias_cov: np.ndarray

    @property
    def n_draws(self) -> int:
        return self.loc.shape[0]


def std_parameters(raw: xr.Dataset, info: ModelInfo) -> StdParameters:
    """All parameters of the likelihood, per draw, from the sampled draws."""
    k = info.n_proxies
    loc = family_values(raw, info, "loc")
    slope = family_values(raw, info, "slope")
    log_sigma = family_values(raw, info, "log_sigma")[:, :, 0, :]
    if len(info.periods) >= 2:
        w_loc, w_slope, w_sig = walk_shifts(raw, info.periods, k)
        loc, slope = expand(loc, w_loc), expand(slope, w_slope)
        log_sigma = expand(log_sigma[:, :, None, :], w_sig)[:, :, 0, :]
    chol_c = cholesky_values(raw, "c", k, info.cell_correlation)
    chol_e = experiment_cholesky(outcome_experiment_sd(raw), cholesky_values(raw, "e", k))
    n = loc.shape[0] * loc.shape[1]
    bias = np.zeros((n, 1 + len(info.bias_designs), k + 1, k + 1))
    for g, design in enumerate(info.bias_designs, start=1):
        bias[:, g] = bias_covariance(raw, design, k + 1).reshape(n, k + 1, k + 1)
    return StdParameters(
        bias_cov=bias,
        loc=np.ascontiguousarray(loc.reshape(n, *loc.shape[2:])),
        slope=np.ascontiguousarray(slope.reshape(n, *slope.shape[2:])),
        sig2=np.ascontiguousarray(np.exp(2.0 * log_sigma).reshape(n, -1)),
        chol_c=np.ascontiguousarray(chol_c.reshape(n, k, k)),
        chol_e=np.ascontiguousarray(chol_e.reshape(n, k + 1, k + 1)),
    )


def named_posterior(
    raw: xr.Dataset,
    info: ModelInfo,
    eta_std: np.ndarray | None = None,
    shared_std: np.ndarray | None = None,
) -> xr.Dataset:
    """The user-facing posterior: named dims, original units.

    ``eta_std`` (chain, draw, experiment, M) are recovered experiment
    effects in standardized units, the outcome's own first (see
    :mod:`proxyscope.model.recover`); ``shared_std`` the same shape, the
    experiments' recovered shared errors (``shared_error``, per metric), when
    the cells carry them.
    """
    structure = info.structure
    scales = np.asarray(info.scales)
    sy, sp = scales[0], scales[1:]
    k = info.n_proxies
    chain = raw.coords[dims.CHAIN].values
    draw = raw.coords[dims.DRAW].values
    cd = (dims.CHAIN, dims.DRAW)

    loc = family_values(raw, info, "loc")
    slope = family_values(raw, info, "slope")
    log_sigma = family_values(raw, info, "log_sigma")[:, :, 0, :]
    # With time the sampled values are the anchor period's; users read the latest's.
    last = [np.zeros(v.shape[:3]) for v in (loc, slope, log_sigma[:, :, None])]
    if len(info.periods) >= 2:
        last = [w[..., -1] for w in walk_shifts(raw, info.periods, k)]
        loc = loc + last[0][..., None]
        slope = slope + last[1][..., None]
        log_sigma = log_sigma + last[2]
    nu = loc[:, :, 0, :] * sy
    mu = np.swapaxes(loc[:, :, 1:, :] * sp[:, None], -1, -2)  # (c, d, S, K)
    beta = np.swapaxes(slope * (sy / sp)[:, None], -1, -2)
    sigma = np.exp(log_sigma) * sy
    alpha = nu - np.sum(beta * mu, axis=-1)

    seg = (*cd, dims.SEGMENT)
    segp = (*cd, dims.SEGMENT, dims.PROXY)
    out: dict[str, Any] = {
        "nu": (seg, nu),
        "mu": (segp, mu),
        "beta": (segp, beta),
        "sigma": (seg, sigma),
        "alpha": (seg, alpha),
    }
    coords: dict[str, Any] = {
        dims.CHAIN: chain,
        dims.DRAW: draw,
        dims.SEGMENT: list(structure.labels),
        dims.PROXY: list(info.proxies),
        dims.PROXY_: list(info.proxies),
    }

    if info.pooling != "none":
        loc_g = raw["loc_global"].values + last[0]
        out["nu_global"] = (cd, loc_g[:, :, 0] * sy)
        out["mu_global"] = ((*cd, dims.PROXY), loc_g[:, :, 1:] * sp)
        out["beta_global"] = ((*cd, dims.PROXY), (raw["slope_global"].values + last[1]) * (sy / sp))
        log_sigma_g = np.log(raw["sigma_global"].values) + last[2][:, :, 0]
        out["log_sigma_global"] = (cd, log_sigma_g + np.log(sy))
    if info.pooling == "additive":
        for j, col in enumerate(structure.columns):
            basis = structure.basis(j)
            coords[col] = list(structure.levels[j])
            for prefix in ("loc", "slope", "log_sigma"):
                main = np.asarray(raw[f"{prefix}_main__{col}"].values, dtype=float)
                if prefix == "log_sigma":
                    main = main[:, :, None, :]
                if info.learned_main[j]:
                    sd = np.asarray(raw[f"{prefix}_main_sd__{col}"].values, dtype=float)
                    main = main * (sd[:, :, None] if prefix == "log_sigma" else sd)[..., None]
                lev = families.level_effects(main, basis)  # (c, d, R, L)
                if prefix == "loc":
                    out[f"nu_main_{col}"] = ((*cd, col), lev[:, :, 0] * sy)
                    out[f"mu_main_{col}"] = (
                        (*cd, col, dims.PROXY),
                        np.swapaxes(lev[:, :, 1:] * sp[:, None], -1, -2),
                    )
                elif prefix == "slope":
                    out[f"beta_main_{col}"] = (
                        (*cd, col, dims.PROXY),
                        np.swapaxes(lev * (sy / sp)[:, None], -1, -2),
                    )
                else:
                    out[f"log_sigma_main_{col}"] = ((*cd, col), lev[:, :, 0])
    if "loc_int_sd" in raw:
        isd = raw["loc_int_sd"].values
        out["nu_interaction_sd"] = (cd, isd[:, :, 0] * sy)
        out["mu_interaction_sd"] = ((*cd, dims.PROXY), isd[:, :, 1:] * sp)
        out["beta_interaction_sd"] = ((*cd, dims.PROXY), raw["slope_int_sd"].values * (sy / sp))
        out["log_sigma_interaction_sd"] = (cd, raw["log_sigma_int_sd"].values)

    for suffix in ("e", "c"):
        chol = cholesky_values(raw, suffix, k, info.cell_correlation)
        cov_std = chol @ np.swapaxes(chol, -1, -2)
        sd_std = np.sqrt(np.einsum("...ii->...i", cov_std))
        corr = cov_std / (sd_std[..., :, None] * sd_std[..., None, :])
        out[f"sd_{suffix}"] = ((*cd, dims.PROXY), sd_std * sp)
        out[f"corr_{suffix}"] = ((*cd, dims.PROXY, dims.PROXY_), corr)
        out[f"omega_{suffix}"] = ((*cd, dims.PROXY, dims.PROXY_), cov_std * np.outer(sp, sp))

    if len(info.periods) >= 2:
        latest = {"nu": nu, "mu": mu, "beta": beta, "log_sigma": np.log(sigma)}
        top = None
        if info.pooling != "none":
            top = {
                "nu": out["nu_global"][1],
                "mu": out["mu_global"][1],
                "beta": out["beta_global"][1],
                "log_sigma": out["log_sigma_global"][1],
            }
        paths, path_coords = named_paths(raw, info.periods, info.proxies, scales, latest, top)
        out.update(paths)
        coords.update(path_coords)
    if OUTCOME_SD in raw:
        out[OUTCOME_SD] = (cd, np.asarray(raw[OUTCOME_SD].values, dtype=float) * sy)
    if info.bias_designs:
        m = k + 1
        cov = np.stack([bias_covariance(raw, d, m) for d in info.bias_designs], axis=2)
        sd_std = np.sqrt(np.einsum("...ii->...i", cov))
        coords[BIAS_DESIGN] = list(info.bias_designs)
        coords[dims.METRIC] = list(info.metrics)
        coords[dims.METRIC_] = list(info.metrics)
        out["bias_sd"] = ((*cd, BIAS_DESIGN, dims.METRIC), sd_std * scales)
        out["bias_corr"] = (
            (*cd, BIAS_DESIGN, dims.METRIC, dims.METRIC_),
            cov / (sd_std[..., :, None] * sd_std[..., None, :]),
        )
    if eta_std is not None:
        coords[dims.EXPERIMENT] = list(info.experiments)
        out["eta"] = ((*cd, dims.EXPERIMENT, dims.PROXY), eta_std[..., 1:] * sp)
        if OUTCOME_SD in raw:
            out["eta_outcome"] = ((*cd, dims.EXPERIMENT), eta_std[..., 0] * sy)
    if shared_std is not None:
        coords[dims.EXPERIMENT] = list(info.experiments)
        coords[dims.METRIC] = list(info.metrics)
        out[SHARED_ERROR] = ((*cd, dims.EXPERIMENT, dims.METRIC), shared_std * scales)
    return xr.Dataset(out, coords=coords)

"""ProxyFit: a fitted proxy model, its InferenceData, diagnostics and files."""

from __future__ import annotations

import json
import os
import warnings
from functools import cached_property
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from proxyscope import dims
from proxyscope._io import write_atomic
from proxyscope.core import checksum, hdf5
from proxyscope.data import cellfile
from proxyscope.data.cells import META_ATTR, CellEffects
from proxyscope.data.designs import OPTIONAL_VARIABLES
from proxyscope.errors import (
    ConvergenceWarning,
    IncompatibleFileError,
    ParameterError,
    ProxyscopeError,
)
from proxyscope.model import diagnostics as diag
from proxyscope.model import fitfile, recover
from proxyscope.model.fitdata import FitData, fit_data, model_effects
from proxyscope.model.fitfile import SAMPLED_GROUP
from proxyscope.model.posterior import SHARED_ERROR, ModelInfo, StdParameters, std_parameters
from proxyscope.model.prior_predictive import prior_predictive
from proxyscope.model.structure import SegmentStructure
from proxyscope.model.summary import coefficient_table
from proxyscope.options import DEFAULT_CI


class ProxyFit:
    """A fitted :class:`proxyscope.ProxyModel`.

    Attributes
    ----------
    idata : arviz.InferenceData
        ``posterior`` (named dims, original units: ``nu``, ``mu``, ``beta``,
        ``sigma``, ``alpha`` per segment; globals, main effects, interaction
        scales; ``sd_e``/``corr_e``/``omega_e`` and ``sd_c``/``corr_c``/
        ``omega_c``; ``sd_e_outcome``, the sd of the experiments' long-term
        effect that no proxy carries, when some experiment has two or more
        cells; recovered ``eta`` (and ``eta_outcome``) per experiment), ``sampled`` (the
        sampler's parameters, standardized units), ``log_likelihood``
        (``effect[cell]``: per-cell density given the recovered eta;
        ``experiment[experiment]``: per-experiment density with eta integrated
        out), ``observed_data``, ``constant_data`` (the CellEffects),
        ``sample_stats``; attributes record the package version, the model
        configuration (JSON), its hash, the sampler and its settings.
    """

    def __init__(self, idata: az.InferenceData) -> None:
        self._idata = idata
        attrs = idata.attrs
        self._info = ModelInfo.from_json(attrs["proxyscope_model_info"])

    # -- basic accessors ---------------------------------------------------
    @property
    def idata(self) -> az.InferenceData:
        return self._idata

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def outcome(self) -> str:
        return self._info.outcome

    @property
    def proxies(self) -> tuple[str, ...]:
        return self._info.proxies

    @property
    def segments(self) -> tuple[str, ...]:
        return self._info.structure.columns

    @property
    def structure(self) -> SegmentStructure:
        return self._info.structure

    @property
    def pooling(self) -> str:
        return self._info.pooling

    @property
    def posterior(self) -> xr.Dataset:
        return self._idata["posterior"]

    @property
    def config(self) -> dict[str, Any]:
        """The model configuration (pooling, priors, roles)."""
        return json.loads(self._idata.attrs["proxyscope_config"])

    @property
    def config_hash(self) -> str:
        """The hash of :attr:`config` (what a weights ledger records of the model)."""
        return str(self._idata.attrs.get("proxyscope_config_hash", ""))

    @property
    def data_fingerprint(self) -> str:
        """The fingerprint of the CellEffects the model was fitted on ("" if unknown)."""
        return str(self._idata.attrs.get("proxyscope_data_fingerprint", ""))

    @property
    def sampler(self) -> dict[str, Any]:
        """Sampler name, settings, seed, draws and timings."""
        return json.loads(self._idata.attrs["proxyscope_sampler"])

    @cached_property
    def effects(self) -> CellEffects:
        """The CellEffects the model was fitted on."""
        const = self._idata["constant_data"]
        names = [dims.EFFECT, dims.NOISE_COV, dims.N_TREAT, dims.N_CONTROL]
        names += [v for v in OPTIONAL_VARIABLES if v in const]
        data = xr.Dataset({name: const[name] for name in names})
        data.attrs[META_ATTR] = const.attrs[META_ATTR]
        return CellEffects(data)

    @cached_property
    def model_effects(self) -> CellEffects:
        """The cell effects the likelihood saw: :attr:`effects` with the fit's noise setting."""
        return model_effects(self.effects, self._info.noise)

    @cached_property
    def data(self) -> FitData:
        """Standardized data in the model's order (noise as the likelihood saw it)."""
        structure, cell_segment = SegmentStructure.from_effects(self.effects)
        timed = bool(self._info.periods)
        return fit_data(self.model_effects, cell_segment, timed, structure.n_segments)

    @cached_property
    def std(self) -> StdParameters:
        """Likelihood parameters per draw, standardized units."""
        return std_parameters(self._idata[SAMPLED_GROUP], self._info)

    @property
    def n_draws(self) -> int:
        post = self.posterior
        return int(post.sizes[dims.CHAIN] * post.sizes[dims.DRAW])

    # -- diagnostics -------------------------------------------------------
    def diagnostics(
        self, rhat_max: float = diag.RHAT_MAX, ess_min: float = diag.ESS_MIN
    ) -> diag.Diagnostics:
        """R-hat, bulk and tail ESS per parameter, divergences, tree depth, E-BFMI.

        Passes when R-hat <= ``rhat_max`` and bulk ESS >= ``ess_min`` for every
        parameter and there are no divergences.
        """
        key = (rhat_max, ess_min)
        cache: dict[tuple[float, float], diag.Diagnostics] = self.__dict__.setdefault(
            "_diag_cache", {}
        )
        if key not in cache:
            cache[key] = diag.compute(
                self.posterior,
                self._idata[SAMPLED_GROUP],
                self._idata["sample_stats"],
                rhat_max=rhat_max,
                ess_min=ess_min,
                sampler=self.sampler,
            )
        return cache[key]

    @property
    def trustworthy(self) -> bool:
        """False when the fit failed its diagnostics (every later output says so)."""
        return bool(json.loads(self._idata.attrs.get("proxyscope_trustworthy", "true")))

    def warn_if_untrustworthy(self, what: str) -> None:
        """Warn that ``what`` is computed from a fit that failed its diagnostics."""
        if not self.trustworthy:
            warnings.warn(
                f"{what} comes from a fit that FAILED its convergence diagnostics; "
                "treat it as untrustworthy (see fit.diagnostics()).",
                ConvergenceWarning,
                stacklevel=3,
            )

    # -- recovered quantities ----------------------------------------------
    def latent_moments(self, draw: int) -> tuple[np.ndarray, np.ndarray]:
        """Conditional mean (C, M) and covariance (C, M, M) of the cells' true effects.

        For one flattened posterior draw, original units, cells in the order
        of :attr:`effects`.
        """
        eta = self._eta_std()
        mean, cov = recover.latent_moments(self.std, self.data, eta, draw, self._shared_std())
        scales = self.data.scales
        inv = np.empty_like(self.data.order)
        inv[self.data.order] = np.arange(len(inv))
        mean = mean[inv] * scales
        cov = cov[inv] * np.outer(scales, scales)
        return mean, cov

    def latent_effects(
        self, n_draws: int | None = None, random_seed: int | None = None
    ) -> xr.DataArray:
        """Draws of every cell's true effects (tau_c, theta_c), original units.

        One draw from the Gaussian conditional per posterior draw (or per each
        of ``n_draws`` evenly spaced posterior draws). Dims (sample, cell, metric).
        """
        total = self.n_draws
        picks = np.arange(total) if n_draws is None else np.linspace(0, total - 1, n_draws)
        picks = np.unique(picks.astype(int))
        rng = np.random.default_rng(random_seed)
        out = np.empty((len(picks), self.effects.n_cells, len(self._info.metrics)))
        for row, i in enumerate(picks):
            mean, cov = self.latent_moments(int(i))
            out[row] = recover.draw_gaussian(mean, cov, rng)
        return xr.DataArray(
            out,
            dims=(dims.SAMPLE, dims.CELL, dims.METRIC),
            coords={
                dims.SAMPLE: picks,
                dims.CELL: np.arange(self.effects.n_cells),
                dims.METRIC: list(self._info.metrics),
                dims.EXPERIMENT: (dims.CELL, self.effects.experiment),
                dims.SEGMENT_LABEL: (dims.CELL, self.effects.segment_label),
            },
        )

    def _shared_std(self) -> np.ndarray | None:
        """Recovered shared errors of the experiments (draws, E, M), standardized;
        None when the cells carry none."""
        post = self.posterior
        if SHARED_ERROR not in post:
            return None
        values = post[SHARED_ERROR].transpose(dims.CHAIN, dims.DRAW, dims.EXPERIMENT, dims.METRIC)
        arr = np.asarray(values.values, dtype=float) / self.data.scales
        return arr.reshape(-1, arr.shape[2], arr.shape[3])

    def _eta_std(self) -> np.ndarray:
        """Recovered experiment effects (draws, E, M), standardized, the outcome's own first."""
        post = self.posterior
        eta = post["eta"].transpose(dims.CHAIN, dims.DRAW, dims.EXPERIMENT, dims.PROXY)
        arr = np.asarray(eta.values, dtype=float) / self.data.scales[1:]
        own = np.zeros(arr.shape[:3])
        if "eta_outcome" in post:
            values = post["eta_outcome"].transpose(dims.CHAIN, dims.DRAW, dims.EXPERIMENT).values
            own = np.asarray(values, dtype=float) / self.data.scales[0]
        arr = np.concatenate([own[..., None], arr], axis=-1)
        return arr.reshape(-1, arr.shape[2], arr.shape[3])

    # -- summaries ---------------------------------------------------------
    def summary(self, ci: float = DEFAULT_CI) -> pd.DataFrame:
        """Global and per-segment coefficients with equal-tailed intervals.

        For a fit with time, the latest period's relation (``attrs["period"]``;
        :func:`proxyscope.stability` gives every period).
        """
        return coefficient_table(self, ci=ci)

    def prior_predictive(
        self, draws: int = 500, random_seed: int | None = None
    ) -> az.InferenceData:
        """Prior draws and simulated cell effects from them (a prior predictive check).

        Returns InferenceData with ``prior`` (the sampled parameters) and
        ``prior_predictive`` (``effect[chain, draw, cell, metric]``, original
        units) next to ``observed_data``.
        """
        return prior_predictive(self, draws=draws, random_seed=random_seed)

    # -- files -------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the fit to NetCDF atomically; :func:`proxyscope.load` reads it back.

        The per-cell log likelihoods are written as float32 (the fit rounded them to
        single precision when it made them, so nothing is lost): the demo's file is
        80 MB instead of 111 MB. Everything else is written as computed (zlib). The
        file carries a checksum of everything in it, computed on what is written
        (attribute ``proxyscope_checksum``), which :func:`proxyscope.load` verifies.
        """
        target = hdf5.as_path(path, "ProxyFit.save")
        idata = fitfile.for_file(self._idata)
        return write_atomic(target, lambda tmp: idata.to_netcdf(tmp, engine="h5netcdf"), ".nc")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ProxyFit:
        """Read a file written by :meth:`save`, after checking it (see :mod:`.fitfile`).

        A file written before checksums loads with an
        :class:`~proxyscope.errors.UnverifiedFileWarning`; its stored verdict is then
        checked against the diagnostics of its draws (a fit whose draws fail them is
        marked untrustworthy whatever the file says).

        Raises
        ------
        IncompatibleFileError
            If the file is not a readable proxyscope fit, was written with another file
            format, or was altered after it was written: its checksum, its configuration
            hash or its data fingerprint does not match, a group, variable or attribute
            proxyscope reads is missing or malformed, or a posterior draw is NaN or
            infinite.
        """
        p = hdf5.as_path(path, "proxyscope.load")
        if not p.exists():
            raise ParameterError(f"proxyscope.load: no file at {str(p)!r}.")
        where = repr(str(p))
        idata, verified = fitfile.read(p)
        fit = cls(idata)
        meta = idata["constant_data"].attrs.get(META_ATTR)
        cellfile.check_meta(meta, f"{where}, group 'constant_data'")
        try:
            effects = fit.effects
        except ProxyscopeError as exc:
            raise IncompatibleFileError(
                f"{where}: its 'constant_data' group is not valid cell effects: {exc}"
            ) from None
        fitfile.check_data(idata, effects.fingerprint(), where)
        if not verified:
            extra = ""
            if fit.trustworthy and not fit.diagnostics().passed:
                idata.attrs[fitfile.TRUSTWORTHY_ATTR] = "false"
                extra = (
                    " Its draws FAIL the convergence diagnostics although the file does not "
                    "say so: the fit is treated as untrustworthy."
                )
            checksum.warn_unverified(where, "fit", extra=extra, stacklevel=3)
        return fit

    def __repr__(self) -> str:
        post = self.posterior
        segs = ", ".join(self.segments) if self.segments else "none"
        verdict = "passed" if self.trustworthy else "FAILED (untrustworthy)"
        return (
            f"<proxyscope.ProxyFit: pooling={self.pooling!r}, outcome={self.outcome!r}, "
            f"proxies={list(self.proxies)}, segments: {segs} "
            f"({self.structure.n_segments} segment cells), {self.effects.n_cells} cells, "
            f"{post.sizes[dims.CHAIN]} chains x {post.sizes[dims.DRAW]} draws; "
            f"diagnostics {verdict}>"
        )


def load(path: str | os.PathLike[str]) -> ProxyFit:
    """Load a fit saved with :meth:`ProxyFit.save`."""
    return ProxyFit.load(path)

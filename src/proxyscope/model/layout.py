"""The flat vector the sampler moves: its blocks, the arrays that describe it, its draws.

:mod:`proxyscope.core.density` evaluates the log prior and the coordinate maps
of a flat vector ``x`` described by two arrays (``ints``, ``floats``);
:mod:`proxyscope.model.layout_build` builds them for a model (segment
structure, pooling, priors, number of proxies, cell correlation, periods) and
its coordinates (:class:`~proxyscope.model.coordinates.Coordinates`). This
module describes the result (:class:`Layout`, its blocks and their names) and
turns draws of ``x`` into the model's named parameters (the fit's ``sampled`` group):
global values, main effects, interaction scales and standard variates,
scales and canonical partial correlations, in standardized units. Those
names do not depend on the coordinates the sampler used.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import xarray as xr

from proxyscope import dims
from proxyscope.core import density as dn
from proxyscope.model.coordinates import Coordinates
from proxyscope.model.structure import SegmentStructure

#: Dim of the canonical partial correlations, and of the interactions' axes.
CPC = "cpc"
AXIS = dims.INTERACTION_AXIS
FAMILY_PREFIX = ("loc", "slope", "log_sigma")
#: The sd of eta0_e, the experiment's long-term effect that no proxy carries.
OUTCOME_SD = "sd_e_outcome"
#: Dim of the canonical partial correlations of a design's bias (M = K + 1 metrics).
BIAS_CPC = "bias_cpc"
#: Dim of the relation's steps between consecutive periods (models with time).
PERIOD_STEP = "period_step"


def time_step_name(prefix: str) -> str:
    """Sampled name of a family's step scales over periods (``prefix``: loc, slope, log_sigma)."""
    return f"time_step__{prefix}"


def time_z_name(prefix: str) -> str:
    """Sampled name of a family's standardized steps over periods."""
    return f"time_z__{prefix}"


def time_drift_name(prefix: str) -> str:
    """Sampled name of a family's steady changes per period (drifts)."""
    return f"time_drift__{prefix}"


def bias_sd_name(design: str) -> str:
    """Sampled name of the per-metric sds of a design's bias (standardized units)."""
    return f"bias_sd__{design}"


def bias_cpc_name(design: str) -> str:
    """Sampled name of the CPCs of a design's bias correlation (shifted to (0, 1))."""
    return f"bias_cpc__{design}"


def contrast_dim(column: str) -> str:
    return f"{column}_contrast"


def cpc_shapes(k: int, eta: float) -> np.ndarray:
    """Beta(b, b) shapes of the canonical partial correlations (row-major, i > j).

    With CPC z_ij = 2 u_ij - 1, u_ij ~ Beta(b_j, b_j), b_j = eta + (K - 2 - j) / 2,
    the correlation matrix whose Cholesky factor is built from them row by
    row (:func:`proxyscope.core.density._corr_cholesky`) is LKJ(eta)
    distributed (Lewandowski, Kurowicka and Joe, 2009, the vine method).
    """
    return np.array([eta + (k - 2 - j) / 2.0 for i in range(1, k) for j in range(i)])


@dataclasses.dataclass(frozen=True)
class Block:
    """A stretch of the flat vector: ``rows x cols`` values of one variable.

    ``kind``: "value" (a block of a family: global, main effect,
    interaction or per-segment values, mapped through the coordinates),
    "log_scale" (a HalfNormal scale, sampled as its log) or "logit_cpc"
    (canonical partial correlations, sampled as the logit of (z + 1) / 2).
    """

    name: str
    offset: int
    rows: int
    cols: int
    kind: str
    family: int = -1
    column: int = -1  # segment column of a main effect block, -1 otherwise
    interaction: bool = False
    scale_offset: int = -1  # offset of the block's learned scale, -1 if fixed
    prior_sd: float = 1.0  # of a HalfNormal scale (log_scale blocks), for the start

    @property
    def size(self) -> int:
        return self.rows * self.cols


@dataclasses.dataclass(frozen=True)
class Layout:
    """The flat vector of one model and the arrays that describe it to the density."""

    ints: np.ndarray
    floats: np.ndarray
    blocks: tuple[Block, ...]
    n_dim: int
    coordinates: Coordinates
    structure: SegmentStructure
    metrics: tuple[str, ...]
    proxies: tuple[str, ...]
    pooling: str

    # -- from draws of x to named parameters -------------------------------
    def named(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """The model's named parameters from draws ``x`` (..., n_dim), standardized units.

        Main effects with a learned scale and interactions are returned as
        standard variates (value / scale), scales and correlations on their
        natural scale; shapes drop the row axis of the one-row log-sigma
        family, as :mod:`proxyscope.model.posterior` reads them.
        """
        x = np.asarray(x, dtype=float)
        lead = x.shape[:-1]
        out: dict[str, np.ndarray] = {}
        rot = self.coordinates.rotation
        for block in self.blocks:
            raw = x[..., block.offset : block.offset + block.size]
            if block.kind == "log_scale":
                value = np.exp(raw)
            elif block.kind == "logit_cpc":
                value = 1.0 / (1.0 + np.exp(-raw))
            else:
                value = self._values(x, block, rot)
            out[block.name] = value.reshape(tuple(lead) + self._shape(block))
            if block.interaction and block.kind == "value":
                # The segment deviations the axes give, as standard variates.
                per_segment = np.einsum("...rc,sc->...rs", value, self.coordinates.basis)
                shape = (
                    (self.structure.n_segments,)
                    if block.family == dn.LOG_SIGMA
                    else (block.rows, self.structure.n_segments)
                )
                out[_raw_name(block)] = per_segment.reshape(tuple(lead) + shape)
        return out

    def _values(self, x: np.ndarray, block: Block, rot: np.ndarray) -> np.ndarray:
        u = x[..., block.offset : block.offset + block.size].reshape(
            *x.shape[:-1], block.rows, block.cols
        )
        if block.family == dn.LOG_SIGMA and block.name in ("sigma_global", "sigma_seg"):
            return np.exp(u)
        b = np.einsum("rq,...qc->...rc", rot, u) if block.family == dn.SLOPE else u
        if block.scale_offset >= 0:
            # Stored as standard variates: b / scale = scale ** (w - 1) * rotated u.
            lam = x[..., block.scale_offset : block.scale_offset + block.rows]
            w = self._weights(block)
            b = b * np.exp((w - 1.0) * lam[..., :, None])
        return np.asarray(b)

    def _weights(self, block: Block) -> np.ndarray:
        """(rows, cols) or (rows, 1) partial centring weights of a block with a learned scale."""
        c = self.coordinates
        if block.interaction:
            return c.interaction[block.family]
        return np.broadcast_to(c.main[block.family][block.column][:, None], (block.rows, 1))

    def _shape(self, block: Block) -> tuple[int, ...]:
        if block.name.startswith("time_"):
            scalar = block.name.endswith("log_sigma")
            if block.kind == "log_scale" or block.name.startswith("time_drift"):
                return () if scalar else (block.rows,)
            return (block.cols,) if scalar else (block.rows, block.cols)
        if block.name.startswith("bias_"):
            return (block.rows * block.cols,)
        if block.name == OUTCOME_SD:
            return ()
        if block.family == dn.LOG_SIGMA:
            if block.kind == "log_scale":
                return ()
            return () if block.name == "sigma_global" else (block.cols,)
        if block.kind == "logit_cpc":
            return (block.cols,)
        if block.cols == 1 and block.kind == "log_scale":
            return (block.rows,)
        if block.name.endswith("_global"):
            return (block.rows,)
        return (block.rows, block.cols)

    def dims_of(self, block: Block) -> tuple[str, ...]:
        """Named dims of a block's variable (after the chain and draw dims)."""
        if block.name.startswith("time_"):
            walk_row: tuple[str, ...] = ()
            if block.name.endswith("__loc"):
                walk_row = (dims.METRIC,)
            elif block.name.endswith("__slope"):
                walk_row = (dims.PROXY,)
            if block.kind == "log_scale" or block.name.startswith("time_drift"):
                return walk_row
            return (*walk_row, PERIOD_STEP)
        if block.name.startswith("bias_"):
            return (dims.METRIC,) if block.kind == "log_scale" else (BIAS_CPC,)
        if block.kind == "logit_cpc":
            return (CPC,)
        if block.name == OUTCOME_SD:
            return ()
        if block.name in ("sd_e", "sd_c"):
            return (dims.PROXY,)
        if block.family == dn.LOG_SIGMA:
            if not self._shape(block):
                return ()
            if block.interaction:
                return (AXIS,)
            if block.name == "sigma_seg":
                return (dims.SEGMENT,)
            return (contrast_dim(self.structure.columns[block.column]),)
        row = dims.METRIC if block.family == dn.LOC else dims.PROXY
        if block.kind == "log_scale" or block.name.endswith("_global"):
            return (row,)
        if block.column >= 0:
            return (row, contrast_dim(self.structure.columns[block.column]))
        if block.interaction:
            return (row, AXIS)
        return (row, dims.SEGMENT)

    def dataset(self, x: np.ndarray) -> xr.Dataset:
        """Draws ``x`` (chain, draw, n_dim) as the named ``sampled`` dataset."""
        named = self.named(x)
        coords: dict[str, Any] = {
            dims.CHAIN: np.arange(x.shape[0]),
            dims.DRAW: np.arange(x.shape[1]),
            dims.METRIC: list(self.metrics),
            dims.PROXY: list(self.proxies),
            dims.SEGMENT: list(self.structure.labels),
        }
        k = len(self.proxies)
        if k > 1:
            coords[CPC] = list(range(k * (k - 1) // 2))
        coords[BIAS_CPC] = list(range((k + 1) * k // 2))
        for j, col in enumerate(self.structure.columns):
            coords[contrast_dim(col)] = list(range(len(self.structure.levels[j]) - 1))
        data = {
            block.name: ((dims.CHAIN, dims.DRAW, *self.dims_of(block)), named[block.name])
            for block in self.blocks
        }
        for block in self.blocks:
            if block.interaction and block.kind == "value":
                row = () if block.family == dn.LOG_SIGMA else self.dims_of(block)[:1]
                data[_raw_name(block)] = (
                    (dims.CHAIN, dims.DRAW, *row, dims.SEGMENT),
                    named[_raw_name(block)],
                )
        coords[AXIS] = list(range(self.coordinates.basis.shape[1]))
        steps = [b.cols for b in self.blocks if b.name.startswith("time_z")]
        if steps:
            coords[PERIOD_STEP] = list(range(steps[0]))
        used = {d for value in data.values() for d in value[0]}
        return xr.Dataset(data, coords={c: v for c, v in coords.items() if c in used})

    # -- where the sampler starts ------------------------------------------
    def initial_point(self, rng: np.random.Generator) -> np.ndarray:
        """A start: values and standard variates near 0, scales near their prior
        mean, correlations near 0, each jittered by U(-1, 1) (as PyMC's default
        initialisation does in the unconstrained space)."""
        x = np.zeros(self.n_dim)
        for block in self.blocks:
            if block.kind == "log_scale":
                mean = block.prior_sd * np.sqrt(2.0 / np.pi)
                x[block.offset : block.offset + block.size] = np.log(mean)
        return x + rng.uniform(-1.0, 1.0, self.n_dim)


def _raw_name(block: Block) -> str:
    return block.name.replace("_int_z", "_int_raw")

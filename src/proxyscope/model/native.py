"""The compiled log posterior of one dataset, as the samplers take it.

:class:`NativeDensity` binds a model's flat-vector layout
(:mod:`proxyscope.model.layout`) to a dataset's standardized cells and to
the compiled C function of the log posterior (:mod:`proxyscope.core.native`,
generated once per number of proxies and cached on disk). nutpie calls that
function directly (:meth:`NativeDensity.nutpie_model`); PyMC's NUTS and the
tests call it through ctypes (:meth:`NativeDensity.logp_and_grad`,
:class:`FlatLogp`).
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytensor.tensor as pt
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from proxyscope.core import density as dn
from proxyscope.core.codegen import compile_sampler_code, is_compiled, load_posterior_module
from proxyscope.core.kernels import pack_cells
from proxyscope.core.native import DataTable
from proxyscope.model.fitdata import FitData
from proxyscope.model.layout import Layout

#: Name of the sampled flat vector in a sampler's raw output.
FLAT = "x"
FLAT_DIM = "unconstrained_parameter"

_DOUBLE_P = ctypes.POINTER(ctypes.c_double)


#: What a first compile takes on a 2-core machine, for the notice (measured
#: with the outcome's own experiment effect in the kernel: 28.4-30.2 s for 4
#: proxies, ``benchmarks/bench_model.py`` case ``cold``, on a day the code
#: before it took 25.4 s; 13.8 s for that code on an idle machine).
COLD_COMPILE_SECONDS = 30


def load_density(n_proxies: int, announce: bool = True, shared: bool = False) -> None:
    """Load (or, the first time on this machine, compile) the log posterior's
    code for ``n_proxies`` proxies, saying so when it is a compile; ``shared``:
    the code for histories whose experiments' cells share an error."""
    kind = "posterior_shared" if shared else "posterior"
    if announce and not is_compiled(kind, n_proxies):
        print(
            f"proxyscope: compiling the sampler's code for {n_proxies} "
            f"prox{'y' if n_proxies == 1 else 'ies'} (once per machine; about "
            f"{COLD_COMPILE_SECONDS} s)...",
            file=sys.stderr,
            flush=True,
        )
    compile_sampler_code(n_proxies, shared)


def kernel_segments(
    ints: np.ndarray, cell_segment: np.ndarray, cell_group: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The layout's ints with the kernel segments' table appended, and each cell's one.

    A kernel segment is a (segment, design group) pair present in the data
    (with time, the segment is the virtual (period, segment) one): the
    likelihood kernel gives its cells the segment's parameters and the
    group's bias covariance (:func:`proxyscope.core.density.bias_forward`).
    """
    pairs = np.stack([cell_segment, cell_group], axis=1)
    unique, kseg = np.unique(pairs, axis=0, return_inverse=True)
    table = np.concatenate([[len(unique)], unique[:, 0], unique[:, 1]]).astype(np.int64)
    out = np.concatenate([ints, table]).astype(np.int64)
    out[dn.H_KSEG] = len(ints)
    return out, np.ascontiguousarray(kseg.reshape(-1), dtype=np.int64)


class NativeDensity:
    """The log posterior (and gradient) of one model on one dataset."""

    def __init__(self, layout: Layout, data: FitData) -> None:
        self.layout = layout
        self.data = data
        k = len(layout.proxies)
        shared = data.shared_cov is not None
        self._module = load_posterior_module(k, shared)
        ints, seg = layout.ints, data.param_segment
        if data.bias_designs:
            ints, seg = kernel_segments(layout.ints, data.param_segment, data.groups)
        self.table = DataTable(
            layout.n_dim,
            ints,
            layout.floats,
            pack_cells(data.d, data.own_cov),
            seg,
            data.cell_experiment,
            data.n_experiments,
            data.chol_u,
        )
        self._ctypes_fn = self._module.posterior_cfunc.ctypes

    @property
    def n_dim(self) -> int:
        return self.layout.n_dim

    def logp_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Log posterior density of ``x`` (up to a constant that does not depend on
        the parameters) and its gradient; ``-inf`` where a covariance is not
        positive definite."""
        point = np.ascontiguousarray(x, dtype=np.float64)
        if point.shape != (self.n_dim,):
            raise ValueError(f"expected a point of shape ({self.n_dim},); got {point.shape}")
        grad = np.zeros(self.n_dim)
        lp = np.zeros(1)
        code = self._ctypes_fn(
            self.n_dim,
            point.ctypes.data_as(_DOUBLE_P),
            grad.ctypes.data_as(_DOUBLE_P),
            lp.ctypes.data_as(_DOUBLE_P),
            ctypes.c_void_p(self.table.address),
        )
        if code == 4 or not np.isfinite(lp[0]):
            return -np.inf, np.zeros(self.n_dim)
        return float(lp[0]), grad

    def initial_point(self, seed: int) -> np.ndarray:
        return self.layout.initial_point(np.random.default_rng(seed))

    def nutpie_model(self) -> Any:
        """A nutpie model that calls the compiled log posterior directly.

        It is nutpie's own model class for compiled PyMC models, given this
        function pointer and data table instead of code compiled from a
        PyTensor graph; the stored draw is the flat vector itself.
        """
        from nutpie.compile_pymc import CompiledPyMCModel

        n = self.n_dim
        names = [f"{b.name}[{i}]" for b in self.layout.blocks for i in range(b.size)]
        table = self.table
        return CompiledPyMCModel(
            _n_dim=n,
            dims={FLAT: (FLAT_DIM,)},
            _coords={FLAT_DIM: pd.Index(names)},
            _shapes={FLAT: (n,)},
            compiled_logp_func=self._module.posterior_cfunc,
            compiled_expand_func=self._module.identity_cfunc,
            initial_point_func=self.initial_point,
            # Keeps the arrays the table points to alive as long as the model.
            shared_data={
                "ints": table.ints,
                "floats": table.floats,
                "dat": table.dat,
                "seg": table.seg,
                "cexp": table.cexp,
                "chol_u": table.chol_u,
            },
            user_data=table.table,
            n_expanded=n,
            shape_info=([FLAT], [slice(0, n)], [(n,)]),
            logp_func=None,
            expand_func=None,
        )


class FlatLogp(Op):
    """PyTensor Op: the log posterior of a flat vector (for PyMC's own NUTS)."""

    __props__ = ("density",)

    def __init__(self, density: NativeDensity) -> None:
        self.density = density
        super().__init__()

    def make_node(self, *inputs: Any) -> Apply:
        x = pt.as_tensor_variable(inputs[0]).astype("float64")
        return Apply(self, [x], [pt.dscalar(), pt.dvector()])

    def perform(self, node: Apply, inputs: Sequence[Any], output_storage: list[Any]) -> None:
        lp, grad = self.density.logp_and_grad(inputs[0])
        output_storage[0][0] = np.asarray(lp)
        output_storage[1][0] = grad

    def grad(self, inputs: Sequence[Any], output_grads: Sequence[Any]) -> list[Any]:
        return [output_grads[0] * self(*inputs)[1]]  # type: ignore[index]

    def connection_pattern(self, node: Apply) -> list[list[bool]]:
        return [[True, False]]

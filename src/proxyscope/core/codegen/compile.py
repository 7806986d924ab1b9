"""Compiling the sampler's code for K proxies, with a helper process on a cold cache."""

from __future__ import annotations

import subprocess
import sys
from types import ModuleType

from proxyscope.core.codegen.load import _load, is_compiled, load_posterior_module

_CHILD = (
    "import sys; from proxyscope.core.codegen import load_passes; load_passes(int(sys.argv[1]))"
)


def compile_sampler_code(k: int, shared: bool = False) -> None:
    """Load the sampler's compiled code for K proxies, compiling what is missing.

    ``shared``: the code for histories whose experiments' cells share an error
    (compiled in this process only, the first time such a history is fitted).

    A cold compile splits the work across two processes: a helper process
    compiles the two per-cell passes (half of the work, and the only part
    that needs LLVM's SLP vectoriser) while this one compiles the generic
    prior code, the sums and the small kernels; then this one links the C
    entry point, loading the passes from numba's on-disk cache. Measured on
    2 cores: see ``benchmarks/bench_model.py``, case ``cold``. If the helper
    cannot run, everything is compiled here.
    """
    if shared:
        load_posterior_module(k, shared=True)
        return
    if is_compiled("posterior", k):
        load_posterior_module(k)
        return
    helper = None
    if not is_compiled("passes", k):
        try:
            helper = subprocess.Popen(
                [sys.executable, "-c", _CHILD, str(k)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        except OSError:  # no process to spare: compile here
            helper = None
    _compile_generic()
    reduce = _load("reduce", k)
    _compile_reduce(reduce)
    if helper is not None:
        helper.communicate()
    load_posterior_module(k)


def _compile_generic() -> None:
    """Compile the code every K shares, for the argument types the C entry point passes."""
    from numba import types

    from proxyscope.core import density, kernels, native

    f1, i1 = types.float64[::1], types.int64[::1]
    f2, f3 = types.float64[:, ::1], types.float64[:, :, ::1]
    density.prior_forward.compile((f1, f1, i1, f1))
    density.likelihood_back.compile((f1, f1, i1, f1, f2, f2, f1, f2, f2))
    native.table_arrays.compile((types.voidptr,))
    kernels.segment_covariances.compile((f2, f1, f2))
    kernels.chain_rule.compile((f2, f2, f2, f3, f2, f2))


def _compile_reduce(module: ModuleType) -> None:
    from numba import types

    f1, i1, b1 = types.float64[::1], types.int64[::1], types.boolean[::1]
    f2, f3 = types.float64[:, ::1], types.float64[:, :, ::1]
    module.blocked_index.compile((i1, types.int64))
    module.reduce_experiments_k.compile((i1, types.int64, f3))
    module.reduce_segments_k.compile((i1, types.int64, f3))
    module.experiment_step_k.compile((f3, f2, f2, f1, b1, types.boolean))

"""Generate the likelihood kernel's loops for a given K (number of proxies).

Why generate code: each cell needs a Cholesky factor, an inverse and a few
products of (K+1) x (K+1) matrices. Written as loops over matrix entries with
the cell loop innermost, every step is a pass through memory; written cell by
cell with small arrays, the work is latency-bound. Straight-line scalar code
for one cell keeps every intermediate in registers, and written once per lane
of a block of ``LANES`` cells it is packed into SIMD instructions by LLVM's SLP
vectoriser (see ``LANES`` and :func:`proxyscope.core.kernels.lanes_jit`). It
needs K fixed, so it is generated once per K, written to a file in a cache
directory (so numba's on-disk cache works) and imported.

The generated modules, one module here each:

- :mod:`~proxyscope.core.codegen.passes`: the per-cell passes ``pass1`` and
  ``pass2``;
- :mod:`~proxyscope.core.codegen.reduce` (with
  :mod:`~proxyscope.core.codegen.experiment`): the sums over experiments and
  segments and the integration of eta_e;
- :mod:`~proxyscope.core.codegen.kernel`: ``logp`` and
  ``experiment_posterior``, which join them;
- :mod:`~proxyscope.core.codegen.posterior`: the log posterior's C entry
  points.

:mod:`~proxyscope.core.codegen.packing` holds the packed-triangle indices and
the work arrays' row layout, :mod:`~proxyscope.core.codegen.identity` the
names and cache paths of generated modules,
:mod:`~proxyscope.core.codegen.load` their loading and
:mod:`~proxyscope.core.codegen.compile` the compilation of a sampler's code.

The chain rule back to the segment parameters is ordinary code in
:mod:`proxyscope.core.kernels`.
"""

from proxyscope.core.codegen.compile import compile_sampler_code
from proxyscope.core.codegen.identity import CODEGEN_VERSION, cache_dir
from proxyscope.core.codegen.kernel import generate_source
from proxyscope.core.codegen.load import (
    is_compiled,
    load_kernel_module,
    load_passes,
    load_posterior_module,
    logp_kernel,
    proxy_model_logp,
)
from proxyscope.core.codegen.packing import layout, packed
from proxyscope.core.codegen.passes import passes_source
from proxyscope.core.codegen.posterior import posterior_source
from proxyscope.core.codegen.reduce import reduce_source

__all__ = [
    "CODEGEN_VERSION",
    "cache_dir",
    "compile_sampler_code",
    "generate_source",
    "is_compiled",
    "layout",
    "load_kernel_module",
    "load_passes",
    "load_posterior_module",
    "logp_kernel",
    "packed",
    "passes_source",
    "posterior_source",
    "proxy_model_logp",
    "reduce_source",
]

"""Loading the generated modules: written to the cache directory once, imported by name.

Each kind of module (``passes``, ``reduce``, ``kernel``, ``posterior``) is
generated for K proxies, written under the name its source gives it
(:mod:`proxyscope.core.codegen.identity`) and imported once per process;
numba's on-disk cache keeps its compiled code. :func:`proxy_model_logp` calls
the loaded kernel.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

from proxyscope.core.codegen.identity import _marker, _module_path
from proxyscope.core.codegen.kernel import generate_source
from proxyscope.core.codegen.passes import passes_source
from proxyscope.core.codegen.posterior import posterior_source
from proxyscope.core.codegen.reduce import reduce_source


def load_kernel_module(k: int, shared: bool = False) -> ModuleType:
    """The generated likelihood kernel for K proxies (generated, written and imported
    once); ``shared``: the one that also integrates each experiment's shared error."""
    if k < 1:
        raise ValueError(f"codegen: K must be >= 1; got {k}.")
    kind = "_shared" if shared else ""
    _load(f"passes{kind}", k)  # imported by name from the kernel module
    _load(f"reduce{kind}", k)
    return _load(f"kernel{kind}", k)


def load_posterior_module(k: int, shared: bool = False) -> ModuleType:
    """The log posterior's compiled C entry points for K proxies (``posterior_cfunc``,
    ``identity_cfunc``)."""
    load_kernel_module(k, shared)  # the posterior module imports it by name (and checks K)
    return _load("posterior_shared" if shared else "posterior", k)


_LOADED: dict[tuple[str, int], ModuleType] = {}


def is_compiled(kind: str, k: int) -> bool:
    """Whether the ``kind`` module for K proxies is loaded in this process or was
    compiled on this machine before (so loading it is quick)."""
    if (kind, k) in _LOADED:
        return True
    if kind in _PARTS and not all(is_compiled(part, k) for part in _PARTS[kind]):
        return False
    try:
        _, path = _module_path(kind, k, _SOURCES[kind](k))
    except Exception:  # pragma: no cover - a broken cache directory means "compile"
        return False
    return _marker(path).exists()


_PARTS = {
    "kernel": ("passes", "reduce"),
    "posterior": ("kernel",),
    "kernel_shared": ("passes_shared", "reduce_shared"),
    "posterior_shared": ("kernel_shared",),
}


def _load(kind: str, k: int) -> ModuleType:
    key = (kind, k)
    if key in _LOADED:
        return _LOADED[key]
    source = _SOURCES[kind](k)
    name, path = _module_path(kind, k, source)
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != source:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            fh.write(source)
        os.replace(tmp, path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - importlib contract
        raise ImportError(f"codegen: cannot import generated module {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    _LOADED[key] = module
    # A marker that the compiled code is in numba's cache (for is_compiled).
    _marker(path).touch()
    return module


#: The source of each kind of generated module, by number of proxies.
_SOURCES: dict[str, Callable[[int], str]] = {
    "passes": passes_source,
    "reduce": reduce_source,
    "kernel": generate_source,
    "posterior": posterior_source,
    "passes_shared": lambda k: passes_source(k, shared=True),
    "reduce_shared": lambda k: reduce_source(k, shared=True),
    "kernel_shared": lambda k: generate_source(k, shared=True),
    "posterior_shared": lambda k: posterior_source(k, shared=True),
}


def load_passes(k: int) -> ModuleType:
    """The per-cell passes for K proxies (compiled on import; a helper process's job)."""
    return _load("passes", k)


def proxy_model_logp(
    dat: np.ndarray,
    seg: np.ndarray,
    cexp: np.ndarray,
    n_exp: int,
    loc: np.ndarray,
    beta: np.ndarray,
    sig2: np.ndarray,
    chol_c: np.ndarray,
    chol_e: np.ndarray,
    want_grad: bool,
    v_add: np.ndarray | None = None,
    chol_u: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Log likelihood per experiment and the gradient of its sum.

    Parameters
    ----------
    dat : (blocks, M (M + 1) / 2 + M, LANES) data from :func:`pack_cells`.
    seg, cexp : (C,) int64 segment and experiment index of every cell; cells
        must be sorted by experiment (``cexp`` non-decreasing).
    n_exp : number of experiments.
    loc : (M, S) segment means, row 0 the long-term effect nu_s, then mu_s.
    beta : (K, S) segment slopes.
    sig2 : (S,) residual variances sigma_s^2.
    chol_c : (K, K) lower Cholesky factor of Omega_C.
    chol_e : (M, M) lower Cholesky factor of the experiment effects'
        covariance, the outcome's own effect first (see
        :func:`proxyscope.core.kernels.experiment_cholesky`).
    want_grad : compute the gradients (otherwise zeros).
    v_add : (M (M + 1) / 2, S) a covariance added to the cells of each segment
        (packed lower triangle; the design-bias terms), default zeros.
    chol_u : (E, M, M) lower Cholesky factors of each experiment's shared
        error u_e, added to every cell of the experiment and integrated with
        eta_e (the cells' ``S_c`` are then each cell's own part); None: none.

    Returns
    -------
    lp (E,), then the gradients of ``lp.sum()`` with respect to loc (M, S),
    beta (K, S), sig2 (S,), chol_c (K, K) and chol_e (M, M) (lower
    triangles), and with respect to each segment's covariance (packed, as
    ``v_add``). An experiment with a cell whose covariance is not positive
    definite gets ``-inf``.
    """
    m = beta.shape[0] + 1
    if v_add is None:
        v_add = np.zeros((m * (m + 1) // 2, loc.shape[1]))
    if chol_u is not None:
        return logp_kernel(beta.shape[0], shared=True)(
            dat, seg, cexp, n_exp, loc, beta, sig2, chol_c, chol_e, chol_u, v_add, want_grad
        )
    return logp_kernel(beta.shape[0])(
        dat, seg, cexp, n_exp, loc, beta, sig2, chol_c, chol_e, v_add, want_grad
    )


def logp_kernel(k: int, shared: bool = False) -> Any:
    """The compiled likelihood kernel for K proxies (same signature as
    :func:`proxy_model_logp`, callable from numba code; with ``shared``,
    ``chol_u`` comes after ``chol_e``)."""
    return load_kernel_module(k, shared).logp

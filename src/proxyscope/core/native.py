"""Handing the compiled log posterior to a sampler as a C function.

nutpie calls the log density through a C function pointer
``int64 f(uint64 dim, double *x, double *grad, double *logp, void *data)``.
The data pointer addresses an int64 table with the address and shape of
every array the density reads (:data:`TABLE_FIELDS`); :func:`table_arrays`
turns it back into arrays inside compiled code. The C functions themselves
are compiled with the likelihood kernel of each number of proxies
(:mod:`proxyscope.core.codegen`) and cached on disk, so no code is compiled
per dataset.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

#: The C signature nutpie calls for the log density and its gradient, and the
#: one of the "expand" function that turns a point into the stored draw.
LOGP_SIGNATURE = types.int64(
    types.uint64,
    types.CPointer(types.double),
    types.CPointer(types.double),
    types.CPointer(types.double),
    types.voidptr,
)
EXPAND_SIGNATURE = types.int64(
    types.uint64,
    types.uint64,
    types.CPointer(types.double),
    types.CPointer(types.double),
    types.voidptr,
)

#: Entries of the data table, in order.
TABLE_FIELDS = (
    "n_dim",
    "ints_address",
    "ints_size",
    "floats_address",
    "floats_size",
    "dat_address",
    "dat_blocks",
    "dat_rows",
    "dat_lanes",
    "seg_address",
    "seg_size",
    "cexp_address",
    "cexp_size",
    "n_experiments",
    "chol_u_address",
    "chol_u_experiments",
    "chol_u_rows",
)
TABLE_SIZE = len(TABLE_FIELDS)


@intrinsic
def _pointer(typingctx, address):
    """An integer address as a ``void *`` (for ``numba.carray``)."""
    sig = types.voidptr(address)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return sig, codegen


@numba.njit(cache=True, nogil=True)
def table_arrays(table_ptr):
    """The arrays a data table addresses: ints, floats, dat, seg, cexp, n_exp, n_dim."""
    t = numba.carray(table_ptr, (TABLE_SIZE,), np.int64)
    ints = numba.carray(_pointer(t[1]), (t[2],), np.int64)
    floats = numba.carray(_pointer(t[3]), (t[4],), np.float64)
    dat = numba.carray(_pointer(t[5]), (t[6], t[7], t[8]), np.float64)
    seg = numba.carray(_pointer(t[9]), (t[10],), np.int64)
    cexp = numba.carray(_pointer(t[11]), (t[12],), np.int64)
    return ints, floats, dat, seg, cexp, t[13], t[0]


@numba.njit(cache=True, nogil=True)
def table_shared(table_ptr):
    """The Cholesky factors (E, M, M) of the experiments' shared errors a table addresses."""
    t = numba.carray(table_ptr, (TABLE_SIZE,), np.int64)
    return numba.carray(_pointer(t[14]), (t[15], t[16], t[16]), np.float64)


class DataTable:
    """The table of addresses for one dataset, keeping its arrays alive."""

    def __init__(
        self,
        n_dim: int,
        ints: np.ndarray,
        floats: np.ndarray,
        dat: np.ndarray,
        seg: np.ndarray,
        cexp: np.ndarray,
        n_experiments: int,
        chol_u: np.ndarray | None = None,
    ) -> None:
        self.ints = np.ascontiguousarray(ints, dtype=np.int64)
        self.floats = np.ascontiguousarray(floats, dtype=np.float64)
        self.dat = np.ascontiguousarray(dat, dtype=np.float64)
        self.seg = np.ascontiguousarray(seg, dtype=np.int64)
        self.cexp = np.ascontiguousarray(cexp, dtype=np.int64)
        self.n_experiments = int(n_experiments)
        self.n_dim = int(n_dim)
        # The shared errors' factors (E, M, M); one unused zero without them.
        self.chol_u = np.ascontiguousarray(
            np.zeros((1, 1, 1)) if chol_u is None else chol_u, dtype=np.float64
        )
        u_shape = (0, 0) if chol_u is None else self.chol_u.shape[1:]
        self.table = np.array(
            [
                self.n_dim,
                self.ints.ctypes.data,
                self.ints.size,
                self.floats.ctypes.data,
                self.floats.size,
                self.dat.ctypes.data,
                *self.dat.shape,
                self.seg.ctypes.data,
                self.seg.size,
                self.cexp.ctypes.data,
                self.cexp.size,
                self.n_experiments,
                self.chol_u.ctypes.data,
                self.chol_u.shape[0] if chol_u is not None else 0,
                u_shape[0],
            ],
            dtype=np.int64,
        )
        assert self.table.size == TABLE_SIZE

    @property
    def address(self) -> int:
        return int(self.table.ctypes.data)

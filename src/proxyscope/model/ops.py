"""PyTensor Op for the proxy model's marginal likelihood.

The Op wraps :func:`proxyscope.core.codegen.proxy_model_logp`, which returns
the log likelihood and its gradient in one pass; the gradient of the Op reads
the extra outputs of the same node, so the small-matrix algebra is never done
twice. It is the likelihood of the declarative PyMC model
(:func:`proxyscope.model.builder.build_model`: prior predictive draws, and the
reference the compiled log posterior is tested against); the samplers call
the compiled log posterior of :mod:`proxyscope.model.native` instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from proxyscope.core.codegen import proxy_model_logp

N_DATA_INPUTS = 3  # dat, seg, cexp


class ProxyModelLogp(Op):
    """Total log likelihood of the cells, the latent effects integrated out.

    Inputs: data ``dat`` (blocks, rows, lanes) from :func:`proxyscope.core.kernels.pack_cells`,
    ``seg[C]``, ``cexp[C]`` (int64, cells sorted by experiment), then
    parameters ``loc[M, S]``,
    ``beta[K, S]``, ``sig2[S]``, ``chol_c[K, K]``, ``chol_e[K, K]``.
    Outputs: the scalar log likelihood, then its gradient with respect to
    each parameter (internal; only the first output is differentiable).
    """

    __props__ = ("n_proxies",)

    def __init__(self, n_proxies: int) -> None:
        # The number of experiments is read from the data (cells are sorted by
        # experiment), so the graph does not depend on it and a compiled model
        # can be reused for another dataset of the same structure.
        self.n_proxies = int(n_proxies)
        super().__init__()

    def make_node(self, *inputs: Any) -> Apply:
        if len(inputs) != N_DATA_INPUTS + 5:
            raise TypeError(f"ProxyModelLogp takes {N_DATA_INPUTS + 5} inputs; got {len(inputs)}.")
        dat, seg, cexp, loc, beta, sig2, chol_c, chol_e = inputs
        floats = [pt.as_tensor_variable(dat).astype("float64")]
        ints = [pt.as_tensor_variable(x).astype("int64") for x in (seg, cexp)]
        params = [
            pt.as_tensor_variable(x).astype("float64") for x in (loc, beta, sig2, chol_c, chol_e)
        ]
        outputs = [pt.dscalar()] + [p.type() for p in params]
        return Apply(self, [*floats, *ints, *params], outputs)

    def perform(self, node: Apply, inputs: Sequence[Any], output_storage: list[Any]) -> None:
        outs = _call_kernel(*inputs)
        for storage, value in zip(output_storage, outs, strict=True):
            storage[0] = value

    def grad(self, inputs: Sequence[Any], output_grads: Sequence[Any]) -> list[Any]:
        g_total = output_grads[0]
        for extra in output_grads[1:]:
            if not isinstance(extra.type, DisconnectedType):
                raise NotImplementedError(
                    "ProxyModelLogp: only the log likelihood output is differentiable."
                )
        grads = cast(list[Any], self(*inputs))[1:]
        data_grads = [DisconnectedType()() for _ in range(N_DATA_INPUTS)]
        return [*data_grads, *(g_total * g for g in grads)]

    def connection_pattern(self, node: Apply) -> list[list[bool]]:
        n_out = len(node.outputs)
        pattern = [[False] * n_out for _ in range(N_DATA_INPUTS)]
        pattern += [[True] + [False] * (n_out - 1) for _ in range(5)]
        return pattern


def _call_kernel(
    dat: np.ndarray,
    seg: np.ndarray,
    cexp: np.ndarray,
    loc: np.ndarray,
    beta: np.ndarray,
    sig2: np.ndarray,
    chol_c: np.ndarray,
    chol_e: np.ndarray,
) -> tuple[np.ndarray, ...]:
    n_exp = int(cexp[-1]) + 1
    lp, *grads, _ = proxy_model_logp(
        np.ascontiguousarray(dat, dtype=np.float64),
        np.ascontiguousarray(seg, dtype=np.int64),
        np.ascontiguousarray(cexp, dtype=np.int64),
        n_exp,
        np.ascontiguousarray(loc, dtype=np.float64),
        np.ascontiguousarray(beta, dtype=np.float64),
        np.ascontiguousarray(np.reshape(sig2, (-1,)), dtype=np.float64),
        np.ascontiguousarray(chol_c, dtype=np.float64),
        np.ascontiguousarray(chol_e, dtype=np.float64),
        True,
    )
    return (np.asarray(lp.sum()), *grads)

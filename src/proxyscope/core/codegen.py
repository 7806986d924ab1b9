"""Generate the fused per-cell loops of the likelihood kernel for a given K.

Why generate code: each cell needs a Cholesky factor, an inverse and a few
products of (K+1) x (K+1) matrices. Written as loops over matrix entries with
the cell loop innermost, every step is a pass through memory; written cell by
cell with small arrays, the work is latency-bound. Straight-line scalar code
for one cell, inside one loop over cells, keeps every intermediate in
registers and lets LLVM vectorise across cells — but straight-line code needs
K fixed, so it is generated once per K, written to a file in a cache
directory (so numba's on-disk cache works) and imported.

The generated module defines two loops; everything else (per-experiment
algebra, reductions, the chain rule to the segment parameters) is ordinary
code in :mod:`proxyscope.core.kernels`.

``pass1(d, s_cov, seg, v_seg, loc, beta, w_out, wr_out, lp_out, det_out, bc_out, pc_out,
bad_out)``
    per cell: A = V_s + S_c, its Cholesky factor and inverse W (lower
    triangle, packed), W r, -r'Wr/2 and 1/sqrt(det A) (the logarithm is
    taken outside the loop: a call to ``log`` would stop vectorisation), and the
    contributions H'Wr and H'WH (packed lower) to the experiment sums.
``pass2(w, wr, seg, beta, eta_c, rr_c, live, x_out, ga_out, gb_out)``
    per cell: x = W (r - H eta*), the lower triangle of
    dlogp/dA = (x x' - W + G R G') / 2 and dlogp/db = x_0 eta* - (G R)_0.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

#: Bump when the generated code changes, so stale cache files are not reused.
CODEGEN_VERSION = 9

_MODULES: dict[int, ModuleType] = {}


def packed(i: int, j: int) -> int:
    """Index of entry (i, j), j <= i, in a row-major packed lower triangle."""
    if j > i:
        i, j = j, i
    return i * (i + 1) // 2 + j


def _sym(prefix: str, i: int, j: int) -> str:
    return f"{prefix}{i}_{j}" if j <= i else f"{prefix}{j}_{i}"


def layout(k: int) -> dict[str, int]:
    """Row offsets of the packed per-cell arrays for K proxies.

    ``dat`` (constant data): packed lower triangle of S_c (``nw`` rows), then d_c.
    ``in1`` (pass 1 input):  packed A_c = V_s + S_c, then r_c, then b_c.
    ``out1`` (pass 1 output): packed W_c, W r_c, -r'Wr/2, 1/sqrt(det A_c),
    ok flag (1.0 or 0.0), H'Wr (K), packed H'WH.
    ``in2`` (pass 2 input): b_c, eta*_c, packed R_c, live flag.
    ``out2`` (pass 2 output): x_c, packed dlogp/dA_c, dlogp/db_c.
    """
    m = k + 1
    nw = m * (m + 1) // 2
    nk = k * (k + 1) // 2
    return {
        "m": m,
        "nw": nw,
        "nk": nk,
        "dat_rows": nw + m,
        "in1_rows": nw + m + k,
        "o1_w": 0,
        "o1_wr": nw,
        "o1_quad": nw + m,
        "o1_det": nw + m + 1,
        "o1_ok": nw + m + 2,
        "o1_bc": nw + m + 3,
        "o1_pc": nw + m + 3 + k,
        "out1_rows": nw + m + 3 + k + nk,
        "i2_b": 0,
        "i2_eta": k,
        "i2_rr": 2 * k,
        "i2_live": 2 * k + nk,
        "in2_rows": 2 * k + nk + 1,
        "o2_x": 0,
        "o2_ga": m,
        "o2_gb": m + nw,
        "out2_rows": m + nw + k,
    }


#: Cells per iteration of the generated loops. Measured: unrolling by 4 (loads
#: first, stores last) did not get LLVM to vectorise across cells — it cannot
#: prove that dozens of rows read and written do not alias — and made the
#: gradient pass slower, so the loops run one cell per iteration.
UNROLL = 1


def _pass1_body(k: int, lay: dict[str, int]) -> tuple[list[str], list[str], list[str]]:
    """Loads, computation and stores of pass 1 for one cell; ``{u}`` marks the copy."""
    m = k + 1
    nw = lay["nw"]
    loads: list[str] = []
    body: list[str] = []
    stores: list[str] = []
    for i in range(m):
        for j in range(i + 1):
            loads.append(f"a{i}_{j}_{{u}} = inp[{packed(i, j)}, c + {{u}}]")
    for i in range(m):
        loads.append(f"r{i}_{{u}} = inp[{nw + i}, c + {{u}}]")
    for i in range(k):
        loads.append(f"b{i}_{{u}} = inp[{nw + m + i}, c + {{u}}]")
    body.append("ok_{u} = 1.0")
    # Cholesky; a pivot that is not positive (or NaN) is replaced by 1 and flagged.
    for j in range(m):
        terms = " - ".join(
            [f"a{j}_{j}_{{u}}"] + [f"l{j}_{q}_{{u}} * l{j}_{q}_{{u}}" for q in range(j)]
        )
        body.append(f"p{j}_{{u}} = {terms}")
        body.append(f"ok_{{u}} = ok_{{u}} if p{j}_{{u}} > 0.0 else 0.0")
        body.append(f"p{j}_{{u}} = p{j}_{{u}} if p{j}_{{u}} > 0.0 else 1.0")
        body.append(f"l{j}_{j}_{{u}} = math.sqrt(p{j}_{{u}})")
        body.append(f"il{j}_{{u}} = 1.0 / l{j}_{j}_{{u}}")
        for i in range(j + 1, m):
            terms = " - ".join(
                [f"a{i}_{j}_{{u}}"] + [f"l{i}_{q}_{{u}} * l{j}_{q}_{{u}}" for q in range(j)]
            )
            body.append(f"l{i}_{j}_{{u}} = ({terms}) * il{j}_{{u}}")
    # N = L^-1 (lower): n_jj = 1/l_jj, n_ij = -(sum_{q=j}^{i-1} l_iq n_qj) / l_ii
    for j in range(m):
        body.append(f"n{j}_{j}_{{u}} = il{j}_{{u}}")
        for i in range(j + 1, m):
            terms = " + ".join(f"l{i}_{q}_{{u}} * n{q}_{j}_{{u}}" for q in range(j, i))
            body.append(f"n{i}_{j}_{{u}} = -({terms}) * il{i}_{{u}}")
    # W = N' N, lower triangle.
    for i in range(m):
        for j in range(i + 1):
            terms = " + ".join(f"n{q}_{i}_{{u}} * n{q}_{j}_{{u}}" for q in range(i, m))
            body.append(f"w{i}_{j}_{{u}} = {terms}")
    for i in range(m):
        terms = " + ".join(f"{_sym('w', i, j)}_{{u}} * r{j}_{{u}}" for j in range(m))
        body.append(f"wr{i}_{{u}} = {terms}")
    # G = W H with H = [b' ; I]: g_ij = w_i0 b_j + w_i,j+1
    for i in range(m):
        for j in range(k):
            w_i0, w_ij = _sym("w", i, 0), _sym("w", i, j + 1)
            body.append(f"g{i}_{j}_{{u}} = {w_i0}_{{u}} * b{j}_{{u}} + {w_ij}_{{u}}")
    for i in range(m):
        for j in range(i + 1):
            stores.append(f"out[{lay['o1_w'] + packed(i, j)}, c + {{u}}] = w{i}_{j}_{{u}}")
    for i in range(m):
        stores.append(f"out[{lay['o1_wr'] + i}, c + {{u}}] = wr{i}_{{u}}")
    quad = " + ".join(f"r{i}_{{u}} * wr{i}_{{u}}" for i in range(m))
    prod = " * ".join(f"il{i}_{{u}}" for i in range(m))
    stores.append(f"out[{lay['o1_quad']}, c + {{u}}] = -0.5 * ({quad})")
    stores.append(f"out[{lay['o1_det']}, c + {{u}}] = {prod}")
    stores.append(f"out[{lay['o1_ok']}, c + {{u}}] = ok_{{u}}")
    for i in range(k):
        stores.append(
            f"out[{lay['o1_bc'] + i}, c + {{u}}] = wr0_{{u}} * b{i}_{{u}} + wr{i + 1}_{{u}}"
        )
    for i in range(k):
        for j in range(i + 1):
            stores.append(
                f"out[{lay['o1_pc'] + packed(i, j)}, c + {{u}}] = "
                f"b{i}_{{u}} * g0_{j}_{{u}} + g{i + 1}_{j}_{{u}}"
            )
    return loads, body, stores


def _pass2_body(k: int, lay: dict[str, int]) -> tuple[list[str], list[str], list[str]]:
    m = k + 1
    loads: list[str] = [f"lv_{{u}} = inp[{lay['i2_live']}, c + {{u}}]"]
    body: list[str] = []
    stores: list[str] = []
    for i in range(m):
        for j in range(i + 1):
            loads.append(f"w{i}_{j}_{{u}} = o1[{lay['o1_w'] + packed(i, j)}, c + {{u}}]")
        loads.append(f"wr{i}_{{u}} = o1[{lay['o1_wr'] + i}, c + {{u}}]")
    for i in range(k):
        loads.append(f"b{i}_{{u}} = inp[{lay['i2_b'] + i}, c + {{u}}]")
        loads.append(f"e{i}_{{u}} = inp[{lay['i2_eta'] + i}, c + {{u}}]")
    for i in range(k):
        for j in range(i + 1):
            loads.append(f"rr{i}_{j}_{{u}} = inp[{lay['i2_rr'] + packed(i, j)}, c + {{u}}]")
    for i in range(m):
        for j in range(k):
            w_i0, w_ij = _sym("w", i, 0), _sym("w", i, j + 1)
            body.append(f"g{i}_{j}_{{u}} = {w_i0}_{{u}} * b{j}_{{u}} + {w_ij}_{{u}}")
    for i in range(m):
        terms = " - ".join([f"wr{i}_{{u}}"] + [f"g{i}_{j}_{{u}} * e{j}_{{u}}" for j in range(k)])
        body.append(f"x{i}_{{u}} = ({terms}) * lv_{{u}}")
        stores.append(f"out[{lay['o2_x'] + i}, c + {{u}}] = x{i}_{{u}}")
    for i in range(m):
        for j in range(k):
            terms = " + ".join(f"g{i}_{q}_{{u}} * {_sym('rr', q, j)}_{{u}}" for q in range(k))
            body.append(f"h{i}_{j}_{{u}} = {terms}")
    for i in range(m):
        for j in range(i + 1):
            terms = " + ".join(f"h{i}_{q}_{{u}} * g{j}_{q}_{{u}}" for q in range(k))
            stores.append(
                f"out[{lay['o2_ga'] + packed(i, j)}, c + {{u}}] = "
                f"0.5 * (x{i}_{{u}} * x{j}_{{u}} + ({terms} - w{i}_{j}_{{u}}) * lv_{{u}})"
            )
    for j in range(k):
        value = f"(x0_{{u}} * e{j}_{{u}} - h0_{j}_{{u}}) * lv_{{u}}"
        stores.append(f"out[{lay['o2_gb'] + j}, c + {{u}}] = {value}")
    return loads, body, stores


def _emit_unrolled(
    w: Callable[[str], object], parts: tuple[list[str], list[str], list[str]]
) -> None:
    for group in parts:
        for stmt in group:
            for u in range(UNROLL):
                w("        " + stmt.format(u=u))


def generate_source(k: int) -> str:
    """Python/numba source of the fused loops for K proxies."""
    lay = layout(k)
    out: list[str] = []
    w = out.append
    w(f'"""Generated by proxyscope.core.codegen for K = {k}; do not edit."""')
    w("import math")
    w("import numpy as np")
    w("from proxyscope.core.kernels import (")
    w("    _jit, chain_rule, experiment_step, reduce_experiments,")
    w("    reduce_segments, segment_covariances,")
    w(")")
    w("")
    w("")
    w("@_jit")
    w("def pass1(inp, out):")
    w(f"    for c in range(0, inp.shape[1], {UNROLL}):")
    _emit_unrolled(w, _pass1_body(k, lay))
    w("")
    w("")
    w("@_jit")
    w("def pass2(o1, inp, out):")
    w(f"    for c in range(0, inp.shape[1], {UNROLL}):")
    _emit_unrolled(w, _pass2_body(k, lay))
    w("")
    w("")
    w(_ORCHESTRATION.format(**lay, k=k, unroll=UNROLL))
    return "\n".join(out) + "\n"


_ORCHESTRATION = """@_jit
def gather1(dat, seg, v_packed, loc, beta, inp):
    # Columns past the last cell (padding to a multiple of the unroll) get an
    # identity covariance and zero residual; they are never reduced.
    n = dat.shape[1]
    n_pad = inp.shape[1]
    for q in range({nw}):
        for c in range(n):
            inp[q, c] = v_packed[q, seg[c]] + dat[q, c]
    for c in range(n, n_pad):
        for q in range({in1_rows}):
            inp[q, c] = 0.0
        for i in range({m}):
            inp[i * (i + 1) // 2 + i, c] = 1.0
    for i in range({m}):
        for c in range(n):
            inp[{nw} + i, c] = dat[{nw} + i, c] - loc[i, seg[c]]
    for i in range({k}):
        for c in range(n):
            inp[{nw} + {m} + i, c] = beta[i, seg[c]]


@_jit
def gather2(seg, cexp, exp_bad, beta, eta, rr, inp):
    n = seg.shape[0]
    for c in range(n, inp.shape[1]):
        for q in range({in2_rows}):
            inp[q, c] = 0.0
    for i in range({k}):
        for c in range(n):
            inp[{i2_b} + i, c] = beta[i, seg[c]]
            inp[{i2_eta} + i, c] = eta[cexp[c], i]
        for j in range(i + 1):
            q = {i2_rr} + i * (i + 1) // 2 + j
            for c in range(n):
                inp[q, c] = rr[cexp[c], i, j]
    for c in range(n):
        inp[{i2_live}, c] = 0.0 if exp_bad[cexp[c]] else 1.0


@_jit
def logp(dat, seg, cexp, n_exp, loc, beta, sig2, chol_c, chol_e, want_grad):
    n = dat.shape[1]
    n_seg = loc.shape[1]
    v_seg, oc = segment_covariances(beta, sig2, chol_c)
    v_packed = np.empty(({nw}, n_seg))
    for i in range({m}):
        for j in range(i + 1):
            for s in range(n_seg):
                v_packed[i * (i + 1) // 2 + j, s] = v_seg[i, j, s]
    n_pad = (n + {unroll} - 1) // {unroll} * {unroll}
    in1 = np.empty(({in1_rows}, n_pad))
    gather1(dat, seg, v_packed, loc, beta, in1)
    o1 = np.empty(({out1_rows}, n_pad))
    pass1(in1, o1)
    lp, b_sum, p_sum, exp_bad = reduce_experiments(cexp, n_exp, o1, {o1_quad}, {o1_bc}, {o1_pc})
    eta, rr, g_chol_e = experiment_step(p_sum, b_sum, chol_e, lp, exp_bad, want_grad)
    if not want_grad:
        return (lp, np.zeros(({m}, n_seg)), np.zeros(({k}, n_seg)), np.zeros(n_seg),
                np.zeros(({k}, {k})), g_chol_e)
    in2 = np.empty(({in2_rows}, n_pad))
    gather2(seg, cexp, exp_bad, beta, eta, rr, in2)
    o2 = np.empty(({out2_rows}, n_pad))
    pass2(o1, in2, o2)
    g_loc, g_v, g_beta = reduce_segments(seg, n_seg, o2, {m}, {nw}, {k})
    g_sig2, g_chol_c = chain_rule(g_v, g_beta, beta, v_seg, oc, chol_c)
    return lp, g_loc, g_beta, g_sig2, g_chol_c, g_chol_e


@_jit
def experiment_posterior(dat, seg, cexp, n_exp, loc, beta, sig2, chol_c, chol_e):
    # Marginal log likelihood per experiment and the Gaussian conditional of
    # eta_e given the data and the parameters: mean eta* (E, K), covariance R.
    n = dat.shape[1]
    n_seg = loc.shape[1]
    v_seg, oc = segment_covariances(beta, sig2, chol_c)
    v_packed = np.empty(({nw}, n_seg))
    for i in range({m}):
        for j in range(i + 1):
            for s in range(n_seg):
                v_packed[i * (i + 1) // 2 + j, s] = v_seg[i, j, s]
    n_pad = (n + {unroll} - 1) // {unroll} * {unroll}
    in1 = np.empty(({in1_rows}, n_pad))
    gather1(dat, seg, v_packed, loc, beta, in1)
    o1 = np.empty(({out1_rows}, n_pad))
    pass1(in1, o1)
    lp, b_sum, p_sum, exp_bad = reduce_experiments(cexp, n_exp, o1, {o1_quad}, {o1_bc}, {o1_pc})
    eta, rr, g_chol_e = experiment_step(p_sum, b_sum, chol_e, lp, exp_bad, True)
    return lp, eta, rr
"""


def cache_dir() -> Path:
    """Where generated kernels are written (``PROXYSCOPE_CACHE_DIR`` overrides)."""
    env = os.environ.get("PROXYSCOPE_CACHE_DIR")
    if env:
        return Path(env) / "kernels"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "proxyscope" / "kernels"


def kernel_digest(k: int) -> int:
    """A number that changes whenever the generated code for K changes.

    Compiled code cached on disk by PyTensor is keyed with it, so an upgrade
    never reuses a kernel compiled from older generated code.
    """
    source = generate_source(k)
    return int(hashlib.sha256(source.encode()).hexdigest()[:8], 16)


def load_kernel_module(k: int) -> ModuleType:
    """The generated module for K proxies (generated, written and imported once)."""
    if k in _MODULES:
        return _MODULES[k]
    if k < 1:
        raise ValueError(f"codegen: K must be >= 1; got {k}.")
    source = generate_source(k)
    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    name = f"proxyscope_kernel_k{k}_v{CODEGEN_VERSION}_{digest}"
    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.py"
    if not path.exists() or path.read_text() != source:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            fh.write(source)
        os.replace(tmp, path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - importlib contract
        raise ImportError(f"codegen: cannot import generated kernel {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    _MODULES[k] = module
    return module

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

The generated module defines:

``pass1(dat, seg, vp, loc, beta, out)``
    per cell: A = V_s + S_c, its Cholesky factor and inverse W (lower
    triangle, packed), W r, -r'Wr/2 and 1/sqrt(det A) (the logarithm is
    taken outside the loop: a call to ``log`` would stop vectorisation), and the
    contributions H'Wr and H'WH (packed lower) to the experiment sums.
``pass2(o1, seg, cexp, beta, eta, rr, live, out)``
    per cell: x = W (r - H eta*), the lower triangle of
    dlogp/dA = (x x' - W + G R G') / 2 and dlogp/db = x_0 eta* - (G R)_0.
``reduce_experiments_k``, ``experiment_step_k``, ``reduce_segments_k``
    the sums over each experiment's cells, the integration of eta_e, and the
    sums over each segment's cells, unrolled for K.
``logp``, ``experiment_posterior``
    the kernel itself and the per-experiment conditionals of eta_e.

The chain rule back to the segment parameters is ordinary code in
:mod:`proxyscope.core.kernels`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from proxyscope.core.kernels import LANES

#: Bump when the generated code changes, so stale cache files are not reused.
CODEGEN_VERSION = 12


def packed(i: int, j: int) -> int:
    """Index of entry (i, j), j <= i, in a row-major packed lower triangle."""
    if j > i:
        i, j = j, i
    return i * (i + 1) // 2 + j


def _sym(prefix: str, i: int, j: int) -> str:
    return f"{prefix}{i}_{j}" if j <= i else f"{prefix}{j}_{i}"


def layout(k: int) -> dict[str, int]:
    """Row offsets of the per-block arrays (blocks, rows, LANES) for K proxies.

    ``dat`` (constant data): packed lower triangle of S_c (``nw`` rows), then d_c.
    ``out1`` (pass 1 output): packed W_c, W r_c, -r'Wr/2, 1/sqrt(det A_c),
    ok flag (1.0 or 0.0), H'Wr (J = K + 1), packed H'WH (J x J).
    ``out2`` (pass 2 output): x_c, packed dlogp/dA_c, dlogp/db_c.
    H = [e_0, (b' ; I_K)] is the loading of the experiment effect (outcome's
    own first, then the proxies') on the cell's M = K + 1 metrics.
    Pass 1 gathers A_c = V_s + S_c, r_c and b_c itself, pass 2 b_c, eta*_c,
    R_e and the experiment's live flag.
    """
    m = k + 1
    nw = m * (m + 1) // 2  # a packed M x M triangle; H'WH (J x J, J = M) is one too
    return {
        "m": m,
        "nw": nw,
        "dat_rows": nw + m,
        "o1_w": 0,
        "o1_wr": nw,
        "o1_quad": nw + m,
        "o1_det": nw + m + 1,
        "o1_ok": nw + m + 2,
        "o1_bc": nw + m + 3,
        "o1_pc": nw + m + 3 + m,
        "out1_rows": nw + m + 3 + m + nw,
        "o2_x": 0,
        "o2_ga": m,
        "o2_gb": m + nw,
        "out2_rows": m + nw + k,
    }


# Cells per block of the work arrays, which are laid out (blocks, rows, LANES):
# one block's copy of a quantity is LANES adjacent doubles. The generated loops
# run one block per iteration with the statements written once per lane, so
# LLVM's superword-level (SLP) vectoriser packs the lanes into one SIMD
# instruction (4 doubles = one AVX2 register). Measured on the default world's
# 1,182 cells: pass 1 104 -> 28 us, pass 2 78 -> 25 us. With the cell axis
# last and ``c + u`` indexing (the earlier layout) neither the loop nor the
# SLP vectoriser could pack anything: each index carried its own
# negative-index check.


def _pass1_body(k: int, lay: dict[str, int]) -> tuple[list[str], list[str], list[str]]:
    """Loads, computation and stores of pass 1 for one cell; ``{u}`` marks the copy."""
    m = k + 1
    nw = lay["nw"]
    # The segment's terms are gathered here rather than in a separate pass
    # (measured: 38 us against 22 + 28 us with a gather pass).
    loads: list[str] = ["s_{u} = seg[b, {u}]"]
    body: list[str] = []
    stores: list[str] = []
    for i in range(m):
        for j in range(i + 1):
            q = packed(i, j)
            loads.append(f"a{i}_{j}_{{u}} = vp[{q}, s_{{u}}] + dat[b, {q}, {{u}}]")
    for i in range(m):
        loads.append(f"r{i}_{{u}} = dat[b, {nw + i}, {{u}}] - loc[{i}, s_{{u}}]")
    for i in range(k):
        loads.append(f"b{i}_{{u}} = beta[{i}, s_{{u}}]")
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
            stores.append(f"out[b, {lay['o1_w'] + packed(i, j)}, {{u}}] = w{i}_{j}_{{u}}")
    for i in range(m):
        stores.append(f"out[b, {lay['o1_wr'] + i}, {{u}}] = wr{i}_{{u}}")
    quad = " + ".join(f"r{i}_{{u}} * wr{i}_{{u}}" for i in range(m))
    prod = " * ".join(f"il{i}_{{u}}" for i in range(m))
    stores.append(f"out[b, {lay['o1_quad']}, {{u}}] = -0.5 * ({quad})")
    stores.append(f"out[b, {lay['o1_det']}, {{u}}] = {prod}")
    stores.append(f"out[b, {lay['o1_ok']}, {{u}}] = ok_{{u}}")
    # H'Wr and H'WH with H = [e_0, (b' ; I)]: the outcome's own experiment
    # effect first (row and column 0), then the proxies'.
    stores.append(f"out[b, {lay['o1_bc']}, {{u}}] = wr0_{{u}}")
    for i in range(k):
        stores.append(
            f"out[b, {lay['o1_bc'] + i + 1}, {{u}}] = wr0_{{u}} * b{i}_{{u}} + wr{i + 1}_{{u}}"
        )
    stores.append(f"out[b, {lay['o1_pc']}, {{u}}] = w0_0_{{u}}")
    for i in range(k):
        stores.append(f"out[b, {lay['o1_pc'] + packed(i + 1, 0)}, {{u}}] = g0_{i}_{{u}}")
        for j in range(i + 1):
            stores.append(
                f"out[b, {lay['o1_pc'] + packed(i + 1, j + 1)}, {{u}}] = "
                f"b{i}_{{u}} * g0_{j}_{{u}} + g{i + 1}_{j}_{{u}}"
            )
    return loads, body, stores


def _pass2_body(k: int, lay: dict[str, int]) -> tuple[list[str], list[str], list[str]]:
    m = k + 1
    loads: list[str] = ["s_{u} = seg[b, {u}]", "e_{u} = cexp[b, {u}]", "lv_{u} = live[e_{u}]"]
    body: list[str] = []
    stores: list[str] = []
    for i in range(m):
        for j in range(i + 1):
            loads.append(f"w{i}_{j}_{{u}} = o1[b, {lay['o1_w'] + packed(i, j)}, {{u}}]")
        loads.append(f"wr{i}_{{u}} = o1[b, {lay['o1_wr'] + i}, {{u}}]")
    for i in range(k):
        loads.append(f"b{i}_{{u}} = beta[{i}, s_{{u}}]")
    for i in range(m):
        loads.append(f"e{i}_{{u}} = eta[e_{{u}}, {i}]")
    for i in range(m):
        for j in range(i + 1):
            loads.append(f"rr{i}_{j}_{{u}} = rr[e_{{u}}, {i}, {j}]")
    # G = W H, M x J: column 0 is W's column 0 (the outcome's own experiment
    # effect), column j + 1 is W (b_j e_0 + e_{j+1}).
    for i in range(m):
        body.append(f"g{i}_0_{{u}} = {_sym('w', i, 0)}_{{u}}")
        for j in range(k):
            w_i0, w_ij = _sym("w", i, 0), _sym("w", i, j + 1)
            body.append(f"g{i}_{j + 1}_{{u}} = {w_i0}_{{u}} * b{j}_{{u}} + {w_ij}_{{u}}")
    for i in range(m):
        terms = " - ".join([f"wr{i}_{{u}}"] + [f"g{i}_{j}_{{u}} * e{j}_{{u}}" for j in range(m)])
        body.append(f"x{i}_{{u}} = ({terms}) * lv_{{u}}")
        stores.append(f"out[b, {lay['o2_x'] + i}, {{u}}] = x{i}_{{u}}")
    for i in range(m):
        for j in range(m):
            terms = " + ".join(f"g{i}_{q}_{{u}} * {_sym('rr', q, j)}_{{u}}" for q in range(m))
            body.append(f"h{i}_{j}_{{u}} = {terms}")
    for i in range(m):
        for j in range(i + 1):
            terms = " + ".join(f"h{i}_{q}_{{u}} * g{j}_{q}_{{u}}" for q in range(m))
            stores.append(
                f"out[b, {lay['o2_ga'] + packed(i, j)}, {{u}}] = "
                f"0.5 * (x{i}_{{u}} * x{j}_{{u}} + ({terms} - w{i}_{j}_{{u}}) * lv_{{u}})"
            )
    # b_j enters H only at (0, j + 1).
    for j in range(k):
        value = f"(x0_{{u}} * e{j + 1}_{{u}} - h0_{j + 1}_{{u}}) * lv_{{u}}"
        stores.append(f"out[b, {lay['o2_gb'] + j}, {{u}}] = {value}")
    return loads, body, stores


def _reduce_source(k: int, lay: dict[str, int]) -> list[str]:
    """Per-experiment and per-segment sums of the passes' outputs, unrolled for K.

    The experiment sums run over consecutive cells (cells are sorted by
    experiment) into scalar accumulators; the segment sums add each cell's
    row into its segment's column. Unrolled with K fixed, every row index is
    a constant.
    """
    m, nw = k + 1, lay["nw"]
    rows_b = [lay["o1_bc"] + i for i in range(m)]
    rows_p = [(i, j, lay["o1_pc"] + packed(i, j)) for i in range(m) for j in range(i + 1)]
    out = [
        "@_jit",
        "def reduce_experiments_k(cexp, n_exp, o1):",
        "    # lp (E,) at eta = 0, b = sum H'Wr (E, J), P = sum H'WH (E, J, J) and a flag",
        "    # per experiment holding a cell whose covariance failed to factor. log det A_c",
        "    # enters as log(1 / sqrt(det A_c)); the factors of one experiment are",
        "    # multiplied and the product's log taken when it leaves [1e-150, 1e150] and",
        "    # at the experiment's end: a scalar log costs as much as the rest of a cell.",
        "    n = cexp.shape[0]",
        "    lp = np.zeros(n_exp)",
        f"    b_sum = np.zeros((n_exp, {m}))",
        f"    p_sum = np.zeros((n_exp, {m}, {m}))",
        "    exp_bad = np.zeros(n_exp, dtype=np.bool_)",
        f"    const = {-0.5 * m!r} * math.log(2.0 * math.pi)",
        "    c = 0",
        "    while c < n:",
        "        e = cexp[c]",
        "        acc = 0.0",
        "        prod = 1.0",
        "        bad = False",
    ]
    out += [f"        b{i} = 0.0" for i in range(m)]
    out += [f"        p{i}_{j} = 0.0" for i, j, _ in rows_p]
    out += [
        "        while c < n and cexp[c] == e:",
        f"            bl = c // {LANES}",
        f"            u = c - bl * {LANES}",
        f"            acc += o1[bl, {lay['o1_quad']}, u] + const",
        f"            prod *= o1[bl, {lay['o1_det']}, u]",
        "            if prod > 1e150 or prod < 1e-150:",
        "                acc += math.log(prod)",
        "                prod = 1.0",
        f"            if o1[bl, {lay['o1_ok']}, u] == 0.0:",
        "                bad = True",
    ]
    out += [f"            b{i} += o1[bl, {r}, u]" for i, r in enumerate(rows_b)]
    out += [f"            p{i}_{j} += o1[bl, {r}, u]" for i, j, r in rows_p]
    out += [
        "            c += 1",
        "        lp[e] = acc + math.log(prod)",
        "        exp_bad[e] = bad",
    ]
    out += [f"        b_sum[e, {i}] = b{i}" for i in range(m)]
    for i, j, _ in rows_p:
        out.append(f"        p_sum[e, {i}, {j}] = p{i}_{j}")
        if i != j:
            out.append(f"        p_sum[e, {j}, {i}] = p{i}_{j}")
    out += [
        "    return lp, b_sum, p_sum, exp_bad",
        "",
        "",
        "@_jit",
        "def reduce_segments_k(seg, n_seg, o2):",
        "    # d/dloc (M, S), packed d/dV (S), d/dbeta (K, S)",
        "    n = seg.shape[0]",
        f"    g_loc = np.zeros(({m}, n_seg))",
        f"    g_v = np.zeros(({nw}, n_seg))",
        f"    g_beta = np.zeros(({k}, n_seg))",
        "    for c in range(n):",
        f"        bl = c // {LANES}",
        f"        u = c - bl * {LANES}",
        "        s = seg[c]",
    ]
    out += [f"        g_loc[{i}, s] += o2[bl, {lay['o2_x'] + i}, u]" for i in range(m)]
    out += [f"        g_v[{q}, s] += o2[bl, {lay['o2_ga'] + q}, u]" for q in range(nw)]
    out += [f"        g_beta[{j}, s] += o2[bl, {lay['o2_gb'] + j}, u]" for j in range(k)]
    out += ["    return g_loc, g_v, g_beta", "", ""]
    return out


def _experiment_source(k: int) -> list[str]:
    """Integrate eta_e out of every experiment, unrolled for its ``k`` dims (J = K + 1).

    The algebra is in :mod:`proxyscope.core.kernels`' docstring: Q = I +
    L_E' P L_E, its Cholesky factor and inverse, z* = Q^-1 L_E' b, eta* =
    L_E z*, R = L_E Q^-1 L_E' and d/dL_E. Every J x J product is written
    out, so the intermediates stay in registers.
    """
    rng = range(k)

    def p(i: int, j: int) -> str:
        return _sym("p", i, j)

    def q(i: int, j: int) -> str:
        return _sym("q", i, j)

    def qi(i: int, j: int) -> str:
        return _sym("qi", i, j)

    out = [
        "@_jit",
        "def experiment_step_k(p_sum, b_sum, chol_e, lp, exp_bad, want_grad):",
        "    n_exp = b_sum.shape[0]",
        f"    eta = np.zeros((n_exp, {k}))",
        f"    rr = np.zeros((n_exp, {k}, {k}))",
        f"    g_chol_e = np.zeros(({k}, {k}))",
    ]
    out += [f"    l{i}_{j} = chol_e[{i}, {j}]" for i in rng for j in range(i + 1)]
    out += [f"    g{i}_{j} = 0.0" for i in rng for j in range(i + 1)]
    out += [
        "    for e in range(n_exp):",
        "        if exp_bad[e]:",
        "            lp[e] = -np.inf",
        "            continue",
    ]
    out += [f"        p{i}_{j} = p_sum[e, {i}, {j}]" for i in rng for j in range(i + 1)]
    out += [f"        bs{i} = b_sum[e, {i}]" for i in rng]
    # PL = P L (L lower: s >= j)
    for i in rng:
        for j in rng:
            terms = " + ".join(f"{p(i, t)} * l{t}_{j}" for t in range(j, k))
            out.append(f"        pl{i}_{j} = {terms}")
    # Q = I + L' P L, lower triangle
    for i in rng:
        for j in range(i + 1):
            terms = " + ".join(f"l{t}_{i} * pl{t}_{j}" for t in range(i, k))
            one = "1.0 + " if i == j else ""
            out.append(f"        q{i}_{j} = {one}{terms}")
    # Cholesky of Q; a pivot that is not positive marks the experiment.
    out.append("        ok = True")
    for j in rng:
        terms = " - ".join([q(j, j)] + [f"c{j}_{t} * c{j}_{t}" for t in range(j)])
        out.append(f"        piv = {terms}")
        out.append("        if not piv > 0.0:")
        out.append("            ok = False")
        out.append("            piv = 1.0")
        out.append(f"        c{j}_{j} = math.sqrt(piv)")
        out.append(f"        ic{j} = 1.0 / c{j}_{j}")
        for i in range(j + 1, k):
            terms = " - ".join([q(i, j)] + [f"c{i}_{t} * c{j}_{t}" for t in range(j)])
            out.append(f"        c{i}_{j} = ({terms}) * ic{j}")
    out += [
        "        if not ok:",
        "            lp[e] = -np.inf",
        "            exp_bad[e] = True",
        "            continue",
    ]
    logdet = " + ".join(f"math.log(c{i}_{i})" for i in rng)
    out.append(f"        logdet_q = 2.0 * ({logdet})")
    # N = C^-1 (lower), Q^-1 = N' N
    for j in rng:
        out.append(f"        n{j}_{j} = ic{j}")
        for i in range(j + 1, k):
            terms = " + ".join(f"c{i}_{t} * n{t}_{j}" for t in range(j, i))
            out.append(f"        n{i}_{j} = -({terms}) * ic{i}")
    for i in rng:
        for j in range(i + 1):
            terms = " + ".join(f"n{t}_{i} * n{t}_{j}" for t in range(i, k))
            out.append(f"        qi{i}_{j} = {terms}")
    for i in rng:
        terms = " + ".join(f"l{t}_{i} * bs{t}" for t in range(i, k))
        out.append(f"        bt{i} = {terms}")
    for i in rng:
        terms = " + ".join(f"{qi(i, j)} * bt{j}" for j in rng)
        out.append(f"        z{i} = {terms}")
    quad = " + ".join(f"bt{i} * z{i}" for i in rng)
    out.append(f"        lp[e] += 0.5 * ({quad}) - 0.5 * logdet_q")
    out += ["        if not want_grad:", "            continue"]
    for i in rng:
        terms = " + ".join(f"l{i}_{t} * z{t}" for t in range(i + 1))
        out.append(f"        et{i} = {terms}")
        out.append(f"        eta[e, {i}] = et{i}")
    # L Q^-1, then R = L Q^-1 L'
    for i in rng:
        for j in rng:
            terms = " + ".join(f"l{i}_{t} * {qi(t, j)}" for t in range(i + 1))
            out.append(f"        lq{i}_{j} = {terms}")
    for i in rng:
        for j in range(i + 1):
            terms = " + ".join(f"lq{i}_{t} * l{j}_{t}" for t in range(j + 1))
            out.append(f"        rr[e, {i}, {j}] = {terms}")
            if i != j:
                out.append(f"        rr[e, {j}, {i}] = rr[e, {i}, {j}]")
    # d/dL = (b - P eta*) z*' - P L Q^-1, lower triangle
    for i in rng:
        terms = " - ".join([f"bs{i}"] + [f"{p(i, t)} * et{t}" for t in rng])
        out.append(f"        res{i} = {terms}")
        for j in range(i + 1):
            terms = " + ".join(f"pl{i}_{t} * {qi(t, j)}" for t in rng)
            out.append(f"        g{i}_{j} += res{i} * z{j} - ({terms})")
    out += [f"    g_chol_e[{i}, {j}] = g{i}_{j}" for i in rng for j in range(i + 1)]
    out += ["    return eta, rr, g_chol_e", "", ""]
    return out


def _emit_lanes(w: Callable[[str], object], parts: tuple[list[str], list[str], list[str]]) -> None:
    for group in parts:
        for stmt in group:
            for u in range(LANES):
                w("        " + stmt.format(u=u))


def _kernels_digest() -> str:
    from proxyscope.core import density, kernels, native

    digest = hashlib.sha256()
    for module in (kernels, density, native):
        digest.update(Path(str(module.__file__)).read_bytes())
    return digest.hexdigest()[:16]


def _header(k: int, imports: list[str]) -> list[str]:
    return [
        f'"""Generated by proxyscope.core.codegen for K = {k}; do not edit."""',
        # numba's cache of a module does not notice edits to the code it calls;
        # naming that code's digest here gives such an edit a new module.
        f"# proxyscope.core.kernels, density, native: {_kernels_digest()}",
        "import math",
        "import numpy as np",
        *imports,
        "",
        "",
    ]


def passes_source(k: int) -> str:
    """The per-cell passes for K proxies (compiled when imported, with SLP on)."""
    lay = layout(k)
    out = _header(k, ["from proxyscope.core.kernels import lanes_jit"])
    w = out.append
    f2, f3, i2 = "float64[:, ::1]", "float64[:, :, ::1]", "int64[:, ::1]"
    w(f'@lanes_jit("void({f3}, {i2}, {f2}, {f2}, {f2}, {f3})")')
    w("def pass1(dat, seg, vp, loc, beta, out):")
    w("    for b in range(dat.shape[0]):")
    _emit_lanes(w, _pass1_body(k, lay))
    w("")
    w("")
    w(f'@lanes_jit("void({f3}, {i2}, {i2}, {f2}, {f2}, {f3}, float64[::1], {f3})")')
    w("def pass2(o1, seg, cexp, beta, eta, rr, live, out):")
    w("    for b in range(o1.shape[0]):")
    _emit_lanes(w, _pass2_body(k, lay))
    return "\n".join(out) + "\n"


def reduce_source(k: int) -> str:
    """The sums over experiments and segments and the integration of eta_e, for K proxies."""
    lay = layout(k)
    out = _header(k, ["from proxyscope.core.kernels import _jit"])
    out.extend(_reduce_source(k, lay))
    out.extend(_experiment_source(k + 1))
    out.append(_BLOCKED_INDEX.format(lanes=LANES))
    return "\n".join(out) + "\n"


def generate_source(k: int) -> str:
    """The likelihood kernel for K proxies: it imports the passes and the sums
    (:func:`passes_source`, :func:`reduce_source`) by their module names."""
    lay = layout(k)
    passes, _ = _module_path("passes", k, passes_source(k))
    reduce, _ = _module_path("reduce", k, reduce_source(k))
    out = _header(
        k,
        [
            "from proxyscope.core.kernels import _inline_jit, _jit, chain_rule, "
            "segment_covariances",
            f"from {passes} import pass1, pass2",
            f"from {reduce} import (",
            "    blocked_index, experiment_step_k, reduce_experiments_k, reduce_segments_k,",
            ")",
        ],
    )
    out.append(_ORCHESTRATION.format(**lay, k=k, lanes=LANES))
    return "\n".join(out) + "\n"


_BLOCKED_INDEX = """@_jit
def blocked_index(idx, n_blocks):
    # (blocks, LANES) copy of a per-cell index; the padding lanes get 0 (their
    # cells are identity matrices, see pack_cells, and are never reduced).
    out = np.zeros((n_blocks, {lanes}), dtype=np.int64)
    for c in range(idx.shape[0]):
        bl = c // {lanes}
        out[bl, c - bl * {lanes}] = idx[c]
    return out
"""


_ORCHESTRATION = """@_inline_jit
def _first_pass(dat, seg, cexp, n_exp, loc, beta, sig2, chol_c):
    n_seg = loc.shape[1]
    loc = np.ascontiguousarray(loc)
    beta = np.ascontiguousarray(beta)
    v_seg, oc = segment_covariances(beta, sig2, chol_c)
    v_packed = np.empty(({nw}, n_seg))
    for i in range({m}):
        for j in range(i + 1):
            for s in range(n_seg):
                v_packed[i * (i + 1) // 2 + j, s] = v_seg[i, j, s]
    n_blocks = dat.shape[0]
    seg_b = blocked_index(seg, n_blocks)
    o1 = np.empty((n_blocks, {out1_rows}, {lanes}))
    pass1(dat, seg_b, v_packed, loc, beta, o1)
    lp, b_sum, p_sum, exp_bad = reduce_experiments_k(cexp, n_exp, o1)
    return v_seg, oc, o1, lp, b_sum, p_sum, exp_bad, seg_b, beta


@_inline_jit
def logp(dat, seg, cexp, n_exp, loc, beta, sig2, chol_c, chol_e, want_grad):
    n_seg = loc.shape[1]
    v_seg, oc, o1, lp, b_sum, p_sum, exp_bad, seg_b, beta = _first_pass(
        dat, seg, cexp, n_exp, loc, beta, sig2, chol_c
    )
    eta, rr, g_chol_e = experiment_step_k(p_sum, b_sum, chol_e, lp, exp_bad, want_grad)
    if not want_grad:
        return (lp, np.zeros(({m}, n_seg)), np.zeros(({k}, n_seg)), np.zeros(n_seg),
                np.zeros(({k}, {k})), g_chol_e)
    live = np.empty(n_exp)
    for e in range(n_exp):
        live[e] = 0.0 if exp_bad[e] else 1.0
    o2 = np.empty((o1.shape[0], {out2_rows}, {lanes}))
    pass2(o1, seg_b, blocked_index(cexp, o1.shape[0]), beta, eta, rr, live, o2)
    g_loc, g_v, g_beta = reduce_segments_k(seg, n_seg, o2)
    g_sig2, g_chol_c = chain_rule(g_v, g_beta, beta, v_seg, oc, chol_c)
    return lp, g_loc, g_beta, g_sig2, g_chol_c, g_chol_e


@_jit
def experiment_posterior(dat, seg, cexp, n_exp, loc, beta, sig2, chol_c, chol_e):
    # Marginal log likelihood per experiment and the Gaussian conditional of
    # eta_e given the data and the parameters: mean eta* (E, J), covariance R
    # (J = K + 1: the outcome's own experiment effect first, then the proxies').
    v_seg, oc, o1, lp, b_sum, p_sum, exp_bad, seg_b, beta = _first_pass(
        dat, seg, cexp, n_exp, loc, beta, sig2, chol_c
    )
    # (a computed flag, not the literal True: numba compiles a literal argument
    # as a type of its own)
    eta, rr, g_chol_e = experiment_step_k(p_sum, b_sum, chol_e, lp, exp_bad, n_exp >= 0)
    return lp, eta, rr
"""


_POSTERIOR = """

@_inline_jit
def posterior(x, grad, ints, floats, dat, seg, cexp, n_exp):
    # Log posterior of the flat vector x (proxyscope.core.density) and its
    # gradient, written to grad.
    lp, loc, slope, log_sigma, chol_c, chol_e = prior_forward(x, grad, ints, floats)
    sig2 = np.exp(2.0 * log_sigma)
    lpe, g_loc, g_beta, g_sig2, g_chol_c, g_chol_e = logp(
        dat, seg, cexp, n_exp, loc, slope, sig2, chol_c, chol_e, n_exp >= 0
    )
    likelihood_back(x, grad, ints, floats, g_loc, g_beta, 2.0 * sig2 * g_sig2, g_chol_c, g_chol_e)
    return lp + lpe.sum()


@numba.cfunc(LOGP_SIGNATURE, cache=True, error_model="numpy")
def posterior_cfunc(dim, x_, out_, logp_, table_):
    # The C entry point nutpie calls (proxyscope.core.native); 0 is success,
    # 3 and 4 a non-finite gradient or log density (the point is rejected).
    ints, floats, dat, seg, cexp, n_exp, n_dim = table_arrays(table_)
    if dim != n_dim:
        return -1
    x = numba.carray(x_, (n_dim,))
    out = numba.carray(out_, (n_dim,))
    lp = posterior(x, out, ints, floats, dat, seg, cexp, n_exp)
    logp_[0] = lp
    if not math.isfinite(lp):
        return 4
    for i in range(n_dim):
        if not math.isfinite(out[i]):
            return 3
    return 0


@numba.cfunc(EXPAND_SIGNATURE, cache=True)
def identity_cfunc(dim, expanded, x_, out_, table_):
    # The stored draw is the point itself; names come from proxyscope.model.layout.
    if dim != expanded:
        return -1
    for i in range(dim):
        out_[i] = x_[i]
    return 0
"""


def cache_dir() -> Path:
    """Where generated kernels are written (``PROXYSCOPE_CACHE_DIR`` overrides)."""
    env = os.environ.get("PROXYSCOPE_CACHE_DIR")
    if env:
        return Path(env) / "kernels"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "proxyscope" / "kernels"


def load_kernel_module(k: int) -> ModuleType:
    """The generated likelihood kernel for K proxies (generated, written and imported once)."""
    if k < 1:
        raise ValueError(f"codegen: K must be >= 1; got {k}.")
    _load("passes", k)  # imported by name from the kernel module
    _load("reduce", k)
    return _load("kernel", k)


def posterior_source(k: int) -> str:
    """Source of the log posterior's C entry points for K proxies.

    They call the generated kernel module (imported by its name) and the
    generic prior and coordinate code of :mod:`proxyscope.core.density`.
    """
    kernel_name, _ = _module_path("kernel", k, generate_source(k))
    lines = [
        f'"""Generated by proxyscope.core.codegen for K = {k}; do not edit."""',
        f"# proxyscope.core.kernels, density, native: {_kernels_digest()}",
        "import math",
        "import numpy as np",
        "import numba",
        "from proxyscope.core.density import likelihood_back, prior_forward",
        "from proxyscope.core.kernels import _inline_jit",
        "from proxyscope.core.native import EXPAND_SIGNATURE, LOGP_SIGNATURE, table_arrays",
        f"from {kernel_name} import logp",
    ]
    return "\n".join(lines) + "\n" + _POSTERIOR


def load_posterior_module(k: int) -> ModuleType:
    """The log posterior's compiled C entry points for K proxies (``posterior_cfunc``,
    ``identity_cfunc``)."""
    load_kernel_module(k)  # the posterior module imports it by name (and checks K)
    return _load("posterior", k)


_LOADED: dict[tuple[str, int], ModuleType] = {}


def _module_path(kind: str, k: int, source: str) -> tuple[str, Path]:
    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    name = f"proxyscope_{kind}_k{k}_v{CODEGEN_VERSION}_{digest}"
    return name, cache_dir() / f"{name}.py"


def is_compiled(kind: str, k: int) -> bool:
    """Whether the ``kind`` module for K proxies is loaded in this process or was
    compiled on this machine before (so loading it is quick)."""
    if (kind, k) in _LOADED:
        return True
    if kind in ("kernel", "posterior") and not all(is_compiled(part, k) for part in _PARTS[kind]):
        return False
    try:
        _, path = _module_path(kind, k, _SOURCES[kind](k))
    except Exception:  # pragma: no cover - a broken cache directory means "compile"
        return False
    return _marker(path).exists()


_PARTS = {"kernel": ("passes", "reduce"), "posterior": ("kernel",)}


def _marker(path: Path) -> Path:
    # numba's cache lives in NUMBA_CACHE_DIR when set (beside the module otherwise),
    # so the marker says which cache holds the compiled code.
    where = os.environ.get("NUMBA_CACHE_DIR", "")
    tag = hashlib.sha256(where.encode()).hexdigest()[:8]
    return path.with_suffix(f".compiled-{tag}")


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
}


_CHILD = (
    "import sys; from proxyscope.core.codegen import load_passes; load_passes(int(sys.argv[1]))"
)


def load_passes(k: int) -> ModuleType:
    """The per-cell passes for K proxies (compiled on import; a helper process's job)."""
    return _load("passes", k)


def compile_sampler_code(k: int) -> None:
    """Load the sampler's compiled code for K proxies, compiling what is missing.

    A cold compile splits the work across two processes: a helper process
    compiles the two per-cell passes (half of the work, and the only part
    that needs LLVM's SLP vectoriser) while this one compiles the generic
    prior code, the sums and the small kernels; then this one links the C
    entry point, loading the passes from numba's on-disk cache. Measured on
    2 cores: see ``benchmarks/bench_model.py``, case ``cold``. If the helper
    cannot run, everything is compiled here.
    """
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
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
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

    Returns
    -------
    lp (E,), then the gradients of ``lp.sum()`` with respect to loc (M, S),
    beta (K, S), sig2 (S,), chol_c (K, K) and chol_e (M, M) (lower
    triangles). An experiment with a cell whose covariance is not positive
    definite gets ``-inf``.
    """
    return logp_kernel(beta.shape[0])(
        dat, seg, cexp, n_exp, loc, beta, sig2, chol_c, chol_e, want_grad
    )


def logp_kernel(k: int) -> Any:
    """The compiled likelihood kernel for K proxies (same signature as
    :func:`proxy_model_logp`, callable from numba code)."""
    return load_kernel_module(k).logp

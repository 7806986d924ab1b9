"""The generated per-cell passes: the source of ``pass1`` and ``pass2`` for K proxies.

``pass1(dat, seg, vp, loc, beta, out)``
    per cell: A = V_s + S_c, its Cholesky factor and inverse W (lower
    triangle, packed), W r, -r'Wr/2 and 1/sqrt(det A) (the logarithm is
    taken outside the loop: a call to ``log`` would stop vectorisation), and the
    contributions H'Wr and H'WH (packed lower) to the experiment sums.
``pass2(o1, seg, cexp, beta, eta, rr, live, out)``
    per cell: x = W (r - H eta*), the lower triangle of
    dlogp/dA = (x x' - W + G R G') / 2 and dlogp/db = x_0 eta* - (G R)_0.

Each is straight-line scalar code for one cell, written once per lane of a
block of ``LANES`` cells (see the note below).
"""

from __future__ import annotations

from collections.abc import Callable

from proxyscope.core.codegen.identity import _header
from proxyscope.core.codegen.packing import _sym, layout, packed
from proxyscope.core.kernels import LANES

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
    if lay["jd"] > m:
        # W H for the shared error's cross sums: column 0 of H is e_0, column
        # j + 1 is (b_j e_0 + e_{j+1}), so W H's columns are W's column 0 and g.
        for a in range(m):
            for i in range(m):
                value = _sym("w", i, 0) if a == 0 else f"g{i}_{a - 1}"
                stores.append(f"out[b, {lay['o1_hw'] + a * m + i}, {{u}}] = {value}_{{u}}")
    return loads, body, stores


def _pass2_body(k: int, lay: dict[str, int]) -> tuple[list[str], list[str], list[str]]:
    m, jd = k + 1, lay["jd"]
    loads: list[str] = ["s_{u} = seg[b, {u}]", "e_{u} = cexp[b, {u}]", "lv_{u} = live[e_{u}]"]
    body: list[str] = []
    stores: list[str] = []
    for i in range(m):
        for j in range(i + 1):
            loads.append(f"w{i}_{j}_{{u}} = o1[b, {lay['o1_w'] + packed(i, j)}, {{u}}]")
        loads.append(f"wr{i}_{{u}} = o1[b, {lay['o1_wr'] + i}, {{u}}]")
    for i in range(k):
        loads.append(f"b{i}_{{u}} = beta[{i}, s_{{u}}]")
    for i in range(jd):
        loads.append(f"e{i}_{{u}} = eta[e_{{u}}, {i}]")
    for i in range(jd):
        for j in range(i + 1):
            loads.append(f"rr{i}_{j}_{{u}} = rr[e_{{u}}, {i}, {j}]")
    # G = W H, M x J: column 0 is W's column 0 (the outcome's own experiment
    # effect), column j + 1 is W (b_j e_0 + e_{j+1}); with a shared error
    # (J = 2M), columns M .. 2M - 1 are W itself (H_ext = [H, I]).
    for i in range(m):
        body.append(f"g{i}_0_{{u}} = {_sym('w', i, 0)}_{{u}}")
        for j in range(k):
            w_i0, w_ij = _sym("w", i, 0), _sym("w", i, j + 1)
            body.append(f"g{i}_{j + 1}_{{u}} = {w_i0}_{{u}} * b{j}_{{u}} + {w_ij}_{{u}}")

    def gx(i: int, q: int) -> str:
        return f"g{i}_{q}_{{u}}" if q < m else f"{_sym('w', i, q - m)}_{{u}}"

    for i in range(m):
        terms = " - ".join([f"wr{i}_{{u}}"] + [f"{gx(i, j)} * e{j}_{{u}}" for j in range(jd)])
        body.append(f"x{i}_{{u}} = ({terms}) * lv_{{u}}")
        stores.append(f"out[b, {lay['o2_x'] + i}, {{u}}] = x{i}_{{u}}")
    for i in range(m):
        for j in range(jd):
            terms = " + ".join(f"{gx(i, q)} * {_sym('rr', q, j)}_{{u}}" for q in range(jd))
            body.append(f"h{i}_{j}_{{u}} = {terms}")
    for i in range(m):
        for j in range(i + 1):
            terms = " + ".join(f"h{i}_{q}_{{u}} * {gx(j, q)}" for q in range(jd))
            stores.append(
                f"out[b, {lay['o2_ga'] + packed(i, j)}, {{u}}] = "
                f"0.5 * (x{i}_{{u}} * x{j}_{{u}} + ({terms} - w{i}_{j}_{{u}}) * lv_{{u}})"
            )
    # b_j enters H only at (0, j + 1).
    for j in range(k):
        value = f"(x0_{{u}} * e{j + 1}_{{u}} - h0_{j + 1}_{{u}}) * lv_{{u}}"
        stores.append(f"out[b, {lay['o2_gb'] + j}, {{u}}] = {value}")
    return loads, body, stores


def _emit_lanes(w: Callable[[str], object], parts: tuple[list[str], list[str], list[str]]) -> None:
    for group in parts:
        for stmt in group:
            for u in range(LANES):
                w("        " + stmt.format(u=u))


def passes_source(k: int, shared: bool = False) -> str:
    """The per-cell passes for K proxies (compiled when imported, with SLP on);
    ``shared``: with the experiment-level shared error (see :func:`layout`)."""
    lay = layout(k, shared)
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

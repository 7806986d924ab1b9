"""The generated sums: the source of the module with the reductions for K proxies.

``reduce_experiments_k``, ``experiment_step_k``, ``reduce_segments_k``
    the sums over each experiment's cells, the integration of eta_e, and the
    sums over each segment's cells, unrolled for K; ``blocked_index`` the
    (blocks, LANES) copy of a per-cell index.
"""

from __future__ import annotations

from proxyscope.core.codegen.experiment import _experiment_source
from proxyscope.core.codegen.identity import _header
from proxyscope.core.codegen.packing import layout, packed
from proxyscope.core.kernels import LANES


def _reduce_source(k: int, lay: dict[str, int]) -> list[str]:
    """Per-experiment and per-segment sums of the passes' outputs, unrolled for K.

    The experiment sums run over consecutive cells (cells are sorted by
    experiment) into scalar accumulators; the segment sums add each cell's
    row into its segment's column. Unrolled with K fixed, every row index is
    a constant.
    """
    m, nw, jd = k + 1, lay["nw"], lay["jd"]
    rows_b = [lay["o1_bc"] + i for i in range(m)]
    rows_p = [(i, j, lay["o1_pc"] + packed(i, j)) for i in range(m) for j in range(i + 1)]
    if jd > m:
        # The shared error's rows and columns (H_ext = [H, I]): b_u = sum W r,
        # P_u,eta = sum W H, P_uu = sum W.
        rows_b += [lay["o1_wr"] + i for i in range(m)]
        for i in range(m):
            rows_p += [(m + i, a, lay["o1_hw"] + a * m + i) for a in range(m)]
            rows_p += [(m + i, m + j, lay["o1_w"] + packed(i, j)) for j in range(i + 1)]
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
        f"    b_sum = np.zeros((n_exp, {jd}))",
        f"    p_sum = np.zeros((n_exp, {jd}, {jd}))",
        "    exp_bad = np.zeros(n_exp, dtype=np.bool_)",
        f"    const = {-0.5 * m!r} * math.log(2.0 * math.pi)",
        "    c = 0",
        "    while c < n:",
        "        e = cexp[c]",
        "        acc = 0.0",
        "        prod = 1.0",
        "        bad = False",
    ]
    out += [f"        b{i} = 0.0" for i in range(jd)]
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
    out += [f"        b_sum[e, {i}] = b{i}" for i in range(jd)]
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


def reduce_source(k: int, shared: bool = False) -> str:
    """The sums over experiments and segments and the integration of eta_e (with
    ``shared``, of eta_e and the experiment's shared error u_e), for K proxies."""
    lay = layout(k, shared)
    out = _header(k, ["from proxyscope.core.kernels import _jit"])
    out.extend(_reduce_source(k, lay))
    out.extend(_experiment_source(lay["jd"], k + 1 if shared else None))
    out.append(_BLOCKED_INDEX.format(lanes=LANES))
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

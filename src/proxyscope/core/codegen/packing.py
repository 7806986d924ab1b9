"""Packed lower triangles and the row layout of the generated kernel's work arrays.

The generated code names the entries of symmetric matrices by their lower
triangle (:func:`_sym`), stores them row-major packed (:func:`packed`), and
reads and writes the per-block arrays at the row offsets of :func:`layout`.
"""

from __future__ import annotations


def packed(i: int, j: int) -> int:
    """Index of entry (i, j), j <= i, in a row-major packed lower triangle."""
    if j > i:
        i, j = j, i
    return i * (i + 1) // 2 + j


def _sym(prefix: str, i: int, j: int) -> str:
    return f"{prefix}{i}_{j}" if j <= i else f"{prefix}{j}_{i}"


def layout(k: int, shared: bool = False) -> dict[str, int]:
    """Row offsets of the per-block arrays (blocks, rows, LANES) for K proxies.

    ``dat`` (constant data): packed lower triangle of S_c (``nw`` rows), then d_c.
    ``out1`` (pass 1 output): packed W_c, W r_c, -r'Wr/2, 1/sqrt(det A_c),
    ok flag (1.0 or 0.0), H'Wr (J = K + 1), packed H'WH (J x J).
    ``out2`` (pass 2 output): x_c, packed dlogp/dA_c, dlogp/db_c.
    H = [e_0, (b' ; I_K)] is the loading of the experiment effect (outcome's
    own first, then the proxies') on the cell's M = K + 1 metrics.
    Pass 1 gathers A_c = V_s + S_c, r_c and b_c itself, pass 2 b_c, eta*_c,
    R_e and the experiment's live flag.

    With ``shared`` (an experiment-level error u_e shared by the experiment's
    cells, integrated with eta_e: J = 2M and H_ext = [H, I]), ``out1`` also
    holds W H (M x M, row-major by column of H: entry (i, a) at ``o1_hw + a M +
    i``), which with W and W r gives the sums of the extended loading.
    """
    m = k + 1
    nw = m * (m + 1) // 2  # a packed M x M triangle; H'WH (J x J, J = M) is one too
    rows1 = nw + m + 3 + m + nw
    return {
        "m": m,
        "jd": 2 * m if shared else m,
        "nw": nw,
        "dat_rows": nw + m,
        "o1_w": 0,
        "o1_wr": nw,
        "o1_quad": nw + m,
        "o1_det": nw + m + 1,
        "o1_ok": nw + m + 2,
        "o1_bc": nw + m + 3,
        "o1_pc": nw + m + 3 + m,
        "o1_hw": rows1,
        "out1_rows": rows1 + (m * m if shared else 0),
        "o2_x": 0,
        "o2_ga": m,
        "o2_gb": m + nw,
        "out2_rows": m + nw + k,
    }

"""The generated likelihood kernel: the source of the module that joins the passes and sums.

``logp``, ``experiment_posterior``
    the kernel itself and the per-experiment conditionals of eta_e.
"""

from __future__ import annotations

from proxyscope.core.codegen.identity import _header, _module_path
from proxyscope.core.codegen.packing import layout
from proxyscope.core.codegen.passes import passes_source
from proxyscope.core.codegen.reduce import reduce_source
from proxyscope.core.kernels import LANES


def generate_source(k: int, shared: bool = False) -> str:
    """The likelihood kernel for K proxies: it imports the passes and the sums
    (:func:`passes_source`, :func:`reduce_source`) by their module names.

    With ``shared`` the kernel also integrates each experiment's shared error
    u_e ~ N(0, L_U[e] L_U[e]') (the extra argument ``chol_u`` (E, M, M)), and
    ``experiment_posterior`` returns the conditional of (eta_e, u_e).
    """
    lay = layout(k, shared)
    kind = "_shared" if shared else ""
    passes, _ = _module_path(f"passes{kind}", k, passes_source(k, shared))
    reduce, _ = _module_path(f"reduce{kind}", k, reduce_source(k, shared))
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
    text = _ORCHESTRATION
    if shared:
        text = text.replace("chol_e, v_add", "chol_e, chol_u, v_add").replace(
            "chol_e, lp, exp_bad", "chol_e, chol_u, lp, exp_bad"
        )
    out.append(text.format(**lay, k=k, lanes=LANES))
    return "\n".join(out) + "\n"


_ORCHESTRATION = """@_inline_jit
def _first_pass(dat, seg, cexp, n_exp, loc, beta, sig2, chol_c, v_add):
    # v_add (packed, per segment): a covariance added to every cell's of the
    # segment (the design-bias terms; zeros without them, which adds exactly 0).
    n_seg = loc.shape[1]
    loc = np.ascontiguousarray(loc)
    beta = np.ascontiguousarray(beta)
    v_seg, oc = segment_covariances(beta, sig2, chol_c)
    v_packed = np.empty(({nw}, n_seg))
    for i in range({m}):
        for j in range(i + 1):
            for s in range(n_seg):
                v_packed[i * (i + 1) // 2 + j, s] = v_seg[i, j, s] + v_add[i * (i + 1) // 2 + j, s]
    n_blocks = dat.shape[0]
    seg_b = blocked_index(seg, n_blocks)
    o1 = np.empty((n_blocks, {out1_rows}, {lanes}))
    pass1(dat, seg_b, v_packed, loc, beta, o1)
    lp, b_sum, p_sum, exp_bad = reduce_experiments_k(cexp, n_exp, o1)
    return v_seg, oc, o1, lp, b_sum, p_sum, exp_bad, seg_b, beta


@_inline_jit
def logp(dat, seg, cexp, n_exp, loc, beta, sig2, chol_c, chol_e, v_add, want_grad):
    # Also returns the gradient g_v with respect to each segment's covariance
    # (packed), which the design-bias terms need.
    n_seg = loc.shape[1]
    v_seg, oc, o1, lp, b_sum, p_sum, exp_bad, seg_b, beta = _first_pass(
        dat, seg, cexp, n_exp, loc, beta, sig2, chol_c, v_add
    )
    eta, rr, g_chol_e = experiment_step_k(p_sum, b_sum, chol_e, lp, exp_bad, want_grad)
    if not want_grad:
        return (lp, np.zeros(({m}, n_seg)), np.zeros(({k}, n_seg)), np.zeros(n_seg),
                np.zeros(({k}, {k})), g_chol_e, np.zeros(({nw}, n_seg)))
    live = np.empty(n_exp)
    for e in range(n_exp):
        live[e] = 0.0 if exp_bad[e] else 1.0
    o2 = np.empty((o1.shape[0], {out2_rows}, {lanes}))
    pass2(o1, seg_b, blocked_index(cexp, o1.shape[0]), beta, eta, rr, live, o2)
    g_loc, g_v, g_beta = reduce_segments_k(seg, n_seg, o2)
    g_sig2, g_chol_c = chain_rule(g_v, g_beta, beta, v_seg, oc, chol_c)
    return lp, g_loc, g_beta, g_sig2, g_chol_c, g_chol_e, g_v


@_jit
def experiment_posterior(dat, seg, cexp, n_exp, loc, beta, sig2, chol_c, chol_e, v_add):
    # Marginal log likelihood per experiment and the Gaussian conditional of
    # eta_e given the data and the parameters: mean eta* (E, J), covariance R
    # (J = K + 1: the outcome's own experiment effect first, then the proxies').
    v_seg, oc, o1, lp, b_sum, p_sum, exp_bad, seg_b, beta = _first_pass(
        dat, seg, cexp, n_exp, loc, beta, sig2, chol_c, v_add
    )
    # (a computed flag, not the literal True: numba compiles a literal argument
    # as a type of its own)
    eta, rr, g_chol_e = experiment_step_k(p_sum, b_sum, chol_e, lp, exp_bad, n_exp >= 0)
    return lp, eta, rr
"""

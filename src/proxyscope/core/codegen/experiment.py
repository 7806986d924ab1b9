"""The generated integration of the experiment effect: the source of ``experiment_step_k``.

It integrates eta_e out of every experiment given the sums of pass 1, unrolled
for the J = K + 1 dims of the experiment effect (the outcome's own eta0 first,
then the proxies' eta); it is part of the module of
:func:`proxyscope.core.codegen.reduce.reduce_source`.
"""

from __future__ import annotations

from proxyscope.core.codegen.packing import _sym


def _experiment_source(k: int, fixed: int | None = None) -> list[str]:
    """Integrate eta_e out of every experiment, unrolled for its ``k`` dims (J = K + 1).

    The algebra is in :mod:`proxyscope.core.kernels`' docstring: Q = I +
    L_E' P L_E, its Cholesky factor and inverse, z* = Q^-1 L_E' b, eta* =
    L_E z*, R = L_E Q^-1 L_E' and d/dL_E. Every J x J product is written
    out, so the intermediates stay in registers.

    With ``fixed`` = M (the experiment's shared error, J = 2M): the latent is
    (eta_e, u_e) and L = diag(L_E, L_U[e]), L_U[e] the known Cholesky factor of
    experiment e's shared error covariance (``chol_u``, read per experiment);
    the zero block of L is left out of every sum, and only d/dL_E is returned.
    """
    rng = range(k)
    m = k if fixed is None else fixed

    def p(i: int, j: int) -> str:
        return _sym("p", i, j)

    def q(i: int, j: int) -> str:
        return _sym("q", i, j)

    def qi(i: int, j: int) -> str:
        return _sym("qi", i, j)

    def nz(i: int, j: int) -> bool:
        # L[i, j] is not structurally zero (lower triangle, not the cross block).
        return j <= i and not (i >= m and j < m)

    def total(terms: list[str]) -> str:
        return " + ".join(terms) if terms else "0.0"

    args = "p_sum, b_sum, chol_e, lp, exp_bad, want_grad"
    if fixed is not None:
        args = "p_sum, b_sum, chol_e, chol_u, lp, exp_bad, want_grad"
    out = [
        "@_jit",
        f"def experiment_step_k({args}):",
        "    n_exp = b_sum.shape[0]",
        f"    eta = np.zeros((n_exp, {k}))",
        f"    rr = np.zeros((n_exp, {k}, {k}))",
        f"    g_chol_e = np.zeros(({m}, {m}))",
    ]
    out += [f"    l{i}_{j} = chol_e[{i}, {j}]" for i in range(m) for j in range(i + 1)]
    out += [f"    g{i}_{j} = 0.0" for i in range(m) for j in range(i + 1)]
    out += [
        "    for e in range(n_exp):",
        "        if exp_bad[e]:",
        "            lp[e] = -np.inf",
        "            continue",
    ]
    out += [
        f"        l{i}_{j} = chol_u[e, {i - m}, {j - m}]"
        for i in range(m, k)
        for j in range(m, i + 1)
    ]
    out += [f"        p{i}_{j} = p_sum[e, {i}, {j}]" for i in rng for j in range(i + 1)]
    out += [f"        bs{i} = b_sum[e, {i}]" for i in rng]
    # PL = P L (L lower: s >= j)
    for i in rng:
        for j in rng:
            terms = total([f"{p(i, t)} * l{t}_{j}" for t in range(j, k) if nz(t, j)])
            out.append(f"        pl{i}_{j} = {terms}")
    # Q = I + L' P L, lower triangle
    for i in rng:
        for j in range(i + 1):
            terms = total([f"l{t}_{i} * pl{t}_{j}" for t in range(i, k) if nz(t, i)])
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
        terms = total([f"l{t}_{i} * bs{t}" for t in range(i, k) if nz(t, i)])
        out.append(f"        bt{i} = {terms}")
    for i in rng:
        terms = " + ".join(f"{qi(i, j)} * bt{j}" for j in rng)
        out.append(f"        z{i} = {terms}")
    quad = " + ".join(f"bt{i} * z{i}" for i in rng)
    out.append(f"        lp[e] += 0.5 * ({quad}) - 0.5 * logdet_q")
    out += ["        if not want_grad:", "            continue"]
    for i in rng:
        terms = total([f"l{i}_{t} * z{t}" for t in range(i + 1) if nz(i, t)])
        out.append(f"        et{i} = {terms}")
        out.append(f"        eta[e, {i}] = et{i}")
    # L Q^-1, then R = L Q^-1 L'
    for i in rng:
        for j in rng:
            terms = total([f"l{i}_{t} * {qi(t, j)}" for t in range(i + 1) if nz(i, t)])
            out.append(f"        lq{i}_{j} = {terms}")
    for i in rng:
        for j in range(i + 1):
            terms = total([f"lq{i}_{t} * l{j}_{t}" for t in range(j + 1) if nz(j, t)])
            out.append(f"        rr[e, {i}, {j}] = {terms}")
            if i != j:
                out.append(f"        rr[e, {j}, {i}] = rr[e, {i}, {j}]")
    # d/dL = (b - P eta*) z*' - P L Q^-1, lower triangle (of L_E's block)
    for i in range(m):
        terms = " - ".join([f"bs{i}"] + [f"{p(i, t)} * et{t}" for t in rng])
        out.append(f"        res{i} = {terms}")
        for j in range(i + 1):
            terms = " + ".join(f"pl{i}_{t} * {qi(t, j)}" for t in rng)
            out.append(f"        g{i}_{j} += res{i} * z{j} - ({terms})")
    out += [f"    g_chol_e[{i}, {j}] = g{i}_{j}" for i in range(m) for j in range(i + 1)]
    out += ["    return eta, rr, g_chol_e", "", ""]
    return out

"""The generated integration of the experiment effect: the source of ``experiment_step_k``.

It integrates eta_e out of every experiment given the sums of pass 1, unrolled
for the J = K + 1 dims of the experiment effect (the outcome's own eta0 first,
then the proxies' eta); it is part of the module of
:func:`proxyscope.core.codegen.reduce.reduce_source`.
"""

from __future__ import annotations

from proxyscope.core.codegen.packing import _sym


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

"""The likelihood kernel against an independent dense computation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import multivariate_normal, norm

from proxyscope.core.codegen import (
    generate_source,
    layout,
    load_kernel_module,
    passes_source,
    posterior_source,
    proxy_model_logp,
    reduce_source,
)
from proxyscope.core.kernels import LANES, cell_logliks, pack_cells


def _problem(k: int, n_exp: int, n_seg: int, n_cells: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    m = k + 1
    cexp = np.sort(np.r_[np.arange(n_exp), rng.integers(0, n_exp, n_cells - n_exp)])
    seg = rng.integers(0, n_seg, n_cells)
    seg[:n_seg] = np.arange(n_seg)
    x = rng.normal(size=(n_cells, m, m))
    s_cov = (x @ x.transpose(0, 2, 1) * 0.3 + 0.2 * np.eye(m)).transpose(1, 2, 0).copy()

    def tri(n: int) -> np.ndarray:
        low = np.tril(rng.normal(size=(n, n)) * 0.5)
        low[np.diag_indices(n)] = np.abs(low[np.diag_indices(n)]) + 0.3
        return low

    return {
        "d": rng.normal(size=(m, n_cells)),
        "s_cov": s_cov,
        "seg": seg.astype(np.int64),
        "cexp": cexp.astype(np.int64),
        "n_exp": n_exp,
        "loc": rng.normal(size=(m, n_seg)),
        "beta": rng.normal(size=(k, n_seg)),
        "sig2": rng.uniform(0.2, 1.0, n_seg),
        "chol_c": tri(k),
        # The experiment effect (eta0, eta): any lower factor, not only the
        # model's diag(omega0, L_E), so every entry's gradient is checked.
        "chol_e": tri(m),
    }


def _dense(p: dict, loc, beta, sig2, chol_c, chol_e, chol_u=None) -> np.ndarray:
    """log p(d_e) per experiment by stacking each experiment's cells into one Gaussian.

    The model written out without any of the kernel's algebra: (tau, theta) of a
    cell = (nu_s + eta0 + beta_s'(eta + zeta), mu_s + eta + zeta) + (eps, 0),
    observed with noise S_c, with (eta0, eta) ~ N(0, chol_e chol_e') shared by
    the experiment's cells; the covariance of the stacked vector is built term
    by term. With ``chol_u`` (E, M, M), experiment e's cells also share an error
    u_e ~ N(0, chol_u[e] chol_u[e]'): U_e is added to every pair of its cells' blocks.
    """
    k = beta.shape[0]
    m = k + 1
    oc = chol_c @ chol_c.T
    oe = chol_e @ chol_e.T
    out = []
    for e in range(p["n_exp"]):
        cells = np.flatnonzero(p["cexp"] == e)
        n = len(cells)
        mean = np.zeros(n * m)
        cov = np.zeros((n * m, n * m))
        load = np.zeros((n * m, m))  # how (eta0, eta) enters each coordinate
        y = np.zeros(n * m)
        for i, c in enumerate(cells):
            s = p["seg"][c]
            jac = np.zeros((m, k))
            jac[0] = beta[:, s]
            jac[1:] = np.eye(k)
            within = jac @ oc @ jac.T
            within[0, 0] += sig2[s]
            block = slice(i * m, (i + 1) * m)
            cov[block, block] = within + p["s_cov"][:, :, c]
            mean[block] = loc[:, s]
            load[block, 0] = np.eye(m)[0]
            load[block, 1:] = jac
            y[block] = p["d"][:, c]
        if chol_u is not None:
            cov += np.kron(np.ones((n, n)), chol_u[e] @ chol_u[e].T)
        out.append(multivariate_normal(mean, cov + load @ oe @ load.T).logpdf(y))
    return np.array(out)


def _kernel(p: dict, **over) -> tuple:
    q = {**p, **over}
    return proxy_model_logp(
        pack_cells(q["d"], q["s_cov"]),
        q["seg"],
        q["cexp"],
        q["n_exp"],
        q["loc"],
        q["beta"],
        q["sig2"],
        q["chol_c"],
        q["chol_e"],
        True,
    )


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_log_likelihood_equals_dense_gaussian(k: int) -> None:
    p = _problem(k, n_exp=4, n_seg=3, n_cells=13, seed=k)
    lp = _kernel(p)[0]
    ref = _dense(p, p["loc"], p["beta"], p["sig2"], p["chol_c"], p["chol_e"])
    np.testing.assert_allclose(lp, ref, rtol=0, atol=1e-10)


@pytest.mark.parametrize("k", [1, 3, 4])
def test_gradients_equal_finite_differences(k: int) -> None:
    p = _problem(k, n_exp=3, n_seg=3, n_cells=9, seed=10 + k)
    names = ["loc", "beta", "sig2", "chol_c", "chol_e"]
    grads = _kernel(p)[1:6]
    h = 1e-6

    def total(**over) -> float:
        q = {n: over.get(n, p[n]) for n in names}
        return float(_dense(p, **q).sum())

    for name, grad in zip(names, grads, strict=True):
        value = p[name]
        for idx in np.ndindex(value.shape):
            if name.startswith("chol") and idx[1] > idx[0]:
                assert grad[idx] == 0.0  # upper triangle is structurally zero
                continue
            up, down = value.copy(), value.copy()
            up[idx] += h
            down[idx] -= h
            numeric = (total(**{name: up}) - total(**{name: down})) / (2 * h)
            assert abs(numeric - grad[idx]) < 1e-6 * max(1.0, abs(numeric)), (name, idx)


@pytest.mark.parametrize("k", [1, 3])
def test_a_covariance_added_per_segment_and_its_gradient(k: int) -> None:
    """v_add (the design-bias terms) adds to every cell of its segment; g_v is its gradient."""
    p = _problem(k, n_exp=3, n_seg=3, n_cells=9, seed=30 + k)
    m = k + 1
    rng = np.random.default_rng(k)
    a = rng.normal(size=(m, m, 3)) * 0.3
    extra = np.einsum("ijs,kjs->iks", a, a)  # (M, M, S) positive semi-definite
    packed = np.zeros((m * (m + 1) // 2, 3))
    for i in range(m):
        for j in range(i + 1):
            packed[i * (i + 1) // 2 + j] = extra[i, j]

    def dense(v: np.ndarray) -> float:
        full = np.zeros((m, m, 3))
        for i in range(m):
            for j in range(i + 1):
                full[i, j] = full[j, i] = v[i * (i + 1) // 2 + j]
        q = {**p, "s_cov": p["s_cov"] + full[:, :, p["seg"]]}
        return float(_dense(q, p["loc"], p["beta"], p["sig2"], p["chol_c"], p["chol_e"]).sum())

    out = proxy_model_logp(
        pack_cells(p["d"], p["s_cov"]), p["seg"], p["cexp"], p["n_exp"], p["loc"], p["beta"],
        p["sig2"], p["chol_c"], p["chol_e"], True, packed,
    )  # fmt: skip
    assert out[0].sum() == pytest.approx(dense(packed), abs=1e-10)
    h = 1e-6
    for idx in np.ndindex(packed.shape):
        up, down = packed.copy(), packed.copy()
        up[idx] += h
        down[idx] -= h
        numeric = (dense(up) - dense(down)) / (2 * h)
        i = int((np.sqrt(8 * idx[0] + 1) - 1) // 2)
        both = 1.0 if idx[0] == i * (i + 1) // 2 + i else 2.0  # off-diagonal: (i, j) and (j, i)
        assert abs(numeric - both * out[6][idx]) < 1e-6 * max(1.0, abs(numeric)), idx


@pytest.mark.parametrize("k", [1, 4])
def test_the_shared_error_kernel_equals_dense_gaussian_with_its_gradients(k: int) -> None:
    """Experiments whose cells share an error u_e ~ N(0, U_e): the shared kernel's log
    likelihood and every gradient (including the per-segment covariance's) against the
    stacked Gaussian with U_e in every pair of the experiment's cells' blocks; an
    experiment with U_e = 0 and the unshared kernel agree exactly."""
    p = _problem(k, n_exp=3, n_seg=3, n_cells=10, seed=40 + k)
    m = k + 1
    chol_u = np.tril(np.random.default_rng(k).normal(size=(3, m, m)) * 0.4)
    chol_u[1] = 0.0  # an experiment without a shared error
    nw = m * (m + 1) // 2
    v_add = np.zeros((nw, 3))
    names = ["loc", "beta", "sig2", "chol_c", "chol_e"]
    args = [pack_cells(p["d"], p["s_cov"]), p["seg"], p["cexp"], p["n_exp"]]
    out = proxy_model_logp(*args, *(p[n] for n in names), True, v_add, chol_u)
    ref = _dense(p, *(p[n] for n in names), chol_u=chol_u)
    np.testing.assert_allclose(out[0], ref, rtol=0, atol=1e-10)
    plain = proxy_model_logp(*args, *(p[n] for n in names), True, v_add)
    zero = proxy_model_logp(*args, *(p[n] for n in names), True, v_add, np.zeros_like(chol_u))
    for a, b in zip(plain, zero, strict=True):
        np.testing.assert_array_equal(a, b)

    def total(**over) -> float:
        q = {n: over.get(n, p[n]) for n in names}
        return float(_dense(p, **q, chol_u=chol_u).sum())

    h = 1e-6
    for name, grad in zip(names, out[1:6], strict=True):
        value = p[name]
        for idx in np.ndindex(value.shape):
            if name.startswith("chol") and idx[1] > idx[0]:
                continue
            up, down = value.copy(), value.copy()
            up[idx] += h
            down[idx] -= h
            numeric = (total(**{name: up}) - total(**{name: down})) / (2 * h)
            assert abs(numeric - grad[idx]) < 1e-6 * max(1.0, abs(numeric)), (name, idx)
    # d/dV of segment 0's covariance, entry (0, 0): V_s enters every cell of the segment.
    bumped = p["s_cov"].copy()
    bumped[0, 0, p["seg"] == 0] += h
    lo = p["s_cov"].copy()
    lo[0, 0, p["seg"] == 0] -= h
    numeric = (
        _dense({**p, "s_cov": bumped}, *(p[n] for n in names), chol_u=chol_u).sum()
        - _dense({**p, "s_cov": lo}, *(p[n] for n in names), chol_u=chol_u).sum()
    ) / (2 * h)
    assert out[6][0, 0] == pytest.approx(numeric, rel=1e-6, abs=1e-8)


def test_the_shared_error_kernel_recovers_the_joint_conditional_of_eta_and_u() -> None:
    """experiment_posterior of the shared kernel: the Gaussian conditional of (eta0_e,
    eta_e, u_e) given the experiment's cells, against conditioning the stacked
    Gaussian directly."""
    k = 2
    m = k + 1
    p = _problem(k, n_exp=3, n_seg=3, n_cells=10, seed=77)
    chol_u = np.tril(np.random.default_rng(7).normal(size=(3, m, m)) * 0.5)
    module = load_kernel_module(k, shared=True)
    names = ["loc", "beta", "sig2", "chol_c", "chol_e"]
    lp, mean, cov = module.experiment_posterior(
        pack_cells(p["d"], p["s_cov"]), p["seg"], p["cexp"], p["n_exp"],
        *(p[n] for n in names), chol_u, np.zeros((m * (m + 1) // 2, 3)),
    )  # fmt: skip
    np.testing.assert_allclose(lp, _dense(p, *(p[n] for n in names), chol_u=chol_u), atol=1e-10)
    oc = p["chol_c"] @ p["chol_c"].T
    for e in range(p["n_exp"]):
        cells = np.flatnonzero(p["cexp"] == e)
        n = len(cells)
        load = np.zeros((n * m, 2 * m))
        noise = np.zeros((n * m, n * m))
        resid = np.zeros(n * m)
        for i, c in enumerate(cells):
            s = p["seg"][c]
            jac = np.eye(m)
            jac[0, 1:] = p["beta"][:, s]
            block = slice(i * m, (i + 1) * m)
            load[block, :m] = jac
            load[block, m:] = np.eye(m)
            within = jac[:, 1:] @ oc @ jac[:, 1:].T
            within[0, 0] += p["sig2"][s]
            noise[block, block] = within + p["s_cov"][:, :, c]
            resid[block] = p["d"][:, c] - p["loc"][:, s]
        prior = np.zeros((2 * m, 2 * m))
        prior[:m, :m] = p["chol_e"] @ p["chol_e"].T
        prior[m:, m:] = chol_u[e] @ chol_u[e].T
        gain = prior @ load.T @ np.linalg.inv(load @ prior @ load.T + noise)
        np.testing.assert_allclose(mean[e], gain @ resid, atol=1e-10)
        np.testing.assert_allclose(cov[e], prior - gain @ load @ prior, atol=1e-10)


def test_a_cell_without_positive_definite_covariance_gives_minus_inf() -> None:
    p = _problem(2, n_exp=3, n_seg=2, n_cells=8, seed=3)
    bad = p["s_cov"].copy()
    target = int(np.flatnonzero(p["cexp"] == 1)[0])
    bad[:, :, target] = -np.eye(3)  # V_s + S_c not positive definite
    lp, *grads = _kernel(p, s_cov=bad)
    assert lp[1] == -np.inf
    assert np.all(np.isfinite(lp[[0, 2]]))
    ref = _dense(p, p["loc"], p["beta"], p["sig2"], p["chol_c"], p["chol_e"])
    np.testing.assert_allclose(lp[[0, 2]], ref[[0, 2]], atol=1e-10)
    assert all(np.all(np.isfinite(g)) for g in grads)


@pytest.mark.parametrize("shifted", [False, True])
def test_cell_logliks_match_scipy(shifted: bool) -> None:
    """Both per-cell log densities, per draw, against scipy on the model written out
    (with ``shifted``, given each experiment's shared error, subtracted from d)."""
    k, n_draw = 3, 2
    draws = [_problem(k, n_exp=3, n_seg=2, n_cells=7, seed=20 + t) for t in range(n_draw)]
    p = draws[0]  # data (and cell layout, same for every seed) from the first
    eta = np.random.default_rng(9).normal(size=(n_draw, p["n_exp"], k + 1))  # (eta0, eta)
    s_cov = p["s_cov"].copy()
    s_cov[:, :, 4] = -np.eye(k + 1)  # not positive definite: -inf in both
    stacked = {name: np.stack([q[name] for q in draws]) for name in ("loc", "beta", "sig2")}
    shift = np.random.default_rng(3).normal(size=(n_draw, p["n_exp"], k + 1))
    full, outcome = cell_logliks(
        p["d"],
        s_cov,
        p["seg"],
        p["cexp"],
        stacked["loc"],
        stacked["beta"],
        stacked["sig2"],
        np.stack([q["chol_c"] for q in draws]),
        eta,
        np.zeros((n_draw, 1, k + 1, k + 1)),
        np.zeros(p["d"].shape[1], dtype=np.int64),
        shift if shifted else np.zeros((0, 0, 0)),
    )
    for t, q in enumerate(draws):
        oc = q["chol_c"] @ q["chol_c"].T
        for c in range(p["d"].shape[1]):
            if c == 4:
                assert full[t, c] == -np.inf and outcome[t, c] == -np.inf
                continue
            s, e = p["seg"][c], p["cexp"][c]
            b = q["beta"][:, s]
            # (tau, theta) = (nu_s + eta0 + b'(eta + zeta) + eps, mu_s + eta + zeta)
            own, shared = eta[t, e, 0], eta[t, e, 1:]
            mean = q["loc"][:, s] + np.r_[own + b @ shared, shared]
            v = np.zeros((k + 1, k + 1))
            v[0, 0] = b @ oc @ b + q["sig2"][s]
            v[0, 1:] = v[1:, 0] = oc @ b
            v[1:, 1:] = oc
            total = v + s_cov[:, :, c]
            y = p["d"][:, c] - (shift[t, e] if shifted else 0.0)
            ref = multivariate_normal(mean, total).logpdf(y)
            gain = np.linalg.solve(total[1:, 1:], total[1:, 0])
            cond_mean = mean[0] + gain @ (y[1:] - mean[1:])
            cond_var = total[0, 0] - gain @ total[1:, 0]
            ref_y = norm(cond_mean, np.sqrt(cond_var)).logpdf(y[0])
            assert full[t, c] == pytest.approx(ref, abs=1e-10)
            assert outcome[t, c] == pytest.approx(ref_y, abs=1e-10)


def test_pack_cells_layout_matches_codegen() -> None:
    k = 2
    lay = layout(k)
    n = 5  # two blocks of LANES = 4, the second padded with three identity cells
    d = np.arange(3 * n, dtype=float).reshape(3, n)
    s = np.arange(9 * n, dtype=float).reshape(3, 3, n)
    packed = pack_cells(d, s)
    assert packed.shape == (2, lay["dat_rows"], LANES)
    flat = packed.transpose(1, 0, 2).reshape(lay["dat_rows"], -1)
    np.testing.assert_array_equal(flat[lay["nw"] :, :n], d)
    np.testing.assert_array_equal(flat[1, :n], s[1, 0])  # entry (1, 0) of the lower triangle
    np.testing.assert_array_equal(flat[5, :n], s[2, 2])
    np.testing.assert_array_equal(flat[[0, 2, 5], n:], 1.0)  # padding: identity S
    np.testing.assert_array_equal(flat[[1, 3, 4, 6, 7, 8], n:], 0.0)  # zero d


def test_generated_code_identity_tracks_source() -> None:
    from proxyscope.core.codegen.identity import _module_path

    for make in (passes_source, reduce_source, generate_source, posterior_source):
        assert make(3) == make(3)
        assert make(3) != make(4)
    assert "def pass1" in passes_source(2) and "def reduce_segments_k" in reduce_source(2)
    # The kernel imports the passes and sums by the names their sources give
    # them, and the C entry point imports the kernel the same way, so an edit
    # anywhere gives every module that depends on it a new name (numba's cache
    # does not follow calls into other modules).
    kernel = generate_source(2)
    assert f"from {_module_path('passes', 2, passes_source(2))[0]} import" in kernel
    assert f"from {_module_path('reduce', 2, reduce_source(2))[0]} import" in kernel
    assert f"from {_module_path('kernel', 2, kernel)[0]} import logp" in posterior_source(2)


@pytest.mark.slow
def test_a_cold_compile_is_announced_shared_with_a_helper_and_cached(tmp_path) -> None:
    # A fresh cache: the first process compiles (the passes in a helper
    # process) and says so; the second finds everything compiled and is quiet.
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "PROXYSCOPE_CACHE_DIR": str(tmp_path / "proxyscope"),
        "NUMBA_CACHE_DIR": str(tmp_path / "numba"),
    }
    code = (
        "from proxyscope.core import codegen as c\n"
        "from proxyscope.model.native import load_density\n"
        "print('before', c.is_compiled('posterior', 1))\n"
        "load_density(1)\n"
        "print('after', c.is_compiled('posterior', 1))\n"
    )
    runs = [
        subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        for _ in range(2)
    ]
    first, second = runs
    assert "before False" in first.stdout and "after True" in first.stdout
    assert "compiling the sampler's code for 1 proxy" in first.stderr
    assert "before True" in second.stdout
    assert "compiling" not in second.stderr
    kernels = tmp_path / "proxyscope" / "kernels"
    for kind in ("passes", "reduce", "kernel", "posterior"):
        assert list(kernels.glob(f"proxyscope_{kind}_k1_*.compiled-*")), kind

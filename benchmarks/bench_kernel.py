"""Benchmark: where one log density + gradient of the default model spends its time.

On the default world (50 experiments, about 1,200 cells, K = 4) at one point of
the unconstrained space, times (best of several repeats, each the mean of many
calls):

``full``          the function nutpie runs: the compiled log posterior's C entry
                  point (``proxyscope.model.native``), called through ctypes
                  (which adds about a microsecond nutpie does not pay);
``priors``        the prior and the coordinate maps with their gradient
                  (``core.density.prior_forward`` and ``likelihood_back``);
``kernel``        the likelihood kernel alone (``core.codegen.logp_kernel``);
then the kernel's stages: the segment covariances, pass 1 (per cell: factor,
inverse, products), the per-experiment sums, the integration of eta_e, pass 2
(per cell: gradient terms), the per-segment sums and the chain rule.

Everything is printed as a share of ``full`` measured in the same process, so
the ratios hold on a slower or busier machine while the microseconds do not.
The share outside the kernel is what a faster kernel cannot remove.

Run ``python benchmarks/bench_kernel.py [--repeats N] [--calls N]``.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))


def best_microseconds(fn: Callable[..., Any], args: list[Any], repeats: int, calls: int) -> float:
    fn(*args)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn(*args)
        best = min(best, (time.perf_counter() - t0) / calls)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()

    from bench_model import _effects

    from proxyscope.core import density, kernels
    from proxyscope.core.codegen import layout, load_kernel_module, packed
    from proxyscope.model.native import NativeDensity, load_density
    from proxyscope.model.priors import Priors
    from proxyscope.model.setup import prepare

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        effects = _effects(50)
    prepared = prepare(effects, "additive", Priors(), "shared", "moderated")
    load_density(len(effects.proxies), announce=False)
    native = NativeDensity(prepared.layout, prepared.data)
    n_dim = native.n_dim
    x = prepared.layout.initial_point(np.random.default_rng(0))
    timings: dict[str, float] = {}

    def run(name: str, f: Callable[..., Any], f_args: list[Any]) -> None:
        timings[name] = best_microseconds(f, f_args, args.repeats, args.calls)

    run("full", native.logp_and_grad, [x])

    # The likelihood's inputs at x.
    ints, floats = prepared.layout.ints, prepared.layout.floats
    grad = np.zeros(n_dim)
    _, loc, beta, log_sigma, chol_c, chol_e = density.prior_forward(x, grad, ints, floats)
    sig2 = np.exp(2.0 * log_sigma)
    dat, seg, cexp = native.table.dat, native.table.seg, native.table.cexp
    n_exp = native.table.n_experiments
    k = beta.shape[0]
    gen = load_kernel_module(k)
    run(
        "kernel",
        gen.logp,
        [dat, seg, cexp, n_exp, loc, beta, sig2, chol_c, chol_e, True],
    )
    _, g_loc, g_beta, g_sig2, g_chol_c, g_chol_e = gen.logp(
        dat, seg, cexp, n_exp, loc, beta, sig2, chol_c, chol_e, True
    )
    g_ls = 2.0 * sig2 * g_sig2

    def priors_and_maps() -> None:
        density.prior_forward(x, grad, ints, floats)
        density.likelihood_back(x, grad, ints, floats, g_loc, g_beta, g_ls, g_chol_c, g_chol_e)

    run("priors", priors_and_maps, [])

    # Stages, each on the inputs the kernel gives it.
    lay = layout(k)
    n_seg = loc.shape[1]
    v_seg, oc = kernels.segment_covariances(beta, sig2, chol_c)
    v_packed = np.empty((lay["nw"], n_seg))
    for i in range(lay["m"]):
        for j in range(i + 1):
            v_packed[packed(i, j)] = v_seg[i, j]
    seg_b = gen.blocked_index(seg, dat.shape[0])
    cexp_b = gen.blocked_index(cexp, dat.shape[0])
    o1 = np.empty((dat.shape[0], lay["out1_rows"], kernels.LANES))
    gen.pass1(dat, seg_b, v_packed, loc, beta, o1)
    lp, b_sum, p_sum, exp_bad = gen.reduce_experiments_k(cexp, n_exp, o1)
    eta, rr, _ = gen.experiment_step_k(p_sum, b_sum, chol_e, lp.copy(), exp_bad, True)
    live = np.ones(n_exp)
    o2 = np.empty((dat.shape[0], lay["out2_rows"], kernels.LANES))
    gen.pass2(o1, seg_b, cexp_b, beta, eta, rr, live, o2)
    _, g_v, g_beta = gen.reduce_segments_k(seg, n_seg, o2)
    run("segment covariances", kernels.segment_covariances, [beta, sig2, chol_c])
    run("pass 1", gen.pass1, [dat, seg_b, v_packed, loc, beta, o1])
    run("experiment sums", gen.reduce_experiments_k, [cexp, n_exp, o1])
    run(
        "eta integration",
        gen.experiment_step_k,
        [p_sum, b_sum, chol_e, lp.copy(), exp_bad, True],
    )
    run("pass 2", gen.pass2, [o1, seg_b, cexp_b, beta, eta, rr, live, o2])
    run("segment sums", gen.reduce_segments_k, [seg, n_seg, o2])
    run("chain rule", kernels.chain_rule, [g_v, g_beta.copy(), beta, v_seg, oc, chol_c])
    run("blocked indices (x2)", gen.blocked_index, [seg, dat.shape[0]])
    timings["blocked indices (x2)"] *= 2

    full = timings["full"]
    print(f"default world: {dat.shape[0]} blocks of {kernels.LANES} cells, {n_dim} parameters")
    print("| part | us | share of full |")
    print("|---|---|---|")
    for name, us in timings.items():
        print(f"| {name} | {us:.1f} | {us / full:.2f} |")
    outside = full - timings["kernel"]
    print(f"| outside the kernel (full - kernel) | {outside:.1f} | {outside / full:.2f} |")


if __name__ == "__main__":
    main()

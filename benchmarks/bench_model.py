"""Benchmark: ProxyModel.fit on the default world — wall time, compile, ESS/s, memory.

Cases (each in its own subprocess, so compile caches and peak memory are its own):

``cold``    the default world (250k users, 50 experiments, 24 cells, 4 proxies,
            about 1,200 cells), 4 chains x 1000 draws after 1000 tuning steps,
            with empty PyTensor / Numba / proxyscope kernel caches;
``warm``    the same fit in a new process that finds those caches on disk;
``e200``    200 experiments (1M users), ``e1000`` 1,000 experiments (5M users),
            both at ``--big-draws`` draws and tuning steps (default 300);
``lowrank`` the default world with nutpie's low-rank mass matrix, the
            alternative to the default diagonal one (compiled code as for
            ``warm``);
``latent``  the marginalized model and the same model with explicit per-cell
            latent effects (``build_model(form="latent")``), both sampled with
            nutpie at the same settings in one process; the ratio of their
            effective samples per second (worst parameter of those they share)
            is what the marginalization buys: reported per second of sampling
            and per second of wall time including compilation;
``latent200`` the same comparison on 200 experiments (about 4,800 cells), to
            show how the ratio moves with the size of the history (runs only
            when listed).

Run ``python benchmarks/bench_model.py
[--cases cold,warm,lowrank,latent,latent200,e200,e1000] [--draws N --tune N
--chains N] [--latent-draws N]`` (``lowrank`` and ``latent200`` run only when
listed); results go to ``benchmarks/_results/model.json`` and a table is
printed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from proxyscope._io import write_atomic
from proxyscope.simulate import column_roles

RESULTS = Path(__file__).parent / "_results" / "model.json"
ROLES: dict[str, Any] = column_roles()
USERS_PER_EXPERIMENT = 5_000
SEED = 7


def _effects(n_experiments: int) -> Any:
    import proxyscope as ps

    world = ps.simulate.streaming(
        n_users=USERS_PER_EXPERIMENT * n_experiments, n_experiments=n_experiments, seed=SEED
    )
    return ps.summarize(world.users, engine="duckdb", **ROLES)


def _fit_case(
    n_experiments: int, draws: int, tune: int, chains: int, settings: dict[str, Any] | None = None
) -> dict[str, Any]:
    import proxyscope as ps

    effects = _effects(n_experiments)
    t0 = time.perf_counter()
    fit = ps.ProxyModel(sampler_settings=settings).fit(
        effects, draws=draws, tune=tune, chains=chains, random_seed=SEED, progress=False
    )
    wall = time.perf_counter() - t0
    diag = fit.diagnostics()
    timings = fit.sampler["timings"]
    stats = fit.idata.sample_stats
    return {
        "settings": fit.sampler["settings"],
        "experiments": n_experiments,
        "cells": effects.n_cells,
        "chains": chains,
        "draws": draws,
        "tune": tune,
        "wall_seconds": wall,
        "compile_seconds": timings.get("compile_seconds"),
        "sample_seconds": timings.get("sample_seconds"),
        "rhat_max": float(diag.table["r_hat"].max()),
        "ess_bulk_min": float(diag.table["ess_bulk"].min()),
        "ess_tail_min": float(diag.table["ess_tail"].min()),
        "divergences": diag.divergences,
        "passed": diag.passed,
        "steps_per_draw": float(stats["n_steps"].mean()),
        "ess_per_second": float(diag.table["ess_bulk"].min()) / wall,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _latent_case(draws: int, tune: int, chains: int, n_experiments: int = 50) -> dict[str, Any]:
    """Marginalized vs explicit-latent form of the same model, same sampler settings."""
    import arviz as az
    import nutpie

    from proxyscope.model.builder import build_model
    from proxyscope.model.native import NativeDensity, load_density
    from proxyscope.model.priors import Priors
    from proxyscope.model.sampling import NUTPIE_DEFAULTS
    from proxyscope.model.setup import prepare

    effects = _effects(n_experiments)
    out: dict[str, Any] = {
        "experiments": n_experiments,
        "cells": effects.n_cells,
        "chains": chains,
        "draws": draws,
        "tune": tune,
    }
    posteriors = {}
    for form in ("marginal", "latent"):
        built = build_model(effects, "additive", Priors(), form=form)
        t0 = time.perf_counter()
        prepared = None
        if form == "marginal":
            # What ProxyModel.fit samples: the compiled log posterior, in the
            # coordinates of its first run.
            prepared = prepare(effects, "additive", Priors(), "shared", "moderated")
            load_density(len(effects.proxies), announce=False)
            compiled = NativeDensity(prepared.layout, prepared.data).nutpie_model()
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                compiled = nutpie.compile_pymc_model(built.model)
        t_compile = time.perf_counter() - t0
        trace = nutpie.sample(
            compiled,
            draws=draws,
            tune=tune,
            chains=chains,
            seed=SEED,
            progress_bar=False,
            **NUTPIE_DEFAULTS,
        )
        wall = time.perf_counter() - t0
        sampling = wall - t_compile
        posterior = trace.posterior
        if prepared is not None:
            posterior = prepared.layout.dataset(np.asarray(posterior["x"].values))
        shared = [v for v in posterior.data_vars if not str(v).startswith("latent_")]
        ess = az.ess(posterior[shared], method="bulk")
        # Which parameter sets the minimum (the ratio below is of minima).
        slowest = min(shared, key=lambda v: float(ess[v].min()))
        ess_min = float(ess[slowest].min())
        index = np.unravel_index(int(np.argmin(ess[slowest].values)), ess[slowest].shape)
        # Tuning and draws both took sampling time (nutpie saves the warmup).
        n_steps = float(trace.sample_stats["n_steps"].sum())
        n_steps += float(trace.warmup_sample_stats["n_steps"].sum())
        posteriors[form] = posterior
        out[form] = {
            "compile_seconds": t_compile,
            "wall_seconds": wall,
            "ess_bulk_min": ess_min,
            "ess_per_second": ess_min / wall,
            "sampling_seconds": sampling,
            "ess_per_sampling_second": ess_min / sampling,
            "steps_per_draw": float(trace.sample_stats["n_steps"].mean()),
            # Leapfrog steps run side by side on `cores` threads: cost per gradient.
            "us_per_gradient": 1e6 * sampling * min(chains, os.cpu_count() or 1) / n_steps,
            "ess_per_draw": ess_min / (chains * draws),
            "slowest_parameter": f"{slowest}{list(map(int, index)) if index else ''}",
            "divergences": int(trace.sample_stats["diverging"].sum()),
            # What the sampler moves (the draws also hold deterministic copies).
            "parameters": int(
                prepared.layout.n_dim
                if prepared is not None
                else sum(
                    posterior[rv.name].isel(chain=0, draw=0).size for rv in built.model.free_RVs
                )
            ),
        }
    # Two ratios: per second of sampling (what the marginalization itself buys,
    # whatever is in the compile caches) and per second of wall time including
    # compilation (which depends on what the caches hold: in one run of all
    # cases the marginal model's compile is warm and the latent one's cold).
    out["ratio_ess_per_second"] = (
        out["marginal"]["ess_per_second"] / out["latent"]["ess_per_second"]
    )
    out["ratio_ess_per_sampling_second"] = (
        out["marginal"]["ess_per_sampling_second"] / out["latent"]["ess_per_sampling_second"]
    )
    # Same model: the posterior means of the shared parameters agree.
    gaps = {}
    for name in ("loc_global", "slope_global", "sigma_global", "sd_e"):
        if name in posteriors["marginal"]:
            a = posteriors["marginal"][name]
            b = posteriors["latent"][name]
            sd = float(a.std())
            gaps[name] = float(
                np.max(np.abs(a.mean(("chain", "draw")) - b.mean(("chain", "draw"))))
            )
            gaps[name] /= max(sd, 1e-12)
    out["max_mean_gap_in_posterior_sds"] = gaps
    return out


def child(case: str, args: argparse.Namespace) -> dict[str, Any]:
    if case in ("cold", "warm"):
        return _fit_case(50, args.draws, args.tune, args.chains)
    if case == "lowrank":
        # The alternative to the default diagonal mass matrix (see ProxyModel.fit).
        low_rank = {"low_rank_modified_mass_matrix": True}
        return _fit_case(50, args.draws, args.tune, args.chains, low_rank)
    if case == "e200":
        return _fit_case(200, args.big_draws, args.big_draws, args.chains)
    if case == "e1000":
        return _fit_case(1000, args.big_draws, args.big_draws, args.chains)
    if case == "latent":
        return _latent_case(args.latent_draws, args.latent_draws, args.chains)
    if case == "latent200":
        return _latent_case(args.latent_draws, args.latent_draws, args.chains, 200)
    raise SystemExit(f"unknown case {case!r}")


def run_child(case: str, args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        target = handle.name
    cmd = [sys.executable, __file__, "--child", case, "--json", target]
    cmd += ["--draws", str(args.draws), "--tune", str(args.tune), "--chains", str(args.chains)]
    cmd += ["--latent-draws", str(args.latent_draws), "--big-draws", str(args.big_draws)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env)
    result = json.loads(Path(target).read_text())
    result["process_seconds"] = time.perf_counter() - t0
    os.unlink(target)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="cold,warm,latent,e200,e1000")
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--latent-draws", type=int, default=300)
    parser.add_argument("--big-draws", type=int, default=300)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = child(args.child, args)
        Path(args.json).write_text(json.dumps(result, default=float))
        return

    cache = Path(tempfile.mkdtemp(prefix="proxyscope-bench-"))
    env = {
        **os.environ,
        "PYTENSOR_FLAGS": f"base_compiledir={cache / 'pytensor'}",
        "NUMBA_CACHE_DIR": str(cache / "numba"),
        "PROXYSCOPE_CACHE_DIR": str(cache / "proxyscope"),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for case in args.cases.split(","):
        print(f"running {case} ...", flush=True)
        results[case] = run_child(case, args, env)
        text = json.dumps(results, indent=2, default=float)
        write_atomic(RESULTS, lambda path, text=text: Path(path).write_text(text))
        print(json.dumps(results[case], indent=2, default=float), flush=True)
    print_table(results)


def print_table(results: dict[str, Any]) -> None:
    rows = []
    for case in ("cold", "warm", "lowrank", "e200", "e1000"):
        r = results.get(case)
        if not r:
            continue
        rows.append(
            f"| {case} | {r['experiments']} | {r['cells']} | {r['chains']}x({r['tune']}+"
            f"{r['draws']}) | {r['wall_seconds']:.0f} | {r['compile_seconds']:.1f} | "
            f"{r['steps_per_draw']:.0f} | {r['rhat_max']:.3f} | {r['ess_bulk_min']:.0f} | "
            f"{r['divergences']} | {r['ess_per_second']:.1f} | {r['peak_rss_mb']:.0f} |"
        )
    if rows:
        print(
            "| case | experiments | cells | draws | wall s | compile s | steps/draw | "
            "max R-hat | min bulk ESS | divergences | min ESS/s | peak MB |"
        )
        print("|---" * 12 + "|")
        print("\n".join(rows))
    for case in ("latent", "latent200"):
        lat = results.get(case)
        if lat:
            print_latent(lat)


def print_latent(lat: dict[str, Any]) -> None:
    m, la = lat["marginal"], lat["latent"]
    print(
        f"\nlatent form, {lat.get('experiments', 50)} experiments "
        f"({lat['chains']}x({lat['tune']}+{lat['draws']})): marginal "
        f"{m['ess_per_second']:.2f} ESS/s ({m['parameters']} parameters, "
        f"{m['steps_per_draw']:.0f} steps/draw), latent {la['ess_per_second']:.3f} ESS/s "
        f"({la['parameters']} parameters, {la['steps_per_draw']:.0f} steps/draw): "
        f"ratio {lat['ratio_ess_per_second']:.0f}x with compile time; per second of "
        f"sampling {m['ess_per_sampling_second']:.2f} vs {la['ess_per_sampling_second']:.3f}: "
        f"ratio {lat['ratio_ess_per_sampling_second']:.1f}x; posterior-mean gaps (in sds) "
        f"{lat['max_mean_gap_in_posterior_sds']}"
    )
    for form, r in (("marginal", m), ("latent", la)):
        print(
            f"  {form}: {r['us_per_gradient']:.0f} us per gradient, "
            f"{r['steps_per_draw']:.0f} steps/draw, min bulk ESS per draw "
            f"{r['ess_per_draw']:.3f} ({r['slowest_parameter']})"
        )


if __name__ == "__main__":
    main()

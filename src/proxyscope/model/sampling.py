"""Run NUTS on a built model: nutpie by default, PyMC's own NUTS on request."""

from __future__ import annotations

import os
import time
import warnings
from typing import Any, cast

import numpy as np
import pymc as pm
import xarray as xr

from proxyscope import dims
from proxyscope.model.native import FLAT, FlatLogp, NativeDensity

# nutpie's linear algebra may use Rust's rayon thread pool; on a 2-core
# machine extra threads only compete with the chains (measured: one thread
# was ~1.5x faster). Must be set before the pool starts; a value the user set
# is kept. Reproducibility: see _nutpie_chains.
os.environ.setdefault("RAYON_NUM_THREADS", "1")

#: nutpie settings. The diagonal mass matrix: fits repeat bit for bit with
#: the same seed (the low-rank adaptation does not, see _nutpie_chains), and on
#: this model's centred / non-centred geometry it mixes as well as low rank
#: (measured, ProxyModel.fit). A target acceptance of 0.9 keeps divergences
#: away from the boundary regions of the covariance scales.
NUTPIE_DEFAULTS: dict[str, Any] = {
    "low_rank_modified_mass_matrix": False,
    "target_accept": 0.9,
}
PYMC_DEFAULTS: dict[str, Any] = {"target_accept": 0.9}


def sample(
    density: NativeDensity,
    *,
    sampler: str,
    draws: int,
    tune: int,
    chains: int,
    random_seed: int,
    progress: bool,
    settings: dict[str, Any],
) -> tuple[xr.Dataset, xr.Dataset, dict[str, Any]]:
    """Sample the log posterior ``density``; returns (named draws, sample stats, timings).

    Both samplers move the flat vector of :mod:`proxyscope.model.layout`
    through the same compiled log posterior; the draws come back as the
    model's named parameters (:meth:`~proxyscope.model.layout.Layout.dataset`).
    The stats use one naming for both samplers: ``diverging``,
    ``tree_depth``, ``reached_max_treedepth``, ``energy``, ``step_size``,
    ``n_steps``.
    """
    cores = max(1, min(chains, os.cpu_count() or 1))
    timings: dict[str, Any] = {}
    t0 = time.perf_counter()
    if sampler == "nutpie":
        kwargs = {**NUTPIE_DEFAULTS, **settings}
        flat, stats = _nutpie_chains(
            density.nutpie_model(), draws, tune, chains, cores, random_seed, progress, kwargs
        )
        norm = {
            "diverging": stats["diverging"],
            "tree_depth": stats["depth"],
            "reached_max_treedepth": stats["maxdepth_reached"],
            "energy": stats["energy"],
            "step_size": stats["step_size"],
            "n_steps": stats["n_steps"],
        }
    else:
        kwargs = {**PYMC_DEFAULTS, **settings}
        flat, stats = _pymc_chains(
            density, draws, tune, chains, cores, random_seed, progress, kwargs
        )
        norm = {
            "diverging": stats["diverging"],
            "tree_depth": stats["tree_depth"],
            "reached_max_treedepth": stats["reached_max_treedepth"],
            "energy": stats["energy"],
            "step_size": stats["step_size"],
            "n_steps": stats["n_steps"],
        }
    timings["sample_seconds"] = time.perf_counter() - t0
    raw = density.layout.dataset(flat)
    stats_ds = xr.Dataset(
        {k: ((dims.CHAIN, dims.DRAW), np.asarray(v.values)) for k, v in norm.items()},
        coords={dims.CHAIN: raw[dims.CHAIN].values, dims.DRAW: raw[dims.DRAW].values},
    )
    stats_ds["diverging"] = stats_ds["diverging"].astype(bool)
    stats_ds["reached_max_treedepth"] = stats_ds["reached_max_treedepth"].astype(bool)
    timings["settings"] = {**kwargs, "cores": cores}
    return raw, stats_ds, timings


def _pymc_chains(
    density: NativeDensity,
    draws: int,
    tune: int,
    chains: int,
    cores: int,
    random_seed: int,
    progress: bool,
    kwargs: dict[str, Any],
) -> tuple[np.ndarray, xr.Dataset]:
    """PyMC's NUTS on the flat vector, its density an Op over the compiled function."""
    with pm.Model(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="pymc")
        x = pm.Flat(FLAT, shape=density.n_dim, initval=density.initial_point(random_seed))
        pm.Potential("loglik", cast(list[Any], FlatLogp(density)(x))[0])
        idata = pm.sample(
            draws=draws,
            tune=tune,
            chains=chains,
            cores=cores,
            random_seed=random_seed,
            progressbar=progress,
            compute_convergence_checks=False,
            return_inferencedata=True,
            idata_kwargs={"log_likelihood": False},
            **kwargs,
        )
    flat = np.asarray(idata.posterior[FLAT].values, dtype=float)
    return flat, idata.sample_stats


def draw_names(model: pm.Model) -> list[str]:
    """What a fit keeps of each draw: the free random variables and the
    deterministics (the slopes, which are sampled in rotated coordinates)."""
    return [rv.name for rv in model.free_RVs] + [v.name for v in model.deterministics]


def chain_seed(random_seed: int, chain: int) -> int:
    """The seed of one chain, derived from the fit's seed and the chain's number."""
    return int(np.random.SeedSequence([int(random_seed), int(chain)]).generate_state(1)[0])


_NUTPIE_STATS = ("diverging", "depth", "maxdepth_reached", "energy", "step_size", "n_steps")


def _nutpie_chains(
    compiled: Any,
    draws: int,
    tune: int,
    chains: int,
    cores: int,
    random_seed: int,
    progress: bool,
    kwargs: dict[str, Any],
) -> tuple[np.ndarray, xr.Dataset]:
    """Run each chain as its own one-chain nutpie sampler, ``cores`` at a time.

    Why not one nutpie call with ``cores`` threads: there, a thread idle
    between its own chain's steps could take part of another chain's
    low-rank adaptation, so rounding depended on timing (measured: 7 of 7
    same-seed repeats differed with 2 threads, 0 of 7 with one). A one-chain
    sampler has a one-thread pool; the chains run side by side in Python
    threads (nutpie releases the GIL), as fast as nutpie's own pool
    (measured: 38.9 s against 38.8 s for 4 x 600 iterations of the default
    world). Worker w runs chains w, w + cores, ...; only worker 0 shows its
    progress bars.

    What remains is not a race: the low-rank adaptation's vectorised linear
    algebra splits each buffer into an unaligned head, an aligned body and a
    tail by the buffer's address, so its sums round differently depending on
    where the allocator placed the buffers, i.e. on what the process did
    before (measured in one process, one chain, one thread: 2 of 3 same-seed
    repeats differed; with every allocation of 1 KiB or more served from
    fresh pages, 0 of 6 — far too slow to ship, about 4x the fit time). The
    diagonal mass matrix does not have this step: 8 of 8 same-seed fits, two
    chains, a churned heap and another model's fit in between, were equal.
    Hence the default ``low_rank_modified_mass_matrix=False``: the diagonal
    mass matrix is the bit-for-bit setting (see ProxyModel.fit).
    """
    from concurrent.futures import ThreadPoolExecutor

    import nutpie

    def run(worker: int) -> list[tuple[int, Any]]:
        out = []
        for chain in range(worker, chains, cores):
            idata = nutpie.sample(
                compiled,
                draws=draws,
                tune=tune,
                chains=1,
                cores=1,
                seed=chain_seed(random_seed, chain),
                progress_bar=progress and worker == 0,
                **kwargs,
            )
            out.append((chain, idata))
        return out

    with ThreadPoolExecutor(max_workers=cores) as pool:
        done = [item for part in pool.map(run, range(cores)) for item in part]
    done.sort(key=lambda item: item[0])
    chain_ids = np.arange(chains)
    flat = np.stack([np.asarray(idata.posterior[FLAT].values[0]) for _, idata in done])
    stats = xr.concat(
        [idata.sample_stats[list(_NUTPIE_STATS)] for _, idata in done],
        dim=dims.CHAIN,
        coords="minimal",
    ).assign_coords({dims.CHAIN: chain_ids})
    return flat, stats

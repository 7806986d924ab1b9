"""The comparisons a spec asks for (``[analysis.compare]``): more fits, then LOO.

Other poolings are fitted to the same cells and compared with the main fit by
leave-one-out; proxy sets are fitted to their subsets of the cells and compared
by the long-term estimate given the proxies.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from proxyscope.analyses.compare import Comparison, compare
from proxyscope.errors import ConvergenceWarning
from proxyscope.run.fit import fit_effects
from proxyscope.run.progress import Log, quiet
from proxyscope.spec import ModelSpec

if TYPE_CHECKING:
    from proxyscope.data.cells import CellEffects
    from proxyscope.model.fit import ProxyFit


def run_comparisons(
    spec: ModelSpec,
    effects: CellEffects,
    fit: ProxyFit,
    out_dir: Path,
    *,
    progress: bool,
    log: Log = quiet,
) -> tuple[dict[str, Comparison], list[str], dict[str, Path]]:
    """Fit the comparison models and compare them with the main fit by LOO."""
    cmp = spec.analysis.compare
    assert cmp is not None
    out: dict[str, Comparison] = {}
    failed: list[str] = []
    files: dict[str, Path] = {}
    main = spec.model.pooling
    poolings = [p for p in cmp.poolings if p != main]
    if poolings:
        fits = {main: fit}
        for p in poolings:
            other = fit_effects(spec, effects, pooling=p, progress=progress, log=log, label=p)
            if not other.trustworthy:
                failed.append(f"comparison ({p})")
            files[f"fit_{p}"] = other.save(out_dir / f"fit-{p}.nc")
            fits[p] = other
        log(f"comparing poolings {list(fits)} by leave-one-{cmp.kind}-out")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=ConvergenceWarning)
            out["pooling"] = compare(
                fits,
                kind=cmp.kind,
                refit=cmp.refit,
                max_refits=cmp.max_refits,
                random_seed=spec.sampler.seed,
                progress=False,
            )
    if cmp.proxy_sets:
        name_all = "all proxies"
        fits = {name_all: fit}
        for name, proxies in cmp.proxy_sets.items():
            sub = effects.select_proxies(list(proxies))
            other = fit_effects(spec, sub, progress=progress, log=log, label=name)
            if not other.trustworthy:
                failed.append(f"proxy set {name!r}")
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
            files[f"fit_{safe}"] = other.save(out_dir / f"fit-{safe}.nc")
            fits[name] = other
        log(f"comparing proxy sets {list(fits)} by the long-term estimate given the proxies")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=ConvergenceWarning)
            out["proxy_sets"] = compare(fits, kind="outcome", refit=False)
    return out, failed, files

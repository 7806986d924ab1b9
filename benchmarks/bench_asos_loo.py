"""Benchmark: LOO model comparison on the real ASOS experiments (issue 5's closing figure).

Loads the effects of ``models/asos_early_read.toml`` (the day-3 read of each
metric as the proxy of its final read; the four metrics as segments), fits
``complete`` and ``exchangeable`` pooling with the spec's sampler settings,
and prints the cell-level and the leave-one-experiment-out comparisons (the
latter with exact refits for experiments whose Pareto k exceeds 0.7).

Run ``python benchmarks/bench_asos_loo.py`` (the data file is found through
``$PROXYSCOPE_ASOS_PATH`` or the spec's path; ``make`` sets the variable).
Cite the data as Liu, Cardoso, Couturier and McCoy (2021), Datasets for Online
Controlled Experiments, NeurIPS Datasets and Benchmarks, DOI 10.17605/OSF.IO/64JSB.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import proxyscope as ps
from proxyscope.run.load import load_effects
from proxyscope.spec import load_spec

SPEC = Path(__file__).resolve().parents[1] / "models" / "asos_early_read.toml"


def main() -> None:
    warnings.simplefilter("ignore")
    spec = load_spec(SPEC)
    effects = load_effects(spec).effects
    print(effects)
    fits = {}
    for pooling in ("complete", "exchangeable"):
        t0 = time.perf_counter()
        fits[pooling] = ps.ProxyModel(
            pooling=pooling, sampler_settings=dict(spec.sampler.settings)
        ).fit(
            effects,
            draws=spec.sampler.draws,
            tune=spec.sampler.tune,
            chains=spec.sampler.chains,
            random_seed=1,
            progress=False,
        )
        diag = fits[pooling].diagnostics()
        print(
            f"{pooling}: {time.perf_counter() - t0:.0f} s, diagnostics "
            f"{'passed' if diag.passed else 'FAILED'}, {diag.divergences} divergences"
        )
    for kind in ("cell", "experiment"):
        t0 = time.perf_counter()
        comparison = ps.compare(
            fits, kind=kind, refit=kind == "experiment", max_refits=3, random_seed=1
        )
        print(f"\n{kind}-level ({time.perf_counter() - t0:.0f} s)")
        print(comparison.table.to_string())
        print(comparison.reading())


if __name__ == "__main__":
    main()

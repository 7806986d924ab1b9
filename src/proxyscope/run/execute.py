"""Execute a model spec end to end: data → cells → fit → analyses → report.

:func:`run_spec` is what ``proxyscope run`` and ``proxyscope demo`` do. It
writes into one output directory:

- ``spec.toml``: the spec as run (canonical form, overrides applied);
- ``users.parquet``: the simulated users, when the spec simulates them (they
  are then summarized from that file, as real logs would be);
- ``cells.nc``: the CellEffects; ``fit.nc`` (and ``fit-<name>.nc`` for each
  comparison fit): the fits, readable with :func:`proxyscope.load`;
- ``report.md``, ``report.json``, ``report.html`` and figures from
  :func:`proxyscope.report`;
- for a model over time (``[model].time``): ``stability_paths.csv`` and
  ``stability_changes.csv``, the tables of :func:`proxyscope.stability`, and with
  ``[analysis.rolling_backtest]`` ``rolling_backtest.csv`` (scores per origin, model
  and method) and ``rolling_predictions.csv``;
- ``run.json`` and ``run.md``: what this run found, including what the
  report does not show (proxy-set comparisons, the sensitivity analysis).

Progress goes through a ``log`` callable (the CLI prints it to stderr); the
results come back as a :class:`~proxyscope.run.result.RunResult` for the
caller to print.

Each step has its module beside this one: ``load`` (data → cells), ``fit``,
``transport``, ``comparisons``, ``sensitivity``, ``rolling``, ``result`` (the RunResult and
``run.json``'s content) and ``outputs`` (the files written).
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from proxyscope.analyses.fragility import fragility
from proxyscope.analyses.recommend import recommend
from proxyscope.analyses.stability import stability
from proxyscope.analyses.surrogacy import surrogacy
from proxyscope.analyses.transport import transport
from proxyscope.analyses.weights import weights
from proxyscope.model.periods import fit_periods
from proxyscope.run.comparisons import run_comparisons
from proxyscope.run.fit import fit_effects
from proxyscope.run.load import load_effects
from proxyscope.run.outputs import write_report, write_stability, write_summary
from proxyscope.run.preflight import check_cells, check_spec
from proxyscope.run.progress import Log, quiet
from proxyscope.run.result import RunResult
from proxyscope.run.rolling import run_rolling
from proxyscope.run.sensitivity import run_sensitivity
from proxyscope.run.transport import simulated_truth, transport_target
from proxyscope.spec import ModelSpec, StabilitySpec, dumps_spec

if TYPE_CHECKING:
    from proxyscope.analyses.compare import Comparison


def run_spec(
    spec: ModelSpec,
    *,
    out: str | os.PathLike[str],
    data: str | os.PathLike[str] | None = None,
    progress: bool = True,
    log: Log = quiet,
    report: bool = True,
) -> RunResult:
    """Execute ``spec`` and write every output into ``out``.

    Parameters
    ----------
    spec : ModelSpec
    out : path
        Output directory (created).
    data : path, optional
        Replaces the spec's data source.
    progress : bool
        Show the sampler's progress bars.
    log : callable
        Receives one line per step.
    report : bool
        Write the report with :func:`proxyscope.report`.
    """
    t_start = time.perf_counter()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    a = spec.analysis

    spec_path = out_dir / "spec.toml"
    spec_path.write_text(dumps_spec(spec), encoding="utf-8")
    files["spec"] = spec_path

    check_spec(spec)  # before the data are read: nothing of a run is spent on a typo
    loaded = load_effects(spec, data=data, out=out_dir, log=log)
    effects = loaded.effects
    check_cells(spec, effects)  # before the fit
    if loaded.world is not None:
        files["users"] = out_dir / "users.parquet"
    files["cells"] = effects.save(out_dir / "cells.nc")
    log(
        f"{effects.n_cells} cells in {len(effects.experiments)} experiments "
        f"({len(effects.dropped)} dropped); saved {files['cells']}"
    )

    failed: list[str] = []
    fit = fit_effects(spec, effects, progress=progress, log=log, label="main")
    if not fit.trustworthy:
        failed.append(f"main ({spec.model.pooling})")
    files["fit"] = fit.save(out_dir / "fit.nc")

    periods = fit_periods(fit)
    # A fit with time is read in one period: [analysis].period, or the latest one.
    period = (a.period or periods[-1]) if periods else None
    in_period = f" (period {period})" if period is not None else ""
    log(
        "analysing: diagnostics, coefficients, fragility, surrogacy, weights, recommendations"
        + in_period
    )
    with warnings.catch_warnings():
        # The verdict is reported once (the fit's own warning); not per analysis.
        warnings.filterwarnings("ignore", message=".*FAILED its convergence diagnostics.*")
        diagnostics = fit.diagnostics().for_surface("spec")
        coefficients = fit.summary(ci=a.ci)
        fragility_table = fragility(fit, ci=a.ci, threshold=a.threshold, warn=False, period=period)
        surrogacy_table = surrogacy(fit, ci=a.ci, probability=a.probability, period=period)
        ledger = None if a.ledger is None else Path(os.path.expanduser(a.ledger))
        weight_table = weights(
            fit, ci=a.ci, ledger=ledger, note=f"proxyscope run {spec.name}", period=period
        )
        if ledger is not None:
            files["ledger"] = ledger
        recommendations = recommend(
            fit, ci=a.ci, probability=a.probability, threshold=a.threshold, period=period
        )
        drift = None
        if len(periods) >= 2:
            st = a.stability or StabilitySpec()
            log(f"stability over {len(periods)} periods ({periods[0]} to {periods[-1]})")
            drift = stability(
                fit,
                between=list(st.between) or None,
                segments=st.segments,
                ci=a.ci,
                probability=st.probability,
                random_seed=spec.sampler.seed,
            )
        transported = None
        truth = None
        if a.transport is not None:
            target = transport_target(spec)
            log(f"transporting to {a.transport.name!r}")
            transported = transport(
                fit,
                target,
                proxy_effects=dict(a.transport.proxy_effects) or None,
                proxy_se=dict(a.transport.proxy_se) or None,
                ci=a.ci,
                random_seed=spec.sampler.seed,
                period=period,
            )
            if loaded.world is not None:
                truth = simulated_truth(loaded.world, target, spec)

    comparisons: dict[str, Comparison] = {}
    if a.compare is not None:
        comparisons, extra_failed, fit_files = run_comparisons(
            spec, effects, fit, out_dir, progress=progress, log=log
        )
        failed += extra_failed
        files.update(fit_files)

    sensitivity = None
    if a.sensitivity is not None:
        sensitivity, extra_failed = run_sensitivity(
            spec, fit, data=data, progress=progress, log=log
        )
        failed += extra_failed

    rolling = None
    if a.rolling_backtest is not None:
        rolling, extra_failed = run_rolling(
            spec.model,
            spec.sampler,
            a.rolling_backtest,
            effects,
            ci=a.ci,
            progress=progress,
            log=log,
        )
        failed += extra_failed

    result = RunResult(
        spec=spec,
        out=out_dir,
        effects=effects,
        fit=fit,
        diagnostics=diagnostics,
        coefficients=coefficients,
        fragility=fragility_table,
        surrogacy=surrogacy_table,
        weights=weight_table,
        recommendations=recommendations,
        transport=transported,
        transport_truth=truth,
        comparisons=comparisons,
        sensitivity=sensitivity,
        stability=drift,
        period=period,
        rolling=rolling,
        failed_fits=failed,
        files=files,
    )
    files.update(write_stability(result))
    if report:
        write_report(result, log=log)
    result.seconds = time.perf_counter() - t_start
    files["run_json"], files["run_md"] = write_summary(result)
    return result

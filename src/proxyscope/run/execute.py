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
- ``run.json`` and ``run.md``: what this run found, including what the
  report does not show (proxy-set comparisons, the sensitivity analysis).

Progress goes through a ``log`` callable (the CLI prints it to stderr); the
results come back as a :class:`RunResult` for the caller to print.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from proxyscope import dims
from proxyscope._format import json_value
from proxyscope.errors import ConvergenceWarning, ParameterError
from proxyscope.model.proxy_model import FAILED_FIT
from proxyscope.options import DEFAULT_CI
from proxyscope.run.text import run_markdown
from proxyscope.spec import ASOS_ENV, ModelSection, ModelSpec, SamplerSpec, dumps_spec

if TYPE_CHECKING:
    from proxyscope.analyses.compare import Comparison
    from proxyscope.analyses.transport import TransportResult
    from proxyscope.data.cells import CellEffects
    from proxyscope.model.diagnostics import Diagnostics
    from proxyscope.model.fit import ProxyFit
    from proxyscope.simulate.world import World

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class Loaded:
    """Cells read for a spec, and what was learned on the way."""

    effects: CellEffects
    source: str
    world: World | None = None


def load_effects(
    spec: ModelSpec,
    *,
    data: str | os.PathLike[str] | None = None,
    out: Path | None = None,
    correlation: float | None = None,
    log: Log = _quiet,
) -> Loaded:
    """Read the spec's data into :class:`~proxyscope.CellEffects`.

    Parameters
    ----------
    spec : ModelSpec
    data : path, optional
        Replaces the spec's data source (``--data``).
    out : Path, optional
        Where simulated users are written as Parquet before summarizing; a
        temporary directory when None.
    correlation : float, optional
        Replaces ``[data].correlation`` (the sensitivity analysis).
    """
    import proxyscope as ps

    d = spec.data
    path = spec.data_path(data)
    rho = d.correlation if correlation is None else correlation
    if d.kind == "asos":
        if path is None:
            raise ParameterError(
                f"{spec.origin}: no ASOS file: set [data].path, pass --data, or set ${ASOS_ENV}."
            )
        asos = d.asos
        assert asos is not None and rho is not None
        metric: int | list[int] | None = None
        if asos.metrics is not None:
            metric = asos.metrics[0] if len(asos.metrics) == 1 else list(asos.metrics)
        log(f"reading the ASOS experiments from {path} (assumed noise correlation {rho:g})")
        effects = ps.load_asos(
            path,
            metric=metric,
            outcome_metric=asos.outcome_metric,
            early_day=asos.early_day,
            scale=asos.scale,
            correlation=rho,
            variants=None if asos.variants is None else list(asos.variants),
            min_users_per_arm=d.min_users_per_arm,
        )
        return Loaded(effects, str(path))

    cols = spec.columns
    assert cols is not None
    if d.kind == "arm_summaries":
        assert path is not None
        table = read_table(path)
        log(f"building cells from {len(table):,} per-arm rows in {path}")
        covariance = None
        if cols.covariance:
            covariance = {tuple(k.split("|", 1)): v for k, v in cols.covariance.items()}
        assert cols.count is not None and cols.mean is not None and cols.variance is not None
        effects = ps.from_arm_summaries(
            table,
            experiment=cols.experiment,
            arm=cols.treatment,
            treated_value=cols.treated_value,
            outcome=cols.outcome,
            proxies=list(cols.proxies),
            count=cols.count if isinstance(cols.count, str) else dict(cols.count),
            mean=dict(cols.mean),
            variance=dict(cols.variance),
            segments=list(cols.segments),
            covariance=covariance,
            correlation=0.0 if rho is None else rho,
            directions=dict(cols.directions),
            min_users_per_arm=d.min_users_per_arm,
            dropna=d.dropna,
        )
        return Loaded(effects, str(path))

    if path is None:
        sim = d.simulate
        assert sim is not None
        log(
            f"simulating {sim.n_users:,} users in {sim.n_experiments} experiments (seed {sim.seed})"
        )
        world = ps.simulate.streaming(
            n_users=sim.n_users, n_experiments=sim.n_experiments, seed=sim.seed
        )
        if out is None:
            import tempfile

            with tempfile.TemporaryDirectory(prefix="proxyscope-") as tmp:
                return Loaded(
                    _summarize_file(spec, _write_users(world, Path(tmp), log), log),
                    "simulated",
                    world,
                )
        return Loaded(_summarize_file(spec, _write_users(world, out, log), log), "simulated", world)
    return Loaded(_summarize_file(spec, path, log), str(path))


def _write_users(world: World, out: Path, log: Log) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "users.parquet"
    world.users.to_parquet(path, index=False)
    log(f"wrote the users to {path}")
    return path


def _summarize_file(spec: ModelSpec, path: Path, log: Log) -> CellEffects:
    import proxyscope as ps

    d = spec.data
    cols = spec.columns
    assert cols is not None
    log(f"summarizing {path} with {d.engine}")
    return ps.summarize(
        os.fspath(path),
        experiment=cols.experiment,
        treatment=cols.treatment,
        outcome=cols.outcome,
        proxies=list(cols.proxies),
        segments=list(cols.segments),
        directions=dict(cols.directions),
        engine=d.engine,
        treated_value=cols.treated_value,
        min_users_per_arm=d.min_users_per_arm,
        dropna=d.dropna,
    )


def read_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A CSV or Parquet file (or several, by directory or glob) as one DataFrame."""
    from proxyscope.data.sources import resolve_files

    files = resolve_files(path, owner="proxyscope")
    if files.format == "parquet":
        frames = [pd.read_parquet(p) for p in files.paths]
    else:
        # Only empty fields are missing: "NA" is a region (North America), not NaN.
        frames = [pd.read_csv(p, keep_default_na=False, na_values=[""]) for p in files.paths]
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def read_target(path: str | os.PathLike[str]) -> Any:
    """A transport target from a file.

    CSV or Parquet: a table with the segment columns (one row per user, or
    with a ``share``/``count``/``n``/``users`` column). JSON: an object
    ``{"A / B / C": share, ...}`` or a list of records like the table.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no target file at {str(p)!r}")
    if p.suffix.lower() == ".json":
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ParameterError(f"{p}: not valid JSON: {exc}.") from None
        if isinstance(doc, dict):
            if not all(isinstance(v, int | float) for v in doc.values()):
                raise ParameterError(
                    f"{p}: a JSON target must map segment labels to shares (numbers)."
                )
            return {str(k): float(v) for k, v in doc.items()}
        if isinstance(doc, list) and all(isinstance(r, dict) for r in doc):
            return pd.DataFrame(doc)
        raise ParameterError(
            f"{p}: a JSON target must be an object {{label: share}} or a list of records."
        )
    return read_table(p)


# ---------------------------------------------------------------------------
# Fitting
# ---------------------------------------------------------------------------


def fit_effects(
    spec: ModelSpec,
    effects: CellEffects,
    *,
    pooling: str | None = None,
    progress: bool = True,
    log: Log = _quiet,
    label: str = "",
) -> ProxyFit:
    """Fit the spec's model (or another ``pooling``) to ``effects``.

    A failed fit is returned (marked untrustworthy), not raised; its
    ConvergenceWarning is left to the caller's warning filters.
    """
    return fit_model(
        spec.model, spec.sampler, effects, pooling=pooling, progress=progress, log=log, label=label
    )


def fit_model(
    model: ModelSection,
    sampler: SamplerSpec,
    effects: CellEffects,
    *,
    pooling: str | None = None,
    progress: bool = True,
    log: Log = _quiet,
    label: str = "",
    surface: str = "spec",
) -> ProxyFit:
    """Fit :class:`proxyscope.ProxyModel` configured by a spec's ``[model]`` and ``[sampler]``.

    A failed fit's ConvergenceWarning advises in the syntax of ``surface``
    (spec keys, or command-line flags for ``"cli"``), not in Python's.
    """
    import proxyscope as ps

    chosen = pooling or model.pooling
    proxy_model = ps.ProxyModel(
        pooling=chosen,
        priors=dict(model.priors) or None,
        sampler=sampler.name,
        sampler_settings=dict(sampler.settings) or None,
        cell_correlation=model.cell_correlation,
        noise=model.noise,
        followups=sampler.followups,
        followup_budget=sampler.followup_budget,
    )
    what = f" ({label})" if label else ""
    log(
        f"fitting {chosen} pooling{what}: {effects.n_cells} cells, {sampler.chains} chains x "
        f"({sampler.tune} tune + {sampler.draws} draws)"
    )
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = proxy_model.fit(
            effects,
            draws=sampler.draws,
            tune=sampler.tune,
            chains=sampler.chains,
            random_seed=sampler.seed,
            progress=progress,
        )
    for w in caught:
        if not issubclass(w.category, ConvergenceWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if not fit.trustworthy:
        warnings.warn(
            FAILED_FIT + fit.diagnostics().for_surface(surface).summary(),
            ConvergenceWarning,
            stacklevel=2,
        )
    verdict = "passed" if fit.trustworthy else "FAILED"
    log(f"fitted in {time.perf_counter() - t0:.0f} s; diagnostics {verdict}")
    return fit


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class RunResult:
    """Everything a run produced (the CLI prints from it)."""

    spec: ModelSpec
    out: Path
    effects: CellEffects
    fit: ProxyFit
    diagnostics: Diagnostics
    coefficients: pd.DataFrame
    fragility: pd.DataFrame
    surrogacy: pd.DataFrame
    weights: pd.DataFrame
    recommendations: pd.DataFrame
    transport: TransportResult | None = None
    transport_truth: float | None = None
    comparisons: dict[str, Comparison] = dataclasses.field(default_factory=dict)
    sensitivity: pd.DataFrame | None = None
    failed_fits: list[str] = dataclasses.field(default_factory=list)
    report_dir: Path | None = None
    files: dict[str, Path] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        """Whether every fit of the run passed its diagnostics."""
        return not self.failed_fits


def run_spec(
    spec: ModelSpec,
    *,
    out: str | os.PathLike[str],
    data: str | os.PathLike[str] | None = None,
    progress: bool = True,
    log: Log = _quiet,
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
    import proxyscope as ps

    t_start = time.perf_counter()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    a = spec.analysis

    spec_path = out_dir / "spec.toml"
    spec_path.write_text(dumps_spec(spec), encoding="utf-8")
    files["spec"] = spec_path

    loaded = load_effects(spec, data=data, out=out_dir, log=log)
    effects = loaded.effects
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

    log("analysing: diagnostics, coefficients, fragility, surrogacy, weights, recommendations")
    with warnings.catch_warnings():
        # The verdict is reported once (the fit's own warning); not per analysis.
        warnings.filterwarnings("ignore", message=".*FAILED its convergence diagnostics.*")
        diagnostics = fit.diagnostics().for_surface("spec")
        coefficients = fit.summary(ci=a.ci)
        fragility = ps.fragility(fit, ci=a.ci, threshold=a.threshold, warn=False)
        surrogacy = ps.surrogacy(fit, ci=a.ci, probability=a.probability)
        ledger = None if a.ledger is None else Path(os.path.expanduser(a.ledger))
        weights = ps.weights(fit, ci=a.ci, ledger=ledger, note=f"proxyscope run {spec.name}")
        if ledger is not None:
            files["ledger"] = ledger
        recommendations = ps.recommend(
            fit, ci=a.ci, probability=a.probability, threshold=a.threshold
        )
        transport = None
        truth = None
        if a.transport is not None:
            target = transport_target(spec)
            log(f"transporting to {a.transport.name!r}")
            transport = ps.transport(
                fit,
                target,
                proxy_effects=dict(a.transport.proxy_effects) or None,
                proxy_se=dict(a.transport.proxy_se) or None,
                ci=a.ci,
                random_seed=spec.sampler.seed,
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

    result = RunResult(
        spec=spec,
        out=out_dir,
        effects=effects,
        fit=fit,
        diagnostics=diagnostics,
        coefficients=coefficients,
        fragility=fragility,
        surrogacy=surrogacy,
        weights=weights,
        recommendations=recommendations,
        transport=transport,
        transport_truth=truth,
        comparisons=comparisons,
        sensitivity=sensitivity,
        failed_fits=failed,
        files=files,
    )
    if report:
        write_report(result, log=log)
    result.seconds = time.perf_counter() - t_start
    files["run_json"], files["run_md"] = write_summary(result)
    return result


def transport_target(spec: ModelSpec) -> Any:
    """The spec's transport target: its shares mapping, or the table in its file."""
    tr = spec.analysis.transport
    assert tr is not None
    if tr.shares is not None:
        return dict(tr.shares)
    assert tr.path is not None
    return read_target(spec.resolve(tr.path))


def simulated_truth(world: World, target: Any, spec: ModelSpec) -> float | None:
    """The simulator's exact expected long-term effect of a new experiment on ``target``.

    Only for a shares mapping over (region, device, tenure) of the streaming
    world with its default outcome; None otherwise.
    """
    from proxyscope import dims
    from proxyscope.simulate.config import SegmentMix

    if tuple(spec.segments) != ("region", "device", "tenure") or not isinstance(target, Mapping):
        return None
    try:
        parts = {tuple(p.strip() for p in str(k).split("/")): float(v) for k, v in target.items()}
        total = sum(parts.values())
        cells = {k: v / total for k, v in parts.items() if len(k) == 3}
        if len(cells) != len(parts):
            return None
        truth = world.population_truth(SegmentMix.from_joint(cells))
        value = truth["pop_mix_effect_mean"].sel({dims.METRIC: spec.outcome})
        return float(value)
    except (ValueError, KeyError, TypeError):
        return None


def run_comparisons(
    spec: ModelSpec,
    effects: CellEffects,
    fit: ProxyFit,
    out_dir: Path,
    *,
    progress: bool,
    log: Log = _quiet,
) -> tuple[dict[str, Comparison], list[str], dict[str, Path]]:
    """Fit the comparison models and compare them with the main fit by LOO."""
    import proxyscope as ps

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
            out["pooling"] = ps.compare(
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
            out["proxy_sets"] = ps.compare(fits, kind="outcome", refit=False)
    return out, failed, files


def run_sensitivity(
    spec: ModelSpec,
    fit: ProxyFit,
    *,
    data: str | os.PathLike[str] | None,
    progress: bool,
    log: Log = _quiet,
) -> tuple[pd.DataFrame, list[str]]:
    """Refit under each assumed noise correlation; tabulate what moves.

    Returns one row per (correlation, scope, proxy): the proxy's trial-level
    R^2, its slope (beta, long-term effect per unit of proxy effect) and its
    decision accuracy (for a segment: one minus the flip probability of a new
    experiment there), each with its interval, and whether the fit passed.
    """
    sens = spec.analysis.sensitivity
    assert sens is not None
    base = spec.data.correlation
    rows: list[pd.DataFrame] = []
    failed: list[str] = []
    for rho in sorted({*sens.correlations, *([] if base is None else [base])}):
        if base is not None and np.isclose(rho, base):
            this = fit
        else:
            loaded = load_effects(spec, data=data, correlation=rho, log=log)
            this = fit_effects(
                spec, loaded.effects, progress=progress, log=log, label=f"correlation {rho:g}"
            )
            if not this.trustworthy:
                failed.append(f"sensitivity (correlation {rho:g})")
        rows.append(conclusions(this, spec, rho))
    return pd.concat(rows, ignore_index=True), failed


def conclusions(fit: ProxyFit, spec: ModelSpec, correlation: float) -> pd.DataFrame:
    """Surrogacy R^2, slope and decision accuracy per scope and proxy of one fit."""
    import proxyscope as ps

    a = spec.analysis
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sur = ps.surrogacy(fit, ci=a.ci, probability=a.probability)
        coef = fit.summary(ci=a.ci)
        rec = ps.recommend(fit, ci=a.ci, probability=a.probability, threshold=a.threshold)
        frag = ps.fragility(fit, ci=a.ci, threshold=a.threshold, warn=False)
    rows = []
    # Without segment columns the one segment is the overall population.
    labels = list(fit.structure.labels) if fit.segments else []
    # One segment column: say which ("metric_id 3", not "3").
    shown = {lab: f"{fit.segments[0]} {lab}" for lab in labels} if len(fit.segments) == 1 else {}
    if labels and fit.pooling == "complete":
        # Every segment has the same parameters: one row says it for all.
        what = fit.segments[0] if len(fit.segments) == 1 else "segment"
        shown = {labels[0]: f"each {what} (complete pooling)"}
        labels = labels[:1]
    for scope in ["overall", *labels]:
        for proxy in fit.proxies:
            if scope == "overall":
                r2 = sur[(sur["segment"] == "overall") & (sur["proxy"] == proxy)].iloc[0]
                b = coef[
                    (coef["scope"] == dims.HISTORICAL_MIX) & (coef["parameter"] == f"beta[{proxy}]")
                ]
                acc = rec[rec["proxy"] == proxy].iloc[0]
                dec = (acc["decision_accuracy"], acc["decision_lo"], acc["decision_hi"])
            else:
                r2 = sur[(sur["segment"] == scope) & (sur["proxy"] == proxy)].iloc[0]
                b = coef[(coef["scope"] == scope) & (coef["parameter"] == f"beta[{proxy}]")]
                fl = frag[(frag["segment"] == scope) & (frag["proxy"] == proxy)].iloc[0]
                dec = (1 - fl["flip_prob"], 1 - fl["flip_hi"], 1 - fl["flip_lo"])
            slope = b.iloc[0]
            rows.append(
                {
                    "correlation": float(correlation),
                    "scope": shown.get(scope, scope),
                    "proxy": proxy,
                    "r2": float(r2["r2"]),
                    "r2_lo": float(r2["r2_lo"]),
                    "r2_hi": float(r2["r2_hi"]),
                    "slope": float(slope["mean"]),
                    "slope_lo": float(slope["lo"]),
                    "slope_hi": float(slope["hi"]),
                    "decision_accuracy": float(dec[0]),
                    "decision_lo": float(dec[1]),
                    "decision_hi": float(dec[2]),
                    "converged": bool(fit.trustworthy),
                }
            )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------


def write_report(result: RunResult, *, log: Log = _quiet) -> None:
    """Call :func:`proxyscope.report` for the run's main fit (see :func:`report_fit`)."""
    comparison = result.comparisons.get("pooling") or result.comparisons.get("proxy_sets")
    result.report_dir = report_fit(
        result.fit,
        result.out,
        transport=result.transport,
        compare=comparison,
        title=result.spec.report.title,
        ci=result.spec.analysis.ci,
        log=log,
        results={
            "fragility": result.fragility,
            "surrogacy": result.surrogacy,
            "weights": result.weights,
            "recommendations": result.recommendations,
        },
    )


def report_fit(
    fit: ProxyFit,
    out: Path,
    *,
    transport: Any = None,
    compare: Any = None,
    title: str | None = None,
    ci: float = DEFAULT_CI,
    log: Log = _quiet,
    surface: str = "spec",
    results: Mapping[str, pd.DataFrame] | None = None,
) -> Path:
    """Write the report of ``fit`` into ``out`` with :func:`proxyscope.report`
    (its diagnostics' advice in the syntax of ``surface``; the analyses in
    ``results``, as the run computed them, instead of computing them again)."""
    import proxyscope as ps

    given = dict(results or {})
    log(f"writing the report to {out}")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        ps.report(
            fit,
            out=out,
            transport=transport,
            compare=compare,
            ci=ci,
            title=title,
            surface=surface,
            fragility=given.get("fragility"),
            surrogacy=given.get("surrogacy"),
            weights=given.get("weights"),
            recommendations=given.get("recommendations"),
        )
    return out


def _records(frame: pd.DataFrame | None) -> list[dict[str, Any]] | None:
    if frame is None:
        return None
    clean = frame.replace({np.nan: None})
    rows = clean.to_dict(orient="records")
    return [{str(k): json_value(v) for k, v in row.items()} for row in rows]


def summary_doc(result: RunResult) -> dict[str, Any]:
    """The content of ``run.json``."""
    spec = result.spec
    fit = result.fit
    doc: dict[str, Any] = {
        "proxyscope_run": 1,
        "spec": spec.to_dict(),
        "citation": spec.citation,
        "data": {
            "source": str(result.files.get("users") or spec.data_path() or "simulated"),
            "n_cells": result.effects.n_cells,
            "n_experiments": len(result.effects.experiments),
            "n_dropped": len(result.effects.dropped),
            "assumed_correlation": result.effects.assumed_correlation,
        },
        "fit": {
            "pooling": fit.pooling,
            "sampler": fit.sampler,
            "trustworthy": fit.trustworthy,
        },
        "diagnostics": result.diagnostics.to_dict(),
        "diagnostics_summary": result.diagnostics.summary(),
        "all_fits_passed": result.passed,
        "failed_fits": result.failed_fits,
        "ci": spec.analysis.ci,
        "coefficients": _records(result.coefficients),
        "surrogacy": _records(result.surrogacy),
        "fragility_flagged": _records(
            result.fragility[result.fragility["flagged"]].drop(columns=["warning"], errors="ignore")
        ),
        "weights": _records(result.weights),
        "recommendations": _records(result.recommendations),
        "transport": None,
        "comparisons": {
            k: {
                "kind": c.kind,
                "table": _records(c.table.reset_index(names="model")),
                "reading": c.reading(),
            }
            for k, c in result.comparisons.items()
        },
        "sensitivity": _records(result.sensitivity),
        "report_dir": None if result.report_dir is None else str(result.report_dir),
        "files": {k: str(v) for k, v in result.files.items()},
        "seconds": round(result.seconds, 1),
    }
    if result.transport is not None:
        tr = result.transport
        assert spec.analysis.transport is not None
        doc["transport"] = {
            "name": spec.analysis.transport.name,
            "summary": _records(tr.summary()),
            "target": _records(tr.target.astype({"extrapolated": bool})),
            "simulated_truth": result.transport_truth,
        }
    return doc


def write_summary(result: RunResult) -> tuple[Path, Path]:
    """Write ``run.json`` and ``run.md`` into the run's directory."""

    doc = summary_doc(result)
    j = result.out / "run.json"
    j.write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
    m = result.out / "run.md"
    m.write_text(run_markdown(result), encoding="utf-8")
    return j, m

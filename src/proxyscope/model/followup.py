"""What a fit does when its first run fails its diagnostics.

The advice a failed fit gives (re-choose the coordinates, raise the target
acceptance, run longer) is carried out automatically, within a stated budget,
and every run is recorded in the fit (``fit.sampler["attempts"]``) and shown
wherever its diagnostics are.

Each follow-up run does what the failed run's diagnostics call for:

- slow mixing (a parameter short of the ESS or R-hat bar): coordinates
  re-chosen from the previous run's posterior (:func:`repilot`), an exact
  change of variables, so the model is unchanged; from the third run on,
  also twice the draws and tuning. Where re-choosing changes nothing (no
  block with a learned scale, e.g. ``pooling="none"``), the run is twice as
  long at once: the same coordinates, settings and seed would repeat the
  failed run draw for draw (measured: three identical runs, R-hat 1.0108);
- divergences: ``target_accept`` raised (0.9 -> 0.95 -> 0.99). A run whose
  only fault was divergences keeps its coordinates (measured: re-chosen
  after one divergence of an otherwise well-mixed run, a history of two
  nearly collinear proxies mixed worse, R-hat 1.006 -> 1.038).

It stops when a run passes, after ``max_runs`` runs, or when the next run
would not fit in the budget: the follow-ups may take at most
``budget`` times the first run's sampling time in all.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import numpy as np
import xarray as xr

from proxyscope.data.cells import CellEffects
from proxyscope.model import sampling
from proxyscope.model.advice import TARGET_ACCEPT_STEPS, failed_families, higher_target_accept
from proxyscope.model.coordinates import Coordinates
from proxyscope.model.diagnostics import Diagnostics
from proxyscope.model.diagnostics import compute as compute_diagnostics
from proxyscope.model.layout import Layout
from proxyscope.model.native import NativeDensity
from proxyscope.model.posterior import named_posterior
from proxyscope.model.setup import Prepared, model_info

#: Runs in all (the first one included), and the follow-ups' time budget as a
#: multiple of the first run's sampling time.
MAX_RUNS = 3
BUDGET = 4.0
#: The quantile of a block's scale that its partial centring is set against.
SCALE_QUANTILE = 0.1


@dataclasses.dataclass(frozen=True)
class Run:
    """How one run samples."""

    number: int
    draws: int
    tune: int
    settings: dict[str, Any]
    coordinates: Coordinates
    action: str  # what this run changed, and why


def repilot(layout: Layout, raw: xr.Dataset) -> Coordinates:
    """Coordinates re-chosen from a run's draws (``raw``: its named ``sampled`` draws).

    For an entry ``b`` of a block with a learned scale, the weight is
    ``Var(b | data) / scale_low^2``, clipped to [0, 1], with ``scale_low``
    the scale's :data:`SCALE_QUANTILE` posterior quantile: the share of its
    prior variance the data leave. In the normal hierarchical model with an
    entry measured with standard error ``se`` this is ``se^2 / (se^2 +
    scale^2)``, the partial non-centring that decorrelates the entry from its
    scale (Papaspiliopoulos, Roberts and Skold, 2007, Statistical Science
    22(1)): 1 (non-centred) where the prior sets the entry, 0 (centred) where
    the data do. A low quantile rather than the mean: where the scale is
    poorly determined its posterior reaches down toward zero, and there
    centred coordinates make a funnel (measured: re-chosen from the mean of
    the scale, a 3-axis history kept diverging at every target_accept). The
    slopes' rotation is kept.
    """
    current = layout.coordinates
    interaction = list(current.interaction)
    main = [list(rows) for rows in current.main]
    by_offset = {b.offset: b for b in layout.blocks}
    for block in layout.blocks:
        if block.kind != "value" or block.scale_offset < 0:
            continue
        scale_block = by_offset[block.scale_offset]
        std = np.asarray(raw[block.name].values, dtype=float).reshape(-1, block.rows, block.cols)
        scale = np.asarray(raw[scale_block.name].values, dtype=float).reshape(-1, block.rows)
        value = std * scale[:, :, None]
        low = np.quantile(scale, SCALE_QUANTILE, axis=0)
        prior_var = np.maximum(low**2, 1e-300)[:, None]
        weights = np.clip(value.var(axis=0) / prior_var, 0.0, 1.0)
        if block.interaction:
            interaction[block.family] = weights
        else:
            main[block.family][block.column] = weights.mean(axis=1)
    return current.replace(
        interaction=tuple(interaction),
        main=tuple(tuple(rows) for rows in main),
    )


def same_coordinates(a: Coordinates, b: Coordinates) -> bool:
    """Whether two coordinate choices are the same, entry for entry."""
    pairs = [(a.rotation, b.rotation), (a.basis, b.basis)]
    pairs += list(zip(a.interaction, b.interaction, strict=True))
    for rows_a, rows_b in zip(a.main, b.main, strict=True):
        pairs += list(zip(rows_a, rows_b, strict=True))
    return all(np.array_equal(x, y) for x, y in pairs)


def next_run(
    previous: Run,
    diagnostics: Diagnostics,
    layout: Layout,
    raw: xr.Dataset,
    *,
    followup_seconds: float,
    first_seconds: float,
    first_length: int,
    max_runs: int = MAX_RUNS,
    budget: float = BUDGET,
) -> tuple[Run | None, str]:
    """The follow-up run after ``previous`` failed, or None, with the reason."""
    if diagnostics.passed:
        return None, "passed"
    if previous.number >= max_runs:
        return None, f"stopped after {max_runs} runs (the most it makes)"
    target = float(previous.settings.get("target_accept", TARGET_ACCEPT_STEPS[0]))
    settings = dict(previous.settings)
    draws, tune = previous.draws, previous.tune
    mixing = not bool(diagnostics.table["ok"].all())
    coordinates = repilot(layout, raw) if mixing else previous.coordinates
    rechosen = mixing and not same_coordinates(coordinates, previous.coordinates)
    changes = ["coordinates re-chosen from the last run's posterior"] if rechosen else []
    higher = higher_target_accept(target)
    if diagnostics.divergences and higher is not None:
        settings["target_accept"] = higher
        changes.append(
            f"target_accept {target:g} -> {higher:g} ({diagnostics.divergences} divergences)"
        )
    if mixing and (previous.number >= 2 or not changes):
        draws, tune = 2 * draws, 2 * tune
        table = diagnostics.table
        short = bool((table["ess_bulk"] < diagnostics.ess_min).any())
        why = (
            f"min bulk ESS {table['ess_bulk'].min():.0f} < {diagnostics.ess_min:.0f}"
            if short
            else f"max R-hat {table['r_hat'].max():.4f} > {diagnostics.rhat_max:g}"
        )
        changes.append(f"draws and tuning doubled to {draws} + {tune} ({why})")
    if not changes:  # divergences at the highest target_accept, nothing else to try
        return None, "stopped: divergences remain at the highest target_accept"
    cost = first_seconds * (draws + tune) / max(1, first_length)
    allowed = budget * first_seconds
    if followup_seconds + cost > allowed:
        return None, (
            f"stopped: another run (about {cost:.0f} s) would exceed the follow-up budget "
            f"of {budget:g} x the first run's {first_seconds:.0f} s"
        )
    families = failed_families(diagnostics)
    why = "failed: " + "; ".join(families) if families else "failed"
    run = Run(
        number=previous.number + 1,
        draws=draws,
        tune=tune,
        settings=settings,
        coordinates=coordinates,
        action=f"run {previous.number} {why}; " + ", ".join(changes),
    )
    return run, "follow-up"


@dataclasses.dataclass
class Runs:
    """What :func:`sample_runs` did: the last run's draws and every run's record."""

    prepared: Prepared  # in the last run's coordinates
    raw: xr.Dataset
    stats: xr.Dataset
    timings: dict[str, Any]  # the last run's, with the sampling time of all runs
    last: Run
    attempts: list[dict[str, Any]]
    modes: list[dict[str, Any]]
    stopped: str


def run_diagnostics(
    prepared: Prepared, effects: CellEffects, raw: xr.Dataset, stats: xr.Dataset
) -> Diagnostics:
    """The diagnostics of one run's draws (what :meth:`ProxyFit.diagnostics` reports)."""
    info = model_info(prepared, effects)
    return compute_diagnostics(named_posterior(raw, info), raw, stats)


def sample_runs(
    prepared: Prepared,
    effects: CellEffects,
    *,
    sampler: str,
    draws: int,
    tune: int,
    chains: int,
    random_seed: int,
    progress: bool,
    settings: dict[str, Any],
    followups: int,
    budget: float,
) -> Runs:
    """Sample, and follow a failed run up (:func:`next_run`) until one passes,
    ``1 + followups`` runs were made, the budget is spent, or chains are found
    in separate modes (which more runs would not join)."""
    run = Run(
        number=1,
        draws=draws,
        tune=tune,
        settings=settings,
        coordinates=prepared.coordinates,
        action="first run",
    )
    attempts: list[dict[str, Any]] = []
    modes: list[dict[str, Any]] = []
    first_seconds = 0.0
    followup_seconds = 0.0
    stopped = ""
    while True:
        prepared = prepared.with_coordinates(run.coordinates)
        density = NativeDensity(prepared.layout, prepared.data)
        raw, stats, timings = sampling.sample(
            density,
            sampler=sampler,
            draws=run.draws,
            tune=run.tune,
            chains=chains,
            random_seed=random_seed,
            progress=progress,
            settings=run.settings,
        )
        seconds = timings["sample_seconds"]
        if run.number == 1:
            first_seconds = seconds
        else:
            followup_seconds += seconds
        report = run_diagnostics(prepared, effects, raw, stats)
        attempts.append(
            {
                "number": run.number,
                "action": run.action,
                "draws": run.draws,
                "tune": run.tune,
                "settings": timings["settings"],
                "coordinates": prepared.coordinates.summary(),
                "passed": report.passed,
                "max_rhat": float(report.table["r_hat"].max()),
                "min_ess_bulk": float(report.table["ess_bulk"].min()),
                "divergences": report.divergences,
                "failed_families": report.families(),
                "sample_seconds": seconds,
            }
        )
        modes += [
            {"run": run.number, "chain": c, "parameter": p, "distance": d}
            for c, p, d in report.modes
        ]
        if modes:
            stopped = (
                "stopped: chains sampled separate modes of the posterior, which more runs "
                "would not join"
            )
            break
        if not followups:
            break
        nxt, why = next_run(
            run,
            report,
            prepared.layout,
            raw,
            followup_seconds=followup_seconds,
            first_seconds=first_seconds,
            first_length=draws + tune,
            max_runs=1 + followups,
            budget=budget,
        )
        if nxt is None:
            stopped = "" if why == "passed" else why
            break
        if progress:
            print(f"proxyscope: {nxt.action}", file=sys.stderr, flush=True)
        run = nxt
    timings["sample_seconds"] = first_seconds + followup_seconds
    return Runs(prepared, raw, stats, timings, run, attempts, modes, stopped)

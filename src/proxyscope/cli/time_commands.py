"""The commands about time (DESIGN.md §9): ``stability`` (a fit whose relation moves
over time) and ``rolling-backtest`` (the model over time against the static one).

It imports PyMC (through the model and the analyses): the CLI imports this module
only when the command runs.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from proxyscope._format import pct
from proxyscope.analyses.stability import stability
from proxyscope.cli.arguments import existing_file, netcdf_file
from proxyscope.cli.console import Console, Handler, UsageError, strict_code, write_json, write_text
from proxyscope.cli.time_flags import time_flag
from proxyscope.data.cells import CellEffects
from proxyscope.errors import ParameterError, suggestion
from proxyscope.model.fit import load
from proxyscope.run.result import records
from proxyscope.run.rolling import run_rolling
from proxyscope.run.text import markdown_table, text_table
from proxyscope.run.text_time import ROLLING_TITLE, change_rows, path_rows, rolling_rows
from proxyscope.spec import ModelSection, RollingSpec, SamplerSpec, load_spec


def cmd_stability(args: argparse.Namespace, console: Console) -> int:
    fit = load(existing_file(args.fit, "fit file"))
    periods = list(fit.info.periods)
    if len(periods) < 2:
        found = "is static" if not periods else f"has one period ({periods[0]!r})"
        raise UsageError(
            "stability needs a fit whose relation moves over time: 'proxyscope fit CELLS "
            f"--time true' on cells with start dates in at least two periods; {args.fit} "
            f"{found}"
        )
    for pair in args.between or ():
        for label in pair:
            if label not in periods:
                raise UsageError(
                    f"--between {label!r} is not a period of {args.fit}; its periods are "
                    f"{', '.join(periods)}.{suggestion(label, periods)}"
                )
        if pair[0] == pair[1]:
            raise UsageError(f"--between needs two different periods; got {pair[0]!r} twice")
    result = stability(
        fit,
        between=[tuple(pair) for pair in args.between] if args.between else None,
        segments=args.segments,
        ci=args.ci,
        probability=args.probability,
        random_seed=args.seed,
    )
    level = pct(args.ci)
    console.print(
        f"Stability of the link to {fit.outcome} over {len(periods)} periods "
        f"({periods[0]} to {periods[-1]}), {level} intervals:"
    )
    for line in result.readings:
        console.print("  " + line)
    console.print("")
    console.print("Slope per period (global; the last row of each proxy is the forecast):")
    console.print(text_table(path_rows(result)))
    console.print("")
    console.print(f"Changes (a change is clear from P(changed) = {args.probability:g}):")
    console.print(text_table(change_rows(result)))
    if not fit.trustworthy:
        console.print("WARNING: the fit FAILED its convergence diagnostics; so may these numbers.")
    doc: dict[str, Any] = {
        "fit": str(args.fit),
        "ci": result.ci,
        "probability": result.probability,
        "trustworthy": fit.trustworthy,
        "periods": periods,
        "readings": list(result.readings),
        "paths": records(result.paths),
        "changes": records(result.changes),
    }
    if args.json:
        write_json(args.json, doc)
    if args.md:
        write_text(
            args.md,
            f"# Stability over time of {args.fit} ({level} intervals)\n\n"
            + "".join(f"- {line}\n" for line in result.readings)
            + f"\n{markdown_table(path_rows(result))}\n\n{markdown_table(change_rows(result))}\n",
        )
    return strict_code(args, fit.trustworthy, console)


def _rolling_setup(args: argparse.Namespace) -> tuple[ModelSection, SamplerSpec, RollingSpec]:
    """The model, sampler and backtest settings: --spec's (or the defaults), flags on top."""
    if args.spec is not None:
        spec = load_spec(args.spec, overrides=args.set)
        model, sampler = spec.model, spec.sampler
        rb = spec.analysis.rolling_backtest or RollingSpec()
    elif args.set:
        raise UsageError("--set changes a value of --spec; give --spec too")
    else:
        model, sampler, rb = ModelSection(), SamplerSpec(), RollingSpec()
    if args.time is not None:
        model = dataclasses.replace(model, time=time_flag(args.time))
        if model.time is None:
            raise UsageError(
                "--time false leaves no model over time to compare with the static one"
            )
    elif model.time is None:
        model = dataclasses.replace(model, time=True)
    rb = dataclasses.replace(
        rb,
        origins=tuple(args.origin) if args.origin else rb.origins,
        draws=args.draws if args.draws is not None else rb.draws,
        tune=args.tune if args.tune is not None else rb.tune,
        chains=args.chains if args.chains is not None else rb.chains,
    )
    if args.seed is not None:
        sampler = dataclasses.replace(sampler, seed=args.seed)
    return model, sampler, rb


def cmd_rolling_backtest(args: argparse.Namespace, console: Console) -> int:
    effects = CellEffects.load(netcdf_file(args.cells, "cells file", "'proxyscope summarize'"))
    if not effects.has_time:
        raise UsageError(
            f"rolling-backtest needs cells with their experiments' start dates; {args.cells} "
            "has none (summarize with --time COL, the start date column)"
        )
    model, sampler, rb = _rolling_setup(args)
    try:
        result, failed = run_rolling(
            model, sampler, rb, effects, ci=args.ci, progress=not console.quiet, log=console.log
        )
    except ParameterError as exc:  # said with the command's flags, not Python's
        message = str(exc)
        for python, flag in _ROLLING_FLAGS.items():
            message = message.replace(python, flag)
        raise UsageError(message) from None
    console.print(
        f"{ROLLING_TITLE}, {pct(result.ci)} intervals, against the {result.reference} "
        "long-term effect:"
    )
    console.print(text_table(rolling_rows(result)))
    console.print("")
    console.print("Per origin:")
    console.print(text_table(result.table))
    console.print("")
    console.print(result.verdict())
    if failed:
        console.print(
            "WARNING: these fits FAILED their convergence diagnostics: " + ", ".join(failed) + "."
        )
    if args.json:
        write_json(args.json, {**result.to_dict(), "predictions": records(result.predictions)})
    if args.md:
        write_text(
            args.md,
            f"# {ROLLING_TITLE}: {args.cells}\n\n{markdown_table(rolling_rows(result))}\n\n"
            f"{markdown_table(result.table)}\n\n{result.verdict()}\n",
        )
    return strict_code(args, not failed, console)


#: Python parameters of rolling_backtest as the command's flags name them.
_ROLLING_FLAGS = {
    "The 'origins' parameter of rolling_backtest": "--origin",
    "in the 'origins' parameter of rolling_backtest": "given by --origin",
}

COMMANDS: dict[str, Handler] = {
    "stability": cmd_stability,
    "rolling-backtest": cmd_rolling_backtest,
}

"""The commands on fits, one step at a time: ``fit`` (cells into a fit file),
``report``, ``transport``, ``compare`` and ``weights`` (on saved fits).

They import PyMC (through the model and the analyses): the CLI imports this
module only when one of them runs.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from proxyscope._format import interval, num
from proxyscope.analyses.compare import compare
from proxyscope.analyses.transport import transport
from proxyscope.analyses.weights import weights
from proxyscope.cli.arguments import existing_file, netcdf_file, pairs
from proxyscope.cli.console import (
    EXIT_OK,
    Console,
    Handler,
    UsageError,
    strict_code,
    write_json,
    write_text,
)
from proxyscope.cli.time_flags import time_flag
from proxyscope.data.cells import CellEffects
from proxyscope.errors import ProxyscopeError, suggestion
from proxyscope.ledger import override_weights, weights_history
from proxyscope.model.fit import load
from proxyscope.model.priors import Priors
from proxyscope.run.fit import fit_model
from proxyscope.run.load import read_target
from proxyscope.run.outputs import report_fit
from proxyscope.run.result import records
from proxyscope.run.text import coefficient_rows, markdown_table, text_table
from proxyscope.spec import ModelSection, SamplerSpec, load_spec, parse_value


def cmd_fit(args: argparse.Namespace, console: Console) -> int:
    effects = CellEffects.load(netcdf_file(args.cells, "cells file", "'proxyscope summarize'"))
    if args.spec is not None:
        spec = load_spec(args.spec, overrides=args.set)
        model, sampler = spec.model, spec.sampler
    else:
        model, sampler = ModelSection(), SamplerSpec()
    model_changes: dict[str, Any] = {}
    if args.pooling is not None:
        model_changes["pooling"] = args.pooling
    if args.cell_correlation is not None:
        model_changes["cell_correlation"] = args.cell_correlation
    if args.noise is not None:
        model_changes["noise"] = args.noise
    if args.time is not None:
        model_changes["time"] = time_flag(args.time)
    if args.prior:
        given = pairs(args.prior, flag="--prior")
        valid = Priors.names()
        unknown = [name for name in given if name not in valid]
        if unknown:
            hint = suggestion(unknown[0], valid)
            raise UsageError(
                f"--prior {unknown[0]}: not a prior of the model.{hint} "
                f"Valid names: {', '.join(valid)}."
            )
        model_changes["priors"] = {**model.priors, **given}
    model = dataclasses.replace(model, **model_changes)
    if model.time is not None and not effects.has_time:
        which = "--time" if args.time is not None else "the spec's [model].time"
        raise UsageError(
            f"{which} needs cells that carry their experiments' start dates; "
            f"{args.cells} has none (summarize with --time COL, the start date column)"
        )
    sampler_changes: dict[str, Any] = {
        k: getattr(args, k)
        for k in ("draws", "tune", "chains", "seed", "followups", "followup_budget")
        if getattr(args, k) is not None
    }
    if args.sampler is not None:
        sampler_changes["name"] = args.sampler
    if args.setting:
        extra = {
            k: parse_value(v)
            for k, v in pairs(args.setting, flag="--setting", number=False).items()
        }
        sampler_changes["settings"] = {**sampler.settings, **extra}
    sampler = dataclasses.replace(sampler, **sampler_changes)
    fit = fit_model(
        model, sampler, effects, progress=not console.quiet, log=console.log, surface="cli"
    )
    path = fit.save(args.output)
    console.print(repr(fit))
    console.print("Diagnostics: " + fit.diagnostics().summary(surface="cli"))
    console.print("")
    periods = list(fit.info.periods)
    latest = f" in the latest period, {periods[-1]}" if periods else ""
    console.print(f"Coefficients, all segments (historical mix){latest}, 90% intervals:")
    console.print(text_table(coefficient_rows(fit.summary())))
    console.print(f"Saved the fit to {path}.")
    if periods:
        console.print(
            f"The relation moves over {len(periods)} periods ({periods[0]} to {periods[-1]}): "
            f"'proxyscope stability {path}' shows how; --period reads another period."
        )
    return strict_code(args, fit.trustworthy, console)


def _load_fit(path: str) -> Any:
    return load(existing_file(path, "fit file"))


def _named_fits(items: Sequence[str]) -> dict[str, Any]:
    """``NAME=PATH`` or ``PATH`` (named by the file's stem) → {name: fit}."""
    fits: dict[str, Any] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:
            name, path = Path(item).stem, item
        if not name.strip() or not path:
            raise UsageError(f"a fit is NAME=FIT or FIT; got {item!r}")
        if name in fits:
            raise UsageError(f"two fits are named {name!r}; name them with NAME=PATH")
        fits[name] = _load_fit(path)
    return fits


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    fit = _load_fit(args.fit)
    transported = None
    if args.target is not None:
        console.log(f"transporting to {args.target}")
        transported = transport(
            fit, read_target(args.target), ci=args.ci, random_seed=args.seed, period=args.period
        )
    comparison = None
    if args.compare:
        fits = {Path(args.fit).stem: fit, **_named_fits(args.compare)}
        console.log(f"comparing {list(fits)} by leave-one-{args.kind}-out")
        comparison = compare(
            fits, kind=args.kind, refit=not args.no_refit, random_seed=args.seed, progress=False
        )
    where = report_fit(
        fit,
        Path(args.out),  # not a file: checked with the other outputs (check_outputs)
        transport=transported,
        compare=comparison,
        title=args.title,
        ci=args.ci,
        log=console.log,
        surface="cli",
        period=args.period,
        random_seed=args.seed,
    )
    console.print(f"Report: {where / 'report.html'} (and report.md, report.json)")
    if not fit.trustworthy:
        console.print("WARNING: the fit FAILED its convergence diagnostics; the report says so.")
    return strict_code(args, fit.trustworthy, console)


def cmd_transport(args: argparse.Namespace, console: Console) -> int:
    fit = _load_fit(args.fit)
    target = read_target(args.target)
    effects = pairs(args.proxy_effect, flag="--proxy-effect")
    ses = pairs(args.proxy_se, flag="--proxy-se")
    try:
        res = transport(
            fit,
            target,
            proxy_effects=effects or None,
            proxy_se=ses or None,
            ci=args.ci,
            random_seed=args.seed,
            period=args.period,
        )
    except ProxyscopeError as exc:  # said with the command's arguments, not Python's
        raise UsageError(_as_flags(str(exc), _TRANSPORT_FLAGS)) from None
    summary = res.summary()
    kind = "given the proxy readings" if res.conditional else "of a new experiment"
    console.print(
        f"Long-term effect ({fit.outcome}) {kind} in the target population"
        + (f" in period {res.period}" if res.period is not None else "")
        + f", {100 * args.ci:g}% intervals:"
    )
    console.print(text_table(summary))
    n_ext = int(res.target["extrapolated"].sum())
    console.print(
        f"Target: {len(res.target)} segment cells"
        + (f", {n_ext} never observed (predicted from pooled main effects)" if n_ext else "")
        + "."
    )
    eff = summary.iloc[0]
    console.print(
        f"Reading: a new experiment in this population moves {fit.outcome} by "
        f"{num(eff['mean'])} [{num(eff['lo'])}, {num(eff['hi'])}]; "
        f"P(> 0) = {num(summary.iloc[1]['mean'], 2)}."
    )
    doc = {
        "fit": str(args.fit),
        "target": str(args.target),
        "ci": args.ci,
        "conditional": res.conditional,
        **({"period": res.period} if res.period is not None else {}),
        "proxy_effects": res.proxy_effects,
        "trustworthy": res.trustworthy,
        "summary": records(summary),
        "segments": records(res.target.astype({"extrapolated": bool})),
    }
    if args.json:
        write_json(args.json, doc)
    if args.md:
        write_text(
            args.md,
            f"# Transport of {args.fit} to {args.target}\n\n{markdown_table(summary)}\n\n"
            f"{markdown_table(res.target)}\n",
        )
    return strict_code(args, fit.trustworthy, console)


def cmd_compare(args: argparse.Namespace, console: Console) -> int:
    if len(args.fits) < 2:
        raise UsageError("compare needs at least two fit files")
    fits = _named_fits(args.fits)
    console.log(f"comparing {list(fits)} by leave-one-{args.kind}-out")
    cmp = compare(
        fits,
        kind=args.kind,
        refit=not args.no_refit,
        max_refits=args.max_refits,
        random_seed=args.seed,
        progress=not console.quiet,
    )
    table = cmp.table.reset_index(names="model")
    console.print(text_table(table))
    console.print("")
    console.print(cmp.reading())
    if args.json:
        write_json(
            args.json,
            {
                "kind": cmp.kind,
                "table": records(table),
                "reading": cmp.reading(),
                "refitted": {k: [str(e) for e in v] for k, v in cmp.refitted.items()},
            },
        )
    if args.md:
        write_text(
            args.md,
            f"# Model comparison ({cmp.kind})\n\n{markdown_table(table)}\n\n{cmp.reading()}\n",
        )
    passed = all(f.trustworthy for f in fits.values())
    return strict_code(args, passed, console)


def cmd_weights(args: argparse.Namespace, console: Console) -> int:
    if not (args.override or args.history):
        unused = [
            f for f, v in (("--who", args.who), ("--why", args.why), ("--scope", args.scope)) if v
        ]
        if unused:
            verb = "applies" if len(unused) == 1 else "apply"
            raise UsageError(
                f"{', '.join(unused)} only {verb} with --override (--scope also with "
                "--history); the weights of a fit cover every scope"
            )
    if args.period is not None and (args.override or args.history):
        raise UsageError(
            "--period applies to the weights of a FIT (the period they are read in), not "
            "with --history or --override"
        )
    if args.history:
        if args.ledger is None:
            raise UsageError("--history needs --ledger FILE")
        hist = weights_history(existing_file(args.ledger, "ledger"))
        scope = args.scope or "global"  # every scope with --scope all
        if scope != "all":
            hist = hist[hist["scope"] == scope]
        shown = hist.assign(
            data=hist["data_fingerprint"].fillna("").str[:12],
            config=hist["config_hash"].fillna("").str[:12],
            who=hist["who"].fillna(""),
            why=hist["why"].fillna(""),
        )
        cols = ["entry_id", "timestamp", "kind", "proxy", "weight", "data", "config", "who", "why"]
        if scope == "all":
            cols.insert(3, "scope")
        console.print(
            f"Weights history of {args.ledger}, scope {scope!r} (data fingerprint and "
            "config hash: first 12 characters):"
        )
        console.print(text_table(shown[cols]) if len(shown) else "  (no entries)")
        if args.json:
            write_json(args.json, records(hist))
        return EXIT_OK
    if args.override:
        if args.ledger is None or not args.who or not args.why:
            raise UsageError("--override needs --ledger FILE, --who NAME and --why TEXT")
        overrides = pairs(args.override, flag="--override")
        fingerprint = config = None
        if args.fit is not None:
            fit = _load_fit(args.fit)
            fingerprint = fit.data_fingerprint
            config = fit.config_hash
        try:
            entry = override_weights(
                args.ledger,
                overrides,
                who=args.who,
                why=args.why,
                scope=args.scope or "global",
                data_fingerprint=fingerprint,
                config_hash=config,
            )
        except ProxyscopeError as exc:  # said with the flags, not the Python parameters
            raise UsageError(_as_flags(str(exc), _WEIGHTS_FLAGS)) from None
        console.print(f"Recorded override entry {entry} in {args.ledger}.")
        return EXIT_OK
    if args.fit is None:
        raise UsageError("weights needs a FIT file (or --history / --override with --ledger)")
    fit = _load_fit(args.fit)
    table = weights(
        fit,
        ci=args.ci,
        by_segment=not args.global_only,
        ledger=args.ledger,
        note=args.note,
        period=args.period,
    )
    shown = table.assign(
        weight=[
            interval(m, lo, hi)
            for m, lo, hi in zip(
                table["weight"], table["weight_lo"], table["weight_hi"], strict=True
            )
        ],
        direction=[{1: "+1", -1: "-1"}.get(int(d), "unclear") for d in table["direction"]],
    )[["scope", "proxy", "weight", "direction"]]
    in_period = table.attrs.get("period")
    console.print(
        "Adaptive proxy weights"
        + (f" in period {in_period}" if in_period is not None else "")
        + f", {100 * args.ci:g}% intervals:"
    )
    console.print(text_table(shown))
    if args.ledger is not None:
        console.print(f"Recorded entry {table.attrs.get('ledger_entry')} in {args.ledger}.")
    if args.json:
        doc: dict[str, Any] = {"ci": args.ci, "trustworthy": fit.trustworthy}
        if in_period is not None:
            doc["period"] = in_period
        write_json(args.json, {**doc, "weights": records(table)})
    if args.md:
        write_text(args.md, f"# Adaptive weights of {args.fit}\n\n{markdown_table(table)}\n")
    return strict_code(args, fit.trustworthy, console)


#: Python parameters of transport as the transport command names them.
_TRANSPORT_FLAGS = {
    "The 'proxy_effects' parameter of transport": "--proxy-effect",
    "The 'proxy_se' parameter of transport": "--proxy-se",
    "The 'period' parameter of transport": "--period",
    "The 'target'": "The TARGET file",
    "'proxy_effects'": "--proxy-effect",
    "proxy_effects": "--proxy-effect",
    "'proxy_se'": "--proxy-se",
    "proxy_se": "--proxy-se",
}
#: Python parameters of override_weights as the weights command's flags name them.
_WEIGHTS_FLAGS = {
    "The 'weights' parameter's": "The --override",
    "The 'weights' parameter": "--override",
    "The 'who' parameter": "--who",
    "The 'why' parameter": "--why",
    "The 'scope' parameter": "--scope",
}


def _as_flags(message: str, flags: dict[str, str]) -> str:
    """An error message with a function's Python parameter names replaced by the flags."""
    for python, flag in flags.items():
        message = message.replace(python, flag)
    return message


COMMANDS: dict[str, Handler] = {
    "fit": cmd_fit,
    "report": cmd_report,
    "transport": cmd_transport,
    "compare": cmd_compare,
    "weights": cmd_weights,
}

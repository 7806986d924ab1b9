"""The ``proxyscope`` command line.

Subcommands: ``demo`` (the main job on a simulated world), ``run`` (a model
spec end to end), ``validate`` (data against a spec, no fitting), ``spec``
(a spec in canonical form), and for step-by-step use ``summarize``, ``fit``,
``report``, ``transport``, ``compare`` and ``weights``. ``proxyscope CMD
--help`` documents each.

Exit codes: 0 success; 2 bad input or spec (one line on stderr,
``proxyscope: error: ...``, no traceback); 3 a fit that failed its
convergence diagnostics, with ``--strict``; 1 an unexpected internal error
(with its traceback). ``--debug`` (anywhere on the line, or
``PROXYSCOPE_DEBUG=1``) shows the traceback of input errors too: the errors
caught as bad input include ValueError and TypeError, which a bug can raise.

Results go to stdout; progress and warnings to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, NoReturn

from proxyscope import spec as specdef
from proxyscope._version import __version__
from proxyscope.errors import ProxyscopeError, ProxyscopeWarning
from proxyscope.options import DEFAULT_CI

PROG = "proxyscope"
EXIT_OK, EXIT_INTERNAL, EXIT_INPUT, EXIT_UNCONVERGED = 0, 1, 2, 3
#: Errors that mean "bad input or spec": reported in one line, exit code 2.
INPUT_ERRORS: tuple[type[BaseException], ...] = (
    ProxyscopeError,
    ValueError,
    TypeError,
    KeyError,
    OSError,
)


class UsageError(Exception):
    """A command-line syntax error (unknown option, missing argument, bad number)."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and exit code 2 (via :func:`main`)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


# ---------------------------------------------------------------------------
# Output helpers
# ---------------------------------------------------------------------------


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (KeyError's quotes explained)."""
    if isinstance(exc, KeyError) and not isinstance(exc, ProxyscopeError):
        text = f"missing key {exc.args[0]!r}" if exc.args else "missing key"
    elif isinstance(exc, FileNotFoundError) and exc.filename and not exc.args[1:]:
        text = str(exc)
    elif isinstance(exc, OSError) and exc.filename:
        text = f"{exc.strerror or exc}: {exc.filename}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


class Console:
    """Where a command writes: results to stdout, progress and warnings to stderr."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.t0 = time.perf_counter()
        self.seen: set[str] = set()

    @property
    def out(self) -> IO[str]:
        return sys.stdout

    @property
    def err(self) -> IO[str]:
        return sys.stderr

    def print(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def log(self, message: str) -> None:
        """One progress line with the elapsed time (suppressed by --quiet)."""
        if not self.quiet:
            elapsed = time.perf_counter() - self.t0
            print(f"[{elapsed:6.1f}s] {message}", file=self.err, flush=True)

    def warn(self, message: str) -> None:
        """One warning line, each distinct message once."""
        key = "failed-fit" if "FAILED its convergence" in message else message
        if key in self.seen:
            return
        self.seen.add(key)
        print(f"{PROG}: warning: {' '.join(message.split())}", file=self.err, flush=True)


@contextlib.contextmanager
def warning_policy(console: Console) -> Iterator[None]:
    """Show proxyscope's warnings as one-line notes; silence third-party noise."""

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: str | None = None,
    ) -> None:
        console.warn(str(message))

    arviz_logger = logging.getLogger("arviz")
    level = arviz_logger.level
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("always", ProxyscopeWarning)
        warnings.showwarning = show
        arviz_logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            arviz_logger.setLevel(level)


def write_json(path: str | os.PathLike[str], doc: Any) -> Path:
    p = Path(path)
    if p.parent != Path(""):
        p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(doc, indent=2, default=_json_default) + "\n", encoding="utf-8")
    return p


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    p = Path(path)
    if p.parent != Path(""):
        p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    return p


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def records(frame: Any) -> list[dict[str, Any]]:
    """A DataFrame as JSON-friendly records (NaN → null)."""
    from proxyscope.run.execute import _records

    out = _records(frame)
    return out or []


def pairs(items: Sequence[str] | None, *, flag: str, number: bool = True) -> dict[str, Any]:
    """``NAME=VALUE`` command-line items as a dict (values numbers when ``number``)."""
    out: dict[str, Any] = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"{flag} expects NAME=VALUE; got {item!r}")
        if number:
            try:
                out[name.strip()] = float(value)
            except ValueError:
                raise UsageError(f"{flag} {name.strip()}= needs a number; got {value!r}") from None
        else:
            out[name.strip()] = value.strip()
    return out


def split_names(items: Sequence[str] | None) -> list[str]:
    """``--proxies a,b --proxies c`` → ["a", "b", "c"]."""
    out: list[str] = []
    for item in items or ():
        out += [x.strip() for x in item.split(",") if x.strip()]
    return out


def existing_file(path: str | os.PathLike[str], what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no {what} at {str(p)!r}")
    if p.is_dir():
        raise IsADirectoryError(f"{what} {str(p)!r} is a directory, not a file")
    return p


# ---------------------------------------------------------------------------
# Specs from arguments
# ---------------------------------------------------------------------------


def spec_from_args(args: argparse.Namespace) -> Any:
    """The spec of ``validate``/``summarize``: SPEC (with --set), role flags on top.

    Without SPEC the roles come from the flags alone and ``--data`` is required.
    """
    from proxyscope.spec import from_dict, load_spec

    roles: list[tuple[str, Any]] = []
    for flag, key in (
        ("experiment", "columns.experiment"),
        ("treatment", "columns.treatment"),
        ("outcome", "columns.outcome"),
    ):
        v = getattr(args, flag)
        if v is not None:
            roles.append((key, v))
    if args.treated_value is not None:
        from proxyscope.spec import parse_value

        roles.append(("columns.treated_value", parse_value(args.treated_value)))
    if args.proxies:
        roles.append(("columns.proxies", split_names(args.proxies)))
    if args.segments is not None:
        roles.append(("columns.segments", split_names(args.segments)))
    if args.direction:
        roles.append(
            ("columns.directions", pairs(args.direction, flag="--direction", number=False))
        )
    if args.engine is not None:
        roles.append(("data.engine", args.engine))
    if args.min_users_per_arm is not None:
        roles.append(("data.min_users_per_arm", args.min_users_per_arm))
    if args.dropna:
        roles.append(("data.dropna", True))

    if args.spec is not None:
        return load_spec(args.spec, overrides=[*args.set, *roles])
    if args.data is None:
        raise UsageError("give a SPEC file, or --data with the column flags")
    needed = [f for f in ("experiment", "treatment", "outcome") if getattr(args, f) is None]
    if not args.proxies:
        needed.append("proxies")
    if needed:
        raise UsageError(
            "without a SPEC file these options are required: " + ", ".join(f"--{n}" for n in needed)
        )
    raw: dict[str, Any] = {"name": "command-line", "data": {"kind": "users", "path": "-"}}
    for key, value in roles:
        section, name = key.split(".")
        raw.setdefault(section, {})[name] = value
    from proxyscope.spec import apply_overrides

    raw = apply_overrides(raw, args.set, origin="options")
    return from_dict(raw, origin="options")


# ---------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------


def _strict_code(args: argparse.Namespace, passed: bool, console: Console) -> int:
    if passed:
        return EXIT_OK
    if getattr(args, "strict", False):
        print(
            f"{PROG}: error: a fit failed its convergence diagnostics (--strict)",
            file=console.err,
        )
        return EXIT_UNCONVERGED
    return EXIT_OK


def cmd_demo(args: argparse.Namespace, console: Console) -> int:
    from proxyscope.run.demo import DEMO_COMPARE, DEMO_OUT, demo_spec
    from proxyscope.run.execute import run_spec
    from proxyscope.run.text import run_text
    from proxyscope.spec import apply_overrides, from_dict

    base = demo_spec()
    changes: list[Any] = list(args.set)
    for flag, key in (
        ("users", "data.simulate.n_users"),
        ("experiments", "data.simulate.n_experiments"),
        ("seed", "data.simulate.seed"),
        ("draws", "sampler.draws"),
        ("tune", "sampler.tune"),
        ("chains", "sampler.chains"),
    ):
        v = getattr(args, flag)
        if v is not None:
            changes.append((key, v))
    raw = apply_overrides(base.to_dict(), changes, origin="demo")
    if args.compare:
        raw.setdefault("analysis", {})["compare"] = dict(DEMO_COMPARE)
    spec = from_dict(raw, origin="demo")
    out = Path(args.out or DEMO_OUT)
    console.log(f"proxyscope demo: writing into {out}/")
    result = run_spec(spec, out=out, progress=not console.quiet, log=console.log)
    console.print(run_text(result))
    return _strict_code(args, result.passed, console)


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    from proxyscope.run.execute import run_spec
    from proxyscope.run.text import run_text
    from proxyscope.spec import load_spec

    spec = load_spec(args.spec, overrides=args.set)
    out = Path(args.out or spec.report.out or f"proxyscope-{spec.name}")
    console.log(f"running {args.spec} into {out}/")
    result = run_spec(spec, out=out, data=args.data, progress=not console.quiet, log=console.log)
    console.print(run_text(result))
    return _strict_code(args, result.passed, console)


def cmd_validate(args: argparse.Namespace, console: Console) -> int:
    from proxyscope.run.check import check_data, result_lines

    spec = spec_from_args(args)
    console.log(f"checking the data of {spec.origin}")
    result = check_data(spec, data=args.data)
    for line in result_lines(result):
        console.print(line)
    if args.json:
        write_json(args.json, result.to_dict())
    if not result.ok:
        n = len(result.problems)
        print(
            f"{PROG}: error: the data do not match the spec: {n} problem{'s' if n != 1 else ''} "
            f"in {result.source} (listed above)",
            file=console.err,
        )
        return EXIT_INPUT
    return EXIT_OK


def cmd_spec(args: argparse.Namespace, console: Console) -> int:
    from proxyscope.spec import load_spec

    spec = load_spec(args.spec, overrides=args.set)
    text = spec.dumps()
    if args.output:
        write_text(args.output, text)
        console.log(f"wrote {args.output}")
    else:
        console.out.write(text)
    return EXIT_OK


def cmd_summarize(args: argparse.Namespace, console: Console) -> int:
    from proxyscope.run.execute import load_effects

    spec = spec_from_args(args)
    effects = load_effects(spec, data=args.data, log=console.log).effects
    path = effects.save(args.output)
    console.print(repr(effects))
    console.print(f"Saved {effects.n_cells} cells to {path}.")
    return EXIT_OK


def cmd_fit(args: argparse.Namespace, console: Console) -> int:
    import dataclasses

    from proxyscope.data.cells import CellEffects
    from proxyscope.run.execute import fit_model
    from proxyscope.run.text import coefficient_rows, text_table
    from proxyscope.spec import ModelSection, SamplerSpec, load_spec

    cells = existing_file(args.cells, "cells file")
    try:
        effects = CellEffects.load(cells)
    except ProxyscopeError:
        raise
    except (OSError, ValueError) as exc:  # h5py / xarray: not NetCDF at all
        raise ValueError(
            f"{str(cells)!r} is not a cells file from 'proxyscope summarize' ({one_line(exc)})"
        ) from None
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
    if args.prior:
        model_changes["priors"] = {**model.priors, **pairs(args.prior, flag="--prior")}
    model = dataclasses.replace(model, **model_changes)
    sampler_changes: dict[str, Any] = {
        k: getattr(args, k)
        for k in ("draws", "tune", "chains", "seed", "followups", "followup_budget")
        if getattr(args, k) is not None
    }
    if args.sampler is not None:
        sampler_changes["name"] = args.sampler
    if args.setting:
        from proxyscope.spec import parse_value

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
    console.print("Coefficients, all segments (historical mix), 90% intervals:")
    console.print(text_table(coefficient_rows(fit.summary())))
    console.print(f"Saved the fit to {path}.")
    return _strict_code(args, fit.trustworthy, console)


def _load_fit(path: str) -> Any:
    import proxyscope as ps

    return ps.load(existing_file(path, "fit file"))


def _named_fits(items: Sequence[str]) -> dict[str, Any]:
    """``NAME=PATH`` or ``PATH`` (named by the file's stem) → {name: fit}."""
    fits: dict[str, Any] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:
            name, path = Path(item).stem, item
        if name in fits:
            raise UsageError(f"two fits are named {name!r}; name them with NAME=PATH")
        fits[name] = _load_fit(path)
    return fits


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    import proxyscope as ps
    from proxyscope.run.execute import read_target, report_fit

    fit = _load_fit(args.fit)
    transport = None
    if args.target is not None:
        console.log(f"transporting to {args.target}")
        transport = ps.transport(fit, read_target(args.target), ci=args.ci, random_seed=args.seed)
    comparison = None
    if args.compare:
        fits = {Path(args.fit).stem: fit, **_named_fits(args.compare)}
        console.log(f"comparing {list(fits)} by leave-one-{args.kind}-out")
        comparison = ps.compare(
            fits, kind=args.kind, refit=not args.no_refit, random_seed=args.seed, progress=False
        )
    where = report_fit(
        fit,
        Path(args.out),
        transport=transport,
        compare=comparison,
        title=args.title,
        ci=args.ci,
        log=console.log,
        surface="cli",
    )
    console.print(f"Report: {where / 'report.html'} (and report.md, report.json)")
    if not fit.trustworthy:
        console.print("WARNING: the fit FAILED its convergence diagnostics; the report says so.")
    return _strict_code(args, fit.trustworthy, console)


def cmd_transport(args: argparse.Namespace, console: Console) -> int:
    import proxyscope as ps
    from proxyscope._format import num
    from proxyscope.run.execute import read_target
    from proxyscope.run.text import markdown_table, text_table

    fit = _load_fit(args.fit)
    target = read_target(args.target)
    effects = pairs(args.proxy_effect, flag="--proxy-effect")
    ses = pairs(args.proxy_se, flag="--proxy-se")
    res = ps.transport(
        fit,
        target,
        proxy_effects=effects or None,
        proxy_se=ses or None,
        ci=args.ci,
        random_seed=args.seed,
    )
    summary = res.summary()
    kind = "given the proxy readings" if res.conditional else "of a new experiment"
    console.print(
        f"Long-term effect ({fit.outcome}) {kind} in the target population, "
        f"{100 * args.ci:g}% intervals:"
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
    return _strict_code(args, fit.trustworthy, console)


def cmd_compare(args: argparse.Namespace, console: Console) -> int:
    import proxyscope as ps
    from proxyscope.run.text import markdown_table, text_table

    if len(args.fits) < 2:
        raise UsageError("compare needs at least two fit files")
    fits = _named_fits(args.fits)
    console.log(f"comparing {list(fits)} by leave-one-{args.kind}-out")
    cmp = ps.compare(
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
    return _strict_code(args, passed, console)


def cmd_weights(args: argparse.Namespace, console: Console) -> int:
    import proxyscope as ps
    from proxyscope._format import interval
    from proxyscope.run.text import markdown_table, text_table

    if args.history:
        if args.ledger is None:
            raise UsageError("--history needs --ledger FILE")
        hist = ps.weights_history(existing_file(args.ledger, "ledger"))
        if args.scope is not None:
            hist = hist[hist["scope"] == args.scope]
        cols = ["entry_id", "timestamp", "kind", "scope", "proxy", "weight", "who", "why"]
        console.print(text_table(hist[cols]) if len(hist) else "  (no entries)")
        if args.json:
            write_json(args.json, records(hist))
        return EXIT_OK
    if args.override:
        if args.ledger is None or not args.who or not args.why:
            raise UsageError("--override needs --ledger FILE, --who NAME and --why TEXT")
        weights = pairs(args.override, flag="--override")
        fingerprint = config = None
        if args.fit is not None:
            fit = _load_fit(args.fit)
            fingerprint = fit.data_fingerprint
            config = fit.config_hash
        entry = ps.override_weights(
            args.ledger,
            weights,
            who=args.who,
            why=args.why,
            scope=args.scope or "global",
            data_fingerprint=fingerprint,
            config_hash=config,
        )
        console.print(f"Recorded override entry {entry} in {args.ledger}.")
        return EXIT_OK
    if args.fit is None:
        raise UsageError("weights needs a FIT file (or --history / --override with --ledger)")
    fit = _load_fit(args.fit)
    table = ps.weights(
        fit, ci=args.ci, by_segment=not args.global_only, ledger=args.ledger, note=args.note
    )
    shown = table.assign(
        weight=[
            interval(m, lo, hi)
            for m, lo, hi in zip(
                table["weight"], table["weight_lo"], table["weight_hi"], strict=True
            )
        ]
    )[["scope", "proxy", "weight", "direction"]]
    console.print(f"Adaptive proxy weights, {100 * args.ci:g}% intervals:")
    console.print(text_table(shown))
    if args.ledger is not None:
        console.print(f"Recorded entry {table.attrs.get('ledger_entry')} in {args.ledger}.")
    if args.json:
        write_json(
            args.json, {"ci": args.ci, "trustworthy": fit.trustworthy, "weights": records(table)}
        )
    if args.md:
        write_text(args.md, f"# Adaptive weights of {args.fit}\n\n{markdown_table(table)}\n")
    return _strict_code(args, fit.trustworthy, console)


# ---------------------------------------------------------------------------
# The parser
# ---------------------------------------------------------------------------


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def _nonnegative(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return v


def _level(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}") from None
    if not 0 < v < 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}")
    return v


def _common(p: argparse.ArgumentParser, *, strict: bool = False) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines or progress bars")
    if strict:
        p.add_argument(
            "--strict",
            action="store_true",
            help="exit with code 3 when a fit failed its convergence diagnostics",
        )


def _set_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec value, e.g. --set sampler.draws=200 (value read as TOML)",
    )


def _role_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "spec", nargs="?", help="model spec (TOML); optional with --data and the column flags"
    )
    p.add_argument("--data", help="data file, directory or glob (replaces the spec's source)")
    _set_option(p)
    g = p.add_argument_group("columns (override the spec's [columns])")
    g.add_argument("--experiment", help="experiment id column")
    g.add_argument("--treatment", help="arm column (two values)")
    g.add_argument("--treated-value", help="the treatment column's value of the treated arm")
    g.add_argument("--outcome", help="long-term outcome column")
    g.add_argument("--proxies", action="append", help="proxy columns, comma-separated")
    g.add_argument("--segments", action="append", help="segment columns, comma-separated")
    g.add_argument(
        "--direction", action="append", metavar="PROXY=lower", help="good direction of a proxy"
    )
    g.add_argument("--engine", choices=specdef.ENGINES, help="summarize engine")
    g.add_argument("--min-users-per-arm", type=_positive, help="drop smaller cells")
    g.add_argument("--dropna", action="store_true", help="drop rows with missing values")


def build_parser() -> argparse.ArgumentParser:
    """The ``proxyscope`` argument parser."""
    parser = _Parser(
        prog=PROG,
        description=(
            "Bayesian hierarchical validation of proxy metrics in online experiments: which "
            "early metric stands in for the long-term outcome, where it breaks, and what it "
            "predicts for another population."
        ),
        epilog=(
            "Exit codes: 0 success; 2 bad input or spec; 3 a fit failed its diagnostics "
            "(with --strict); 1 internal error."
        ),
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for input errors too")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add(name: str, help_: str, description: str, handler: Callable[..., int]) -> Any:
        p = sub.add_parser(name, help=help_, description=description)
        p.set_defaults(handler=handler)
        return p

    p = add(
        "demo",
        "Run the main job on a simulated streaming world and write a report.",
        "Run the main job on a simulated streaming world and write a report: simulate users "
        "(written to Parquet), summarize them with DuckDB, fit the proxy model, compute "
        "fragility, surrogacy, weights, recommendations and a transport to a Mobile x IN x "
        "New-heavy cohort, and write the report.",
        cmd_demo,
    )
    p.add_argument("--out", help="output directory (default ./proxyscope-demo)")
    p.add_argument("--users", type=_positive, help="simulated users (default 250000)")
    p.add_argument("--experiments", type=_positive, help="simulated experiments (default 50)")
    p.add_argument("--seed", type=_nonnegative, help="simulation seed (default 7)")
    p.add_argument("--draws", type=_positive, help="posterior draws per chain (default 1000)")
    p.add_argument("--tune", type=_nonnegative, help="tuning steps per chain (default 1000)")
    p.add_argument("--chains", type=_positive, help="chains (default 4)")
    p.add_argument(
        "--compare",
        action="store_true",
        help="also fit complete pooling and compare the two by LOO (a second fit)",
    )
    _set_option(p)
    _common(p, strict=True)

    p = add(
        "run",
        "Execute a model spec (TOML) end to end and write its report.",
        "Execute a model spec end to end: read the data, fit, run the analyses, comparisons "
        "and sensitivity analysis it asks for, and write the report, run.md and run.json "
        "into the output directory.",
        cmd_run,
    )
    p.add_argument("spec", help="model spec, e.g. models/streaming_retention.toml")
    p.add_argument("--data", help="data file, directory or glob (replaces the spec's source)")
    p.add_argument("--out", help="output directory (default [report].out or ./proxyscope-NAME)")
    _set_option(p)
    _common(p, strict=True)

    p = add(
        "validate",
        "Check data against a spec without fitting.",
        "Check data against a spec without fitting: columns and roles, types, missing and "
        "infinite values, a two-valued treatment, experiments with both arms; then build the "
        "cells (no model) and report what will be dropped. Prints OK and a summary, or every "
        "problem found (exit code 2).",
        cmd_validate,
    )
    _role_options(p)
    p.add_argument("--json", help="also write the result as JSON")
    _common(p)

    p = add(
        "spec",
        "Check a spec and print it in canonical form (for diffs).",
        "Check a spec and print it in canonical form: every default spelled out, fixed "
        "order, comments dropped, so two specs can be diffed.",
        cmd_spec,
    )
    p.add_argument("spec", help="model spec (TOML)")
    p.add_argument("-o", "--output", help="write to this file instead of stdout")
    _set_option(p)
    _common(p)

    p = add(
        "summarize",
        "Summarize data into per-cell effects (a cells .nc file).",
        "Summarize data into per-(experiment x segment cell) effects and their sampling "
        "covariances, saved as NetCDF for 'proxyscope fit'.",
        cmd_summarize,
    )
    _role_options(p)
    p.add_argument("-o", "--output", default="cells.nc", help="cells file (default cells.nc)")
    _common(p)

    p = add(
        "fit",
        "Fit the proxy model to a cells .nc file and save the fit (.nc).",
        "Fit the Bayesian hierarchical proxy model to saved cells. Model and sampler come "
        "from --spec (its [model] and [sampler]) and the flags below.",
        cmd_fit,
    )
    p.add_argument("cells", help="cells file from 'proxyscope summarize'")
    p.add_argument("-o", "--output", default="fit.nc", help="fit file (default fit.nc)")
    p.add_argument("--spec", help="take [model] and [sampler] from this spec")
    _set_option(p)
    p.add_argument("--pooling", choices=specdef.POOLINGS)
    p.add_argument("--cell-correlation", choices=specdef.CELL_CORRELATIONS)
    p.add_argument(
        "--noise",
        choices=specdef.NOISE_MODES,
        help="moderate small cells' noise toward their segment's (default) or use it as given",
    )
    p.add_argument("--sampler", choices=specdef.SAMPLERS)
    p.add_argument("--draws", type=_positive, help="draws per chain")
    p.add_argument("--tune", type=_nonnegative, help="tuning steps per chain")
    p.add_argument("--chains", type=_positive)
    p.add_argument("--seed", type=_nonnegative, help="random seed")
    p.add_argument(
        "--followups",
        type=_nonnegative,
        help="follow-up runs after a run fails its diagnostics (default 2; 0: none)",
    )
    p.add_argument(
        "--followup-budget",
        type=float,
        help="follow-ups' time budget, as a multiple of the first run's (default 4)",
    )
    p.add_argument("--prior", action="append", metavar="NAME=VALUE", help="override a prior")
    p.add_argument(
        "--setting",
        action="append",
        metavar="NAME=VALUE",
        help="sampler setting, e.g. target_accept=0.95",
    )
    _common(p, strict=True)

    p = add(
        "report",
        "Write the report (Markdown, JSON, HTML) of a saved fit.",
        "Write report.md, report.json, report.html and figures for a saved fit, optionally "
        "with a transport target and a LOO comparison against other saved fits.",
        cmd_report,
    )
    p.add_argument("fit", help="fit file")
    p.add_argument("-o", "--out", default="proxyscope-report", help="output directory")
    p.add_argument("--target", help="transport target (CSV/Parquet table or JSON {label: share})")
    p.add_argument(
        "--compare", action="append", metavar="[NAME=]FIT", help="another fit to compare with"
    )
    p.add_argument("--kind", choices=specdef.COMPARE_KINDS, default="experiment")
    p.add_argument("--no-refit", action="store_true", help="no exact refits for high Pareto k")
    p.add_argument("--title", help="report title")
    p.add_argument(
        "--ci", type=_level, default=DEFAULT_CI, help=f"interval width (default {DEFAULT_CI:g})"
    )
    p.add_argument("--seed", type=_nonnegative, help="random seed of predictive draws")
    _common(p, strict=True)

    p = add(
        "transport",
        "Predict the long-term effect of a new experiment in a target population.",
        "Predict the long-term effect of a new experiment in a target population: a CSV or "
        "Parquet table with the segment columns (one row per user, or with a share/count "
        'column) or a JSON object {"A / B / C": share}. With --proxy-effect the prediction '
        "is conditional on observed proxy readings.",
        cmd_transport,
    )
    p.add_argument("fit", help="fit file")
    p.add_argument("target", help="target population file (CSV, Parquet or JSON)")
    p.add_argument("--proxy-effect", action="append", metavar="PROXY=VALUE")
    p.add_argument("--proxy-se", action="append", metavar="PROXY=SE")
    p.add_argument(
        "--ci", type=_level, default=DEFAULT_CI, help=f"interval width (default {DEFAULT_CI:g})"
    )
    p.add_argument("--seed", type=_nonnegative, help="random seed of predictive draws")
    p.add_argument("--json", help="write the result as JSON")
    p.add_argument("--md", help="write the result as Markdown")
    _common(p, strict=True)

    p = add(
        "compare",
        "Compare saved fits by leave-one-out predictive density (PSIS-LOO).",
        "Compare saved fits by PSIS-LOO: leave one experiment out (default; exact refits "
        "where Pareto k > 0.7), one cell, or the long-term estimate given the proxies "
        "(--kind outcome, for fits with different proxy sets).",
        cmd_compare,
    )
    p.add_argument("fits", nargs="+", metavar="[NAME=]FIT", help="two or more fit files")
    p.add_argument("--kind", choices=specdef.COMPARE_KINDS, default="experiment")
    p.add_argument("--no-refit", action="store_true", help="no exact refits for high Pareto k")
    p.add_argument("--max-refits", type=_positive, default=5)
    p.add_argument("--seed", type=_nonnegative, help="random seed of refits")
    p.add_argument("--json", help="write the table and reading as JSON")
    p.add_argument("--md", help="write the table and reading as Markdown")
    _common(p, strict=True)

    p = add(
        "weights",
        "Adaptive proxy weights; record them, override them, or show their history.",
        "Adaptive weights of a composite decision metric with intervals. --ledger FILE "
        "records them in a weights history; --override PROXY=W ... with --who and --why "
        "records a manual override; --history prints the ledger.",
        cmd_weights,
    )
    p.add_argument("fit", nargs="?", help="fit file")
    p.add_argument("--ledger", help="weights ledger file (DuckDB)")
    p.add_argument("--note", help="note stored with the ledger entry")
    p.add_argument("--global-only", action="store_true", help="no per-segment weights")
    p.add_argument(
        "--ci", type=_level, default=DEFAULT_CI, help=f"interval width (default {DEFAULT_CI:g})"
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--history", action="store_true", help="print the ledger's history")
    mode.add_argument("--override", action="append", metavar="PROXY=WEIGHT")
    p.add_argument("--who", help="who overrides (with --override)")
    p.add_argument("--why", help="why (with --override)")
    p.add_argument("--scope", help="scope of the override or history filter (default global)")
    p.add_argument("--json", help="write the table as JSON")
    p.add_argument("--md", help="write the table as Markdown")
    _common(p, strict=True)
    return parser


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    parser = build_parser()
    args_list = list(sys.argv[1:] if argv is None else argv)
    # --debug is accepted anywhere on the line, and as PROXYSCOPE_DEBUG=1.
    debug = "--debug" in args_list or os.environ.get("PROXYSCOPE_DEBUG", "") not in ("", "0")
    args_list = [a for a in args_list if a != "--debug"]
    try:
        args = parser.parse_args(args_list)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except SystemExit as exc:  # --help and --version
        return int(exc.code) if isinstance(exc.code, int) else EXIT_OK
    if getattr(args, "handler", None) is None:
        parser.print_help(sys.stdout)
        return EXIT_INPUT
    console = Console(quiet=getattr(args, "quiet", False))
    with warning_policy(console):
        try:
            return int(args.handler(args, console))
        except UsageError as exc:
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return EXIT_INPUT
        except KeyboardInterrupt:
            print(f"{PROG}: interrupted", file=sys.stderr)
            return 130
        except INPUT_ERRORS as exc:
            if debug:
                raise
            print(f"{PROG}: error: {one_line(exc)}", file=sys.stderr)
            return EXIT_INPUT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

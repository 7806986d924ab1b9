"""The ``proxyscope`` argument parser: every command, its options and their checks.

The parser names the command (``args.command``); :func:`proxyscope.cli.main`
finds the function that runs it.
"""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

from proxyscope import spec as specdef
from proxyscope._version import __version__
from proxyscope.cli.arguments import (
    chains_int,
    draws_int,
    int_between,
    level_float,
    positive_int,
    seed_int,
    tune_int,
)
from proxyscope.cli.console import PROG, UsageError
from proxyscope.cli.data_flags import estimates_options, role_options, set_option
from proxyscope.cli.time_flags import (
    period_option,
    rolling_parser,
    stability_parser,
    time_option,
)
from proxyscope.options import DEFAULT_CI


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and exit code 2 (via :func:`main`)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _common(p: argparse.ArgumentParser, *, strict: bool = False) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines or progress bars")
    if strict:
        p.add_argument(
            "--strict",
            action="store_true",
            help="exit with code 3 when a fit failed its convergence diagnostics",
        )


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
            "Exit codes: 0 success; 2 bad input or spec (a missing or unreadable file, a bad "
            "value; one line 'proxyscope: error: ...'); 3 a fit failed its diagnostics (with "
            "--strict); 1 an internal error, i.e. a bug (one line 'proxyscope: internal "
            "error: ...'; --debug shows its traceback)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the traceback of any error (also PROXYSCOPE_DEBUG=1)",
    )
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_Parser, help="what to do"
    )

    def add(name: str, help_: str, description: str) -> Any:
        return sub.add_parser(name, help=help_, description=description)

    p = add(
        "demo",
        "Run the main job on a simulated streaming world and write a report.",
        "Run the main job on a simulated streaming world and write a report: simulate users "
        "(written to Parquet), summarize them with DuckDB, fit the proxy model, compute "
        "fragility, surrogacy, weights, recommendations and a transport to a Mobile x IN x "
        "New-heavy cohort, and write the report.",
    )
    p.add_argument("--out", help="output directory (default ./proxyscope-demo)")
    p.add_argument(
        "--users", type=int_between(1, specdef.MAX_USERS), help="simulated users (default 250000)"
    )
    p.add_argument(
        "--experiments",
        type=int_between(1, specdef.MAX_EXPERIMENTS),
        help="simulated experiments (default 50)",
    )
    p.add_argument("--seed", type=seed_int, help="simulation seed (default 7)")
    p.add_argument("--draws", type=draws_int, help="posterior draws per chain (default 1000)")
    p.add_argument("--tune", type=tune_int, help="tuning steps per chain (default 1000)")
    p.add_argument("--chains", type=chains_int, help="chains (default 4)")
    p.add_argument(
        "--compare",
        action="store_true",
        help="also fit complete pooling and compare the two by LOO (a second fit)",
    )
    set_option(p)
    _common(p, strict=True)

    p = add(
        "run",
        "Execute a model spec (TOML) end to end and write its report.",
        "Execute a model spec end to end: read the data, fit, run the analyses, comparisons "
        "and sensitivity analysis it asks for, and write the report, run.md and run.json "
        "into the output directory.",
    )
    p.add_argument("spec", help="model spec, e.g. models/streaming_retention.toml")
    p.add_argument("--data", help="data file, directory or glob (replaces the spec's source)")
    p.add_argument("--out", help="output directory (default [report].out or ./proxyscope-NAME)")
    set_option(p)
    _common(p, strict=True)

    p = add(
        "validate",
        "Check data against a spec without fitting.",
        "Check data against a spec without fitting: columns and roles, types, missing and "
        "infinite values, a two-valued treatment, experiments with both arms; then build the "
        "cells (no model) and report what will be dropped. Prints OK and a summary, or every "
        "problem found (exit code 2).",
    )
    role_options(p)
    p.add_argument("--json", help="also write the result as JSON")
    _common(p)

    p = add(
        "spec",
        "Check a spec and print it in canonical form (for diffs).",
        "Check a spec and print it in canonical form: every default spelled out, fixed "
        "order, comments dropped, so two specs can be diffed.",
    )
    p.add_argument("spec", help="model spec (TOML)")
    p.add_argument("-o", "--output", help="write to this file instead of stdout")
    set_option(p)
    _common(p)

    p = add(
        "summarize",
        "Summarize data into per-cell effects (a cells .nc file).",
        "Summarize data into per-(experiment x segment cell) effects and their sampling "
        "covariances, saved as NetCDF for 'proxyscope fit'. With --design did, rdd, ipw or "
        "synthetic_control the design's own estimator reads the rows (a panel for did and "
        "synthetic_control), with the options of its group below, e.g. 'proxyscope summarize "
        "--data panel.parquet --design did --unit market --period week --first-treated "
        "first_week --control not_yet --experiment exp --outcome y --proxies x1,x2'.",
    )
    role_options(p)
    p.add_argument("-o", "--output", default="cells.nc", help="cells file (default cells.nc)")
    _common(p)

    p = add(
        "estimates",
        "Build per-cell effects from estimates made elsewhere (a cells .nc file).",
        "Build per-(experiment x segment cell) effects from a table of estimates made "
        "elsewhere (a scorecard, another tool, a quasi-experiment): one row per experiment, "
        "segment and metric with the estimate and its standard error, in the metric's "
        "natural direction. The cross-metric covariance comes from --covariance (a table: the "
        "experiment and segment columns, metric_a, metric_b, covariance) or an ASSUMED "
        "correlation of the estimates' errors (--correlation); one of them is required. Saved "
        "as NetCDF for 'proxyscope fit'.",
    )
    estimates_options(p)
    p.add_argument("-o", "--output", default="cells.nc", help="cells file (default cells.nc)")
    _common(p)

    p = add(
        "fit",
        "Fit the proxy model to a cells .nc file and save the fit (.nc).",
        "Fit the Bayesian hierarchical proxy model to saved cells. Model and sampler come "
        "from --spec (its [model] and [sampler]) and the flags below.",
    )
    p.add_argument("cells", help="cells file from 'proxyscope summarize'")
    p.add_argument("-o", "--output", default="fit.nc", help="fit file (default fit.nc)")
    p.add_argument("--spec", help="take [model] and [sampler] from this spec")
    set_option(p)
    p.add_argument(
        "--pooling",
        choices=specdef.POOLINGS,
        help="how segments share strength (default additive: global + per-column effects)",
    )
    p.add_argument(
        "--cell-correlation",
        choices=specdef.CELL_CORRELATIONS,
        help="one correlation of the proxies' cell deviations for all segments (shared, "
        "default) or one per segment (free)",
    )
    p.add_argument(
        "--noise",
        choices=specdef.NOISE_MODES,
        help="moderate small cells' noise toward their segment's (default) or use it as given",
    )
    p.add_argument(
        "--sampler",
        choices=specdef.SAMPLERS,
        help="NUTS sampler (default auto: nutpie if installed)",
    )
    p.add_argument("--draws", type=draws_int, help="draws per chain")
    p.add_argument("--tune", type=tune_int, help="tuning steps per chain")
    p.add_argument("--chains", type=chains_int, help="chains (default 4)")
    p.add_argument("--seed", type=seed_int, help="random seed")
    p.add_argument(
        "--followups",
        type=int_between(0, specdef.MAX_FOLLOWUPS),
        help="follow-up runs after a run fails its diagnostics (default 2; 0: none)",
    )
    p.add_argument(
        "--followup-budget",
        type=float,
        help="follow-ups' time budget, as a multiple of the first run's (default 4)",
    )
    time_option(p)
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
    )
    p.add_argument("fit", help="fit file")
    p.add_argument("-o", "--out", default="proxyscope-report", help="output directory")
    p.add_argument("--target", help="transport target (CSV/Parquet table or JSON {label: share})")
    p.add_argument(
        "--compare", action="append", metavar="[NAME=]FIT", help="another fit to compare with"
    )
    p.add_argument(
        "--kind",
        choices=specdef.COMPARE_KINDS,
        default="experiment",
        help="what the comparison's LOO leaves out (default experiment)",
    )
    p.add_argument("--no-refit", action="store_true", help="no exact refits for high Pareto k")
    p.add_argument("--title", help="report title")
    p.add_argument(
        "--ci",
        type=level_float,
        default=DEFAULT_CI,
        help=f"interval width (default {DEFAULT_CI:g})",
    )
    p.add_argument("--seed", type=seed_int, help="random seed of predictive draws")
    period_option(p)
    _common(p, strict=True)

    p = add(
        "transport",
        "Predict the long-term effect of a new experiment in a target population.",
        "Predict the long-term effect of a new experiment in a target population: a CSV or "
        "Parquet table with the segment columns (one row per user, or with a share/count "
        'column) or a JSON object {"A / B / C": share}. With --proxy-effect the prediction '
        "is conditional on observed proxy readings.",
    )
    p.add_argument("fit", help="fit file")
    p.add_argument("target", help="target population file (CSV, Parquet or JSON)")
    p.add_argument(
        "--proxy-effect",
        action="append",
        metavar="PROXY=VALUE",
        help="a new experiment's proxy reading (original units, good direction); repeat "
        "per proxy: the prediction is then conditional on the readings",
    )
    p.add_argument(
        "--proxy-se",
        action="append",
        metavar="PROXY=SE",
        help="the standard error of a --proxy-effect reading (default 0: read exactly)",
    )
    p.add_argument(
        "--ci",
        type=level_float,
        default=DEFAULT_CI,
        help=f"interval width (default {DEFAULT_CI:g})",
    )
    p.add_argument("--seed", type=seed_int, help="random seed of predictive draws")
    period_option(p)
    p.add_argument("--json", help="write the result as JSON")
    p.add_argument("--md", help="write the result as Markdown")
    _common(p, strict=True)

    p = add(
        "compare",
        "Compare saved fits by leave-one-out predictive density (PSIS-LOO).",
        "Compare saved fits by PSIS-LOO: leave one experiment out (default; exact refits "
        "where Pareto k > 0.7), one cell, or the long-term estimate given the proxies "
        "(--kind outcome, for fits with different proxy sets).",
    )
    p.add_argument("fits", nargs="+", metavar="[NAME=]FIT", help="two or more fit files")
    p.add_argument(
        "--kind",
        choices=specdef.COMPARE_KINDS,
        default="experiment",
        help="what LOO leaves out: an experiment (default), a cell, or the long-term "
        "estimate given the proxies (the one that compares different proxy sets)",
    )
    p.add_argument("--no-refit", action="store_true", help="no exact refits for high Pareto k")
    p.add_argument(
        "--max-refits",
        type=positive_int,
        default=5,
        help="at most this many refits per model for high Pareto k (default 5)",
    )
    p.add_argument("--seed", type=seed_int, help="random seed of refits")
    p.add_argument("--json", help="write the table and reading as JSON")
    p.add_argument("--md", help="write the table and reading as Markdown")
    _common(p, strict=True)

    p = add(
        "weights",
        "Adaptive proxy weights; record them, override them, or show their history.",
        "Adaptive weights of a composite decision metric with intervals. --ledger FILE "
        "records them in a weights history; --override PROXY=W ... with --who and --why "
        "records a manual override; --history prints the ledger.",
    )
    p.add_argument("fit", nargs="?", help="fit file")
    p.add_argument("--ledger", help="weights ledger file (DuckDB)")
    p.add_argument("--note", help="note stored with the ledger entry")
    p.add_argument("--global-only", action="store_true", help="no per-segment weights")
    p.add_argument(
        "--ci",
        type=level_float,
        default=DEFAULT_CI,
        help=f"interval width (default {DEFAULT_CI:g})",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--history", action="store_true", help="print the ledger's history")
    mode.add_argument(
        "--override",
        action="append",
        metavar="PROXY=WEIGHT",
        help="record manual weights (repeat per proxy; they sum to 1), with --who and --why",
    )
    p.add_argument("--who", help="who overrides (with --override)")
    p.add_argument("--why", help="why (with --override)")
    p.add_argument(
        "--scope",
        help="scope of an override, or the scope --history shows (default global; "
        "'all' shows every scope)",
    )
    period_option(p)
    p.add_argument("--json", help="write the table as JSON")
    p.add_argument("--md", help="write the table as Markdown")
    _common(p, strict=True)

    p = stability_parser(add)
    _common(p, strict=True)

    p = rolling_parser(add)
    _common(p, strict=True)
    return parser

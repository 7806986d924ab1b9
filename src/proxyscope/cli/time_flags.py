"""The command line's options about time (DESIGN.md §9): ``fit --time``, ``--period`` on
the commands that read a saved fit, and the parsers of the ``stability`` and
``rolling-backtest`` commands.

The options on the data's time (``--time COL --time-period P`` of ``validate``,
``summarize`` and ``estimates``) are in :mod:`proxyscope.cli.data_flags`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from proxyscope import spec as specdef
from proxyscope.cli.arguments import chains_int, draws_int, level_float, seed_int, tune_int
from proxyscope.cli.specs import time_period
from proxyscope.options import DEFAULT_CI
from proxyscope.spec.parse_time import time_value
from proxyscope.spec.read import Table


def time_flag(text: str) -> Any:
    """``--time``'s value checked as ``[model].time`` is (its errors name ``[model].time``,
    which the command line says as ``--time``): True, a grouping name, the bin edges
    (comma-separated, each read as TOML), or None for ``false``."""
    flag = {"true": True, "false": False}.get(text.strip().lower())
    raw = flag if flag is not None else time_period(text)
    return time_value(Table({"time": raw}, "model", "options"))


def time_option(p: argparse.ArgumentParser) -> None:
    """``fit --time``: the relation moves over time (sets ``[model].time``)."""
    p.add_argument(
        "--time",
        metavar="TIME",
        help="let the relation move over time (cells with start dates): true (the cells' "
        "periods), a grouping (" + ", ".join(specdef.PERIODS) + ") or comma-separated bin "
        "edges that regroup them, false for a static relation (default: the spec's, else "
        "static)",
    )


def period_option(p: argparse.ArgumentParser) -> None:
    """``--period``: which period of a fit with time the command reads."""
    p.add_argument(
        "--period",
        metavar="PERIOD",
        help="for a fit with time: the period whose relation to read, e.g. 2025-Q1 "
        "(default: the latest)",
    )


def stability_parser(add: Callable[[str, str, str], Any]) -> argparse.ArgumentParser:
    """The ``stability`` command (``add(name, help, description)`` makes its parser)."""
    p: argparse.ArgumentParser = add(
        "stability",
        "How each proxy's link to the outcome moved over time (a fit with --time).",
        "Read a fit whose relation moves over time (proxyscope fit ... --time): each "
        "proxy's slope per period with intervals and a forecast one period ahead, the "
        "change between two periods (default: the first and the last) with P(changed), "
        "and one reading per proxy.",
    )
    p.add_argument("fit", help="fit file (from 'proxyscope fit ... --time')")
    p.add_argument(
        "--between",
        nargs=2,
        action="append",
        metavar=("FROM", "TO"),
        help="two periods to compare (repeat for more pairs; default the first and the last)",
    )
    p.add_argument("--segments", action="store_true", help="also each segment's slope path")
    p.add_argument(
        "--ci",
        type=level_float,
        default=DEFAULT_CI,
        help=f"interval width (default {DEFAULT_CI:g})",
    )
    p.add_argument(
        "--probability",
        type=level_float,
        default=specdef.StabilitySpec.probability,
        help="P(changed) from which a change is called clear (default "
        f"{specdef.StabilitySpec.probability:g})",
    )
    p.add_argument("--seed", type=seed_int, help="random seed of the forecast's step")
    p.add_argument("--json", help="write the result as JSON")
    p.add_argument("--md", help="write the result as Markdown")
    return p


def rolling_parser(add: Callable[[str, str, str], Any]) -> argparse.ArgumentParser:
    """The ``rolling-backtest`` command (``add(name, help, description)`` makes its parser)."""
    p: argparse.ArgumentParser = add(
        "rolling-backtest",
        "Fit up to each origin period and judge the later experiments: over time vs static.",
        "Rolling-origin backtest on cells with start dates: at each origin period, fit the "
        "model over time and the same model without time on the experiments up to it, "
        "predict every later experiment's long-term effect from its proxy readings, and "
        "score both (decision accuracy, RMSE, interval coverage). Model and sampler come "
        "from --spec (its [model], [sampler] and [analysis.rolling_backtest]) and the flags "
        "below.",
    )
    p.add_argument("cells", help="cells file with start dates ('proxyscope summarize --time COL')")
    p.add_argument(
        "--origin",
        action="append",
        metavar="PERIOD",
        help="an origin period (repeat for more; default: from the middle of the history to "
        "the second-to-last period)",
    )
    p.add_argument("--spec", help="take [model], [sampler] and the origins from this spec")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a value of --spec, e.g. --set sampler.draws=200 (value read as TOML)",
    )
    p.add_argument(
        "--time",
        metavar="TIME",
        help="the drifting model's time: true (the cells' periods, the default), a grouping ("
        + ", ".join(specdef.PERIODS)
        + ") or comma-separated bin edges",
    )
    p.add_argument("--draws", type=draws_int, help="draws per chain of every fit")
    p.add_argument("--tune", type=tune_int, help="tuning steps per chain of every fit")
    p.add_argument("--chains", type=chains_int, help="chains of every fit")
    p.add_argument("--seed", type=seed_int, help="random seed (origin i's fits get seed + i)")
    p.add_argument(
        "--ci",
        type=level_float,
        default=DEFAULT_CI,
        help=f"level of the predictive intervals (default {DEFAULT_CI:g})",
    )
    p.add_argument("--json", help="write the result as JSON")
    p.add_argument("--md", help="write the result as Markdown")
    return p

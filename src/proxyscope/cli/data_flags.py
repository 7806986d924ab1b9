"""The options of the commands on data: the column roles that ``validate`` and
``summarize`` take (with the cluster and exposure columns of user-level rows, the
design of per-arm summaries, and the design that reads rows with its options), the
options of ``estimates``, and ``--set``.

Each flag sets a spec key (:data:`proxyscope.cli.flags.ROLE_KEYS`,
:data:`~proxyscope.cli.flags.DESIGN_KEYS`, :data:`~proxyscope.cli.flags.ESTIMATE_KEYS`),
so the spec checks its value and its errors name the flag.
"""

from __future__ import annotations

import argparse

from proxyscope import spec as specdef
from proxyscope.cli.arguments import positive_int


def set_option(p: argparse.ArgumentParser) -> None:
    """``--set KEY=VALUE`` (repeated): spec keys changed before the spec is checked."""
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec value, e.g. --set sampler.draws=200 (value read as TOML)",
    )


def role_options(p: argparse.ArgumentParser) -> None:
    """SPEC, ``--data``, ``--set`` and the flags that override the spec's roles."""
    p.add_argument(
        "spec", nargs="?", help="model spec (TOML); optional with --data and the column flags"
    )
    p.add_argument("--data", help="data file, directory or glob (replaces the spec's source)")
    set_option(p)
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
    g.add_argument("--min-users-per-arm", type=positive_int, help="drop smaller cells")
    g.add_argument("--dropna", action="store_true", help="drop rows with missing values")
    time_options(p)
    g = p.add_argument_group("designs (override the spec's [data])")
    g.add_argument(
        "--cluster",
        metavar="COL",
        help="the randomization unit's column (workspace, team, market): cluster-robust "
        "covariances, design 'cluster'",
    )
    g.add_argument(
        "--exposure",
        metavar="COL",
        help="exposure column (with --cluster): direct effect against pure controls, and "
        "the spillover effect",
    )
    g.add_argument(
        "--exposure-value",
        action="append",
        metavar="ROLE=VALUE",
        help="which value of the exposure column is "
        + ", ".join(specdef.EXPOSURE_ROLES)
        + "; repeat per role",
    )
    g.add_argument(
        "--design",
        metavar="DESIGN",
        help="the design that reads user-level rows ("
        + ", ".join(specdef.ROW_DESIGNS)
        + "; with the design options below), or the design of per-arm summary cells ("
        + ", ".join(specdef.DESIGNS)
        + "; default ab)",
    )
    design_options(p)


def time_options(p: argparse.ArgumentParser) -> None:
    """``--time`` and ``--time-period``: the experiments' start column and their periods
    (``[data].time`` and ``[data].period``). The grouping is ``--time-period``, not
    ``--period``: that flag names the period column of did and synthetic_control."""
    g = p.add_argument_group("time (override the spec's [data].time and [data].period)")
    g.add_argument(
        "--time", metavar="COL", help="column with each experiment's start (a date or a number)"
    )
    g.add_argument(
        "--time-period",
        metavar="PERIOD",
        help="group the starts by "
        + ", ".join(specdef.PERIODS)
        + ", or bins given by comma-separated edges (e.g. 2025-01-01,2025-07-01,2026-01-01); "
        "default quarter for dates, number for numbers",
    )


def design_options(p: argparse.ArgumentParser) -> None:
    """The options of the designs that read rows: each sets the key of the same name in
    ``[data.<design>]`` (:data:`proxyscope.cli.flags.DESIGN_FLAGS`). Numbers are read as
    TOML values, so the spec checks them (and its errors name the flag)."""
    g = p.add_argument_group(
        "did: staged rollouts by difference in differences (--design did; a panel of "
        "experiment x unit x period; --cluster allowed)"
    )
    g.add_argument("--unit", metavar="COL", help="unit column (did, synthetic_control)")
    g.add_argument("--period", metavar="COL", help="period column (did, synthetic_control)")
    g.add_argument(
        "--first-treated",
        metavar="COL",
        help="column with the unit's first treated period (empty: never treated)",
    )
    g.add_argument(
        "--control",
        metavar="WHICH",
        help="comparison units: " + " or ".join(specdef.DID_CONTROLS) + " (default never)",
    )
    g.add_argument("--pre-periods", metavar="N", help="pre-periods in the pre-trend test")
    g.add_argument("--pretrend-level", metavar="P", help="pre-trend level (default 0.05)")
    g.add_argument("--min-units", metavar="N", help="drop cells with fewer units (default 5)")
    g = p.add_argument_group(
        "rdd: threshold rules by regression discontinuity (--design rdd; one row per unit; "
        "--cluster and --min-users-per-arm allowed)"
    )
    g.add_argument("--running", metavar="COL", help="running variable (score) column")
    g.add_argument("--cutoff", metavar="X|COL", help="the threshold, or a column holding it")
    g.add_argument("--bandwidth", metavar="H", help="bandwidth (default MSE-optimal per cell)")
    g.add_argument(
        "--kernel", help="kernel: " + ", ".join(specdef.RDD_KERNELS) + " (default triangular)"
    )
    g.add_argument("--density-alpha", metavar="P", help="density check level (default 0.05)")
    g.add_argument(
        "--density-window", metavar="H", help="density check window (default the bandwidth)"
    )
    g = p.add_argument_group(
        "ipw: opt-in features by doubly robust weighting (--design ipw; one row per user; "
        "--treatment is the opt-in column; --cluster and --min-users-per-arm allowed)"
    )
    g.add_argument(
        "--covariates", action="append", help="pre-choice covariate columns, comma-separated"
    )
    g.add_argument(
        "--estimand", help="effect over: " + " or ".join(specdef.IPW_ESTIMANDS) + " (default ate)"
    )
    g.add_argument("--trim", metavar="T", help="clip propensities to [T, 1 - T] (default 0.01)")
    g.add_argument("--n-folds", metavar="K", help="cross-fitting folds (default 5)")
    g.add_argument("--random-state", metavar="SEED", help="seed of the folds (default 0)")
    g = p.add_argument_group(
        "synthetic_control: global launches against donor units (--design synthetic_control; "
        "a panel of experiment x unit x period; also --unit and --period)"
    )
    g.add_argument("--treated", metavar="COL", help="column true on the treated unit's rows")
    g.add_argument(
        "--treatment-start", metavar="T|COL", help="first treated period, or a column holding it"
    )
    g.add_argument(
        "--fit-metric",
        action="append",
        metavar="METRICS",
        help="metrics the weights match, comma-separated (default all)",
    )
    g.add_argument("--min-donors", metavar="N", help="drop cells with fewer donors (default 10)")


def estimates_options(p: argparse.ArgumentParser) -> None:
    """The options of ``estimates``: the table, its columns and the metrics' names, the
    design, and the covariance or an assumed correlation (one is required)."""
    p.add_argument("table", help="estimates table (CSV or Parquet; a file, directory or glob)")
    g = p.add_argument_group("columns and metrics")
    g.add_argument("--experiment", help="experiment id column")
    g.add_argument("--metric", help="column with the metric's name")
    g.add_argument("--estimate", help="column with the effect estimate (treatment - control)")
    g.add_argument("--se", help="column with the estimate's standard error")
    g.add_argument("--outcome", help="the long-term outcome's name in the metric column")
    g.add_argument("--proxies", action="append", help="proxies' names, comma-separated")
    g.add_argument("--segments", action="append", help="segment columns, comma-separated")
    g.add_argument(
        "--direction", action="append", metavar="PROXY=lower", help="good direction of a proxy"
    )
    g.add_argument("--n-treat", help="column with the units in the treatment arm (optional)")
    g.add_argument("--n-control", help="column with the units in the control arm (optional)")
    g.add_argument(
        "--design",
        help="the cells' design ("
        + ", ".join(specdef.DESIGNS)
        + "; default external), or a column holding one per row",
    )
    cov = p.add_mutually_exclusive_group(required=True)
    cov.add_argument(
        "--covariance",
        metavar="FILE",
        help="table of the estimates' covariances (CSV or Parquet)",
    )
    cov.add_argument(
        "--correlation",
        type=float,
        metavar="R",
        help="assumed correlation of the estimates' errors, in (-1, 1), for every pair",
    )
    time_options(p)

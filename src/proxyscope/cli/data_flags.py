"""The options of the commands on data: the column roles that ``validate`` and
``summarize`` take (with the cluster and exposure columns of user-level rows and the
design of per-arm summaries), the options of ``estimates``, and ``--set``.

Each flag sets a spec key (:data:`proxyscope.cli.flags.ROLE_KEYS`,
:data:`~proxyscope.cli.flags.ESTIMATE_KEYS`), so the spec checks its value and its
errors name the flag.
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
        help="design of per-arm summary cells (" + ", ".join(specdef.DESIGNS) + "; default ab)",
    )


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

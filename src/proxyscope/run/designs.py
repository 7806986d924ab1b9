"""Cells of a source whose rows a quasi-experimental design reads (``[data.<design>]``).

A spec's ``[data] design = "did"`` (or "rdd", "ipw", "synthetic_control") on a
``kind = "users"`` source says which estimator reads its file:
:func:`design_arguments` turns the spec's roles (``[columns]``, ``[data].cluster``
and ``min_users_per_arm`` where the design takes them, the ``[data.<design>]``
table) into the design function's keyword arguments, and :func:`design_cells`
calls the function on the source's rows. ``proxyscope validate`` checks the same
arguments' columns (:mod:`proxyscope.run.check.designs`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from proxyscope.data.cells import CellEffects
from proxyscope.data.did import did
from proxyscope.data.ipw import ipw
from proxyscope.data.rdd import rdd
from proxyscope.data.synthetic_control import synthetic_control
from proxyscope.run.progress import Log, quiet
from proxyscope.spec import ColumnsSpec, DataSpec
from proxyscope.spec.parse_design import ARMLESS, CLUSTERED, PER_ARM

#: The function that reads each design's rows.
READERS: dict[str, Callable[..., CellEffects]] = {
    "did": did,
    "rdd": rdd,
    "ipw": ipw,
    "synthetic_control": synthetic_control,
}


def design_arguments(d: DataSpec, cols: ColumnsSpec) -> dict[str, Any]:
    """The keyword arguments of ``d.design``'s function (all but the rows)."""
    assert d.design in READERS
    args: dict[str, Any] = {
        "experiment": cols.experiment,
        "outcome": cols.outcome,
        "proxies": list(cols.proxies),
        "segments": list(cols.segments),
        "directions": dict(cols.directions),
    }
    if d.design not in ARMLESS:  # ipw: the arm column and its treated value
        args["treatment"] = cols.treatment
        args["treated_value"] = cols.treated_value
    if d.design in CLUSTERED and d.cluster is not None:
        args["cluster"] = d.cluster
    if d.design in PER_ARM:
        args["min_users_per_arm"] = d.min_users_per_arm
    for key, value in d.design_options.items():
        args[key] = list(value) if isinstance(value, tuple) else value
    return args


def design_cells(
    d: DataSpec, cols: ColumnsSpec, table: pd.DataFrame, *, source: str, log: Log = quiet
) -> CellEffects:
    """The cells ``d.design`` builds from ``table`` (the rows of the file ``source``)."""
    assert d.design is not None
    clustered = f", clustered by {d.cluster!r}" if d.cluster is not None else ""
    log(f"estimating the {d.design} effects of {source}{clustered}")
    effects = READERS[d.design](table, **design_arguments(d, cols))
    log(f"{d.design} read {len(table):,} rows of {source} into {effects.n_cells} cells")
    return effects

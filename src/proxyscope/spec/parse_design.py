"""Validating ``[data.<design>]``: a source whose rows a quasi-experimental design reads.

On a ``kind = "users"`` source with a ``path``, ``design = "did"`` (or "rdd",
"ipw", "synthetic_control") says that the rows are not user-randomized arms to
summarize but a panel or rows for that design's own estimator
(:func:`proxyscope.did`, :func:`proxyscope.rdd`, :func:`proxyscope.ipw`,
:func:`proxyscope.synthetic_control`). Its column roles and settings go in a
sub-table named after the design; the roles every design shares (experiment,
outcome, proxies, segments, directions) stay in ``[columns]``::

    [data]
    path = "panel.parquet"
    design = "did"
    cluster = "market_group"         # did, rdd and ipw take one

    [data.did]
    unit = "market"
    period = "week"
    first_treated = "first_week"
    control = "not_yet"

The keys of each sub-table are the design function's parameters of the same
name (:data:`DESIGN_KEYS`); a key left out takes the function's default (the
spec stores only the keys given, so the defaults live in one place). What a
spec cannot hold (ipw's ``propensity_model`` and ``outcome_model``, Python
objects) takes the function's default. ``[data].cluster`` is the design's
``cluster``, ``[data].min_users_per_arm`` rdd's and ipw's; for ipw,
``[columns].treatment`` and ``treated_value`` are its arm column and value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from proxyscope.errors import suggestion
from proxyscope.spec.constants import (
    DID_CONTROLS,
    IPW_ESTIMANDS,
    MAX_COUNT,
    MAX_SEED,
    RDD_KERNELS,
    ROW_DESIGNS,
)
from proxyscope.spec.read import Table, show_set, type_word
from proxyscope.spec.sections import DataSpec

#: The keys of each ``[data.<design>]`` table (the design function's parameters).
DESIGN_KEYS: dict[str, tuple[str, ...]] = {
    "did": (
        "unit",
        "period",
        "first_treated",
        "control",
        "pre_periods",
        "pretrend_level",
        "min_units",
    ),
    "rdd": ("running", "cutoff", "bandwidth", "kernel", "density_alpha", "density_window"),
    "ipw": ("covariates", "estimand", "trim", "n_folds", "random_state"),
    "synthetic_control": (
        "unit",
        "period",
        "treated",
        "treatment_start",
        "fit_metric",
        "min_donors",
    ),
}
#: The keys each design requires.
REQUIRED: dict[str, tuple[str, ...]] = {
    "did": ("unit", "period", "first_treated"),
    "rdd": ("running", "cutoff"),
    "ipw": ("covariates",),
    "synthetic_control": ("unit", "period", "treated", "treatment_start"),
}
#: The designs without arms: their rows have no treatment column (the design says
#: who is treated: a first treated period, a score above a cutoff, a treated unit).
ARMLESS = ("did", "rdd", "synthetic_control")
#: The designs that take ``[data].cluster`` and ``[data].min_users_per_arm``.
CLUSTERED = ("did", "rdd", "ipw")
PER_ARM = ("rdd", "ipw")


def design_options(t: Table, kind: str, design: str | None) -> dict[str, Any]:
    """The ``[data.<design>]`` table of ``t`` (a source), checked; ``{}`` when the source
    is not read by a design. A sub-table of another design is an error."""
    reads = kind == "users" and design in ROW_DESIGNS
    for name in ROW_DESIGNS:
        if t.has(name) and not (reads and name == design):
            raise t.error(
                name,
                f"is the table of design = {name!r}, which reads the rows of kind = 'users'; "
                f"this source has kind = {kind!r} and "
                + ("no design." if design is None else f"design = {design!r}."),
            )
        t.taken.append(name)
    if not reads:
        return {}
    assert design is not None
    sub = t.take_table(design)
    if sub is None:
        raise t.error(
            None,
            f"needs a [{t.where}.{design}] table for design = {design!r}, with at least "
            + ", ".join(REQUIRED[design])
            + f" (the design's column roles). Allowed keys: {', '.join(DESIGN_KEYS[design])}.",
        )
    # Unknown keys first: a misspelled required key is named as such, not as missing.
    sub.taken.extend(DESIGN_KEYS[design])
    sub.done()
    out = _READERS[design](sub)
    return {k: v for k, v in out.items() if v is not None}


def design_columns(design: str | None, options: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(role, column) of every column a design's options name (a number is no column)."""
    if design not in DESIGN_KEYS:
        return []
    out: list[tuple[str, str]] = []
    for key in ("unit", "period", "first_treated", "running", "cutoff", "treated"):
        v = options.get(key)
        if isinstance(v, str):
            out.append((key, v))
    if isinstance(options.get("treatment_start"), str):
        out.append(("treatment_start", options["treatment_start"]))
    out += [("covariates", c) for c in options.get("covariates", ())]
    return out


def _did(t: Table) -> dict[str, Any]:
    return {
        "unit": t.take_str("unit"),
        "period": t.take_str("period"),
        "first_treated": t.take_str("first_treated"),
        "control": t.take_str("control", None, allowed=DID_CONTROLS),
        "pre_periods": t.take_int("pre_periods", None, minimum=1, maximum=MAX_COUNT),
        "pretrend_level": t.take_float(
            "pretrend_level", None, low=0.0, high=1.0, open_low=True, open_high=True
        ),
        "min_units": t.take_int("min_units", None, minimum=2, maximum=MAX_COUNT),
    }


def _rdd(t: Table) -> dict[str, Any]:
    return {
        "running": t.take_str("running"),
        "cutoff": _number_or_column(
            t, "cutoff", "the threshold (a number) or a column holding each row's threshold"
        ),
        "bandwidth": t.take_float("bandwidth", None, low=0.0, open_low=True),
        "kernel": t.take_str("kernel", None, allowed=RDD_KERNELS),
        "density_alpha": t.take_float(
            "density_alpha", None, low=0.0, high=1.0, open_low=True, open_high=True
        ),
        "density_window": t.take_float("density_window", None, low=0.0, open_low=True),
    }


def _ipw(t: Table) -> dict[str, Any]:
    return {
        "covariates": t.take_str_list("covariates", allow_empty=False),
        "estimand": t.take_str("estimand", None, allowed=IPW_ESTIMANDS),
        "trim": t.take_float("trim", None, low=0.0, high=0.5, open_high=True),
        "n_folds": t.take_int("n_folds", None, minimum=2, maximum=MAX_COUNT),
        "random_state": t.take_int(
            "random_state", None, minimum=0, maximum=MAX_SEED, why="a 32-bit seed"
        ),
    }


def _synthetic_control(t: Table) -> dict[str, Any]:
    fit = t.raw.get("fit_metric")
    return {
        "unit": t.take_str("unit"),
        "period": t.take_str("period"),
        "treated": t.take_str("treated"),
        "treatment_start": _number_or_column(
            t, "treatment_start", "the first treated period (a number) or a column holding it"
        ),
        # One name, or several: the metrics whose pre-launch paths the weights match.
        "fit_metric": (
            t.take_str("fit_metric")
            if isinstance(fit, str)
            else t.take_str_list("fit_metric", None, allow_empty=False)
        ),
        "min_donors": t.take_int("min_donors", None, minimum=2, maximum=MAX_COUNT),
    }


def _number_or_column(t: Table, key: str, what: str) -> Any:
    v = t.raw.get(key)
    if isinstance(v, str):
        return t.take_str(key)
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        if key not in t.raw:
            raise t.error(key, f"is required: {what}.")
        raise t.error(key, f"must be {what}; got {v!r} ({type_word(v)}).")
    t.taken.append(key)
    return v


_READERS: dict[str, Callable[[Table], dict[str, Any]]] = {
    "did": _did,
    "rdd": _rdd,
    "ipw": _ipw,
    "synthetic_control": _synthetic_control,
}


def check_source_keys(t: Table, kind: str, design: str | None) -> None:
    """The ``[data]`` keys that do not apply to a source read by ``design``."""
    if kind != "users" or design not in ROW_DESIGNS:
        return
    if t.has("simulate"):
        raise t.error(
            "simulate",
            f"gives simulated users to summarize; design = {design!r} reads a file: set "
            "path = '...' (a CSV or Parquet file, directory or glob).",
        )
    if not t.has("path"):
        raise t.error("path", f"is required for design = {design!r} (a CSV or Parquet file).")
    not_here = {
        "engine": "the design reads the file with pandas",
        "dropna": "the design refuses missing values (drop them first)",
        "exposure": "spillover is estimated for cluster-randomized tests only",
        "exposure_values": "spillover is estimated for cluster-randomized tests only",
    }
    if design not in CLUSTERED:
        not_here["cluster"] = f"design = {design!r} takes no cluster column"
    if design not in PER_ARM:
        not_here["min_users_per_arm"] = (
            "use [data.did].min_units"
            if design == "did"
            else "use [data.synthetic_control].min_donors"
        )
    for key, why in not_here.items():
        if t.has(key):
            raise t.error(key, f"does not apply to design = {design!r}: {why}.")


def check_design_name(t: Table, kind: str, design: str | None) -> None:
    """``design`` on a users source: one of the designs that read rows."""
    if kind != "users" or design is None or design in ROW_DESIGNS:
        return
    raise t.error(
        "design",
        f"must be one of {show_set(ROW_DESIGNS)} for kind = 'users' (the design that reads "
        "the rows; without it the rows are summarized as 'ab', or 'cluster' with cluster = "
        f"'...'); got {design!r}.{suggestion(design, ROW_DESIGNS)}",
    )


def check_design_roles(
    t: Table, data: DataSpec, seen: dict[str, str], metrics: list[str], where: str
) -> None:
    """The columns of ``[<where>.<design>]`` against the other roles, and
    synthetic_control's ``fit_metric`` against the metrics."""
    design = data.design
    table = Table({}, f"{where}.{design}", t.origin)
    for role, c in design_columns(design, data.design_options):
        if c in seen:
            raise table.error(
                role,
                f"names column {c!r}, which is already given as {seen[c]!r}; each column "
                "plays one role.",
            )
        seen[c] = role
    fit = data.design_options.get("fit_metric")
    for name in [fit] if isinstance(fit, str) else (fit or ()):
        if name not in metrics:
            raise table.error(
                "fit_metric",
                f"names {name!r}, which is neither the outcome nor a proxy {metrics}."
                + suggestion(name, metrics),
            )

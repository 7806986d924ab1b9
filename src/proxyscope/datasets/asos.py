"""The ASOS Digital Experiments dataset as :class:`CellEffects`: early read → final read.

Data: Liu, C. H. B., Cardoso, A., Couturier, P., McCoy, E. J. (2021). "Datasets
for Online Controlled Experiments". NeurIPS Datasets and Benchmarks. OSF, DOI
10.17605/OSF.IO/64JSB. Licence CC BY 4.0: cite the paper and the DOI wherever
the data or results from it are shown.

The file has one row per (experiment_id, variant_id, metric_id, snapshot):
cumulative per-arm counts, means and variances ``time_since_start`` days into
the test. Every row compares one treatment variant (``*_t``) with the
experiment's control (``*_c``); each (experiment_id, variant_id) pair is one
treatment arm, 99 in all.

Framing
-------
- experiment: ``"<experiment_id>:<variant_id>"`` — one per treatment arm.
- proxy (``"early"``): the effect read at the first snapshot on or after
  ``early_day`` (default day 3; snapshot times are compared with a 1e-9
  tolerance because the file stores e.g. 3.0000000000000004).
- outcome (``"final"``): the effect at the last snapshot, of the same metric
  or of ``outcome_metric``.
- segments: several proxy metrics are pooled as a segment column
  ``metric_id`` (the name ``metric`` is the CellEffects metric dimension);
  one metric gives no segment column.

Snapshots without variances (778 rows: 5 arms, metrics 2–4) and snapshots
with no users in an arm are removed first and counted in the metadata and a
DataWarning. An arm with no remaining snapshot on or after ``early_day``, or
whose early snapshot is not before its final one (no later read to predict),
is dropped and listed in ``CellEffects.dropped`` with the reason.

Units. ``scale="relative"`` (default) divides each read by its control mean,
treated as known: the effect is (mean_t − mean_c) / mean_c with variance
(var_t/n_t + var_c/n_c) / mean_c². This ignores the control mean's own
sampling error in the denominator (a term of order the squared relative
effect, negligible at the percent-level effects of these tests). Reads with a
control mean of zero are dropped. ``scale="absolute"`` keeps the metric's
units.

Noise correlation. The early and final snapshots are cumulative, so the early
users are a subset of the final ones and the two reads' sampling noise is
positively correlated; the file carries no cross-read covariance. The
user-level correlation ``correlation`` (default 0.5) is an explicit
assumption: with the nested-sample rule of
:func:`~proxyscope.data.arms.from_arm_summaries` it gives
corr(early mean, final mean) = ρ · sqrt(n_early / n_final). It is recorded in
``CellEffects.assumed_correlation`` and shown in the repr; rerun with other
values (e.g. 0.2 and 0.8) as a sensitivity check.
"""

from __future__ import annotations

import math
import numbers
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from proxyscope.data.arms import ArmAdapter, from_arm_summaries
from proxyscope.data.cells import CellEffects
from proxyscope.data.sources import csv_header, read_error
from proxyscope.data.validate import check_min_users
from proxyscope.datasets.asos_checks import NUMBER_COLUMNS, check_raw, check_scaled, variant_list
from proxyscope.errors import (
    ColumnError,
    DataError,
    DataWarning,
    ParameterError,
    check_one_of,
    suggestion,
)
from proxyscope.options import ASOS_SCALES

OWNER = "load_asos"
ENV = "PROXYSCOPE_ASOS_PATH"
COLUMNS = ("experiment_id", *NUMBER_COLUMNS)
SEGMENT = "metric_id"
EARLY, FINAL = "early", "final"
#: Tolerance on snapshot times (the file stores 3.0000000000000004 for day 3).
TIME_TOL = 1e-9


def read_asos(path: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Read the ASOS CSV (``path``, else the ``PROXYSCOPE_ASOS_PATH`` variable).

    Returns the rows as they are, with ``experiment_id`` as text.
    """
    if path is None:
        env = os.environ.get(ENV)
        if not env:
            raise ParameterError(
                f"The 'path' parameter of {OWNER} is required when the environment "
                f"variable {ENV} is not set."
            )
        path = env
    p = Path(path)
    if not p.is_file():
        raise ParameterError(f"The 'path' parameter of {OWNER}: no file at {str(p)!r}.")
    where = str(p)
    if p.stat().st_size == 0:
        raise DataError(f"The ASOS file {where!r} is empty (0 bytes); expected a CSV file.")
    csv_header(where, ",")  # a DataError naming the file if it is not UTF-8 CSV text
    try:
        raw = pd.read_csv(p, dtype={"experiment_id": str})
    except (ValueError, OSError) as exc:  # parser and decoding errors of this file
        raise read_error(where, "the ASOS CSV file", exc) from None
    for c in COLUMNS:
        if c not in raw.columns:
            raise ColumnError(
                f"Column {c!r} of the ASOS file is not in {where!r}."
                f"{suggestion(c, [str(x) for x in raw.columns])}"
            )
    check_raw(raw, where)
    return raw


def _metric_list(value: Any, available: Sequence[int], *, param: str) -> list[int]:
    vals = list(value) if isinstance(value, list | tuple) else [value]
    for v in vals:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or int(v) not in available:
            raise ParameterError(
                f"The {param!r} parameter of {OWNER} must be one of the metric ids "
                f"{list(available)}. Got {v!r} instead."
            )
    if not vals:
        raise ParameterError(f"The {param!r} parameter of {OWNER} names no metric.")
    return [int(v) for v in dict.fromkeys(vals)]


def asos_arm_table(
    raw: pd.DataFrame,
    *,
    metric: int | Sequence[int] | None = None,
    outcome_metric: int | None = None,
    early_day: float = 3.0,
    scale: str = "relative",
    variants: Sequence[int] | None = None,
) -> tuple[pd.DataFrame, list[dict[str, Any]], dict[str, Any]]:
    """The per-arm table that :func:`load_asos` summarizes, and what was dropped.

    Returns
    -------
    table : DataFrame
        One row per (experiment, [metric_id], arm) with ``n_early``,
        ``n_final``, ``mean_early``, ``mean_final``, ``var_early``,
        ``var_final`` (in the chosen scale).
    dropped : list of dict
        Cells dropped before summarizing, with the reason.
    notes : dict
        Counts of removed snapshot rows and the choices made (for metadata).
    """
    check_one_of(scale, ASOS_SCALES, param="scale", owner=OWNER)
    if (
        isinstance(early_day, bool)
        or not isinstance(early_day, numbers.Real)
        or not math.isfinite(float(early_day))
        or early_day < 0
    ):
        raise ParameterError(
            f"The 'early_day' parameter of {OWNER} must be a number of days >= 0. "
            f"Got {early_day!r} instead."
        )
    available = sorted(int(m) for m in pd.unique(raw["metric_id"]))
    proxies = available if metric is None else _metric_list(metric, available, param="metric")
    pooled = metric is None or isinstance(metric, list | tuple)
    if outcome_metric is not None:
        outcome_metric = _metric_list(outcome_metric, available, param="outcome_metric")[0]

    d = raw[list(COLUMNS)].copy()
    if variants is not None:
        keep_v = variant_list(variants)
        d = d[d["variant_id"].isin(keep_v)]
        if d.empty:
            raise ParameterError(
                f"The 'variants' parameter of {OWNER} keeps no row; variant ids in the "
                f"file: {sorted(pd.unique(raw['variant_id']).tolist())}. Got {list(variants)!r}."
            )
    d["experiment"] = d["experiment_id"].astype(str) + ":" + d["variant_id"].astype(str)

    no_var = d["variance_c"].isna() | d["variance_t"].isna()
    arms_no_var = sorted(
        {
            f"{e} metric {m}"
            for e, m in zip(d["experiment"][no_var], d["metric_id"][no_var], strict=True)
        }
    )
    empty = ~no_var & ((d["count_c"] <= 0) | (d["count_t"] <= 0))
    notes: dict[str, Any] = {
        "rows": len(d),
        "rows_without_variance": int(no_var.sum()),
        "arm_metrics_with_rows_without_variance": arms_no_var,
        "rows_with_an_empty_arm": int(empty.sum()),
    }
    d = d[~no_var & ~empty].sort_values(["experiment", "metric_id", "time_since_start"])

    by = dict(list(d.groupby(["experiment", "metric_id"], sort=True)))
    experiments = sorted(raw_experiments(raw, variants))
    rows: list[dict[str, Any]] = []
    dropped: list[dict[str, Any]] = []
    reads: list[dict[str, Any]] = []
    for e in experiments:
        for m in proxies:
            out_m = m if outcome_metric is None else outcome_metric
            cell: dict[str, Any] = {"experiment": e}
            if pooled:
                cell[SEGMENT] = str(m)
            g_early, g_final = by.get((e, m)), by.get((e, out_m))

            def drop(reason: str, n: tuple[float, float] = (0, 0), cell: Any = cell) -> None:
                dropped.append(
                    {**cell, "n_treat": int(n[0]), "n_control": int(n[1]), "reason": reason}
                )

            if g_early is None or g_final is None:
                drop("no snapshot with variances")
                continue
            final = g_final.iloc[-1]
            n_fin = (final["count_t"], final["count_c"])
            later = g_early[g_early["time_since_start"] >= early_day - TIME_TOL]
            if later.empty:
                drop(f"no snapshot on or after day {early_day:g}", n_fin)
                continue
            early = later.iloc[0]
            if early["time_since_start"] >= final["time_since_start"] - TIME_TOL:
                drop("early read is the final read", n_fin)
                continue
            c_e, c_f = float(early["mean_c"]), float(final["mean_c"])
            if scale == "relative" and (c_e == 0 or c_f == 0):
                drop("control mean is zero (relative scale undefined)", n_fin)
                continue
            s_e, s_f = (c_e, c_f) if scale == "relative" else (1.0, 1.0)
            reads.append(
                {
                    **cell,
                    "early_day": float(early["time_since_start"]),
                    "final_day": float(final["time_since_start"]),
                }
            )
            for arm, sfx in (("treatment", "t"), ("control", "c")):
                rows.append(
                    {
                        **cell,
                        "arm": arm,
                        "n_early": float(early[f"count_{sfx}"]),
                        "n_final": float(final[f"count_{sfx}"]),
                        "mean_early": float(early[f"mean_{sfx}"]) / s_e,
                        "mean_final": float(final[f"mean_{sfx}"]) / s_f,
                        "var_early": float(early[f"variance_{sfx}"]) / s_e**2,
                        "var_final": float(final[f"variance_{sfx}"]) / s_f**2,
                    }
                )
    notes.update(
        {
            "early_day": float(early_day),
            "scale": scale,
            "proxy_metrics": proxies,
            "outcome_metric": outcome_metric,
            "reads": reads,
        }
    )
    cols = ["experiment", *([SEGMENT] if pooled else []), "arm"]
    cols += ["n_early", "n_final", "mean_early", "mean_final", "var_early", "var_final"]
    table = pd.DataFrame(rows, columns=cols)
    check_scaled(table, scale)
    return table, dropped, notes


def raw_experiments(raw: pd.DataFrame, variants: Sequence[int] | None) -> np.ndarray:
    """Every "<experiment_id>:<variant_id>" in the file (after the variant filter)."""
    d = raw if variants is None else raw[raw["variant_id"].isin(variant_list(variants))]
    return np.asarray(
        (d["experiment_id"].astype(str) + ":" + d["variant_id"].astype(str)).unique(),
        dtype=object,
    )


def load_asos(
    path: str | os.PathLike[str] | None = None,
    *,
    metric: int | Sequence[int] | None = None,
    outcome_metric: int | None = None,
    early_day: float = 3.0,
    scale: str = "relative",
    correlation: float = 0.5,
    variants: Sequence[int] | None = None,
    min_users_per_arm: int = 10,
) -> CellEffects:
    """CellEffects from the ASOS file: early read as proxy, final read as outcome.

    Parameters
    ----------
    path : str or PathLike, optional
        The CSV; default: the ``PROXYSCOPE_ASOS_PATH`` environment variable.
    metric : int or list of int, optional
        Proxy metric id(s). None: all four, pooled as segment column
        ``metric_id``; a list: those, pooled; an int: that one, no segments.
    outcome_metric : int, optional
        The outcome is the final read of this metric; default the same metric
        as the proxy.
    early_day : float, default 3.0
        The early read is the first snapshot on or after this day.
    scale : {"relative", "absolute"}, default "relative"
        Relative: each read divided by its control mean (treated as known).
    correlation : float, default 0.5
        Assumed user-level correlation between a user's early and final
        values (the file has no cross-read covariance); recorded and shown.
    variants : list of int, optional
        Keep only these variant ids (default: every treatment arm).
    min_users_per_arm : int, default 10
        Cells with fewer users in an arm, at either read, are dropped.

    Returns
    -------
    CellEffects
        Outcome ``"final"``, proxy ``"early"``, one experiment per
        (experiment_id, variant_id); engine ``"asos"``; the metadata key
        ``"asos"`` holds the choices and what was removed.
    """
    min_users = check_min_users(min_users_per_arm, owner=OWNER)
    raw = read_asos(path)
    table, dropped, notes = asos_arm_table(
        raw,
        metric=metric,
        outcome_metric=outcome_metric,
        early_day=early_day,
        scale=scale,
        variants=variants,
    )
    removed = notes["rows_without_variance"] + notes["rows_with_an_empty_arm"]
    if removed:
        warnings.warn(
            f"{OWNER} removed {notes['rows_without_variance']} snapshot rows without "
            f"variances ({len(notes['arm_metrics_with_rows_without_variance'])} arm-metrics) "
            f"and {notes['rows_with_an_empty_arm']} snapshot rows with an empty arm "
            f"(of {notes['rows']}); see meta['asos'].",
            DataWarning,
            stacklevel=2,
        )
    segments = [SEGMENT] if SEGMENT in table.columns else []
    return from_arm_summaries(
        table,
        experiment="experiment",
        arm="arm",
        treated_value="treatment",
        outcome=FINAL,
        proxies=[EARLY],
        count={FINAL: "n_final", EARLY: "n_early"},
        mean={FINAL: "mean_final", EARLY: "mean_early"},
        variance={FINAL: "var_final", EARLY: "var_early"},
        segments=segments,
        correlation={(FINAL, EARLY): correlation},
        min_users_per_arm=min_users,
        _adapter=ArmAdapter(
            engine="asos",
            owner=OWNER,
            extra={
                "asos": notes,
                # The segment column is the metric: every cell of an experiment holds
                # the same users (the report counts them once).
                "segments_share_users": bool(segments),
                "citation": (
                    "Liu, Cardoso, Couturier, McCoy (2021). Datasets for Online Controlled "
                    "Experiments. NeurIPS Datasets and Benchmarks. DOI 10.17605/OSF.IO/64JSB "
                    "(CC BY 4.0)."
                ),
            },
            pre_dropped=dropped,
            stacklevel=4,  # one more than a direct call: load_asos's own frame
        ),
    )

"""CellEffects from per-arm summary statistics (count / mean / variance per metric).

For teams that only keep aggregates, like the public ASOS dataset. The input
is a long table with one row per (experiment, segment values..., arm).

Sampling covariance. Per cell and arm, the variance of metric a's mean is
``var_a / n_a``. The covariance of the means of metrics a and b uses the
user-level covariance ``c_ab`` — a column when given, otherwise an explicit
assumed correlation ρ: ``c_ab = ρ · σ_a · σ_b`` — and assumes nested samples
when the counts differ (the users measured on the smaller count are a subset
of those measured on the larger, as with cumulative snapshots):

    Cov(mean_a, mean_b) = c_ab · n_overlap / (n_a · n_b) = c_ab / max(n_a, n_b)

which is the familiar ``c_ab / n`` when the counts are equal. The effect's
covariance is the sum over the two arms. Every assumed correlation is stored
in the result's metadata (``assumed_correlation``, keys ``"a|b"``) and shown
in its repr.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from proxyscope import dims
from proxyscope.data.arm_checks import (
    Pair,
    check_columns,
    check_counts,
    check_psd,
    correlations,
    pairs_map,
    per_metric,
)
from proxyscope.data.assemble import finish, one_arm_error, too_few_experiments_error
from proxyscope.data.cells import CellEffects
from proxyscope.data.time_input import add_time, check_args, check_role, frame_starts
from proxyscope.data.validate import (
    check_flag,
    check_min_users,
    check_roles,
    plain,
    resolve_treated,
    same_value,
    scalar,
)
from proxyscope.errors import DataError, DataTypeError, DataWarning

OWNER = "CellEffects.from_arm_summaries"


@dataclass(frozen=True)
class ArmAdapter:
    """How one of proxyscope's own loaders calls :func:`from_arm_summaries`.

    The loader (e.g. :func:`~proxyscope.datasets.asos.load_asos`) names the
    engine and the owner of the messages, adds its metadata and the cells it
    dropped before summarizing. The defaults are those of a direct call.

    Parameters
    ----------
    engine : str, default "arm_summaries"
        Recorded as the result's ``meta["engine"]``.
    owner : str, default "CellEffects.from_arm_summaries"
        The call that errors and warnings name.
    extra : mapping, optional
        Metadata added to the result's ``meta``.
    pre_dropped : sequence of mapping, default ()
        Cells the loader dropped before summarizing (with their ``reason``),
        reported in ``CellEffects.dropped`` with the others.
    stacklevel : int, default 3
        Stack level of the warning about dropped cells, counted from the
        function that issues it: 3 points at the caller of
        :func:`from_arm_summaries`; a loader adds one for its own frame.
    """

    engine: str = "arm_summaries"
    owner: str = OWNER
    extra: Mapping[str, Any] | None = None
    pre_dropped: Sequence[Mapping[str, Any]] = ()
    stacklevel: int = 3


def from_arm_summaries(
    table: pd.DataFrame,
    *,
    experiment: str,
    arm: str,
    treated_value: Any,
    outcome: str,
    proxies: Sequence[str] | str,
    count: str | Mapping[str, str],
    mean: Mapping[str, str],
    variance: Mapping[str, str],
    segments: Sequence[str] | str = (),
    covariance: Mapping[Pair, str] | None = None,
    correlation: float | Mapping[Pair, float] = 0.0,
    directions: Mapping[str, str] | None = None,
    min_users_per_arm: int = 10,
    dropna: bool = False,
    design: str = "ab",
    time: str | None = None,
    period: Any = None,
    _adapter: ArmAdapter | None = None,
) -> CellEffects:
    """Build :class:`CellEffects` from per-arm count / mean / variance columns.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per (experiment, segment values..., arm). Not modified.
    experiment : str
        Column with the experiment id.
    arm : str
        Column with the arm; exactly two distinct values.
    treated_value : object
        The ``arm`` value of the treated arm (None: infer it as
        :func:`~proxyscope.data.summarize.summarize` does).
    outcome : str
        Name of the outcome metric (a key of ``mean``/``variance``).
    proxies : list of str
        Names of the proxy metrics.
    count : str or dict
        Users per arm: one column for every metric, or ``{metric: column}``
        when metrics were measured on different numbers of users. Whole
        numbers from 0 to 2**53.
    mean, variance : dict
        ``{metric: column}`` with each metric's mean and user-level variance
        (ddof=1) per arm.
    segments : list of str, default ()
        Segment columns.
    covariance : dict, optional
        ``{(metric_a, metric_b): column}`` with user-level covariances per arm.
    correlation : float or dict, default 0.0
        Assumed user-level correlation for every pair without a covariance
        column: one value for all, or ``{(metric_a, metric_b): rho}`` (pairs
        not listed assume 0). Recorded in the result and its repr.
    directions : dict, optional
        Good direction per proxy, "higher" (default) or "lower".
    min_users_per_arm : int, default 10
        Cells where any metric has fewer users in either arm are dropped and
        reported. At least 2.
    dropna : bool, default False
        Drop rows with a missing value in a used column (reported) instead of
        raising.
    design : str, default "ab"
        How the arms were compared (:mod:`proxyscope.data.designs`): "ab" for a
        user-randomized test; e.g. "cluster" when the arms' variances are
        already cluster-robust, or "external" for a quasi-experiment's arms,
        whose estimates the model then allows to be biased.
    time : str, optional
        Column with each experiment's start, equal on all its rows (missing is an
        error, even with ``dropna``); parsed and stored as in
        :func:`~proxyscope.data.summarize.summarize` (timezone-aware values in UTC).
    period : str or sequence, optional
        With ``time``: how starts are grouped into periods, as in
        :meth:`CellEffects.with_time` (default "quarter" for dates, "number" for
        numbers).
    _adapter : ArmAdapter, optional
        For proxyscope's own loaders only (not part of the public API): the
        engine name, extra metadata and earlier drops of an adapter such as
        :func:`~proxyscope.datasets.asos.load_asos`. Default: a direct call.

    Returns
    -------
    CellEffects
        As from :func:`~proxyscope.data.summarize.summarize`;
        ``n_treat``/``n_control`` are each arm's largest count over metrics.

    Notes
    -----
    With counts that differ between metrics the samples are assumed nested,
    so ``Cov(mean_a, mean_b) = c_ab / max(n_a, n_b)`` (see the module
    docstring); with equal counts this is the usual ``c_ab / n``.
    """
    adapter = _adapter if _adapter is not None else ArmAdapter()
    owner, stacklevel = adapter.owner, adapter.stacklevel
    if not isinstance(table, pd.DataFrame):
        raise DataTypeError(
            f"The 'table' parameter of {owner} must be a pandas DataFrame; "
            f"got {type(table).__name__}."
        )
    roles = check_roles(
        experiment=experiment,
        treatment=arm,
        outcome=outcome,
        proxies=proxies,
        segments=segments,
        directions=directions,
        owner=owner,
        treatment_param="arm",
    )
    min_users = check_min_users(min_users_per_arm, owner=owner)
    drop = check_flag(dropna, param="dropna", owner=owner)
    time_column, grouping = check_args(time, period, owner=owner)
    metrics = list(roles.metrics)
    counts = per_metric(count, metrics, param="count", owner=owner, allow_single=True)
    means = per_metric(mean, metrics, param="mean", owner=owner)
    variances = per_metric(variance, metrics, param="variance", owner=owner)
    covs = pairs_map(covariance, metrics, param="covariance", owner=owner, kind="column")
    rho = correlations(correlation, metrics, covs, owner=owner)

    key_cols = [roles.experiment, *roles.segments, roles.treatment]
    stat_cols = list(
        dict.fromkeys([*counts.values(), *means.values(), *variances.values(), *covs.values()])
    )
    frame = check_columns(table, roles, key_cols, stat_cols, owner=owner)
    taken = dict.fromkeys(stat_cols, "count/mean/variance/covariance")
    check_role(time_column, {**taken, **{c: roles.role_of(c) for c in key_cols}})
    starts = None
    if time_column is not None:
        starts = frame_starts(table, experiment=roles.experiment, time=time_column, owner=owner)
    extra_meta: dict[str, Any] = dict(adapter.extra or {})

    # Missing and impossible values.
    missing = {c: int(np.sum(frame[c].isna().to_numpy())) for c in key_cols + stat_cols}
    for c in stat_cols:
        x = frame[c].to_numpy(dtype=float, na_value=np.nan)
        n_inf = int(np.isinf(x).sum())
        if n_inf:
            raise DataError(f"Column {c!r} has {n_inf} infinite values; expected finite numbers.")
    if any(missing.values()):
        shown = ", ".join(f"{c!r}: {n}" for c, n in missing.items() if n)
        if not drop:
            raise DataError(
                f"Missing values (NaN/NULL) in the arm table: {shown} rows; expected none. "
                "Pass dropna=True to drop those rows (they are reported), or fill them first."
            )
        keep = ~frame.isna().any(axis=1).to_numpy()
        extra_meta["dropna"] = {
            "rows_dropped": int((~keep).sum()),
            "missing_by_column": {c: n for c, n in missing.items() if n},
        }
        warnings.warn(
            f"{owner}(dropna=True) dropped {int((~keep).sum())} of {len(frame)} rows with "
            f"missing values ({shown}).",
            DataWarning,
            stacklevel=stacklevel - 1,
        )
        frame = frame[keep]
    if len(frame) == 0:
        raise DataError(f"The table passed to {owner} is empty: it has no rows.")
    for param, cols in (("count", counts), ("variance", variances)):
        for c in dict.fromkeys(cols.values()):
            neg = int((frame[c].to_numpy(dtype=float) < 0).sum())
            if neg:
                raise DataError(
                    f"Column {c!r} (given in {param!r}) has {neg} negative values; "
                    "expected numbers >= 0."
                )
    check_counts(frame, list(counts.values()))

    values = list(pd.unique(frame[roles.treatment].to_numpy()))
    treated, control = resolve_treated(
        values, treated_value, column=roles.treatment, param="arm", owner=owner
    )
    is_t = np.asarray([same_value(scalar(v), treated) for v in frame[roles.treatment]], dtype=bool)

    cell_cols = [roles.experiment, *roles.segments]
    dup = frame.duplicated(subset=[*cell_cols, roles.treatment], keep=False)
    if dup.any():
        first = frame[dup].iloc[0]
        where = ", ".join(f"{c}={scalar(first[c])!r}" for c in [*cell_cols, roles.treatment])
        raise DataError(
            f"The table passed to {owner} has {int(dup.sum())} rows that repeat a "
            f"(experiment, segments, arm) combination, e.g. {where}; expected one row each."
        )
    arms_by_exp: dict[Any, set[bool]] = {}
    for e, t in zip(frame[roles.experiment], is_t, strict=True):
        arms_by_exp.setdefault(scalar(e), set()).add(bool(t))
    one_arm = [e for e, a in arms_by_exp.items() if len(a) < 2]
    if one_arm:
        raise one_arm_error(
            sorted(one_arm, key=str), experiment_column=roles.experiment, arm_column=roles.treatment
        )
    if len(arms_by_exp) < 2:
        raise too_few_experiments_error(list(arms_by_exp), experiment_column=roles.experiment)

    tuples = pd.Series(list(zip(*[frame[c] for c in cell_cols], strict=True)), dtype=object).map(
        lambda t: tuple(scalar(v) for v in t)
    )
    cell, uniq = pd.factorize(tuples)
    n_cells = len(uniq)
    m = len(metrics)

    def column(name: str, mask: np.ndarray) -> np.ndarray:
        out = np.full(n_cells, np.nan)
        rows = np.flatnonzero(mask)
        out[cell[rows]] = frame[name].to_numpy(dtype=float)[rows]
        return out

    def gather(cols: Mapping[str, str], mask: np.ndarray) -> np.ndarray:
        return np.stack([column(cols[met], mask) for met in metrics], axis=1)

    pair_list = [(a, b) for a in range(m) for b in range(a + 1, m)]
    noise = np.zeros((n_cells, m, m))
    n_arm: dict[str, np.ndarray] = {}
    low: dict[str, np.ndarray] = {}
    mu: dict[str, np.ndarray] = {}
    for name, mask in (("t", is_t), ("c", ~is_t)):
        n = gather(counts, mask)
        mu[name] = gather(means, mask)
        var = gather(variances, mask)
        present = ~np.isnan(n[:, 0])
        n_arm[name] = np.where(present, np.round(np.nanmax(np.where(present[:, None], n, 0), 1)), 0)
        low[name] = np.where(present, np.nanmin(np.where(present[:, None], n, 0), 1), 0)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            for j in range(m):
                noise[:, j, j] += var[:, j] / n[:, j]
            for a, b in pair_list:
                key = (metrics[a], metrics[b])
                if key in covs:
                    c_ab = column(covs[key], mask)
                else:
                    c_ab = rho[key] * np.sqrt(var[:, a] * var[:, b])
                v = c_ab / np.maximum(n[:, a], n[:, b])
                noise[:, a, b] += v
                noise[:, b, a] += v

    reasons: list[str | None] = []
    for i in range(n_cells):
        if n_arm["t"][i] == 0 or n_arm["c"][i] == 0:
            reasons.append("one arm missing")
        elif min(low["t"][i], low["c"][i]) < min_users:
            reasons.append(f"below min_users_per_arm={min_users}")
        else:
            reasons.append(None)
    keep_cells = np.asarray([r is None for r in reasons])
    check_psd(noise, keep_cells, list(uniq), rho, metrics=metrics, owner=owner)

    keys = pd.DataFrame(
        {name: [t[i] for t in uniq] for i, name in enumerate([dims.EXPERIMENT, *roles.segments])}
    )
    assumed = {f"{a}|{b}": float(r) for (a, b), r in rho.items()} or None
    extra_meta.update(
        {
            "columns": {"experiment": roles.experiment, "arm": roles.treatment},
            "treated_value": plain(treated),
            "control_value": plain(control),
            "covariance_rule": "nested samples: Cov(mean_a, mean_b) = c_ab / max(n_a, n_b)",
        }
    )
    built = finish(
        keys,
        n_arm["t"].astype(np.int64),
        n_arm["c"].astype(np.int64),
        mu["t"] - mu["c"],
        noise,
        reasons,
        outcome=roles.outcome,
        proxies=roles.proxies,
        segments=roles.segments,
        directions=roles.directions,
        engine=adapter.engine,
        min_users_per_arm=min_users,
        owner=owner,
        experiment_column=roles.experiment,
        extra=extra_meta,
        assumed_correlation=assumed,
        pre_dropped=adapter.pre_dropped,
        stacklevel=stacklevel,
        design=design,
    )
    return add_time(built, starts, grouping, column=time_column, owner=owner)


# The classmethod-style constructor users know, defined once (here, with its
# code): ``CellEffects.from_arm_summaries(table, ...)`` is this function.
CellEffects.from_arm_summaries = staticmethod(from_arm_summaries)

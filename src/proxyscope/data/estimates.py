"""CellEffects from effect estimates made elsewhere (``design = "external"`` and others).

For estimates that another tool, a platform's scorecard or a quasi-experiment
produced: a long table with one row per (experiment, segment values...,
metric) holding the estimate and its standard error, each in the metric's
natural direction (a "lower is better" proxy is negated here, as everywhere).

The model needs each cell's JOINT sampling covariance (DESIGN.md §2): the
outcome's and the proxies' estimates of one experiment share their units, so
their errors are correlated, and regressing one noisy estimate on another
with that correlation ignored is biased however many experiments there are.
So a covariance is required, in one of two forms:

- ``covariance=``: the estimated covariances, as a long table of pairs or one
  matrix per cell (see :func:`from_estimates`);
- ``correlation=``: an ASSUMED correlation of the estimates' errors, one
  number for every pair of metrics or one per pair. It is recorded in the
  result's metadata (``assumed_correlation``), shown in its repr and in every
  report, and a spec can refit under a grid of values
  (``[analysis.sensitivity]``) to show what rests on it.

Unlike :meth:`CellEffects.from_arm_summaries`, whose ``correlation`` is the
correlation of two metrics' values over users, the correlation here is that
of the two estimates' errors, the number the covariance is built from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from proxyscope import dims
from proxyscope.data import designs
from proxyscope.data.assemble import finish, too_few_experiments_error
from proxyscope.data.cells import CellEffects
from proxyscope.data.estimate_checks import (
    OWNER,
    Key,
    cell_key,
    check_correlation,
    check_numbers,
    check_rows,
    claim,
    describe,
    metric_names,
    nonnumeric,
    per_cell_count,
    per_cell_design,
    units_of,
)
from proxyscope.data.estimate_covariance import (
    assumed_covariance,
    check_positive_definite,
    covariance_from_mapping,
    covariance_from_table,
)
from proxyscope.data.tables import check_values, select_frame
from proxyscope.data.time_input import add_time, check_args, check_role, frame_starts
from proxyscope.data.validate import (
    RESERVED,
    SHOW,
    check_directions,
    column_name,
    name_list,
    scalar,
)
from proxyscope.errors import ColumnError, DataError, DataTypeError, ParameterError, suggestion

ENGINE = "estimates"


def from_estimates(
    table: pd.DataFrame,
    *,
    experiment: str,
    metric: str,
    estimate: str,
    se: str,
    outcome: str,
    proxies: Sequence[str] | str,
    segments: Sequence[str] | str = (),
    directions: Mapping[str, str] | None = None,
    covariance: pd.DataFrame | Mapping[Any, Any] | None = None,
    correlation: float | Mapping[Any, float] | None = None,
    design: str = designs.EXTERNAL,
    n_treat: str | None = None,
    n_control: str | None = None,
    units: Mapping[str, str] | None = None,
    time: str | None = None,
    period: Any = None,
) -> CellEffects:
    """Build :class:`CellEffects` from estimates and standard errors made elsewhere.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per (experiment, segment values..., metric). Not modified.
    experiment : str
        Column with the experiment id.
    metric : str
        Column with the metric's name; its values are ``outcome`` and ``proxies``
        (a table with other metrics is refused: select the rows first).
    estimate, se : str
        Columns with the effect estimate (treatment − control, in the metric's
        natural direction) and its standard error (> 0).
    outcome : str
        The long-term outcome's name in the ``metric`` column.
    proxies : list of str
        The proxies' names in the ``metric`` column.
    segments : list of str, default ()
        Segment columns; one cell per (experiment, segment values).
    directions : dict, optional
        Good direction per proxy, "higher" (default) or "lower".
    covariance : DataFrame or dict, optional
        The estimates' sampling covariances, either

        - a long DataFrame with the experiment and segment columns (named as in
          ``table``) and ``metric_a``, ``metric_b``, ``covariance``: every pair
          of different metrics of every cell, in natural directions; a row with
          ``metric_a == metric_b`` may give the variance, which must equal
          ``se**2`` (within a relative 1e-6); or
        - a dict ``{cell: matrix}``, the cell being the experiment id (no
          segment columns) or a tuple ``(experiment, segment values...)``, the
          matrix an (M, M) array in the order outcome, proxies, or a DataFrame
          indexed (rows and columns) by the metric names; its diagonal must
          equal ``se**2``.
    correlation : float or dict, optional
        Instead of ``covariance``: the ASSUMED correlation of the estimates'
        errors, in (-1, 1), in natural directions: one number for every pair, or
        ``{"a|b": rho}`` (or ``{(a, b): rho}``) giving every pair. Recorded as
        ``assumed_correlation`` and flagged in the repr and the reports.
    design : str, default "external"
        The design of every cell (one of :data:`proxyscope.data.designs.DESIGNS`),
        or a column holding one design per row (all rows of a cell must agree).
        A design name is taken as a name even if a column has that name.
    n_treat, n_control : str, optional
        Columns with the units per arm (equal on every row of a cell). Without
        them both counts are 0: the cells then carry no weight in the
        historical mix, which weights cells by their users.
    units : dict, optional
        ``{metric: unit}`` for every metric (e.g. "minutes"), kept in the metadata;
        :meth:`CellEffects.concat` requires equal units.
    time : str, optional
        Column with each experiment's start, equal on all its rows; parsed and
        stored as in :func:`~proxyscope.data.summarize.summarize` (timezone-aware
        values in UTC).
    period : str or sequence, optional
        With ``time``: how starts are grouped into periods, as in
        :meth:`CellEffects.with_time` (default "quarter" for dates, "number" for
        numbers).

    Returns
    -------
    CellEffects
        Cells ordered by experiment and segment values, each with its design;
        ``meta["engine"]`` is "estimates".

    Raises
    ------
    ParameterError
        Neither or both of ``covariance`` and ``correlation``; a correlation
        outside (-1, 1) or a pair left out; a direction for a metric that is not
        a proxy or other than "higher"/"lower"; an unknown design.
    ColumnError
        A column is missing, or given two roles.
    DataError
        A standard error that is not a positive finite number; an estimate that
        is not finite; a metric that is neither the outcome nor a proxy; a
        repeated (cell, metric) row; a cell that lacks a metric; a covariance
        that lacks a pair, disagrees with ``se**2`` on its diagonal, or is not
        positive definite (the cell and its smallest eigenvalue are named);
        fewer than two experiments; with ``time``, an experiment with several
        starts or none, or a value that is not a start.

    Examples
    --------
    >>> import pandas as pd
    >>> import proxyscope as ps
    >>> table = pd.DataFrame({
    ...     "exp": ["a", "a", "b", "b"], "metric": ["ltv", "d7", "ltv", "d7"],
    ...     "est": [0.4, 1.1, -0.2, 0.3], "se": [0.2, 0.3, 0.25, 0.3]})
    >>> cells = ps.from_estimates(table, experiment="exp", metric="metric", estimate="est",
    ...                           se="se", outcome="ltv", proxies=["d7"], correlation=0.3)
    >>> cells.design.tolist(), cells.assumed_correlation
    (['external', 'external'], {'ltv|d7': 0.3})
    """
    owner = OWNER
    if not isinstance(table, pd.DataFrame):
        raise DataTypeError(
            f"The 'table' parameter of {owner} must be a pandas DataFrame; "
            f"got {type(table).__name__}."
        )
    metrics = metric_names(outcome, proxies, owner=owner)
    prx = list(metrics[1:])
    dirs = check_directions(directions, prx, metrics[0], owner=owner)
    if (covariance is None) == (correlation is None):
        raise ParameterError(
            f"{owner} needs exactly one of 'covariance' (the estimates' sampling covariances) "
            "and 'correlation' (an assumed correlation of their errors)"
            + (
                "; got both."
                if covariance is not None
                else ": without one, the estimates would silently be taken as independent, "
                "which biases the slopes of the outcome on the proxies. Pass correlation=... "
                "(and check it with a sensitivity analysis) if you have no covariances."
            )
        )
    rho = None if correlation is None else check_correlation(correlation, metrics, owner=owner)
    if covariance is not None and not isinstance(covariance, pd.DataFrame | Mapping):
        raise DataTypeError(
            f"The 'covariance' parameter of {owner} must be a DataFrame of pairs or a dict "
            f"{{cell: matrix}}; got {type(covariance).__name__}."
        )
    unit_map = units_of(units, metrics, owner=owner)
    time_column, grouping = check_args(time, period, owner=owner)

    # Columns and their roles.
    roles: dict[str, str] = {}
    for param, value in (
        ("experiment", experiment),
        ("metric", metric),
        ("estimate", estimate),
        ("se", se),
        ("n_treat", n_treat),
        ("n_control", n_control),
    ):
        if value is None and param.startswith("n_"):
            continue
        claim(roles, column_name(value, param=param, owner=owner), param)
    segs = name_list(segments, param="segments", owner=owner, allow_empty=True)
    for s in segs:
        claim(roles, s, "segments")
        if s in RESERVED:
            raise ColumnError(
                f"Segment column {s!r} has a name reserved by CellEffects; rename it first."
            )
    if not isinstance(design, str) or not design:
        raise DataTypeError(
            f"The 'design' parameter of {owner} must be a design name or a column name; "
            f"got {design!r}."
        )
    design_column = None if design in designs.DESIGNS else design
    if design_column is not None:
        if design_column not in {str(c) for c in table.columns}:
            raise ParameterError(
                f"The 'design' parameter of {owner} is {design!r}, which is neither a design "
                f"({', '.join(designs.DESIGNS)}) nor a column of the table."
                + suggestion(design, [*designs.DESIGNS, *map(str, table.columns)])
            )
        claim(roles, design_column, "design")
    check_role(time_column, roles)

    available = [str(c) for c in table.columns]
    for c in roles:
        if c not in available:
            shown = ", ".join(repr(a) for a in available[:SHOW])
            raise ColumnError(
                f"Column {c!r} (given as {roles[c]!r}) is not in the table passed to {owner}."
                f"{suggestion(c, available)} Available columns: {shown}."
            )
    frame = select_frame(table, list(roles), where=f"the table passed to {owner}",
                         role_of=roles.__getitem__, case="none")  # fmt: skip
    if len(frame) == 0:
        raise DataError(f"The table passed to {owner} is empty: it has no rows.")
    numeric = [c for c in roles if roles[c] in ("estimate", "se", "n_treat", "n_control")]
    keys = [c for c in roles if c not in numeric]
    for c in numeric:
        dt = frame[c].dtype
        if not pd.api.types.is_numeric_dtype(dt) or pd.api.types.is_bool_dtype(dt):
            raise DataTypeError(
                f"Column {c!r} (given as {roles[c]!r}) must be numeric; found type {dt}."
            )
    check_values(frame, keys=keys, metrics=numeric, role_of=roles.__getitem__,
                 nonnumeric=nonnumeric)  # fmt: skip
    check_rows(frame, list(roles), roles.__getitem__)
    starts = None
    if time_column is not None:
        starts = frame_starts(table, experiment=experiment, time=time_column, owner=owner)

    est = frame[estimate].to_numpy(dtype=float)
    err = frame[se].to_numpy(dtype=float)
    check_numbers(frame, estimate, est, positive=False)
    check_numbers(frame, se, err, positive=True)
    names = np.asarray([str(scalar(v)) for v in frame[metric]], dtype=object)
    unknown = sorted(set(names) - set(metrics))
    if unknown:
        raise DataError(
            f"Column {metric!r} (given as 'metric') holds {unknown[0]!r}"
            + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else "")
            + f", which is neither the outcome nor a proxy; metrics: {list(metrics)}."
            + suggestion(unknown[0], metrics)
            + " Select the rows of these metrics first."
        )

    key_cols = [experiment, *segs]
    tuples = [cell_key(t) for t in frame[key_cols].itertuples(index=False, name=None)]
    cells: dict[Key, int] = {}
    for t in tuples:
        cells.setdefault(t, len(cells))
    cell = np.asarray([cells[t] for t in tuples], dtype=np.int64)
    col = np.asarray([metrics.index(n) for n in names], dtype=np.int64)
    slot = cell * len(metrics) + col
    if len(np.unique(slot)) < len(slot):
        _, first, counts = np.unique(slot, return_index=True, return_counts=True)
        r = int(first[np.flatnonzero(counts > 1)[0]])
        raise DataError(
            f"The table passed to {owner} has {int((counts - 1).sum())} rows that repeat a "
            f"(experiment, segments, metric), e.g. {metrics[col[r]]!r} in cell "
            f"{describe(tuples[r])}; expected one row each."
        )
    n_cells, m = len(cells), len(metrics)
    effect = np.full((n_cells, m), np.nan)
    sd = np.full((n_cells, m), np.nan)
    effect[cell, col] = est
    sd[cell, col] = err
    lacking = np.isnan(effect)
    if lacking.any():
        first = int(np.flatnonzero(lacking.any(axis=1))[0])
        absent = [metrics[j] for j in np.flatnonzero(lacking[first])]
        raise DataError(
            f"Cell {describe(list(cells)[first])} of the table passed to {owner} lacks the "
            f"metric(s) {absent} ({int(lacking.any(axis=1).sum())} of {n_cells} cells lack "
            f"some); every cell needs an estimate of the outcome and every proxy."
        )
    experiments = list(dict.fromkeys(k[0] for k in cells))
    if len(experiments) < 2:
        raise too_few_experiments_error(experiments, experiment_column=experiment)

    per_cell = per_cell_design(frame, design, design_column, cell, n_cells, list(cells))
    n_arm = {
        name: per_cell_count(frame, c, cell, n_cells, list(cells), param=name)
        for name, c in (("n_treat", n_treat), ("n_control", n_control))
    }

    key_list = list(cells)
    if rho is not None:
        noise = assumed_covariance(rho, metrics, sd)
    elif isinstance(covariance, pd.DataFrame):
        noise = covariance_from_table(
            covariance, key_columns=key_cols, cells=cells, metrics=metrics, se=sd, owner=owner
        )
    else:
        assert isinstance(covariance, Mapping)
        noise = covariance_from_mapping(
            covariance, n_keys=len(key_cols), cells=cells, metrics=metrics, se=sd, owner=owner
        )
    check_positive_definite(noise, key_list, owner=owner, assumed=rho is not None)

    keys_frame = pd.DataFrame(
        {name: [k[i] for k in key_list] for i, name in enumerate([dims.EXPERIMENT, *segs])}
    )
    counts_given = n_treat is not None or n_control is not None
    extra = {
        "columns": {
            "experiment": experiment,
            "metric": metric,
            "estimate": estimate,
            "se": se,
            **({"design": design_column} if design_column else {}),
        },
        "covariance_source": "assumed correlation"
        if rho is not None
        else ("table of pairs" if isinstance(covariance, pd.DataFrame) else "matrix per cell"),
        "counts": "given" if counts_given else "not given: n_treat = n_control = 0",
    }
    assumed = None if rho is None else {f"{a}|{b}": r for (a, b), r in rho.items()}
    built = finish(
        keys_frame,
        n_arm["n_treat"],
        n_arm["n_control"],
        effect,
        noise,
        [None] * n_cells,
        outcome=metrics[0],
        proxies=prx,
        segments=list(segs),
        directions=dirs,
        engine=ENGINE,
        min_users_per_arm=0,
        owner=owner,
        experiment_column=experiment,
        extra=extra,
        assumed_correlation=assumed,
        design=per_cell,
        units=unit_map,
    )
    return add_time(built, starts, grouping, column=time_column, owner=owner)

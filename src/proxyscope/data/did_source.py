"""The panel of :func:`proxyscope.data.did.did` on each engine: checked, then read one
experiment at a time.

Every engine runs the same checks, in the same order, with the same messages
(:mod:`proxyscope.data.did_checks` builds them): the used columns (in
:func:`~proxyscope.data.design_source.open_rows`), an empty panel, the types
of the metric, period and first-treated columns, missing and infinite values,
then a first-treated period, segment or cluster that changes within a unit
(the first five such units named, sorted by experiment and unit). The pandas
engine computes them on the DataFrame; DuckDB and Spark as aggregations whose
results are a few rows (a scan for the counts, a group by (experiment, unit)
with each fixed column's min and max).

Then :meth:`~FramePanel.experiments` hands over the experiments sorted by id,
each as a small DataFrame of its rows (DuckDB and Spark: fetched by batches of
experiments of at most :data:`~proxyscope.data.design_source.BATCH_ROWS` rows,
sorted by unit and period), which
:func:`~proxyscope.data.did_panel.experiment_block` checks and lays out. So at
most one batch of rows is in memory at a time, never the whole panel.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from proxyscope.data.design_source import batches, open_rows, split
from proxyscope.data.did_checks import (
    SHOW_UNITS,
    DidRoles,
    bad_values_error,
    check_names,
    empty_error,
    fixed_error,
    period_type_error,
)
from proxyscope.data.validate import nonnumeric_error

Chunks = Iterator[tuple[Any, pd.DataFrame]]


def open_panel(
    engine: str,
    data: Any,
    roles: DidRoles,
    *,
    memory_limit: str | None = None,
    threads: int | None = None,
    spark: Any = None,
) -> FramePanel | QueryPanel:
    """The caller's panel on ``engine`` (see :func:`~proxyscope.data.design_source.open_rows`)."""
    got = open_rows(
        engine,
        data,
        used=roles.columns,
        keys=[roles.experiment, roles.unit, *roles.segments, *_cluster(roles)],
        numbers=[*roles.metrics, roles.period, roles.first_treated],
        role_of=roles.role_of,
        check_names=lambda names: check_names(names, roles),
        owner="did",
        memory_limit=memory_limit,
        threads=threads,
        spark=spark,
    )
    if isinstance(got, pd.DataFrame):
        return FramePanel(got, roles)
    return QueryPanel(got, roles)


def _cluster(roles: DidRoles) -> tuple[str, ...]:
    return () if roles.cluster is None else (roles.cluster,)


class FramePanel:
    """The panel as a pandas DataFrame (engine "pandas")."""

    engine = "pandas"

    def __init__(self, frame: pd.DataFrame, roles: DidRoles) -> None:
        self._frame = frame
        self._roles = roles

    def check(self) -> None:
        """The checks of the module docstring, on the DataFrame."""
        panel, roles = self._frame, self._roles
        if not len(panel):
            raise empty_error()
        for col in roles.metrics:
            if not _is_number(panel[col], allow_bool=True):
                raise nonnumeric_error(
                    col, roles.role_of(col), str(panel[col].dtype), _first(panel[col])
                )
        for col in (roles.period, roles.first_treated):
            if not _is_number(panel[col], allow_bool=False):
                raise period_type_error(col, roles, str(panel[col].dtype), _first(panel[col]))
        missing = {c: int(panel[c].isna().sum()) for c in roles.columns if c != roles.first_treated}
        infinite = {
            c: int(np.isinf(panel[c].to_numpy(dtype=float, na_value=np.nan)).sum())
            for c in (*roles.metrics, roles.period)
        }
        treated_at = panel[roles.first_treated].to_numpy(dtype=float, na_value=np.nan)
        err = bad_values_error(missing, infinite, int((treated_at == -np.inf).sum()), roles)
        if err is not None:
            raise err
        unit = panel.groupby([roles.experiment, roles.unit], sort=True, observed=True).ngroup()
        unit_code = unit.to_numpy()
        _, first = np.unique(unit_code, return_index=True)
        keys = panel[[roles.experiment, roles.unit]].iloc[first]
        for col in roles.fixed:
            counts = panel[col].groupby(unit_code).nunique(dropna=False).to_numpy()
            changing = np.flatnonzero(counts > 1)
            if len(changing):
                shown = [tuple(keys.iloc[i]) for i in changing[:SHOW_UNITS]]
                raise fixed_error(col, roles, len(changing), shown)

    def experiments(self) -> Chunks:
        """(experiment id, its rows) per experiment, sorted by id."""
        code, labels = pd.factorize(self._frame[self._roles.experiment], sort=True)
        order = np.argsort(code, kind="stable")
        bounds = np.searchsorted(code[order], np.arange(len(labels) + 1))
        used = self._frame[[c for c in self._roles.columns if c != self._roles.experiment]]
        for e, label in enumerate(labels):
            yield label, used.take(order[bounds[e] : bounds[e + 1]])

    def close(self) -> None:
        pass


def _is_number(col: pd.Series, *, allow_bool: bool) -> bool:
    """Metrics may be boolean; a period or first-treated column must hold numbers (an
    object column of numbers and None passes: None is missing)."""
    is_bool = pd.api.types.is_bool_dtype(col.dtype)
    if is_bool:
        return allow_bool
    if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_complex_dtype(col.dtype):
        return True
    return col.dtype == object and all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) for v in col.dropna()
    )


def _first(col: pd.Series) -> Any:
    values = col.dropna()
    return values.iloc[0] if len(values) else None


class QueryPanel:
    """The panel in DuckDB or Spark (a :class:`~proxyscope.data.engines.duckdb_rows.DuckDBRows`
    or :class:`~proxyscope.data.engines.spark_rows.SparkRows`)."""

    def __init__(self, source: Any, roles: DidRoles) -> None:
        self._source = source
        self._roles = roles
        self.engine = source.engine

    def check(self) -> None:
        """The checks of the module docstring, as queries."""
        src, roles = self._source, self._roles
        if not src.n_rows():
            raise empty_error()
        for col in roles.metrics:
            kind, found = src.kind(col)
            if kind == "other":
                raise nonnumeric_error(col, roles.role_of(col), found, src.nonnumeric_example(col))
        for col in (roles.period, roles.first_treated):
            kind, found = src.kind(col)
            if kind != "numeric":
                example = next((v for v in src.distinct(col, 2) if v is not None), None)
                raise period_type_error(col, roles, found, example)
        bad = src.bad_values(roles.columns)
        missing = {c: bad[c][0] for c in roles.columns if c != roles.first_treated}
        infinite = {c: bad[c][1] + bad[c][2] for c in (*roles.metrics, roles.period)}
        err = bad_values_error(missing, infinite, bad[roles.first_treated][2], roles)
        if err is not None:
            raise err
        unit = [roles.experiment, roles.unit]
        fixed = list(roles.fixed)
        counts = src.changing(unit, fixed, as_number=roles.first_treated)
        for i, col in enumerate(fixed):
            if counts[i]:
                shown = src.changing_examples(
                    unit, fixed, i, SHOW_UNITS, as_number=roles.first_treated
                )
                raise fixed_error(col, roles, counts[i], shown)

    def experiments(self) -> Chunks:
        """(experiment id, its rows sorted by unit and period) per experiment, sorted by id;
        rows fetched by batches of experiments."""
        roles = self._roles
        groups = self._source.groups(roles.experiment)
        used = [c for c in roles.columns if c != roles.experiment]
        for first, last in batches([n for _, n in groups]):
            table = self._source.fetch(
                roles.experiment, first, last, used, order=[roles.unit, roles.period]
            )
            for e, rows in split(table):
                yield groups[e][0], rows.to_pandas()
            del table

    def close(self) -> None:
        self._source.close()

"""The rows of :func:`proxyscope.data.ipw.ipw` on each engine: checked, then read one
experiment at a time.

Both engines run the same checks, in the same order, with the same messages
(:mod:`proxyscope.data.ipw_checks` builds them): the used columns (in
:func:`~proxyscope.data.design_source.open_rows`), an empty table, metric and
covariate types, missing and infinite values, the treatment column's values,
experiments with one arm, fewer than two experiments. They also find what every
experiment's rows are read with (:class:`~proxyscope.data.ipw_checks.Plan`):
the experiments and each segment column's levels in order of first appearance
in the data, as the pandas path always took them.

Then each experiment's rows come as :class:`~proxyscope.data.ipw_checks.Rows`,
in the data's own row order (the cross-fitting folds follow it), experiments in
order of first appearance. DuckDB numbers the rows as it reads them (files in
the order given, rows in file order: the order pandas reads them in) and
fetches batches of experiments of at most
:data:`~proxyscope.data.design_source.BATCH_ROWS` rows, so only one batch is
in memory at a time. Spark is not offered: its heavy part here is fitting the
nuisance models, not aggregation, and Spark does not keep the rows' order.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from proxyscope.data.design_source import batches, open_rows, split
from proxyscope.data.engines.duckdb_rows import ROW
from proxyscope.data.ipw_checks import (
    Plan,
    Rows,
    bad_values_error,
    check_names,
    empty_error,
    experiment_rows,
    make_plan,
    role_names,
)
from proxyscope.data.validate import Roles, nonnumeric_error

#: The engines ipw runs on, and why not Spark (see the module docstring).
ENGINES = ("pandas", "duckdb")
NO_SPARK = (
    " ipw fits its nuisance models on each experiment's rows in their stored order (the "
    "folds follow it), which Spark does not keep; write the Spark DataFrame to Parquet "
    "and pass the path with engine='duckdb'."
)


def open_table(
    engine: str,
    data: Any,
    roles: Roles,
    covariates: Sequence[str],
    *,
    owner: str,
    memory_limit: str | None = None,
    threads: int | None = None,
) -> FrameRows | QueryRows:
    """The caller's rows on ``engine`` (see :func:`~proxyscope.data.design_source.open_rows`)."""
    role = role_names(roles, covariates)
    got = open_rows(
        engine,
        data,
        used=list(role),
        keys=[*roles.keys, roles.treatment, *roles.labels],
        numbers=[*roles.metrics, *covariates],
        role_of=role.__getitem__,
        check_names=lambda names: check_names(names, role),
        owner=owner,
        memory_limit=memory_limit,
        threads=threads,
    )
    if isinstance(got, pd.DataFrame):
        return FrameRows(got, roles, covariates, owner)
    return QueryRows(got, roles, covariates, owner)


class FrameRows:
    """The rows as a pandas DataFrame (engine "pandas")."""

    engine = "pandas"

    def __init__(
        self, frame: pd.DataFrame, roles: Roles, covariates: Sequence[str], owner: str
    ) -> None:
        self._frame, self._roles, self._covariates, self._owner = frame, roles, covariates, owner
        self._role = role_names(roles, covariates)

    def plan(self, treated_value: Any) -> Plan:
        """The checks of the module docstring, on the DataFrame; the plan."""
        frame, roles, role = self._frame, self._roles, self._role
        if not len(frame):
            raise empty_error(self._owner)
        numeric = [*roles.metrics, *self._covariates]
        for c in numeric:
            col = frame[c]
            if not (
                pd.api.types.is_bool_dtype(col)
                or (pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_complex_dtype(col))
            ):
                example = next((v for v in col if not isinstance(v, numbers.Real)), None)
                raise nonnumeric_error(c, role[c], str(col.dtype), example)
        values = {c: frame[c].to_numpy(dtype=float, na_value=np.nan) for c in numeric}
        missing = {c: int(frame[c].isna().sum()) for c in role if c not in values}
        missing |= {c: int(np.isnan(v).sum()) for c, v in values.items()}
        infinite = {c: int(np.isinf(v).sum()) for c, v in values.items()}
        err = bad_values_error(missing, infinite, role, self._owner)
        if err is not None:
            raise err
        exp_code, experiments = pd.factorize(frame[roles.experiment])
        arm_code, arms = pd.factorize(frame[roles.treatment])
        pair = exp_code * len(arms) + arm_code
        n = np.bincount(pair, minlength=len(experiments) * len(arms))
        arm_rows = [
            (experiments[i // len(arms)], arms[i % len(arms)], int(k)) for i, k in enumerate(n)
        ]
        levels = {s: list(pd.factorize(frame[s])[1]) for s in roles.segments}
        return make_plan(
            list(arms), arm_rows, list(experiments), levels, roles, treated_value, owner=self._owner
        )

    def experiments(self, plan: Plan) -> Iterator[Rows]:
        """Each experiment's rows, in order of first appearance."""
        code = np.asarray(pd.factorize(self._frame[self._roles.experiment])[0])
        order = np.argsort(code, kind="stable")
        bounds = np.searchsorted(code[order], np.arange(len(plan.experiments) + 1))
        for e, label in enumerate(plan.experiments):
            rows = order[bounds[e] : bounds[e + 1]]
            chunk = self._frame.take(rows)
            yield experiment_rows(chunk, rows, label, plan, self._roles, self._covariates)

    def close(self) -> None:
        pass


class QueryRows:
    """The rows in DuckDB (a :class:`~proxyscope.data.engines.duckdb_rows.DuckDBRows`)."""

    def __init__(self, source: Any, roles: Roles, covariates: Sequence[str], owner: str) -> None:
        self._source, self._roles, self._covariates, self._owner = source, roles, covariates, owner
        self._role = role_names(roles, covariates)
        self.engine = source.engine

    def plan(self, treated_value: Any) -> Plan:
        """The checks of the module docstring, as queries; the plan."""
        src, roles, role = self._source, self._roles, self._role
        if not src.n_rows():
            raise empty_error(self._owner)
        numeric = [*roles.metrics, *self._covariates]
        for c in numeric:
            kind, found = src.kind(c)
            if kind == "other":
                raise nonnumeric_error(c, role[c], found, src.nonnumeric_example(c))
        bad = src.bad_values(list(role))
        order = [c for c in role if c not in numeric] + numeric
        missing = {c: bad[c][0] for c in order}
        infinite = {c: bad[c][1] + bad[c][2] for c in numeric}
        err = bad_values_error(missing, infinite, role, self._owner)
        if err is not None:
            raise err
        t = roles.treatment
        arms = [r[0] for r in src.first_seen([t], limit=6)]
        arm_rows: list[tuple[Any, Any, int]] = []
        experiments: list[Any] = []
        if len(arms) == 2:  # else make_plan refuses the treatment column first
            pairs = src.first_seen([roles.experiment, t])
            arm_rows = [(e, a, int(n)) for e, a, n, _ in pairs]
            experiments = list(dict.fromkeys(e for e, _, _ in arm_rows))
        levels = {s: [r[0] for r in src.first_seen([s])] for s in roles.segments}
        return make_plan(
            arms, arm_rows, experiments, levels, roles, treated_value, owner=self._owner
        )

    def experiments(self, plan: Plan) -> Iterator[Rows]:
        """Each experiment's rows in the data's order, experiments in order of first
        appearance; rows fetched by batches of experiments."""
        roles = self._roles
        groups = self._source.groups(roles.experiment, first_seen=True)
        used = [c for c in self._role if c != roles.experiment]
        for first, last in batches([n for _, n in groups]):
            table = self._source.fetch(roles.experiment, first, last, used, numbered=True)
            for e, rows in split(table):
                position = rows.column(ROW).to_numpy() - 1
                chunk = rows.drop_columns([ROW]).to_pandas()
                label = plan.experiments[e]
                yield experiment_rows(chunk, position, label, plan, roles, self._covariates)
            del table

    def close(self) -> None:
        self._source.close()

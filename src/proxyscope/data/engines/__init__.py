"""Summarize engines: one per backend, one contract.

Each engine wraps the caller's data as a :class:`Source` and answers a few
small queries: the schema, a few distinct values of a column, reference
values, counts of missing and infinite values, and the per-(cell, arm)
aggregate. Only those small results ever reach Python; the rows stay in the
engine. :mod:`proxyscope.data.summarize` drives the queries and turns the
aggregate into :class:`~proxyscope.data.cells.CellEffects`.

The aggregate has one row per (experiment, segment values..., arm) and the
columns named by :func:`key_col`, :data:`ARM`, :data:`N`, :func:`count_col`,
:func:`mean_col` and :func:`cov_col`. Means and covariances are of the metric
minus a per-metric reference value (see :func:`proxyscope.data.summarize.summarize`).

With ``cluster=`` (a cluster-randomized experiment), the engine answers
:meth:`Source.cluster_aggregate` instead: one row per (cell, arm, cluster) and,
with an exposure column, per exposure value, holding the count and the mean of
each shifted metric (never user rows). :mod:`proxyscope.data.clustered` turns
those rows into the clustered covariance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from proxyscope.data.validate import is_missing

ARM = "t"
N = "n"
#: Label columns of a cluster aggregate besides the keys and the arm.
CLUSTER = "g"
EXPOSURE = "e"


def key_col(i: int) -> str:
    """Aggregate column of the i-th key (0: experiment, then the segments)."""
    return f"k{i}"


def count_col(i: int) -> str:
    """Non-missing values of metric i."""
    return f"c{i}"


def mean_col(i: int) -> str:
    """Mean of metric i minus its reference value."""
    return f"m{i}"


def cov_col(i: int, j: int) -> str:
    """Sample covariance (ddof=1) of metrics i and j; i == j is the variance."""
    a, b = min(i, j), max(i, j)
    return f"v{a}_{b}"


def pairs(m: int) -> list[tuple[int, int]]:
    """Upper-triangle index pairs, diagonal included."""
    return [(i, j) for i in range(m) for j in range(i, m)]


class Source(Protocol):
    """The queries summarize needs from an engine."""

    engine: str

    def describe(self) -> str:
        """What the data is, for metadata ("pandas.DataFrame", a file path, ...)."""
        ...

    def columns(self) -> list[str]:
        """Column names, in order."""
        ...

    def kind(self, column: str) -> tuple[str, str]:
        """("numeric" | "bool" | "other", the engine's type name)."""
        ...

    def nonnumeric_example(self, column: str) -> Any:
        """One value of ``column`` that is not a number, or None."""
        ...

    def distinct(self, column: str, limit: int) -> list[Any]:
        """Up to ``limit`` distinct values of ``column``, missing ones included."""
        ...

    def first_finite(self, columns: Sequence[str]) -> dict[str, float | None]:
        """The first finite value of each column in row order (None if none)."""
        ...

    def values_per_key(self, key: str, column: str, limit: int) -> list[tuple[Any, Any]]:
        """Distinct (``key``, ``column``) value pairs, at most ``limit`` per key value,
        missing values included (and, in the SQL engines, first). Timestamps with a
        time zone come back in UTC (``time=``: :mod:`proxyscope.data.time_input`)."""
        ...

    def bad_counts(self, columns: Sequence[str]) -> dict[str, tuple[int, int]]:
        """Per column: (missing, i.e. NULL or NaN; infinite)."""
        ...

    def aggregate(
        self,
        keys: Sequence[str],
        treatment: str,
        metrics: Sequence[str],
        refs: Sequence[float],
        drop_missing: bool,
    ) -> pd.DataFrame:
        """One row per (keys..., treatment value) with count, means and covariances.

        ``drop_missing`` drops rows where any metric is NULL or NaN before
        aggregating. Rows with missing keys are kept, in their own groups.
        """
        ...

    def cluster_aggregate(
        self,
        keys: Sequence[str],
        treatment: str,
        cluster: str,
        metrics: Sequence[str],
        refs: Sequence[float],
        drop_missing: bool,
        exposure: str | None = None,
    ) -> ClusterAggregate:
        """One row per (keys..., treatment value, cluster[, exposure]): count and means.

        Means are of each metric minus its reference value; ``drop_missing`` as
        in :meth:`aggregate`. Rows with a missing key, arm, cluster or exposure
        are kept, in their own groups.
        """
        ...

    def close(self) -> None:
        """Release what the source opened (not the caller's objects)."""
        ...


@dataclass(frozen=True)
class Factor:
    """A label column of an aggregate, factorized: row i holds ``values[codes[i]]``.

    ``values`` are Python scalars as the engine returns them (a missing one is
    None or NaN); only the distinct values are held, so millions of rows cost
    one integer each.
    """

    codes: np.ndarray
    values: np.ndarray

    def take(self, rows: np.ndarray) -> Factor:
        """The factor restricted to ``rows`` (a boolean mask or positions)."""
        return Factor(self.codes[rows], self.values)

    def missing(self) -> np.ndarray:
        """Per row: whether its value is missing (None, NaN, NA)."""
        bad = np.asarray([is_missing(v) for v in self.values], dtype=bool)
        return bad[self.codes] if len(bad) else np.zeros(len(self.codes), dtype=bool)


def combine(factors: Sequence[Factor]) -> tuple[np.ndarray, np.ndarray]:
    """The group of each row over several factors, numbered in order of first
    appearance, and the first row of each group."""
    combined = factors[0].codes
    for f in factors[1:]:
        combined = np.asarray(pd.factorize(combined * len(f.values) + f.codes)[0], dtype=np.int64)
    g = np.asarray(pd.factorize(combined)[0], dtype=np.int64)
    # A row starts a new group exactly when its code exceeds every code before it.
    prev_max = np.concatenate([[-1], np.maximum.accumulate(g)[:-1]]) if len(g) else g
    return g, np.flatnonzero(g > prev_max)


@dataclass(frozen=True)
class ClusterAggregate:
    """The per-(cell, arm, cluster[, exposure]) rows of :meth:`Source.cluster_aggregate`.

    ``labels`` holds a :class:`Factor` per label column, named as in an
    aggregate (:func:`key_col`, :data:`ARM`, :data:`CLUSTER`, :data:`EXPOSURE`);
    ``n`` the rows per group, ``counts[:, i]`` the non-missing values of metric
    i and ``means[:, i]`` its mean (NaN where there are none).
    """

    labels: dict[str, Factor]
    n: np.ndarray
    counts: np.ndarray
    means: np.ndarray

    def take(self, rows: np.ndarray) -> ClusterAggregate:
        """Only the given rows (a boolean mask or positions)."""
        return ClusterAggregate(
            {k: f.take(rows) for k, f in self.labels.items()},
            self.n[rows],
            self.counts[rows],
            self.means[rows],
        )

    def arms(self, n_keys: int) -> pd.DataFrame:
        """Per (keys..., arm), summed over clusters: the users, non-missing counts
        and means, as :meth:`Source.aggregate` gives them (without covariances)."""
        names = [key_col(i) for i in range(n_keys)] + [ARM]
        g, first = combine([self.labels[c] for c in names])
        size = len(first)
        out: dict[str, Any] = {c: self.labels[c].values[self.labels[c].codes[first]] for c in names}
        out[N] = np.bincount(g, weights=self.n, minlength=size).astype(np.int64)
        for i in range(self.means.shape[1]):
            c = self.counts[:, i]
            total = np.bincount(g, weights=c, minlength=size)
            sums = np.bincount(
                g, weights=np.where(c > 0, c * self.means[:, i], 0.0), minlength=size
            )
            out[count_col(i)] = total.astype(np.int64)
            out[mean_col(i)] = np.divide(sums, total, out=np.full(size, np.nan), where=total > 0)
        return pd.DataFrame(out)


def arrow_aggregate(table: Any, labels: Sequence[str], n_metrics: int) -> ClusterAggregate:
    """A :class:`ClusterAggregate` from an Arrow table with the aggregate's columns.

    Label columns are dictionary-encoded by Arrow, so their values come back
    as the same Python objects a row fetch gives (a date stays a date, an int
    stays an int next to a missing value).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    out: dict[str, Factor] = {}
    for name in labels:
        column = table.column(name).combine_chunks()
        if column.type == pa.null():
            out[name] = Factor(np.zeros(len(column), dtype=np.int64), _objects([None]))
            continue
        encoded = pc.dictionary_encode(column, null_encoding="encode")
        codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        out[name] = Factor(codes, _objects(encoded.dictionary.to_pylist()))

    def numbers(name: str) -> np.ndarray:
        col = table.column(name).combine_chunks()
        return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)

    n = numbers(N).astype(np.int64)
    counts = np.stack([numbers(count_col(i)) for i in range(n_metrics)], axis=1).astype(np.int64)
    means = np.stack([numbers(mean_col(i)) for i in range(n_metrics)], axis=1)
    return ClusterAggregate(out, n, counts, means.reshape(len(n), n_metrics))


def _objects(values: Sequence[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def cluster_labels(
    keys: Sequence[str], treatment: str, cluster: str, exposure: str | None
) -> tuple[list[str], list[str]]:
    """The columns a cluster aggregate groups by, and their names in the result."""
    labels = [*keys, treatment, cluster]
    names = [key_col(i) for i in range(len(keys))] + [ARM, CLUSTER]
    if exposure is not None:
        labels.append(exposure)
        names.append(EXPOSURE)
    return labels, names


def records_frame(names: Sequence[str], rows: Sequence[Sequence[Any]], n_keys: int) -> pd.DataFrame:
    """The aggregate as a DataFrame: keys and arm as Python objects, numbers as float.

    Key values keep their Python type (an int stays an int even next to a
    missing value), NULL statistics become NaN.
    """
    cols = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    out: dict[str, Any] = {}
    for pos, (name, values) in enumerate(zip(names, cols, strict=True)):
        if pos <= n_keys:  # the keys, then the arm
            arr = np.empty(len(values), dtype=object)
            arr[:] = list(values)
            out[name] = arr
        else:
            out[name] = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    return pd.DataFrame(out)

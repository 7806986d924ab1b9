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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd

ARM = "t"
N = "n"


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

    def close(self) -> None:
        """Release what the source opened (not the caller's objects)."""
        ...


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

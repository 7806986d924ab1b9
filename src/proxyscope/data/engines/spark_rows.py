"""Spark queries of the designs whose heavy part is aggregation (``did``).

:class:`SparkRows` adds to :class:`~proxyscope.data.engines.spark_engine.SparkSource`
the queries of :class:`~proxyscope.data.engines.duckdb_rows.DuckDBRows` that a
difference in differences needs, as Spark jobs: counts of missing and infinite
values, columns that change within a unit, the experiments sorted by value with
their row counts, and one batch of experiments' rows, sorted, collected to the
driver as an Arrow table. Only that batch leaves the cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from proxyscope.data.engines.duckdb_rows import GROUP
from proxyscope.data.engines.spark_engine import SparkSource, col


class SparkRows(SparkSource):
    """A :class:`SparkSource` that also answers the design queries (module docstring)."""

    _groups: list[Any]

    def n_rows(self) -> int:
        """The number of rows."""
        return int(self._df.count())

    def bad_values(self, columns: Sequence[str]) -> dict[str, tuple[int, int, int]]:
        """Per column: rows that are missing (NULL or NaN), +inf and -inf (one job)."""
        from pyspark.sql import functions as F

        aggs = []
        for c in columns:
            if self.kind(c)[0] == "other":
                aggs += [F.count(F.when(col(c).isNull(), 1)), F.lit(0), F.lit(0)]
                continue
            x = self._double(c)
            aggs += [
                F.count(F.when(x.isNull() | F.isnan(x), 1)),
                F.count(F.when(x == float("inf"), 1)),
                F.count(F.when(x == float("-inf"), 1)),
            ]
        row = self._df.agg(*aggs).collect()[0]
        return {
            c: (int(row[3 * i]), int(row[3 * i + 1]), int(row[3 * i + 2]))
            for i, c in enumerate(columns)
        }

    def _changes(self, keys: Sequence[str], columns: Sequence[str], as_number: str | None) -> Any:
        """Per group of ``keys`` (``k0``, ...): ``ch{i}`` whether column i changes in it."""
        from pyspark.sql import functions as F

        proj = [col(k).alias(f"k{i}") for i, k in enumerate(keys)]
        for i, c in enumerate(columns):
            v = col(c)
            if c == as_number:
                v = F.coalesce(self._double(c), F.lit(float("nan")))
            proj.append(v.alias(f"v{i}"))
        aggs = []
        for i in range(len(columns)):
            v = F.col(f"v{i}")
            aggs.append((~F.min(v).eqNullSafe(F.max(v))).alias(f"ch{i}"))
        return self._df.select(*proj).groupBy(*[f"k{i}" for i in range(len(keys))]).agg(*aggs)

    def changing(
        self, keys: Sequence[str], columns: Sequence[str], as_number: str | None = None
    ) -> list[int]:
        """Per column: the groups of ``keys`` (units) in which it changes."""
        from pyspark.sql import functions as F

        sub = self._changes(keys, columns, as_number)
        aggs = [F.count(F.when(F.col(f"ch{i}"), 1)) for i in range(len(columns))]
        return [int(v) for v in sub.agg(*aggs).collect()[0]]

    def changing_examples(
        self,
        keys: Sequence[str],
        columns: Sequence[str],
        which: int,
        limit: int,
        as_number: str | None = None,
    ) -> list[tuple[Any, ...]]:
        """The first ``limit`` groups (sorted by the keys) in which column ``which`` changes."""
        from pyspark.sql import functions as F

        names = [f"k{i}" for i in range(len(keys))]
        sub = self._changes(keys, columns, as_number).where(F.col(f"ch{int(which)}"))
        return [tuple(r) for r in sub.select(*names).orderBy(*names).limit(limit).collect()]

    def groups(self, key: str) -> list[tuple[Any, int]]:
        """The distinct values of ``key`` sorted by value, and their rows (for :meth:`fetch`)."""
        rows = self._df.groupBy(col(key).alias("v")).count().orderBy("v").collect()
        self._groups = [r[0] for r in rows]
        return [(r[0], int(r[1])) for r in rows]

    def fetch(
        self, key: str, first: int, last: int, columns: Sequence[str], *, order: Sequence[str] = ()
    ) -> Any:
        """The rows of groups ``first`` .. ``last`` of :meth:`groups`, sorted by group, then
        ``order``, as an Arrow table: :data:`GROUP` (the group's number), then ``columns``."""
        import pyarrow as pa
        import pyarrow.compute as pc

        values = self._groups[first : last + 1]
        names = list(dict.fromkeys(columns))
        df = self._df.where(col(key).isin(values))
        df = df.select(col(key).alias(GROUP), *[col(c) for c in names])
        df = df.orderBy(GROUP, *[col(c) for c in order])
        if hasattr(df, "toArrow"):  # Spark 4: columns, not Python rows
            table = df.toArrow()
        else:
            table = pa.Table.from_pandas(df.toPandas(), preserve_index=False)
        keys = table.column(GROUP).combine_chunks()
        starts = pc.not_equal(keys[1:], keys[:-1]).to_numpy(zero_copy_only=False)
        import numpy as np

        number = first + np.concatenate([[0], np.cumsum(starts)]) if len(keys) else np.zeros(0)
        return table.set_column(0, GROUP, pa.array(np.asarray(number, dtype=np.int64)))

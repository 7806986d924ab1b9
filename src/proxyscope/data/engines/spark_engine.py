"""The distributed engine: a PySpark DataFrame, or Parquet/CSV paths read by Spark.

Every check and the aggregate are Spark jobs whose results are a handful of
rows; the data is never collected to the driver. Paths are read with the
active SparkSession, or a new local one (``local[*]``) when there is none.
Aggregates are ``avg``, ``var_samp`` and ``covar_samp`` of metric values minus
a reference value, as in the DuckDB engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from proxyscope.data.engines import (
    ARM,
    ClusterAggregate,
    N,
    arrow_aggregate,
    cluster_labels,
    count_col,
    cov_col,
    key_col,
    mean_col,
    pairs,
    records_frame,
)
from proxyscope.data.sources import Files, is_pathlike, is_spark_frame, resolve_files, wrong_type

HEAD = 1000


def col(name: str) -> Any:
    """A column reference that survives dots and backticks in the name."""
    from pyspark.sql import functions as F

    return F.col("`" + name.replace("`", "``") + "`")


def session(spark: Any = None) -> Any:
    """The given session, the active one, or a new local one."""
    if spark is not None:
        return spark
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    return SparkSession.builder.master("local[*]").appName("proxyscope").getOrCreate()


class SparkSource:
    """A Spark DataFrame (the caller's, or one reading the given files)."""

    engine = "spark"

    def __init__(self, data: Any, *, spark: Any = None, owner: str = "summarize") -> None:
        accepted = "a pyspark.sql.DataFrame or Parquet/CSV path(s) or glob(s)"
        self._files: Files | None = None
        if is_spark_frame(data):
            self._df = data
        elif isinstance(data, Files) or is_pathlike(data):
            self._files = data if isinstance(data, Files) else resolve_files(data, owner=owner)
            reader = session(spark).read
            paths = list(self._files.paths)
            if self._files.format == "parquet":
                self._df = reader.parquet(*paths)
            else:
                sep = self._files.delimiter
                self._df = reader.csv(paths, header=True, inferSchema=True, sep=sep)
        elif isinstance(data, pd.DataFrame):
            raise wrong_type(
                "spark",
                data,
                accepted,
                " Use engine='duckdb' or 'pandas' for a pandas DataFrame, "
                "or convert it with spark.createDataFrame(df).",
            )
        else:
            raise wrong_type("spark", data, accepted)
        self._types = {f.name: f.dataType for f in self._df.schema.fields}

    def describe(self) -> str:
        return "pyspark.sql.DataFrame" if self._files is None else self._files.describe()

    def columns(self) -> list[str]:
        return list(self._types)

    def kind(self, column: str) -> tuple[str, str]:
        from pyspark.sql.types import BooleanType, NumericType

        t = self._types[column]
        if isinstance(t, BooleanType):
            return "bool", t.simpleString()
        if isinstance(t, NumericType):
            return "numeric", t.simpleString()
        return "other", t.simpleString()

    def nonnumeric_example(self, column: str) -> Any:
        c = col(column)
        # try_cast: under ANSI mode (Spark 4's default) a plain cast raises.
        as_double = c.try_cast("double") if hasattr(c, "try_cast") else c.cast("double")
        rows = self._df.select(c).where(c.isNotNull() & as_double.isNull()).limit(1)
        got = rows.collect()
        return got[0][0] if got else None

    def distinct(self, column: str, limit: int) -> list[Any]:
        return [r[0] for r in self._df.select(col(column)).distinct().limit(limit).collect()]

    def values_per_key(self, key: str, column: str, limit: int) -> list[tuple[Any, Any]]:
        from pyspark.sql import Window
        from pyspark.sql import functions as F
        from pyspark.sql.types import TimestampType

        v = col(column)
        kind = self._types[column]
        iso = "yyyy-MM-dd'T'HH:mm:ss.SSSSSS"
        if isinstance(kind, TimestampType):
            # An instant: its UTC wall time, as text (collect() would give local time).
            zone = self._df.sparkSession.conf.get("spark.sql.session.timeZone")
            v = F.date_format(F.to_utc_timestamp(v, zone), iso)
        elif type(kind).__name__ == "TimestampNTZType":
            v = F.date_format(v, iso)
        pairs = self._df.select(col(key).alias("k"), v.alias("v")).distinct()
        rank = F.row_number().over(Window.partitionBy("k").orderBy(F.col("v").asc_nulls_first()))
        rows = pairs.withColumn("r", rank).where(F.col("r") <= int(limit)).select("k", "v")
        return [(r[0], r[1]) for r in rows.collect()]

    def _double(self, column: str) -> Any:
        return col(column).cast("double")

    def first_finite(self, columns: Sequence[str]) -> dict[str, float | None]:
        from pyspark.sql import functions as F

        rows = self._df.select(*[self._double(c) for c in columns]).limit(HEAD).collect()
        out: dict[str, float | None] = {}
        for i, c in enumerate(columns):
            hit = next((r[i] for r in rows if _finite(r[i])), None)
            if hit is None:
                x = self._double(c)
                finite = x.isNotNull() & ~F.isnan(x) & (F.abs(x) != float("inf"))
                more = self._df.select(x).where(finite).limit(1).collect()
                hit = more[0][0] if more else None
            out[c] = None if hit is None else float(hit)
        return out

    def bad_counts(self, columns: Sequence[str]) -> dict[str, tuple[int, int]]:
        from pyspark.sql import functions as F

        aggs = []
        for c in columns:
            if self.kind(c)[0] == "other":
                aggs += [F.count(F.when(col(c).isNull(), 1)), F.lit(0)]
            else:
                x = self._double(c)
                aggs += [
                    F.count(F.when(x.isNull() | F.isnan(x), 1)),
                    F.count(F.when(F.abs(x) == float("inf"), 1)),
                ]
        row = self._df.agg(*aggs).collect()[0]
        return {c: (int(row[2 * i]), int(row[2 * i + 1])) for i, c in enumerate(columns)}

    def aggregate(
        self,
        keys: Sequence[str],
        treatment: str,
        metrics: Sequence[str],
        refs: Sequence[float],
        drop_missing: bool,
    ) -> pd.DataFrame:
        from pyspark.sql import functions as F

        labels = [*keys, treatment]
        group = [key_col(i) for i in range(len(keys))] + [ARM]
        covs = []
        for i, j in pairs(len(metrics)):
            xi, xj = F.col(f"x{i}"), F.col(f"x{j}")
            agg = F.var_samp(xi) if i == j else F.covar_samp(xi, xj)
            covs.append(agg.alias(cov_col(i, j)))
        res = self._grouped(labels, group, metrics, refs, drop_missing, covs)
        names = list(res.columns)
        return records_frame(names, [tuple(r) for r in res.collect()], len(keys))

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
        labels, names = cluster_labels(keys, treatment, cluster, exposure)
        res = self._grouped(labels, names, metrics, refs, drop_missing, [])
        if hasattr(res, "toArrow"):  # Spark 4: columns, not Python rows
            return arrow_aggregate(res.toArrow(), names, len(metrics))
        import pyarrow as pa

        rows = [tuple(r) for r in res.collect()]
        cols = list(zip(*rows, strict=True)) if rows else [() for _ in res.columns]
        table = pa.table({c: pa.array(list(v)) for c, v in zip(res.columns, cols, strict=True)})
        return arrow_aggregate(table, names, len(metrics))

    def _grouped(
        self,
        labels: Sequence[str],
        names: Sequence[str],
        metrics: Sequence[str],
        refs: Sequence[float],
        drop_missing: bool,
        extra: Sequence[Any],
    ) -> Any:
        """The frame grouped by ``labels`` (as ``names``): count, counts and means of the
        shifted metrics, then the ``extra`` aggregates."""
        from pyspark.sql import functions as F

        proj = [col(c).alias(name) for c, name in zip(labels, names, strict=True)]
        proj += [
            (self._double(m) - F.lit(float(r))).alias(f"x{i}")
            for i, (m, r) in enumerate(zip(metrics, refs, strict=True))
        ]
        df = self._df.select(*proj)
        if drop_missing:
            for i in range(len(metrics)):
                x = F.col(f"x{i}")
                df = df.where(x.isNotNull() & ~F.isnan(x))
        aggs = [F.count(F.lit(1)).alias(N)]
        aggs += [F.count(F.col(f"x{i}")).alias(count_col(i)) for i in range(len(metrics))]
        aggs += [F.avg(F.col(f"x{i}")).alias(mean_col(i)) for i in range(len(metrics))]
        return df.groupBy(*names).agg(*aggs, *extra)

    def close(self) -> None:
        pass


def _finite(v: Any) -> bool:
    return v is not None and v == v and v not in (float("inf"), float("-inf"))

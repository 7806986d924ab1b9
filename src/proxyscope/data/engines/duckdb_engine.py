"""The default engine: DuckDB over a DataFrame, Arrow table, or Parquet/CSV files.

DataFrames are registered with DuckDB, which scans them in place (no copy).
Files are scanned by DuckDB's readers, so a file larger than memory is
aggregated in a stream: the per-(cell, arm) state is a few numbers per group.
``memory_limit`` and ``threads`` go to the DuckDB connection, which is private
to one summarize call.

Aggregates are SQL ``avg``, ``var_samp`` and ``covar_samp`` over metric values
minus a reference value: never raw sums of squares.

The connection runs on one thread unless ``threads`` says otherwise. DuckDB's
parallel aggregation combines per-thread partial states in an order that
varies from run to run, so with several threads the same rows can give
effects that differ in their last bits (measured on the default world's
250,000 users: 2 or 3 different results in 4 processes); one thread gives the
same bits every time, so a fit from a user table repeats exactly.
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
from proxyscope.errors import DataError, ParameterError

HEAD = 1000
#: DuckDB threads when the caller names none: one, for results that repeat bit for bit.
DEFAULT_THREADS = 1
_VIEW = "__proxyscope_input"
#: DuckDB type names of numbers (see :func:`numeric_type`; BOOLEAN is not one).
NUMERIC_TYPES = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "UHUGEINT",
    "FLOAT",
    "REAL",
    "DOUBLE",
    "DECIMAL",
)


def numeric_type(duck_type: str) -> bool:
    """Whether a DuckDB type name (``DECIMAL(18,3)`` included) is a number type."""
    return duck_type.upper().split("(")[0] in NUMERIC_TYPES


def ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """A quoted SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


class DuckDBSource:
    """Data scanned by a private DuckDB connection."""

    engine = "duckdb"

    def __init__(
        self,
        data: Any,
        *,
        memory_limit: str | None = None,
        threads: int | None = None,
        owner: str = "summarize",
    ) -> None:
        import duckdb

        accepted = "a pandas DataFrame, a pyarrow Table, or Parquet/CSV path(s) or glob(s)"
        self._files: Files | None = None
        self._desc = "pandas.DataFrame"
        if isinstance(data, pd.DataFrame):
            frame: Any = data
        elif type(data).__module__.startswith("pyarrow") and type(data).__name__ == "Table":
            frame = data
            self._desc = "pyarrow.Table"
        elif isinstance(data, Files) or is_pathlike(data):
            frame = None
            self._files = data if isinstance(data, Files) else resolve_files(data, owner=owner)
            self._desc = self._files.describe()
        elif is_spark_frame(data):
            raise wrong_type("duckdb", data, accepted, " Use engine='spark' for a Spark DataFrame.")
        else:
            raise wrong_type("duckdb", data, accepted)

        config: dict[str, Any] = {"threads": DEFAULT_THREADS if threads is None else threads}
        if memory_limit is not None:
            config["memory_limit"] = memory_limit
        try:
            self._con = duckdb.connect(":memory:", config=config)
        except duckdb.Error as exc:
            raise ParameterError(
                f"DuckDB rejected memory_limit={memory_limit!r} / threads={threads!r}: "
                f"{str(exc).splitlines()[0]}"
            ) from None
        if frame is not None:
            # A replacement scan over the caller's object: read in place, never copied.
            self._con.register(_VIEW, frame)
            self._from = ident(_VIEW)
        else:
            assert self._files is not None
            paths = "[" + ", ".join(literal(p) for p in self._files.paths) + "]"
            if self._files.format == "parquet":
                self._from = f"read_parquet({paths})"
            else:
                delim = literal(self._files.delimiter)
                self._from = f"read_csv({paths}, header = true, delim = {delim})"
        self._types: dict[str, str] | None = None

    def _fetch(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        return self._execute(sql, params).fetchall()

    def _execute(self, sql: str, params: Any = None, *, arrow: bool = False) -> Any:
        """Run a query; DuckDB's complaints about the data become a DataError naming it.

        ``arrow``: return the result as an Arrow table (columns, not Python rows).
        """
        import duckdb

        data_errors = tuple(
            getattr(duckdb, name)
            for name in (
                "ConversionException",
                "InvalidInputException",
                "IOException",
                "TypeMismatchException",
            )
            if hasattr(duckdb, name)
        )
        try:
            if arrow:
                return self._con.sql(sql, params=params).to_arrow_table()
            return self._con.execute(sql, params)
        except data_errors as exc:
            # Its first line, and the one naming the column when there is one.
            lines = [x.strip() for x in str(exc).strip().splitlines() if x.strip()]
            shown = lines[:1] + [x for x in lines[1:] if 'column "' in x][:1]
            detail = "; ".join(shown) or type(exc).__name__
            raise DataError(f"DuckDB cannot read {self._desc}: {detail}") from None

    # -- schema ------------------------------------------------------------
    def describe(self) -> str:
        return self._desc

    def _schema(self) -> dict[str, str]:
        if self._types is None:
            rows = self._fetch(f"DESCRIBE SELECT * FROM {self._from}")
            self._types = {str(r[0]): str(r[1]) for r in rows}
            self._check_header(list(self._types))
        return self._types

    def _check_header(self, names: list[str]) -> None:
        """DuckDB's CSV sniffer read the header line we read (else rows are malformed)."""
        files = self._files
        if files is None or files.format != "csv" or not files.schemas or not files.schemas[0]:
            return
        header = [n for n, _ in files.schemas[0]]
        if names != header:
            raise DataError(
                f"DuckDB cannot read {files.paths[0]!r} by its header line {header[:8]}: it "
                f"found the columns {names[:8]}. Some rows probably have more or fewer "
                "fields than the header; fix those rows."
            )

    def columns(self) -> list[str]:
        return list(self._schema())

    def kind(self, column: str) -> tuple[str, str]:
        t = self._schema()[column]
        if t == "BOOLEAN":
            return "bool", t
        if numeric_type(t):
            return "numeric", t
        return "other", t

    def nonnumeric_example(self, column: str) -> Any:
        c = ident(column)
        rows = self._fetch(
            f"SELECT {c} FROM {self._from} "
            f"WHERE {c} IS NOT NULL AND TRY_CAST({c} AS DOUBLE) IS NULL LIMIT 1"
        )
        return rows[0][0] if rows else None

    # -- small queries -----------------------------------------------------
    def distinct(self, column: str, limit: int) -> list[Any]:
        rows = self._fetch(f"SELECT DISTINCT {ident(column)} FROM {self._from} LIMIT {int(limit)}")
        return [r[0] for r in rows]

    def values_per_key(self, key: str, column: str, limit: int) -> list[tuple[Any, Any]]:
        v = ident(column)
        if self._schema()[column].upper() in ("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ"):
            v = f"timezone('UTC', {v})"  # a naive UTC timestamp, whatever the session's zone
        distinct = f"SELECT DISTINCT {ident(key)} AS k, {v} AS v FROM {self._from}"
        ranked = "SELECT k, v, row_number() OVER (PARTITION BY k ORDER BY v NULLS FIRST) AS r"
        rows = self._fetch(f"SELECT k, v FROM ({ranked} FROM ({distinct})) WHERE r <= {int(limit)}")
        return [(r[0], r[1]) for r in rows]

    def first_finite(self, columns: Sequence[str]) -> dict[str, float | None]:
        sel = ", ".join(f"CAST({ident(c)} AS DOUBLE)" for c in columns)
        rows = self._fetch(f"SELECT {sel} FROM {self._from} LIMIT {HEAD}")
        out: dict[str, float | None] = {}
        for i, c in enumerate(columns):
            hit = next((r[i] for r in rows if _finite(r[i])), None)
            if hit is None:
                x = f"CAST({ident(c)} AS DOUBLE)"
                more = self._fetch(f"SELECT {x} FROM {self._from} WHERE isfinite({x}) LIMIT 1")
                hit = more[0][0] if more else None
            out[c] = None if hit is None else float(hit)
        return out

    def bad_counts(self, columns: Sequence[str]) -> dict[str, tuple[int, int]]:
        parts = []
        for c in columns:
            q = ident(c)
            if self.kind(c)[0] == "other":
                parts += [f"count(*) FILTER (WHERE {q} IS NULL)", "0"]
            else:
                x = f"CAST({q} AS DOUBLE)"
                parts += [
                    f"count(*) FILTER (WHERE {x} IS NULL OR isnan({x}))",
                    f"count(*) FILTER (WHERE isinf({x}))",
                ]
        row = self._fetch(f"SELECT {', '.join(parts)} FROM {self._from}")[0]
        return {c: (int(row[2 * i]), int(row[2 * i + 1])) for i, c in enumerate(columns)}

    # -- the aggregate -----------------------------------------------------
    def aggregate(
        self,
        keys: Sequence[str],
        treatment: str,
        metrics: Sequence[str],
        refs: Sequence[float],
        drop_missing: bool,
    ) -> pd.DataFrame:
        labels = [*keys, treatment]
        names = [key_col(i) for i in range(len(keys))] + [ARM]
        covs = [
            f"{f'var_samp(x{i})' if i == j else f'covar_samp(x{i}, x{j})'} AS {cov_col(i, j)}"
            for i, j in pairs(len(metrics))
        ]
        sql, params = self._grouped(labels, names, metrics, refs, drop_missing, covs)
        cur = self._execute(sql, params)
        names = [d[0] for d in cur.description]
        return records_frame(names, cur.fetchall(), len(keys))

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
        sql, params = self._grouped(labels, names, metrics, refs, drop_missing, [])
        # Columns, not Python rows: a row per cluster can be many rows.
        return arrow_aggregate(self._execute(sql, params, arrow=True), names, len(metrics))

    def _grouped(
        self,
        labels: Sequence[str],
        names: Sequence[str],
        metrics: Sequence[str],
        refs: Sequence[float],
        drop_missing: bool,
        extra: Sequence[str],
    ) -> tuple[str, dict[str, float]]:
        """The query grouping by ``labels`` (as ``names``): count, counts and means of the
        shifted metrics, then the ``extra`` aggregates; and its parameters."""
        inner = [f"{ident(c)} AS {name}" for c, name in zip(labels, names, strict=True)]
        # The shift is a bound DOUBLE parameter: exact, whatever its digits.
        inner += [f"CAST({ident(m)} AS DOUBLE) - $r{i} AS x{i}" for i, m in enumerate(metrics)]
        outer = [*names, f"count(*) AS {N}"]
        outer += [f"count(x{i}) AS {count_col(i)}" for i in range(len(metrics))]
        outer += [f"avg(x{i}) AS {mean_col(i)}" for i in range(len(metrics))]
        outer += list(extra)
        where = ""
        if drop_missing:
            where = "WHERE " + " AND ".join(
                f"x{i} IS NOT NULL AND NOT isnan(x{i})" for i in range(len(metrics))
            )
        sql = (
            f"SELECT {', '.join(outer)} FROM (SELECT {', '.join(inner)} FROM {self._from}) "
            f"{where} GROUP BY {', '.join(names)}"
        )
        return sql, {f"r{i}": float(r) for i, r in enumerate(refs)}

    def close(self) -> None:
        self._con.close()


def _finite(v: Any) -> bool:
    return v is not None and v == v and v not in (float("inf"), float("-inf"))

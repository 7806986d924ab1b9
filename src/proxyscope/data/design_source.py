"""Where a design's unit-level rows come from: the engine, and the caller's data for it.

:func:`~proxyscope.data.did.did` and :func:`~proxyscope.data.ipw.ipw` read
their rows on the engines of :func:`proxyscope.summarize`:

- ``"pandas"``: a pandas DataFrame, or Parquet/CSV files read into one (the
  used columns only);
- ``"duckdb"``: a pandas DataFrame or pyarrow Table scanned in place, or
  Parquet/CSV path(s), directories or globs read out of core by a private
  DuckDB connection (``memory_limit``, ``threads``; one thread by default,
  so the same rows give the same bits);
- ``"spark"``: a pyspark DataFrame, or files read by Spark (``spark``: the
  session).

By default the engine is the one the data lives in: pandas for a pandas
DataFrame (what these designs always did), Spark for a Spark DataFrame,
DuckDB for paths and Arrow tables.

What needs no engine is checked here, the same way for every engine, before
any value is read: the used columns are present and appear once (the design's
own messages), object columns hold one type of value, files agree with each
other on the used columns. The database engines then see only the used
columns and answer the design's queries
(:class:`~proxyscope.data.engines.duckdb_rows.DuckDBRows`,
:class:`~proxyscope.data.engines.spark_rows.SparkRows`); their rows reach
Python one batch of experiments at a time (:func:`batches`, :func:`split`).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from proxyscope.data.engines.duckdb_rows import GROUP
from proxyscope.data.sources import Files, is_pathlike, is_spark_frame, resolve_files, type_name
from proxyscope.data.tables import (
    check_files,
    check_values,
    duckdb_frame,
    labels_by_name,
    select_frame,
)
from proxyscope.data.validate import nonnumeric_error
from proxyscope.errors import DataTypeError, ParameterError, check_one_of
from proxyscope.options import ENGINES

#: Rows of one batch of experiments fetched from DuckDB or Spark: consecutive
#: experiments whose rows add up to at most this many (one alone when it has more).
BATCH_ROWS = 2_000_000

#: What each engine reads.
ACCEPTED = {
    "pandas": "a pandas DataFrame or Parquet/CSV path(s)",
    "duckdb": "a pandas DataFrame, a pyarrow Table, or Parquet/CSV path(s) or glob(s)",
    "spark": "a pyspark.sql.DataFrame or Parquet/CSV path(s) or glob(s)",
}


def is_arrow_table(data: Any) -> bool:
    t = type(data)
    return t.__module__.startswith("pyarrow") and t.__name__ == "Table"


def choose_engine(
    engine: Any, data: Any, *, owner: str, engines: Sequence[str] = ENGINES, why: str = ""
) -> str:
    """``engine`` checked, or by default the engine the data lives in (module docstring).

    ``engines`` are the ones ``owner`` runs on; ``why`` says why others are not.
    """
    if engine is None:
        if isinstance(data, pd.DataFrame):
            engine = "pandas"
        elif is_spark_frame(data):
            engine = "spark"
        elif is_pathlike(data) or is_arrow_table(data):
            engine = "duckdb"
        else:
            kinds = [
                "a pandas DataFrame",
                "a pyarrow Table",
                "Parquet/CSV path(s) or glob(s)",
            ] + (["a pyspark DataFrame"] if "spark" in engines else [])
            raise DataTypeError(
                f"The 'data' parameter of {owner} must be {', '.join(kinds[:-1])} or "
                f"{kinds[-1]}; got {type_name(data)}."
            )
    if engine not in engines and engine in ENGINES:
        shown = "{" + ", ".join(repr(e) for e in engines) + "}"
        raise ParameterError(
            f"The 'engine' parameter of {owner} must be one of {shown}. Got {engine!r} "
            f"instead.{why}"
        )
    return str(check_one_of(engine, engines, param="engine", owner=owner))


def check_engine_options(
    engine: str, memory_limit: Any, threads: Any, spark: Any, *, owner: str
) -> None:
    """``memory_limit`` and ``threads`` only with DuckDB, ``spark`` only with Spark."""
    if engine != "duckdb" and (memory_limit is not None or threads is not None):
        raise ParameterError(
            f"The 'memory_limit' and 'threads' parameters of {owner} apply to "
            f"engine='duckdb' only; got engine={engine!r}."
        )
    if engine != "spark" and spark is not None:
        raise ParameterError(
            f"The 'spark' parameter of {owner} applies to engine='spark' only; "
            f"got engine={engine!r}."
        )
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or threads < 1
    ):
        raise ParameterError(
            f"The 'threads' parameter of {owner} must be a positive integer. Got {threads!r}."
        )
    if memory_limit is not None and not isinstance(memory_limit, str):
        raise ParameterError(
            f"The 'memory_limit' parameter of {owner} must be a string such as '2GB'. "
            f"Got {memory_limit!r}."
        )


def open_rows(
    engine: str,
    data: Any,
    *,
    used: Sequence[str],
    keys: Sequence[str],
    numbers: Sequence[str],
    role_of: Callable[[str], str],
    check_names: Callable[[list[str]], None],
    owner: str,
    memory_limit: str | None = None,
    threads: int | None = None,
    spark: Any = None,
) -> Any:
    """The caller's data, checked for what needs no engine, ready for ``engine``.

    Returns a pandas DataFrame of the ``used`` columns (engine "pandas"), a
    :class:`~proxyscope.data.engines.duckdb_rows.DuckDBRows` or a
    :class:`~proxyscope.data.engines.spark_rows.SparkRows`. ``check_names(names)``
    raises the design's error for a used column absent from the column
    ``names`` or present twice; ``keys`` are compared as labels and ``numbers``
    as numbers (:func:`~proxyscope.data.tables.check_values`).

    Raises
    ------
    DataTypeError
        ``data`` is not what ``engine`` reads; an object column mixes types.
    ColumnError
        A used column is missing or appears twice, or the files disagree on one.
    """
    kind = f"The 'data' parameter of {owner} with engine={engine!r} must be {ACCEPTED[engine]}"
    if isinstance(data, pd.DataFrame) and engine in ("pandas", "duckdb"):
        check_names([str(c) for c in data.columns])
        frame = select_frame(data, used, where="the data", role_of=role_of)
        check_values(
            frame, keys=keys, metrics=numbers, role_of=role_of, nonnumeric=nonnumeric_error
        )
        if engine == "pandas":
            return frame
        from proxyscope.data.engines.duckdb_rows import DuckDBRows

        return DuckDBRows(
            duckdb_frame(frame), memory_limit=memory_limit, threads=threads, owner=owner
        )
    if is_pathlike(data):
        files = resolve_files(data, owner=owner)
        check_files(files, used, role_of=role_of, hive=engine == "duckdb")
        if engine == "pandas":
            return _read_files(files, used, keys, numbers, role_of, check_names, owner)
        return _query_rows(engine, files, used, check_names, owner, memory_limit, threads, spark)
    if engine == "duckdb" and is_arrow_table(data):
        names = [str(c) for c in data.column_names]
        check_names(names)
        labels = labels_by_name(names, used, where="the data", role_of=role_of)
        table = data.select([names.index(labels[c]) for c in dict.fromkeys(used)])
        return _query_rows(engine, table, used, check_names, owner, memory_limit, threads, spark)
    if engine == "spark" and is_spark_frame(data):
        labels_by_name(
            list(data.columns), used, where="the Spark DataFrame", role_of=role_of, case="all"
        )
        return _query_rows(engine, data, used, check_names, owner, memory_limit, threads, spark)
    hint = ""
    if is_spark_frame(data):
        hint = " Use engine='spark' for a Spark DataFrame."
    elif isinstance(data, pd.DataFrame):
        hint = " Use engine='pandas' or 'duckdb' for a pandas DataFrame."
    raise DataTypeError(f"{kind}; got {type_name(data)}.{hint}")


def _read_files(
    files: Files,
    used: Sequence[str],
    keys: Sequence[str],
    numbers: Sequence[str],
    role_of: Callable[[str], str],
    check_names: Callable[[list[str]], None],
    owner: str,
) -> pd.DataFrame:
    """The used columns of the files, read into one DataFrame (engine "pandas")."""
    from proxyscope.data.engines.pandas_engine import PandasSource

    source = PandasSource(files, owner=owner)
    check_names(source.columns())
    source.select(list(dict.fromkeys(used)))
    frame = source.frame()
    check_values(frame, keys=keys, metrics=numbers, role_of=role_of, nonnumeric=nonnumeric_error)
    return frame


def _query_rows(
    engine: str,
    data: Any,
    used: Sequence[str],
    check_names: Callable[[list[str]], None],
    owner: str,
    memory_limit: str | None,
    threads: int | None,
    spark: Any,
) -> Any:
    """A DuckDB or Spark source over ``data``, once its columns are checked."""
    source: Any
    if engine == "duckdb":
        from proxyscope.data.engines.duckdb_rows import DuckDBRows

        source = DuckDBRows(data, memory_limit=memory_limit, threads=threads, owner=owner)
    else:
        from proxyscope.data.engines.spark_rows import SparkRows

        source = SparkRows(data, spark=spark, owner=owner)
    try:
        check_names(source.columns())
    except Exception:
        source.close()
        raise
    return source


def batches(sizes: Sequence[int], limit: int | None = None) -> list[tuple[int, int]]:
    """(first, last) positions of consecutive groups whose sizes add up to at most
    ``limit`` (default :data:`BATCH_ROWS`; a group larger than that alone)."""
    limit = BATCH_ROWS if limit is None else limit
    out: list[tuple[int, int]] = []
    start, total = 0, 0
    for i, n in enumerate(sizes):
        if i > start and total + n > limit:
            out.append((start, i - 1))
            start, total = i, 0
        total += n
    if len(sizes):
        out.append((start, len(sizes) - 1))
    return out


def split(table: Any) -> Iterator[tuple[int, Any]]:
    """(group number, its rows without the group column) of a fetched batch, in order."""
    group = table.column(GROUP).to_numpy()
    rest = table.drop_columns([GROUP])
    bounds = np.flatnonzero(np.diff(group)) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(group)], strict=True):
        if hi > lo:
            yield int(group[lo]), rest.slice(int(lo), int(hi - lo))

"""Checks of the table a user hands in, before any engine reads a value of it.

One layer for the entry points that take a table: :func:`~proxyscope.summarize`
(a DataFrame, an Arrow table, files or a Spark DataFrame, on each engine) and
:func:`~proxyscope.data.arms.from_arm_summaries` (a DataFrame). The checks are
the ones an engine would otherwise fail on with its own traceback, or answer
differently from another engine:

- column labels: a used column must appear once; labels that are not strings
  (``0``, ``1``, ...) are used by their string form; two names that differ
  only in case are refused where DuckDB or Spark would read them as one;
- value types of the used columns: no complex numbers, and an ``object``
  column must hold one type (ids ``1`` and ``'1'`` are one experiment to
  DuckDB and two to pandas);
- several files: CSV files share one header, and a used column is in every
  file with one kind of type (a number in one file and text in another is
  refused, naming both files);
- columns DuckDB cannot scan (sparse, period, interval) are handed to it as
  the pandas engine reads them, so both give the same cells.

Missing columns are reported by the callers, with the available ones listed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from proxyscope.data.sources import Files, is_pathlike, is_spark_frame, resolve_files
from proxyscope.data.validate import Roles, missing_columns_error, nonnumeric_error
from proxyscope.errors import ColumnError, DataTypeError

#: pandas' inferred kinds of an object column that mixes value types.
MIXED = frozenset({"mixed", "mixed-integer", "mixed-integer-float"})
#: The same, for metric columns: ints and floats mixed are numbers to every engine.
MIXED_METRIC = frozenset({"mixed", "mixed-integer"})

RoleOf = Callable[[str], str]


def summarize_input(engine: str, data: Any, roles: Roles, *, owner: str) -> Any:
    """``data`` checked for ``engine``: what the engine then reads.

    A DataFrame (pandas and DuckDB engines) comes back cut down to the used
    columns, labelled by their names; an Arrow table likewise; paths come back
    as :class:`~proxyscope.data.sources.Files`, opened and checked; a Spark
    DataFrame as it is. Anything else is left for the engine to refuse.
    """
    if isinstance(data, pd.DataFrame) and engine in ("pandas", "duckdb"):
        err = missing_columns_error(roles, [str(c) for c in data.columns])
        if err is not None:
            raise err
        frame = select_frame(data, roles.columns, where="the data", role_of=roles.role_of)
        keys = [*roles.keys, roles.treatment, *roles.labels]  # cluster, exposure: labels too
        check_values(
            frame,
            keys=keys,
            metrics=roles.metrics,
            role_of=roles.role_of,
            nonnumeric=nonnumeric_error,
        )
        return duckdb_frame(frame) if engine == "duckdb" else frame
    if engine == "duckdb" and _is_arrow_table(data):
        names = [str(c) for c in data.column_names]
        err = missing_columns_error(roles, names)
        if err is not None:
            raise err
        labels = labels_by_name(names, roles.columns, where="the data", role_of=roles.role_of)
        return data.select([names.index(labels[c]) for c in roles.columns])
    if is_pathlike(data):
        files = resolve_files(data, owner=owner)
        check_files(files, roles.columns, role_of=roles.role_of, hive=engine == "duckdb")
        return files
    if engine == "spark" and is_spark_frame(data):
        where = "the Spark DataFrame"
        labels_by_name(
            list(data.columns), roles.columns, where=where, role_of=roles.role_of, case="all"
        )
    return data


def _is_arrow_table(data: Any) -> bool:
    t = type(data)
    return t.__module__.startswith("pyarrow") and t.__name__ == "Table"


def labels_by_name(
    labels: Sequence[Any],
    used: Sequence[str],
    *,
    where: str,
    role_of: RoleOf,
    case: str = "used",
) -> dict[str, Any]:
    """The label of each used column present, by its string name.

    Parameters
    ----------
    labels : the table's column labels, in order (strings or not).
    used : the column names the call uses.
    where : the table, for messages ("the data", "'users.csv'").
    role_of : the parameter that names a column (for messages).
    case : "used" refuses two used names that differ only in case (the table
        is cut down to the used columns before an engine sees it); "all"
        refuses a used name with a case twin anywhere in the table (files and
        Spark, read whole); "none" checks no case.

    Raises
    ------
    ColumnError
        A used name appears more than once (``3`` and ``'3'`` count as one
        name), or differs only in case from another as ``case`` says.
    """
    by_name: dict[str, list[Any]] = {}
    by_fold: dict[str, list[str]] = {}
    for label in labels:
        name = str(label)
        by_name.setdefault(name, []).append(label)
        by_fold.setdefault(name.lower(), []).append(name)
    out: dict[str, Any] = {}
    for name in used:
        hits = by_name.get(name, [])
        if len(hits) > 1:
            shown = " and ".join(repr(h) for h in dict.fromkeys(hits))
            forms = "" if all(isinstance(h, str) for h in hits) else f" (as {shown})"
            raise ColumnError(
                f"Column {name!r} (given as {role_of(name)!r}) appears {len(hits)} times in "
                f"{where}{forms}; which one to use is ambiguous. Drop or rename the copies."
            )
        if hits:
            out[name] = hits[0]
    if case == "none":
        return out
    for name in out:
        if case == "used":
            twins = [u for u in out if u != name and u.lower() == name.lower()]
        else:
            twins = [n for n in by_fold[name.lower()] if n != name]
        if twins:
            other = twins[0]
            given = f" (given as {role_of(other)!r})" if other in out else f" of {where}"
            raise ColumnError(
                f"Column {name!r} (given as {role_of(name)!r}) and column {other!r}{given} "
                "differ only in case; DuckDB and Spark read such names as one column, so "
                "no engine accepts them. Rename one of them."
            )
    return out


def select_frame(
    frame: pd.DataFrame,
    used: Sequence[str],
    *,
    where: str,
    role_of: RoleOf,
    case: str = "used",
) -> pd.DataFrame:
    """The used columns of ``frame`` that it has, labelled by their names (not a copy
    of the values; the caller's frame is not changed)."""
    labels = labels_by_name(list(frame.columns), used, where=where, role_of=role_of, case=case)
    names = [n for n in dict.fromkeys(used) if n in labels]
    out = frame.loc[:, [labels[n] for n in names]]
    out.columns = pd.Index(names, dtype=object)
    return out


def check_values(
    frame: pd.DataFrame,
    *,
    keys: Sequence[str],
    metrics: Sequence[str],
    role_of: RoleOf,
    nonnumeric: Callable[[str, str, str, Any], Exception],
) -> None:
    """Complex numbers and object columns that mix value types, in the used columns.

    ``keys`` are compared as labels (experiment, segments, arm), ``metrics``
    as numbers; ``nonnumeric(column, role, found, example)`` builds the error
    for a metric that is not a number.
    """
    for c in [*keys, *metrics]:
        s = frame[c]
        is_key = c in keys
        if pd.api.types.is_complex_dtype(s.dtype):
            if not is_key:
                raise nonnumeric(c, role_of(c), str(s.dtype), None)
            raise DataTypeError(
                f"Column {c!r} (given as {role_of(c)!r}) holds complex numbers ({s.dtype}); "
                "ids, arms and segment values must be text, numbers, booleans or dates."
            )
        if is_key and getattr(_inner(s.dtype), "kind", "") == "m":
            raise DataTypeError(
                f"Column {c!r} (given as {role_of(c)!r}) holds durations ({s.dtype}); "
                "ids, arms and segment values must be text, numbers, booleans or dates. "
                f"Convert it first, e.g. data[{c!r}].astype(str)."
            )
        values = _object_values(s)
        if values is None:
            continue
        kind = pd.api.types.infer_dtype(values, skipna=True)
        if kind == "complex" or kind in (MIXED if is_key else MIXED_METRIC):
            a, b = _two_types(values)
            if type(a) is type(b):
                raise DataTypeError(
                    f"Column {c!r} (given as {role_of(c)!r}) holds values of type "
                    f"{type(a).__name__} (e.g. {a!r}); expected text, numbers or booleans."
                )
            raise DataTypeError(
                f"Column {c!r} (given as {role_of(c)!r}) mixes value types: "
                f"{a!r} ({type(a).__name__}) and {b!r} ({type(b).__name__}); a column must "
                "hold one type (engines would read 1 and '1' as one value or as two). "
                f"Convert it first, e.g. data[{c!r}].astype(str)."
            )


def duckdb_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the columns DuckDB cannot scan given as pandas reads them (a new
    frame when any changes).

    Sparse columns become dense; period and interval columns (or categoricals of
    them) become the text of each value (missing values stay missing), as the
    pandas engine labels them.
    """
    changed: dict[str, Any] = {}
    for c in frame.columns:
        s: Any = frame[c]
        if isinstance(s.dtype, pd.SparseDtype):
            s = s.sparse.to_dense()
            changed[c] = s
        if isinstance(_inner(s.dtype), pd.PeriodDtype | pd.IntervalDtype):
            changed[c] = s.astype(object).map(str).where(s.notna(), None).astype(object)
    return frame.assign(**changed) if changed else frame


def _inner(dtype: Any) -> Any:
    """A categorical's categories' dtype, else the dtype itself."""
    return dtype.categories.dtype if isinstance(dtype, pd.CategoricalDtype) else dtype


def _object_values(s: pd.Series) -> Any:
    """The values to type-check: an object column's, or a categorical's categories."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        cats = s.cat.categories
        return cats if cats.dtype == object else None
    return s if s.dtype == object else None


def _two_types(values: Any) -> tuple[Any, Any]:
    """Two non-missing values of different types (the error path only)."""
    seen: dict[type, Any] = {}
    for v in values:
        if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
            continue
        seen.setdefault(type(v), v)
        if len(seen) == 2:
            break
    got = list(seen.values())
    return (got[0], got[1]) if len(got) == 2 else (got[0], got[0])


def check_files(files: Files, used: Sequence[str], *, role_of: RoleOf, hive: bool = False) -> None:
    """The files agree with each other on the used columns.

    CSV files must share one header (DuckDB reads every file by the first
    one's, Spark by position). A used column that one file has must be in
    every file (``hive``: or be a ``name=value`` folder of the file's path,
    which DuckDB reads as a column), with one kind of type (Parquet). A column
    in no file is left to the caller's "not in the data" error.

    Raises
    ------
    ColumnError
        A used column is missing from some files, appears twice, or has a
        case twin in a file.
    DataTypeError
        A used column is a number in one Parquet file and text in another.
    """
    local = [(p, s) for p, s in zip(files.paths, files.schemas, strict=False) if s is not None]
    if not local:
        return
    if files.format == "csv":
        first_path, first = local[0]
        head = [n for n, _ in first]
        for path, schema in local[1:]:
            names = [n for n, _ in schema]
            if names != head:
                raise ColumnError(_header_difference(first_path, head, path, names))
    kinds: dict[str, dict[str, str]] = {}
    present: dict[str, list[str]] = {}
    for path, schema in local:
        names = [n for n, _ in schema]
        labels_by_name(names, used, where=repr(path), role_of=role_of, case="all")
        kind_of = dict(schema)
        extra = _hive_keys(path) if hive else set()
        for c in used:
            if c in kind_of:
                present.setdefault(c, []).append(path)
                if kind_of[c] not in ("null", "unknown"):
                    kinds.setdefault(c, {}).setdefault(kind_of[c], path)
            elif c in extra:
                present.setdefault(c, []).append(path)
    for c, where in present.items():
        if len(where) < len(local):
            lacking = next(p for p, _ in local if p not in set(where))
            raise ColumnError(
                f"Column {c!r} (given as {role_of(c)!r}) is in {where[0]!r} but not in "
                f"{lacking!r}; every file must hold the columns used."
            )
    for c, seen in kinds.items():
        if len(seen) > 1:
            (k1, p1), (k2, p2) = list(seen.items())[:2]
            raise DataTypeError(
                f"Column {c!r} (given as {role_of(c)!r}) is {_kind_name(k1)} in {p1!r} but "
                f"{_kind_name(k2)} in {p2!r}; every file must give a column one type."
            )


def _kind_name(kind: str) -> str:
    return {"number": "a number", "bool": "a boolean", "text": "text"}.get(kind, kind)


def _hive_keys(path: str) -> set[str]:
    """Names of ``name=value`` folders in a path (hive partitioning)."""
    parts = path.replace("\\", "/").split("/")[:-1]
    return {p.split("=", 1)[0] for p in parts if "=" in p and not p.startswith("=")}


def _header_difference(p1: str, h1: Sequence[str], p2: str, h2: Sequence[str]) -> str:
    only1 = [n for n in h1 if n not in h2]
    only2 = [n for n in h2 if n not in h1]
    if only1 or only2:
        parts = []
        if only1:
            parts.append(f"{p2!r} lacks {only1[:5]}")
        if only2:
            parts.append(f"{p2!r} has {only2[:5]}, which {p1!r} lacks")
        what = " and ".join(parts)
    else:
        what = f"the columns are in another order ({list(h2)[:8]} against {list(h1)[:8]})"
    return (
        f"The CSV files do not share one header: {what}. Every CSV file read together must "
        "have the same columns in the same order."
    )

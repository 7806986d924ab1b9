"""What ``data`` may be: file paths, lists of them, globs, or in-memory tables.

Paths are resolved here, once, for every engine: a path, a directory, a glob,
or a list of any of these, all Parquet or all CSV. Remote URLs (``s3://...``)
are passed through unchecked for engines that can read them.

Every local file is opened here before any engine reads it: a Parquet file's
footer (its schema), a CSV file's header line (comma-separated, tab for
``.tsv``, UTF-8). A file that is empty, corrupt or not what its suffix says
is refused with a :class:`~proxyscope.errors.DataError` naming the file, so no
reader's traceback reaches the user; the schemas are kept for the checks
that the files agree with each other (:mod:`proxyscope.data.tables`).
"""

from __future__ import annotations

import csv
import glob
import gzip
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxyscope.errors import DataError, DataTypeError, ParameterError

PARQUET_SUFFIXES = (".parquet", ".parq", ".pq")
CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".txt")
GLOB_CHARS = ("*", "?", "[")

#: One file's columns: (name, kind) in file order. Kinds: "number", "bool",
#: "text", "null" (no values), "other: <type>"; "unknown" for CSV (not parsed).
Schema = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Files:
    """Resolved input files, all of one format, with each local file's schema."""

    paths: tuple[str, ...]
    format: str  # "parquet" | "csv"
    #: One per path; None for a remote file (not opened here).
    schemas: tuple[Schema | None, ...] = ()

    def describe(self) -> str:
        first = self.paths[0]
        return first if len(self.paths) == 1 else f"{first} and {len(self.paths) - 1} more files"

    @property
    def delimiter(self) -> str:
        """The CSV field separator every engine uses: a tab for ``.tsv``, else a comma."""
        return "\t" if all(_is_tsv(p) for p in self.paths) else ","


def is_pathlike(data: Any) -> bool:
    """A path, or a non-empty list/tuple of paths."""
    if isinstance(data, str | os.PathLike):
        return True
    return (
        isinstance(data, list | tuple)
        and len(data) > 0
        and all(isinstance(d, str | os.PathLike) for d in data)
    )


def is_spark_frame(data: Any) -> bool:
    """A PySpark DataFrame (classic or Spark Connect), without importing pyspark."""
    t = type(data)
    return t.__name__ == "DataFrame" and t.__module__.startswith("pyspark.sql")


def type_name(data: Any) -> str:
    t = type(data)
    mod = t.__module__.split(".")[0]
    return t.__name__ if mod == "builtins" else f"{mod}.{t.__name__}"


def _format_of(name: str) -> str | None:
    low = name.lower()
    if low.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if low.endswith(CSV_SUFFIXES):
        return "csv"
    return None


def resolve_files(data: str | os.PathLike[str] | Sequence[Any], *, owner: str) -> Files:
    """Expand paths, directories and globs into a list of files of one format.

    Raises
    ------
    ParameterError
        Nothing matches, a suffix is not Parquet or CSV, or formats are mixed.
    DataError
        A local file is empty, corrupt, or not a Parquet/CSV file (named).
    """
    items = [data] if isinstance(data, str | os.PathLike) else list(data)
    out: list[str] = []
    for item in items:
        s = os.fspath(item)
        if "://" in s:  # remote: the engine reads it
            out.append(s)
        elif any(c in s for c in GLOB_CHARS):
            hits = sorted(h for h in glob.glob(s, recursive=True) if os.path.isfile(h))
            if not hits:
                raise ParameterError(
                    f"The 'data' parameter of {owner}: the glob {s!r} matches no file."
                )
            out.extend(hits)
        elif os.path.isdir(s):
            hits = sorted(str(p) for p in Path(s).rglob("*") if p.is_file() and _format_of(p.name))
            if not hits:
                raise ParameterError(
                    f"The 'data' parameter of {owner}: the directory {s!r} holds no "
                    f"Parquet or CSV file."
                )
            out.extend(hits)
        elif os.path.isfile(s):
            out.append(s)
        else:
            raise ParameterError(f"The 'data' parameter of {owner}: no file or directory at {s!r}.")
    formats = {_format_of(p) for p in out}
    if None in formats:
        bad = next(p for p in out if _format_of(p) is None)
        raise ParameterError(
            f"The 'data' parameter of {owner} must name Parquet ({', '.join(PARQUET_SUFFIXES)}) "
            f"or CSV ({', '.join(CSV_SUFFIXES)}) files; got {bad!r}."
        )
    if len(formats) > 1:
        raise ParameterError(
            f"The 'data' parameter of {owner} mixes Parquet and CSV files; give one format."
        )
    fmt = formats.pop()
    assert fmt is not None
    if fmt == "csv" and len({_is_tsv(p) for p in out}) > 1:
        raise ParameterError(
            f"The 'data' parameter of {owner} mixes tab-separated (.tsv) and comma-separated "
            "files; give one kind."
        )
    delimiter = "\t" if all(_is_tsv(p) for p in out) else ","
    schemas = tuple(None if "://" in p else _open(p, fmt, delimiter) for p in out)
    return Files(tuple(out), fmt, schemas)


def _is_tsv(path: str) -> bool:
    return path.lower().endswith(".tsv")


def read_error(path: str, what: str, exc: BaseException) -> DataError:
    """A reader's failure on ``path`` as a DataError naming the file (first line only)."""
    lines = str(exc).strip().splitlines()
    detail = lines[0] if lines else type(exc).__name__
    return DataError(f"Cannot read {path!r} as {what}: {detail}")


def _open(path: str, fmt: str, delimiter: str) -> Schema:
    """The file's schema; a DataError naming the file when it cannot be read."""
    if os.path.getsize(path) == 0:
        raise DataError(f"The file {path!r} is empty (0 bytes); expected a {fmt.upper()} file.")
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            schema = pq.read_schema(path)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise read_error(path, "a Parquet file", exc) from None
        return tuple((str(f.name), arrow_kind(f.type)) for f in schema)
    return tuple((name, "unknown") for name in csv_header(path, delimiter))


def csv_header(path: str, delimiter: str) -> list[str]:
    """The column names on the first line of a CSV file (UTF-8, optionally gzipped)."""
    what = "a CSV file"
    try:
        raw = gzip.open(path, "rb") if path.lower().endswith(".gz") else open(path, "rb")  # noqa: SIM115
        with raw:
            first = raw.readline(1 << 20)
    except (OSError, EOFError) as exc:
        raise read_error(path, what, exc) from None
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"Cannot read {path!r} as {what}: its first line is not UTF-8 text "
            f"(byte {exc.start}); save the file as UTF-8."
        ) from None
    if "\x00" in text:
        raise DataError(f"Cannot read {path!r} as {what}: it holds NUL bytes (a binary file?).")
    try:
        header = next(csv.reader(io.StringIO(text), delimiter=delimiter), [])
    except csv.Error as exc:
        raise read_error(path, what, exc) from None
    if not header or all(not h.strip() for h in header):
        raise DataError(
            f"Cannot read {path!r} as {what}: its first line is empty; expected a header "
            "line with the column names."
        )
    return header


def arrow_kind(t: Any) -> str:
    """The kind of an Arrow type: what decides whether two files agree on a column."""
    import pyarrow as pa

    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "number"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or _is_string_view(t):
        return "text"
    if pa.types.is_null(t):
        return "null"
    return f"other: {t}"


def _is_string_view(t: Any) -> bool:
    import pyarrow as pa

    check = getattr(pa.types, "is_string_view", None)
    return bool(check(t)) if check is not None else False


def wrong_type(engine: str, data: Any, accepted: str, hint: str = "") -> DataTypeError:
    return DataTypeError(
        f"The 'data' parameter of summarize with engine={engine!r} must be {accepted}; "
        f"got {type_name(data)}.{hint}"
    )

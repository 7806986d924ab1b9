"""What ``data`` may be: file paths, lists of them, globs, or in-memory tables.

Paths are resolved here, once, for every engine: a path, a directory, a glob,
or a list of any of these, all Parquet or all CSV. Remote URLs (``s3://...``)
are passed through unchecked for engines that can read them.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxyscope.errors import DataTypeError, ParameterError

PARQUET_SUFFIXES = (".parquet", ".parq", ".pq")
CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".txt")
GLOB_CHARS = ("*", "?", "[")


@dataclass(frozen=True)
class Files:
    """Resolved input files, all of one format."""

    paths: tuple[str, ...]
    format: str  # "parquet" | "csv"

    def describe(self) -> str:
        first = self.paths[0]
        return first if len(self.paths) == 1 else f"{first} and {len(self.paths) - 1} more files"


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
    return Files(tuple(out), fmt)


def wrong_type(engine: str, data: Any, accepted: str, hint: str = "") -> DataTypeError:
    return DataTypeError(
        f"The 'data' parameter of summarize with engine={engine!r} must be {accepted}; "
        f"got {type_name(data)}.{hint}"
    )

"""DuckDB queries of the designs that read unit-level rows (``did``, ``ipw``).

:class:`DuckDBRows` adds to :class:`~proxyscope.data.engines.duckdb_engine.DuckDBSource`
(a private connection over a DataFrame, an Arrow table or Parquet/CSV files,
one thread unless told otherwise) the queries a design's checks and its
per-experiment estimator ask for: counts of missing and infinite values,
columns that change within a unit, the experiments with their row counts, and
the rows of a batch of experiments as an Arrow table. Every query but the last
returns a handful of rows; the last returns only the batch asked for, so a
table larger than memory is read one batch of experiments at a time.

Row order. ``first_seen`` and ``fetch(..., numbered=True)`` number the rows in
the order the engine reads them (``row_number() OVER ()``, a streaming window:
files in the order given, rows in file order; a DataFrame in index order),
which is the order of the same rows read into pandas. DuckDB preserves that
order on its default ``preserve_insertion_order`` setting, whatever the
number of threads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from proxyscope.data.engines.duckdb_engine import DuckDBSource, ident

#: The temporary table of :meth:`DuckDBRows.groups`: a key's values, numbered.
GROUPS = "__proxyscope_groups"
#: Column of a fetched batch: the position of the row's group in ``groups``.
GROUP = "__e"
#: Column of a numbered batch: the row's position in the data (from 1).
ROW = "__row"


class DuckDBRows(DuckDBSource):
    """A :class:`DuckDBSource` that also answers the design queries (module docstring)."""

    def n_rows(self) -> int:
        """The number of rows."""
        return int(self._fetch(f"SELECT count(*) FROM {self._from}")[0][0])

    def bad_values(self, columns: Sequence[str]) -> dict[str, tuple[int, int, int]]:
        """Per column: rows that are missing (NULL or NaN), +inf and -inf (one scan).

        A column that is not a number (text, dates) is only counted for NULLs.
        """
        parts = []
        for c in columns:
            q = ident(c)
            if self.kind(c)[0] == "other":
                parts += [f"count(*) FILTER (WHERE {q} IS NULL)", "0", "0"]
                continue
            x = f"CAST({q} AS DOUBLE)"
            parts += [
                f"count(*) FILTER (WHERE {x} IS NULL OR isnan({x}))",
                f"count(*) FILTER (WHERE {x} = 'inf'::DOUBLE)",
                f"count(*) FILTER (WHERE {x} = '-inf'::DOUBLE)",
            ]
        row = self._fetch(f"SELECT {', '.join(parts)} FROM {self._from}")[0]
        return {c: tuple(int(v) for v in row[3 * i : 3 * i + 3]) for i, c in enumerate(columns)}  # type: ignore[misc]

    def _changes(self, keys: Sequence[str], columns: Sequence[str], as_number: str | None) -> str:
        """Per group of ``keys``: ``ch{i}`` whether column i takes more than one value.

        ``as_number`` is compared as a double with NULL read as NaN (a missing
        first-treated period is one value, "never").
        """
        inner = [f"{ident(k)} AS k{i}" for i, k in enumerate(keys)]
        for i, c in enumerate(columns):
            v = ident(c)
            if c == as_number:
                v = f"coalesce(CAST({v} AS DOUBLE), 'NaN'::DOUBLE)"
            inner.append(f"{v} AS v{i}")
        flags = [f"min(v{i}) IS DISTINCT FROM max(v{i}) AS ch{i}" for i in range(len(columns))]
        group = ", ".join(f"k{i}" for i in range(len(keys)))
        return (
            f"SELECT {group}, {', '.join(flags)} FROM "
            f"(SELECT {', '.join(inner)} FROM {self._from}) GROUP BY {group}"
        )

    def changing(
        self, keys: Sequence[str], columns: Sequence[str], as_number: str | None = None
    ) -> list[int]:
        """Per column: the groups of ``keys`` (units) in which it changes."""
        sub = self._changes(keys, columns, as_number)
        counts = ", ".join(f"count(*) FILTER (WHERE ch{i})" for i in range(len(columns)))
        return [int(v) for v in self._fetch(f"SELECT {counts} FROM ({sub})")[0]]

    def changing_examples(
        self,
        keys: Sequence[str],
        columns: Sequence[str],
        which: int,
        limit: int,
        as_number: str | None = None,
    ) -> list[tuple[Any, ...]]:
        """The first ``limit`` groups (sorted by the keys) in which column ``which`` changes."""
        sub = self._changes(keys, columns, as_number)
        group = ", ".join(f"k{i}" for i in range(len(keys)))
        rows = self._fetch(
            f"SELECT {group} FROM ({sub}) WHERE ch{int(which)} ORDER BY {group} LIMIT {int(limit)}"
        )
        return [tuple(r) for r in rows]

    def _numbered(self, columns: Sequence[str]) -> str:
        """The columns with each row's position in the data (:data:`ROW`)."""
        sel = ", ".join(ident(c) for c in dict.fromkeys(columns))
        return f"(SELECT {sel}, row_number() OVER () AS {ROW} FROM {self._from})"

    def groups(self, key: str, *, first_seen: bool = False) -> list[tuple[Any, int]]:
        """The distinct values of ``key`` and their rows, numbered for :meth:`fetch`.

        Sorted by value, or with ``first_seen`` by first appearance in the rows.
        """
        k = ident(key)
        if first_seen:
            rank = "min(__row)"
            src = self._numbered([key])
        else:
            rank, src = k, self._from
        self._execute(
            f"CREATE OR REPLACE TEMP TABLE {GROUPS} AS SELECT {k} AS v, count(*) AS n, "
            f"row_number() OVER (ORDER BY {rank}) - 1 AS idx FROM {src} GROUP BY {k}"
        )
        rows = self._fetch(f"SELECT v, n FROM {GROUPS} ORDER BY idx")
        return [(r[0], int(r[1])) for r in rows]

    def first_seen(self, keys: Sequence[str], limit: int | None = None) -> list[tuple[Any, ...]]:
        """Per distinct combination of ``keys``: its values, rows and first row, in the
        order the combinations first appear (the first ``limit`` of them)."""
        names = ", ".join(ident(k) for k in keys)
        cut = "" if limit is None else f" LIMIT {int(limit)}"
        rows = self._fetch(
            f"SELECT {names}, count(*) AS n, min({ROW}) AS f FROM {self._numbered(keys)} "
            f"GROUP BY {names} ORDER BY f{cut}"
        )
        return [tuple(r) for r in rows]

    def fetch(
        self,
        key: str,
        first: int,
        last: int,
        columns: Sequence[str],
        *,
        order: Sequence[str] = (),
        numbered: bool = False,
    ) -> Any:
        """The rows of groups ``first`` .. ``last`` of :meth:`groups` as an Arrow table.

        Columns: :data:`GROUP` (the group's number), ``columns`` as stored, and
        with ``numbered`` :data:`ROW`. Rows are sorted by group, then by
        ``order`` (or, with ``numbered``, in the order of the data).
        """
        used = list(dict.fromkeys([key, *columns]))
        src = self._numbered(used) if numbered else self._from
        sel = [f"g.idx AS {GROUP}"] + [f"s.{ident(c)}" for c in dict.fromkeys(columns)]
        sort = [GROUP] + ([ROW] if numbered else [f"s.{ident(c)}" for c in order])
        if numbered:
            sel.append(f"s.{ROW}")
        sql = (
            f"SELECT {', '.join(sel)} FROM {src} AS s JOIN {GROUPS} AS g ON s.{ident(key)} = g.v "
            f"WHERE g.idx BETWEEN {int(first)} AND {int(last)} ORDER BY {', '.join(sort)}"
        )
        return self._execute(sql, arrow=True)

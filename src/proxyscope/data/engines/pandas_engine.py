"""The in-memory engine: a pandas DataFrame (or files read into one).

Groups are found once by factorizing the key columns; counts, means and
covariances are per-group sums (``numpy.bincount``) of metric values shifted
by their reference, covariances in two passes (centre, then cross-products
with the usual correction term), so nothing cancels catastrophically. The
caller's frame is only read. The cluster aggregate is the same sums per
(cell, arm, cluster[, exposure]) group, counts and means only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from proxyscope.data.engines import (
    ARM,
    ClusterAggregate,
    Factor,
    N,
    cluster_labels,
    combine,
    count_col,
    cov_col,
    key_col,
    mean_col,
    pairs,
)
from proxyscope.data.sources import (
    Files,
    is_pathlike,
    is_spark_frame,
    read_error,
    resolve_files,
    wrong_type,
)

#: Rows scanned for a reference value before looking through the whole column.
HEAD = 1000


class PandasSource:
    """A pandas DataFrame, or Parquet/CSV files read into one."""

    engine = "pandas"

    def __init__(self, data: Any, *, owner: str = "summarize") -> None:
        self._files: Files | None = None
        self._frame: pd.DataFrame | None = None
        if isinstance(data, pd.DataFrame):
            self._frame = data
        elif isinstance(data, Files):
            self._files = data
        elif is_pathlike(data):
            self._files = resolve_files(data, owner=owner)
        elif is_spark_frame(data):
            raise wrong_type(
                "pandas",
                data,
                "a pandas DataFrame or Parquet/CSV path(s)",
                " Use engine='spark' for a Spark DataFrame.",
            )
        else:
            raise wrong_type("pandas", data, "a pandas DataFrame or Parquet/CSV path(s)")
        self._wanted: list[str] | None = None

    # -- schema ------------------------------------------------------------
    def describe(self) -> str:
        return "pandas.DataFrame" if self._files is None else self._files.describe()

    def columns(self) -> list[str]:
        if self._frame is not None:
            return [str(c) for c in self._frame.columns]
        assert self._files is not None
        first = self._files.paths[0]
        if self._files.format == "parquet":
            import pyarrow.parquet as pq

            return list(pq.read_schema(first).names)
        header = pd.read_csv(first, nrows=0, sep=self._files.delimiter)
        return [str(c) for c in header.columns]

    def select(self, columns: Sequence[str]) -> None:
        """Read only these columns (files are read here, once)."""
        self._wanted = list(dict.fromkeys(columns))
        if self._frame is None:
            assert self._files is not None
            parts = [self._read(p) for p in self._files.paths]
            self._frame = parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)

    def frame(self) -> pd.DataFrame:
        """The rows as one DataFrame: the caller's, or the files' selected columns."""
        assert self._frame is not None, "select() reads files first"
        return self._frame

    def _read(self, path: str) -> pd.DataFrame:
        """One file's used columns; a DataError naming the file when it cannot be read."""
        assert self._files is not None
        parquet = self._files.format == "parquet"
        try:
            if parquet:
                return pd.read_parquet(path, columns=self._wanted)
            # Only empty fields are missing, as in DuckDB and Spark ("NA" is a region).
            # Every column is parsed (not usecols): pandas checks the number of fields
            # of each row only then, and would drop the extra fields of a long row.
            frame = pd.read_csv(
                path, sep=self._files.delimiter, keep_default_na=False, na_values=[""]
            )
            assert self._wanted is not None
            return frame.loc[:, list(self._wanted)]
        except (ValueError, OSError) as exc:  # parser, decoding and Arrow errors of this file
            raise read_error(path, "a Parquet file" if parquet else "a CSV file", exc) from None

    def _col(self, column: str) -> pd.Series:
        assert self._frame is not None, "select() reads files first"
        return self._frame[column]

    def kind(self, column: str) -> tuple[str, str]:
        s = self._col(column)
        if pd.api.types.is_bool_dtype(s.dtype):
            return "bool", str(s.dtype)
        if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_complex_dtype(s.dtype):
            return "numeric", str(s.dtype)
        if s.dtype == object:
            # Python numbers in an object column: DuckDB reads them as numbers too.
            inferred = pd.api.types.infer_dtype(s, skipna=True)
            if inferred in ("integer", "floating", "mixed-integer-float", "decimal"):
                return "numeric", str(s.dtype)
            if inferred == "boolean":
                return "bool", str(s.dtype)
        return "other", str(s.dtype)

    def nonnumeric_example(self, column: str) -> Any:
        s = self._col(column)
        conv = pd.to_numeric(s, errors="coerce")
        bad = np.flatnonzero((conv.isna() & s.notna()).to_numpy())
        return s.iloc[int(bad[0])] if len(bad) else None

    # -- small queries -----------------------------------------------------
    def distinct(self, column: str, limit: int) -> list[Any]:
        return list(pd.unique(self._col(column).to_numpy())[:limit])

    def values_per_key(self, key: str, column: str, limit: int) -> list[tuple[Any, Any]]:
        pairs = pd.DataFrame({"k": self._col(key), "v": self._col(column)}).drop_duplicates()
        pairs = pairs.groupby("k", dropna=False, sort=False).head(limit)
        return list(zip(pairs["k"].tolist(), pairs["v"].tolist(), strict=True))

    def _values(self, column: str) -> np.ndarray:
        """The column as float64 (a new array or a read-only use of the caller's)."""
        return self._col(column).to_numpy(dtype=np.float64, na_value=np.nan)

    def first_finite(self, columns: Sequence[str]) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for c in columns:
            x = self._values(c)
            hit = np.flatnonzero(np.isfinite(x[:HEAD]))
            if not len(hit):
                hit = np.flatnonzero(np.isfinite(x))
            out[c] = float(x[hit[0]]) if len(hit) else None
        return out

    def bad_counts(self, columns: Sequence[str]) -> dict[str, tuple[int, int]]:
        out = {}
        for c in columns:
            s = self._col(c)
            kind, _ = self.kind(c)
            if kind == "other":
                out[c] = (int(s.isna().sum()), 0)
                continue
            x = self._values(c)
            out[c] = (int(np.isnan(x).sum()), int(np.isinf(x).sum()))
        return out

    # -- the aggregate -----------------------------------------------------
    def aggregate(
        self,
        keys: Sequence[str],
        treatment: str,
        metrics: Sequence[str],
        refs: Sequence[float],
        drop_missing: bool,
    ) -> pd.DataFrame:
        # inf - inf and overflow give NaN, which summarize then diagnoses: no warnings.
        with np.errstate(invalid="ignore", over="ignore"):
            return self._aggregate(keys, treatment, metrics, refs, drop_missing)

    def _groups(
        self, group_cols: Sequence[str]
    ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], list[np.ndarray]]:
        """Group code per row (in order of first appearance), the first row of each
        group, and each column's codes and distinct values."""
        codes: list[np.ndarray] = []
        uniques: list[np.ndarray] = []
        for c in group_cols:
            fac = pd.factorize(self._col(c), use_na_sentinel=False)
            codes.append(np.asarray(fac[0], dtype=np.int64))
            uniques.append(np.asarray(pd.Series(fac[1]).astype(object), dtype=object))
        g, first = combine([Factor(c, u) for c, u in zip(codes, uniques, strict=True)])
        return g, first, codes, uniques

    def _shifted(
        self, g: np.ndarray, metrics: Sequence[str], refs: Sequence[float], drop_missing: bool
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Each metric minus its reference (new arrays), without missing rows if asked."""
        xs = [np.subtract(self._values(c), r) for c, r in zip(metrics, refs, strict=True)]
        if drop_missing:
            keep = ~np.logical_or.reduce([np.isnan(x) for x in xs])
            g = g[keep]
            xs = [x[keep] for x in xs]
        return g, xs

    def _aggregate(
        self,
        keys: Sequence[str],
        treatment: str,
        metrics: Sequence[str],
        refs: Sequence[float],
        drop_missing: bool,
    ) -> pd.DataFrame:
        g, first, codes, uniques = self._groups([*keys, treatment])
        n_groups = len(first)
        g, xs = self._shifted(g, metrics, refs, drop_missing)

        out: dict[str, Any] = {}
        for i, (code, uniq) in enumerate(zip(codes, uniques, strict=True)):
            out[key_col(i) if i < len(keys) else ARM] = uniq[code[first]]
        n = np.bincount(g, minlength=n_groups)
        out[N] = n
        means, sums = [], []
        for i, x in enumerate(xs):
            nan = np.isnan(x)
            out[count_col(i)] = n - np.bincount(g, weights=nan, minlength=n_groups).astype(np.int64)
            s = np.bincount(g, weights=x, minlength=n_groups)
            m = _divide(s, n)
            out[mean_col(i)] = m
            means.append(m)
        # Centre in place: each x is this function's own array, never the caller's.
        centred = xs
        for d, m in zip(centred, means, strict=True):
            d -= m[g]
            sums.append(np.bincount(g, weights=d, minlength=n_groups))
        for i, j in pairs(len(xs)):
            sp = np.bincount(g, weights=centred[i] * centred[j], minlength=n_groups)
            sp = sp - _divide(sums[i] * sums[j], n)
            out[cov_col(i, j)] = _divide(sp, n - 1)
        # Groups emptied by drop_missing are absent, as in the SQL engines.
        return pd.DataFrame(out)[n > 0].reset_index(drop=True)

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
        group_cols, names = cluster_labels(keys, treatment, cluster, exposure)
        with np.errstate(invalid="ignore", over="ignore"):
            g, first, codes, uniques = self._groups(group_cols)
            n_groups = len(first)
            g, xs = self._shifted(g, metrics, refs, drop_missing)
            n = np.bincount(g, minlength=n_groups)
            counts = np.empty((n_groups, len(xs)), dtype=np.int64)
            means = np.empty((n_groups, len(xs)))
            for i, x in enumerate(xs):
                nan = np.isnan(x)
                counts[:, i] = n - np.bincount(g, weights=nan, minlength=n_groups).astype(np.int64)
                means[:, i] = _divide(np.bincount(g, weights=x, minlength=n_groups), n)
        labels = {
            name: Factor(code[first], uniq)
            for name, code, uniq in zip(names, codes, uniques, strict=True)
        }
        # Groups emptied by drop_missing are absent, as in the SQL engines.
        return ClusterAggregate(labels, n, counts, means).take(n > 0)

    def close(self) -> None:
        pass


def _divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b, NaN where b <= 0 (no warnings)."""
    out = np.full(np.shape(a), np.nan)
    np.divide(a, b, out=out, where=np.asarray(b) > 0)
    return out

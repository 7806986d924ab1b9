"""Checks of the ASOS file's values and of :func:`~proxyscope.datasets.asos.load_asos`'s
arguments, each raising a package error that names the file's column (and the row or
experiment) instead of a reader's or numpy's traceback."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import pandas as pd

from proxyscope.errors import DataError, DataTypeError, ParameterError

OWNER = "load_asos"
#: The file's columns that hold numbers (every one but experiment_id).
NUMBER_COLUMNS = (
    "variant_id",
    "metric_id",
    "time_since_start",
    "count_c",
    "count_t",
    "mean_c",
    "mean_t",
    "variance_c",
    "variance_t",
)


#: The id columns: whole numbers, never missing.
ID_COLUMNS = ("variant_id", "metric_id")


def check_raw(raw: pd.DataFrame, where: str) -> None:
    """The ASOS columns hold numbers (ids whole and present, nothing infinite)."""
    for c in NUMBER_COLUMNS:
        s = raw[c]
        if not pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype):
            conv = pd.to_numeric(s, errors="coerce")
            bad = s[conv.isna() & s.notna()]
            ex = f" (e.g. the value {bad.iloc[0]!r})" if len(bad) else ""
            raise DataTypeError(
                f"Column {c!r} of the ASOS file {where!r} must hold numbers; found type "
                f"{s.dtype}{ex}."
            )
        x = s.to_numpy(dtype=float, na_value=np.nan)
        n_inf = int(np.isinf(x).sum())
        if n_inf:
            raise DataError(
                f"Column {c!r} of the ASOS file {where!r} has {n_inf} infinite values; "
                "expected finite numbers."
            )
        if c in ID_COLUMNS:
            bad_id = np.isnan(x) | (x != np.floor(x))
            if bad_id.any():
                i = int(np.flatnonzero(bad_id)[0])
                raise DataError(
                    f"Column {c!r} of the ASOS file {where!r} must hold whole-number ids; "
                    f"row {i} holds {float(x[i])!r} ({int(bad_id.sum())} rows in all)."
                )


def variant_list(variants: Any) -> list[int]:
    """The 'variants' parameter: a list of whole-number variant ids."""
    vals = list(variants) if isinstance(variants, list | tuple | np.ndarray | pd.Index) else None
    if vals is None or any(
        isinstance(v, bool) or not isinstance(v, numbers.Integral | np.integer) for v in vals
    ):
        raise ParameterError(
            f"The 'variants' parameter of {OWNER} must be a list of variant ids (integers). "
            f"Got {variants!r} instead."
        )
    return [int(v) for v in vals]


def check_scaled(table: pd.DataFrame, scale: str) -> None:
    """Every scaled mean and variance is finite (a huge variance over a tiny control
    mean squared overflows); named by the file's column and the experiment."""
    for c in ("mean_early", "mean_final", "var_early", "var_final"):
        x = table[c].to_numpy(dtype=float)
        bad = np.flatnonzero(~np.isfinite(x))
        if len(bad):
            i = int(bad[0])
            stat, read = c.split("_")
            arm = str(table["arm"].iloc[i])
            source = f"{'mean' if stat == 'mean' else 'variance'}_{arm[0]}"
            by = " divided by the control mean" + ("" if stat == "mean" else " squared")
            raise DataError(
                f"{OWNER}: the {read} read of experiment {table['experiment'].iloc[i]!r} "
                f"({arm} arm) gives {x[i]} from column {source!r}"
                f"{by if scale == 'relative' else ''}: it overflows double precision. "
                "Check the file's values (or use scale='absolute')."
            )

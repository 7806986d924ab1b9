"""The weights ledger's inputs, checked where they enter (paths, tables, sums, metadata)."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from proxyscope.errors import (
    ColumnError,
    DataError,
    DataTypeError,
    ParameterError,
    suggestion,
)

#: How far a scope's weights may sum from 1.
SUM_TOLERANCE = 1e-6


# ----------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------


def checked_path(path: Any, *, must_exist: bool) -> Path:
    """The ledger file named by ``path``, refused early when it cannot be one.

    Refuses what DuckDB would misread or what would write somewhere unexpected:
    in-memory and remote names, NUL characters, text that is not valid Unicode,
    folders and other non-files, links to nothing, a parent that is a file.
    """
    if not isinstance(path, str | os.PathLike):
        raise DataTypeError(
            f"The 'path' parameter must be a file path (str or os.PathLike). "
            f"Got {type(path).__name__} instead."
        )
    text = os.fspath(path)
    if not isinstance(text, str) or not text.strip() or text.strip().startswith(":memory:"):
        raise ParameterError(
            f"The 'path' parameter must name a ledger file on disk. Got {text!r} instead."
        )
    why = _unusable_path_text(text)
    if why:
        raise ParameterError(
            f"The 'path' parameter must name a local ledger file. Got {text!r}, which {why}."
        )
    target = Path(text).expanduser()
    try:
        _check_file_kind(target, text, must_exist=must_exist)
    except OSError as exc:  # e.g. a name longer than the file system allows
        raise ParameterError(
            f"The 'path' parameter must name a ledger file the system can open. Got {text!r}: "
            f"{exc.strerror or exc}."
        ) from exc
    return target


# A URL (``s3://...``) or a DuckDB connection prefix (``md:...``) is not a local file.
_REMOTE = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]*://|(?:md|motherduck):)")


def _unusable_path_text(text: str) -> str | None:
    """Why DuckDB could not open ``text`` as a local file, or None."""
    if "\x00" in text:
        return "contains a NUL character"
    bad = _lone_surrogate(text)
    if bad is not None:
        return f"is not valid Unicode (a lone surrogate at position {bad})"
    if _REMOTE.match(text):
        return "is a URL or a remote database name"
    return None


def _check_file_kind(target: Path, text: str, *, must_exist: bool) -> None:
    """Refuse a link to nothing, a folder, a non-regular file or a missing parent folder."""
    if target.is_symlink() and not target.exists():
        raise ParameterError(
            f"The 'path' parameter must name a weights ledger. Got {text!r}, a symbolic link to "
            f"{os.readlink(target)!r}, which does not exist (or is a loop of links). Point the "
            "link at an existing ledger, or remove it."
        )
    if target.is_dir():
        raise ParameterError(
            f"The 'path' parameter must name a ledger file. Got {text!r}, which is a directory."
        )
    if target.exists() and not target.is_file():
        raise ParameterError(
            f"The 'path' parameter must name a ledger file. Got {text!r}, which is not a "
            "regular file (a device, socket or pipe)."
        )
    if must_exist:
        if not target.exists():
            raise ParameterError(
                f"The 'path' parameter must name an existing weights ledger. "
                f"Got {text!r}, which does not exist."
            )
        return
    for parent in target.absolute().parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise ParameterError(
                    f"The 'path' parameter must name a ledger file in a folder. Got {text!r}, "
                    f"but {str(parent)!r} exists and is not a folder."
                )
            return


def _lone_surrogate(text: str) -> int | None:
    """The position of the first lone surrogate in ``text`` (it has no UTF-8 form), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return int(exc.start)
    return None


def checked_timeout(timeout: Any) -> float:
    ok = isinstance(timeout, Real) and not isinstance(timeout, bool)
    if not ok or not math.isfinite(float(timeout)) or float(timeout) < 0:
        raise ParameterError(
            f"The 'timeout' parameter must be a finite number of seconds >= 0. "
            f"Got {timeout!r} instead."
        )
    return float(timeout)


def check_text(value: Any, *, param: str, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        need = "a non-empty string" if required else "a non-empty string or None"
        raise ParameterError(f"The {param!r} parameter must be {need}. Got {value!r} instead.")
    bad = _lone_surrogate(value)
    if bad is not None:
        raise ParameterError(
            f"The {param!r} parameter must be valid Unicode text to be stored in the ledger. "
            f"Got {_clip(value)}, which has a lone surrogate {value[bad]!r} at position {bad}."
        )
    return value


def _clip(value: str, limit: int = 80) -> str:
    """``repr`` of a possibly huge string, shortened for a message."""
    return repr(value) if len(value) <= limit else f"{value[:limit]!r}... ({len(value)} characters)"


def checked_meta(
    *,
    kind: str,
    data_fingerprint: Any,
    config_hash: Any,
    ci: Any,
    who: Any,
    why: Any,
    note: Any,
    period: Any = None,
) -> dict[str, Any]:
    override = kind == "override"
    if ci is not None:
        bad = not isinstance(ci, Real) or isinstance(ci, bool)
        if bad or not 0.0 < float(ci) < 1.0:
            raise ParameterError(
                f"The 'ci' parameter must be a probability in (0, 1) or None. Got {ci!r} instead."
            )
        ci = float(ci)
    return {
        "kind": kind,
        "ci": ci,
        "data_fingerprint": check_text(data_fingerprint, param="data_fingerprint", required=False),
        "config_hash": check_text(config_hash, param="config_hash", required=False),
        "who": check_text(who, param="who", required=override),
        "why": check_text(why, param="why", required=override),
        "note": check_text(note, param="note", required=False),
        "period": check_text(period, param="period", required=False),
    }


def checked_timestamp(timestamp: Any) -> datetime | None:
    if timestamp is None:
        return None
    if not isinstance(timestamp, datetime) or pd.isna(timestamp):
        raise DataTypeError(
            f"The 'timestamp' parameter must be a datetime or None. Got {timestamp!r} instead."
        )
    if isinstance(timestamp, pd.Timestamp):
        timestamp = timestamp.to_pydatetime(warn=False)
    if timestamp.tzinfo is None or timestamp.utcoffset() is None:
        return timestamp.replace(tzinfo=UTC)
    return timestamp.astimezone(UTC)


def override_frame(weights: Any, scope: str) -> pd.DataFrame:
    if isinstance(weights, pd.DataFrame):
        if "scope" in weights.columns:
            if scope != "global":
                raise ParameterError(
                    "The 'scope' parameter of override_weights must be left at 'global' when "
                    f"the 'weights' frame has a 'scope' column. Got {scope!r} instead."
                )
            return weights
        missing = [c for c in ("proxy", "weight") if c not in weights.columns]
        if missing:
            have = [str(c) for c in weights.columns]
            raise ColumnError(
                f"The 'weights' frame of override_weights must have columns proxy, weight "
                f"(and optionally scope); it is missing {', '.join(map(repr, missing))} "
                f"and has {have}.{''.join(suggestion(m, have) for m in missing)}"
            )
        # Object dtype: pandas' own string dtype cannot even hold text that is not
        # valid Unicode, and checked_table refuses such names with a clear message.
        proxies = pd.Series(weights["proxy"].to_numpy(), index=weights.index, dtype=object)
        return pd.DataFrame({"scope": scope, "proxy": proxies, "weight": weights["weight"]})
    if isinstance(weights, pd.Series | Mapping):
        items = list(weights.items())
        if not items:
            raise ParameterError(
                "The 'weights' parameter of override_weights must give at least one proxy. "
                "Got an empty mapping."
            )
        for proxy, value in items:
            if not isinstance(value, Real) or isinstance(value, bool):
                raise DataTypeError(
                    f"The 'weights' parameter of override_weights must map proxy names to "
                    f"numbers. Got {value!r} for proxy {proxy!r}."
                )
        return pd.DataFrame(
            {
                "scope": [scope] * len(items),
                "proxy": pd.Series([p for p, _ in items], dtype=object),
                "weight": [float(v) for _, v in items],
            }
        )
    raise DataTypeError(
        "The 'weights' parameter of override_weights must be a mapping of proxy to weight, "
        f"a pandas Series, or a DataFrame with columns proxy, weight[, scope]. "
        f"Got {type(weights).__name__} instead."
    )


def checked_table(table: Any, *, param: str) -> pd.DataFrame:
    """A fresh, validated frame of value rows (never a view of the caller's)."""
    if not isinstance(table, pd.DataFrame):
        raise DataTypeError(
            f"The {param!r} parameter must be a pandas DataFrame with columns scope, proxy, "
            f"weight[, weight_lo, weight_hi]. Got {type(table).__name__} instead."
        )
    missing = [c for c in ("scope", "proxy", "weight") if c not in table.columns]
    if missing:
        have = [str(c) for c in table.columns]
        hints = "".join(suggestion(m, have) for m in missing)
        raise ColumnError(
            f"The {param!r} parameter is missing column(s) {', '.join(map(repr, missing))}; "
            f"it has {have}.{hints}"
        )
    if table.columns.duplicated().any():
        dup = sorted({str(c) for c in table.columns[table.columns.duplicated()]})
        raise ColumnError(f"The {param!r} parameter has duplicated column(s) {dup}.")
    if len(table) == 0:
        raise DataError(f"The {param!r} parameter must have at least one row. Got an empty frame.")

    out: dict[str, Any] = {}
    for col in ("scope", "proxy"):
        values = table[col].tolist()
        for value in values:
            if not isinstance(value, str) or not value.strip():
                raise DataError(
                    f"The {param!r} parameter's {col!r} column must hold non-empty strings. "
                    f"Found {value!r}."
                )
            bad = _lone_surrogate(value)
            if bad is not None:
                raise DataError(
                    f"The {param!r} parameter's {col!r} column must hold valid Unicode text. "
                    f"Found {_clip(value)}, which has a lone surrogate {value[bad]!r} at "
                    f"position {bad}."
                )
        out[col] = values
    labels = list(zip(out["scope"], out["proxy"], strict=True))
    for col in ("weight", "weight_lo", "weight_hi"):
        if col not in table.columns:
            out[col] = np.full(len(table), np.nan)
            continue
        try:
            numbers = pd.to_numeric(table[col], errors="raise").to_numpy(
                dtype=float, na_value=np.nan
            )
        except (TypeError, ValueError) as exc:
            raise DataTypeError(
                f"The {param!r} parameter's {col!r} column must be numeric. "
                f"Found dtype {table[col].dtype}."
            ) from exc
        out[col] = numbers.copy()
    weight, lo, hi = out["weight"], out["weight_lo"], out["weight_hi"]
    _check_range(weight, labels, param=param, col="weight", allow_nan=False)
    _check_range(lo, labels, param=param, col="weight_lo", allow_nan=True)
    _check_range(hi, labels, param=param, col="weight_hi", allow_nan=True)
    crossed = np.flatnonzero(lo > hi)
    if crossed.size:
        i = int(crossed[0])
        raise DataError(
            f"The {param!r} parameter must have weight_lo <= weight_hi; scope "
            f"{labels[i][0]!r}, proxy {labels[i][1]!r} has [{float(lo[i])!r}, {float(hi[i])!r}]."
        )
    seen: set[tuple[str, str]] = set()
    for label in labels:
        if label in seen:
            raise DataError(
                f"The {param!r} parameter must have one row per (scope, proxy); "
                f"scope {label[0]!r}, proxy {label[1]!r} appears more than once."
            )
        seen.add(label)
    return pd.DataFrame(out, columns=["scope", "proxy", "weight", "weight_lo", "weight_hi"])


def _check_range(
    values: np.ndarray, labels: list[tuple[str, str]], *, param: str, col: str, allow_nan: bool
) -> None:
    nan = np.isnan(values)
    bad = ~nan & ~((values >= 0.0) & (values <= 1.0))
    if not allow_nan:
        bad |= nan
    where = np.flatnonzero(bad)
    if where.size:
        i = int(where[0])
        allowed = "finite and in [0, 1] (or NaN)" if allow_nan else "finite and in [0, 1]"
        raise DataError(
            f"The {param!r} parameter's {col!r} values must be {allowed}; scope "
            f"{labels[i][0]!r}, proxy {labels[i][1]!r} has {float(values[i])!r}."
        )


def check_sums(rows: pd.DataFrame, *, param: str) -> None:
    sums = rows.groupby("scope", sort=True)["weight"].sum()
    for scope, total in sums.items():
        if abs(float(total) - 1.0) > SUM_TOLERANCE:
            parts = rows.loc[rows["scope"] == scope]
            shown = ", ".join(
                f"{p}={w:g}" for p, w in zip(parts["proxy"], parts["weight"], strict=True)
            )
            raise ParameterError(
                f"The {param!r} parameter's weights must sum to 1 (within {SUM_TOLERANCE:g}) in "
                f"each scope; scope {scope!r} sums to {float(total):.10g} ({shown})."
            )


# ----------------------------------------------------------------------------
# Storage

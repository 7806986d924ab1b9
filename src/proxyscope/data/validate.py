"""Checks on the arguments of :func:`proxyscope.summarize` and friends.

Everything here runs before any data is read: column roles, directions,
``min_users_per_arm``, the engine name, and the treatment-value rule. Checks
that need the data (missing columns, types, NaN, arms) are driven from
:mod:`proxyscope.data.summarize` through each engine's queries, and their
messages are built here so all engines word them identically.
"""

from __future__ import annotations

import math
import numbers
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from proxyscope import dims
from proxyscope.data.designs import OPTIONAL_VARIABLES
from proxyscope.errors import (
    ColumnError,
    DataError,
    DataTypeError,
    ParameterError,
    check_one_of,
    suggestion,
)
from proxyscope.options import DIRECTIONS

#: Names a segment column may not take: they are dimensions, coordinates or
#: variables of the CellEffects dataset (the optional ones included).
RESERVED = frozenset(
    {
        *OPTIONAL_VARIABLES,
        dims.DESIGN,
        dims.CELL,
        dims.EXPERIMENT,
        dims.SEGMENT,
        dims.METRIC,
        dims.METRIC_,
        dims.PROXY,
        dims.PROXY_,
        dims.SEGMENT_LABEL,
        dims.EFFECT,
        dims.NOISE_COV,
        dims.N_TREAT,
        dims.N_CONTROL,
    }
)

#: Treatment-column values recognised without ``treated_value`` (lower case).
CONTROL_WORDS = frozenset({"control", "ctrl", "baseline"})
TREATMENT_WORDS = frozenset({"treatment", "treated", "treat", "test", "variant"})

#: Most names shown when listing available columns or offending values.
SHOW = 12


@dataclass(frozen=True)
class Roles:
    """The columns of a summarize call and what each one is for."""

    experiment: str
    treatment: str
    outcome: str
    proxies: tuple[str, ...]
    segments: tuple[str, ...]
    directions: dict[str, str] = field(default_factory=dict)
    cluster: str | None = None
    exposure: str | None = None

    @property
    def metrics(self) -> tuple[str, ...]:
        """Outcome first, then the proxies."""
        return (self.outcome, *self.proxies)

    @property
    def keys(self) -> tuple[str, ...]:
        """The cell key: experiment, then the segment columns."""
        return (self.experiment, *self.segments)

    @property
    def labels(self) -> tuple[str, ...]:
        """The cluster and exposure columns that are given (read as labels, like keys)."""
        return tuple(c for c in (self.cluster, self.exposure) if c is not None)

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column read, each once."""
        return (*self.keys, self.treatment, *self.labels, *self.metrics)

    def role_of(self, column: str) -> str:
        """The parameter that names ``column`` (for messages)."""
        for role in ("experiment", "treatment", "outcome", "cluster", "exposure"):
            if getattr(self, role) == column:
                return role
        if column in self.proxies:
            return "proxies"
        return "segments"


def name_list(value: Any, *, param: str, owner: str, allow_empty: bool) -> tuple[str, ...]:
    """A list of column names; a single string is taken as a list of one."""
    if isinstance(value, str):
        out: tuple[Any, ...] = (value,)
    elif isinstance(value, Iterable) and not isinstance(value, Mapping | bytes):
        out = tuple(value)
    else:
        raise DataTypeError(
            f"The {param!r} parameter of {owner} must be a list of column names; "
            f"got {type(value).__name__}."
        )
    for v in out:
        if not isinstance(v, str) or not v:
            raise DataTypeError(
                f"The {param!r} parameter of {owner} must hold non-empty strings; got {v!r}."
            )
        check_chars(v, param=param, owner=owner)
    if not out and not allow_empty:
        raise ParameterError(
            f"The {param!r} parameter of {owner} needs at least one column name; got an empty list."
        )
    return out


def column_name(value: Any, *, param: str, owner: str) -> str:
    """One column name."""
    if not isinstance(value, str) or not value:
        raise DataTypeError(
            f"The {param!r} parameter of {owner} must be a column name (a non-empty string); "
            f"got {value!r}."
        )
    check_chars(value, param=param, owner=owner)
    return value


def check_chars(name: str, *, param: str, owner: str) -> None:
    """A name holds no control character (NUL, newline, ...) nor a lone surrogate.

    Such names cannot be stored (NetCDF drops a trailing NUL, UTF-8 cannot
    encode a surrogate), so a metric or segment column would not match itself
    after building or saving.
    """
    for ch in name:
        if unicodedata.category(ch) in ("Cc", "Cs"):
            raise ParameterError(
                f"The {param!r} parameter of {owner} names the column {name!r}, which holds "
                f"the control character {ch!r}; such names cannot be stored. Rename the "
                "column."
            )


def check_roles(
    *,
    experiment: Any,
    treatment: Any,
    outcome: Any,
    proxies: Any,
    segments: Any,
    directions: Any,
    owner: str,
    treatment_param: str = "treatment",
    cluster: Any = None,
    exposure: Any = None,
) -> Roles:
    """Check names and roles; no data is read.

    Raises
    ------
    ColumnError
        A column is given two roles, or a segment column has a reserved name.
    ParameterError, DataTypeError
        A name or a direction is malformed, or ``exposure`` is given without
        ``cluster``.
    """
    exp = column_name(experiment, param="experiment", owner=owner)
    trt = column_name(treatment, param=treatment_param, owner=owner)
    out = column_name(outcome, param="outcome", owner=owner)
    prx = name_list(proxies, param="proxies", owner=owner, allow_empty=False)
    seg = name_list(segments, param="segments", owner=owner, allow_empty=True)
    clu = None if cluster is None else column_name(cluster, param="cluster", owner=owner)
    xpo = None if exposure is None else column_name(exposure, param="exposure", owner=owner)
    if xpo is not None and clu is None:
        raise ParameterError(
            f"The 'exposure' parameter of {owner} needs 'cluster' too: direct and spillover "
            "effects are estimated with cluster-robust covariances. Got exposure="
            f"{xpo!r} and cluster=None; pass cluster= the randomization unit's column."
        )

    seen: dict[str, str] = {}
    for role, names in (
        ("experiment", (exp,)),
        (treatment_param, (trt,)),
        ("outcome", (out,)),
        ("proxies", prx),
        ("segments", seg),
        ("cluster", () if clu is None else (clu,)),
        ("exposure", () if xpo is None else (xpo,)),
    ):
        for name in names:
            if name in seen:
                first = seen[name]
                where = f"twice in {role!r}" if first == role else f"as {first!r} and {role!r}"
                raise ColumnError(
                    f"Column {name!r} is given two roles: it appears {where}; "
                    "each column may play one role only."
                )
            seen[name] = role
    for s in seg:
        if s in RESERVED:
            raise ColumnError(
                f"Segment column {s!r} has a name reserved by CellEffects "
                f"({', '.join(sorted(RESERVED))}); rename it before summarizing."
            )
    dirs = check_directions(directions, prx, out, owner=owner)
    return Roles(exp, trt, out, prx, seg, dirs, cluster=clu, exposure=xpo)


def check_directions(
    directions: Any, proxies: Sequence[str], outcome: str, *, owner: str
) -> dict[str, str]:
    """Good direction per proxy, "higher" unless told otherwise."""
    if directions is None:
        return dict.fromkeys(proxies, "higher")
    if not isinstance(directions, Mapping):
        raise DataTypeError(
            f"The 'directions' parameter of {owner} must be a dict "
            f"{{proxy: 'higher' | 'lower'}}; got {type(directions).__name__}."
        )
    for key, value in directions.items():
        if key == outcome:
            raise ParameterError(
                f"The 'directions' parameter of {owner} sets a direction for the outcome "
                f"{key!r}; directions apply to proxies only (negate the outcome column "
                "if lower is better)."
            )
        if key not in proxies:
            raise ParameterError(
                f"The 'directions' parameter of {owner} names {key!r}, which is not a "
                f"proxy; proxies: {list(proxies)}.{suggestion(str(key), proxies)}"
            )
        check_one_of(value, DIRECTIONS, param=f"directions[{key!r}]", owner=owner)
    return {p: str(directions.get(p, "higher")) for p in proxies}


def check_min_users(value: Any, *, owner: str) -> int:
    """``min_users_per_arm`` must be an integer of at least 2 (a variance needs two)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 2:
        raise ParameterError(
            f"The 'min_users_per_arm' parameter of {owner} must be an integer >= 2 "
            f"(a sample variance needs two users). Got {value!r} instead."
        )
    return int(value)


def check_flag(value: Any, *, param: str, owner: str) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise DataTypeError(
            f"The {param!r} parameter of {owner} must be True or False; got {value!r}."
        )
    return bool(value)


# -- messages that need the data ---------------------------------------------


def missing_columns_error(roles: Roles, available: Sequence[str]) -> ColumnError | None:
    """The error for columns absent from the data, or None when all are present."""
    have = set(available)
    parts = []
    for col in roles.columns:
        if col not in have:
            parts.append(
                f"Column {col!r} (given as {roles.role_of(col)!r}) is not in the data."
                + suggestion(col, available)
            )
    if not parts:
        return None
    if not len(available):
        return ColumnError(" ".join(parts) + " The data has no columns.")
    shown = ", ".join(repr(a) for a in list(available)[:SHOW])
    more = f", ... ({len(available)} in all)" if len(available) > SHOW else ""
    return ColumnError(" ".join(parts) + f" Available columns: {shown}{more}.")


def nonnumeric_error(column: str, role: str, found: str, example: Any) -> DataTypeError:
    ex = "" if example is None else f" (e.g. the value {example!r})"
    return DataTypeError(
        f"Column {column!r} (given as {role!r}) must be numeric or boolean; found type {found}{ex}."
    )


def scalar(value: Any) -> Any:
    """A plain Python scalar (numpy scalars unwrapped)."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def plain(value: Any) -> Any:
    """A JSON-friendly scalar for metadata: numbers, strings, bools and None as they are."""
    v = scalar(value)
    return v if v is None or isinstance(v, bool | int | float | str) else str(v)


def is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN, pd.NA raises in bool() -> handled below
    except TypeError:
        return True


def show_values(values: Sequence[Any]) -> str:
    vals = [scalar(v) for v in values]
    head = ", ".join(repr(v) for v in vals[:SHOW])
    return "[" + head + (", ...]" if len(vals) > SHOW else "]")


def resolve_treated(
    values: Sequence[Any],
    treated_value: Any,
    *,
    column: str,
    more: bool = False,
    param: str = "treatment",
    owner: str = "summarize",
) -> tuple[Any, Any]:
    """Decide which of the two treatment values is the treated arm.

    Parameters
    ----------
    values : sequence
        The distinct non-missing values found (at most a few).
    treated_value : object or None
        What the caller said; None to infer.
    column : str
        The treatment column, for messages.
    more : bool
        True when the engine stopped looking after a few values, so there may
        be more than ``values`` shows.

    Returns
    -------
    (treated, control)

    Raises
    ------
    DataError
        Not exactly two values.
    ParameterError
        ``treated_value`` is not one of them, or it cannot be inferred.
    """
    vals = [scalar(v) for v in values]
    if len(vals) != 2:
        if not vals:
            found = "no non-missing values"
        elif len(vals) == 1:
            found = f"only one value, {vals[0]!r}"
        else:
            found = f"{'more than ' if more else ''}{len(vals)} values, e.g. {show_values(vals)}"
        raise DataError(
            f"Column {column!r} (given as {param!r}) must hold exactly two values "
            f"(control and treatment); found {found}."
        )
    if treated_value is not None:
        tv = scalar(treated_value)
        hits = [v for v in vals if same_value(v, tv)]
        if not hits:
            raise ParameterError(
                f"The 'treated_value' parameter of {owner} must be one of the values of "
                f"column {column!r}: {show_values(vals)}. Got {tv!r} instead."
            )
        treated = hits[0]
        return treated, next(v for v in vals if v is not treated)
    if all(isinstance(v, bool) for v in vals) or _is_zero_one(vals):
        treated = next(v for v in vals if v == 1)
        return treated, next(v for v in vals if v is not treated)
    if all(isinstance(v, str) for v in vals):
        low = [v.strip().lower() for v in vals]
        for i, j in ((0, 1), (1, 0)):
            if low[i] in TREATMENT_WORDS and low[j] in CONTROL_WORDS:
                return vals[i], vals[j]
    raise ParameterError(
        f"Cannot tell which value of column {column!r} is the treatment: found "
        f"{show_values(vals)}; pass treated_value= one of them."
    )


def same_value(a: Any, b: Any) -> bool:
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    if isinstance(a, str) != isinstance(b, str):
        return False
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def _is_zero_one(vals: Sequence[Any]) -> bool:
    nums = [v for v in vals if isinstance(v, numbers.Real) and not isinstance(v, bool)]
    return len(nums) == 2 and sorted(float(v) for v in nums) == [0.0, 1.0]


def missing_values_error(counts: Mapping[str, int], roles: Roles) -> DataError:
    shown = ", ".join(f"{c!r} ({roles.role_of(c)}): {n}" for c, n in counts.items() if n)
    return DataError(
        f"Missing values (NaN/NULL) in the data: {shown} rows; expected none. "
        "Pass dropna=True to drop those rows (they are reported), or fill them first."
    )


def infinite_values_error(counts: Mapping[str, int], roles: Roles) -> DataError:
    shown = ", ".join(f"{c!r} ({roles.role_of(c)}): {n}" for c, n in counts.items() if n)
    return DataError(f"Infinite values in the data: {shown} rows; expected finite numbers.")


def finite_or_none(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None

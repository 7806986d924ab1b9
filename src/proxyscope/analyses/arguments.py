"""The analyses' argument checks, written once (as arviz-stats' ``validate.py``).

Every public analysis checks its arguments here before it computes anything, the
way scikit-learn's parameter validation does: a wrong type is a
:class:`~proxyscope.errors.DataTypeError`, a wrong value a
:class:`~proxyscope.errors.ParameterError`, and each message names the parameter
and the function, what was expected and what was found. Numbers may be Python or
numpy numbers; a bool is never a number here (``True`` is an ``int`` in Python,
but ``ci=True`` is a mistake, not 1).
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from proxyscope.errors import (
    DataTypeError,
    ParameterError,
    check_one_of,
    number_range,
    suggestion,
)

if TYPE_CHECKING:
    from proxyscope.model.fit import ProxyFit

#: Relative tolerance of the symmetry and positive semi-definiteness checks of a
#: covariance matrix (rounding in a matrix the user computed is not an error).
COV_TOL = 1e-10


def _where(param: str, owner: str) -> str:
    return f"The {param!r} parameter of {owner}" if owner else f"The {param!r} parameter"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _kind(value: Any) -> str:
    return type(value).__name__


def is_number(value: Any) -> bool:
    """A real number (Python or numpy), not a bool and not a string."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _to_float(value: Any) -> float:
    """A number as a float; an integer beyond the float range is +-inf (not an error)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def check_fit(fit: Any, owner: str) -> ProxyFit:
    """``fit`` if it is a :class:`~proxyscope.ProxyFit`; a path gets a hint to load it."""
    if isinstance(fit, (str, os.PathLike)):
        raise DataTypeError(
            f"{_where('fit', owner)} must be a fitted model (ProxyFit); got the path "
            f"{os.fspath(fit)!r}. Pass a fit; load it with ps.load({os.fspath(fit)!r})."
        )
    # A ProxyFit exists only once its module is imported; importing it here costs
    # nothing then (and keeps `import proxyscope.analyses...` free of PyMC).
    from proxyscope.model.fit import ProxyFit

    if not isinstance(fit, ProxyFit):
        raise DataTypeError(
            f"{_where('fit', owner)} must be a fitted model (ProxyFit, from "
            f"ProxyModel().fit(...) or ps.load(path)); got {_kind(fit)}."
        )
    return fit


def check_real(
    value: Any,
    param: str,
    owner: str,
    *,
    low: float | None = None,
    high: float | None = None,
    open_low: bool = True,
    open_high: bool = True,
) -> float:
    """``value`` as a finite float within the bounds (open by default)."""
    want = number_range(low, high, open_low=open_low, open_high=open_high)
    if not is_number(value):
        raise DataTypeError(
            f"{_where(param, owner)} must be {want}; got {_kind(value)} {_shown(value)}."
        )
    x = _to_float(value)
    bad = not math.isfinite(x)
    if low is not None:
        bad = bad or x < low or (open_low and x == low)
    if high is not None:
        bad = bad or x > high or (open_high and x == high)
    if bad:
        raise ParameterError(f"{_where(param, owner)} must be {want}; got {_shown(value)}.")
    return x


def check_unit(value: Any, param: str, owner: str) -> float:
    """A probability-like level in the open interval (0, 1)."""
    return check_real(value, param, owner, low=0.0, high=1.0)


def check_int(value: Any, param: str, owner: str, *, low: int = 0) -> int:
    """An integer (Python or numpy, not bool) at least ``low``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise DataTypeError(
            f"{_where(param, owner)} must be an integer >= {low}; got {_kind(value)} "
            f"{_shown(value)}."
        )
    if int(value) < low:
        raise ParameterError(f"{_where(param, owner)} must be an integer >= {low}; got {value!r}.")
    return int(value)


def check_seed(random_seed: Any, owner: str) -> int | None:
    """None (the fit's own seed) or a non-negative integer."""
    if random_seed is None:
        return None
    if isinstance(random_seed, (bool, np.bool_)) or not isinstance(random_seed, numbers.Integral):
        raise DataTypeError(
            f"{_where('random_seed', owner)} must be None or an integer >= 0; got "
            f"{_kind(random_seed)} {_shown(random_seed)}."
        )
    if int(random_seed) < 0:
        raise ParameterError(
            f"{_where('random_seed', owner)} must be None or an integer >= 0; got {random_seed!r}."
        )
    return int(random_seed)


def check_bool(value: Any, param: str, owner: str) -> bool:
    """A bool (Python or numpy): True/False, not 1/0 or "no"."""
    if not isinstance(value, (bool, np.bool_)):
        raise DataTypeError(
            f"{_where(param, owner)} must be True or False; got {_kind(value)} {_shown(value)}."
        )
    return bool(value)


def check_choice(value: Any, allowed: tuple[str, ...], param: str, owner: str) -> str:
    """One of the strings ``allowed`` (a close misspelling gets a suggestion)."""
    if not isinstance(value, str):
        raise DataTypeError(
            f"{_where(param, owner)} must be one of {list(allowed)}; got {_kind(value)} "
            f"{_shown(value)}."
        )
    return str(check_one_of(value, allowed, param=param, owner=owner))


def check_optional_str(value: Any, param: str, owner: str) -> str | None:
    """None or a string."""
    if value is not None and not isinstance(value, str):
        raise DataTypeError(
            f"{_where(param, owner)} must be None or a string; got {_kind(value)} {_shown(value)}."
        )
    return value


def check_optional_path(value: Any, param: str, owner: str) -> Any:
    """None or a file path (str or os.PathLike)."""
    if value is not None and not isinstance(value, (str, os.PathLike)):
        raise DataTypeError(
            f"{_where(param, owner)} must be None or a file path; got {_kind(value)} "
            f"{_shown(value)}."
        )
    return value


def _items(value: Any, param: str, owner: str, what: str) -> list[tuple[str, Any]]:
    """A mapping (or Series) {proxy: number} as (name, value) pairs with known names."""
    if not isinstance(value, (Mapping, pd.Series)):
        raise DataTypeError(
            f"{_where(param, owner)} must be a mapping {{proxy: {what}}}; got {_kind(value)} "
            f"{_shown(value)}."
        )
    return [(str(k), v) for k, v in value.items()]


def _unknown(names: list[str], proxies: tuple[str, ...], param: str, owner: str) -> None:
    unknown = [n for n in names if n not in proxies]
    if unknown:
        raise ParameterError(
            f"{_where(param, owner)} names unknown proxies {unknown}; the fit's proxies are "
            f"{list(proxies)}.{suggestion(unknown[0], proxies)}"
        )


def check_readings(
    fit: ProxyFit, proxy_effects: Any, owner: str, *, every: bool = False
) -> dict[str, float]:
    """Proxy readings {proxy: finite number} naming only the fit's proxies (all of them
    when ``every``); the same proxy given twice (after ``str``) is refused."""
    pairs = _items(proxy_effects, "proxy_effects", owner, "reading")
    names = [n for n, _ in pairs]
    if len(set(names)) < len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise ParameterError(f"{_where('proxy_effects', owner)} gives {twice} twice.")
    _unknown(names, fit.proxies, "proxy_effects", owner)
    if every:
        missing = [p for p in fit.proxies if p not in names]
        if missing:
            raise ParameterError(
                f"{_where('proxy_effects', owner)} needs a reading for every proxy; "
                f"missing {missing}."
            )
    readings: dict[str, float] = {}
    for name, value in pairs:
        if not is_number(value):
            raise DataTypeError(
                f"{_where('proxy_effects', owner)} must map each proxy to a number; got "
                f"{_kind(value)} {_shown(value)} for {name!r}."
            )
        x = _to_float(value)
        if not math.isfinite(x):
            raise ParameterError(
                f"{_where('proxy_effects', owner)} must hold finite numbers; got {value!r} "
                f"for {name!r}."
            )
        readings[name] = x
    return readings


def check_noise(
    fit: ProxyFit,
    readings: Mapping[str, float],
    proxy_se: Any,
    proxy_cov: Any,
    owner: str,
) -> np.ndarray:
    """The readings' sampling covariance (K x K, in the order of ``readings``).

    ``proxy_se``: positive finite standard errors for exactly the proxies read;
    ``proxy_cov``: a finite symmetric positive semi-definite matrix. Either one
    (not both), and neither without readings; zeros (exact readings) when neither.
    """
    k = len(readings)
    if proxy_se is not None and proxy_cov is not None:
        raise ParameterError(f"Give 'proxy_se' or 'proxy_cov' to {owner}, not both.")
    for param, value in (("proxy_se", proxy_se), ("proxy_cov", proxy_cov)):
        if value is not None and k == 0:
            raise ParameterError(
                f"{_where(param, owner)} describes the noise of proxy readings, but no "
                "readings were given (proxy_effects is empty or None); give proxy_effects "
                f"too, or leave {param} out."
            )
    if proxy_cov is not None:
        return _check_cov(proxy_cov, k, owner)
    if proxy_se is None:
        return np.zeros((k, k))
    pairs = _items(proxy_se, "proxy_se", owner, "standard error")
    names = [n for n, _ in pairs]
    _unknown(names, fit.proxies, "proxy_se", owner)
    extra = [n for n in names if n not in readings]
    if extra:
        raise ParameterError(
            f"{_where('proxy_se', owner)} gives standard errors for {extra} without a "
            f"reading of them in proxy_effects (readings: {list(readings)})."
        )
    missing = [p for p in readings if p not in names]
    if missing:
        raise ParameterError(f"{_where('proxy_se', owner)} lacks standard errors for {missing}.")
    given = dict(pairs)
    se = np.empty(k)
    for j, name in enumerate(readings):
        value = given[name]
        if not is_number(value):
            raise DataTypeError(
                f"{_where('proxy_se', owner)} must map each proxy to a number; got "
                f"{_kind(value)} {_shown(value)} for {name!r}."
            )
        x = _to_float(value)
        if not (math.isfinite(x) and x > 0 and math.isfinite(x * x)):
            raise ParameterError(
                f"{_where('proxy_se', owner)} must hold positive finite standard errors; got "
                f"{value!r} for {name!r}. (For a reading without sampling error leave "
                "proxy_se out, or give proxy_cov.)"
            )
        se[j] = x
    return np.diag(se**2)


def _check_cov(proxy_cov: Any, k: int, owner: str) -> np.ndarray:
    where = _where("proxy_cov", owner)
    raw = proxy_cov.to_numpy() if isinstance(proxy_cov, pd.DataFrame) else proxy_cov
    try:
        arr = np.asarray(raw)
    except (TypeError, ValueError):  # ragged nested lists
        arr = np.asarray(None)
    if arr.dtype.kind not in "iuf" or isinstance(raw, (str, bytes)):
        raise DataTypeError(
            f"{where} must be a {k}x{k} matrix of numbers in the order of proxy_effects; got "
            f"{_kind(proxy_cov)} {_shown(proxy_cov)}."
        )
    cov = np.asarray(arr, dtype=float)
    if cov.shape != (k, k):
        raise ParameterError(
            f"{where} must be a {k}x{k} matrix in the order of proxy_effects; got shape "
            f"{cov.shape}."
        )
    if not np.all(np.isfinite(cov)):
        raise ParameterError(f"{where} must hold finite numbers; got {_shown(cov.tolist())}.")
    scale = float(np.max(np.abs(cov))) if cov.size else 0.0
    unit = cov / scale if scale > 0 else cov  # entries in [-1, 1]: nothing below overflows
    asym = float(np.max(np.abs(unit - unit.T))) if cov.size else 0.0
    if asym > COV_TOL:
        raise ParameterError(
            f"{where} must be symmetric (a covariance matrix); it differs from its transpose "
            f"by up to {asym * scale:.3g}."
        )
    lowest = float(np.linalg.eigvalsh(unit).min()) if scale > 0 else 0.0
    if lowest < -COV_TOL:
        lowest *= scale
        raise ParameterError(
            f"{where} must be positive semi-definite (a covariance matrix); its smallest "
            f"eigenvalue is {lowest:.3g}."
        )
    return cov

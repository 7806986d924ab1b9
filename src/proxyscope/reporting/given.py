"""The results a report is handed (or computes): each checked against the report's
fit, ``ci`` and, for a fit with time, period, so the report never shows one analysis
at another level or of another period than the rest."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from proxyscope.errors import DataTypeError, ParameterError

if TYPE_CHECKING:
    from proxyscope.analyses.compare import Comparison
    from proxyscope.analyses.transport import TransportResult
    from proxyscope.model.fit import ProxyFit


def resolve_transport(
    fit: ProxyFit, transport: Any, ci: float, random_seed: int | None, period: str | None
) -> TransportResult | None:
    """The transport section's result: ``transport`` itself when it is a result (of the
    fit's proxies and ``period``), else computed for it as a target population."""
    from proxyscope.analyses.transport import TransportResult
    from proxyscope.analyses.transport import transport as run_transport

    if transport is None:
        return None
    if isinstance(transport, TransportResult):
        if tuple(transport.proxies) != tuple(fit.proxies):
            raise ParameterError(
                "The 'transport' result given to report was computed for proxies "
                f"{list(transport.proxies)}, but the fit has {list(fit.proxies)}."
            )
        check_period("transport", transport.period, period)
        return transport
    # Anything else is a target population, as proxyscope.transport accepts it.
    return run_transport(fit, transport, ci=ci, random_seed=random_seed, period=period)


def check_period(name: str, given: Any, period: str | None) -> None:
    """A result handed to :func:`report` describes the report's period (fits with time)."""
    if given != period:
        raise ParameterError(
            f"The {name!r} parameter of report describes period {given!r}, the report "
            f"period {period!r}; pass period={given!r} to report, or compute it with "
            f"period={period!r}."
        )


def check_compare(compare: Any) -> None:
    """``compare`` is a Comparison, a mapping of name to fit, or None."""
    from proxyscope.analyses.compare import Comparison

    if compare is None or isinstance(compare, (Comparison, Mapping)):
        return
    raise DataTypeError(
        "The 'compare' parameter of report must be a proxyscope Comparison (from "
        "proxyscope.compare), a mapping of model name to fit, or None; got "
        f"{type(compare).__name__}."
    )


def resolve_compare(compare: Any) -> Comparison | None:
    """The comparison: ``compare`` itself, or the fits in a mapping compared now."""
    from proxyscope.analyses.compare import compare as run_compare

    if isinstance(compare, Mapping):
        return run_compare(compare)
    return compare


def check_given(name: str, frame: Any, ci: float, period: str | None) -> None:
    """A result handed to :func:`report` is that analysis's table at the report's ``ci``."""
    if frame is None:
        return
    function = "recommend" if name == "recommendations" else name
    if not isinstance(frame, pd.DataFrame) or "ci" not in frame.attrs:
        raise DataTypeError(
            f"The {name!r} parameter of report expects the DataFrame that "
            f"proxyscope.{function}(fit, ...) returned; got {type(frame).__name__}."
        )
    if not np.isclose(float(frame.attrs["ci"]), ci):
        raise ParameterError(
            f"The {name!r} parameter of report was computed at ci={frame.attrs['ci']:g}, "
            f"the report at ci={ci:g}; pass ci={frame.attrs['ci']:g} to report, or compute "
            f"proxyscope.{function}(fit, ci={ci:g})."
        )
    if "period" in frame.attrs:
        check_period(name, frame.attrs["period"], period)


def most_fragile(fragility: pd.DataFrame, per_proxy: int = 3) -> list[tuple[str, str]]:
    """The flagged (segment, proxy) pairs with the highest flip probability, a few per proxy."""
    flagged = fragility[fragility["flagged"]].sort_values("flip_prob", ascending=False)
    top = flagged.groupby("proxy", sort=False).head(per_proxy)
    return [(str(r.segment), str(r.proxy)) for r in top.itertuples()]

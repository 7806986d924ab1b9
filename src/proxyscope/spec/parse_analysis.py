"""Validating the ``[analysis]`` section and its tables: ``[analysis.transport]``,
``[analysis.compare]`` and ``[analysis.sensitivity]``."""

from __future__ import annotations

from typing import Any

from proxyscope.errors import SpecError, suggestion
from proxyscope.options import DEFAULT_CI, POOLINGS
from proxyscope.spec.constants import COMPARE_KINDS
from proxyscope.spec.read import Table, check_number, show_set
from proxyscope.spec.sections import (
    AnalysisSpec,
    CompareSpec,
    DataSpec,
    SensitivitySpec,
    TransportSpec,
)


def analysis_section(top: Table, data: DataSpec, proxies: tuple[str, ...]) -> AnalysisSpec:
    t = top.take_table("analysis")
    if t is None:
        return AnalysisSpec()
    ci = t.take_float("ci", DEFAULT_CI, low=0.0, high=1.0, open_low=True, open_high=True)
    threshold = t.take_float("threshold", 0.5, low=0.0, high=1.0, open_low=True, open_high=True)
    probability = t.take_float(
        "probability", 0.95, low=0.0, high=1.0, open_low=True, open_high=True
    )
    ledger = t.take_str("ledger", None)
    transport = _transport(t, proxies)
    compare = _compare(t, proxies)
    sensitivity = None
    sens_t = t.take_table("sensitivity")
    if sens_t is not None:
        if data.kind == "users":
            raise sens_t.error(
                None,
                "applies to kind = 'arm_summaries' or 'asos' (an assumed noise correlation); "
                "user-level data carry their own covariances.",
            )
        corrs = sens_t.take_number_list("correlations", low=-1.0, high=1.0)
        sens_t.done()
        sensitivity = SensitivitySpec(correlations=tuple(float(c) for c in corrs))
    t.done()
    return AnalysisSpec(
        ci=float(ci),
        threshold=float(threshold),
        probability=float(probability),
        ledger=ledger,
        transport=transport,
        compare=compare,
        sensitivity=sensitivity,
    )


def _transport(parent: Table, proxies: tuple[str, ...]) -> TransportSpec | None:
    t = parent.take_table("transport")
    if t is None:
        return None
    name = t.take_str("name", "target")
    path = t.take_str("path", None)

    def share(p: str, v: Any) -> float:
        return check_number(v, lambda m: SpecError(f"{t.origin}: {p} {m}"), low=0.0)

    def reading(p: str, v: Any) -> float:
        return check_number(v, lambda m: SpecError(f"{t.origin}: {p} {m}"))

    shares = t.take_mapping("shares", share, what="segment") or None
    effects = t.take_mapping("proxy_effects", reading, keys=proxies, what="proxy")
    ses = t.take_mapping("proxy_se", share, keys=proxies, what="proxy")
    t.done()
    if (shares is None) == (path is None):
        raise t.error(
            None,
            "needs exactly one of shares = { \"A / B\" = share, ... } or path = 'target.csv'"
            + ("; got both." if path is not None else "; got neither."),
        )
    if shares is not None and sum(shares.values()) <= 0:
        raise t.error("shares", "must have a positive total.")
    extra = [p for p in ses if p not in effects]
    if extra:
        raise t.error("proxy_se", f"gives standard errors for {extra} without proxy_effects.")
    return TransportSpec(name=name, shares=shares, path=path, proxy_effects=effects, proxy_se=ses)


def _compare(parent: Table, proxies: tuple[str, ...]) -> CompareSpec | None:
    t = parent.take_table("compare")
    if t is None:
        return None
    kind = t.take_str("kind", "experiment", allowed=COMPARE_KINDS)
    poolings = t.take_str_list("poolings", (), allowed=POOLINGS)

    def proxy_set(p: str, v: Any) -> tuple[str, ...]:
        items = v if isinstance(v, list) else [v]
        if not items:
            raise SpecError(f"{t.origin}: {p} must name at least one proxy.")
        for item in items:
            if item not in proxies:
                hint = suggestion(item, proxies) if isinstance(item, str) else ""
                raise SpecError(
                    f"{t.origin}: {p} must name proxies from {show_set(proxies)}; "
                    f"got {item!r}.{hint}"
                )
        if len(set(items)) != len(items):
            raise SpecError(f"{t.origin}: {p} repeats a proxy.")
        return tuple(items)

    sets = t.take_mapping("proxy_sets", proxy_set, what="proxy set")
    refit = t.take_bool("refit", True)
    max_refits = t.take_int("max_refits", 5, minimum=1)
    t.done()
    if not poolings and not sets:
        raise t.error(None, "needs poolings = [...] and/or a [..proxy_sets] table.")
    return CompareSpec(
        kind=kind, poolings=poolings, proxy_sets=sets, refit=refit, max_refits=max_refits
    )

"""Validating the ``[analysis]`` section and its tables: ``[analysis.transport]``,
``[analysis.compare]`` and ``[analysis.sensitivity]``; its time keys (``period``,
``[analysis.stability]`` and ``[analysis.rolling_backtest]``) are read in
:mod:`proxyscope.spec.parse_time`."""

from __future__ import annotations

import math
from typing import Any

from proxyscope.errors import SpecError, suggestion
from proxyscope.options import DEFAULT_CI, POOLINGS
from proxyscope.spec.constants import COMPARE_KINDS, MAX_COUNT
from proxyscope.spec.parse_time import analysis_period, rolling_section, stability_section
from proxyscope.spec.read import Table, check_number, show_set
from proxyscope.spec.sections import (
    AnalysisSpec,
    CompareSpec,
    DataSpec,
    SensitivitySpec,
    TransportSpec,
)


def analysis_section(
    top: Table, data: DataSpec, proxies: tuple[str, ...], *, timed: bool = False
) -> AnalysisSpec:
    """``[analysis]``; ``timed``: whether the model moves over time (``[model].time``)."""
    t = top.take_table("analysis")
    if t is None:
        return AnalysisSpec()
    ci = t.take_float("ci", DEFAULT_CI, low=0.0, high=1.0, open_low=True, open_high=True)
    threshold = t.take_float("threshold", 0.5, low=0.0, high=1.0, open_low=True, open_high=True)
    probability = t.take_float(
        "probability", 0.95, low=0.0, high=1.0, open_low=True, open_high=True
    )
    ledger = t.take_path("ledger", None)
    transport = _transport(t, proxies)
    compare = _compare(t, proxies)
    sensitivity = None
    sens_t = t.take_table("sensitivity")
    if sens_t is not None:
        if not any(d.takes_correlation for d in (data, *(x.data for x in data.extra))):
            raise sens_t.error(
                None,
                "applies to kind = 'arm_summaries' or 'asos', or 'estimates' with "
                "correlation = ... (an assumed noise correlation, in [data] or a "
                "[[data.extra]] source); user-level data and estimated covariances carry "
                "their own.",
            )
        corrs = sens_t.take_number_list("correlations", low=-1.0, high=1.0)
        sens_t.done()
        sensitivity = SensitivitySpec(correlations=tuple(float(c) for c in corrs))
    period = analysis_period(t, timed)
    stability = stability_section(t, timed)
    rolling = rolling_section(t, timed)
    t.done()
    return AnalysisSpec(
        ci=float(ci),
        threshold=float(threshold),
        probability=float(probability),
        ledger=ledger,
        transport=transport,
        compare=compare,
        sensitivity=sensitivity,
        period=period,
        stability=stability,
        rolling_backtest=rolling,
    )


def _transport(parent: Table, proxies: tuple[str, ...]) -> TransportSpec | None:
    t = parent.take_table("transport")
    if t is None:
        return None
    name = t.take_str("name", "target")
    path = t.take_path("path", None)

    def share(p: str, v: Any) -> float:
        return check_number(v, lambda m: SpecError(f"{t.origin}: {p} {m}"), low=0.0)

    def reading(p: str, v: Any) -> float:
        return check_number(v, lambda m: SpecError(f"{t.origin}: {p} {m}"))

    def standard_error(p: str, v: Any) -> float:
        se = check_number(v, lambda m: SpecError(f"{t.origin}: {p} {m}"), low=0.0, open_low=True)
        if not math.isfinite(se * se):  # its square is the reading's variance
            raise SpecError(f"{t.origin}: {p} must be below 1e154 (its square is a variance).")
        return se

    given_shares = t.has("shares")
    shares = t.take_mapping("shares", share, what="segment") or None
    effects = t.take_mapping("proxy_effects", reading, keys=proxies, what="proxy")
    ses = t.take_mapping("proxy_se", standard_error, keys=proxies, what="proxy")
    t.done()
    if given_shares and shares is None:
        raise t.error("shares", 'must give at least one segment: { "A / B" = share, ... }.')
    if (shares is None) == (path is None):
        raise t.error(
            None,
            "needs exactly one of shares = { \"A / B\" = share, ... } or path = 'target.csv'"
            + ("; got both." if path is not None else "; got neither."),
        )
    if shares is not None:
        total = sum(shares.values())
        if not math.isfinite(total):
            raise t.error("shares", "must add up to a finite number; give shares, not counts.")
        if total <= 0:
            raise t.error("shares", "must have a positive total.")
    extra = [p for p in ses if p not in effects]
    if extra:
        raise t.error("proxy_se", f"gives standard errors for {extra} without proxy_effects.")
    lacking = [p for p in effects if p not in ses]
    if ses and lacking:
        raise t.error(
            "proxy_se",
            f"must give a standard error for every reading in proxy_effects; missing {lacking} "
            "(leave proxy_se out to take the readings as exact).",
        )
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
    max_refits = t.take_int("max_refits", 5, minimum=1, maximum=MAX_COUNT)
    t.done()
    if not poolings and not sets:
        raise t.error(None, "needs poolings = [...] and/or a [..proxy_sets] table.")
    _check_fit_names(t, poolings, sets)
    return CompareSpec(
        kind=kind, poolings=poolings, proxy_sets=sets, refit=refit, max_refits=max_refits
    )


#: The name the comparison of proxy sets gives the main fit (all the proxies).
ALL_PROXIES = "all proxies"


def fit_file_stem(name: str) -> str:
    """The file name (``fit-<stem>.nc``) of a comparison's fit: its name, made safe."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _check_fit_names(t: Table, poolings: tuple[str, ...], sets: dict[str, Any]) -> None:
    """Each comparison fit is saved as ``fit-<name>.nc`` and shown by its name: two
    names (a pooling's and a proxy set's) that would share a file or a row are refused,
    not left to overwrite each other."""
    files: dict[str, str] = {fit_file_stem(p): f"pooling {p!r}" for p in poolings}
    for name in sets:
        where = f"[{t.where}.proxy_sets].{name}"
        if not name.strip():
            raise SpecError(f"{t.origin}: [{t.where}.proxy_sets] has a set with an empty name.")
        if name == ALL_PROXIES:
            raise SpecError(
                f"{t.origin}: {where}: {ALL_PROXIES!r} names the main fit in the comparison; "
                "give the proxy set another name."
            )
        stem = fit_file_stem(name)
        if stem in files:
            raise SpecError(
                f"{t.origin}: {where} would be saved as fit-{stem}.nc, as {files[stem]} is; "
                "give the proxy set another name."
            )
        files[stem] = f"proxy set {name!r}"

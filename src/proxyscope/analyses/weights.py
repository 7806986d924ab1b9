"""Adaptive weights of a composite decision metric, and its prediction.

Weights are posterior coefficient shares (DESIGN §4; see
:mod:`proxyscope.analyses.composite`): per draw
w_k = |beta_k| sd(theta_k) / sum_j |beta_j| sd(theta_j), globally (slopes
averaged over the historical mix, or a target mix) and per segment. Each
computation can be appended to a weights history (a DuckDB file, see
:mod:`proxyscope.ledger`).

A fit with time gives the weights of one period: the latest by default ("what
holds now", DESIGN.md §9), or ``period=``. The result and its ledger entry name
that period, so a history of weights computed period by period (or fit by fit as
the experiments arrive) shows how the weights moved.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from proxyscope.analyses.arguments import (
    check_bool,
    check_fit,
    check_noise,
    check_optional_path,
    check_optional_str,
    check_readings,
    check_seed,
)
from proxyscope.analyses.composite import mix_composite, weight_draws
from proxyscope.analyses.implied import fitted_combos, resolve_mix
from proxyscope.analyses.transport import transport
from proxyscope.core.draws import check_ci, interval
from proxyscope.ledger import record_weights
from proxyscope.model.periods import resolve_period
from proxyscope.model.segments import segments_for
from proxyscope.options import DEFAULT_CI

if TYPE_CHECKING:
    from proxyscope.model.fit import ProxyFit


def weights(
    fit: ProxyFit,
    ci: float = DEFAULT_CI,
    target: Any = None,
    by_segment: bool = True,
    ledger: str | os.PathLike[str] | None = None,
    note: str | None = None,
    period: str | None = None,
) -> pd.DataFrame:
    """Adaptive proxy weights with intervals, globally and per segment.

    Parameters
    ----------
    fit : ProxyFit
    ci : float
        Interval width.
    target : optional
        A segment mix for the global weights (default: the historical mix).
    by_segment : bool
        Add one block of rows per segment.
    ledger : path, optional
        Append this computation (timestamp, data fingerprint, model-config
        hash, period, weights and intervals) to a weights history file.
    note : str, optional
        Stored with the ledger entry.
    period : str, optional
        For a fit with time: the period whose relation gives the weights (one of
        ``fit.info.periods``; default the latest). A static fit takes none.

    Returns
    -------
    DataFrame
        Columns ``scope`` ("global" or a segment label), ``proxy``, ``weight``
        (posterior mean), ``weight_lo``, ``weight_hi``, ``direction`` (+1 if
        the long-term effect credibly rises with the proxy, -1 if it credibly
        falls, 0 if the slope's ``ci`` interval holds 0: its sign is unclear and
        the proxy enters a weighted sum with no sign) and ``signed_weight``, the
        posterior mean of w_k sign(beta_k): the proxy's coefficient in a composite
        score read under the posterior (a proxy whose sign the draws disagree on
        is shrunk toward 0 rather than dropped, so two correlated proxies whose
        slopes are each unclear still carry the relation they share). The global
        rows come first. ``attrs``: ``ci``, ``trustworthy``, ``period`` (the period
        described; None for a static fit) and, with ``ledger``, ``ledger_entry``.

    Raises
    ------
    ParameterError
        ``period`` for a static fit, or a period the fit does not have.
    """
    fit = check_fit(fit, "weights")
    ci = check_ci(ci, "weights")
    by_segment = check_bool(by_segment, "by_segment", "weights")
    ledger = check_optional_path(ledger, "ledger", "weights")
    note = check_optional_str(note, "note", "weights")
    period = resolve_period(fit, period, "weights")
    fit.warn_if_untrustworthy("weights")
    combos, shares = resolve_mix(fit, target)
    base = segments_for(fit, combos, period=period)
    bbar = np.einsum("s,nsk->nk", shares, base.beta)
    rows: list[dict[str, Any]] = []

    def block(scope: str, w: np.ndarray, slopes: np.ndarray) -> None:
        lo, hi = interval(w, ci)
        mean = w.mean(axis=0)
        s_lo, s_hi = interval(slopes, ci)
        direction = np.where(s_lo > 0, 1, np.where(s_hi < 0, -1, 0))
        signed = (w * np.sign(slopes)).mean(axis=0)
        for k, proxy in enumerate(fit.proxies):
            rows.append(
                {
                    "scope": scope,
                    "proxy": proxy,
                    "weight": float(mean[k]),
                    "weight_lo": float(lo[k]),
                    "weight_hi": float(hi[k]),
                    "direction": int(direction[k]),
                    "signed_weight": float(signed[k]),
                }
            )

    block("global", weight_draws(bbar, base.omega), bbar)
    if by_segment:
        fitted = segments_for(fit, fitted_combos(fit.structure), period=period)
        per_seg = weight_draws(fitted.beta, fitted.omega)
        for s, label in enumerate(fitted.labels):
            block(label, per_seg[:, s], fitted.beta[:, s])
    out = pd.DataFrame(rows)
    out.attrs.update(ci=ci, trustworthy=fit.trustworthy, period=period)
    if ledger is not None:
        entry = record_weights(
            ledger,
            out[["scope", "proxy", "weight", "weight_lo", "weight_hi"]],
            kind="computed",
            data_fingerprint=fit.data_fingerprint,
            config_hash=fit.config_hash,
            ci=ci,
            note=note,
            period=period,
        )
        out.attrs["ledger_entry"] = entry
    return out


def surrogate_index(
    fit: ProxyFit,
    proxy_effects: Mapping[str, float],
    proxy_se: Mapping[str, float] | None = None,
    target: Any = None,
    ci: float = DEFAULT_CI,
    random_seed: int | None = None,
    period: str | None = None,
) -> pd.DataFrame:
    """The composite proxy of a new experiment and the long-term effect it predicts.

    Parameters
    ----------
    proxy_effects : mapping
        The new experiment's proxy readings (all proxies, original units, good
        direction).
    proxy_se : mapping, optional
        Their standard errors.
    target : optional
        The population the experiment ran on (default: the historical mix).
    ci : float
        Interval width.
    random_seed : int, optional
        For the predictive draws (default: the fit's sampling seed).
    period : str, optional
        For a fit with time: the period whose relation predicts (one of
        ``fit.info.periods``; default the latest). A static fit takes none.

    Returns
    -------
    DataFrame
        Rows ``composite`` (the surrogate index: the long-term effect the
        readings predict with the index's fixed posterior-mean coefficients)
        and ``long_term_effect`` (the full posterior predictive mean and
        interval given the readings and their noise), plus ``p_positive``.
        ``attrs``: ``ci``, ``intercept`` and ``coefficients`` (the index's),
        ``trustworthy`` and ``period`` (None for a static fit).
    """
    fit = check_fit(fit, "surrogate_index")
    ci = check_ci(ci, "surrogate_index")
    random_seed = check_seed(random_seed, "surrogate_index")
    period = resolve_period(fit, period, "surrogate_index")
    readings = check_readings(fit, proxy_effects, "surrogate_index", every=True)
    check_noise(fit, readings, proxy_se, None, "surrogate_index")
    # The prediction first: transport refuses readings too far out to condition on
    # (and checks the target) before the index is computed from them.
    pred = transport(
        fit,
        target,
        proxy_effects=readings,
        proxy_se=proxy_se,
        ci=ci,
        random_seed=random_seed,
        period=period,
    ).summary(ci)
    combos, shares = resolve_mix(fit, target)
    seg = segments_for(fit, combos, random_seed=random_seed, period=period)
    comp = mix_composite(seg, shares)
    theta = np.array([readings[p] for p in fit.proxies])
    index = float(comp.value(theta))
    eff = pred.iloc[0]
    rows = [
        ("composite", index, np.nan, np.nan),
        ("long_term_effect", eff["mean"], eff["lo"], eff["hi"]),
        ("p_positive", pred.iloc[1]["mean"], np.nan, np.nan),
    ]
    out = pd.DataFrame(rows, columns=["quantity", "value", "lo", "hi"])
    out.attrs.update(
        ci=ci,
        intercept=comp.intercept,
        coefficients=dict(zip(fit.proxies, comp.coef.tolist(), strict=True)),
        trustworthy=fit.trustworthy,
        period=period,
    )
    return out

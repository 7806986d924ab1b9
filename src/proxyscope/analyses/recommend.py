"""Which proxy (or the composite) to decide on, for a given population.

Each candidate is judged by the decisions it supports (see
:mod:`proxyscope.analyses.decisions`): the accuracy of the naive rule (ship when
it moves the good way: the seed's decision accuracy, DESIGN §4), of the
calibrated rule (ship when the long-term effect predicted from its reading is
positive) and of deciding with no proxy at all. Candidates are ranked by the gain
of the calibrated rule over no proxy, the share of new experiments whose decision
the reading turns from wrong to right: agreeing in sign with a long-term effect
that is nearly always positive gains nothing. ``p_best`` is the posterior
probability that a candidate has the largest gain (ties split evenly). A candidate
whose relation to the long-term effect is not credible in the population, or that
points the wrong way in every segment of it, is never the one to decide on.

A fit with time recommends from the relation of one period: the latest by default
("what holds now", DESIGN.md §9), or ``period=``; every sentence names it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from proxyscope.analyses.arguments import check_fit, check_unit
from proxyscope.analyses.composite import mix_composite, project
from proxyscope.analyses.decisions import (
    Rule,
    calibrated_rule,
    no_proxy_accuracy,
    no_proxy_ships,
    rule_accuracy,
    share_best,
)
from proxyscope.analyses.fragility import segment_flip_draws
from proxyscope.analyses.implied import proxy_flips, resolve_mix
from proxyscope.analyses.surrogacy import STE_DRAWS, _subsample, threshold_effect
from proxyscope.core.bvn import prob_opposite_signs
from proxyscope.core.draws import check_ci, interval
from proxyscope.model.periods import resolve_period
from proxyscope.model.segments import fitted_segments, segments_for
from proxyscope.options import DEFAULT_CI

if TYPE_CHECKING:
    from proxyscope.model.fit import ProxyFit

COMPOSITE = "composite"


def decision_draws(
    fit: ProxyFit, target: Any = None, period: str | None = None
) -> tuple[list[str], np.ndarray, dict[str, Any]]:
    """The naive rule's decision accuracy per draw (N, candidates) for a mix;
    candidates = proxies + composite; in ``period`` of a fit with time (a resolved
    label; default the latest)."""
    combos, shares = resolve_mix(fit, target)
    seg = segments_for(fit, combos, period=period)
    mom = seg.mix_moments(shares)
    flips = proxy_flips(mom)
    comp = mix_composite(seg, shares)
    m_i, v_i, c_i = project(mom, comp)
    comp_flip = prob_opposite_signs(mom["mean_tau"], m_i, mom["var_tau"], v_i, c_i)
    acc = 1.0 - np.column_stack([flips, comp_flip])
    context = {
        "moments": mom,
        "composite": comp,
        "index_moments": (m_i, v_i, c_i),
        "combos": combos,
        "shares": shares,
        "period": period,
    }
    return [*fit.proxies, COMPOSITE], acc, context


def recommend(
    fit: ProxyFit,
    target: Any = None,
    ci: float = DEFAULT_CI,
    probability: float = 0.95,
    threshold: float = 0.5,
    period: str | None = None,
) -> pd.DataFrame:
    """Proxies and the composite ranked by what their readings add to decisions.

    Parameters
    ----------
    fit : ProxyFit
    target : optional
        The population of the next experiment (default: the historical mix);
        see :func:`proxyscope.transport` for the accepted forms.
    ci : float
        Interval width.
    probability : float
        Level of the surrogate threshold effect.
    threshold : float
        Flip probability at which a segment counts as fragile (see
        :func:`proxyscope.fragility`).
    period : str, optional
        For a fit with time: the period whose relation to judge the candidates by
        (one of ``fit.info.periods``; default the latest). A static fit takes none.

    Returns
    -------
    DataFrame
        Ranked best first (candidates that may be decided on before those that may not,
        then by ``gain``): ``proxy`` (a proxy name or "composite"); ``gain``,
        ``gain_lo``, ``gain_hi`` (calibrated rule minus no proxy);
        ``calibrated_accuracy`` (+ ``_lo``, ``_hi``) and ``rule`` (the calibrated rule
        in words: ship when the reading is above or below a value, in the proxy's units
        — the composite's in long-term units — or "ignores the reading";
        ``rule_threshold`` and ``rule_direction`` (+1 above, -1 below, 0 ignores the
        reading) in numbers); ``decision_accuracy``, ``decision_lo``, ``decision_hi``
        (the naive rule: ship when the reading moves the good way);
        ``no_proxy_accuracy`` (+ ``_lo``, ``_hi``; the same for every candidate);
        ``credible`` (the sign of the candidate's covariance with the long-term effect
        is credible at ``ci``); ``p_best`` (posterior probability of the largest gain,
        ties split evenly); ``ste`` (proxy units; for the composite — the surrogate
        index — long-term units); ``fragile_segments`` (segments of the target where the
        candidate is flagged fragile); ``recommendation`` (one line). All accuracies are
        posterior means over new experiments of the target mix.
        ``attrs["safe"]`` is False when no candidate may be decided on;
        ``attrs["no_proxy_ships"]`` is the no-proxy rule's decision.
    """
    fit = check_fit(fit, "recommend")
    ci = check_ci(ci, "recommend")
    probability = check_unit(probability, "probability", "recommend")
    threshold = check_unit(threshold, "threshold", "recommend")
    period = resolve_period(fit, period, "recommend")
    fit.warn_if_untrustworthy("recommend")
    names, naive, ctx = decision_draws(fit, target, period)
    mom = ctx["moments"]
    m_i, v_i, c_i = ctx["index_moments"]
    var_theta = np.einsum("nkk->nk", mom["cov_theta"])
    readings = [
        (mom["mean_theta"][:, k], var_theta[:, k], mom["cov_tau_theta"][:, k])
        for k in range(len(fit.proxies))
    ]
    readings.append((m_i, v_i, c_i))
    mean_tau, var_tau = mom["mean_tau"], mom["var_tau"]
    ships = no_proxy_ships(mean_tau, var_tau)
    none = no_proxy_accuracy(mean_tau, var_tau, ships)
    rules: list[Rule] = []
    calibrated = np.empty_like(naive)
    for j, (m_x, v_x, c) in enumerate(readings):
        rules.append(calibrated_rule(mean_tau, var_tau, m_x, v_x, c))
        calibrated[:, j] = rule_accuracy(rules[-1], mean_tau, var_tau, m_x, v_x, c)
    gain = calibrated - none[:, None]
    covs = np.column_stack([c for _, _, c in readings])
    cov_lo, cov_hi = interval(covs, ci)
    credible = (cov_lo > 0) | (cov_hi < 0)
    picks = _subsample(naive.shape[0], STE_DRAWS)
    stes = [
        threshold_effect(
            mean_tau[picks], var_tau[picks], m_x[picks], v_x[picks], c[picks], probability
        )
        for m_x, v_x, c in readings
    ]
    fragile, n_target = _fragile_segments(fit, ctx, threshold, ci)
    best = share_best(gain)
    columns = {
        "gain": gain,
        "calibrated_accuracy": calibrated,
        "decision_accuracy": naive,
    }
    bounds = {key: interval(value, ci) for key, value in columns.items()}
    none_lo, none_hi = interval(none, ci)
    rows = []
    for j, name in enumerate(names):
        everywhere = n_target > 0 and len(fragile.get(name, [])) >= n_target
        rows.append(
            {
                "proxy": name,
                "gain": float(gain[:, j].mean()),
                "gain_lo": float(bounds["gain"][0][j]),
                "gain_hi": float(bounds["gain"][1][j]),
                "calibrated_accuracy": float(calibrated[:, j].mean()),
                "calibrated_lo": float(bounds["calibrated_accuracy"][0][j]),
                "calibrated_hi": float(bounds["calibrated_accuracy"][1][j]),
                "rule": rules[j].label,
                "rule_threshold": rules[j].threshold,
                "rule_direction": rules[j].direction,
                "decision_accuracy": float(naive[:, j].mean()),
                "decision_lo": float(bounds["decision_accuracy"][0][j]),
                "decision_hi": float(bounds["decision_accuracy"][1][j]),
                "no_proxy_accuracy": float(none.mean()),
                "no_proxy_lo": float(none_lo),
                "no_proxy_hi": float(none_hi),
                "credible": bool(credible[j]),
                "p_best": float(best[j]),
                "ste": float(stes[j]),
                "fragile_segments": fragile.get(name, []),
                "eligible": bool(credible[j]) and not everywhere,
                "fragile_everywhere": everywhere,
            }
        )
    out = pd.DataFrame(rows).sort_values(["eligible", "gain"], ascending=[False, False])
    out = out.reset_index(drop=True)
    safe = bool(out["eligible"].any())
    out["recommendation"] = [
        _sentence(row, rank, fit, probability, safe, period)
        for rank, row in enumerate(out.itertuples())
    ]
    out = out.drop(columns=["eligible", "fragile_everywhere"])
    out.attrs.update(
        ci=ci,
        probability=probability,
        trustworthy=fit.trustworthy,
        safe=safe,
        no_proxy_ships=ships,
        period=period,
    )
    return out


def _fragile_segments(
    fit: ProxyFit, ctx: dict[str, Any], threshold: float, ci: float
) -> tuple[dict[str, list[str]], int]:
    """Flagged segments of the target mix, per candidate (fitted segments only), and
    how many fitted segments the target has (in the period of ``ctx``)."""
    flips, overall = segment_flip_draws(fit, ctx["period"])
    labels = list(fit.structure.labels)
    in_target = (
        {
            fit.structure.label_of(ctx["combos"].iloc[i][list(fit.structure.columns)])
            for i in range(len(ctx["combos"]))
        }
        if fit.structure.columns
        else set(labels)
    )
    out: dict[str, list[str]] = {}
    mean = flips.mean(axis=0)
    diff_lo, _ = interval(flips - overall[:, None, :], ci)
    for k, proxy in enumerate(fit.proxies):
        out[proxy] = [
            labels[s]
            for s in range(len(labels))
            if labels[s] in in_target and mean[s, k] >= threshold and diff_lo[s, k] > 0
        ]
    # The composite: flip of the fixed index within each segment.
    seg = fitted_segments(fit, ctx["period"])
    sm = seg.segment_moments()
    m_i, v_i, c_i = project(sm, ctx["composite"])
    cflip = prob_opposite_signs(sm["mean_tau"], m_i, sm["var_tau"], v_i, c_i)
    m_o, v_o, c_o = ctx["index_moments"]
    o_flip = prob_opposite_signs(
        ctx["moments"]["mean_tau"], m_o, ctx["moments"]["var_tau"], v_o, c_o
    )
    c_lo, _ = interval(cflip - o_flip[:, None], ci)
    c_mean = cflip.mean(axis=0)
    out[COMPOSITE] = [
        labels[s]
        for s in range(len(labels))
        if labels[s] in in_target and c_mean[s] >= threshold and c_lo[s] > 0
    ]
    return out, sum(label in in_target for label in labels)


def _sentence(
    row: Any, rank: int, fit: ProxyFit, probability: float, safe: bool, period: str | None
) -> str:
    name = "the composite proxy" if row.proxy == COMPOSITE else row.proxy
    calibrated = (
        f"its calibrated rule ({row.rule}) decides right for {row.calibrated_accuracy:.2f} "
        f"[{row.calibrated_lo:.2f}, {row.calibrated_hi:.2f}] of new experiments, against "
        f"{row.no_proxy_accuracy:.2f} with no proxy (gain {row.gain:+.2f} "
        f"[{row.gain_lo:+.2f}, {row.gain_hi:+.2f}])"
    )
    naive = f"the naive rule (ship when it moves the good way) {row.decision_accuracy:.2f}"
    if row.fragile_everywhere:
        head = (
            f"Do not decide on {name} here: it points the wrong way in every segment of "
            f"this population ({len(row.fragile_segments)} of {len(row.fragile_segments)})."
        )
    elif not row.credible:
        head = (
            f"Do not decide on {name}: no credible relation with the long-term effect in "
            f"this population; {naive} only reflects how often the long-term effect has "
            "one sign."
        )
    elif rank == 0 and row.gain_lo > 0:
        head = f"Decide on {name}: {calibrated}; P(best) {row.p_best:.2f}; {naive}."
    elif rank == 0:
        head = (
            f"{name[0].upper() + name[1:]} is the best candidate, but its reading does not "
            f"credibly beat deciding with no proxy here: {calibrated}; P(best) "
            f"{row.p_best:.2f}."
        )
    elif row.gain_lo > 0:
        head = f"{name} is a usable alternative: {calibrated}."
    else:
        head = f"Do not decide on {name} alone: {calibrated}."
    if not safe and rank == 0:
        head = (
            "No proxy is safe for this population (none has a credible relation that "
            "holds in some segment of it): decide on the long-term effect. " + head
        )
    if row.credible and not row.fragile_everywhere and np.isfinite(row.ste):
        unit = "A predicted long-term effect" if row.proxy == COMPOSITE else "A lift"
        head += (
            f" {unit} above {row.ste:.3g} means a long-term win with "
            f"{100 * probability:.0f}% probability."
        )
    if row.fragile_segments and not row.fragile_everywhere:
        shown = "; ".join(row.fragile_segments[:3])
        more = len(row.fragile_segments) - 3
        head += (
            f" Not in {shown}"
            + (f" (+{more} more)" if more > 0 else "")
            + ": it points the wrong way there."
        )
    if period is not None:
        head = f"In {period}: {head}"
    if not fit.trustworthy:
        head = "UNTRUSTWORTHY FIT — " + head
    return head

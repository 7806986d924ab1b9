"""Which proxy (or the composite) to decide on, for a given population.

Decision accuracy of a candidate for a mix pi (DESIGN §4): the posterior
predictive probability that a new experiment's mix-level proxy effect (or
composite index) and its mix-level long-term effect have the same sign —
per draw one minus a bivariate normal orthant probability, computed exactly.
Candidates are ranked by its posterior mean; ``p_best`` is the posterior
probability that a candidate has the highest decision accuracy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from proxyscope.analyses.composite import mix_composite, project
from proxyscope.analyses.fragility import segment_flip_draws
from proxyscope.analyses.implied import proxy_flips, resolve_mix, segments_for
from proxyscope.analyses.surrogacy import STE_DRAWS, _subsample, threshold_effect
from proxyscope.core.bvn import prob_opposite_signs
from proxyscope.core.draws import check_ci, interval
from proxyscope.errors import ParameterError
from proxyscope.model.segments import fitted_segments
from proxyscope.options import DEFAULT_CI

if TYPE_CHECKING:
    from proxyscope.model.fit import ProxyFit

COMPOSITE = "composite"


def decision_draws(
    fit: ProxyFit, target: Any = None
) -> tuple[list[str], np.ndarray, dict[str, Any]]:
    """Decision accuracy per draw (N, candidates) for a mix; candidates = proxies + composite."""
    combos, shares = resolve_mix(fit, target)
    seg = segments_for(fit, combos)
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
    }
    return [*fit.proxies, COMPOSITE], acc, context


def recommend(
    fit: ProxyFit,
    target: Any = None,
    ci: float = DEFAULT_CI,
    probability: float = 0.95,
    threshold: float = 0.5,
) -> pd.DataFrame:
    """Proxies and the composite ranked by decision accuracy for a population.

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

    Returns
    -------
    DataFrame
        Ranked best first: ``proxy`` (a proxy name or "composite"),
        ``decision_accuracy`` (posterior mean), ``decision_lo``,
        ``decision_hi``, ``p_best``, ``ste`` (proxy units; for the composite —
        the surrogate index — long-term units), ``fragile_segments``
        (segments of the target where the candidate is flagged fragile),
        ``recommendation`` (one line).
    """
    ci = check_ci(ci)
    for name, value in (("probability", probability), ("threshold", threshold)):
        if not 0 < value < 1:
            raise ParameterError(
                f"The {name!r} parameter of recommend must be in (0, 1); got {value!r}."
            )
    fit.warn_if_untrustworthy("recommend")
    names, acc, ctx = decision_draws(fit, target)
    lo, hi = interval(acc, ci)
    best = np.bincount(np.argmax(acc, axis=1), minlength=len(names)) / acc.shape[0]
    mom = ctx["moments"]
    picks = _subsample(acc.shape[0], STE_DRAWS)
    var_theta = np.einsum("nkk->nk", mom["cov_theta"])
    stes = []
    for k in range(len(fit.proxies)):
        stes.append(
            threshold_effect(
                mom["mean_tau"][picks],
                mom["var_tau"][picks],
                mom["mean_theta"][picks, k],
                var_theta[picks, k],
                mom["cov_tau_theta"][picks, k],
                probability,
            )
        )
    m_i, v_i, c_i = ctx["index_moments"]
    stes.append(
        threshold_effect(
            mom["mean_tau"][picks],
            mom["var_tau"][picks],
            m_i[picks],
            v_i[picks],
            c_i[picks],
            probability,
        )
    )
    fragile = _fragile_segments(fit, ctx, threshold, ci)
    rows = []
    for j, name in enumerate(names):
        rows.append(
            {
                "proxy": name,
                "decision_accuracy": float(acc[:, j].mean()),
                "decision_lo": float(lo[j]),
                "decision_hi": float(hi[j]),
                "p_best": float(best[j]),
                "ste": float(stes[j]),
                "fragile_segments": fragile.get(name, []),
            }
        )
    out = pd.DataFrame(rows).sort_values("decision_accuracy", ascending=False)
    out = out.reset_index(drop=True)
    out["recommendation"] = [
        _sentence(row, rank, fit, probability) for rank, row in enumerate(out.itertuples())
    ]
    out.attrs.update(ci=ci, probability=probability, trustworthy=fit.trustworthy)
    return out


def _fragile_segments(
    fit: ProxyFit, ctx: dict[str, Any], threshold: float, ci: float
) -> dict[str, list[str]]:
    """Flagged segments of the target mix, per candidate (fitted segments only)."""
    flips, overall = segment_flip_draws(fit)
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
    seg = fitted_segments(fit)
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
    return out


def _sentence(row: Any, rank: int, fit: ProxyFit, probability: float) -> str:
    name = "the composite proxy" if row.proxy == COMPOSITE else row.proxy
    acc = (
        f"decision accuracy {row.decision_accuracy:.2f} "
        f"[{row.decision_lo:.2f}, {row.decision_hi:.2f}]"
    )
    if rank == 0:
        head = f"Decide on {name}: {acc}, P(best) {row.p_best:.2f}."
    elif row.decision_accuracy >= 0.9:
        head = f"{name} is a usable alternative: {acc}."
    else:
        head = f"Do not decide on {name} alone: {acc}."
    if np.isfinite(row.ste):
        if row.proxy == COMPOSITE:
            head += (
                f" A predicted long-term effect above {row.ste:.3g} means a long-term win with "
                f"{100 * probability:.0f}% probability."
            )
        else:
            head += (
                f" A lift above {row.ste:.3g} means a long-term win with "
                f"{100 * probability:.0f}% probability."
            )
    if row.fragile_segments:
        shown = "; ".join(row.fragile_segments[:3])
        more = len(row.fragile_segments) - 3
        head += (
            f" Not in {shown}"
            + (f" (+{more} more)" if more > 0 else "")
            + ": it points the wrong way there."
        )
    if not fit.trustworthy:
        head = "UNTRUSTWORTHY FIT — " + head
    return head

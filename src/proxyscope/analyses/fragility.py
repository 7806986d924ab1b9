"""Fragility: where a proxy and the long-term effect move in opposite directions.

For segment s and proxy k, ``flip_prob`` is the posterior predictive
probability that a NEW experiment's true long-term effect and true proxy
effect have opposite signs (proxies read in their good direction). Per
posterior draw this is an orthant probability of the bivariate normal
(tau_s, theta_s,k), computed exactly (:mod:`proxyscope.core.bvn`), so the
posterior mean and interval carry no Monte Carlo noise from a simulation.

Why these probabilities are safe to read across many segments: every
segment's parameters are partially pooled toward the main effects and the
global values, with the amount of pooling learned from all segments. A small
segment with a few unlucky experiments is pulled toward the rest instead of
producing an extreme flip rate by chance (which is what per-segment sign
counting does, and why scanning many segments that way finds spurious
"fragile" ones). A segment stands out only when its own data outweigh that
shrinkage, and its interval says how sure that is.

What the level can and cannot say: the posterior mean of a probability is
pulled away from 0 and 1 by uncertainty. For a proxy that moves in lock-step
with the long-term effect, a segment's flip probability is about
|Phi(nu_s / sd(tau)) - Phi(mu_s / sd(theta))|: it depends on where the
segment's mean long-term and proxy effects sit relative to their spread across
experiments, and an error in either, of either sign, raises it. When the
long-term effects are measured with much more noise than that spread, nu_s /
sd(tau) is known only to about +-0.3 to 0.5 in each segment, so a segment whose
true flip probability is near 0 gets a posterior mean clearly above it and a
90% interval whose lower end stays above 0. The data also cannot rule out a
residual sd above 0 or proxy correlations below 1; on the simulated worlds
those add less (setting them to their ideal values in every posterior draw
lowers the mean error by 0.00-0.06 on three seeds, while dropping the segment interactions
changes nothing). The ranking of segments and the ``flagged`` rule (relative
to the overall rate) are what carry over; against the simulator's truth
(``benchmarks/bench_truth.py``, seeds 1-12) the failure cohort is ranked
first in every seed, while the mean absolute error of the levels is 0.14 for
early watch minutes and 0.13 for starts (seeds 1-10; the semi-oracle of
``benchmarks/bench_flip_floor.py``: 0.11 and 0.10) and the 90% intervals hold
the truth in 46-49% of the cells (55-58% of those whose truth is above 0: in
4 of the 24 cells the true flip probability is exactly 0, because the
long-term and proxy effects there cross zero at the same experiment strength,
and a posterior without a point mass at 0 has an equal-tailed interval whose
lower end is above 0). The gap is the simulated world's lock-step: there the
long-term and proxy effects of a new experiment correlate at 1, a boundary
the model's priors on the residual sds keep its posterior away from
(posterior median correlation 0.91); the model is calibrated on worlds drawn
from its own prior (simulation-based calibration, ``benchmarks/bench_sbc.py``).

A fit with time (``ProxyModel(time=...)``) is read in one period: the latest by
default ("what holds now", DESIGN.md §9), or ``period=``. The result says which
period it describes.

The threshold: a segment is ``flagged`` when its flip probability is at least
``threshold`` (default 0.5: a proxy win there is at least as likely to be a
long-term loss as a gain) and it is credibly above the overall flip
probability of the historical mix (the lower end of the ``ci`` interval of
the difference is above zero).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from proxyscope import dims
from proxyscope.analyses.arguments import (
    check_bool,
    check_choice,
    check_fit,
    check_int,
    check_unit,
)
from proxyscope.analyses.implied import in_period, proxy_flips
from proxyscope.core.bvn import prob_opposite_signs
from proxyscope.core.draws import check_ci, interval
from proxyscope.errors import ProxyscopeWarning
from proxyscope.model.periods import resolve_period
from proxyscope.model.segments import fitted_segments, historical_mix
from proxyscope.options import DEFAULT_CI

if TYPE_CHECKING:
    from proxyscope.model.fit import ProxyFit


class FragilityWarning(ProxyscopeWarning):
    """A proxy is fragile in a segment: it often points the wrong way there."""


def segment_flip_draws(fit: ProxyFit, period: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Flip probability per draw: per segment (N, S, K) and for the historical mix (N, K),
    in ``period`` of a fit with time (a resolved label; default the latest)."""
    seg = fitted_segments(fit, period)
    flips = proxy_flips(seg.segment_moments())
    overall = proxy_flips(seg.mix_moments(historical_mix(fit).to_numpy()))
    return flips, overall


def fragility(
    fit: ProxyFit,
    ci: float = DEFAULT_CI,
    threshold: float = 0.5,
    by: str = "segment",
    warn: bool = True,
    max_draws: int = 400,
    period: str | None = None,
) -> pd.DataFrame:
    """Posterior predictive sign-flip probability per segment and proxy.

    Parameters
    ----------
    fit : ProxyFit
    ci : float
        Width of the equal-tailed intervals (default 90%).
    threshold : float
        Flip probability at or above which a segment is flagged (when it is
        also credibly above the overall value). See the module docstring.
    by : {"segment", "cell"}
        ``"segment"``: a new experiment in each segment cell. ``"cell"``: each
        observed (experiment x segment) cell, from the recovered latent true
        effects of that cell given its data (evaluated on up to ``max_draws``
        posterior draws).
    warn : bool
        Emit a :class:`FragilityWarning` per flagged segment.
    max_draws : int
        At least 1: the posterior draws ``by="cell"`` evaluates (evenly spaced).
    period : str, optional
        For a fit with time: the period whose relation to read (one of
        ``fit.info.periods``; default the latest). With ``by="cell"``, the cells of
        the experiments that started in it. A static fit takes none.

    Returns
    -------
    DataFrame
        ``by="segment"``: one row per segment cell x proxy with the segment
        columns, ``segment``, ``proxy``, ``flip_prob`` (posterior mean),
        ``flip_lo``, ``flip_hi``, ``overall_flip``, ``flagged``, ``warning``.
        The warnings are also in ``.attrs["warnings"]``; ``.attrs["ci"]``,
        ``.attrs["threshold"]`` and ``.attrs["trustworthy"]`` say how to read it, and
        ``.attrs["period"]`` which period it describes (None for a static fit; the
        warnings name it too).

    Raises
    ------
    ParameterError
        ``period`` for a static fit, or a period the fit does not have.
    """
    fit = check_fit(fit, "fragility")
    ci = check_ci(ci, "fragility")
    threshold = check_unit(threshold, "threshold", "fragility")
    by = check_choice(by, ("segment", "cell"), "by", "fragility")
    warn = check_bool(warn, "warn", "fragility")
    max_draws = check_int(max_draws, "max_draws", "fragility", low=1)
    period = resolve_period(fit, period, "fragility")
    fit.warn_if_untrustworthy("fragility")
    if by == "cell":
        return _cell_fragility(fit, ci, max_draws, period)
    flips, overall = segment_flip_draws(fit, period)
    lo, hi = interval(flips, ci)
    diff_lo, _ = interval(flips - overall[:, None, :], ci)
    o_lo, o_hi = interval(overall, ci)
    mean = flips.mean(axis=0)
    o_mean = overall.mean(axis=0)
    frame = fit.structure.frame()
    rows = []
    messages = []
    for s, label in enumerate(fit.structure.labels):
        for k, proxy in enumerate(fit.proxies):
            flagged = bool(mean[s, k] >= threshold and diff_lo[s, k] > 0)
            text = ""
            if flagged:
                text = (
                    f"{proxy} is fragile in {label}{in_period(period)}: P(flip) = {mean[s, k]:.2f} "
                    f"[{lo[s, k]:.2f}, {hi[s, k]:.2f}]; overall {o_mean[k]:.2f}"
                )
                messages.append(text)
            row = {c: frame.iloc[s][c] for c in fit.structure.columns}
            row.update(
                segment=label,
                proxy=proxy,
                flip_prob=float(mean[s, k]),
                flip_lo=float(lo[s, k]),
                flip_hi=float(hi[s, k]),
                overall_flip=float(o_mean[k]),
                overall_lo=float(o_lo[k]),
                overall_hi=float(o_hi[k]),
                flagged=flagged,
                warning=text,
            )
            rows.append(row)
    out = pd.DataFrame(rows)
    out.attrs.update(
        ci=ci,
        threshold=threshold,
        warnings=messages,
        trustworthy=fit.trustworthy,
        by="segment",
        period=period,
    )
    if warn:
        for text in messages:
            warnings.warn(text, FragilityWarning, stacklevel=2)
    return out


def _cell_fragility(fit: ProxyFit, ci: float, max_draws: int, period: str | None) -> pd.DataFrame:
    """Per observed cell (of ``period``'s experiments for a fit with time): each cell's
    recovered true effects, given its data, under its own period's relation."""
    total = fit.n_draws
    picks = np.unique(np.linspace(0, total - 1, min(total, max_draws)).astype(int))
    k = len(fit.proxies)
    n_cells = fit.effects.n_cells
    flips = np.empty((len(picks), n_cells, k))
    for r, i in enumerate(picks):
        mean, cov = fit.latent_moments(int(i))
        flips[r] = prob_opposite_signs(
            mean[:, :1],
            mean[:, 1:],
            cov[:, :1, 0],
            np.einsum("ckk->ck", cov[:, 1:, 1:]),
            cov[:, 0, 1:],
        )
    lo, hi = interval(flips, ci)
    mean_flip = flips.mean(axis=0)
    cells = fit.effects.cells()
    keep = np.arange(n_cells)
    if period is not None:
        at = list(fit.effects.periods).index(period)
        keep = np.flatnonzero(np.asarray(fit.effects.period_index) == at)
    columns = [*map(str, cells.columns), "cell", "proxy", "flip_prob", "flip_lo", "flip_hi"]
    rows = []
    for c in keep:
        for j, proxy in enumerate(fit.proxies):
            row: dict[str, object] = {str(key): val for key, val in cells.iloc[c].items()}
            row.update(
                cell=int(c),
                proxy=proxy,
                flip_prob=float(mean_flip[c, j]),
                flip_lo=float(lo[c, j]),
                flip_hi=float(hi[c, j]),
            )
            rows.append(row)
    out = pd.DataFrame(rows, columns=columns).rename(columns={dims.SEGMENT_LABEL: dims.SEGMENT})
    out.attrs.update(
        ci=ci, trustworthy=fit.trustworthy, by="cell", n_draws=len(picks), period=period
    )
    return out

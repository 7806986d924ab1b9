"""Decision rules on a proxy reading and how often each gets a new experiment right.

A team reads a new experiment's proxy effect X (a proxy, or the composite index)
and ships or not; the decision is right when it matches the sign of the
experiment's long-term effect tau. Per posterior draw, a new experiment of a mix
has (tau, X) jointly normal with the moments of
:meth:`~proxyscope.model.segments.SegmentDraws.mix_moments`, so the probability
that a rule decides right is exact (bivariate normal orthants). Three rules:

- **naive**: ship when X moves the good way (X > 0). Its accuracy is P(X and tau
  have the same sign), the seed's decision accuracy
  (:func:`proxyscope.analyses.recommend.decision_draws`). A proxy that always says
  "better" scores well wherever the long-term effect is mostly positive, so on its
  own this number can mislead.
- **no proxy**: always take the long-term effect's more likely sign in the mix
  (ship iff the posterior predictive P(tau > 0) >= 0.5). What any proxy has to beat.
- **calibrated**: ship when the long-term effect predicted from the reading is
  positive: X above (or, for a proxy the long-term effect moves against, below)
  the reading t at which the posterior predictive P(tau > 0 | X = t) crosses 0.5
  (each draw weighted by its density of the reading t). That rule maximises the
  posterior expected accuracy among rules that read X (pointwise: it takes the
  more likely sign for every reading). Where the
  predictive probability never crosses 0.5 the reading cannot change the
  decision and the rule is the no-proxy rule. With an offset between the proxy
  and the long-term effect (the proxy moves while tau stays positive, or the
  other way) it differs from the naive rule.

The rule's threshold and direction are fixed from the posterior (the rule a team
would deploy); each draw then gives that fixed rule's accuracy, so the intervals
carry the uncertainty about how well the rule works, not a re-tuned rule per draw.
A candidate is judged by the **gain** of its calibrated rule over no proxy: the
share of decisions the proxy reading gets right that would otherwise be wrong.
A candidate with no relation to the long-term effect gains nothing however often
its sign agrees.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.special import ndtr

from proxyscope._format import num
from proxyscope.core.bvn import prob_opposite_signs

#: Half-width of the readings searched for the threshold, in predictive standard
#: deviations of the reading (beyond it a reading is too rare to matter).
GRID_SPREAD = 6.0


@dataclasses.dataclass(frozen=True)
class Rule:
    """Ship when ``direction * (X - threshold) > 0``; ``direction`` 0 ignores X and
    ships when ``ship_without`` is True."""

    threshold: float
    direction: int
    ship_without: bool

    @property
    def label(self) -> str:
        if self.direction == 0:
            return "ignores the reading"
        side = "above" if self.direction > 0 else "below"
        return f"ship when the reading is {side} {num(self.threshold, 4)}"


def _positive(mean_tau: np.ndarray, var_tau: np.ndarray) -> np.ndarray:
    """Per draw: P(tau > 0)."""
    return np.asarray(ndtr(mean_tau / np.sqrt(np.maximum(var_tau, 1e-300))))


def no_proxy_ships(mean_tau: np.ndarray, var_tau: np.ndarray) -> bool:
    """Whether the no-proxy rule ships: posterior predictive P(tau > 0) >= 0.5."""
    return bool(np.mean(_positive(mean_tau, var_tau)) >= 0.5)


def no_proxy_accuracy(mean_tau: np.ndarray, var_tau: np.ndarray, ship: bool) -> np.ndarray:
    """Per draw: P(tau has the sign the no-proxy rule takes)."""
    positive = _positive(mean_tau, var_tau)
    return positive if ship else 1.0 - positive


def calibrated_rule(
    mean_tau: np.ndarray,
    var_tau: np.ndarray,
    mean_x: np.ndarray,
    var_x: np.ndarray,
    cov: np.ndarray,
) -> Rule:
    """The reading at which the posterior predictive P(tau > 0 | X) crosses 0.5, and
    on which side of it to ship (inputs: per-draw moments (N,))."""
    ship_without = no_proxy_ships(mean_tau, var_tau)
    ignore = Rule(float("nan"), 0, ship_without)
    spread = float(np.sqrt(np.mean(var_x)))
    if not np.isfinite(spread) or spread <= 0:
        return ignore
    slope = cov / var_x
    cond_sd = np.sqrt(np.maximum(var_tau - cov * slope, 1e-300))

    def excess(x: np.ndarray) -> np.ndarray:
        # Sign of P(tau > 0 | X = x) - 0.5 under the posterior predictive: each draw
        # weighted by how likely it makes the reading x (normalised per x in logs).
        dx = x[None, :] - mean_x[:, None]
        z = (mean_tau[:, None] + slope[:, None] * dx) / cond_sd[:, None]
        log_w = -0.5 * dx**2 / var_x[:, None] - 0.5 * np.log(var_x)[:, None]
        w = np.exp(log_w - log_w.max(axis=0))
        return np.asarray((w * (ndtr(z) - 0.5)).sum(axis=0) / w.sum(axis=0))

    centre = float(np.mean(mean_x))
    grid = centre + spread * np.linspace(-GRID_SPREAD, GRID_SPREAD, 481)
    e = excess(grid)
    crossings = np.flatnonzero(np.sign(e[:-1]) != np.sign(e[1:]))
    if crossings.size == 0:
        return ignore
    # Several crossings (draws that disagree on the slope's sign) are rare; the one
    # nearest the readings' centre decides most experiments.
    i = int(crossings[np.argmin(np.abs(grid[crossings] - centre))])
    lo, hi = grid[i], grid[i + 1]
    rising = e[i + 1] > e[i]
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if (excess(np.array([mid]))[0] > 0) == rising:
            hi = mid
        else:
            lo = mid
    return Rule(float(0.5 * (lo + hi)), 1 if rising else -1, ship_without)


def rule_accuracy(
    rule: Rule,
    mean_tau: np.ndarray,
    var_tau: np.ndarray,
    mean_x: np.ndarray,
    var_x: np.ndarray,
    cov: np.ndarray,
) -> np.ndarray:
    """Per draw: P(the rule's decision matches the sign of tau)."""
    if rule.direction == 0:
        return no_proxy_accuracy(mean_tau, var_tau, rule.ship_without)
    d = rule.direction
    # Right when tau and d * (X - t) have the same sign.
    return 1.0 - prob_opposite_signs(
        mean_tau, d * (mean_x - rule.threshold), var_tau, var_x, d * cov
    )


def share_best(values: np.ndarray, tol: float = 1e-12) -> np.ndarray:
    """Per column, the share of rows (draws) where it is the largest; ties split evenly."""
    top = values.max(axis=1, keepdims=True)
    tied = values >= top - tol * np.maximum(1.0, np.abs(top))
    return np.asarray((tied / tied.sum(axis=1, keepdims=True)).mean(axis=0))

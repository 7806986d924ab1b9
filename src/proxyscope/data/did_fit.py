"""The group-time effects of one difference-in-differences cell and their influence
functions: the estimator of :func:`proxyscope.data.did.did` (its docstring has the
formulas, the comparison units and the small-sample factor)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from proxyscope.data.did_checks import pretrend_p

#: Comparison units a group-time effect needs (one gives no variance).
MIN_COMPARISON = 2
Pair = tuple[int, int, int]


@dataclass(frozen=True)
class CellFit:
    """One cell: θ, V, the cluster scores (and clusters), counts, cohorts, pre-trend test."""

    effect: np.ndarray
    cov: np.ndarray
    score: np.ndarray
    clusters: np.ndarray
    counts: dict[str, int]
    cohorts: list[int]
    pre_effect: np.ndarray
    pre_p: list[float | None]
    pre_pairs: int
    pre_clusters: int


def _comparison(cohort: np.ndarray, g: int, t: int, base: int, n_t: int, control: str) -> Any:
    if control == "never":
        return cohort == n_t
    return (cohort > max(t, base)) & (cohort != g)


def _pairs(
    cohort: np.ndarray, n_t: int, control: str, pre_periods: int | None
) -> tuple[list[Pair], list[Pair]]:
    """(g, t, base) of the post and pre pairs whose comparison group is large enough."""
    post: list[Pair] = []
    pre: list[Pair] = []
    for g in sorted(int(c) for c in np.unique(cohort) if 0 < c < n_t):
        start = 1 if pre_periods is None else max(1, g - pre_periods)
        for t in [*range(start, g), *range(g, n_t)]:
            base = g - 1 if t >= g else t - 1
            if _comparison(cohort, g, t, base, n_t, control).sum() >= MIN_COMPARISON:
                (post if t >= g else pre).append((g, t, base))
    return post, pre


def _effects(
    y: np.ndarray, cohort: np.ndarray, pairs: list[Pair], control: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """ATT(g, t) per pair and metric (k, m), their influence functions (units, k, m; sum
    scale), and which units are treated, and compared, in some pair."""
    n, n_t, m = y.shape
    att = np.empty((len(pairs), m))
    psi = np.zeros((n, len(pairs), m))
    treated = np.zeros(n, dtype=bool)
    compared = np.zeros(n, dtype=bool)
    for k, (g, t, base) in enumerate(pairs):
        treat = cohort == g
        comp = _comparison(cohort, g, t, base, n_t, control)
        dy = y[:, t] - y[:, base]
        mean_t, mean_c = dy[treat].mean(axis=0), dy[comp].mean(axis=0)
        att[k] = mean_t - mean_c
        psi[treat, k] = (dy[treat] - mean_t) / treat.sum()
        psi[comp, k] = -(dy[comp] - mean_c) / comp.sum()
        treated |= treat
        compared |= comp
    return att, psi, treated, compared


def _scores(psi: np.ndarray, cluster: np.ndarray, used: np.ndarray) -> tuple[Any, np.ndarray]:
    """Distinct clusters of the used units and the influence functions summed in each."""
    codes, inverse = np.unique(cluster[used], return_inverse=True)
    sums = np.zeros((len(codes), *psi.shape[1:]))
    np.add.at(sums, inverse, psi[used])
    return codes, sums


def _aggregate(
    att: np.ndarray, psi: np.ndarray, pairs: list[Pair], cohort: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Cohort-size-weighted mean of the pairs' effects and its influence function (units, m)."""
    n_g = np.array([(cohort == g).sum() for g, _, _ in pairs], dtype=float)
    effect = n_g @ att / n_g.sum()
    out = np.einsum("k,nkm->nm", n_g / n_g.sum(), psi)
    # The estimated weights' influence (CS's wif): Σ_{k: g_k = g_i} (ATT_k − θ) / Σ n_g.
    for k, (g, _, _) in enumerate(pairs):
        out[cohort == g] += (att[k] - effect) / n_g.sum()
    return effect, out


def fit_cell(
    y: np.ndarray, cohort: np.ndarray, cluster: np.ndarray, control: str, pre_periods: int | None
) -> CellFit | None:
    """The aggregated effect of one cell (module docstring); None without a post pair.

    ``y[unit, period, metric]``; ``cohort`` and ``cluster`` as in
    :class:`~proxyscope.data.did_checks.Block`, units treated from the first
    period on already left out.
    """
    post, pre = _pairs(cohort, y.shape[1], control, pre_periods)
    if not post:
        return None
    att, psi_k, treated, compared = _effects(y, cohort, post, control)
    effect, psi = _aggregate(att, psi_k, post, cohort)
    codes, score = _scores(psi, cluster, treated | compared)
    n_cl = len(codes)
    cov = (n_cl / (n_cl - 1.0) if n_cl > 1 else np.nan) * score.T @ score
    pre_effect = np.full(y.shape[2], np.nan)
    pre_p: list[float | None] = [None] * y.shape[2]
    pre_clusters = 0
    if pre:
        a, psi_pre, pre_t, pre_c = _effects(y, cohort, pre, control)
        pre_effect, pre_psi = _aggregate(a, psi_pre, pre, cohort)
        pre_codes, pre_score = _scores(pre_psi, cluster, pre_t | pre_c)
        pre_clusters = len(pre_codes)
        pre_p = pretrend_p(pre_effect, pre_score)
    in_t, in_c = np.isin(codes, cluster[treated]), np.isin(codes, cluster[compared])
    counts = {
        "treated_units": int(treated.sum()),
        "comparison_units": int(compared.sum()),
        "clusters_treated": int(in_t.sum()),
        "clusters_comparison": int(in_c.sum()),
        "clusters_shared": int((in_t & in_c).sum()),
        "clusters": n_cl,
        "post_pairs": len(post),
    }
    cohorts = sorted({g for g, _, _ in post})
    pre_fit = (pre_effect, pre_p, len(pre), pre_clusters)
    return CellFit(effect, cov, score, codes, counts, cohorts, *pre_fit)

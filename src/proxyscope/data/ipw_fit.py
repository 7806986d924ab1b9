"""Cross-fitting and scores of :func:`proxyscope.data.ipw.ipw`.

The folds, the cross-fitted nuisance models (propensity ê, outcome models ĝ_0
and ĝ_1), the doubly robust scores θ_c and ψ_i, and the joint covariance V_c
of every cell; the formulas are in the module docstring of
:mod:`proxyscope.data.ipw`. Experiments are fitted one at a time
(:func:`fit_experiment`: nothing in one experiment's fit reads another's rows)
and their cells then put together (:func:`combine`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.model_selection import KFold

from proxyscope.data.clustered import Clustered
from proxyscope.data.ipw_checks import Rows, Settings
from proxyscope.data.ipw_report import OverlapStats, overlap_stats
from proxyscope.data.validate import plain
from proxyscope.errors import DataError

#: Outcome models whose multi-output fit equals one fit per metric (fitted once per arm).
MULTI_OUTPUT = (LinearRegression, Ridge)


def folds(units: np.ndarray, n_folds: int, random_state: int) -> np.ndarray:
    """The cross-fitting fold of each row of one experiment.

    ``units`` numbers the experiment's independent units 0 .. U − 1 (rows, or
    clusters in order of first appearance); the folds are those of
    ``sklearn.model_selection.KFold(n_folds, shuffle=True,
    random_state=random_state)`` over the U units.
    """
    fold_of = np.empty(int(units.max()) + 1, dtype=np.int64)
    kfold = KFold(n_splits=n_folds, shuffle=True, random_state=random_state)
    for k, (_, test) in enumerate(kfold.split(np.zeros((len(fold_of), 1)))):
        fold_of[test] = k
    return fold_of[units]


def nuisance(
    data: Rows, settings: Settings, *, owner: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cross-fitted ê (raw), ĝ_0 and ĝ_1 (n × M; ĝ_1 NaN for the ATT) per row."""
    labels = data.experiment_labels
    n, m = data.y.shape
    e_raw = np.full(n, np.nan)
    g0 = np.full((n, m), np.nan)
    g1 = np.full((n, m), np.nan)
    arms = (0, 1) if settings.estimand == "ate" else (0,)
    t = data.treated.astype(np.int64)
    for e in range(len(labels)):
        rows = np.flatnonzero(data.experiment == e)
        unit = rows if data.cluster is None else data.cluster[rows]
        unit = np.asarray(pd.factorize(unit)[0], dtype=np.int64)
        kind = "units" if data.cluster is None else "clusters"
        if unit.max() + 1 < settings.n_folds:
            raise DataError(
                f"{owner}: experiment {plain(labels[e])!r} has {unit.max() + 1} {kind}, fewer "
                f"than n_folds={settings.n_folds}; lower n_folds or drop the experiment."
            )
        fold = folds(unit, settings.n_folds, settings.random_state)
        x, y, te = data.features[rows], data.y[rows], t[rows]
        for k in range(settings.n_folds):
            train, test = fold != k, fold == k
            if min(int((te[train] == 1).sum()), int((te[train] == 0).sum())) < 2:
                raise DataError(
                    f"{owner}: in experiment {plain(labels[e])!r}, the units outside fold {k} "
                    "hold fewer than 2 treated or 2 control units to fit the models on; lower "
                    "n_folds or drop the experiment."
                )
            where = f"experiment {plain(labels[e])!r}, fold {k}"
            ps = settings.propensity_model
            e_raw[rows[test]] = _fit_predict(ps, x[train], te[train], x[test], where, owner)
            for a, out in zip(arms, (g0, g1), strict=False):
                fit = train & (te == a)
                model = settings.outcome_model
                if isinstance(model, MULTI_OUTPUT):
                    pred = _fit_predict(model, x[fit], y[fit], x[test], where, owner)
                    out[rows[test]] = np.asarray(pred).reshape(-1, m)
                    continue
                for j in range(m):
                    out[rows[test], j] = _fit_predict(
                        model, x[fit], y[fit, j], x[test], where, owner
                    )
    return e_raw, g0, g1


def _fit_predict(
    model: Any, x: np.ndarray, y: np.ndarray, new: np.ndarray, where: str, owner: str
) -> Any:
    """A clone of ``model`` fitted on (x, y), predicting ``new`` (a classifier: P(class 1)).

    A failure inside scikit-learn becomes a DataError naming the model and the fold.
    """
    try:
        fitted = clone(model).fit(x, y)
        if hasattr(fitted, "predict_proba"):
            return fitted.predict_proba(new)[:, list(fitted.classes_).index(1)]
        return fitted.predict(new)
    except (ValueError, TypeError, IndexError, ArithmeticError, np.linalg.LinAlgError) as err:
        raise DataError(f"{owner}: {type(model).__name__} failed ({where}): {err}") from err


def scores(
    cell: np.ndarray,
    treated: np.ndarray,
    y: np.ndarray,
    e: np.ndarray,
    g0: np.ndarray,
    g1: np.ndarray,
    estimand: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Per cell θ_c (C × M) and per row the influence function ψ_i (n × M; module docstring)."""
    t = treated.astype(float)[:, None]
    n_cells = int(cell.max()) + 1
    m = y.shape[1]
    if estimand == "ate":
        b = g1 - g0 + t * (y - g1) / e[:, None] - (1.0 - t) * (y - g0) / (1.0 - e)[:, None]
        denom = np.bincount(cell, minlength=n_cells).astype(float)
        centre = np.ones_like(t)
    else:
        b = (t - (1.0 - t) * (e / (1.0 - e))[:, None]) * (y - g0)
        denom = np.bincount(cell, weights=treated.astype(float), minlength=n_cells)
        centre = t
    theta = np.stack(
        [np.bincount(cell, weights=b[:, j], minlength=n_cells) / denom for j in range(m)], axis=1
    )
    psi = (b - centre * theta[cell]) / denom[cell][:, None]
    return theta, psi


def joint_covariance(
    cell: np.ndarray,
    group: np.ndarray,
    treated: np.ndarray,
    psi: np.ndarray,
    theta: np.ndarray,
    clustered: bool,
) -> Clustered:
    """V_c = f Σ_g s_g s_gᵀ per cell, with the per-(cell, group) scores s_g.

    Returned as :class:`~proxyscope.data.clustered.Clustered` (one contrast), so
    :func:`~proxyscope.data.shared_noise.shared_noise` can read the scores.
    """
    n_cells, m = theta.shape
    span = int(group.max()) + 1
    pair, _ = pd.factorize(cell.astype(np.int64) * span + group)
    n_pairs = int(pair.max()) + 1
    pair_cell, pair_group = np.zeros((2, n_pairs), dtype=np.int64)
    pair_cell[pair], pair_group[pair] = cell, group
    score = np.zeros((n_pairs, m))
    np.add.at(score, pair, psi)
    clusters = np.bincount(pair_cell, minlength=n_cells)
    factor = clusters / (clusters - 1.0) if clustered else np.ones(n_cells)
    cov = np.zeros((n_cells, m, m))
    np.add.at(cov, pair_cell, score[:, :, None] * score[:, None, :])
    present = np.zeros((n_pairs, 2))
    np.add.at(present, (pair, (~treated).astype(np.int64)), 1.0)
    users = np.stack([np.bincount(cell, weights=treated, minlength=n_cells)] * 2, 1)
    users[:, 1] = np.bincount(cell, minlength=n_cells) - users[:, 0]
    n_clusters = np.zeros((n_cells, 2), dtype=np.int64)
    np.add.at(n_clusters, pair_cell, present > 0)
    shared = np.bincount(pair_cell, weights=(present > 0).all(axis=1), minlength=n_cells)
    return Clustered(
        users.astype(np.int64),
        theta[:, None],
        (factor[:, None, None] * cov)[:, None],
        n_clusters,
        clusters,
        shared.astype(np.int64),
        score,
        pair_cell,
        pair_group,
    )


@dataclass(frozen=True)
class Part:
    """One experiment's fit: per cell θ (C × M), the :class:`Clustered` covariances
    (scores only when asked), keys, first row and overlap statistics; the count of
    clipped propensities of exactly 0 or 1 and the rows."""

    theta: np.ndarray
    clustered: Clustered
    cell_keys: np.ndarray
    cell_first: np.ndarray
    stats: OverlapStats
    extreme: int
    n_rows: int


def fit_experiment(data: Rows, settings: Settings, *, owner: str, keep_scores: bool) -> Part:
    """Cross-fitted nuisances, scores and covariances of one experiment's rows.

    ``keep_scores``: keep the per-(cell, cluster) scores, which
    :func:`~proxyscope.data.shared_noise.shared_noise` reads (else they are dropped,
    a row each without clusters).
    """
    e_raw, g0, g1 = nuisance(data, settings, owner=owner)
    with np.errstate(invalid="ignore", divide="ignore"):
        e = np.clip(e_raw, settings.trim, 1.0 - settings.trim)
        extreme = int(((e <= 0.0) | (e >= 1.0)).sum()) if settings.trim == 0.0 else 0
        theta, psi = scores(data.cell, data.treated, data.y, e, g0, g1, settings.estimand)
        group = np.arange(len(data.cell)) if data.cluster is None else data.cluster
        got = joint_covariance(data.cell, group, data.treated, psi, theta, data.cluster is not None)
        stats = overlap_stats(data, e_raw, e, settings.estimand)
    if not keep_scores:
        empty = np.zeros(0, dtype=np.int64)
        got = replace(got, score=np.zeros((0, theta.shape[1])), pair_cell=empty, pair_cluster=empty)
    return Part(theta, got, data.cell_keys, data.cell_first, stats, extreme, len(data.cell))


def combine(parts: Sequence[Part]) -> tuple[Clustered, np.ndarray, np.ndarray, OverlapStats]:
    """The experiments' cells as one set, numbered in order of first appearance in the
    data: the covariances, θ, the cell keys and the overlap statistics."""
    first = np.concatenate([p.cell_first for p in parts])
    order = np.argsort(first, kind="stable")
    number = np.empty_like(order)
    number[order] = np.arange(len(order))
    start = np.cumsum([0] + [len(p.cell_first) for p in parts])[:-1]

    def cells(name: str) -> np.ndarray:
        return np.concatenate([getattr(p.clustered, name) for p in parts])[order]

    pair_cell = [p.clustered.pair_cell + s for p, s in zip(parts, start, strict=True)]
    got = Clustered(
        users=cells("users"),
        effect=cells("effect"),
        cov=cells("cov"),
        n_clusters=cells("n_clusters"),
        clusters=cells("clusters"),
        shared=cells("shared"),
        score=np.concatenate([p.clustered.score for p in parts]),
        pair_cell=number[np.concatenate(pair_cell)],
        pair_cluster=np.concatenate([p.clustered.pair_cluster for p in parts]),
    )
    theta = np.concatenate([p.theta for p in parts])[order]
    keys = np.concatenate([p.cell_keys for p in parts])[order]
    stats = OverlapStats.concat([p.stats for p in parts]).cells_in(order)
    return got, theta, keys, stats

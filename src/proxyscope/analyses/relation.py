"""Past experiments against the fitted relation, and a posterior predictive check.

The one picture a product manager grasps: each past experiment's estimated proxy
effect against its estimated long-term effect, with the relation the model learned
and its band. An experiment's estimate is the user-weighted mean of its cells'
estimates (the mix it ran on), its sampling covariance the matching quadratic form
of the cells' (``sum_c w_c^2 S_c``). The line is the historical mix's regression of
a new experiment's true long-term effect on one proxy's true effect, per draw
(slope ``Cov(tau, theta_k) / Var(theta_k)``), with its ``ci`` band; for segments
flagged fragile, their own line.

The check: for every past experiment, the posterior predictive distribution of its
long-term estimate given its proxy estimates (all proxies, noise on both sides: per
draw a Gaussian conditional of (tau + e_y, theta + e_x) on the mix the experiment
ran on). Its probability integral transform (PIT) and whether the ``ci`` interval
holds the estimate: a calibrated model holds about ``ci`` of them. It is an
in-sample check (the experiments also fitted the model), so it finds misfit, it
does not prove predictive accuracy: that is :func:`proxyscope.backtest`'s job.

A fit with time: the lines are the relation of one period (the latest by default,
or ``period=``; DESIGN.md §9), and each past experiment is checked against the
relation of the period it started in, the one the model fitted it with.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy.special import ndtr

from proxyscope.analyses.arguments import check_fit
from proxyscope.core.draws import check_ci
from proxyscope.errors import DataTypeError, ParameterError, suggestion
from proxyscope.model.periods import resolve_period
from proxyscope.model.segments import SegmentDraws, fitted_segments, historical_mix
from proxyscope.options import DEFAULT_CI

if TYPE_CHECKING:
    from proxyscope.model.fit import ProxyFit

#: Points on each fitted line.
GRID = 60


@dataclasses.dataclass(frozen=True)
class Relation:
    """What :func:`past_experiments` returns.

    Attributes
    ----------
    points : DataFrame
        One row per (experiment, proxy): ``experiment``, ``proxy``, ``x`` (the
        experiment's proxy estimate), ``x_se``, ``y`` (its long-term estimate),
        ``y_se``.
    lines : DataFrame
        ``scope`` ("historical mix" or a flagged segment's label), ``proxy``, ``x``,
        ``mean``, ``lo``, ``hi``: the fitted relation and its ``ci`` band.
    check : DataFrame
        One row per experiment: ``experiment``, ``y``, ``pred_mean``, ``pred_lo``,
        ``pred_hi`` (posterior predictive of the long-term estimate given the proxy
        estimates: quantiles of the mixture of each draw's Gaussian), ``pit`` (that
        mixture's CDF at the estimate) and ``inside`` (the PIT lies in the central
        ``ci``, i.e. the interval holds the estimate). For a fit with time also
        ``period``: the period the experiment started in, whose relation it is
        checked against.
    ci : float
    period : str or None
        The period of a fit with time whose relation ``lines`` draw (None for a
        static fit).
    """

    points: pd.DataFrame
    lines: pd.DataFrame
    check: pd.DataFrame
    ci: float
    period: str | None = None

    @property
    def coverage(self) -> float:
        """Share of past experiments whose long-term estimate lies in its interval."""
        return float(self.check["inside"].mean())

    def reading(self) -> str:
        """One sentence on the predictive check."""
        n = len(self.check)
        inside = int(self.check["inside"].sum())
        level = round(100 * self.ci)
        own = " (under the relation of the period it started in)" if self.period else ""
        return (
            f"Posterior predictive check: the {level}% predictive interval of each past "
            f"experiment's long-term estimate, given its proxy estimates{own}, holds {inside} of "
            f"{n} ({100 * inside / n:.0f}%; a calibrated model holds about {level}%). "
            "In-sample: it finds misfit; held-out accuracy is the backtest's."
        )


def experiment_estimates(fit: ProxyFit) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
    """Per past experiment: user weights over the fit's segments (E, S), the estimate
    (E, M) and its sampling covariance (E, M, M), and the experiment ids."""
    eff = fit.effects
    users = eff.users()
    experiments = list(eff.experiments)
    exp_index = pd.Index(experiments).get_indexer(eff.experiment)
    labels = list(fit.structure.labels)
    seg_index = pd.Index(labels).get_indexer(pd.Index(eff.segment_label))
    n_exp, n_seg = len(experiments), len(labels)
    totals = np.bincount(exp_index, weights=users, minlength=n_exp)
    w = users / totals[exp_index]
    shares = np.zeros((n_exp, n_seg))
    np.add.at(shares, (exp_index, seg_index), w)
    est = np.zeros((n_exp, eff.effect.shape[1]))
    np.add.at(est, exp_index, w[:, None] * eff.effect)
    cov = np.zeros((n_exp, *eff.noise_cov.shape[1:]))
    np.add.at(cov, exp_index, (w**2)[:, None, None] * eff.noise_cov)
    return shares, est, cov, experiments


def _lines(
    mom: dict[str, np.ndarray], k: int, grid: np.ndarray, ci: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The regression of tau on proxy ``k`` for a mix's moments: mean and band on ``grid``."""
    slope = mom["cov_tau_theta"][:, k] / mom["cov_theta"][:, k, k]
    intercept = mom["mean_tau"] - slope * mom["mean_theta"][:, k]
    values = intercept[:, None] + slope[:, None] * grid[None, :]
    lo, hi = np.quantile(values, [(1 - ci) / 2, (1 + ci) / 2], axis=0)
    return values.mean(axis=0), lo, hi


def past_experiments(
    fit: ProxyFit,
    ci: float = DEFAULT_CI,
    flagged: Sequence[tuple[str, str]] = (),
    period: str | None = None,
) -> Relation:
    """Past experiments' estimates, the fitted relation per proxy, and the predictive check.

    Parameters
    ----------
    fit : ProxyFit
    ci : float
        Level of the bands and predictive intervals.
    flagged : sequence of (segment label, proxy)
        Segments whose own relation is drawn too (e.g. those
        :func:`proxyscope.fragility` flags).
    period : str, optional
        For a fit with time: the period whose relation the lines draw (one of
        ``fit.info.periods``; default the latest). The check reads every experiment
        in its own period. A static fit takes none.
    """
    fit = check_fit(fit, "past_experiments")
    ci = check_ci(ci, "past_experiments")
    flagged = _check_flagged(fit, flagged)
    period = resolve_period(fit, period, "past_experiments")
    seg = fitted_segments(fit, period)
    shares, est, cov, experiments = experiment_estimates(fit)
    proxies = list(fit.proxies)
    se = np.sqrt(np.einsum("emm->em", cov))
    points = pd.DataFrame(
        [
            {
                "experiment": experiments[e],
                "proxy": p,
                "x": est[e, k + 1],
                "x_se": se[e, k + 1],
                "y": est[e, 0],
                "y_se": se[e, 0],
            }
            for k, p in enumerate(proxies)
            for e in range(len(experiments))
        ]
    )
    # Each scope's moments once: the historical mix and every flagged segment.
    labels = list(fit.structure.labels)
    moments = {"historical mix": seg.mix_moments(historical_mix(fit).to_numpy())}
    for label in dict.fromkeys(label for label, _ in flagged if label in labels):
        moments[label] = seg.mix_moments(np.eye(len(labels))[labels.index(label)])
    rows = []
    for k, p in enumerate(proxies):
        x = points.loc[points["proxy"] == p, "x"].to_numpy()
        pad = 0.05 * (x.max() - x.min() or 1.0)
        grid = np.linspace(x.min() - pad, x.max() + pad, GRID)
        scopes = [
            "historical mix",
            *(lab for lab, proxy in flagged if proxy == p and lab in labels),
        ]
        for scope in scopes:
            mean, lo, hi = _lines(moments[scope], k, grid, ci)
            rows += [
                {"scope": scope, "proxy": p, "x": g, "mean": m, "lo": a, "hi": b}
                for g, m, a, b in zip(grid, mean, lo, hi, strict=True)
            ]
    lines = pd.DataFrame(rows)
    started = experiment_periods(fit)
    if started is None:
        check = _predictive_check([seg] * len(experiments), shares, est, cov, experiments, ci)
    else:
        own = {p: fitted_segments(fit, p) for p in dict.fromkeys(started)}
        check = _predictive_check([own[p] for p in started], shares, est, cov, experiments, ci)
        check.insert(1, "period", started)
    lines.attrs["period"] = period
    return Relation(points=points, lines=lines, check=check, ci=ci, period=period)


def experiment_periods(fit: ProxyFit) -> list[str] | None:
    """The period each past experiment started in, in the order of
    :func:`experiment_estimates` (None for a static fit)."""
    eff = fit.effects
    if not fit.info.periods:
        return None
    cell_exp = pd.Index(list(eff.experiments)).get_indexer(eff.experiment)
    first = np.unique(cell_exp, return_index=True)[1]
    labels = list(eff.periods)
    return [labels[int(i)] for i in np.asarray(eff.period_index)[first]]


def _check_flagged(fit: ProxyFit, flagged: Any) -> list[tuple[str, str]]:
    """``flagged`` as (segment label, proxy) pairs of the fit's labels and proxies."""
    where = "The 'flagged' parameter of past_experiments"
    if isinstance(flagged, (str, bytes)) or not isinstance(flagged, Iterable):
        raise DataTypeError(
            f"{where} must be a sequence of (segment label, proxy) pairs; got "
            f"{type(flagged).__name__}."
        )
    pairs = []
    labels, proxies = list(fit.structure.labels), list(fit.proxies)
    for item in flagged:
        if not (isinstance(item, tuple | list) and len(item) == 2):
            raise DataTypeError(f"{where} must hold (segment label, proxy) pairs; got {item!r}.")
        label, proxy = str(item[0]), str(item[1])
        if label not in labels:
            raise ParameterError(
                f"{where} names segment {label!r}, which the fit does not have; its segments "
                f"are {labels[:12]}{' ...' if len(labels) > 12 else ''}."
                + suggestion(label, labels)
            )
        if proxy not in proxies:
            raise ParameterError(
                f"{where} names proxy {proxy!r}; the fit's proxies are {proxies}."
                + suggestion(proxy, proxies)
            )
        pairs.append((label, proxy))
    return pairs


def _predictive_check(
    segs: Sequence[SegmentDraws],
    shares: np.ndarray,
    est: np.ndarray,
    cov: np.ndarray,
    experiments: list,
    ci: float,
) -> pd.DataFrame:
    rows = []
    for e in range(len(experiments)):
        mom = segs[e].mix_moments(shares[e])
        c = mom["cov_tau_theta"] + cov[e, 0, 1:]
        v = mom["cov_theta"] + cov[e, 1:, 1:]
        sol = np.linalg.solve(v, (est[e, 1:] - mom["mean_theta"])[..., None])[..., 0]
        gain = np.linalg.solve(v, c[..., None])[..., 0]
        mean = mom["mean_tau"] + np.einsum("nk,nk->n", c, sol)
        var = mom["var_tau"] + cov[e, 0, 0] - np.einsum("nk,nk->n", c, gain)
        sd = np.sqrt(np.maximum(var, 1e-300))
        y = est[e, 0]
        pit = float(np.mean(ndtr((y - mean) / sd)))
        lo = _mixture_quantile(mean, sd, (1 - ci) / 2)
        hi = _mixture_quantile(mean, sd, (1 + ci) / 2)
        rows.append(
            {
                "experiment": experiments[e],
                "y": y,
                "pred_mean": float(mean.mean()),
                "pred_lo": float(lo),
                "pred_hi": float(hi),
                "pit": pit,
                "inside": bool((1 - ci) / 2 <= pit <= (1 + ci) / 2),
            }
        )
    return pd.DataFrame(rows)


def _mixture_quantile(mean: np.ndarray, sd: np.ndarray, p: float) -> float:
    """The ``p`` quantile of the equal-weight mixture of N(mean_n, sd_n^2), by bisection."""
    lo = float(np.min(mean - 40 * sd))
    hi = float(np.max(mean + 40 * sd))
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if np.mean(ndtr((mid - mean) / sd)) < p:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)

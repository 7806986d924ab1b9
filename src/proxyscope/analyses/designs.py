"""What the designs of a history do to a fit: each non-randomized design's bias and its pull.

A history can mix designs (DESIGN.md §8). The model takes the randomized ones
(``ab``, ``cluster``) as unbiased and gives every other design d a bias b_c ~
N(0, Sigma_d) per cell, integrated out (it adds Sigma_d to the cell's
covariance). :func:`design_bias` reports, per design:

- how many cells and experiments it has;
- Sigma_d: the bias sd per metric with its interval (original units), next to
  the median sampling sd of the design's cells (a bias much larger than the
  noise means those cells carry little information about the relation), and
  the correlation of the outcome's bias with each proxy's (confounding that
  moves them together would tilt a slope fitted as if unbiased);
- how far the design moves the slopes: with ``refit=True`` the model is
  refitted without the design's experiments (same settings and seed) and the
  slope of each proxy is shown with and without them. The slope is the
  global slope (``beta_global``; the mean over segments with pooling
  "none"), in original units.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from proxyscope import dims
from proxyscope.analyses.arguments import check_bool, check_fit
from proxyscope.core.draws import check_ci
from proxyscope.data import designs as ds
from proxyscope.model.posterior import BIAS_DESIGN
from proxyscope.options import DEFAULT_CI

if TYPE_CHECKING:
    from proxyscope.model.fit import ProxyFit

OWNER = "design_bias"
ALL = "all cells"
RANDOMIZED_ONLY = "randomized designs only"


@dataclasses.dataclass(frozen=True)
class DesignReport:
    """The designs of a fit's history, their bias and how they move the slopes.

    Attributes
    ----------
    designs : DataFrame
        One row per design: cells, experiments, whether randomized (unbiased), and
        its experiments whose cells share part of their errors (``shared_cov``).
    bias : DataFrame
        One row per (biased design, metric): the bias sd (mean, lower, upper;
        original units) and the median sampling sd of the design's cells.
    correlation : DataFrame
        One row per (biased design, proxy): the correlation of the outcome's
        bias with the proxy's (mean, lower, upper).
    slopes : DataFrame
        One row per (proxy, fit): the slope with all cells and, when refitted,
        without each biased design (and with randomized designs only when
        there are several), with ``shift`` = its mean minus the all-cells mean.
    ci : float
    """

    designs: pd.DataFrame
    bias: pd.DataFrame
    correlation: pd.DataFrame
    slopes: pd.DataFrame
    ci: float

    def reading(self) -> str:
        """One paragraph a reader can act on."""
        biased = self.designs[~self.designs["randomized"]]
        shared = int(self.designs["shared_error_experiments"].sum())
        note = (
            f" In {shared} experiment{'s' if shared != 1 else ''} the cells share part of "
            "their errors (clusters spanning segment cells); the model integrates that "
            "shared error."
            if shared
            else ""
        )
        if biased.empty:
            return (
                "Every cell comes from a randomized design ("
                + ", ".join(self.designs["design"])
                + "): the model takes every estimate as unbiased; no bias term."
                + note
            )
        parts = []
        for design in biased["design"]:
            rows = self.bias[self.bias["design"] == design]
            outcome = rows.iloc[0]
            text = (
                f"{design}: bias sd on {outcome['metric']} {outcome['mean']:.3g} "
                f"[{outcome['lower']:.3g}, {outcome['upper']:.3g}]"
            )
            if outcome["noise_sd"] > 0:
                text += f" ({outcome['mean'] / outcome['noise_sd']:.1f}x its cells' sampling sd)"
            moved = self.slopes[self.slopes["fit"] == f"without {design}"]
            if not moved.empty:
                shifts = ", ".join(f"{r.proxy} {r.shift:+.3g}" for r in moved.itertuples())
                text += f"; without its experiments the slopes move by {shifts}"
            parts.append(text)
        return "; ".join(parts) + "." + note

    def __repr__(self) -> str:
        return f"<proxyscope.DesignReport: {self.reading()}>"


def design_bias(
    fit: ProxyFit,
    *,
    refit: bool = True,
    ci: float = DEFAULT_CI,
    random_seed: int | None = None,
    progress: bool = False,
) -> DesignReport:
    """Each design's cells, the bias the fit learned for it, and its pull on the slopes.

    Parameters
    ----------
    fit : ProxyFit
    refit : bool, default True
        Refit the model without each biased design's experiments (one fit per
        design, plus one on the randomized designs only when there are two or
        more biased designs) to show how far the design moves the slopes.
        False: only the fit's own posterior (no refits).
    ci : float, default 0.9
        Width of the intervals.
    random_seed : int, optional
        Seed of the refits (default: the fit's own seed).
    progress : bool, default False
        Show the refits' progress bars.

    Returns
    -------
    DesignReport
    """
    fit = check_fit(fit, OWNER)
    ci = check_ci(ci, owner=OWNER)
    refit = check_bool(refit, "refit", OWNER)
    effects = fit.effects
    design = effects.design
    present = ds.order(list(design))
    table = pd.DataFrame(
        {
            "design": present,
            "cells": [int(np.sum(design == d)) for d in present],
            "experiments": [len(pd.unique(effects.experiment[design == d])) for d in present],
            "randomized": [ds.is_randomized(d) for d in present],
            "shared_error_experiments": [
                _shared_experiments(effects, design == d) for d in present
            ],
        }
    )
    lo_q, hi_q = (1 - ci) / 2, (1 + ci) / 2
    bias_rows: list[dict[str, Any]] = []
    corr_rows: list[dict[str, Any]] = []
    post = fit.posterior
    biased = list(fit.info.bias_designs)
    noise_sd = np.sqrt(np.einsum("cii->ci", effects.noise_cov))
    for d in biased:
        sd = post["bias_sd"].sel({BIAS_DESIGN: d})
        corr = post["bias_corr"].sel({BIAS_DESIGN: d})
        for j, metric in enumerate(effects.metrics):
            draws = np.asarray(sd.sel({dims.METRIC: metric}).values).ravel()
            bias_rows.append(
                {
                    "design": d,
                    "metric": metric,
                    "mean": float(draws.mean()),
                    "lower": float(np.quantile(draws, lo_q)),
                    "upper": float(np.quantile(draws, hi_q)),
                    "noise_sd": float(np.median(noise_sd[design == d, j])),
                }
            )
        for proxy in effects.proxies:
            sel = {dims.METRIC: effects.outcome, dims.METRIC_: proxy}
            draws = np.asarray(corr.sel(sel).values).ravel()
            corr_rows.append(
                {
                    "design": d,
                    "proxy": proxy,
                    "mean": float(draws.mean()),
                    "lower": float(np.quantile(draws, lo_q)),
                    "upper": float(np.quantile(draws, hi_q)),
                }
            )
    slopes = _slope_rows(fit, ALL, lo_q, hi_q, None)
    if refit and biased:
        groups = [(f"without {d}", {d}) for d in biased]
        if len(biased) > 1:
            groups.append((RANDOMIZED_ONLY, set(biased)))
        for label, drop in groups:
            keep = [
                e
                for e in effects.experiments.tolist()
                if not np.any(np.isin(design[effects.experiment == e], list(drop)))
            ]
            if len(keep) < 2:
                continue
            other = _refit(fit, effects.subset(keep), random_seed, progress)
            slopes += _slope_rows(other, label, lo_q, hi_q, slopes[: len(effects.proxies)])
    columns = ["design", "metric", "mean", "lower", "upper", "noise_sd"]
    return DesignReport(
        designs=table,
        bias=pd.DataFrame(bias_rows, columns=columns),
        correlation=pd.DataFrame(corr_rows, columns=["design", "proxy", "mean", "lower", "upper"]),
        slopes=pd.DataFrame(slopes),
        ci=ci,
    )


def _shared_experiments(effects: Any, cells: np.ndarray) -> int:
    """Experiments among ``cells`` whose cells carry a nonzero shared error."""
    if ds.SHARED_COV not in effects.data:
        return 0
    has = np.abs(effects.variable(ds.SHARED_COV)).sum(axis=(1, 2)) > 0
    return len(pd.unique(effects.experiment[cells & has]))


def slope_draws(fit: ProxyFit) -> np.ndarray:
    """Draws (sample, proxy) of each proxy's global slope, original units."""
    post = fit.posterior
    pooled = "beta_global" in post
    beta = post["beta_global"] if pooled else post["beta"].mean(dims.SEGMENT)
    stacked = beta.stack({dims.SAMPLE: (dims.CHAIN, dims.DRAW)}).transpose(dims.SAMPLE, ...)
    return np.asarray(stacked.values, dtype=float)


def _slope_rows(
    fit: ProxyFit, label: str, lo_q: float, hi_q: float, base: list[dict[str, Any]] | None
) -> list[dict[str, Any]]:
    draws = slope_draws(fit)
    rows = []
    for j, proxy in enumerate(fit.proxies):
        mean = float(draws[:, j].mean())
        rows.append(
            {
                "proxy": proxy,
                "fit": label,
                "mean": mean,
                "lower": float(np.quantile(draws[:, j], lo_q)),
                "upper": float(np.quantile(draws[:, j], hi_q)),
                "shift": 0.0 if base is None else mean - float(base[j]["mean"]),
                "trustworthy": bool(fit.trustworthy),
            }
        )
    return rows


def _refit(fit: ProxyFit, effects: Any, random_seed: int | None, progress: bool) -> ProxyFit:
    """The fit's model (same settings) on other cells."""
    from proxyscope.model.proxy_model import ProxyModel

    sampler = fit.sampler
    model = ProxyModel.like(fit)
    seed = random_seed if random_seed is not None else sampler["random_seed"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(
            effects,
            draws=sampler["draws"],
            tune=sampler["tune"],
            chains=sampler["chains"],
            random_seed=seed,
            progress=progress,
        )

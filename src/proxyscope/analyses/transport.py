"""Transport: what a new experiment's long-term effect will be in another population.

A target is a segment mix pi (from a user table, counts or shares; segment
combinations the fit never saw are predicted from the pooled main effects and
flagged ``extrapolated``). Per posterior draw the target's long-term effect
tau_pi = sum_s pi_s tau_s is Gaussian (:mod:`proxyscope.analyses.implied`);
one draw of it per posterior draw gives the posterior predictive.

With ``proxy_effects`` — the proxy readings of an experiment run on the
target — the prediction is conditional: per draw, tau_pi given
theta_pi + noise = readings, where the noise is the readings' sampling error
(``proxy_se`` or ``proxy_cov``; zero if not given).

A fit with time predicts with the relation of one period: the latest by default
("what holds now", DESIGN.md §9), or ``period=``; the target and the historical
mix it is compared with are read in the same period, and the result names it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from proxyscope import dims
from proxyscope.analyses.arguments import (
    check_fit,
    check_noise,
    check_readings,
    check_seed,
)
from proxyscope.analyses.implied import in_period, proxy_flips, resolve_mix
from proxyscope.analyses.surrogacy import r2_all
from proxyscope.core.draws import check_ci, interval
from proxyscope.errors import ParameterError
from proxyscope.model.periods import resolve_period
from proxyscope.model.segments import analysis_seed, fitted_segments, historical_mix, segments_for
from proxyscope.options import DEFAULT_CI

if TYPE_CHECKING:
    from proxyscope.model.fit import ProxyFit


@dataclasses.dataclass
class TransportResult:
    """Posterior predictive of a target population's long-term effect.

    Attributes
    ----------
    draws : ndarray
        Posterior predictive draws of the target's long-term effect (original
        units), conditional on ``proxy_effects`` when they were given.
    historical_draws : ndarray
        The same for the historical mix (unconditional).
    target : DataFrame
        The target's segment combinations, shares and ``extrapolated`` flags.
    period : str or None
        The period of a fit with time whose relation the prediction uses (None for
        a static fit).
    """

    draws: np.ndarray
    historical_draws: np.ndarray
    gap_draws: np.ndarray
    r2_draws: np.ndarray
    flip_draws: np.ndarray
    proxies: tuple[str, ...]
    target: pd.DataFrame
    conditional: bool
    proxy_effects: dict[str, float] | None
    ci: float
    trustworthy: bool
    period: str | None = None

    def summary(self, ci: float | None = None) -> pd.DataFrame:
        """One row per quantity: ``quantity``, ``mean``, ``lo``, ``hi``.

        Quantities: the target's long-term effect (``long_term_effect``), the
        probability it is positive (``p_positive``), the gap to the historical
        mix's prediction (``gap_to_historical``, per draw), the R^2 of all
        proxies under the target mix (``r2``) and each proxy's flip
        probability under it (``flip_prob:<proxy>``). ``attrs["period"]`` names
        the period of a fit with time the prediction describes (None for a static fit).
        """
        ci = self.ci if ci is None else ci
        rows = []
        lo, hi = interval(self.draws, ci)
        rows.append(("long_term_effect", float(self.draws.mean()), float(lo), float(hi)))
        rows.append(("p_positive", float(np.mean(self.draws > 0)), np.nan, np.nan))
        lo, hi = interval(self.gap_draws, ci)
        rows.append(("gap_to_historical", float(self.gap_draws.mean()), float(lo), float(hi)))
        lo, hi = interval(self.r2_draws, ci)
        rows.append(("r2", float(np.median(self.r2_draws)), float(lo), float(hi)))
        for k, proxy in enumerate(self.proxies):
            lo, hi = interval(self.flip_draws[:, k], ci)
            rows.append(
                (f"flip_prob:{proxy}", float(self.flip_draws[:, k].mean()), float(lo), float(hi))
            )
        out = pd.DataFrame(rows, columns=["quantity", "mean", "lo", "hi"])
        out.attrs.update(
            ci=ci,
            conditional=self.conditional,
            n_extrapolated=int(self.target["extrapolated"].sum()),
            extrapolated_share=float(self.target.loc[self.target["extrapolated"], "share"].sum()),
            trustworthy=self.trustworthy,
            period=self.period,
        )
        return out

    def __repr__(self) -> str:
        s = self.summary()
        eff = s.iloc[0]
        kind = "conditional on proxy readings" if self.conditional else "new experiment"
        kind += in_period(self.period)
        extra = int(self.target["extrapolated"].sum())
        return (
            f"<TransportResult ({kind}): long-term effect {eff['mean']:.4g} "
            f"[{eff['lo']:.4g}, {eff['hi']:.4g}] ({100 * self.ci:.0f}% interval), "
            f"P(>0) = {s.iloc[1]['mean']:.2f}; {len(self.target)} segment cells, "
            f"{extra} extrapolated>"
        )


def transport(
    fit: ProxyFit,
    target: Any,
    proxy_effects: Mapping[str, float] | None = None,
    proxy_se: Mapping[str, float] | None = None,
    proxy_cov: np.ndarray | None = None,
    ci: float = DEFAULT_CI,
    random_seed: int | None = None,
    period: str | None = None,
) -> TransportResult:
    """Posterior predictive long-term effect of a new experiment in a target population.

    Parameters
    ----------
    fit : ProxyFit
    target : DataFrame, mapping or Series
        A user table with the segment columns (optionally a ``count``/``n``/
        ``users``/``share`` column), or {segment tuple or "A / B / C" label:
        count or share}. See :func:`proxyscope.analyses.implied.resolve_mix`.
    proxy_effects : mapping, optional
        Proxy readings (finite numbers; original units, good direction as the fit
        reads them) of an experiment run on the target; any subset of the proxies.
        A reading more than :data:`MAX_READING_SD` predictive standard deviations
        from what the fit expects is refused (wrong units), not conditioned on.
    proxy_se : mapping, optional
        Positive standard errors of exactly those readings (independent); or
        ``proxy_cov``, their full sampling covariance in the order of
        ``proxy_effects`` (a finite symmetric positive semi-definite matrix).
        Neither is allowed without ``proxy_effects``; without either the readings
        are taken as exact.
    ci : float
        Interval width.
    random_seed : int, optional
        A non-negative integer, for the predictive draws (and interactions of
        unseen segments); by default the fit's sampling seed, so the same call
        gives the same draws.
    period : str, optional
        For a fit with time: the period whose relation predicts (one of
        ``fit.info.periods``; default the latest). A static fit takes none.

    Raises
    ------
    DataTypeError, ParameterError, ColumnError, DataError
        For an argument of the wrong type or value, each naming the parameter (or
        the target's column) and what was found; ``period`` for a static fit or a
        period the fit does not have.
    """
    fit = check_fit(fit, "transport")
    ci = check_ci(ci, "transport")
    random_seed = check_seed(random_seed, "transport")
    readings = None if proxy_effects is None else check_readings(fit, proxy_effects, "transport")
    noise = check_noise(fit, readings or {}, proxy_se, proxy_cov, "transport")
    period = resolve_period(fit, period, "transport")
    fit.warn_if_untrustworthy("transport")
    combos, shares = resolve_mix(fit, target)
    rng = np.random.default_rng(analysis_seed(fit, random_seed))
    seg = segments_for(fit, combos, random_seed=int(rng.integers(2**31)), period=period)
    mom = seg.mix_moments(shares)
    hist_seg = fitted_segments(fit, period)
    hist = hist_seg.mix_moments(historical_mix(fit).to_numpy())

    n = seg.n_draws
    conditional = bool(readings)
    mean = mom["mean_tau"].copy()
    var = mom["var_tau"].copy()
    if readings:
        idx = [fit.proxies.index(p) for p in readings]
        _check_range(readings, idx, mom, noise)
        obs = np.array(list(readings.values()))
        c = mom["cov_tau_theta"][:, idx]
        v = mom["cov_theta"][:, idx][:, :, idx] + noise
        resid = obs - mom["mean_theta"][:, idx]
        gain = np.linalg.solve(v, c[..., None])[..., 0]
        mean = mean + np.einsum("nk,nk->n", gain, resid)
        var = var - np.einsum("nk,nk->n", gain, c)
    draws = mean + np.sqrt(np.maximum(var, 0.0)) * rng.standard_normal(n)
    if not np.all(np.isfinite(draws)):
        # The checks above keep the conditioning finite; this is the promise kept
        # if an extreme proxy_se/proxy_cov still overflows the linear algebra.
        raise ParameterError(
            "transport: the prediction given 'proxy_effects' and their noise ('proxy_se' or "
            "'proxy_cov') is not finite; the readings or their noise are too extreme for "
            "the fit (check their units)."
        )
    hist_draws = hist["mean_tau"] + np.sqrt(hist["var_tau"]) * rng.standard_normal(n)
    gap = mom["mean_tau"] - hist["mean_tau"]
    flips = proxy_flips(mom)
    table = combos.copy()
    table[dims.SEGMENT] = list(seg.labels)
    table["share"] = shares
    table["extrapolated"] = seg.extrapolated
    return TransportResult(
        draws=np.asarray(draws),
        historical_draws=np.asarray(hist_draws),
        gap_draws=np.asarray(gap),
        r2_draws=r2_all(mom),
        flip_draws=np.asarray(flips),
        proxies=fit.proxies,
        target=table,
        conditional=conditional,
        proxy_effects=readings if conditional else None,
        ci=ci,
        trustworthy=fit.trustworthy,
        period=period,
    )


#: How far (in predictive standard deviations) a proxy reading may lie from what
#: the fit expects of it. Far beyond any real experiment, so it refuses only a
#: reading in the wrong units or a number typed wrong; within it the Gaussian
#: conditioning stays finite.
MAX_READING_SD = 1e6


def _check_range(
    readings: Mapping[str, float], idx: list[int], mom: dict[str, np.ndarray], noise: np.ndarray
) -> None:
    """Refuse a reading so far from the fit's predictive distribution of it (a new
    experiment's proxy effect plus the reading's noise) that conditioning on it
    overflows: e.g. ``proxy_effects={"early_ctr": 1e308}`` gave NaN."""
    centre = mom["mean_theta"][:, idx].mean(axis=0)
    var = np.einsum("nkk->k", mom["cov_theta"][:, idx][:, :, idx]) / mom["cov_theta"].shape[0]
    scale = np.sqrt(var + np.diagonal(noise))
    for j, (name, value) in enumerate(readings.items()):
        distance = abs(value - centre[j])
        if not distance <= MAX_READING_SD * scale[j]:
            with np.errstate(over="ignore", divide="ignore"):  # "inf standard deviations"
                far = distance / scale[j]
            raise ParameterError(
                f"The 'proxy_effects' parameter of transport gives {name!r} = {value!r}, "
                f"{far:.3g} predictive standard deviations from what the "
                f"fit expects of a new experiment's reading (mean {centre[j]:.4g}, sd "
                f"{scale[j]:.4g}); readings further than {MAX_READING_SD:g} sd cannot be "
                "conditioned on (check the reading's units)."
            )

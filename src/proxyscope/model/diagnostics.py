"""Convergence diagnostics of a fit and the verdict every later output carries."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from proxyscope import dims
from proxyscope.model import _convergence as convergence

RHAT_MAX = 1.01
ESS_MIN = 400
EBFMI_MIN = 0.3
#: A chain whose mean of some parameter is this many within-chain sds from the
#: median of the other chains' means is reported as stray. Chains that sample
#: the same posterior differ by about sd / sqrt(ESS per chain): 0.1 sd or less
#: at a few hundred effective draws, so 1 leaves a wide margin.
STRAY_DISTANCE = 1.0


@dataclasses.dataclass(frozen=True)
class Diagnostics:
    """Convergence of a fit: per-parameter R-hat and ESS, and sampler health.

    Attributes
    ----------
    table : DataFrame
        One row per scalar parameter: ``parameter``, ``group`` ("posterior":
        the named outputs; "sampled": what the sampler moved, standardized
        units), ``r_hat``, ``ess_bulk``, ``ess_tail`` and ``ok``.
    divergences : int
        Divergent transitions after tuning.
    treedepth_saturation : float
        Share of draws that hit the maximum tree depth.
    ebfmi : list of float
        Energy Bayesian fraction of missing information, per chain.
    passed : bool
        R-hat <= ``rhat_max`` and bulk ESS >= ``ess_min`` for every parameter,
        and no divergences.
    chain_divergences : list of int
        Divergent transitions per chain.
    stray_chains : list of tuple
        Chains that disagree with all the others, as (chain index, parameter,
        distance): the parameter on which the chain's mean is farthest from
        the median of the other chains' means, and that distance in the other
        chains' within-chain standard deviations (flagged above
        ``STRAY_DISTANCE``; needs at least 3 chains). A stray chain is most
        often one stuck in a region the sampler cannot explore (its
        divergences say so) rather than a second mode of the posterior.
    """

    table: pd.DataFrame
    divergences: int
    n_draws: int
    treedepth_saturation: float
    ebfmi: list[float]
    rhat_max: float
    ess_min: float
    passed: bool
    chain_divergences: list[int] = dataclasses.field(default_factory=list)
    stray_chains: list[tuple[int, str, float]] = dataclasses.field(default_factory=list)

    @property
    def failed(self) -> pd.DataFrame:
        """Parameters that failed R-hat or bulk ESS."""
        return self.table[~self.table["ok"]]

    def advice(self) -> list[str]:
        """What to try when the fit failed."""
        tips = []
        for chain, parameter, distance in self.stray_chains:
            share = ""
            if self.divergences and len(self.chain_divergences) > chain:
                share = (
                    f", with {self.chain_divergences[chain]} of the {self.divergences} divergences"
                )
            tips.append(
                f"chain {chain} disagrees with the other chains (its mean of {parameter} is "
                f"{distance:.1f} within-chain sds from theirs{share}): it is likely stuck; "
                "refit with another random_seed and compare, and if chains keep disagreeing "
                "the data do not pin the segment structure down (try simpler pooling)"
            )
        if self.divergences:
            tips.append(
                "divergences: raise target_accept (e.g. sampler_settings={'target_accept': 0.95}) "
                "or simplify pooling ('exchangeable' or 'complete')"
            )
        failed = self.failed
        if len(failed):
            tips.append(
                "low ESS / high R-hat: run longer (more tune and draws) or more chains; "
                "parameters with little information (interaction scales of proxies that never "
                "move) mix slowest"
            )
        if self.treedepth_saturation > 0.05:
            tips.append("tree depth saturated: the posterior has long ridges; more tuning helps")
        if any(b < EBFMI_MIN for b in self.ebfmi):
            tips.append("low E-BFMI: heavy-tailed scale parameters; tighter priors on scales help")
        return tips

    def summary(self) -> str:
        """One paragraph: the verdict and the worst parameters."""
        n = len(self.table)
        worst_r = self.table["r_hat"].max()
        worst_e = self.table["ess_bulk"].min()
        head = "PASSED" if self.passed else "FAILED"
        ebfmi = ", ".join(f"{b:.2f}" for b in self.ebfmi)
        text = (
            f"Convergence {head}: {n} parameters, max R-hat {worst_r:.3f} "
            f"(limit {self.rhat_max}), min bulk ESS {worst_e:.0f} (limit {self.ess_min:.0f}), "
            f"{self.divergences} divergences in {self.n_draws} draws{self._per_chain()}, "
            "tree depth saturated "
            f"in {100 * self.treedepth_saturation:.1f}% of draws, E-BFMI {ebfmi}."
        )
        if not self.passed:
            names = ", ".join(self.failed["parameter"].head(8))
            more = len(self.failed) - 8
            text += f" Failed: {names}" + (f" and {more} more." if more > 0 else ".")
            text += " Try: " + "; ".join(self.advice()) + "."
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "rhat_max_allowed": self.rhat_max,
            "ess_min_required": self.ess_min,
            "max_rhat": _finite(self.table["r_hat"].max()),
            "min_ess_bulk": _finite(self.table["ess_bulk"].min()),
            "min_ess_tail": _finite(self.table["ess_tail"].min()),
            "n_parameters": len(self.table),
            "divergences": self.divergences,
            "n_draws": self.n_draws,
            "treedepth_saturation": self.treedepth_saturation,
            "ebfmi": self.ebfmi,
            "failed_parameters": list(self.failed["parameter"]),
            "advice": self.advice(),
        }

    def _per_chain(self) -> str:
        if not self.divergences or len(self.chain_divergences) < 2:
            return ""
        return " (per chain: " + ", ".join(str(d) for d in self.chain_divergences) + ")"

    def __repr__(self) -> str:
        return f"<Diagnostics: {self.summary()}>"


def _finite(x: Any) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def _flat(ds: xr.Dataset, group: str) -> list[tuple[str, str, np.ndarray]]:
    """(name, group, (chain, draw) draws) of every scalar entry of ``ds``."""
    out = []
    for name, var in ds.data_vars.items():
        other = [d for d in var.dims if d not in (dims.CHAIN, dims.DRAW)]
        arr = var.transpose(dims.CHAIN, dims.DRAW, *other).values
        arr = arr.reshape(arr.shape[0], arr.shape[1], -1)
        labels = [""]
        if other:
            grids = np.meshgrid(*[var.coords[d].values for d in other], indexing="ij")
            labels = [
                "[" + ", ".join(str(g.flat[i]) for g in grids) + "]" for i in range(arr.shape[2])
            ]
        for i, lab in enumerate(labels):
            out.append((f"{name}{lab}", group, arr[:, :, i]))
    return out


def compute(
    posterior: xr.Dataset,
    sampled: xr.Dataset,
    stats: xr.Dataset,
    *,
    rhat_max: float = RHAT_MAX,
    ess_min: float = ESS_MIN,
) -> Diagnostics:
    """Diagnostics of a fit from its groups."""
    entries = _flat(posterior, "posterior") + _flat(sampled, "sampled")
    rows: list[tuple[str, str, float, float, float]] = []
    stray: list[tuple[int, str, float]] = []
    if entries:
        draws = np.stack([np.asarray(d, dtype=np.float64) for _, _, d in entries])
        with np.errstate(invalid="ignore"):  # inf - inf is NaN: kept, as before
            varies = np.ptp(draws, axis=(1, 2)) != 0  # skip constants (a correlation's diagonal)
        draws = draws[varies]
        r_hat, ess_bulk, ess_tail = convergence.diagnose(draws)
        kept = [(name, group) for (name, group, _), v in zip(entries, varies, strict=True) if v]
        rows = [
            (name, group, r, eb, et)
            for (name, group), r, eb, et in zip(
                kept, r_hat.tolist(), ess_bulk.tolist(), ess_tail.tolist(), strict=True
            )
        ]
        stray = stray_chains(draws, [name for name, _ in kept])
    table = pd.DataFrame(rows, columns=["parameter", "group", "r_hat", "ess_bulk", "ess_tail"])
    table["ok"] = (table["r_hat"] <= rhat_max) & (table["ess_bulk"] >= ess_min)
    per_chain = np.asarray(stats["diverging"].values)
    per_chain = per_chain.reshape(per_chain.shape[0], -1).sum(axis=1)
    diverging = int(per_chain.sum())
    sat = float(np.asarray(stats["reached_max_treedepth"].values).mean())
    energy = np.asarray(stats["energy"].values, dtype=float)
    ebfmi = [
        float(np.mean(np.diff(e) ** 2) / np.var(e)) if np.var(e) > 0 else float("nan")
        for e in energy
    ]
    passed = bool(table["ok"].all() and diverging == 0)
    return Diagnostics(
        table=table.sort_values("ess_bulk").reset_index(drop=True),
        divergences=diverging,
        n_draws=int(energy.size),
        treedepth_saturation=sat,
        ebfmi=ebfmi,
        rhat_max=rhat_max,
        ess_min=ess_min,
        passed=passed,
        chain_divergences=[int(d) for d in per_chain],
        stray_chains=stray,
    )


def stray_chains(
    draws: np.ndarray, names: list[str], distance: float = STRAY_DISTANCE
) -> list[tuple[int, str, float]]:
    """Chains whose mean of some parameter sits far from every other chain's.

    ``draws`` is (parameters, chains, draws). For chain c and each parameter:
    |mean_c - median of the other chains' means| / (mean within-chain sd of
    the other chains); a chain is stray when its largest such distance is
    above ``distance``. Returns (chain, parameter, distance) per stray chain.
    """
    n_chains = draws.shape[1] if draws.ndim == 3 else 0
    if n_chains < 3 or draws.shape[2] < 2:
        return []
    with np.errstate(invalid="ignore"):
        means = draws.mean(axis=2)
        sds = draws.std(axis=2, ddof=1)
    out = []
    for c in range(n_chains):
        others = np.delete(np.arange(n_chains), c)
        scale = sds[:, others].mean(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            gap = np.abs(means[:, c] - np.median(means[:, others], axis=1)) / scale
        gap = np.where(np.isfinite(gap) & (scale > 0), gap, 0.0)
        worst = int(np.argmax(gap)) if gap.size else 0
        if gap.size and gap[worst] > distance:
            out.append((c, names[worst], float(gap[worst])))
    return out

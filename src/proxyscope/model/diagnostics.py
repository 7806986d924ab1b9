"""Convergence diagnostics of a fit and the verdict every later output carries."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from proxyscope import dims
from proxyscope.model import _convergence as convergence
from proxyscope.model.advice import (
    SURFACES,
    SYNTAX,
    TARGET_ACCEPT_STEPS,
    describe,
    failed_families,
    higher_target_accept,
)
from proxyscope.model.stray import separate_modes, stray_chains

RHAT_MAX = 1.01
ESS_MIN = 400
EBFMI_MIN = 0.3


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
        :data:`~proxyscope.model.stray.STRAY_DISTANCE`; needs at least 3
        chains). A stray chain is a chain stuck in a region the sampler cannot
        explore (its divergences say so) or in a second mode of the posterior.
    sampler : dict
        The fit's sampler record (settings, draws, tune, and the runs it made,
        ``attempts``): the advice never repeats what the fit already did.
    surface : {"python", "cli", "spec"}
        Whose syntax the advice uses by default (:meth:`for_surface`).
    modes : list of tuple
        Stray chains of this run that sample another mode (far from the
        others and moving as freely,
        :data:`~proxyscope.model.stray.MODE_DISTANCE`). A fit any of
        whose runs found one does not pass, whatever its last run shows:
        its posterior has separate modes the chains need not all visit
        (``sampler["modes"]`` lists them).
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
    sampler: dict[str, Any] = dataclasses.field(default_factory=dict)
    surface: str = "python"
    modes: list[tuple[int, str, float]] = dataclasses.field(default_factory=list)

    @property
    def failed(self) -> pd.DataFrame:
        """Parameters that failed R-hat or bulk ESS."""
        return self.table[~self.table["ok"]]

    @property
    def attempts(self) -> list[dict[str, Any]]:
        """The runs the fit made (the first, then its automatic follow-ups)."""
        return list(self.sampler.get("attempts", []))

    def families(self) -> list[str]:
        """The failing parameter families, e.g. "slopes, interaction scale (early_ctr)"."""
        return failed_families(self)

    def for_surface(self, surface: str) -> Diagnostics:
        """The same diagnostics, advising in the syntax of ``surface``
        ("python": ProxyModel arguments, "cli": command-line flags, "spec": spec keys)."""
        if surface not in SYNTAX:
            raise ValueError(f"surface must be one of {SURFACES}; got {surface!r}")
        return dataclasses.replace(self, surface=surface)

    def advice(self, surface: str | None = None) -> list[str]:
        """What to try next, in the syntax of ``surface`` ("python", "cli" or "spec").

        Nothing the fit already did is suggested again: the settings of its
        last run (and its follow-up runs) are the starting point.
        """
        syntax = SYNTAX[surface or self.surface]
        tips = []
        settings = self.sampler.get("settings", {})
        target = float(settings.get("target_accept", TARGET_ACCEPT_STEPS[0]))
        draws = int(self.sampler.get("draws", 1000))
        tune = int(self.sampler.get("tune", 1000))
        seed = self.sampler.get("random_seed")
        next_seed = (int(seed) + 1) if seed is not None else 1
        for chain, parameter, distance in self.stray_chains:
            share = ""
            if self.divergences and len(self.chain_divergences) > chain:
                share = (
                    f", with {self.chain_divergences[chain]} of the {self.divergences} divergences"
                )
            family = describe(parameter)
            remedy = (
                "a proxy that barely moves across experiments leaves the sign of its slope "
                "open, so fit without it, or with simpler pooling ("
                if family.startswith("slopes")
                else "fit with simpler pooling ("
            )
            tips.append(
                f"chain {chain} settles elsewhere than the others on {parameter} "
                f"({family}; {distance:.1f} within-chain sds{share}): the "
                "posterior has separate modes or that chain is stuck, and more draws will not "
                "join them. Compare with another seed ("
                + syntax["seed"].format(seed=next_seed)
                + "); if the chains keep disagreeing, the data do not pin that family down: "
                + remedy
                + syntax["pooling"].format(pooling="complete")
                + ")"
            )
        higher = higher_target_accept(target)
        if self.divergences:
            if higher is not None:
                tips.append(
                    f"{self.divergences} divergences: raise target_accept from {target:g} to "
                    f"{higher:g} (" + syntax["target_accept"].format(value=higher) + ")"
                )
            else:
                tips.append(
                    f"{self.divergences} divergences remain at target_accept {target:g}: the "
                    "posterior has a boundary the sampler cannot follow (a scale near zero); "
                    "simplify the pooling ("
                    + syntax["pooling"].format(pooling="exchangeable")
                    + " or "
                    + syntax["pooling"].format(pooling="complete")
                    + ")"
                )
        failed = self.failed
        if len(failed) and not self.stray_chains:
            worst = float(failed["ess_bulk"].min())
            factor = max(2, int(np.ceil(self.ess_min / max(worst, 1.0))))
            tips.append(
                f"effective sample size short (min {worst:.0f} of {self.ess_min:.0f}): run "
                f"longer ({syntax['length'].format(draws=factor * draws, tune=factor * tune)})"
            )
        if self.treedepth_saturation > 0.05:
            tips.append(
                "tree depth saturated: the posterior has long ridges; more tuning helps ("
                + syntax["length"].format(draws=draws, tune=2 * tune)
                + ")"
            )
        if any(b < EBFMI_MIN for b in self.ebfmi):
            tips.append("low E-BFMI: heavy-tailed scale parameters; tighter priors on scales help")
        return tips

    def summary(self, surface: str | None = None) -> str:
        """One paragraph: the verdict, the worst parameters, the runs made and
        (if it failed) what to try, in the syntax of ``surface``."""
        n = len(self.table)
        worst_r = self.table["r_hat"].max()
        worst_e = self.table["ess_bulk"].min()
        head = "PASSED" if self.passed else "FAILED"
        ebfmi = ", ".join(f"{b:.2f}" for b in self.ebfmi)
        earlier = self.sampler.get("modes", [])
        text = (
            f"Convergence {head}: {n} parameters, max R-hat {worst_r:.3f} "
            f"(limit {self.rhat_max}), min bulk ESS {worst_e:.0f} (limit {self.ess_min:.0f}), "
            f"{self.divergences} divergences in {self.n_draws} draws{self._per_chain()}, "
            "tree depth saturated "
            f"in {100 * self.treedepth_saturation:.1f}% of draws, E-BFMI {ebfmi}."
        )
        if earlier:
            found = "; ".join(
                f"run {m['run']}, chain {m['chain']} on {m['parameter']} "
                f"({m['distance']:.0f} sds from the others)"
                for m in earlier
            )
            text += (
                f" Chains sampled separate modes ({found}): the posterior has more than one, "
                "so no run that stays in one can be read."
            )
        runs = self.attempts
        if len(runs) > 1:
            text += f" The fit made {len(runs)} runs: " + " ".join(
                f"{r['number']}. {r['action']} ({_verdict(r)})." for r in runs
            )
            if self.sampler.get("stopped"):
                text += f" It {self.sampler['stopped']}."
        if not self.passed:
            families = self.families()
            if families:
                text += " Failing families: " + "; ".join(families) + "."
            names = ", ".join(self.failed["parameter"].head(8))
            more = len(self.failed) - 8
            if names:
                text += f" Failed: {names}" + (f" and {more} more." if more > 0 else ".")
            tips = self.advice(surface)
            if tips:
                text += " Try: " + "; ".join(tips) + "."
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
            "failed_families": self.families(),
            "advice": self.advice(),
            "runs": self.attempts,
            "separate_modes": list(self.sampler.get("modes", [])),
        }

    def _per_chain(self) -> str:
        if not self.divergences or len(self.chain_divergences) < 2:
            return ""
        return " (per chain: " + ", ".join(str(d) for d in self.chain_divergences) + ")"

    def __repr__(self) -> str:
        return f"<Diagnostics: {self.summary()}>"


def _verdict(run: dict[str, Any]) -> str:
    if run.get("passed"):
        return "passed"
    return (
        f"failed: max R-hat {run.get('max_rhat', float('nan')):.3f}, min bulk ESS "
        f"{run.get('min_ess_bulk', float('nan')):.0f}, {run.get('divergences', 0)} divergences"
    )


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
    sampler: dict[str, Any] | None = None,
) -> Diagnostics:
    """Diagnostics of a fit from its groups."""
    entries = _flat(posterior, "posterior") + _flat(sampled, "sampled")
    rows: list[tuple[str, str, float, float, float]] = []
    stray: list[tuple[int, str, float]] = []
    modes: list[tuple[int, str, float]] = []
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
        modes = separate_modes(draws, [name for name, _ in kept], stray)
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
    recorded = (sampler or {}).get("modes", [])
    passed = bool(table["ok"].all() and diverging == 0 and not modes and not recorded)
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
        sampler=dict(sampler or {}),
        modes=modes,
    )

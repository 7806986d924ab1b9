"""Model comparison by leave-one-out predictive density (PSIS-LOO).

Three scores, all stored with every fit:

- ``kind="experiment"`` (default): leave one EXPERIMENT out. Each
  experiment's density is the marginal density of all its cells with the
  experiment effect integrated out, so leaving it out is predicting a new
  experiment — the question proxyscope answers. Where the PSIS approximation
  is unreliable (Pareto k > 0.7) the model is refitted without those
  experiments (grouped into folds) and their exact held-out density replaces
  the approximation; the table says how many were refitted.
- ``kind="cell"``: leave one (experiment x segment) cell out.
- ``kind="outcome"``: each cell's long-term estimate given its proxy estimates.
  Comparable across models with DIFFERENT proxy sets (the same thing is
  predicted), which the other two are not.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import arviz as az
import numpy as np
import pandas as pd
from scipy.special import logsumexp

from proxyscope.analyses.arguments import check_bool, check_choice, check_fit, check_int, check_seed
from proxyscope.errors import DataTypeError, ParameterError
from proxyscope.model.heldout import heldout_experiment_loglik
from proxyscope.options import COMPARE_LEVELS

if TYPE_CHECKING:
    from proxyscope.model.fit import ProxyFit

PARETO_K_MAX = 0.7


@dataclasses.dataclass
class Comparison:
    """The result of :func:`compare`.

    Attributes
    ----------
    table : DataFrame
        ``az.compare``-style: rank, elpd (``elpd_loo``), ``p_loo``,
        ``elpd_diff`` and its standard error ``dse``, stacking ``weight``,
        ``se``; plus ``n_high_k`` (points with Pareto k > 0.7 left as
        approximations), ``max_pareto_k``, ``n_refitted`` (experiments
        whose density comes from an exact refit) and ``trustworthy`` (False
        for a fit that failed its diagnostics: the reading and every report
        mark it and never call it best without saying so).
    kind : str
    refitted : dict of model name to the experiments refitted
    refit_folds : dict of model name to the number of refits. Fewer refits
        than refitted experiments means experiments were held out in groups
        (leave-group-out, harsher than leave-one-out); the reading says so.
    """

    table: pd.DataFrame
    kind: str
    refitted: dict[str, list[Any]]
    elpd: dict[str, Any]
    refit_folds: dict[str, int] = dataclasses.field(default_factory=dict)

    def reading(self) -> str:
        """A one-paragraph reading of the table."""
        t = self.table
        what = {
            "experiment": "leave-one-experiment-out predictive density (predicting a new "
            "experiment)",
            "cell": "leave-one-cell-out predictive density",
            "outcome": "leave-one-cell-out density of the long-term estimate given the "
            "proxy estimates",
        }[self.kind]
        failed = self.failed
        passed = [n for n in t.index if n not in failed]

        def named(n: Any) -> str:
            return f"{n!r} (its fit FAILED its diagnostics)" if n in failed else repr(n)

        best = t.index[0]
        text = (
            f"By {what}, {named(best)} scores best (elpd {t.loc[best, 'elpd_loo']:.1f}, "
            f"SE {t.loc[best, 'se']:.1f})."
        )
        if best in failed:
            text += (
                " A fit that failed its diagnostics does not describe its posterior, so its "
                "elpd cannot be trusted: do not choose it; "
                + (
                    f"of the fits that passed, {passed[0]!r} scores best."
                    if passed
                    else "no fit passed its diagnostics (see each fit's diagnostics())."
                )
            )
        for name in t.index[1:]:
            diff, dse = t.loc[name, "elpd_diff"], t.loc[name, "dse"]
            ratio = diff / dse if dse > 0 else np.inf
            verdict = (
                "clearly worse" if ratio > 2 else "worse, but within about two standard errors"
            )
            text += (
                f" {named(name)} is {verdict}: {diff:.1f} lower "
                f"(SE of the difference {dse:.1f}, {ratio:.1f} SE)."
            )
        weights = ", ".join(f"{n} {w:.2f}" for n, w in t["weight"].items())
        text += f" Stacking weights: {weights}."
        refits = {n: len(v) for n, v in self.refitted.items() if v}
        exact = {n: c for n, c in refits.items() if self.refit_folds.get(n, c) >= c}
        grouped = {n: c for n, c in refits.items() if n not in exact}
        if exact:
            shown = ", ".join(f"{n}: {c}" for n, c in exact.items())
            text += (
                f" Experiments refitted one at a time (exact leave-one-experiment-out) "
                f"because Pareto k > {PARETO_K_MAX}: {shown}."
            )
        if grouped:
            shown = ", ".join(
                f"{n}: {c} experiments in {self.refit_folds[n]} groups" for n, c in grouped.items()
            )
            text += (
                f" Experiments with Pareto k > {PARETO_K_MAX} were held out in groups "
                f"(leave-group-out, limited by max_refits; harsher than leave-one-out, so "
                f"those models' elpd is understated): {shown}."
            )
        high = t["n_high_k"]
        if high.sum():
            text += (
                f" {int(high.sum())} points still have Pareto k > {PARETO_K_MAX}; their "
                "approximation is unreliable."
            )
        return text

    @property
    def failed(self) -> list[Any]:
        """The compared fits that failed their diagnostics (best first)."""
        t = self.table
        if "trustworthy" not in t.columns:
            return []
        return [n for n in t.index if not bool(t.loc[n, "trustworthy"])]

    def __repr__(self) -> str:
        return f"<Comparison ({self.kind})>\n{self.table.to_string()}\n{self.reading()}"


#: Columns of :attr:`Comparison.table`, in order (az.compare's plus the Pareto-k summary).
TABLE_COLUMNS = (
    "rank",
    "elpd_loo",
    "p_loo",
    "elpd_diff",
    "weight",
    "se",
    "dse",
    "warning",
    "n_high_k",
    "max_pareto_k",
    "n_refitted",
    "trustworthy",
)


def compare(
    fits: Mapping[str, ProxyFit],
    kind: str = "experiment",
    refit: bool = True,
    max_refits: int = 5,
    random_seed: int | None = None,
    progress: bool = False,
) -> Comparison:
    """Compare fits by PSIS-LOO (see the module docstring for the three kinds).

    Parameters
    ----------
    fits : mapping of name to ProxyFit
        At least two, fitted on the same cells (and, unless ``kind="outcome"``,
        the same metrics).
    kind : {"experiment", "cell", "outcome"}
    refit : bool
        With ``kind="experiment"``, refit on folds of the experiments whose
        Pareto k exceeds 0.7 and use their exact held-out density.
    max_refits : int
        At most this many refits per model (experiments are grouped into that
        many folds).
    """
    kind = check_choice(kind, tuple(COMPARE_LEVELS), "kind", "compare")
    if not isinstance(fits, Mapping):
        raise DataTypeError(
            "The 'fits' parameter of compare must be a mapping {name: fit} of at least two "
            f"fits; got {type(fits).__name__}."
        )
    if len(fits) < 2:
        raise ParameterError(
            f"The 'fits' parameter of compare needs at least two named fits; got {len(fits)}."
        )
    for name, fit in fits.items():
        check_fit(fit, f"compare (fits[{name!r}])")
    refit = check_bool(refit, "refit", "compare")
    max_refits = check_int(max_refits, "max_refits", "compare", low=1)
    random_seed = check_seed(random_seed, "compare")
    progress = check_bool(progress, "progress", "compare")
    fingerprints = {
        name: (f.effects.n_cells, tuple(map(str, f.effects.experiments)))
        for name, f in fits.items()
    }
    if len(set(fingerprints.values())) > 1:
        raise ParameterError(
            "compare needs fits of the same cells (same experiments and segment cells); "
            f"got {[(n, v[0]) for n, v in fingerprints.items()]} cells."
        )
    if kind != "outcome":
        metric_sets = {name: f.info.metrics for name, f in fits.items()}
        if len(set(metric_sets.values())) > 1:
            raise ParameterError(
                "These fits use different proxy sets, so their densities are of different "
                "data; compare them with kind='outcome' (the long-term estimate given the "
                f"proxies). Proxy sets: {metric_sets}."
            )
    var_name = COMPARE_LEVELS[kind]
    elpds: dict[str, Any] = {}
    refitted: dict[str, list[Any]] = {}
    folds: dict[str, int] = {}
    for name, fit in fits.items():
        fit.warn_if_untrustworthy(f"compare ({name})")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*Pareto.*", category=UserWarning)
            warnings.filterwarnings("ignore", message=".*pointwise.*", category=UserWarning)
            loo = az.loo(fit.idata, var_name=var_name, pointwise=True)
        refitted[name] = []
        if kind == "experiment" and refit:
            loo, refitted[name], folds[name] = _refit_high_k(
                fit, loo, max_refits, random_seed, progress
            )
        elpds[name] = loo
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        table = az.compare(elpds, ic="loo", method="stacking")
    table["n_high_k"] = [
        int(np.sum(np.nan_to_num(np.asarray(elpds[n]["pareto_k"]), nan=0.0) > PARETO_K_MAX))
        for n in table.index
    ]
    table["max_pareto_k"] = [
        float(np.nanmax(np.asarray(elpds[n]["pareto_k"])))
        if np.isfinite(np.asarray(elpds[n]["pareto_k"], dtype=float)).any()
        else float("nan")
        for n in table.index
    ]
    table["n_refitted"] = [len(refitted[n]) for n in table.index]
    table["trustworthy"] = [bool(fits[n].trustworthy) for n in table.index]
    table = table[[c for c in TABLE_COLUMNS if c in table.columns]]
    return Comparison(table=table, kind=kind, refitted=refitted, elpd=elpds, refit_folds=folds)


def _refit_high_k(
    fit: ProxyFit, loo: Any, max_refits: int, random_seed: int | None, progress: bool
) -> tuple[Any, list[Any], int]:
    """Replace high-k experiments' PSIS estimates by exact held-out densities."""
    k = np.asarray(loo["pareto_k"], dtype=float)
    bad = np.flatnonzero(k > PARETO_K_MAX)
    if bad.size == 0:
        return loo, [], 0
    experiments = np.asarray(fit.info.experiments, dtype=object)
    folds = np.array_split(bad, min(max_refits, bad.size))
    loo_i = np.asarray(loo["loo_i"], dtype=float).copy()
    k_new = k.copy()
    from proxyscope.model.proxy_model import ProxyModel

    sampler = fit.sampler
    model = ProxyModel.like(fit)
    done: list[Any] = []
    for f, fold in enumerate(folds):
        held = set(experiments[fold].tolist())
        keep = [e for e in fit.effects.experiments.tolist() if e not in held]
        train = fit.effects.subset(keep)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            refit = model.fit(
                train,
                draws=sampler["draws"],
                tune=sampler["tune"],
                chains=sampler["chains"],
                random_seed=(random_seed if random_seed is not None else sampler["random_seed"])
                + f
                + 1,
                progress=progress,
            )
        # The held-out cells' noise as the full fit's likelihood saw it.
        test = fit.model_effects.subset(sorted(held, key=lambda e: list(experiments).index(e)))
        ll = heldout_experiment_loglik(refit, test)  # (N, E_test) in test.experiments order
        for j, exp in enumerate(test.experiments.tolist()):
            idx = int(np.flatnonzero(experiments == exp)[0])
            loo_i[idx] = float(logsumexp(ll[:, j]) - np.log(ll.shape[0]))
            k_new[idx] = np.nan
            done.append(exp)
    out = loo.copy()
    n = loo_i.size
    out["loo_i"] = loo["loo_i"].copy(data=loo_i)
    out["pareto_k"] = loo["pareto_k"].copy(data=k_new)
    out["elpd_loo"] = float(loo_i.sum())
    out["se"] = float(np.sqrt(n * np.var(loo_i)))
    out["warning"] = bool(np.nansum(k_new > PARETO_K_MAX) > 0)
    return out, done, len(folds)

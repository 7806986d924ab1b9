"""ProxyModel: the hierarchical measurement-error proxy model (configuration + fit)."""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from proxyscope.data.cells import CellEffects
from proxyscope.errors import (
    ConvergenceWarning,
    DataTypeError,
    ParameterError,
    check_one_of,
)
from proxyscope.model import followup
from proxyscope.model.builder import BuiltModel, build_model
from proxyscope.model.fit import ProxyFit
from proxyscope.model.idata import assemble
from proxyscope.model.native import load_density
from proxyscope.model.priors import Priors
from proxyscope.model.settings import check_sampler_settings, resolve_sampler
from proxyscope.model.setup import prepare
from proxyscope.model.structure import check_pooling
from proxyscope.options import CELL_CORRELATIONS, NOISE_MODES, SAMPLERS

#: How the warning of a fit that failed its diagnostics begins.
FAILED_FIT = "The proxy model fit is NOT trustworthy. "


class ProxyModel:
    r"""Bayesian hierarchical model of long-term effects given proxy effects.

    For a cell c = (experiment e, segment cell s) with observed effects
    d_c = (d^y, d^1..d^K) and sampling covariance S_c:

    - true proxy effects theta_c = mu_s + eta_e + zeta_c, with experiment
      effects eta_e ~ N(0, Omega_E) (LKJ correlation, half-normal scales) and
      within-cell effects zeta_c ~ N(0, Omega_C);
    - true long-term effect tau_c = nu_s + beta_s'(theta_c - mu_s) + eps_c,
      eps_c ~ N(0, sigma_s^2) (equivalently alpha_s + beta_s' theta_c + eps_c
      with alpha_s = nu_s - beta_s' mu_s);
    - d_c ~ N((tau_c, theta_c), S_c), the full sampling covariance.

    zeta_c, eps_c and eta_e are integrated out analytically; eta_e and the
    cells' true effects are recovered per draw after sampling. Segment
    parameters (nu_s, mu_s, beta_s, log sigma_s) are partially pooled:

    - ``"additive"`` (default): global + a sum-to-zero main effect per segment
      column + an interaction shrunk toward zero: the part of a normal segment
      deviation the main effects cannot express (a cohort such as
      Mobile x IN x New can stand out; unseen combinations are predicted from
      the main effects; with one segment column there is no interaction);
    - ``"exchangeable"``: global + interaction (deviations summing to zero);
    - ``"complete"``: one value for all segments;
    - ``"none"``: independent wide priors per segment.

    The sampler moves a flat vector through a compiled log posterior
    (:mod:`proxyscope.core.density`, :mod:`proxyscope.model.native`), in
    coordinates chosen per fit from the data (:mod:`proxyscope.model.coordinates`;
    each an exact change of variables, the same model): the slopes along the
    principal axes of the proxies' co-movement across experiments, the
    interactions along the axes of their space, centred where the data pin
    them down. The first fit on a machine compiles that code (it says so);
    later fits load it.

    Inputs are standardized (each metric divided by the standard deviation of
    its cell effects); every output is in original units.

    Parameters
    ----------
    pooling : {"additive", "exchangeable", "complete", "none"}
    priors : mapping or Priors, optional
        Overrides by name; see :class:`proxyscope.model.priors.Priors` for the
        names, defaults and their meaning.
    sampler : {"auto", "nutpie", "pymc"}
        "auto" uses nutpie when installed.
    sampler_settings : mapping, optional
        Passed to the sampler (e.g. ``{"target_accept": 0.95}``;
        ``{"low_rank_modified_mass_matrix": True}`` switches nutpie to its
        low-rank mass matrix, which does not repeat bit for bit, see
        :meth:`fit`).
    cell_correlation : {"shared", "free"}
        Correlation of the within-cell deviations zeta_c: "shared" (default)
        uses the experiment effects' correlation matrix with separate scales;
        "free" gives them their own LKJ correlation. Each cell is a single
        noisy observation, so the data say little about that correlation and
        a free matrix ends up at its prior (independence), which adds
        spurious proxy-specific noise.
    noise : {"moderated", "as_given"}
        How the cells' sampling covariances enter the likelihood.
        "moderated" (default) shrinks each cell's user-level covariance
        toward its segment's, with prior degrees of freedom estimated from
        the data (Smyth's empirical Bayes, :mod:`proxyscope.data.noise`):
        small cells' noisy variance estimates otherwise bias sigma_s and the
        flip probabilities upward. Cells with many users are left almost
        unchanged. "as_given" uses ``noise_cov`` exactly.
    followups : int, default 2
        When a run fails its diagnostics, up to this many follow-up runs
        carry out what the advice says (:mod:`proxyscope.model.followup`):
        coordinates re-chosen from the failed run's posterior (the same
        model), a higher ``target_accept`` after divergences, from the third
        run on twice the draws when the effective sample size was short.
        0 turns them off. Every run is recorded in ``fit.sampler["attempts"]``
        and shown with the diagnostics.
    followup_budget : float, default 4
        The follow-up runs together may take at most this multiple of the
        first run's sampling time; a run that would not fit is not started.
    time : None, True, {"week", "month", "quarter", "year"} or sequence of edges
        Let the relation move over time (DESIGN.md §9). None (default): a
        static relation, whatever the cells carry. Otherwise the cells need
        their experiments' start dates (``summarize(..., time=...)`` or
        :meth:`CellEffects.with_time`): True uses the periods they carry, a
        grouping or bin edges regroups them (:meth:`CellEffects.with_periods`).
        The locations, slopes and log residual sd then move between
        consecutive periods as a Gaussian random walk (the same shift for every
        segment), each parameter with its own step scale (priors
        ``time_step_*_sd``; 0 keeps a family fixed), still integrated
        analytically per cell (:mod:`proxyscope.core.timewalk`). The posterior's
        segment values (``nu``, ``mu``, ``beta``, ``sigma``, ``alpha``) are the
        LATEST period's; ``*_path`` variables give every period. Periods with
        no experiment are interpolated by the walk.

    Notes
    -----
    The constructor stores configuration only; :meth:`fit` does the work.
    """

    def __init__(
        self,
        pooling: str = "additive",
        priors: Priors | Mapping[str, Any] | None = None,
        sampler: str = "auto",
        sampler_settings: Mapping[str, Any] | None = None,
        cell_correlation: str = "shared",
        noise: str = "moderated",
        followups: int = followup.MAX_RUNS - 1,
        followup_budget: float = followup.BUDGET,
        time: Any = None,
    ) -> None:
        self.pooling = check_pooling(pooling)
        self.time = check_time(time)
        self.noise = check_one_of(noise, NOISE_MODES, param="noise", owner="ProxyModel")
        self.cell_correlation = check_one_of(
            cell_correlation, CELL_CORRELATIONS, param="cell_correlation", owner="ProxyModel"
        )
        self.priors = Priors.from_overrides(priors)
        self.sampler = check_one_of(
            sampler, (*SAMPLERS, "auto"), param="sampler", owner="ProxyModel"
        )
        if sampler_settings is not None and not isinstance(sampler_settings, Mapping):
            raise ParameterError(
                "The 'sampler_settings' parameter of ProxyModel must be a mapping; got "
                f"{type(sampler_settings).__name__}."
            )
        # Checked here, before anything compiles, against the sampler that will run.
        self.sampler_settings = dict(sampler_settings or {})
        if self.sampler_settings:
            check_sampler_settings(self.sampler_settings, resolve_sampler(self.sampler))
        if (
            not isinstance(followups, (int, np.integer))
            or isinstance(followups, bool)
            or not (0 <= followups <= 5)
        ):
            raise ParameterError(
                "The 'followups' parameter of ProxyModel must be an integer from 0 to 5; "
                f"got {followups!r}."
            )
        self.followups = int(followups)
        if (
            not isinstance(followup_budget, (int, float, np.number))
            or isinstance(followup_budget, bool)
            or not np.isfinite(followup_budget)
            or followup_budget <= 0
        ):
            raise ParameterError(
                "The 'followup_budget' parameter of ProxyModel must be a positive number (a "
                f"multiple of the first run's sampling time); got {followup_budget!r}."
            )
        self.followup_budget = float(followup_budget)

    def get_config(self) -> dict[str, Any]:
        return {
            "pooling": self.pooling,
            "priors": self.priors.to_dict(timed=self.time is not None),
            "sampler": self.sampler,
            "sampler_settings": self.sampler_settings,
            "cell_correlation": self.cell_correlation,
            "noise": self.noise,
            "followups": self.followups,
            "followup_budget": self.followup_budget,
            "time": self.time,
        }

    def __repr__(self) -> str:
        return f"ProxyModel(pooling={self.pooling!r}, sampler={self.sampler!r})"

    def build(self, effects: CellEffects) -> BuiltModel:
        """The PyMC model for ``effects`` (for inspection; :meth:`fit` builds its own).

        Its likelihood is the model without the design-bias terms and without the
        errors an experiment's cells share; fits use the compiled posterior, which
        has both.
        """
        _check_effects(effects)
        return build_model(
            effects, self.pooling, self.priors, self.cell_correlation, noise=self.noise
        )

    @classmethod
    def like(cls, fit: ProxyFit) -> ProxyModel:
        """The model (pooling, priors, sampler and its settings) that made ``fit``,
        to refit it on other cells (model comparison refits, design refits)."""
        config, sampler = fit.config, fit.sampler
        return cls(
            pooling=config["pooling"],
            priors=config["priors"],
            sampler=sampler["name"],
            sampler_settings={k: v for k, v in sampler["settings"].items() if k != "cores"},
            cell_correlation=config.get("cell_correlation", "shared"),
            noise=config.get("noise", "as_given"),
            followups=int(sampler.get("followups", 0)),
            followup_budget=float(sampler.get("followup_budget", 4.0)),
            time=True if fit.info.periods else None,
        )

    def fit(
        self,
        effects: CellEffects,
        draws: int = 1000,
        tune: int = 1000,
        chains: int = 4,
        random_seed: int | None = None,
        progress: bool = True,
    ) -> ProxyFit:
        """Sample the posterior given ``effects``.

        Parameters
        ----------
        effects : CellEffects
        draws, tune, chains : int
            Draws kept per chain, tuning steps per chain, number of chains.
        random_seed : int, optional
            Seeds the fit; when None a seed is drawn and recorded in
            ``fit.sampler``. Two fits with the same seed, the same
            CellEffects and settings are equal bit for bit on the same
            machine (nutpie with its default diagonal mass matrix, or PyMC).
            From a user table that holds with ``summarize``'s default of
            one DuckDB thread; DuckDB's parallel sums (``threads`` > 1) can
            differ in their last bits between runs.
            nutpie's low-rank mass matrix
            (``sampler_settings={"low_rank_modified_mass_matrix": True}``)
            is not: its adaptation rounds its sums according to
            where its buffers lie in memory, so same-seed fits can differ in
            rounding and from there in their draws (draws from the same
            posterior, equal within Monte Carlo error). It is not the
            default because it did not mix better: on the default world, 4 x
            (1000 + 1000), in one process, diagonal passed the diagnostics
            for 5 of 5 world / seed pairs (7:1, 7:2, 7:3, 8:1, 9:1; max
            R-hat 1.008-1.010, min bulk ESS 657-1031, 0 divergences),
            low-rank for 2 of 3 (8:1, 9:1, 7:1; 8:1 failed with R-hat 1.019
            and bulk ESS 358 on the rebuffer experiment-effect scale; min
            bulk ESS 358-631).
        progress : bool
            Show the sampler's progress bar.

        Returns
        -------
        ProxyFit
            Warns with :class:`~proxyscope.errors.ConvergenceWarning` (and is
            marked untrustworthy) when the diagnostics fail.
        """
        _check_effects(effects)
        for name, value, low in (("draws", draws, 1), ("tune", tune, 0), ("chains", chains, 1)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
                raise ParameterError(
                    f"The {name!r} parameter of ProxyModel.fit must be an integer >= {low}; "
                    f"got {value!r}."
                )
        if random_seed is None:
            random_seed = int(np.random.SeedSequence().generate_state(1)[0] % (2**31))
        elif not isinstance(random_seed, (int, np.integer)) or random_seed < 0:
            raise ParameterError(
                f"The 'random_seed' parameter of ProxyModel.fit must be a non-negative integer; "
                f"got {random_seed!r}."
            )
        sampler = resolve_sampler(self.sampler)
        settings = check_sampler_settings(self.sampler_settings, sampler)
        if self.time is not None:
            effects = timed_effects(effects, self.time)
        prepared = prepare(
            effects,
            self.pooling,
            self.priors,
            self.cell_correlation,
            self.noise,
            timed=self.time is not None,
        )
        t0 = time.perf_counter()
        load_density(len(prepared.proxies), progress, prepared.data.shared_cov is not None)
        compile_seconds = time.perf_counter() - t0
        runs = followup.sample_runs(
            prepared,
            effects,
            sampler=sampler,
            draws=int(draws),
            tune=int(tune),
            chains=int(chains),
            random_seed=int(random_seed),
            progress=progress,
            settings=settings,
            followups=self.followups,
            budget=self.followup_budget,
        )
        prepared, raw, stats, timings = runs.prepared, runs.raw, runs.stats, runs.timings
        timings["compile_seconds"] = compile_seconds
        sampler_record = {
            "name": sampler,
            "coordinates": prepared.coordinates.summary(),
            "settings": timings.pop("settings"),
            "random_seed": int(random_seed),
            "draws": runs.last.draws,
            "tune": runs.last.tune,
            "chains": int(chains),
            "timings": timings,
            "attempts": runs.attempts,
            "modes": runs.modes,
            "stopped": runs.stopped,
            "followups": self.followups,
            "followup_budget": self.followup_budget,
        }
        idata = assemble(prepared, effects, raw, stats, sampler_record, int(random_seed))
        fit = ProxyFit(idata)
        report = fit.diagnostics()
        if not report.passed:
            idata.attrs["proxyscope_trustworthy"] = "false"
            warnings.warn(
                FAILED_FIT + report.summary(),
                ConvergenceWarning,
                stacklevel=2,
            )
        return fit


def check_time(time: Any) -> Any:
    """The ``time`` parameter of ProxyModel: None (static), True, a grouping or bin edges."""
    if time is None or time is False:
        return None
    if time is True or isinstance(time, str):
        return time
    if isinstance(time, (list, tuple)) and len(time) >= 2:
        return list(time)
    raise ParameterError(
        "The 'time' parameter of ProxyModel must be None (a static relation), True (the "
        "periods the cells carry), a grouping ('week', 'month', 'quarter', 'year') or a "
        f"list of at least two bin edges; got {time!r}."
    )


def timed_effects(effects: CellEffects, time: Any) -> CellEffects:
    """The cells with the periods a model with ``time`` fits over."""
    if not effects.has_time:
        raise ParameterError(
            "ProxyModel(time=...) needs cells that carry their experiments' start dates; "
            "these have none. Give summarize(..., time='<start date column>') (or "
            "from_arm_summaries / from_estimates), or add them with "
            "CellEffects.with_time(starts)."
        )
    return effects if time is True else effects.with_periods(time)


def _check_effects(effects: Any) -> None:
    if not isinstance(effects, CellEffects):
        raise DataTypeError(
            "ProxyModel.fit expects a proxyscope.CellEffects (from proxyscope.summarize or "
            f"CellEffects.from_arm_summaries); got {type(effects).__name__}."
        )

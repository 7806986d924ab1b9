"""Priors of the proxy model, in standardized units.

Every metric's effects are divided by the standard deviation of its cell
effects before fitting (see :mod:`proxyscope.model.structure`), so one set of
defaults fits any metric: "1" means "as large as the spread of the observed
cell effects". Outputs are always converted back to original units.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from proxyscope.errors import ParameterError, suggestion

#: What each prior governs, in a few words (the report's priors table; the
#: class docstring says more).
ROLES = {
    "global_location_sd": "mean long-term and proxy effects (global)",
    "global_slope_sd": "slopes of the long-term effect on the proxies (global)",
    "sigma_sd": "residual sd: what the proxies miss (global)",
    "main_location_sd": "per-column shifts of the means",
    "main_slope_sd": "per-column shifts of the slopes",
    "main_log_sigma_sd": "per-column shifts of the residual sd (log)",
    "interaction_location_sd": "segment interactions of the means",
    "interaction_slope_sd": "segment interactions of the slopes",
    "interaction_log_sigma_sd": "segment interactions of the residual sd (log)",
    "none_location_sd": "means per segment (pooling none)",
    "none_slope_sd": "slopes per segment (pooling none)",
    "none_log_sigma_sd": "residual sd per segment (pooling none)",
    "experiment_sd": "sd of the experiments' proxy effects",
    "experiment_outcome_sd": "sd of the experiments' long-term effect no proxy carries",
    "cell_sd": "sd of what is left within a cell",
    "lkj_eta": "correlations of the proxies' effects (LKJ shape)",
    "bias_sd": "sd of a non-randomized design's bias, per metric",
    "bias_lkj_eta": "correlations of a design's bias across metrics (LKJ shape)",
    "min_levels_learned_scale": "levels from which a column's scale is learned",
    "time_step_location_sd": "per-period steps of the means (models with time)",
    "time_step_slope_sd": "per-period steps of the slopes (models with time)",
    "time_step_log_sigma_sd": "per-period steps of the residual sd, log (models with time)",
    "time_drift_location_sd": "steady change per period of the means (models with time)",
    "time_drift_slope_sd": "steady change per period of the slopes (models with time)",
    "time_drift_log_sigma_sd": "steady change per period of the log residual sd (models with time)",
}
#: The priors of the relation's walk over periods: only in models with time
#: (a static fit's configuration does not list them, so its hash is unchanged).
TIME_PRIORS = (
    "time_step_location_sd",
    "time_step_slope_sd",
    "time_step_log_sigma_sd",
    "time_drift_location_sd",
    "time_drift_slope_sd",
    "time_drift_log_sigma_sd",
)


@dataclasses.dataclass(frozen=True)
class Priors:
    """Weakly informative priors, overridable by name.

    Location parameters are the segment means of the long-term effect
    (``nu_s``) and of the proxy effects (``mu_s``); slopes are ``beta_s``; the
    residual scale is ``sigma_s`` (what the proxies miss). With ``additive``
    pooling each is ``global + sum of per-column main effects + interaction``.

    Attributes
    ----------
    global_location_sd : float
        Normal(0, sd) on the global mean long-term and proxy effects. 1 lets the
        average effect be as large as the spread of the cell effects.
    global_slope_sd : float
        Normal(0, sd) on the global slopes: a one-sd move of a proxy's effect
        moving the long-term effect by up to about one sd.
    sigma_sd : float
        HalfNormal scale of the global residual sd sigma (what the proxies
        miss). Its mode is zero: the data decide whether the proxies explain
        the long-term effect almost completely; a prior bounded away from zero
        would forbid perfect surrogacy and inflate every flip probability.
    main_location_sd, main_slope_sd, main_log_sigma_sd : float
        Scale of the sum-to-zero main effects of segment columns with fewer
        than ``min_levels_learned_scale`` levels: fixed (a scale learned from
        two or three levels is barely identified and makes a funnel).
        For columns with more levels it is the HalfNormal scale of a learned sd.
    interaction_location_sd, interaction_slope_sd, interaction_log_sigma_sd : float
        HalfNormal scale of the sd of the segment interactions (what main
        effects do not explain, e.g. a Mobile x IN x New cohort). Learned from
        all segment cells, so interactions are shrunk toward zero unless the
        data insist. Interactions are normal: i.i.d. normal segment
        deviations, less what the global value and main effects express
        (:meth:`~proxyscope.model.structure.SegmentStructure.interaction_projector`).
        Heavier-tailed (Student-t) location interactions, used before, let a
        lone cohort stand out without widening the scale, but the sampler
        could not follow them when the cohort sat far in the tail of a scale
        the other segments pin down (measured: 15 divergences on a 2-column
        history with the planted cohort, with every coordinate system tried,
        ``benchmarks/bench_convergence.py``).
    none_location_sd, none_slope_sd, none_log_sigma_sd : float
        With ``pooling="none"``: independent Normal(0, sd) priors per segment
        (for log sigma: HalfNormal(sd) on sigma).
    experiment_sd : float
        HalfNormal scale of the sd of the experiment-level proxy effects eta_e.
    experiment_outcome_sd : float
        HalfNormal scale of the sd of eta0_e, the experiment's long-term effect
        that no proxy carries, shared by all its cells (in the model only when
        some experiment has two or more cells; with one cell per experiment it
        cannot be told from sigma).
    cell_sd : float
        HalfNormal scale of the sd of what is left within a cell (zeta_c).
    lkj_eta : float
        LKJ shape of the correlation matrices of eta_e and zeta_c (1 is
        uniform over correlation matrices; larger favours weaker correlations).
        With K proxies each single correlation r has the marginal prior
        (r + 1) / 2 ~ Beta(b, b), b = eta - 1 + K / 2: for K = 4 and the
        default 2, P(|r| > 0.95) is about 3e-4. Proxies that move almost in
        lock-step across experiments (correlation near 1) are therefore pulled
        below it when the data are noisy, which lowers the model's surrogacy
        and raises its flip probabilities; lowering it (1: P(|r| > 0.95) about
        0.004 for K = 4; 0.5: about 0.013) loosens that pull, at the price of
        less regularisation of weakly identified correlations.
    bias_sd : float
        HalfNormal scale of the sd, per metric, of the bias b_c ~ N(0, Sigma_d)
        of a cell estimated by a design that is not randomized (DESIGN.md §8:
        did, rdd, ipw, synthetic_control, external), in standardized units (1
        is the spread of the true cell effects). Its prior mean, 0.8 of that
        spread, keeps Sigma_d honest when a design has few experiments rather
        than letting it collapse to zero (no bias). Only in models of cells
        with such a design.
    bias_lkj_eta : float
        LKJ shape of the correlation of a design's bias across the outcome and
        the proxies (confounding tends to move them together; 2 is a mild pull
        toward independence that the data override).
    min_levels_learned_scale : int
        Segment columns with at least this many levels get a learned main
        effect scale; fewer levels get the fixed scale above.
    time_step_location_sd, time_step_slope_sd, time_step_log_sigma_sd : float
        Models with time (``ProxyModel(time=...)``, DESIGN.md §9): the
        locations, slopes and log residual sd move between consecutive periods
        by steps N(0, s_r^2), the same for every segment, with a step scale s_r
        per parameter (each mean, each proxy's slope, log sigma) ~
        HalfNormal(this sd). 0.1 lets a slope drift by about a quarter of the
        cell effects' spread over eight periods while a scale near 0 (a static
        relation) stays likely. One scale per parameter rather than per family,
        so one drifting proxy does not make the others' slopes move.
    time_drift_location_sd, time_drift_slope_sd, time_drift_log_sigma_sd : float
        Models with time: on top of the steps, each parameter changes by a
        steady d_r per period, d_r ~ Normal(0, this sd): a proxy whose link
        decays period after period (teams optimizing it) is a drift, which
        the walk's steps alone follow only with a lag, and which all periods
        inform together. 0 leaves the pure random walk. With both a family's
        step and drift sds at 0 it is fixed over time.
    """

    global_location_sd: float = 1.0
    global_slope_sd: float = 1.0
    sigma_sd: float = 0.5
    main_location_sd: float = 1.0
    main_slope_sd: float = 0.25
    main_log_sigma_sd: float = 0.25
    interaction_location_sd: float = 1.0
    interaction_slope_sd: float = 0.25
    interaction_log_sigma_sd: float = 0.25
    none_location_sd: float = 2.0
    none_slope_sd: float = 1.0
    none_log_sigma_sd: float = 1.0
    experiment_sd: float = 1.0
    experiment_outcome_sd: float = 0.5
    cell_sd: float = 0.5
    lkj_eta: float = 2.0
    bias_sd: float = 1.0
    bias_lkj_eta: float = 2.0
    min_levels_learned_scale: int = 5
    time_step_location_sd: float = 0.1
    time_step_slope_sd: float = 0.1
    time_step_log_sigma_sd: float = 0.1
    time_drift_location_sd: float = 0.05
    time_drift_slope_sd: float = 0.05
    time_drift_log_sigma_sd: float = 0.05

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "min_levels_learned_scale":
                ok = isinstance(value, int) and not isinstance(value, bool) and value >= 2
                want = "an integer >= 2"
            elif field.name in TIME_PRIORS:
                ok = (
                    isinstance(value, (int, float))
                    and not isinstance(value, bool)
                    and math.isfinite(value)
                    and value >= 0
                )
                want = "a finite number >= 0 (0: that family does not move over time)"
            else:
                ok = (
                    isinstance(value, (int, float))
                    and not isinstance(value, bool)
                    and math.isfinite(value)
                    and value > 0
                )
                want = "a positive finite number"
            if not ok:
                raise ParameterError(f"The prior {field.name!r} must be {want}; got {value!r}.")

    def learned_main(self, levels: Sequence[Sequence[Any]]) -> tuple[bool, ...]:
        """Per segment column (its ``levels``): whether its main effects get a
        learned scale (at least ``min_levels_learned_scale`` levels)."""
        return tuple(len(lv) >= self.min_levels_learned_scale for lv in levels)

    @classmethod
    def names(cls) -> list[str]:
        """Every prior name that can be overridden."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_overrides(cls, overrides: Priors | Mapping[str, Any] | None) -> Priors:
        """Defaults with some priors replaced by name.

        Raises
        ------
        ParameterError
            For an unknown name, listing the valid ones.
        """
        if overrides is None:
            return cls()
        if isinstance(overrides, Priors):
            return overrides
        if not isinstance(overrides, Mapping):
            raise ParameterError(
                "The 'priors' parameter of ProxyModel must be a mapping of prior names to "
                f"values or a Priors object; got {type(overrides).__name__}."
            )
        valid = cls.names()
        if "interaction_df" in overrides:
            raise ParameterError(
                "The prior 'interaction_df' no longer exists: location interactions are "
                "normal (Student-t tails made the posterior one the sampler could not "
                "follow; see Priors). Remove it; valid names: " + ", ".join(valid) + "."
            )
        unknown = [k for k in overrides if k not in valid]
        if unknown:
            hint = suggestion(unknown[0], valid)
            raise ParameterError(
                f"Unknown prior name(s) {unknown} for ProxyModel.{hint} "
                f"Valid names: {', '.join(valid)}."
            )
        return dataclasses.replace(cls(), **dict(overrides))

    def to_dict(self, timed: bool = True) -> dict[str, Any]:
        """The priors by name; without ``timed``, the walk's (:data:`TIME_PRIORS`) left out."""
        out = dataclasses.asdict(self)
        if not timed:
            for name in TIME_PRIORS:
                del out[name]
        return out

    def time_step_sds(self) -> tuple[float, float, float]:
        """The walk's step sds of the locations, slopes and log sigma."""
        return (self.time_step_location_sd, self.time_step_slope_sd, self.time_step_log_sigma_sd)

    def time_drift_sds(self) -> tuple[float, float, float]:
        """The walk's drift sds of the locations, slopes and log sigma."""
        return (
            self.time_drift_location_sd,
            self.time_drift_slope_sd,
            self.time_drift_log_sigma_sd,
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

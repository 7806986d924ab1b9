"""The threshold world: a routing rule at a score threshold, with the exact effect at the cutoff.

Every experiment is a rule that gives the feature to users whose score (a
model's confidence, the running variable) is at or above its threshold c.
Users, segments, metrics and treatment effects are the streaming scenario's
(:mod:`proxyscope.simulate.scenario`: the same formulas for the outcome
long_retained and the proxies early_watch_min, early_starts, early_ctr,
rebuffer_rate, the same segment shifts, failure cohort and per-experiment
exp_tau, exp_bias), with the score woven in smoothly:

- a user's score is ``x ~ Beta(a, b)`` (``score_shape``), independent of the
  segment cell;
- their latent satisfaction and engagement move with it:
  ``sat = SAT_MEAN[cell] + score_sat · z(x) + N(0, 1)``, ``eng = ENG_MEAN[cell]
  + score_eng · z(x) + N(0, 1)``, z the standardized score; every metric's
  mean, and every effect, is then a smooth function of x;
- treatment is ``x >= c`` (sharp); observed values are the potential outcome
  of the user's arm.

Truth (``truth["cell_effect"]``): per experiment and segment cell, the
effect at the cutoff, E[Y(1) − Y(0) | x = c, cell], in the good direction
(rebuffer_rate negated; long_retained on the probability scale). Given x = c,
sat and eng are independent normals with known means, so each effect is an
expectation over them: closed forms (normal partial expectations) for
early_watch_min, Gauss–Hermite quadrature for long_retained (logistic-normal)
and early_starts (2-D), adaptive quadrature of the clipped tails for
early_ctr and rebuffer_rate (as :mod:`proxyscope.simulate.response` does).
Coarser cells (:meth:`ThresholdWorld.truth_for`) average the 24 cells'
effects with the mix's shares, since the score does not depend on the cell.

Manipulation (``manipulation > 0``): that share of the users whose score is
within ``manipulation_width`` below the threshold move it to just above (the
rows' ``score``), keeping their outcomes (those of their own score): the
density of the score jumps at the cutoff and the estimate is biased; the
truth stays the effect at the cutoff of the unmanipulated population.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy import special

from proxyscope import dims
from proxyscope.errors import ParameterError, suggestion
from proxyscope.simulate import scenario as sc
from proxyscope.simulate._quadrature import hermite, normal_partial, tail_integral
from proxyscope.simulate.options import resolve_config
from proxyscope.simulate.threshold_config import ThresholdConfig

#: Stream key of the threshold world's generator.
_KEY = 0x7E5_401D
SCORE = "score"
THRESHOLD = "threshold"
_CONVENTIONS = (
    "cell_effect is E[Y(1) - Y(0) | score = cutoff, cell] for the unmanipulated population; "
    "proxies in their good direction (rebuffer_rate negated); long_retained on the probability "
    "scale (p_long_1 - p_long_0)."
)


class ThresholdWorld:
    """A simulated history of threshold rules with the exact effect at each cutoff.

    Built by :func:`threshold`; not meant to be constructed directly.

    Attributes
    ----------
    config : ThresholdConfig
    rows : pandas.DataFrame
        One row per user: exp_id, region, device, tenure (categoricals),
        score (observed, after any manipulation), threshold (the experiment's
        cutoff), treatment (score >= threshold), the five metrics,
        manipulated (bool), failure_cohort.
    potential_outcomes : pandas.DataFrame
        Same rows: ``<metric>_0``, ``<metric>_1``, ``p_long_0``, ``p_long_1``
        and the natural score ``score_0``.
    experiments : pandas.DataFrame
        Per experiment: cutoff, exp_tau, exp_bias, users, treated.
    truth : xarray.Dataset
        ``cell_effect[experiment, region, device, tenure, metric]`` (see the
        module docstring), ``cutoff[experiment]``, ``exp_tau``, ``exp_bias``,
        ``mix_share[region, device, tenure]``.
    """

    def __init__(
        self,
        *,
        config: ThresholdConfig,
        rows: pd.DataFrame,
        potential_outcomes: pd.DataFrame,
        experiments: pd.DataFrame,
        truth: xr.Dataset,
    ) -> None:
        self.config = config
        self.rows = rows
        self.potential_outcomes = potential_outcomes
        self.experiments = experiments
        self.truth = truth

    def column_roles(self) -> dict[str, Any]:
        """Roles of ``rows`` for :func:`proxyscope.data.rdd.rdd` (a new dict each call).

        ``cutoff`` is the number when every experiment shares one threshold,
        else the column "threshold"; ``segments`` is ``config.segments``.
        """
        lo, hi = self.config.cutoff
        roles = sc.column_roles()
        del roles["treatment"]
        roles.update(
            running=SCORE,
            cutoff=lo if lo == hi else THRESHOLD,
            segments=list(self.config.segments),
        )
        return roles

    def truth_for(self, segments: Sequence[str] | None = None) -> xr.DataArray:
        """The effect at the cutoff per experiment × cell of ``segments`` (default config's).

        Returns
        -------
        xarray.DataArray
            Dims ``(experiment, *segments, metric)``: the mix-weighted mean of
            the 24 cells' effects within each coarser cell.
        """
        segs = list(self.config.segments if segments is None else segments)
        for s in segs:
            if s not in sc.SEGMENT_COLUMNS:
                raise ParameterError(
                    f"truth_for: unknown segment column {s!r}; expected some of "
                    f"{list(sc.SEGMENT_COLUMNS)}.{suggestion(s, sc.SEGMENT_COLUMNS)}"
                )
        other = [s for s in sc.SEGMENT_COLUMNS if s not in segs]
        share = self.truth["mix_share"]
        effect = self.truth["cell_effect"]
        out = (effect * share).sum(other) / share.sum(other)
        return out.transpose(dims.EXPERIMENT, *segs, dims.METRIC)

    def __repr__(self) -> str:
        c = self.config
        return (
            f"<ThresholdWorld: {len(self.rows):,} users, {c.n_experiments} threshold rules, "
            f"manipulation={c.manipulation:g}, seed={c.seed}>"
        )


def _ctr_excess(x: float, lift: float) -> float:
    return float(special.expit(x)) + lift - 1.0


def _shortfall(x: float, drop: float) -> float:
    return drop - float(special.expit(x))


def cutoff_effects(
    config: ThresholdConfig, cutoff: np.ndarray, exp_tau: np.ndarray, exp_bias: np.ndarray
) -> np.ndarray:
    """E[Y(1) − Y(0) | x = cutoff, cell] per experiment, cell and metric: (E, 24, 5)."""
    mean, sd = config.score_moments
    z = (np.asarray(cutoff, dtype=float) - mean) / sd
    sat = sc.SAT_MEAN[None, :] + config.score_sat * z[:, None]
    eng = sc.ENG_MEAN[None, :] + config.score_eng * z[:, None]
    member = config.cohort.cells()
    out = np.empty((*sat.shape, len(sc.METRICS)))

    nodes, weights = hermite(48)
    sd_logit = math.hypot(sc.LOGIT_SAT, sc.LOGIT_ENG)
    m0 = sc.LOGIT_INTERCEPT + sc.LOGIT_SAT * sat + sc.LOGIT_ENG * eng + exp_bias[:, None]
    shift = exp_tau[:, None] + sc.SEG_TAU + config.cohort.long_penalty * member

    def logistic_normal(m: np.ndarray) -> np.ndarray:
        return np.asarray(special.expit(m[..., None] + sd_logit * nodes) @ weights)

    out[..., 0] = logistic_normal(m0 + shift) - logistic_normal(m0)

    w_mean = 25.0 + 10.0 * eng + 6.0 * sat
    w_sd = math.sqrt(10.0**2 + 6.0**2 + sc.WATCH_NOISE**2)
    w_delta = sc.WATCH_TAU * (exp_tau[:, None] + sc.WATCH_SEG * sc.SEG_TAU)
    w_delta = w_delta + config.cohort.watch_boost * member
    out[..., 1] = normal_partial(w_mean + w_delta, w_sd) - normal_partial(w_mean, w_sd)

    zs, ws = hermite(24)
    base = (
        1.8
        + 0.7 * special.expit(eng[..., None, None] + zs[:, None])
        + 0.2 * special.expit(sat[..., None, None] + zs[None, :])
    )
    s_delta = sc.STARTS_TAU * (exp_tau[:, None] + sc.STARTS_SEG * sc.SEG_TAU)
    s_delta = (s_delta + config.cohort.starts_boost * member)[..., None, None]
    gain = normal_partial(base + s_delta, sc.STARTS_NOISE) - normal_partial(base, sc.STARTS_NOISE)
    out[..., 2] = np.einsum("...ij,i,j->...", gain, ws, ws)

    c_mean = 0.3 * eng - 0.35 * sat
    c_sd = math.sqrt(0.3**2 + 0.35**2 + sc.CTR_NOISE**2)
    lift = np.broadcast_to(sc.CTR_LIFT + sc.CTR_LIFT_MOBILE, c_mean.shape)
    r_mean = -0.2 * sat + sc.REBUFFER_IN + sc.REBUFFER_MOBILE
    r_sd = math.sqrt(0.2**2 + sc.REBUFFER_NOISE**2)
    drop = np.broadcast_to(sc.REBUFFER_DROP, r_mean.shape)
    out[..., 3] = _tails(c_mean, lift, c_sd, ctr=True)
    out[..., 4] = _tails(r_mean, drop, r_sd, ctr=False)
    return out


def _tails(mean: np.ndarray, size: np.ndarray, sd: float, *, ctr: bool) -> np.ndarray:
    """early_ctr's lift minus its excess over 1, or rebuffer's drop minus its shortfall below 0."""
    out = np.zeros(mean.shape)
    cache: dict[tuple[float, float], float] = {}
    for index in np.ndindex(mean.shape):
        a, m = float(size[index]), float(mean[index])
        if a == 0.0:
            continue
        key = (m, a)
        if key not in cache:
            if ctr:
                f = functools.partial(_ctr_excess, lift=a)
                cache[key] = a - tail_integral(f, m, sd, float(special.logit(1.0 - a)), +1)
            else:
                f = functools.partial(_shortfall, drop=a)
                cache[key] = a - tail_integral(f, m, sd, float(special.logit(a)), -1)
        out[index] = cache[key]
    return out


def build(config: ThresholdConfig) -> ThresholdWorld:
    """Draw a threshold world from ``config`` and compute its truth (module docstring)."""
    rng = np.random.default_rng([config.seed, _KEY])
    n_exp, per = config.n_experiments, config.n_users
    n = n_exp * per
    lo, hi = config.cutoff
    cutoff = rng.uniform(lo, hi, size=n_exp) if hi > lo else np.full(n_exp, lo)
    exp_tau = rng.normal(0.0, config.exp_tau_sd, size=n_exp)
    exp_bias = rng.normal(0.0, config.exp_bias_sd, size=n_exp)
    exp = np.repeat(np.arange(n_exp), per)
    cell = rng.choice(sc.N_CELLS, size=n, p=config.mix.cell_probabilities())
    score0 = rng.beta(*config.score_shape, size=n)
    noise = rng.standard_normal((6, n))
    u_long, u_move, u_where = rng.random((3, n))

    mean, sd = config.score_moments
    z = (score0 - mean) / sd
    sat = sc.SAT_MEAN[cell] + config.score_sat * z + noise[0]
    eng = sc.ENG_MEAN[cell] + config.score_eng * z + noise[1]
    member = config.cohort.cells()[cell]
    tau = exp_tau[exp]
    c_user = cutoff[exp]
    width = config.manipulation_width
    near = (score0 < c_user) & (score0 >= c_user - width)
    moved = near & (u_move < config.manipulation)
    score = np.where(moved, c_user + np.minimum(width, 1.0 - c_user) * u_where, score0)
    treated = score >= c_user

    po: dict[str, np.ndarray] = {}
    logit0 = sc.LOGIT_INTERCEPT + sc.LOGIT_SAT * sat + sc.LOGIT_ENG * eng + exp_bias[exp]
    logit1 = logit0 + tau + sc.SEG_TAU[cell] + config.cohort.long_penalty * member
    po["p_long_0"], po["p_long_1"] = special.expit(logit0), special.expit(logit1)
    po[f"{sc.OUTCOME}_0"] = (u_long < po["p_long_0"]).astype(float)
    po[f"{sc.OUTCOME}_1"] = (u_long < po["p_long_1"]).astype(float)
    watch = 25.0 + 10.0 * eng + 6.0 * sat + sc.WATCH_NOISE * noise[2]
    w_delta = sc.WATCH_TAU * (tau + sc.WATCH_SEG * sc.SEG_TAU[cell])
    po["early_watch_min_0"] = np.maximum(watch, 0.0)
    po["early_watch_min_1"] = np.maximum(watch + w_delta + config.cohort.watch_boost * member, 0.0)
    starts = 1.8 + 0.7 * special.expit(eng) + 0.2 * special.expit(sat) + 0.3 * noise[3]
    s_delta = sc.STARTS_TAU * (tau + sc.STARTS_SEG * sc.SEG_TAU[cell])
    po["early_starts_0"] = np.maximum(starts, 0.0)
    po["early_starts_1"] = np.maximum(starts + s_delta + config.cohort.starts_boost * member, 0.0)
    ctr = special.expit(0.3 * eng - 0.35 * sat + sc.CTR_NOISE * noise[4])
    po["early_ctr_0"] = ctr
    po["early_ctr_1"] = np.clip(ctr + sc.CTR_LIFT + sc.CTR_LIFT_MOBILE[cell], 0.0, 1.0)
    x = -0.2 * sat + sc.REBUFFER_IN[cell] + sc.REBUFFER_MOBILE[cell] + sc.REBUFFER_NOISE * noise[5]
    po["rebuffer_rate_0"] = special.expit(x)
    po["rebuffer_rate_1"] = np.clip(po["rebuffer_rate_0"] - sc.REBUFFER_DROP[cell], 0.0, 1.0)
    po["score_0"] = score0

    rows: dict[str, Any] = {"exp_id": exp}
    for col, codes in zip(
        sc.SEGMENT_COLUMNS, (sc.CELL_REGION, sc.CELL_DEVICE, sc.CELL_TENURE), strict=True
    ):
        rows[col] = sc.categorical(codes[cell], col)
    rows[SCORE] = score
    rows[THRESHOLD] = c_user
    rows["treatment"] = treated.astype(np.int64)
    for m in (*sc.PROXIES, sc.OUTCOME):
        rows[m] = np.where(treated, po[f"{m}_1"], po[f"{m}_0"])
    rows["manipulated"] = moved
    rows["failure_cohort"] = member.astype(np.int64)

    effect = cutoff_effects(config, cutoff, exp_tau, exp_bias)
    cell_dims = (dims.EXPERIMENT, *sc.SEGMENT_COLUMNS)
    truth = xr.Dataset(
        {
            "cell_effect": ((*cell_dims, dims.METRIC), effect.reshape(n_exp, *sc.SHAPE, -1)),
            "cutoff": (dims.EXPERIMENT, cutoff),
            "exp_tau": (dims.EXPERIMENT, exp_tau),
            "exp_bias": (dims.EXPERIMENT, exp_bias),
            "mix_share": (sc.SEGMENT_COLUMNS, config.mix.cell_probabilities().reshape(sc.SHAPE)),
        },
        coords={
            dims.EXPERIMENT: np.arange(n_exp),
            **{col: list(sc.LEVELS[col]) for col in sc.SEGMENT_COLUMNS},
            dims.METRIC: list(sc.METRICS),
        },
        attrs={"conventions": _CONVENTIONS, "outcome": sc.OUTCOME},
    )
    truth["cell_effect"].attrs["description"] = "effect at the cutoff, good direction"
    experiments = pd.DataFrame(
        {
            "cutoff": cutoff,
            "exp_tau": exp_tau,
            "exp_bias": exp_bias,
            "users": per,
            "treated": np.bincount(exp, weights=treated, minlength=n_exp).astype(np.int64),
        },
        index=pd.RangeIndex(n_exp, name=dims.EXPERIMENT),
    )
    return ThresholdWorld(
        config=config,
        rows=pd.DataFrame(rows, copy=False),
        potential_outcomes=pd.DataFrame(po, copy=False),
        experiments=experiments,
        truth=truth,
    )


def threshold(config: ThresholdConfig | None = None, **options: Any) -> ThresholdWorld:
    """Simulate threshold rules on the streaming scenario, with the exact effect at each cutoff.

    Parameters
    ----------
    config : ThresholdConfig, optional
        All settings at once; keyword options replace its fields.
    **options
        Fields of :class:`~proxyscope.simulate.threshold_config.ThresholdConfig`.

    Returns
    -------
    ThresholdWorld

    Raises
    ------
    ParameterError
        An unknown option, or any invalid setting (naming the field and the value).

    Examples
    --------
    >>> from proxyscope.simulate.threshold_world import threshold
    >>> world = threshold(n_experiments=3, n_users=2_000, seed=1)
    >>> world.column_roles()["running"]
    'score'
    """
    return build(
        resolve_config(
            config,
            options,
            ThresholdConfig,
            function="threshold",
            example="threshold(n_experiments=20)",
            drop_none=False,
        )
    )

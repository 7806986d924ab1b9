"""The opt-in world: users choose to turn an assistant on, more often the more engaged they are.

Users, segments, latent satisfaction and engagement, and both potential
outcomes of every metric follow the streaming scenario's formulas
(:mod:`proxyscope.simulate.generate`, :mod:`proxyscope.simulate.scenario`): the
same outcome and proxies, the same segment and experiment effects, the same
failure cohort. What changes is who is treated. Per user:

- two covariates measured before the choice, pre-period versions of the
  untreated proxies with fresh noise: ``prior_watch_min`` =
  max(25 + 10 eng + 6 sat + 5 N, 0) and ``prior_starts`` =
  max(1.8 + 0.7 σ(eng) + 0.2 σ(sat) + 0.3 N, 0);
- the prior-engagement index z = (prior_watch_min − 25)/12.7 +
  0.5 (prior_starts − 2.25)/0.35;
- opt in with probability e = σ(logit(optin_rate) + selection · z +
  hidden_confounding · (sat − its cell mean)). With hidden_confounding = 0 the
  choice depends on the covariates only (selection on observables, and e is
  logistic-linear in them, so a logistic propensity model is right while the
  outcome models are not); otherwise latent satisfaction, which raises every
  metric and is not observed, also drives it, and no adjustment removes the
  bias;
- the treatment's shift of the long-term logit is the streaming world's
  (exp_tau + the segment interaction + the cohort penalty) plus
  h = heterogeneity · (eng − its cell mean), so engaged users, who opt in more,
  gain more: the ATT exceeds the ATE. early_watch_min's shift gains 8 h and
  early_starts' 0.4 h; early_ctr and rebuffer_rate shift as in the streaming
  world.

The stream draws, in order: segments, exp_tau, exp_bias, sat and eng noise, the
two covariates' noise, the opt-in uniforms, the long-term uniforms, then the
watch, starts, ctr and rebuffer noise. Truth is exact and in-sample, in every
metric's good direction (rebuffer_rate negated; long_retained on the
probability scale, p_long_1 − p_long_0), as in the other worlds: per
(experiment, cell of ``config.segments``), the ATE is the mean of Y(1) − Y(0)
over the cell's users and the ATT over its opted-in users.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from proxyscope import dims
from proxyscope.errors import ParameterError
from proxyscope.simulate import scenario as sc
from proxyscope.simulate.optin_config import OptinConfig
from proxyscope.simulate.options import resolve_config
from proxyscope.simulate.truth import user_effects

TREATMENT = "opt_in"
COVARIATES: tuple[str, str] = ("prior_watch_min", "prior_starts")
#: Centre and scale of each covariate in the prior-engagement index.
INDEX_TERMS: dict[str, tuple[float, float, float]] = {
    "prior_watch_min": (25.0, 12.7, 1.0),
    "prior_starts": (2.25, 0.35, 0.5),
}
_USER_COLUMNS = (
    "exp_id",
    *sc.SEGMENT_COLUMNS,
    TREATMENT,
    *COVARIATES,
    *sc.PROXIES,
    sc.OUTCOME,
    "failure_cohort",
)


class OptinWorld:
    """A simulated history of opt-in launches with exact ATE and ATT truth.

    Built by :func:`optin`; not meant to be constructed directly.

    Attributes
    ----------
    config : OptinConfig
    users : pandas.DataFrame
        One row per user: exp_id, region, device, tenure (categoricals),
        opt_in (0/1), prior_watch_min, prior_starts, the five metrics
        (observed), failure_cohort.
    potential_outcomes : pandas.DataFrame
        Same rows: ``<metric>_0``, ``<metric>_1``, ``p_long_0``, ``p_long_1``.
    propensity : numpy.ndarray
        Each user's true opt-in probability.
    truth : xarray.Dataset
        ``cell_ate`` and ``cell_att`` [experiment, *segments, metric] (NaN where
        the cell has no user, or no opted-in user), ``cell_users``,
        ``cell_treated``, ``experiment_ate``, ``experiment_att``
        [experiment, metric], ``exp_tau``, ``exp_bias`` [experiment].
    """

    def __init__(
        self,
        *,
        config: OptinConfig,
        users: pd.DataFrame,
        potential_outcomes: pd.DataFrame,
        propensity: np.ndarray,
        truth: xr.Dataset,
    ) -> None:
        self.config = config
        self.users = users
        self.potential_outcomes = potential_outcomes
        self.propensity = propensity
        self.truth = truth

    def column_roles(self) -> dict[str, Any]:
        """Keyword arguments of :func:`proxyscope.data.ipw.ipw` for ``users`` (a new dict)."""
        return {
            **sc.column_roles(),
            "treatment": TREATMENT,
            "segments": list(self.config.segments),
            "covariates": list(COVARIATES),
        }

    def cell_truth(self, estimand: str = "ate") -> xr.DataArray:
        """``cell_ate`` or ``cell_att`` (``estimand`` "ate" or "att")."""
        if estimand not in ("ate", "att"):
            raise ParameterError(
                f"The 'estimand' parameter of OptinWorld.cell_truth must be one of "
                f"{{'ate', 'att'}}. Got {estimand!r} instead."
            )
        return self.truth[f"cell_{estimand}"]

    def __repr__(self) -> str:
        c = self.config
        return (
            f"<OptinWorld: {len(self.users):,} users, {c.n_experiments} experiments, "
            f"{self.users[TREATMENT].mean():.0%} opted in, seed={c.seed}>"
        )


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


def _segments(rng: np.random.Generator, config: OptinConfig, n: int) -> np.ndarray:
    """Segment cell (0–23) of each user."""
    mix = config.mix
    if mix.is_joint:
        return np.asarray(rng.choice(sc.N_CELLS, size=n, p=mix.cell_probabilities()))
    codes = [rng.choice(len(sc.LEVELS[c]), size=n, p=mix.marginal(c)) for c in sc.SEGMENT_COLUMNS]
    return np.asarray(sc.cell_index(codes[0], codes[1], codes[2]))


def _group_means(index: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """Mean of each column per group (NaN if empty), with one residual correction pass."""
    counts = np.bincount(index, minlength=size).astype(float)
    out = np.empty((size, values.shape[1]))
    with np.errstate(invalid="ignore", divide="ignore"):
        for j in range(values.shape[1]):
            mean = np.bincount(index, weights=values[:, j], minlength=size) / counts
            resid = values[:, j] - np.nan_to_num(mean)[index]
            out[:, j] = mean + np.bincount(index, weights=resid, minlength=size) / counts
    return out


def _truth(
    po: pd.DataFrame, exp: np.ndarray, seg: np.ndarray, treated: np.ndarray, config: OptinConfig
) -> xr.Dataset:
    """ATE and ATT per (experiment, cell of ``config.segments``) and per experiment."""
    n_exp = config.n_experiments
    codes = {sc.REGION: sc.CELL_REGION, sc.DEVICE: sc.CELL_DEVICE, sc.TENURE: sc.CELL_TENURE}
    shape = tuple(len(sc.LEVELS[s]) for s in config.segments)
    role_cell = np.zeros(sc.N_CELLS, dtype=np.int64)
    for s in config.segments:
        role_cell = role_cell * len(sc.LEVELS[s]) + codes[s]
    k = int(np.prod(shape))
    effect = np.column_stack([user_effects(po, m) for m in sc.METRICS])
    index = exp * k + role_cell[seg]
    grid = (n_exp, *shape)
    ate = _group_means(index, effect, n_exp * k).reshape(*grid, -1)
    att = _group_means(index[treated], effect[treated], n_exp * k).reshape(*grid, -1)
    users = np.bincount(index, minlength=n_exp * k).reshape(grid)
    opted = np.bincount(index[treated], minlength=n_exp * k).reshape(grid)
    cell_dims = (dims.EXPERIMENT, *config.segments)
    out = xr.Dataset(
        {
            "cell_ate": ((*cell_dims, dims.METRIC), ate),
            "cell_att": ((*cell_dims, dims.METRIC), att),
            "cell_users": (cell_dims, users),
            "cell_treated": (cell_dims, opted),
            "experiment_ate": ((dims.EXPERIMENT, dims.METRIC), _group_means(exp, effect, n_exp)),
            "experiment_att": (
                (dims.EXPERIMENT, dims.METRIC),
                _group_means(exp[treated], effect[treated], n_exp),
            ),
        },
        coords={
            dims.EXPERIMENT: np.arange(n_exp),
            **{s: list(sc.LEVELS[s]) for s in config.segments},
            dims.METRIC: list(sc.METRICS),
        },
    )
    out["cell_ate"].attrs["description"] = "mean over the cell's users of Y(1) - Y(0)"
    out["cell_att"].attrs["description"] = "mean over the cell's opted-in users of Y(1) - Y(0)"
    out.attrs["conventions"] = (
        "Effects in every metric's good direction (rebuffer_rate negated); long_retained on "
        "the probability scale (p_long_1 - p_long_0); in-sample means over users."
    )
    return out


def build(config: OptinConfig) -> OptinWorld:
    """Draw an opt-in world from ``config`` and compute its truth (module docstring)."""
    rng = np.random.default_rng(config.seed)
    n_exp, per = config.n_experiments, config.users_per_experiment
    n = n_exp * per
    exp = np.repeat(np.arange(n_exp), per)
    seg = _segments(rng, config, n)
    exp_tau = rng.normal(0.0, config.exp_tau_sd, size=n_exp)
    exp_bias = rng.normal(0.0, config.exp_bias_sd, size=n_exp)
    sat_mean = sc.SAT_MEAN[seg]
    eng_mean = sc.ENG_MEAN[seg]
    sat = rng.normal(size=n) + sat_mean
    eng = rng.normal(size=n) + eng_mean
    prior = {
        "prior_watch_min": np.maximum(25 + 10 * eng + 6 * sat + 5 * rng.normal(size=n), 0.0),
        "prior_starts": np.maximum(
            1.8 + 0.7 * _sigmoid(eng) + 0.2 * _sigmoid(sat) + 0.3 * rng.normal(size=n), 0.0
        ),
    }
    index = sum(w * (prior[c] - mid) / scale for c, (mid, scale, w) in INDEX_TERMS.items())
    rate = config.optin_rate
    logit_e = np.log(rate / (1 - rate)) + config.selection * index
    logit_e = logit_e + config.hidden_confounding * (sat - sat_mean)
    propensity = _sigmoid(logit_e)
    treated = rng.random(n) < propensity

    fc = config.cohort.cells()[seg]
    h = config.heterogeneity * (eng - eng_mean)
    logit0 = sc.LOGIT_INTERCEPT + sc.LOGIT_SAT * sat + sc.LOGIT_ENG * eng + exp_bias[exp]
    logit1 = logit0 + exp_tau[exp] + sc.SEG_TAU[seg] + config.cohort.long_penalty * fc + h
    p0, p1 = _sigmoid(logit0), _sigmoid(logit1)
    u = rng.random(n)
    tau_w = sc.WATCH_TAU * (exp_tau[exp] + sc.WATCH_SEG * sc.SEG_TAU[seg])
    watch0 = 25 + 10 * eng + 6 * sat + sc.WATCH_NOISE * rng.normal(size=n)
    watch1 = watch0 + tau_w + config.cohort.watch_boost * fc + sc.WATCH_TAU * h
    tau_s = sc.STARTS_TAU * (exp_tau[exp] + sc.STARTS_SEG * sc.SEG_TAU[seg])
    starts0 = 1.8 + 0.7 * _sigmoid(eng) + 0.2 * _sigmoid(sat)
    starts0 = starts0 + sc.STARTS_NOISE * rng.normal(size=n)
    starts1 = starts0 + tau_s + config.cohort.starts_boost * fc + sc.STARTS_TAU * h
    ctr0 = _sigmoid(0.3 * eng - 0.35 * sat + sc.CTR_NOISE * rng.normal(size=n))
    ctr1 = np.clip(ctr0 + sc.CTR_LIFT + sc.CTR_LIFT_MOBILE[seg], 0.0, 1.0)
    x = -0.2 * sat + sc.REBUFFER_IN[seg] + sc.REBUFFER_MOBILE[seg]
    rebuffer0 = _sigmoid(x + sc.REBUFFER_NOISE * rng.normal(size=n))
    rebuffer1 = np.clip(rebuffer0 - sc.REBUFFER_DROP[seg], 0.0, 1.0)
    po = {
        "long_retained_0": (u < p0).astype(np.int64),
        "long_retained_1": (u < p1).astype(np.int64),
        "early_watch_min_0": np.maximum(watch0, 0.0),
        "early_watch_min_1": np.maximum(watch1, 0.0),
        "early_starts_0": np.maximum(starts0, 0.0),
        "early_starts_1": np.maximum(starts1, 0.0),
        "early_ctr_0": ctr0,
        "early_ctr_1": ctr1,
        "rebuffer_rate_0": rebuffer0,
        "rebuffer_rate_1": rebuffer1,
        "p_long_0": p0,
        "p_long_1": p1,
    }
    users: dict[str, Any] = {"exp_id": exp}
    for col, codes in zip(
        sc.SEGMENT_COLUMNS, (sc.CELL_REGION, sc.CELL_DEVICE, sc.CELL_TENURE), strict=True
    ):
        users[col] = sc.categorical(codes[seg], col)
    users[TREATMENT] = treated.astype(np.int64)
    users.update(prior)
    for m in sc.METRICS:
        users[m] = np.where(treated, po[f"{m}_1"], po[f"{m}_0"])
    users["failure_cohort"] = fc.astype(np.int64)
    potential_outcomes = pd.DataFrame(po, copy=False)
    truth = _truth(potential_outcomes, exp, seg, treated, config)
    truth["exp_tau"] = (dims.EXPERIMENT, exp_tau)
    truth["exp_bias"] = (dims.EXPERIMENT, exp_bias)
    return OptinWorld(
        config=config,
        users=pd.DataFrame(users, copy=False)[list(_USER_COLUMNS)],
        potential_outcomes=potential_outcomes,
        propensity=propensity,
        truth=truth,
    )


def optin(config: OptinConfig | None = None, **options: Any) -> OptinWorld:
    """Simulate opt-in launches on the streaming scenario, with exact ATE and ATT truth.

    Parameters
    ----------
    config : OptinConfig, optional
        All settings at once; keyword options replace its fields.
    **options
        Fields of :class:`~proxyscope.simulate.optin_config.OptinConfig`:
        n_experiments, users_per_experiment, segments, optin_rate, selection,
        hidden_confounding, heterogeneity, seed, mix (a SegmentMix or a mapping
        of (region, device, tenure) to share), cohort, exp_tau_sd, exp_bias_sd.

    Returns
    -------
    OptinWorld

    Raises
    ------
    ParameterError
        An unknown option, or any invalid setting (naming the field and the value).

    Examples
    --------
    >>> from proxyscope.simulate.optin_world import optin
    >>> world = optin(n_experiments=3, users_per_experiment=500, seed=1)
    >>> sorted(world.column_roles()["covariates"])
    ['prior_starts', 'prior_watch_min']
    """
    return build(
        resolve_config(
            config, options, OptinConfig, function="optin", example="optin(selection=1.5)"
        )
    )

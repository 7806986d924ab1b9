"""Unit-level data of four quasi-experimental designs whose estimand is a known cell effect.

Each generator takes the cells of one design (``keys``: the experiment and the
segment columns, one row per cell) and each cell's true effect vector (outcome
first, then the proxies, in the metrics' natural direction) and draws the unit
data that the design's estimator reads. In every cell the treatment adds the
cell's effect vector to the metrics of its treated units (or treated
unit-periods), the same for every unit, so every estimand of the design (ATE,
ATT, the jump at the cutoff, the post-launch gap) equals that vector exactly.
What differs between treated and untreated units besides the treatment is
confounding that a naive difference in means takes for an effect and that the
design's estimator removes by construction of the data:

- :func:`did_panel` (``did``): units x periods; unit baselines, a common time
  trend per experiment, AR(1) shocks; the units with the highest outcome
  baselines are treated first (waves), the rest never. A post-period difference
  is biased by the baselines; differences in differences cancel them and the
  trend (parallel trends hold exactly);
- :func:`ipw_rows` (``ipw``): units with two covariates that drive both
  opting in (logistic) and every metric (linear). A difference in means is
  biased; ``ipw``'s default outcome models (linear in the covariates and the
  segment indicators, per arm) are correctly specified, so AIPW is unbiased
  (its default propensity model, one logistic fit per experiment, misses that
  the selection's strength differs by segment: double robustness covers it);
- :func:`rdd_rows` (``rdd``): a running score uniform on [-1, 1], the
  treatment at and above the cutoff 0, every metric linear in the score
  (steeply: above-versus-below is biased); local linear fits are exact in the
  mean, so the jump estimates the effect without bias at any bandwidth;
- :func:`synthetic_panel` (``synthetic_control``): one treated unit and
  donors per cell from a low-rank factor model (unit baseline + loadings x
  period factors), pre- and post-launch periods; the treated unit's baseline
  and loadings are a convex combination of four donors drawn from those with
  the highest outcome baselines (a launch market chosen for its level, inside
  the donors' hull), so its untreated path is exactly a weighted mix of donors'
  and the post-launch gap estimates the effect; the treated-minus-donors
  difference does not.

How strongly confounding acts differs between cells: each cell has a strength
uniform on [0, 2] (mean :data:`CONFOUNDING`) that scales the selection (did,
synthetic control), the propensity's coefficients (ipw) or the slope in the
score (rdd), so a naive estimate's bias differs between the segments of an
experiment and no experiment-level term can absorb it.

Within a unit the metrics are correlated: baselines (correlation
:data:`BASELINE_CORR` between every pair of metrics) and noise (correlation
``noise_corr`` between every pair, from_model's), so the estimators' joint
covariances carry cross-metric terms.

Sizes (per cell) and noise: the unit-level noise sd s of a design is its
multiple of ``noise_sd`` (:data:`NOISE_MULTIPLE`: did 3.5, ipw 8.5, rdd 2.5,
synthetic control 1.5), chosen so that the estimators' standard errors are
about ``noise_sd``; baselines, trends, factors and covariate effects are
multiples of s, so every design keeps its shape at any ``noise_sd``.

=====================  ======================================================
``did``                40 units, periods 0..5, 8 units first treated in each
                       of periods 2, 3, 4 and 16 never; AR(1) coefficient 0.5
``ipw``                400 units, 2 covariates
``rdd``                400 units
``synthetic_control``  1 treated unit and 20 donors (5 kinds of 4 near twins),
                       12 pre-launch and 4 post-launch periods, 2 factors
=====================  ======================================================

Measured (20 replications of 32 cells per design, noise_sd 0.5, three metrics
with noise correlation -0.5; outcome, proxy 1, proxy 2): mean standard error /
noise_sd 0.98 (did), 0.99 (ipw), 1.00 (rdd), 1.03 (synthetic control); mean
squared standardized error (1 when the estimated covariance is right) 1.02,
1.11, 1.24 (did: CR1 with cohorts of 8 units runs small, as
:mod:`proxyscope.data.did` states), 1.13, 1.09, 1.23 (ipw), 1.21, 1.12, 1.17 (rdd:
conventional intervals at a data-driven bandwidth), 0.85, 0.87, 0.96
(synthetic control: placebos are slightly conservative); mean correlation of
the outcome's and proxy 1's errors -0.50 (did, ipw, rdd) and -0.33 (synthetic
control).

Each generator draws from the ``rng`` it is given, in the order its code
reads; ``designed_history`` gives each design a stream of its own.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from proxyscope import dims
from proxyscope.errors import ParameterError
from proxyscope.simulate.model_draws import psd_factor

#: Correlation between every pair of metrics of a unit's baseline.
BASELINE_CORR = 0.5
#: Unit-level noise sd of each design, in multiples of from_model's noise_sd.
NOISE_MULTIPLE: dict[str, float] = {
    "did": 3.5,
    "ipw": 8.5,
    "rdd": 2.5,
    "synthetic_control": 1.5,
}
#: Mean strength of confounding; each cell's is uniform on [0, 2 x CONFOUNDING], so a
#: naive estimate's bias differs between the segments of an experiment (an experiment
#: effect cannot absorb it) while the estimators stay unbiased in every cell.
CONFOUNDING = 1.0
#: Sd of baselines (units, cells) in multiples of the design's unit noise sd.
BASELINE_SD = 3.0

DID_UNITS = 40
DID_PERIODS = 6
#: First treated periods, one wave each of ``DID_WAVE`` units (highest baselines first).
DID_WAVES: tuple[int, ...] = (2, 3, 4)
DID_WAVE = 8
DID_AR = 0.5
#: Sd of a step of the common trend (random walk), in unit noise sds.
DID_TREND_SD = 1.0

IPW_UNITS = 400
#: Logit of opting in: IPW_PROPENSITY @ (x1, x2).
IPW_PROPENSITY = np.array([0.8, -0.6])
#: Per covariate, the metrics' coefficient (outcome first, then alternating signs), in
#: unit noise sds.
IPW_COVARIATE_EFFECT = (1.0, 0.5)
IPW_COVARIATES: tuple[str, ...] = ("x1", "x2")

RDD_UNITS = 400
#: Slope of every metric in the score (unit noise sds per unit of score).
RDD_SLOPE = 2.0

SC_DONORS = 20
SC_PRE = 12
SC_POST = 4
SC_FACTORS = 2
#: Donors whose mix is the treated unit, drawn from the top half by outcome baseline.
SC_PARENTS = 4
#: Donors come in SC_KINDS kinds (every J/SC_KINDS-th donor alike) that differ by a jitter
#: of SC_JITTER (loadings; baselines: unit noise sds): each donor has near twins, so the
#: in-space placebos fit about as well as the treated unit.
SC_KINDS = 5
SC_JITTER = 0.15
#: Sd of the period factors, in unit noise sds.
SC_FACTOR_SD = 2.0

UNIT, PERIOD, FIRST_TREATED = "unit", "period", "first_treated"
OPTED_IN, SCORE, TREATED = "opted_in", "score", "treated"


def _factor(m: int, rho: float) -> np.ndarray:
    """A with A A' = the m x m correlation matrix with ``rho`` off the diagonal."""
    corr = np.full((m, m), rho)
    np.fill_diagonal(corr, 1.0)
    return psd_factor(corr)


def _normals(rng: np.random.Generator, shape: tuple[int, ...], factor: np.ndarray) -> np.ndarray:
    """Standard normal vectors (last axis: metrics) with covariance ``factor @ factor.T``."""
    return np.asarray(rng.standard_normal((*shape, factor.shape[0])) @ factor.T)


def _strength(rng: np.random.Generator, n_cells: int) -> np.ndarray:
    """Each cell's strength of confounding, uniform on [0, 2] (see ``CONFOUNDING``)."""
    return np.asarray(rng.uniform(0.0, 2.0 * CONFOUNDING, size=n_cells))


def _frame(
    keys: pd.DataFrame, cell: np.ndarray, columns: dict[str, np.ndarray], metrics: Sequence[str]
) -> pd.DataFrame:
    """Rows: the cell's key columns, then ``columns`` (the last, (n, M), split by metric)."""
    out = keys.iloc[cell].reset_index(drop=True)
    values = columns.pop("_metrics")
    for name, col in columns.items():
        out[name] = col
    for j, metric in enumerate(metrics):
        out[metric] = values[:, j]
    return out


def _check(keys: pd.DataFrame, effect: np.ndarray, metrics: Sequence[str]) -> np.ndarray:
    effect = np.asarray(effect, dtype=float)
    if effect.shape != (len(keys), len(metrics)):
        raise ParameterError(
            f"The 'effect' parameter of the unit generators must have one row per cell "
            f"({len(keys)}) and one column per metric ({len(metrics)}); got {effect.shape}."
        )
    return effect


def did_panel(
    keys: pd.DataFrame,
    effect: np.ndarray,
    metrics: Sequence[str],
    rng: np.random.Generator,
    *,
    noise_sd: float,
    noise_corr: float,
) -> pd.DataFrame:
    """A staged rollout per cell: columns of ``keys``, unit, period, first_treated, metrics.

    Y[i, t] = a_i + trend_e[t] + u_i[t] + effect_c 1{t >= g_i}: baselines
    a_i ~ N(0, (3 s)² C_b), a random-walk trend per experiment (steps sd s),
    AR(1) shocks u (coefficient 0.5, stationary sd s, noise correlation), s the
    unit noise sd. Waves by baseline: ranked by k_c a_i0 / (3 s) + 0.5 z_i (k_c
    the cell's strength of confounding, z_i standard normal), the first 8 units
    are first treated in period 2, the next 8 in 3, the next 8 in 4, the other 16
    never (first_treated NaN).

    Parameters
    ----------
    keys : pandas.DataFrame
        One row per cell: ``experiment`` and the segment columns (copied to the rows).
    effect : array (cells, metrics)
        Each cell's effect vector, outcome first, in the metrics' natural direction.
    metrics : list of str
        The metrics' column names (outcome first).
    rng : numpy.random.Generator
    noise_sd, noise_corr : float
        from_model's sampling sd and cross-metric correlation (s is
        ``NOISE_MULTIPLE[design] * noise_sd``).

    Returns
    -------
    pandas.DataFrame
        The unit data (the other generators take the same parameters).
    """
    effect = _check(keys, effect, metrics)
    n_cells, m = effect.shape
    n, t = DID_UNITS, DID_PERIODS
    s = NOISE_MULTIPLE["did"] * noise_sd
    base = BASELINE_SD * s * _normals(rng, (n_cells, n), _factor(m, BASELINE_CORR))
    rank_noise = rng.standard_normal((n_cells, n))
    strength = _strength(rng, n_cells)
    exp_code, exp_levels = pd.factorize(keys[dims.EXPERIMENT])
    trend = np.cumsum(DID_TREND_SD * s * rng.standard_normal((len(exp_levels), t, m)), axis=1)[
        exp_code
    ]
    noise = _normals(rng, (n_cells, n, t), _factor(m, noise_corr))
    shock = np.empty_like(noise)
    shock[:, :, 0] = noise[:, :, 0]
    for p in range(1, t):
        shock[:, :, p] = DID_AR * shock[:, :, p - 1] + np.sqrt(1 - DID_AR**2) * noise[:, :, p]
    pull = strength[:, None] * base[:, :, 0] / (BASELINE_SD * s)
    order = np.argsort(-(pull + 0.5 * rank_noise), axis=1)
    first = np.full((n_cells, n), np.nan)
    for w, g in enumerate(DID_WAVES):
        rows = order[:, w * DID_WAVE : (w + 1) * DID_WAVE]
        np.put_along_axis(first, rows, float(g), axis=1)
    period = np.arange(t)
    on = (period[None, None, :] >= first[:, :, None])[..., None]  # NaN compares False
    y = base[:, :, None, :] + trend[:, None, :, :] + s * shock + on * effect[:, None, None, :]
    cell = np.repeat(np.arange(n_cells), n * t)
    columns = {
        UNIT: np.repeat(np.arange(n_cells * n), t),
        PERIOD: np.tile(period, n_cells * n),
        FIRST_TREATED: np.repeat(first.reshape(-1), t),
        "_metrics": y.reshape(-1, m),
    }
    return _frame(keys, cell, columns, metrics)


def ipw_rows(
    keys: pd.DataFrame,
    effect: np.ndarray,
    metrics: Sequence[str],
    rng: np.random.Generator,
    *,
    noise_sd: float,
    noise_corr: float,
) -> pd.DataFrame:
    """An opt-in feature per cell: columns of ``keys``, opted_in (0/1), x1, x2, metrics.

    x ~ N(0, I₂); P(opt in | x) = logistic(k_c (0.8 x1 − 0.6 x2)), k_c the cell's
    strength of confounding; Y = b_c + s x B + opted_in · effect_c + s ε, with
    b_c ~ N(0, (3 s)² C_b) per cell, B's rows
    (1, 1, ...) for x1 and (0.5, −0.5, 0.5, ...) for x2, ε with the noise
    correlation and s the unit noise sd. Heavier users (x1) opt in more and score
    higher on every metric.

    Parameters
    ----------
    keys, effect, metrics, rng, noise_sd, noise_corr
        As :func:`did_panel`.

    Returns
    -------
    pandas.DataFrame
    """
    effect = _check(keys, effect, metrics)
    n_cells, m = effect.shape
    n = IPW_UNITS
    s = NOISE_MULTIPLE["ipw"] * noise_sd
    level = BASELINE_SD * s * _normals(rng, (n_cells,), _factor(m, BASELINE_CORR))
    x = rng.standard_normal((n_cells, n, len(IPW_COVARIATES)))
    strength = _strength(rng, n_cells)
    p = 1.0 / (1.0 + np.exp(-strength[:, None] * (x @ IPW_PROPENSITY)))
    opted = rng.random((n_cells, n)) < p
    signs = np.where(np.arange(m) % 2 == 0, 1.0, -1.0)
    coef = s * np.vstack([np.full(m, IPW_COVARIATE_EFFECT[0]), IPW_COVARIATE_EFFECT[1] * signs])
    noise = _normals(rng, (n_cells, n), _factor(m, noise_corr))
    y = level[:, None, :] + x @ coef + opted[..., None] * effect[:, None, :] + s * noise
    columns = {
        OPTED_IN: opted.reshape(-1).astype(np.int64),
        **{name: x[:, :, j].reshape(-1) for j, name in enumerate(IPW_COVARIATES)},
        "_metrics": y.reshape(-1, m),
    }
    return _frame(keys, np.repeat(np.arange(n_cells), n), columns, metrics)


def rdd_rows(
    keys: pd.DataFrame,
    effect: np.ndarray,
    metrics: Sequence[str],
    rng: np.random.Generator,
    *,
    noise_sd: float,
    noise_corr: float,
) -> pd.DataFrame:
    """A threshold rule per cell: columns of ``keys``, score, metrics (treated: score >= 0).

    score ~ U(−1, 1); Y = b_c + 2 s k_c · score + 1{score >= 0} · effect_c + s ε,
    with k_c the cell's strength of confounding, b_c ~ N(0, (3 s)² C_b) per
    cell, ε with the noise correlation and s the unit noise sd.

    Parameters
    ----------
    keys, effect, metrics, rng, noise_sd, noise_corr
        As :func:`did_panel`.

    Returns
    -------
    pandas.DataFrame
    """
    effect = _check(keys, effect, metrics)
    n_cells, m = effect.shape
    n = RDD_UNITS
    s = NOISE_MULTIPLE["rdd"] * noise_sd
    level = BASELINE_SD * s * _normals(rng, (n_cells,), _factor(m, BASELINE_CORR))
    score = rng.uniform(-1.0, 1.0, size=(n_cells, n))
    slope = RDD_SLOPE * s * _strength(rng, n_cells)
    noise = _normals(rng, (n_cells, n), _factor(m, noise_corr))
    above = (score >= 0.0)[..., None]
    y = level[:, None, :] + slope[:, None, None] * score[..., None] + above * effect[:, None, :]
    y = y + s * noise
    columns = {SCORE: score.reshape(-1), "_metrics": y.reshape(-1, m)}
    return _frame(keys, np.repeat(np.arange(n_cells), n), columns, metrics)


def synthetic_panel(
    keys: pd.DataFrame,
    effect: np.ndarray,
    metrics: Sequence[str],
    rng: np.random.Generator,
    *,
    noise_sd: float,
    noise_corr: float,
) -> pd.DataFrame:
    """A global launch per cell: columns of ``keys``, unit, period, treated, metrics.

    Unit 0 is treated from period :data:`SC_PRE` on; units 1..20 are donors.
    Y[u, t] = a_u + Σ_k λ_uk F_c[t, k] + s ε_ut (+ effect_c for unit 0 from the
    launch on), s the unit noise sd, ε with the noise correlation. Donors come in
    5 kinds: a kind's baseline ~ N(0, (3 s)² C_b) and loadings ~ N(0, I₂), each
    donor its kind's plus a jitter (sd 0.15 s, correlation C_b; 0.15 I₂);
    factors F_c[t, k] ~ N(0, (2 s)²) per metric. The treated unit's a and λ are w-weighted means of
    four donors drawn from the ten ranked highest by k_c a_u0 / (3 s) + 0.5 z_u
    (k_c the cell's strength of confounding), w ~ Dirichlet(1, 1, 1, 1).

    Parameters
    ----------
    keys, effect, metrics, rng, noise_sd, noise_corr
        As :func:`did_panel`.

    Returns
    -------
    pandas.DataFrame
    """
    effect = _check(keys, effect, metrics)
    n_cells, m = effect.shape
    j, t = SC_DONORS, SC_PRE + SC_POST
    s = NOISE_MULTIPLE["synthetic_control"] * noise_sd
    kind = np.arange(j) % SC_KINDS
    base = BASELINE_SD * s * _normals(rng, (n_cells, SC_KINDS), _factor(m, BASELINE_CORR))
    base = base[:, kind] + SC_JITTER * s * _normals(rng, (n_cells, j), _factor(m, BASELINE_CORR))
    load = rng.standard_normal((n_cells, SC_KINDS, SC_FACTORS))
    load = load[:, kind] + SC_JITTER * rng.standard_normal((n_cells, j, SC_FACTORS))
    factors = SC_FACTOR_SD * s * rng.standard_normal((n_cells, t, SC_FACTORS, m))
    pull = _strength(rng, n_cells)[:, None] * base[:, :, 0] / (BASELINE_SD * s)
    top = np.argsort(-(pull + 0.5 * rng.standard_normal((n_cells, j))), axis=1)[:, : j // 2]
    pick = np.argsort(rng.random((n_cells, j // 2)), axis=1)[:, :SC_PARENTS]
    parents = np.take_along_axis(top, pick, axis=1)
    w = rng.dirichlet(np.ones(SC_PARENTS), size=n_cells)

    def mix(values: np.ndarray) -> np.ndarray:
        chosen = np.take_along_axis(values, parents[..., None], axis=1)
        return np.concatenate([np.einsum("cp,cpk->ck", w, chosen)[:, None], values], axis=1)

    base, load = mix(base), mix(load)
    noise = _normals(rng, (n_cells, j + 1, t), _factor(m, noise_corr))
    y = base[:, :, None, :] + np.einsum("cuk,ctkm->cutm", load, factors) + s * noise
    y[:, 0, SC_PRE:, :] += effect[:, None, :]
    cell = np.repeat(np.arange(n_cells), (j + 1) * t)
    unit = np.tile(np.repeat(np.arange(j + 1), t), n_cells)
    columns = {
        UNIT: unit,
        PERIOD: np.tile(np.arange(t), n_cells * (j + 1)),
        TREATED: unit == 0,
        "_metrics": y.reshape(-1, m),
    }
    return _frame(keys, cell, columns, metrics)

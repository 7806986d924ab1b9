"""The global-launch world: one market per launch goes live, the others are its donors.

Each launch (experiment) e has ``n_markets`` markets observed for
``pre_periods + post_periods`` periods; one market, drawn at random (so it is
exchangeable with the donors), launches at period ``pre_periods``. Per
(segment) cell c, market u, period t and metric m, the untreated value is

    Y0[e,c,u,t,m] = base[c,m] + sigma[c,m] (market_sd · L[e,u,t,m] + common_sd · D[e,t,m])
                    + eps[e,c,u,t,m]

- ``base`` and ``sigma``: the metric's control mean and user-level sd in the
  cell, and ``eps`` ~ N(0, Sigma_c / n_c) the sampling error of a mean over the
  cell's n_c users with the users' joint covariance Sigma_c (all three from a
  fixed reference draw of the streaming scenario, :func:`reference`, so the
  metrics co-move as users' metrics do there);
- a factor model: L[e,u,t,m] = Σ_k lambda[e,u,k] f[e,t,k] B[e,k,m] / sqrt(K + 1)
  over a constant level (f = 1) and ``n_factors`` AR(1) paths of persistence
  ``factor_persistence`` (stationary sd 1); market loadings lambda ~ N(0, 1);
  metric loadings B correlated ``metric_corr`` between metrics in their good
  directions. Markets differ by their loadings, so a convex mix of donors can
  track the launched market; shared by a market's cells;
- D: period shocks common to all markets of the launch (they cancel in a
  synthetic control).

The launched market's values from the launch on are Y0 + r_k tau[e,c,m], with
r_k = min(1, (k + 1) / ramp_periods) in post period k and tau the streaming
scenario's population effect of the cell given the launch's (exp_tau,
exp_bias) (:class:`~proxyscope.simulate.response.CellResponse`, user-weighted
by ``mix`` over the fine cells a coarse cell holds; rebuffer_rate's raw
effect is the negated good-direction one). Effects are exactly additive, so
the truth of a cell is exact: ``cell_effect[e, c, m]`` = mean over the post
periods of r_k tau[e,c,m], in the metrics' good directions (rebuffer_rate
negated), long_retained on the probability scale, as ``simulate.workspace``
reports it.

Random stream (one generator, ``seed``): exp_tau, exp_bias, the launched
markets, then per launch: loadings lambda, factor paths, metric loadings B,
common shocks, the sampling errors.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from proxyscope import dims
from proxyscope.errors import ParameterError
from proxyscope.simulate import generate, population
from proxyscope.simulate import scenario as sc
from proxyscope.simulate.config import StreamingConfig
from proxyscope.simulate.launch_config import LaunchConfig
from proxyscope.simulate.mix import SegmentMix
from proxyscope.simulate.options import resolve_config

MARKET = "market"
PERIOD = "week"
LAUNCHED = "launched"
LAUNCH_PERIOD = "launch_week"
#: Users and seed of the reference draw of the streaming scenario.
_REFERENCE_USERS = 240_000
_REFERENCE_SEED = 20_240
_SIGN = np.array([-1.0 if m in sc.LOWER_IS_BETTER else 1.0 for m in sc.METRICS])


class LaunchWorld:
    """A simulated history of global launches with donor markets and exact truth.

    Built by :func:`launch`; not meant to be constructed directly.

    Attributes
    ----------
    config : LaunchConfig
    panel : pandas.DataFrame
        One row per launch × cell × market × week: exp_id, the segment
        columns, market, week, launched (the launch market's rows), launch_week
        and the five metrics (raw directions).
    counterfactual : pandas.DataFrame
        The launched markets' rows of ``panel`` with their untreated values Y0
        (what the synthetic control estimates), every week.
    markets : pandas.DataFrame
        Per (exp_id, market): launched and the loadings ``lambda_<k>``.
    experiments : pandas.DataFrame
        Per launch: exp_tau, exp_bias, launched_market.
    truth : xarray.Dataset
        ``cell_effect[experiment, <segments...>, metric]``: the exact mean
        post-launch effect of the launched market (good directions);
        ``full_effect`` the same before the ramp; ``exp_tau``, ``exp_bias``.
    """

    def __init__(
        self,
        *,
        config: LaunchConfig,
        panel: pd.DataFrame,
        counterfactual: pd.DataFrame,
        markets: pd.DataFrame,
        experiments: pd.DataFrame,
        truth: xr.Dataset,
    ) -> None:
        self.config = config
        self.panel = panel
        self.counterfactual = counterfactual
        self.markets = markets
        self.experiments = experiments
        self.truth = truth

    def column_roles(self) -> dict[str, Any]:
        """Arguments of :func:`proxyscope.data.synthetic_control.synthetic_control` (new dict)."""
        roles = sc.column_roles()
        del roles["treatment"]
        return {
            **roles,
            "segments": list(self.config.segments),
            "unit": MARKET,
            "period": PERIOD,
            "treated": LAUNCHED,
            "treatment_start": LAUNCH_PERIOD,
        }

    def __repr__(self) -> str:
        c = self.config
        return (
            f"<LaunchWorld: {c.n_experiments} launches x {c.n_markets} markets x "
            f"{c.pre_periods}+{c.post_periods} weeks, seed={c.seed}>"
        )


@functools.lru_cache(maxsize=1)
def reference() -> tuple[np.ndarray, np.ndarray]:
    """Per fine cell (24): the control mean (24, 5) and user covariance (24, 5, 5) of Y(0).

    From one fixed draw of the streaming scenario (uniform over cells, no
    baseline shift), so they do not depend on a world's seed.
    """
    uniform = SegmentMix.from_joint(dict.fromkeys(sc.cell_labels(), 1.0 / sc.N_CELLS))
    stream = StreamingConfig(
        n_users=_REFERENCE_USERS,
        n_experiments=1,
        seed=_REFERENCE_SEED,
        mix=uniform,
        exp_bias_sd=0.0,
    )
    draws = generate.draw(stream)
    y0 = np.column_stack([draws.potential_outcomes[f"{m}_0"].to_numpy() for m in sc.METRICS])
    mean = np.empty((sc.N_CELLS, len(sc.METRICS)))
    cov = np.empty((sc.N_CELLS, len(sc.METRICS), len(sc.METRICS)))
    for s in range(sc.N_CELLS):
        rows = y0[draws.cell == s]
        mean[s], cov[s] = rows.mean(axis=0), np.cov(rows, rowvar=False)
    return mean, cov


def _coarse_cells(config: LaunchConfig) -> tuple[np.ndarray, list[tuple[str, ...]]]:
    """Coarse cell of every fine cell, and the coarse cells' level tuples."""
    codes = {sc.REGION: sc.CELL_REGION, sc.DEVICE: sc.CELL_DEVICE, sc.TENURE: sc.CELL_TENURE}
    sizes = [len(sc.LEVELS[s]) for s in config.segments]
    index = np.zeros(sc.N_CELLS, dtype=np.int64)
    for s, size in zip(config.segments, sizes, strict=True):
        index = index * size + codes[s]
    labels = [
        tuple(sc.LEVELS[s][i] for s, i in zip(config.segments, idx, strict=True))
        for idx in np.ndindex(*sizes)
    ]
    return index, labels


def build(config: LaunchConfig) -> LaunchWorld:
    """Draw a launch world from ``config`` (see the module docstring)."""
    rng = np.random.default_rng(config.seed)
    n_exp, n_mk = config.n_experiments, config.n_markets
    t0, n_t = config.pre_periods, config.pre_periods + config.post_periods
    k_all, n_m = config.n_factors + 1, len(sc.METRICS)
    exp_tau = rng.normal(0.0, config.exp_tau_sd, size=n_exp)
    exp_bias = rng.normal(0.0, config.exp_bias_sd, size=n_exp)
    launched = rng.integers(0, n_mk, size=n_exp)

    # Cells: mix-weighted means, covariances (within plus between fine cells), effects.
    fine_mean, fine_cov = reference()
    coarse, labels = _coarse_cells(config)
    n_c = len(labels)
    pi = config.mix.cell_probabilities()
    share = np.bincount(coarse, weights=pi, minlength=n_c)
    if (share <= 0).any():
        empty = labels[int(np.flatnonzero(share <= 0)[0])]
        raise ParameterError(
            f"LaunchConfig.mix gives the cell {empty} no users; drop a segment column or "
            "change the mix."
        )
    within = pi / share[coarse]
    base = np.stack([within[coarse == c] @ fine_mean[coarse == c] for c in range(n_c)])
    dev = fine_mean - base[coarse]
    cov = np.stack(
        [
            np.einsum("s,sij->ij", within[coarse == c], fine_cov[coarse == c])
            + np.einsum("s,si,sj->ij", within[coarse == c], dev[coarse == c], dev[coarse == c])
            for c in range(n_c)
        ]
    )
    sigma = np.sqrt(np.einsum("cii->ci", cov))
    users = config.users_per_period * share
    chol = np.linalg.cholesky(cov / users[:, None, None])
    stream = StreamingConfig(
        n_users=1,
        n_experiments=n_exp,
        seed=config.seed,
        mix=config.mix,
        cohort=config.cohort,
        exp_tau_sd=config.exp_tau_sd,
        exp_bias_sd=config.exp_bias_sd,
    )
    good = population.Mechanism.of(stream).cell_effects(exp_tau, exp_bias)  # (E, 24, M)
    full = np.stack(
        [np.einsum("s,esm->em", within[coarse == c], good[:, coarse == c]) for c in range(n_c)],
        axis=1,
    )  # (E, C, M), good directions
    ramp = np.minimum(1.0, (np.arange(config.post_periods) + 1.0) / config.ramp_periods)
    lift = np.zeros(n_t)
    lift[t0:] = ramp

    corr = np.full((n_m, n_m), config.metric_corr)
    np.fill_diagonal(corr, 1.0)
    mix_chol = np.linalg.cholesky(corr * np.outer(_SIGN, _SIGN) + 1e-12 * np.eye(n_m))
    values = np.empty((n_exp, n_c, n_mk, n_t, n_m))
    untreated = np.empty((n_exp, n_c, n_t, n_m))
    loadings = np.empty((n_exp, n_mk, k_all))
    for e in range(n_exp):
        lam = rng.standard_normal((n_mk, k_all))
        f = np.ones((n_t, k_all))
        rho = config.factor_persistence
        for k in range(1, k_all):
            f[0, k] = rng.standard_normal()
            for t in range(1, n_t):
                f[t, k] = rho * f[t - 1, k] + np.sqrt(1.0 - rho**2) * rng.standard_normal()
        b = rng.standard_normal((k_all, n_m)) @ mix_chol.T
        common = rng.standard_normal((n_t, n_m)) @ mix_chol.T
        latent = np.einsum("uk,tk,km->utm", lam, f, b) / np.sqrt(k_all)
        shift = config.market_sd * latent[None] + config.common_sd * common[None, None]
        noise = np.einsum("cij,cutj->cuti", chol, rng.standard_normal((n_c, n_mk, n_t, n_m)))
        values[e] = base[:, None, None] + sigma[:, None, None] * shift + noise
        untreated[e] = values[e, :, launched[e]]
        values[e, :, launched[e]] += lift[None, :, None] * (full[e] * _SIGN)[:, None, :]
        loadings[e] = lam

    grid = pd.MultiIndex.from_product(
        [range(n_exp), range(n_c), range(n_mk), range(n_t)],
        names=["exp_id", "_cell", MARKET, PERIOD],
    ).to_frame(index=False)
    panel: dict[str, Any] = {"exp_id": grid["exp_id"].to_numpy()}
    cell_codes = grid["_cell"].to_numpy()
    for i, s in enumerate(config.segments):
        levels = [lab[i] for lab in labels]
        panel[s] = pd.Categorical(
            np.asarray(levels, dtype=object)[cell_codes], categories=list(sc.LEVELS[s])
        )
    panel[MARKET] = grid[MARKET].to_numpy()
    panel[PERIOD] = grid[PERIOD].to_numpy()
    panel[LAUNCHED] = panel[MARKET] == launched[panel["exp_id"]]
    panel[LAUNCH_PERIOD] = np.full(len(grid), t0)
    flat = values.reshape(-1, n_m)
    for j, m in enumerate(sc.METRICS):
        panel[m] = flat[:, j]
    frame = pd.DataFrame(panel)
    launch_rows = frame[LAUNCHED].to_numpy()
    counterfactual = frame.loc[launch_rows, ["exp_id", *config.segments, MARKET, PERIOD]]
    counterfactual = counterfactual.reset_index(drop=True)
    for j, m in enumerate(sc.METRICS):
        counterfactual[m] = untreated[..., j].reshape(-1)

    effect = full * ramp.mean()
    cell_dims = [dims.EXPERIMENT, *config.segments]
    shape = (n_exp, *[len(sc.LEVELS[s]) for s in config.segments], n_m)
    coords: dict[str, Any] = {
        dims.EXPERIMENT: np.arange(n_exp),
        **{s: list(sc.LEVELS[s]) for s in config.segments},
        dims.METRIC: list(sc.METRICS),
    }
    truth = xr.Dataset(
        {
            "cell_effect": ((*cell_dims, dims.METRIC), effect.reshape(shape)),
            "full_effect": ((*cell_dims, dims.METRIC), full.reshape(shape)),
            "exp_tau": (dims.EXPERIMENT, exp_tau),
            "exp_bias": (dims.EXPERIMENT, exp_bias),
        },
        coords=coords,
    )
    truth["cell_effect"].attrs["description"] = (
        "mean over the post-launch periods of the launched market's effect, good directions "
        "(rebuffer_rate negated), long_retained on the probability scale"
    )
    truth["full_effect"].attrs["description"] = "the effect once fully ramped up"
    truth.attrs["outcome"] = sc.OUTCOME
    truth.attrs["lower_is_better"] = ",".join(sorted(sc.LOWER_IS_BETTER))
    markets = pd.DataFrame(
        {
            "exp_id": np.repeat(np.arange(n_exp), n_mk),
            MARKET: np.tile(np.arange(n_mk), n_exp),
            LAUNCHED: (np.arange(n_mk)[None, :] == launched[:, None]).ravel(),
            **{f"lambda_{k}": loadings[:, :, k].ravel() for k in range(k_all)},
        }
    )
    experiments = pd.DataFrame(
        {"exp_tau": exp_tau, "exp_bias": exp_bias, "launched_market": launched},
        index=pd.RangeIndex(n_exp, name=dims.EXPERIMENT),
    )
    return LaunchWorld(
        config=config,
        panel=frame,
        counterfactual=counterfactual,
        markets=markets,
        experiments=experiments,
        truth=truth,
    )


def launch(config: LaunchConfig | None = None, **options: Any) -> LaunchWorld:
    """Simulate global launches read against donor markets, with exact truth.

    Parameters
    ----------
    config : LaunchConfig, optional
        All settings at once; keyword options replace its fields.
    **options
        Fields of :class:`~proxyscope.simulate.launch_config.LaunchConfig`.

    Returns
    -------
    LaunchWorld

    Raises
    ------
    ParameterError
        An unknown option, or any invalid setting (naming the field and the value).

    Examples
    --------
    >>> from proxyscope.simulate.launch_world import launch
    >>> world = launch(n_experiments=3, n_markets=8, seed=1)
    >>> sorted(world.column_roles())[:3]
    ['directions', 'experiment', 'outcome']
    """
    return build(
        resolve_config(
            config, options, LaunchConfig, function="launch", example="launch(n_markets=25)"
        )
    )

"""Draw the streaming world: users, both potential outcomes of every metric, observed columns.

The random stream is the seed generator's, draw for draw: exp_id, region,
device, tenure, treatment, exp_tau, exp_bias, the satisfaction and engagement
noise, the long-term Bernoulli, then the watch, starts, ctr and rebuffer
noise. Every per-user value is computed with the seed's floating-point
operations in the seed's order, so with the default settings the observed
columns equal the seed's bit for bit. Per-(experiment, cell) constants are
computed once on small tables and gathered, which is what keeps it fast.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from proxyscope.errors import ParameterError, suggestion
from proxyscope.simulate import model_time as mt
from proxyscope.simulate import scenario as sc
from proxyscope.simulate._bernoulli import bernoulli_pair, binomial_uniforms
from proxyscope.simulate.config import StreamingConfig
from proxyscope.simulate.mix import SegmentMix

#: Stream key of the auxiliary generator (uniforms that numpy's stream never provides).
_AUX_KEY = 0x5EED_A11
#: Stream key of the time generator (start dates, then the watch-only pushes).
_TIME_KEY = 0x71_3E


@dataclass
class Draws:
    """Everything drawn for one world (internal)."""

    users: pd.DataFrame
    potential_outcomes: pd.DataFrame
    exp_tau: np.ndarray
    exp_bias: np.ndarray
    experiment: np.ndarray  # int64 per user
    cell: np.ndarray  # segment cell per user (int8)
    timeline: mt.Timeline | None = None  # with config.periods
    watch_push: np.ndarray | None = None  # per experiment, exp_tau units (0 when static)


def time_draws(config: StreamingConfig) -> tuple[mt.Timeline, np.ndarray] | None:
    """The world's timeline and each experiment's watch-only push gamma_p g_e (None without
    periods). Drawn from a stream of their own, so the users' draws never move."""
    if config.periods is None:
        return None
    rng = np.random.default_rng([config.seed, _TIME_KEY])
    timeline = mt.Timeline.draw(
        rng, pd.Timestamp(config.start), config.period, config.periods, config.n_experiments
    )
    g = rng.standard_normal(config.n_experiments)
    gamma = config.watch_gammas()
    return timeline, gamma[timeline.experiment_period] * g + 0.0  # + 0.0: no -0.0


def _sigmoid_inplace(x: np.ndarray) -> np.ndarray:
    """``1.0 / (1.0 + np.exp(-x))`` with the seed's operations, reusing ``x``'s memory."""
    np.negative(x, out=x)
    np.exp(x, out=x)
    x += 1.0
    np.divide(1.0, x, out=x)
    return x


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return _sigmoid_inplace(x.copy())


def _segments(
    rng: np.random.Generator, mix: SegmentMix, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Level codes of region, device, tenure (int8)."""
    if mix.is_joint:
        cell = rng.choice(sc.N_CELLS, size=n, p=mix.cell_probabilities())
        return (
            sc.CELL_REGION[cell].astype(np.int8),
            sc.CELL_DEVICE[cell].astype(np.int8),
            sc.CELL_TENURE[cell].astype(np.int8),
        )
    # One rng.choice per column, in the seed's order; same uniforms, same indices.
    codes = [
        rng.choice(len(sc.LEVELS[col]), size=n, p=mix.marginal(col)).astype(np.int8)
        for col in sc.SEGMENT_COLUMNS
    ]
    return codes[0], codes[1], codes[2]


def draw(config: StreamingConfig) -> Draws:
    """Draw a world's users and potential outcomes (see the module docstring)."""
    rng = np.random.default_rng(config.seed)
    n, n_exp = config.n_users, config.n_experiments
    cohort = config.cohort

    exp_id = rng.integers(0, n_exp, size=n)
    region, device, tenure = _segments(rng, config.mix, n)
    treatment = rng.integers(0, 2, size=n)
    exp_tau = rng.normal(0.0, config.exp_tau_sd, size=n_exp)
    exp_bias = rng.normal(0.0, config.exp_bias_sd, size=n_exp)

    seg = sc.cell_index(region, device, tenure).astype(np.int8)
    # Combined (experiment, cell) index for the per-(experiment, cell) tables.
    ec = exp_id * sc.N_CELLS
    ec += seg
    treated = treatment.astype(bool)
    fc = cohort.cells()

    # Latent satisfaction and engagement: ((N + region_w) + device_w) + tenure_w.
    sat = rng.normal(0.0, 1.0, size=n)
    sat += sc.REGION_W[region]
    sat += sc.DEVICE_W[device]
    sat += sc.TENURE_W[tenure]
    eng = rng.normal(0.0, 1.0, size=n)
    eng += (0.5 * sc.DEVICE_W)[device]
    eng -= (0.2 * sc.TENURE_W)[tenure]

    # Long-term logit and both probabilities.
    logit0 = sc.LOGIT_INTERCEPT + sc.LOGIT_SAT * sat
    logit0 += sc.LOGIT_ENG * eng
    logit0 += exp_bias[exp_id]
    tau_table = (exp_tau[:, None] + sc.SEG_TAU[None, :]) + (cohort.long_penalty * fc)[None, :]
    logit1 = logit0 + tau_table.reshape(-1)[ec]
    p0 = _sigmoid_inplace(logit0)
    p1 = _sigmoid_inplace(logit1)
    p_obs = np.where(treated, p1, p0)
    aux = np.random.default_rng([config.seed, _AUX_KEY])
    u = binomial_uniforms(rng, p_obs, aux)
    y0_long, y1_long = bernoulli_pair(u, p_obs, p0, p1)
    del u, p_obs

    # early_watch_min = clip(((A + 8 T (tau + .3 seg)) + 6 T fc) + 5 noise, 0).
    noise = rng.normal(0.0, 1.0, size=n)
    noise *= sc.WATCH_NOISE
    base = 25 + 10 * eng
    base += 6 * sat
    # With a drifting watch proxy its response sees exp_tau plus the experiment's push.
    timed = time_draws(config)
    watch_tau = exp_tau + timed[1] if timed is not None and config.watch_drift else exp_tau
    watch_table = sc.WATCH_TAU * (watch_tau[:, None] + sc.WATCH_SEG * sc.SEG_TAU[None, :])
    watch1 = base + watch_table.reshape(-1)[ec]
    if cohort.watch_boost:
        watch1 += (cohort.watch_boost * fc)[seg]
    watch1 += noise
    base += noise
    watch0 = np.maximum(base, 0.0, out=base)
    np.maximum(watch1, 0.0, out=watch1)

    # early_starts = clip(1.8 + .7 s(eng) + .2 s(sat) + .4 T (tau + .2 seg) + .6 T fc + .3 N, 0).
    base = 1.8 + 0.7 * _sigmoid(eng)
    base += 0.2 * _sigmoid(sat)
    starts_table = sc.STARTS_TAU * (exp_tau[:, None] + sc.STARTS_SEG * sc.SEG_TAU[None, :])
    starts1 = base + starts_table.reshape(-1)[ec]
    if cohort.starts_boost:
        starts1 += (cohort.starts_boost * fc)[seg]
    noise = rng.normal(0.0, 1.0, size=n)
    noise *= sc.STARTS_NOISE
    starts1 += noise
    base += noise
    starts0 = np.maximum(base, 0.0, out=base)
    np.maximum(starts1, 0.0, out=starts1)
    del ec

    # early_ctr = clip((sigmoid(.3 eng - .35 sat + .1 N) + .06 T) + .04 Mobile T, 0, 1).
    x = 0.3 * eng
    x -= 0.35 * sat
    noise = rng.normal(0.0, 1.0, size=n)
    noise *= sc.CTR_NOISE
    x += noise
    ctr0 = _sigmoid_inplace(x)
    ctr1 = ctr0 + sc.CTR_LIFT
    ctr1 += sc.CTR_LIFT_MOBILE[seg]
    np.clip(ctr1, 0.0, 1.0, out=ctr1)
    del eng

    # rebuffer_rate = clip(sigmoid(-.2 sat + .25 IN + .15 Mobile + .1 N) - .03 T TV, 0, 1).
    x = -0.2 * sat
    x += sc.REBUFFER_IN[seg]
    x += sc.REBUFFER_MOBILE[seg]
    noise = rng.normal(0.0, 1.0, size=n)
    noise *= sc.REBUFFER_NOISE
    x += noise
    del noise, sat
    rebuffer0 = _sigmoid_inplace(x)
    rebuffer1 = rebuffer0 - sc.REBUFFER_DROP[seg]
    np.clip(rebuffer1, 0.0, 1.0, out=rebuffer1)

    po: dict[str, np.ndarray] = {
        "long_retained_0": y0_long,
        "long_retained_1": y1_long,
        "early_watch_min_0": watch0,
        "early_watch_min_1": watch1,
        "early_starts_0": starts0,
        "early_starts_1": starts1,
        "early_ctr_0": ctr0,
        "early_ctr_1": ctr1,
        "rebuffer_rate_0": rebuffer0,
        "rebuffer_rate_1": rebuffer1,
        "p_long_0": p0,
        "p_long_1": p1,
    }
    member = fc[seg].astype(np.int64)
    users: dict[str, Any] = {
        "exp_id": exp_id,
        sc.REGION: sc.categorical(region, sc.REGION),
        sc.DEVICE: sc.categorical(device, sc.DEVICE),
        sc.TENURE: sc.categorical(tenure, sc.TENURE),
        "treatment": treatment,
    }
    for metric in (*sc.PROXIES, sc.OUTCOME):
        users[metric] = np.where(treated, po[f"{metric}_1"], po[f"{metric}_0"])
    users["failure_cohort"] = member
    if timed is not None:
        users[mt.START_COLUMN] = timed[0].starts.to_numpy()[exp_id]
    return Draws(
        users=pd.DataFrame(users, copy=False),
        potential_outcomes=pd.DataFrame(po, copy=False),
        exp_tau=exp_tau,
        exp_bias=exp_bias,
        experiment=exp_id,
        cell=seg,
        timeline=None if timed is None else timed[0],
        watch_push=None if timed is None else timed[1],
    )


_OPTIONS = tuple(f.name for f in dataclasses.fields(StreamingConfig))


def make_config(config: StreamingConfig | None, options: dict[str, Any]) -> StreamingConfig:
    """``config`` (or the defaults) with ``options`` replacing fields; fails closed."""
    if config is not None and not isinstance(config, StreamingConfig):
        raise ParameterError(
            f"config must be a StreamingConfig; got {type(config).__name__} {config!r}. "
            "Pass settings by keyword, e.g. streaming(n_users=250_000)."
        )
    for key in options:
        if key not in _OPTIONS:
            raise ParameterError(
                f"Unknown option {key!r} of streaming; expected one of {list(_OPTIONS)}."
                + suggestion(key, _OPTIONS)
            )
    base = config if config is not None else StreamingConfig()
    given = {k: v for k, v in options.items() if v is not None}
    return dataclasses.replace(base, **given) if given else base


def child_seed(seed: int, key: int = 1) -> int:
    """A deterministic seed derived from ``seed``, for worlds that need fresh draws."""
    return int(np.random.SeedSequence([seed, _AUX_KEY, key]).generate_state(1, np.uint64)[0] >> 1)

"""The naive baseline proxyscope is judged against (the seed's method).

Re-implemented from its description, on the same CellEffects:

- effects are differences in means (per experiment, and per experiment x
  segment cell);
- reliability of a proxy = 0.6 (corr + 1) / 2 + 0.2 directional accuracy
  + 0.2 (1 - fragility rate), where corr is the correlation across
  experiments of the noisy long-term and proxy effect estimates, directional
  accuracy the share of experiments whose estimates agree in sign, and the
  fragility rate the share of (experiment, segment) cells whose proxy sign
  differs from the experiment's long-term sign;
- per-segment fragility is sign counting: the share of experiments whose
  segment-level proxy estimate and long-term estimate have opposite signs
  (only cells with at least ``min_count`` users, as the seed filters).

No uncertainty, no pooling, no correction for sampling noise: the comparison
shows what those cost.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from proxyscope import dims
from proxyscope.data.cells import CellEffects


def experiment_effects(effects: CellEffects) -> pd.DataFrame:
    """Experiment-level difference-in-means estimates (user-weighted cell average).

    The cells of an experiment partition its users, so the user-weighted
    average of the cell differences approximates the experiment's difference
    in means (exact when arms are balanced within cells).
    """
    frame = effects.to_frame()
    users = frame["n_treat"] + frame["n_control"]
    cols = [f"effect_{m}" for m in effects.metrics]
    weighted = frame[cols].mul(users, axis=0)
    sums = weighted.groupby(frame[dims.EXPERIMENT]).sum()
    totals = users.groupby(frame[dims.EXPERIMENT]).sum()
    out = sums.div(totals, axis=0)
    out.columns = list(effects.metrics)
    return out


def reliability_scores(effects: CellEffects) -> pd.DataFrame:
    """The seed's proxy ranking: one row per proxy, best reliability first."""
    exp = experiment_effects(effects)
    frame = effects.to_frame()
    y = exp[effects.outcome]
    long_sign = np.sign(frame[dims.EXPERIMENT].map(y))
    rows = []
    for proxy in effects.proxies:
        x = exp[proxy]
        corr = float(np.corrcoef(x, y)[0, 1]) if x.std() > 1e-12 and y.std() > 1e-12 else 0.0
        direction = float(np.mean(np.sign(x) == np.sign(y)))
        cell_flip = float(np.mean(np.sign(frame[f"effect_{proxy}"]) != long_sign))
        score = 0.6 * (corr + 1) / 2 + 0.2 * direction + 0.2 * (1 - cell_flip)
        rows.append(
            {
                "proxy": proxy,
                "reliability": score,
                "effect_corr": corr,
                "directional_accuracy": direction,
                "fragility_rate": cell_flip,
            }
        )
    return pd.DataFrame(rows).sort_values("reliability", ascending=False).reset_index(drop=True)


def sign_counting(effects: CellEffects, min_count: int = 0) -> pd.DataFrame:
    """Per segment and proxy: share of experiments whose estimates disagree in sign.

    ``min_count``: only cells with at least that many users (both arms).
    Columns: the segment columns, ``segment``, ``proxy``, ``flip_rate``,
    ``n_cells``.
    """
    frame = effects.to_frame()
    frame = frame[frame["n_treat"] + frame["n_control"] >= min_count]
    rows = []
    for proxy in effects.proxies:
        flip = np.sign(frame[f"effect_{proxy}"]) != np.sign(frame[f"effect_{effects.outcome}"])
        grouped = flip.groupby(frame[dims.SEGMENT_LABEL])
        for label, values in grouped:
            row = {c: frame.loc[values.index[0], c] for c in effects.segments}
            row.update(
                segment=label, proxy=proxy, flip_rate=float(values.mean()), n_cells=int(values.size)
            )
            rows.append(row)
    return pd.DataFrame(rows)

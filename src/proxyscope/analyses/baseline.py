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
  segment-level proxy estimate has the opposite sign of the experiment's
  overall long-term estimate (only cells with at least ``min_count`` users;
  the seed's run script keeps cells with >= 400).

No uncertainty, no pooling, no correction for sampling noise: the comparison
shows what those cost.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from proxyscope import dims
from proxyscope.analyses.arguments import check_choice, check_int
from proxyscope.analyses.backtest import mix_effects
from proxyscope.data.cells import CellEffects
from proxyscope.errors import DataTypeError, DataWarning


def _check_effects(effects: object, owner: str) -> None:
    if not isinstance(effects, CellEffects):
        raise DataTypeError(
            f"The 'effects' parameter of {owner} must be CellEffects (from ps.summarize or "
            f"ps.from_arm_summaries); got {type(effects).__name__}."
        )


def experiment_effects(effects: CellEffects) -> pd.DataFrame:
    """Experiment-level difference-in-means estimates (user-weighted cell average).

    The cells of an experiment partition its users, so the user-weighted
    average of the cell differences approximates the experiment's difference
    in means (exact when arms are balanced within cells). The same numbers as
    :func:`proxyscope.analyses.backtest.mix_effects`, as a table: one row per
    experiment (sorted by id), one column per metric.
    """
    _check_effects(effects, "experiment_effects")
    mixed = mix_effects(effects)
    index = pd.Index(mixed.experiments, name=dims.EXPERIMENT)
    return pd.DataFrame(mixed.effect, index=index, columns=list(effects.metrics)).sort_index()


def reliability_scores(effects: CellEffects) -> pd.DataFrame:
    """The seed's proxy ranking: one row per proxy, best reliability first."""
    _check_effects(effects, "reliability_scores")
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


#: The seed run script's user filter for its fragile-segment table.
SEED_MIN_COUNT = 400


def sign_counting(
    effects: CellEffects, min_count: int = 0, reference: str = "experiment"
) -> pd.DataFrame:
    """Per segment and proxy: share of experiments whose signs disagree.

    Parameters
    ----------
    effects : CellEffects
    min_count : int
        Only cells with at least that many users (both arms); the seed's run
        script uses :data:`SEED_MIN_COUNT` (400).
    reference : {"experiment", "cell"}
        What the cell's proxy sign is compared with: the sign of the
        experiment's overall long-term effect (the seed's rule) or of the
        cell's own long-term estimate.

    Returns
    -------
    DataFrame
        The segment columns, ``segment``, ``proxy``, ``flip_rate``,
        ``n_cells``; most fragile first. A segment none of whose cells reaches
        ``min_count`` is absent, with a :class:`~proxyscope.errors.DataWarning`
        naming it (the filter hides small segments, however fragile).
    """
    _check_effects(effects, "sign_counting")
    check_choice(reference, ("experiment", "cell"), "reference", "sign_counting")
    min_count = check_int(min_count, "min_count", "sign_counting", low=0)
    frame = effects.to_frame()
    if reference == "experiment":
        overall = experiment_effects(effects)[effects.outcome]
        long_sign = np.sign(frame[dims.EXPERIMENT].map(overall))
    else:
        long_sign = np.sign(frame[f"effect_{effects.outcome}"])
    keep = frame["n_treat"] + frame["n_control"] >= min_count
    hidden = sorted(set(frame[dims.SEGMENT_LABEL]) - set(frame.loc[keep, dims.SEGMENT_LABEL]))
    if hidden:
        shown = ", ".join(hidden[:5]) + (f" and {len(hidden) - 5} more" if len(hidden) > 5 else "")
        warnings.warn(
            f"sign_counting: min_count={min_count} left no cell in {len(hidden)} segment(s), "
            f"which are missing from the table: {shown}.",
            DataWarning,
            stacklevel=2,
        )
    frame, long_sign = frame[keep], long_sign[keep]
    rows = []
    for proxy in effects.proxies:
        flip = np.sign(frame[f"effect_{proxy}"]) != long_sign
        grouped = flip.groupby(frame[dims.SEGMENT_LABEL])
        for label, values in grouped:
            row = {c: frame.loc[values.index[0], c] for c in effects.segments}
            row.update(
                segment=label, proxy=proxy, flip_rate=float(values.mean()), n_cells=int(values.size)
            )
            rows.append(row)
    columns = [*effects.segments, "segment", "proxy", "flip_rate", "n_cells"]
    out = pd.DataFrame(rows, columns=columns)
    return out.sort_values(["proxy", "flip_rate"], ascending=[True, False], ignore_index=True)

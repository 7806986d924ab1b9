"""Analyses' reading of a new experiment's implied effects: sign flips, targets, seeds.

The joint distribution itself (per segment and for a mix of segments) is
:class:`proxyscope.model.segments.SegmentDraws`; this module adds the
probability that the long-term and proxy effects disagree in sign, segment
parameters for combinations the fit never saw, and the reading of a user's
target population.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from proxyscope import dims
from proxyscope.core.bvn import prob_opposite_signs
from proxyscope.core.draws import flat
from proxyscope.errors import ColumnError, DataTypeError, ParameterError
from proxyscope.model.segments import SegmentDraws, fitted_segments, historical_mix

if TYPE_CHECKING:
    from proxyscope.model.fit import ProxyFit


def proxy_flips(moments: Mapping[str, np.ndarray]) -> np.ndarray:
    """P(the long-term effect and each proxy effect have opposite signs), per draw.

    ``moments`` as from :meth:`SegmentDraws.segment_moments` (N, S, K) or
    :meth:`SegmentDraws.mix_moments` (N, K): any leading axes, proxies last.
    """
    return prob_opposite_signs(
        moments["mean_tau"][..., None],
        moments["mean_theta"],
        moments["var_tau"][..., None],
        np.diagonal(moments["cov_theta"], axis1=-2, axis2=-1),
        moments["cov_tau_theta"],
    )


def analysis_seed(fit: ProxyFit, random_seed: int | None) -> int:
    """The seed of an analysis's random draws: ``random_seed``, or the fit's own.

    Defaulting to the seed the fit was sampled with makes every analysis of
    one fit reproducible: asking twice gives the same numbers.
    """
    if random_seed is not None:
        return int(random_seed)
    return int(fit.sampler.get("random_seed", 0))


def segments_for(
    fit: ProxyFit, combos: pd.DataFrame, random_seed: int | None = None
) -> SegmentDraws:
    """Segment parameters for arbitrary combinations of segment-column levels.

    Combinations seen in the data use their posterior draws; unseen ones are
    predicted from the pooled structure: global + main effects + a fresh
    interaction drawn from the posterior interaction scale (additive), global
    + fresh interaction (exchangeable), or the global value (complete). With
    ``pooling="none"`` unseen combinations cannot be predicted. The fresh
    interactions are drawn with :func:`analysis_seed` (the fit's seed unless
    ``random_seed`` is given), so the same call gives the same draws.
    """
    structure = fit.structure
    base = fitted_segments(fit)
    if not structure.columns:
        return base
    codes = structure.level_codes(combos)
    for j, col in enumerate(structure.columns):
        bad = codes[:, j] < 0
        if bad.any():
            unknown = sorted(set(combos.loc[bad, col].astype(str)))
            raise ParameterError(
                f"Segment column {col!r} has level(s) {unknown} that the fit never saw; known "
                f"levels: {list(structure.levels[j])}. A level the model has no data on cannot "
                "be predicted."
            )
    lookup = {tuple(row): i for i, row in enumerate(structure.level_index.tolist())}
    seen = [lookup.get(tuple(row)) for row in codes.tolist()]
    labels = tuple(
        structure.label_of([str(v) for v in combos.iloc[i][list(structure.columns)]])
        for i in range(len(combos))
    )
    n = base.n_draws
    k = base.mu.shape[-1]
    nu = np.empty((n, len(combos)))
    mu = np.empty((n, len(combos), k))
    beta = np.empty((n, len(combos), k))
    sigma2 = np.empty((n, len(combos)))
    rng = np.random.default_rng(analysis_seed(fit, random_seed))
    extrapolated = np.array([i is None for i in seen])
    if extrapolated.any() and fit.pooling == "none":
        missing = [labels[i] for i in np.flatnonzero(extrapolated)]
        raise ParameterError(
            f"Segment combinations {missing[:5]} were not in the data and pooling='none' "
            "cannot predict them; use additive or exchangeable pooling."
        )
    post = fit.posterior
    for row, idx in enumerate(seen):
        if idx is not None:
            nu[:, row] = base.nu[:, idx]
            mu[:, row] = base.mu[:, idx]
            beta[:, row] = base.beta[:, idx]
            sigma2[:, row] = base.sigma2[:, idx]
            continue
        levels = codes[row]
        nu_r = flat(post["nu_global"]).copy()
        mu_r = flat(post["mu_global"]).copy()
        beta_r = flat(post["beta_global"]).copy()
        logs_r = flat(post["log_sigma_global"]).copy()
        if fit.pooling == "additive":
            for j, col in enumerate(structure.columns):
                lev = structure.levels[j][levels[j]]
                nu_r += flat(post[f"nu_main_{col}"].sel({col: lev}))
                mu_r += flat(post[f"mu_main_{col}"].sel({col: lev}))
                beta_r += flat(post[f"beta_main_{col}"].sel({col: lev}))
                logs_r += flat(post[f"log_sigma_main_{col}"].sel({col: lev}))
        if "nu_interaction_sd" in post:
            nu_r += rng.standard_normal(n) * flat(post["nu_interaction_sd"])
            mu_r += rng.standard_normal((n, k)) * flat(post["mu_interaction_sd"])
            beta_r += rng.standard_normal((n, k)) * flat(post["beta_interaction_sd"])
            logs_r += rng.standard_normal(n) * flat(post["log_sigma_interaction_sd"])
        nu[:, row], mu[:, row], beta[:, row] = nu_r, mu_r, beta_r
        sigma2[:, row] = np.exp(2.0 * logs_r)
    return SegmentDraws(
        labels=labels,
        nu=nu,
        mu=mu,
        beta=beta,
        sigma2=sigma2,
        omega_e=base.omega_e,
        omega_c=base.omega_c,
        omega_y=base.omega_y,
        extrapolated=extrapolated,
    )


def resolve_mix(fit: ProxyFit, target: Any) -> tuple[pd.DataFrame, np.ndarray]:
    """A target population as (segment combinations, shares).

    ``target`` may be None (the historical mix), a user-level DataFrame with
    the segment columns (one row per user, or with a ``count``/``n``/
    ``users``/``share`` column), a mapping {segment tuple or label: count or
    share}, or a pandas Series indexed the same way.
    """
    structure = fit.structure
    cols = list(structure.columns)
    if target is None:
        hist = historical_mix(fit)
        combos = structure.frame().drop(columns=[dims.SEGMENT])
        return combos, hist.to_numpy()
    if isinstance(target, pd.DataFrame):
        missing = [c for c in cols if c not in target.columns]
        if missing:
            from proxyscope.errors import suggestion

            raise ColumnError(
                f"The 'target' table lacks segment column(s) {missing}; it must have "
                f"{cols}.{suggestion(missing[0], target.columns)}"
            )
        weight_col = next(
            (c for c in ("share", "count", "n", "users") if c in target.columns), None
        )
        if not cols:
            return pd.DataFrame(index=[0]), np.ones(1)
        keys = target[cols].astype(str)
        if weight_col is None:
            w = np.ones(len(target))
        else:
            w = pd.to_numeric(target[weight_col], errors="coerce").to_numpy(dtype=float)
            if not np.isfinite(w).all() or (w < 0).any():
                raise ParameterError(
                    f"The 'target' column {weight_col!r} must hold finite non-negative numbers."
                )
        grouped = keys.assign(w=w).groupby(cols, as_index=False)["w"].sum()
        combos = pd.DataFrame(grouped[cols]).reset_index(drop=True)
        shares = grouped["w"].to_numpy(dtype=float)
    elif isinstance(target, (Mapping, pd.Series)):
        items = list(target.items())
        rows = []
        for key, value in items:
            parts = _key_parts(key, cols)
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise DataTypeError(
                    f"The 'target' count or share of {key!r} must be a number; got {value!r}."
                ) from None
            rows.append((*parts, number))
        frame = pd.DataFrame(rows, columns=[*cols, "w"])
        if (frame["w"] < 0).any() or not np.isfinite(frame["w"]).all():
            raise ParameterError(
                "The 'target' counts or shares must be finite and non-negative; got "
                f"{frame['w'].tolist()[:10]}."
            )
        if cols:
            frame = pd.DataFrame(frame.groupby(cols, as_index=False)["w"].sum())
        combos = pd.DataFrame(frame[cols]).reset_index(drop=True)
        shares = frame["w"].to_numpy(dtype=float)
    else:
        raise DataTypeError(
            "The 'target' must be a DataFrame with the segment columns, a mapping or Series "
            f"of segment -> count or share, or None; got {type(target).__name__}."
        )
    total = shares.sum()
    if total <= 0:
        raise ParameterError("The 'target' population is empty (all counts or shares are zero).")
    keep = shares > 0
    if cols:
        kept = combos[keep].reset_index(drop=True)
        codes = structure.level_codes(kept)
        for j, col in enumerate(cols):
            unknown = sorted(set(kept.loc[codes[:, j] < 0, col].astype(str)))
            if unknown:
                raise ParameterError(
                    f"The 'target' has level(s) {unknown} of segment column {col!r} that the "
                    f"fit never saw; known levels: {list(structure.levels[j])}. A level the "
                    "model has no data on cannot be predicted."
                )
        return kept, shares[keep] / total
    return combos[keep].reset_index(drop=True), shares[keep] / total


def _key_parts(key: Any, cols: Sequence[str]) -> tuple[str, ...]:
    if not cols and key in (dims.ALL_SEGMENTS, ()):
        return ()  # a fit with no segment columns labels its one segment "all"
    if isinstance(key, str):
        parts = tuple(p.strip() for p in key.split(dims.LABEL_SEP.strip()))
    elif isinstance(key, tuple):
        parts = tuple(str(p) for p in key)
    else:
        parts = (str(key),)
    if len(parts) != len(cols):
        raise ParameterError(
            f"The 'target' segment {key!r} must name one level per segment column {list(cols)}."
        )
    return parts

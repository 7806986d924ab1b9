"""The implied joint distribution of a new experiment's true effects, per draw.

For segment s (DESIGN §4), a new experiment's true long-term and proxy
effects are jointly Gaussian given the parameters:

    (tau_s, theta_s) ~ N((nu_s, mu_s), [[b' W b + omega0^2 + sigma_s^2, (W b)'], [W b, W]]),
    W = Omega_E + Omega_C, b = beta_s,

with omega0 the sd of eta0, the experiment's long-term effect that no proxy
carries (0 for a model without it). For a segment mix pi (shares summing to
one) the experiment effects (eta0, eta) are shared by all segments while the
within-cell deviations are independent, so

    mean       = (sum pi_s nu_s, sum pi_s mu_s)
    Var theta  = Omega_E + sum pi_s^2 Omega_C
    Cov(tau, theta) = bbar' Omega_E + sum pi_s^2 beta_s' Omega_C,   bbar = sum pi_s beta_s
    Var tau    = bbar' Omega_E bbar + omega0^2 + sum pi_s^2 (beta_s' Omega_C beta_s + sigma_s^2).

Everything is in original units and vectorised over posterior draws.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from proxyscope import dims
from proxyscope.core.bvn import prob_opposite_signs
from proxyscope.errors import ColumnError, DataTypeError, ParameterError

if TYPE_CHECKING:
    from proxyscope.model.fit import ProxyFit


def flat(values: Any) -> np.ndarray:
    """An xarray variable with (chain, draw, ...) as a (draws, ...) array."""
    arr = np.asarray(values.transpose(dims.CHAIN, dims.DRAW, ...).values, dtype=float)
    return arr.reshape(-1, *arr.shape[2:])


@dataclasses.dataclass(frozen=True)
class SegmentDraws:
    """Segment parameters per draw (original units) for a list of segments.

    nu (N, S), mu (N, S, K), beta (N, S, K), sigma2 (N, S), omega_e and
    omega_c (N, K, K), omega_y (N,) the variance of the experiments' long-term
    effect that no proxy carries; ``labels`` name the S segments and ``extrapolated``
    marks segment combinations not seen in the data (predicted from the
    pooled main effects and a fresh interaction).
    """

    labels: tuple[str, ...]
    nu: np.ndarray
    mu: np.ndarray
    beta: np.ndarray
    sigma2: np.ndarray
    omega_e: np.ndarray
    omega_c: np.ndarray
    omega_y: np.ndarray
    extrapolated: np.ndarray

    @property
    def n_draws(self) -> int:
        return self.nu.shape[0]

    @property
    def omega(self) -> np.ndarray:
        """Omega_E + Omega_C: spread of a segment's true proxy effects across experiments."""
        return self.omega_e + self.omega_c

    def segment_moments(self) -> dict[str, np.ndarray]:
        """Per draw and segment: means and covariances of (tau_s, theta_s)."""
        w = self.omega
        wb = np.einsum("nkl,nsl->nsk", w, self.beta)
        var_tau = np.einsum("nsk,nsk->ns", self.beta, wb) + self.sigma2 + self.omega_y[:, None]
        return {
            "mean_tau": self.nu,
            "mean_theta": self.mu,
            "var_tau": var_tau,
            "cov_tau_theta": wb,
            "cov_theta": np.broadcast_to(w[:, None], (*self.mu.shape, self.mu.shape[-1])),
        }

    def mix_moments(self, shares: np.ndarray) -> dict[str, np.ndarray]:
        """Per draw: means and covariances of the mix-level (tau_pi, theta_pi)."""
        pi = np.asarray(shares, dtype=float)
        pi2 = pi**2
        bbar = np.einsum("s,nsk->nk", pi, self.beta)
        oe, oc = self.omega_e, self.omega_c
        cov_theta = oe + pi2.sum() * oc
        cov_tau_theta = np.einsum("nk,nkl->nl", bbar, oe) + np.einsum(
            "s,nsk,nkl->nl", pi2, self.beta, oc
        )
        var_tau = (
            np.einsum("nk,nkl,nl->n", bbar, oe, bbar)
            + np.einsum("s,nsk,nkl,nsl->n", pi2, self.beta, oc, self.beta)
            + self.sigma2 @ pi2
            + self.omega_y
        )
        return {
            "mean_tau": self.nu @ pi,
            "mean_theta": np.einsum("s,nsk->nk", pi, self.mu),
            "var_tau": var_tau,
            "cov_tau_theta": cov_tau_theta,
            "cov_theta": cov_theta,
        }


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


def fitted_segments(fit: ProxyFit) -> SegmentDraws:
    """The fit's own segments, per draw."""
    post = fit.posterior
    labels = tuple(fit.structure.labels)
    return SegmentDraws(
        labels=labels,
        nu=flat(post["nu"]),
        mu=flat(post["mu"].transpose(dims.CHAIN, dims.DRAW, dims.SEGMENT, dims.PROXY)),
        beta=flat(post["beta"].transpose(dims.CHAIN, dims.DRAW, dims.SEGMENT, dims.PROXY)),
        sigma2=flat(post["sigma"]) ** 2,
        omega_e=flat(post["omega_e"]),
        omega_c=flat(post["omega_c"]),
        omega_y=outcome_variance(fit),
        extrapolated=np.zeros(len(labels), dtype=bool),
    )


def outcome_variance(fit: ProxyFit) -> np.ndarray:
    """Per draw, the variance of eta0 (the experiments' long-term effect that no
    proxy carries; original units); zeros for a model without it."""
    post = fit.posterior
    if "sd_e_outcome" in post:
        return flat(post["sd_e_outcome"]) ** 2
    return np.zeros(flat(post["sigma"]).shape[0])


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


def historical_mix(fit: ProxyFit) -> pd.Series:
    """Share of users in each of the fit's segments (treatment and control arms)."""
    eff = fit.effects
    users = eff.data[dims.N_TREAT].values + eff.data[dims.N_CONTROL].values
    labels = pd.Series(eff.segment_label)
    shares = pd.Series(users, index=labels).groupby(level=0).sum()
    shares = shares.reindex(list(fit.structure.labels)).fillna(0.0)
    return shares / shares.sum()


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


def check_ci(ci: Any) -> float:
    """``ci`` as a float in (0, 1), or a DataTypeError / ParameterError naming it."""
    if isinstance(ci, bool) or not isinstance(ci, (int, float, np.integer, np.floating)):
        raise DataTypeError(
            f"The 'ci' parameter must be a number in (0, 1); got {type(ci).__name__} {ci!r}."
        )
    if not 0 < ci < 1:
        raise ParameterError(f"The 'ci' parameter must be in (0, 1); got {ci!r}.")
    return float(ci)


def interval(draws: np.ndarray, ci: float, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Equal-tailed ``ci`` interval of draws along ``axis``."""
    ci = check_ci(ci)
    lo, hi = np.quantile(draws, [(1 - ci) / 2, (1 + ci) / 2], axis=axis)
    return lo, hi

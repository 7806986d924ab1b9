"""The log likelihood of experiments a fit never saw, through the model's own kernels.

Leave-one-experiment-out refits (:func:`proxyscope.compare`) score the held-out
experiments with this: each experiment's cells standardized by the fit's scales and
packed as the fit's own cells are, the experiment effect integrated out by the same
compiled kernel, segment cells the fit never saw predicted from its pooled structure
(:func:`~proxyscope.model.segments.segments_for`).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from proxyscope import dims
from proxyscope.core.codegen import load_kernel_module
from proxyscope.core.kernels import experiment_cholesky, pack_cells
from proxyscope.data.designs import RANDOMIZED
from proxyscope.errors import ParameterError
from proxyscope.model.fitdata import FitData, shared_errors
from proxyscope.model.periods import fit_periods
from proxyscope.model.segments import SegmentDraws, segments_for

if TYPE_CHECKING:
    from proxyscope.model.fit import ProxyFit


def heldout_experiment_loglik(fit: ProxyFit, effects: Any) -> np.ndarray:
    """log p(d_e | params) per posterior draw for experiments NOT in the fit.

    Original units, eta_e integrated out, one column per experiment of
    ``effects`` (in its order). Segment cells the fit never saw are predicted
    from its pooled structure. A cell of a design the fit gives a bias term
    has the fit's Sigma_d (per draw) added to its covariance. Cells that carry a
    shared error (``shared_cov``) have it integrated with eta_e, as in the fit.
    With a fit whose relation moves over time, each experiment is read in its own
    period when the fit has it, else in the latest period.
    """
    if tuple(effects.metrics) != tuple(fit.info.metrics):
        raise ParameterError("Held-out cells must have the fit's outcome and proxies.")
    cells = effects.cells()
    cols = list(fit.structure.columns)
    if cols:
        combos = cells[cols].drop_duplicates().reset_index(drop=True)
        label_of = {fit.structure.label_of(r[cols]): i for i, r in combos.iterrows()}
        seg_idx = np.array([label_of[lab] for lab in cells[dims.SEGMENT_LABEL]])
    else:
        combos = pd.DataFrame(index=[0])
        seg_idx = np.zeros(len(cells), dtype=int)
    seg, seg_idx = _per_period(fit, effects, combos, seg_idx)
    scales = np.asarray(fit.info.scales)
    sy, sp = scales[0], scales[1:]
    exp_ids = effects.experiments
    exp_idx = pd.Index(exp_ids).get_indexer(effects.experiment)
    order = np.lexsort((seg_idx, exp_idx))
    d = (effects.effect[order] / scales).T
    s_cov = (effects.noise_cov[order] / np.outer(scales, scales)[None]).transpose(1, 2, 0)
    shared = shared_errors(effects, order, exp_idx, scales)
    if shared is not None:
        held = FitData(d=d, s_cov=s_cov, scales=scales, cell_segment=seg_idx[order],
                       cell_experiment=exp_idx[order], order=order,
                       experiments=np.asarray(exp_ids), shared_cov=shared)  # fmt: skip
        s_cov = held.own_cov
    chol_u = None if shared is None else held.chol_u
    dat = pack_cells(np.ascontiguousarray(d), np.ascontiguousarray(s_cov))
    group = _bias_groups(fit, effects.design[order])
    seg_sorted = np.ascontiguousarray(seg_idx[order], dtype=np.int64)
    exp_sorted = np.ascontiguousarray(exp_idx[order], dtype=np.int64)
    k = len(sp)
    kernel = load_kernel_module(k, chol_u is not None).experiment_posterior
    n = seg.n_draws
    loc = np.concatenate([seg.nu[:, None, :] / sy, np.swapaxes(seg.mu, 1, 2) / sp[:, None]], axis=1)
    beta = np.swapaxes(seg.beta, 1, 2) * (sp / sy)[:, None]
    sig2 = seg.sigma2 / sy**2
    scale_mat = np.outer(sp, sp)
    out = np.empty((n, len(exp_ids)))
    cells_per_exp = np.bincount(exp_sorted, minlength=len(exp_ids))
    log_jac = cells_per_exp * float(np.sum(np.log(scales)))
    v_add = np.zeros(((k + 1) * (k + 2) // 2, seg.nu.shape[1]))
    bias = fit.std.bias_cov if group.any() else None
    for i in range(n):
        if bias is not None:
            extra = np.moveaxis(bias[i][group], 0, -1)
            dat = pack_cells(np.ascontiguousarray(d), np.ascontiguousarray(s_cov + extra))
        chol_e = experiment_cholesky(
            np.sqrt(seg.omega_y[i]) / sy,
            np.linalg.cholesky(seg.omega_e[i] / scale_mat + 1e-12 * np.eye(k)),
        )
        chol_c = np.linalg.cholesky(seg.omega_c[i] / scale_mat + 1e-12 * np.eye(k))
        args = [
            dat,
            seg_sorted,
            exp_sorted,
            len(exp_ids),
            np.ascontiguousarray(loc[i]),
            np.ascontiguousarray(beta[i]),
            np.ascontiguousarray(sig2[i]),
            chol_c,
            chol_e,
        ]
        lp, _, _ = kernel(*args, *(() if chol_u is None else (chol_u,)), v_add)
        out[i] = lp - log_jac
    return out


def _per_period(
    fit: ProxyFit, effects: Any, combos: pd.DataFrame, seg_idx: np.ndarray
) -> tuple[SegmentDraws, np.ndarray]:
    """The segment parameters the held-out cells are read with, and each cell's index.

    Static fit: the combinations' parameters. Fit with time: each cell in its
    experiment's period when the fit has it (cells without time, or in a period
    the fit does not have, in the latest one), as virtual segments
    ``period position * combinations + combination``.
    """
    periods = fit_periods(fit)
    if not periods:
        return segments_for(fit, combos), seg_idx
    index = {p: i for i, p in enumerate(periods)}
    if effects.has_time:
        labels = [str(effects.periods[i]) for i in effects.period_index]
        cell_period = np.array([index.get(lab, len(periods) - 1) for lab in labels])
    else:
        cell_period = np.full(len(seg_idx), len(periods) - 1)
    used = sorted(set(cell_period.tolist()))
    draws = [segments_for(fit, combos, period=periods[p]) for p in used]
    position = {p: i for i, p in enumerate(used)}
    n_combos = len(draws[0].labels)
    virtual = np.array([position[p] for p in cell_period]) * n_combos + seg_idx
    stacked = dataclasses.replace(
        draws[0],
        labels=tuple(lab for d in draws for lab in d.labels),
        nu=np.concatenate([d.nu for d in draws], axis=1),
        mu=np.concatenate([d.mu for d in draws], axis=1),
        beta=np.concatenate([d.beta for d in draws], axis=1),
        sigma2=np.concatenate([d.sigma2 for d in draws], axis=1),
        extrapolated=np.concatenate([d.extrapolated for d in draws]),
    )
    return stacked, virtual


def _bias_groups(fit: ProxyFit, design: np.ndarray) -> np.ndarray:
    """Each held-out cell's design group in the fit (0: no bias term)."""
    group = np.zeros(len(design), dtype=np.int64)
    for g, name in enumerate(fit.info.bias_designs, start=1):
        group[design == name] = g
    unknown = sorted(
        {str(d) for d in design if d not in RANDOMIZED and d not in fit.info.bias_designs}
    )
    if unknown:
        raise ParameterError(
            f"Held-out cells of design(s) {unknown} have no bias term in the fit, which saw "
            f"only {sorted(set(fit.effects.designs))}; their bias cannot be predicted."
        )
    return group

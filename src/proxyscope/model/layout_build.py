"""Building the flat vector's layout of one model: its blocks and the arrays that describe it.

The blocks and their order (:class:`~proxyscope.model.layout.Layout` reads
draws back by them): the three families' blocks (global value, main effects
with their scales, interactions with theirs, or per-segment values), the
scales and correlations of Omega_E and Omega_C, the sd of the outcome's own
experiment effect, the design-bias terms, then the relation's walk over
periods. Each later addition comes after everything before it, so a model
without it has exactly the vector it had before it existed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from proxyscope.core import density as dn
from proxyscope.core.timewalk import TIME_RECORD
from proxyscope.model.coordinates import Coordinates
from proxyscope.model.layout import (
    FAMILY_PREFIX,
    OUTCOME_SD,
    Block,
    Layout,
    bias_cpc_name,
    bias_sd_name,
    cpc_shapes,
    time_drift_name,
    time_step_name,
    time_z_name,
)
from proxyscope.model.priors import Priors
from proxyscope.model.structure import SegmentStructure


def build_layout(
    structure: SegmentStructure,
    pooling: str,
    priors: Priors,
    metrics: tuple[str, ...],
    proxies: tuple[str, ...],
    cell_correlation: str,
    coordinates: Coordinates,
    outcome_effect: bool = True,
    bias_designs: tuple[str, ...] = (),
    n_periods: int = 0,
) -> Layout:
    """The flat vector of a model with these settings, sampled in ``coordinates``.

    ``outcome_effect``: whether the model has eta0_e, the experiment's
    long-term effect that no proxy carries (``sd_e_outcome``).
    ``bias_designs``: the designs whose cells get a bias term (per design, M
    log sds then M (M - 1) / 2 logit CPCs, after every other parameter, so a
    model without them has exactly the vector it had before they existed).
    ``n_periods``: with 2 or more, the relation's walk over the periods
    (:mod:`proxyscope.core.timewalk`): per moving family, its rows' log step
    scales then their (rows, n_periods - 1) steps, then its rows' drifts,
    after the bias terms.
    """
    k = len(proxies)
    m = k + 1
    n_seg = structure.n_segments
    columns = structure.columns if pooling == "additive" else ()
    learned = priors.learned_main(structure.levels)
    basis = coordinates.basis

    floats: list[float] = []

    def put(values: Any) -> int:
        start = len(floats)
        floats.extend(np.asarray(values, dtype=float).reshape(-1).tolist())
        return start

    records: list[list[int]] = []
    blocks: list[Block] = []
    offset = 0

    def add(name: str, rows: int, cols: int, kind: str, **kw: Any) -> Block:
        nonlocal offset
        block = Block(name, offset, rows, cols, kind, **kw)
        blocks.append(block)
        offset += rows * cols
        return block

    def record(block: Block, fl_sd: int, **fields: int) -> None:
        rec = [-1] * dn.RECORD
        rec[dn.B_U], rec[dn.B_R], rec[dn.B_C] = block.offset, block.rows, block.cols
        rec[dn.B_SCALE] = block.scale_offset
        rec[dn.B_SD] = fl_sd
        rec[dn.B_W_ROW] = rec[dn.B_ROT] = 0
        rec[dn.B_KIND] = dn.VALUE
        for key, value in fields.items():
            rec[getattr(dn, key)] = value
        records.append(rec)

    fl_rot = put(coordinates.rotation)
    fl_const = put([priors.experiment_sd, priors.cell_sd, priors.experiment_outcome_sd])
    fl_cpc = put(cpc_shapes(k, priors.lkj_eta) if k > 1 else [0.0])
    designs = structure.design()
    family_priors = (
        (priors.global_location_sd, priors.main_location_sd, priors.interaction_location_sd,
         priors.none_location_sd),
        (priors.global_slope_sd, priors.main_slope_sd, priors.interaction_slope_sd,
         priors.none_slope_sd),
        (priors.sigma_sd, priors.main_log_sigma_sd, priors.interaction_log_sigma_sd,
         priors.none_log_sigma_sd),
    )  # fmt: skip
    family_records: list[tuple[int, int]] = []
    for f, prefix in enumerate(FAMILY_PREFIX):
        first = len(records)
        rows = (m, k, 1)[f]
        gsd, msd, isd, nsd = family_priors[f]
        rot = 1 if f == dn.SLOPE else 0
        log_sigma = f == dn.LOG_SIGMA
        if pooling == "none":
            name = "sigma_seg" if log_sigma else f"{prefix}_seg"
            block = add(name, rows, n_seg, "value", family=f)
            kind = dn.LOG_HALF_NORMAL if log_sigma else dn.VALUE
            record(block, put([nsd]), B_ROT=rot, B_KIND=kind)
            family_records.append((first, len(records) - first))
            continue
        name = "sigma_global" if log_sigma else f"{prefix}_global"
        block = add(name, rows, 1, "value", family=f)
        record(block, put([gsd]), B_ROT=rot, B_KIND=dn.LOG_HALF_NORMAL if log_sigma else dn.VALUE)
        for j, col in enumerate(columns):
            n_c = len(structure.levels[j]) - 1
            scale_offset = -1
            if learned[j]:
                scale = add(
                    f"{prefix}_main_sd__{col}", rows, 1, "log_scale", family=f, column=j,
                    prior_sd=msd,
                )  # fmt: skip
                scale_offset = scale.offset
            block = add(
                f"{prefix}_main__{col}", rows, n_c, "value", family=f, column=j,
                scale_offset=scale_offset,
            )  # fmt: skip
            record(
                block, put([msd]), B_ROT=rot, B_DESIGN=put(designs[j]),
                B_W=put(coordinates.main[f][j]), B_W_ROW=1,
            )  # fmt: skip
        if basis.shape[1] > 0:
            scale = add(
                f"{prefix}_int_sd", rows, 1, "log_scale", family=f, interaction=True,
                prior_sd=isd,
            )  # fmt: skip
            block = add(
                f"{prefix}_int_z", rows, basis.shape[1], "value", family=f, interaction=True,
                scale_offset=scale.offset,
            )  # fmt: skip
            record(
                block, put([isd]), B_ROT=rot, B_W=put(coordinates.interaction[f]),
                B_DESIGN=put(basis),
            )  # fmt: skip
        family_records.append((first, len(records) - first))
    sd_e = add("sd_e", k, 1, "log_scale", prior_sd=priors.experiment_sd)
    cpc_e = add("cpc_e", 1, k * (k - 1) // 2, "logit_cpc") if k > 1 else None
    sd_c = add("sd_c", k, 1, "log_scale", prior_sd=priors.cell_sd)
    cpc_c = (
        add("cpc_c", 1, k * (k - 1) // 2, "logit_cpc")
        if k > 1 and cell_correlation == "free"
        else None
    )
    sd_y = (
        add(OUTCOME_SD, 1, 1, "log_scale", prior_sd=priors.experiment_outcome_sd)
        if outcome_effect
        else None
    )

    bias_first = offset
    for design in bias_designs:
        add(bias_sd_name(design), m, 1, "log_scale", prior_sd=priors.bias_sd)
        add(bias_cpc_name(design), 1, m * (m - 1) // 2, "logit_cpc")
    fl_bias = put([priors.bias_sd, *cpc_shapes(m, priors.bias_lkj_eta)])

    # Per family: steps' log scales, steps, step sd, drifts, drift sd (timewalk.TIME_RECORD).
    time_table = [-1] * (3 * TIME_RECORD)
    if n_periods >= 2:
        sds = zip(FAMILY_PREFIX, priors.time_step_sds(), priors.time_drift_sds(), strict=True)
        for f, (prefix, sd, drift_sd) in enumerate(sds):
            rows = (m, k, 1)[f]
            at = TIME_RECORD * f
            if sd > 0:
                scale = add(time_step_name(prefix), rows, 1, "log_scale", prior_sd=sd)
                steps = add(time_z_name(prefix), rows, n_periods - 1, "value")
                time_table[at : at + 3] = [scale.offset, steps.offset, put([sd])]
            if drift_sd > 0:
                drift = add(time_drift_name(prefix), rows, 1, "value")
                time_table[at + 3 : at + 5] = [drift.offset, put([drift_sd])]

    n_head = dn.HEADER + dn.RECORD * len(records)
    ints = np.full(n_head + len(time_table), -1, dtype=np.int64)
    ints[n_head:] = time_table
    ints[dn.H_TIME_P] = n_periods if n_periods >= 2 else 0
    ints[dn.H_TIME] = n_head
    ints[dn.H_BIAS_N] = len(bias_designs)
    ints[dn.H_BIAS] = bias_first
    ints[dn.H_FL_BIAS] = fl_bias
    ints[dn.H_KSEG] = -1  # the data's kernel segments: set by NativeDensity
    ints[dn.H_K] = k
    ints[dn.H_S] = n_seg
    ints[dn.H_FREE] = 1 if cell_correlation == "free" else 0
    ints[dn.H_SD_E] = sd_e.offset
    ints[dn.H_CPC_E] = cpc_e.offset if cpc_e else -1
    ints[dn.H_SD_C] = sd_c.offset
    ints[dn.H_CPC_C] = cpc_c.offset if cpc_c else -1
    ints[dn.H_SD_Y] = sd_y.offset if sd_y else -1
    ints[dn.H_NDIM] = offset
    ints[dn.H_FL_ROT] = fl_rot
    ints[dn.H_FL_CONST] = fl_const
    ints[dn.H_FL_CPC] = fl_cpc
    for f, (first, count) in enumerate(family_records):
        ints[dn.H_FAMILIES + 2 * f] = dn.HEADER + dn.RECORD * first
        ints[dn.H_FAMILIES + 2 * f + 1] = count
    for i, rec in enumerate(records):
        start = dn.HEADER + dn.RECORD * i
        ints[start : start + dn.RECORD] = rec
    return Layout(
        ints=ints,
        floats=np.asarray(floats, dtype=float),
        blocks=tuple(blocks),
        n_dim=offset,
        coordinates=coordinates,
        structure=structure,
        metrics=metrics,
        proxies=proxies,
        pooling=pooling,
    )

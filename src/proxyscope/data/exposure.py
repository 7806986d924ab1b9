"""Exposure (two-exposure decomposition) for cluster-randomized experiments.

With an exposure column saying, per user, "direct" (treated), "spillover" (a
control user exposed to treated users, e.g. through collaboration across
workspaces) or "pure_control", :func:`proxyscope.summarize` gives each cell the
direct effect (direct − pure control) as its effect and keeps the spillover
effect (spillover − pure control) with its own clustered covariance
(:mod:`proxyscope.data.clustered` has the formulas). This module checks the
exposure values, assigns each per-cluster row to its group, and turns the
spillover effects into cells of their own (:func:`spillover_effects`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from proxyscope import dims
from proxyscope.data import designs
from proxyscope.data.cellbuild import build
from proxyscope.data.cells import CellEffects
from proxyscope.data.engines import EXPOSURE, ClusterAggregate
from proxyscope.data.validate import Roles, is_missing, same_value, scalar, show_values
from proxyscope.errors import DataError, ParameterError, suggestion

DIRECT, SPILLOVER, PURE_CONTROL = "direct", "spillover", "pure_control"
EXPOSURE_ROLES = (DIRECT, SPILLOVER, PURE_CONTROL)


def check_exposure_values(value: Any, *, exposure: str | None, owner: str) -> dict[str, Any] | None:
    """The value of each exposure role in the exposure column (None without one).

    Parameters
    ----------
    value : dict or None
        ``exposure_values`` as given: role -> value; roles not given keep
        their default value (the role's name).
    exposure : str or None
        The exposure column, for messages; None when there is none.
    owner : str
        The function checked, for messages.

    Returns
    -------
    dict or None
        Every role of :data:`EXPOSURE_ROLES` -> its value; None without ``exposure``.

    Raises
    ------
    ParameterError
        ``exposure_values`` without ``exposure``, an unknown role, a missing
        value, or one value for two roles.
    """
    if exposure is None:
        if value is not None:
            raise ParameterError(
                f"The 'exposure_values' parameter of {owner} applies only with 'exposure' "
                "(the column of exposure values); got exposure=None."
            )
        return None
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise ParameterError(
            f"The 'exposure_values' parameter of {owner} must be a dict mapping "
            f"{list(EXPOSURE_ROLES)} to values of column {exposure!r}; got "
            f"{type(value).__name__}."
        )
    for key in value:
        if key not in EXPOSURE_ROLES:
            raise ParameterError(
                f"The 'exposure_values' parameter of {owner} has the key {key!r}; its keys "
                f"are the roles {list(EXPOSURE_ROLES)}.{suggestion(str(key), EXPOSURE_ROLES)}"
            )
    out = {role: scalar(value.get(role, role)) for role in EXPOSURE_ROLES}
    for i, (role, v) in enumerate(out.items()):
        twin = next((r for r in EXPOSURE_ROLES[i + 1 :] if same_value(out[r], v)), None)
        if is_missing(v) or twin is not None:
            raise ParameterError(
                f"The 'exposure_values' parameter of {owner} maps {role!r} to {v!r}"
                + (f", as it does {twin!r}" if twin else ", a missing value")
                + "; each role needs its own value, and a missing exposure is a missing key "
                "(see dropna)."
            )
    return out


def exposure_groups(
    rows: ClusterAggregate, values: Mapping[str, Any], roles: Roles, is_t: np.ndarray
) -> np.ndarray:
    """Per row: 0 direct, 1 pure control, 2 spillover; checked against the arm."""
    factor = rows.labels[EXPOSURE]
    code = {DIRECT: 0, PURE_CONTROL: 1, SPILLOVER: 2}
    per_value = np.full(len(factor.values), -1)
    for k, v in enumerate(factor.values):
        for role, want in values.items():
            if same_value(scalar(v), want):
                per_value[k] = code[role]
    group = per_value[factor.codes]
    bad = group < 0
    if bad.any():
        found = pd.unique(pd.Series(factor.codes[bad]))
        unexpected = [scalar(factor.values[k]) for k in found]
        raise DataError(
            f"Column {roles.exposure!r} (given as 'exposure') holds {len(unexpected)} "
            f"unexpected value(s) in {int(rows.n[bad].sum())} users: {show_values(unexpected)}; "
            f"expected the values of exposure_values: {show_values(list(values.values()))} "
            f"for {list(values)}. Pass exposure_values= to name the column's values."
        )
    direct_control = int(rows.n[(group == 0) & ~is_t].sum())
    other_treated = int(rows.n[(group > 0) & is_t].sum())
    if direct_control or other_treated:
        raise DataError(
            f"Columns {roles.exposure!r} (given as 'exposure') and {roles.treatment!r} "
            f"(given as 'treatment') disagree for {direct_control + other_treated} users: "
            f"{direct_control} direct users are in the control arm and {other_treated} "
            "spillover or pure-control users in the treated arm. Direct users must be "
            "treated; spillover and pure-control users must be in the control arm."
        )
    return group


# -- the spillover effects as cells of their own ------------------------------------


def spillover_effects(effects: CellEffects) -> CellEffects:
    """The spillover effect of every cell as a CellEffects of its own.

    ``effect`` and ``noise_cov`` are the spillover effect (mean of spillover
    users − mean of pure-control users, proxies in their good direction) and
    its clustered covariance from :func:`proxyscope.summarize` with
    ``exposure=``; ``n_treat`` is the spillover users, ``n_control`` the
    pure-control users, the design "cluster". Usable as any input: fit a
    model on it, or concatenate it with other cells (give its experiments
    distinct ids first: each (experiment, segment) is one cell).

    Cells without a spillover estimate (fewer than two spillover users or
    clusters, or cells summarized without an exposure column) are dropped and
    listed in ``dropped``. The cluster counts of the direct effect do not
    carry over, save ``n_clusters_control`` (the pure-control clusters).

    Parameters
    ----------
    effects : CellEffects
        Cells from ``summarize(..., cluster=..., exposure=...)``, alone or
        concatenated with others.

    Returns
    -------
    CellEffects
        One cell per cell of ``effects`` with a spillover estimate;
        ``meta["estimand"]`` is "spillover".

    Raises
    ------
    ParameterError
        ``effects`` is not a CellEffects.
    DataError
        No cell has a spillover estimate.
    """
    if not isinstance(effects, CellEffects):
        raise ParameterError(
            "The 'effects' parameter of spillover_effects must be a CellEffects; got "
            f"{type(effects).__name__}."
        )
    spill = effects.variable(designs.SPILLOVER)
    cov = effects.variable(designs.SPILLOVER_COV)
    ok = np.isfinite(spill).all(axis=1) & np.isfinite(cov).all(axis=(1, 2))
    if not ok.any():
        raise DataError(
            f"spillover_effects: none of the {effects.n_cells} cells has a spillover estimate; "
            "summarize with cluster= and exposure= (and at least two spillover users and "
            "clusters per cell) to get one."
        )
    n_spill = effects.variable(designs.N_SPILLOVER)
    n_control = np.asarray(effects.data[dims.N_CONTROL].values)
    cells = effects.cells()
    keys = pd.DataFrame({dims.EXPERIMENT: effects.experiment[ok]})
    for s in effects.segments:
        keys[s] = cells[s].to_numpy()[ok]
    meta = effects.meta
    dropped = list(meta.get("dropped", []))
    for c in np.flatnonzero(~ok):
        row: dict[str, Any] = {dims.EXPERIMENT: scalar(effects.experiment[c])}
        row.update({s: str(cells[s].iloc[c]) for s in effects.segments})
        row.update(
            n_treat=int(n_spill[c]),
            n_control=int(n_control[c]),
            reason="no spillover estimate (fewer than 2 spillover users or clusters)",
        )
        dropped.append(row)
    # build() writes these itself; the rest (columns, cluster, exposure, ...) carries over.
    own = "outcome proxies segments directions engine min_users_per_arm dropped version units"
    extra = {k: v for k, v in meta.items() if k not in [*own.split(), "assumed_correlation"]}
    extra["estimand"] = "spillover"
    return build(
        keys,
        n_spill[ok],
        n_control[ok],
        spill[ok],
        cov[ok],
        outcome=effects.outcome,
        proxies=list(effects.proxies),
        segments=list(effects.segments),
        directions=effects.directions,
        engine=str(meta.get("engine")),
        min_users_per_arm=meta.get("min_users_per_arm"),
        dropped=dropped,
        assumed_correlation=effects.assumed_correlation,
        extra=extra,
        design=designs.CLUSTER,
        variables={designs.N_CLUSTERS_CONTROL: effects.variable(designs.N_CLUSTERS_CONTROL)[ok]},
        units=effects.units,
    )

"""From an engine's per-(cell, arm) aggregate to per-cell arrays (user-randomized cells).

:func:`proxyscope.summarize` reads the aggregate of :mod:`proxyscope.data.engines`
(count, means and sample covariances per (experiment, segment values, arm)):
:func:`suspicious` says whether it shows missing or non-finite values (only
then are they counted, by another query), :func:`pivot` puts both arms of
each cell side by side.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from proxyscope.data.engines import N, count_col, cov_col, key_col, mean_col, pairs


def suspicious(agg: pd.DataFrame, m: int) -> bool:
    """True when a count, mean or covariance shows a missing or non-finite value."""
    n = agg[N].to_numpy(dtype=float)
    for i in range(m):
        if np.any(agg[count_col(i)].to_numpy(dtype=float) != n):
            return True
        if np.any(~np.isfinite(agg[mean_col(i)].to_numpy(dtype=float)) & (n > 0)):
            return True
    for i, j in pairs(m):
        if cov_col(i, j) in agg and np.any(
            ~np.isfinite(agg[cov_col(i, j)].to_numpy(dtype=float)) & (n >= 2)
        ):
            return True
    return False


def pivot(agg: pd.DataFrame, is_t: np.ndarray, n_keys: int, m: int) -> dict[str, np.ndarray]:
    """One row per cell with both arms side by side (an absent arm has n = 0)."""
    key_tuples = pd.Series(
        list(zip(*[agg[key_col(i)] for i in range(n_keys)], strict=True)), dtype=object
    )
    cell, uniq = pd.factorize(key_tuples)
    n_cells = len(uniq)
    n = agg[N].to_numpy(dtype=np.int64)
    means = np.stack([agg[mean_col(i)].to_numpy(dtype=float) for i in range(m)], axis=1)
    covs = np.empty((len(agg), m, m))
    for i, j in pairs(m):
        v = agg[cov_col(i, j)].to_numpy(dtype=float)
        covs[:, i, j] = v
        covs[:, j, i] = v
    out: dict[str, np.ndarray] = {}
    for arm, mask in (("t", is_t), ("c", ~is_t)):
        idx = np.full(n_cells, -1)
        idx[cell[mask]] = np.flatnonzero(mask)
        has = idx >= 0
        out[f"n_{arm}"] = np.where(has, n[idx], 0)
        out[f"mean_{arm}"] = np.where(has[:, None], means[idx], np.nan)
        out[f"cov_{arm}"] = np.where(has[:, None, None], covs[idx], np.nan)
    keys = np.empty((n_cells, n_keys), dtype=object)
    for c, tup in enumerate(uniq):
        keys[c, :] = list(tup)
    out["keys"] = keys
    return out

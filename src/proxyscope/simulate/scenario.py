"""Fixed structure of the seed streaming scenario: levels, segment cells, coefficients.

Segment cells are the 24 combinations region × device × tenure, numbered
``s = (region * 3 + device) * 2 + tenure`` (region-major), so that a flat
array of length 24 reshapes to ``(4, 3, 2)`` over the dims
``(region, device, tenure)``.

The per-cell arrays are computed with the same floating-point operations, in
the same order, as the seed generator computes them per user, so gathering
them by cell gives the seed's per-user values bit for bit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

REGION = "region"
DEVICE = "device"
TENURE = "tenure"
SEGMENT_COLUMNS: tuple[str, str, str] = (REGION, DEVICE, TENURE)

REGIONS: tuple[str, ...] = ("NA", "LATAM", "EU", "IN")
DEVICES: tuple[str, ...] = ("TV", "Mobile", "Desktop")
TENURES: tuple[str, ...] = ("New", "Existing")
LEVELS: dict[str, tuple[str, ...]] = {REGION: REGIONS, DEVICE: DEVICES, TENURE: TENURES}
SHAPE: tuple[int, int, int] = (len(REGIONS), len(DEVICES), len(TENURES))
N_CELLS = SHAPE[0] * SHAPE[1] * SHAPE[2]

OUTCOME = "long_retained"
PROXIES: tuple[str, ...] = ("early_watch_min", "early_starts", "early_ctr", "rebuffer_rate")
METRICS: tuple[str, ...] = (OUTCOME, *PROXIES)
#: Proxies where lower is better; their effects are negated in every truth quantity.
LOWER_IS_BETTER: frozenset[str] = frozenset({"rebuffer_rate"})


def column_roles() -> dict[str, Any]:
    """Column roles of a streaming world's ``users`` for :func:`proxyscope.summarize`.

    Use as ``ps.summarize(world.users, **simulate.column_roles())``. A new dict
    on every call, so a caller may change it freely.
    """
    return {
        "experiment": "exp_id",
        "treatment": "treatment",
        "outcome": OUTCOME,
        "proxies": list(PROXIES),
        "segments": list(SEGMENT_COLUMNS),
        "directions": dict.fromkeys(sorted(LOWER_IS_BETTER), "lower"),
    }


# The seed's segment "embeddings" (user_sat and user_eng shifts).
REGION_W = np.array([0.2, -0.1, 0.05, -0.15])
DEVICE_W = np.array([0.25, -0.05, 0.0])
TENURE_W = np.array([-0.1, 0.1])

# The seed's long-term logit: -0.3 + 0.7 sat + 0.15 eng + exp_bias + T tau.
LOGIT_INTERCEPT = -0.3
LOGIT_SAT = 0.7
LOGIT_ENG = 0.15

# Coefficients of the treatment shifts of the proxies on exp_tau + k * seg_tau.
WATCH_TAU = 8.0
WATCH_SEG = 0.3
STARTS_TAU = 0.4
STARTS_SEG = 0.2
WATCH_NOISE = 5.0
STARTS_NOISE = 0.3
CTR_NOISE = 0.1
REBUFFER_NOISE = 0.1
CTR_LIFT = 0.06
CTR_MOBILE_LIFT = 0.04
REBUFFER_TV_DROP = 0.03

# Index of each cell's levels.
CELL_REGION = np.repeat(np.arange(SHAPE[0]), SHAPE[1] * SHAPE[2])
CELL_DEVICE = np.tile(np.repeat(np.arange(SHAPE[1]), SHAPE[2]), SHAPE[0])
CELL_TENURE = np.tile(np.arange(SHAPE[2]), SHAPE[0] * SHAPE[1])


def _indicator(codes: np.ndarray, levels: tuple[str, ...], level: str) -> np.ndarray:
    """1.0 where the cell's level is ``level``, else 0.0."""
    return np.equal(codes, levels.index(level)).astype(float)


_IS_TV = _indicator(CELL_DEVICE, DEVICES, "TV")
_IS_MOBILE = _indicator(CELL_DEVICE, DEVICES, "Mobile")
_IS_IN = _indicator(CELL_REGION, REGIONS, "IN")
_IS_EXISTING = _indicator(CELL_TENURE, TENURES, "Existing")

#: 1.0 for TV / Mobile / IN cells, else 0.0.
IS_TV = _IS_TV
IS_MOBILE = _IS_MOBILE
IS_IN = _IS_IN

#: Segment interaction on the long-term logit (TV +.06, Mobile -.05, IN -.03, Existing +.03).
SEG_TAU = 0.06 * _IS_TV - 0.05 * _IS_MOBILE - 0.03 * _IS_IN + 0.03 * _IS_EXISTING

#: Mean of user_sat and user_eng in each cell (both have unit variance around it).
SAT_MEAN = REGION_W[CELL_REGION] + DEVICE_W[CELL_DEVICE] + TENURE_W[CELL_TENURE]
ENG_MEAN = 0.5 * DEVICE_W[CELL_DEVICE] - 0.2 * TENURE_W[CELL_TENURE]

#: Per-cell additive terms of the seed's per-user formulas (gathered by cell).
CTR_LIFT_MOBILE = CTR_MOBILE_LIFT * _IS_MOBILE
REBUFFER_DROP = REBUFFER_TV_DROP * _IS_TV
REBUFFER_IN = 0.25 * _IS_IN
REBUFFER_MOBILE = 0.15 * _IS_MOBILE


def cell_index(region: np.ndarray, device: np.ndarray, tenure: np.ndarray) -> np.ndarray:
    """Flat segment-cell number from level codes (region-major)."""
    return (region * SHAPE[1] + device) * SHAPE[2] + tenure


def categorical(codes: np.ndarray, column: str) -> pd.Categorical[str]:
    """A pandas Categorical of ``column``'s levels (in level order) from integer codes."""
    return pd.Categorical.from_codes(codes, categories=pd.Index(list(LEVELS[column])))


def cell_labels() -> list[tuple[str, str, str]]:
    """The 24 (region, device, tenure) tuples in cell order."""
    return [
        (REGIONS[r], DEVICES[d], TENURES[t])
        for r, d, t in zip(CELL_REGION, CELL_DEVICE, CELL_TENURE, strict=True)
    ]

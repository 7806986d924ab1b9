"""Names of every dimension and coordinate proxyscope writes.

One module so that the data layer, the model, the analyses and the reports
agree; nothing relies on ArviZ's automatic ``*_dim_0`` names.
"""

from __future__ import annotations

CELL = "cell"
EXPERIMENT = "experiment"
SEGMENT = "segment"
METRIC = "metric"
METRIC_ = "metric_"  # second axis of a metric × metric covariance
PROXY = "proxy"
PROXY_ = "proxy_"  # second axis of a proxy × proxy covariance
CHAIN = "chain"
DRAW = "draw"
SAMPLE = "sample"  # stacked (chain, draw)
INTERACTION_AXIS = "interaction_axis"  # axes of the segment interactions' space

# Variables of a CellEffects dataset.
EFFECT = "effect"
NOISE_COV = "noise_cov"
N_TREAT = "n_treat"
N_CONTROL = "n_control"
SEGMENT_LABEL = "segment_label"
#: Coordinate on ``cell``: how the cell's effect was estimated (see proxyscope.data.designs).
DESIGN = "design"
#: Optional coordinates on ``cell`` (DESIGN.md §9): the experiment's start
#: (datetime64[ns] or float64) and the label of its period (see
#: :mod:`proxyscope.data.time_cells`).
START = "start"
PERIOD = "period"

#: Separator used in human-readable segment labels, e.g. "IN / Mobile / New".
LABEL_SEP = " / "
#: Label of the single segment when there are no segment columns.
ALL_SEGMENTS = "all"
#: Scope of a summary row that averages over the segments in the historical mix.
HISTORICAL_MIX = "all segments (historical mix)"

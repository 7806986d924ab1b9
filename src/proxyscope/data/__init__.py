"""Layer 2: schema and validation, summarize engines, and the CellEffects container."""

from proxyscope.data.arms import from_arm_summaries
from proxyscope.data.cells import CellEffects
from proxyscope.data.summarize import summarize

__all__ = ["CellEffects", "from_arm_summaries", "summarize"]

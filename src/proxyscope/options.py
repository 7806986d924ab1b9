"""Defaults that several layers share (standard library only, importable from anywhere)."""

from __future__ import annotations

#: Interval level of every analysis, report and spec: 90% equal-tailed.
DEFAULT_CI = 0.9

"""The time methods of :class:`~proxyscope.data.cells.CellEffects` (DESIGN.md §9).

:class:`TimeMixin` gives CellEffects ``has_time``, ``periods``, ``period_index``,
``experiment_starts``, ``with_time`` and ``with_periods``; how the starts and
periods are stored and checked: :mod:`proxyscope.data.time_cells`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

import numpy as np
import pandas as pd
import xarray as xr

from proxyscope import dims
from proxyscope.data.time import check_period, resolve
from proxyscope.data.time_cells import attach, experiment_starts, store
from proxyscope.errors import DataError


class TimeMixin:
    """The time methods of :class:`~proxyscope.data.cells.CellEffects`."""

    _data: xr.Dataset
    _meta: dict[str, Any]

    @property
    def has_time(self) -> bool:
        """Whether the cells carry their experiments' start dates and periods."""
        return dims.START in self._data.coords

    def _time(self) -> dict[str, Any]:
        if not self.has_time:
            raise DataError(
                "These CellEffects carry no start dates (no time). Give them with "
                "summarize(..., time='start_column') (or from_arm_summaries / from_estimates), "
                "or add them with CellEffects.with_time({experiment: start, ...})."
            )
        return dict(self._meta["time"])

    @property
    def periods(self) -> tuple[str, ...]:
        """Every period label in order, calendar-complete from the first experiment's
        period to the last's (a period without experiments is listed too).

        Raises
        ------
        DataError
            The cells carry no start dates.
        """
        return tuple(self._time()["periods"])

    @property
    def period_index(self) -> np.ndarray:
        """Per cell, the position of its period in :attr:`periods` (int64)."""
        periods = self.periods
        labels = np.asarray(self._data[dims.PERIOD].values).astype(str)
        return np.asarray(pd.Index(periods).get_indexer(pd.Index(labels)), dtype=np.int64)

    @property
    def experiment_starts(self) -> pd.Series:
        """Each experiment's start (datetime64 or float), indexed by experiment id in
        order of first appearance."""
        self._time()
        return experiment_starts(self._data)

    def with_time(self, starts: Mapping[Any, Any] | pd.Series | str, period: Any = None) -> Self:
        """These cells with their experiments' start dates, grouped into periods.

        The designs (``proxyscope.designs.did``, ``rdd``, ``ipw``,
        ``synthetic_control``) return cells without start dates: add them here,
        e.g. ``ps.designs.did(panel, ...).with_time({"rollout-7": "2025-02-03"})``.

        Parameters
        ----------
        starts : dict, Series or str
            ``{experiment: start}`` (ids matched as stored: ``3``, ``3.0`` and
            ``"3"`` are one id; experiments not among the cells are ignored), or the
            name of a coordinate on ``cell`` that already holds each cell's start.
            Every experiment needs one. A start is a date (``datetime64``, a
            Python ``date``/``datetime``, a pandas ``Timestamp``), an ISO date
            string (``"2025-03-01"``, ``"2025-03-01T00:00"``) or a number;
            timezone-aware ones are converted to UTC and stored naive.
        period : str or sequence, optional
            "week" (ISO weeks, "2025-W03"), "month" ("2025-01"), "quarter"
            ("2025-Q1"), "year" ("2025"), "number" (numeric starts: each integer
            a period), or a list of at least two increasing edges (dates or
            numbers): bins ``[edge, next edge)``, labelled "[2025-01-01, 2025-04-01)".
            Default: "quarter" for dates, "number" for numbers.

        Returns
        -------
        CellEffects
            New cells (these are unchanged) with the coordinates ``start`` and
            ``period`` and ``meta["time"]``; replaces any start dates they had.

        Raises
        ------
        ParameterError
            An unknown period or coordinate, a grouping that does not fit the
            starts (dates by "number"), an experiment given twice.
        DataError
            An experiment without a start, a value that is not a start (the
            experiment and value are named), several starts in one experiment
            (from a coordinate), a start outside the bins, a whole-number
            grouping of numbers that are not whole.
        DataTypeError
            ``starts`` of another type, or starts that mix dates and numbers.
        """
        owner = "CellEffects.with_time"
        data = attach(self._data, starts, period, column=None, owner=owner)
        return type(self)(data)  # type: ignore[call-arg]

    def with_periods(self, period: Any) -> Self:
        """These cells with their start dates grouped anew (``period`` as in :meth:`with_time`).

        Raises
        ------
        DataError
            The cells carry no start dates, or a start falls outside the bins.
        ParameterError
            An unknown period, or one that does not fit the starts.
        """
        tmeta = self._time()
        p = check_period(period, owner="CellEffects.with_periods")
        starts = np.asarray(self._data[dims.START].values)
        p = resolve(p, starts.dtype.kind == "M", column=tmeta.get("column"))
        data = store(self._data, self._meta, starts, p, tmeta.get("column"))
        return type(self)(data)  # type: ignore[call-arg]

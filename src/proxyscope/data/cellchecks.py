"""Checks every set of cells passes, however it was built.

:func:`~proxyscope.summarize` (each engine), :func:`~proxyscope.data.arms.from_arm_summaries`
and the :class:`~proxyscope.data.cells.CellEffects` constructor (a dataset built
by hand, or loaded) all call these, so one rule gives one message:

- no segment value holds the label separator ``" / "`` (two different cells
  could get one label and be pooled as one segment);
- every effect and sampling covariance is a finite number (an overflow is
  named as one, with the cell and metric);
- counts are integers >= 0, and no (experiment, segment) is two cells;
- every design is a known one, and the optional per-cell variables have their
  dims (:func:`check_designs`);
- ``shared_cov``, where present, is finite, symmetric, positive semidefinite,
  one matrix per experiment, and no larger than any cell's ``noise_cov``
  (:func:`check_shared_cov`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from proxyscope import dims
from proxyscope.data import designs
from proxyscope.errors import ColumnError, DataError


def segment_value_error(
    frame: Mapping[str, Any] | pd.DataFrame | xr.Dataset, segments: Sequence[str]
) -> ColumnError | None:
    """The error for a segment value that holds the label separator, or None.

    Labels join the segment values with ``" / "``: with that separator inside a
    value, two different cells could get one label ('a / y' + 'z' and
    'a' + 'y / z' both read 'a / y / z'). ``frame`` maps each segment column
    to its values.
    """
    for s in segments:
        values = pd.unique(pd.Series(np.asarray(frame[s]), dtype=object).astype(str))
        bad = [v for v in values if dims.LABEL_SEP in v]
        if bad:
            return ColumnError(
                f"Segment column {s!r} has the value {bad[0]!r}, which contains "
                f"{dims.LABEL_SEP!r}, the separator of segment labels ('IN / Mobile'): two "
                "different cells could get one label and be pooled as one segment. Replace "
                f"{dims.LABEL_SEP!r} in that column's values (e.g. with '-')."
            )
    return None


def nonfinite_error(
    effect: np.ndarray,
    noise_cov: np.ndarray,
    metrics: Sequence[str],
    describe: Callable[[int], str],
    *,
    owner: str,
) -> DataError | None:
    """The error for a NaN or infinite effect or sampling covariance, or None.

    ``describe(i)`` names cell i. A covariance overflows when the metric's
    values are too large for double precision (variances near 1e308).
    """
    effect = np.asarray(effect, dtype=float)
    noise_cov = np.asarray(noise_cov, dtype=float)
    bad_effect = ~np.isfinite(effect)
    if bad_effect.any():
        i, j = (int(x) for x in np.argwhere(bad_effect)[0])
        return DataError(
            f"{owner}: the effect of {metrics[j]!r} in cell {describe(i)} is {effect[i, j]} "
            "(not a finite number): the metric's means overflow double precision. Rescale "
            "the metric (e.g. to thousands)."
        )
    bad_noise = ~np.isfinite(noise_cov)
    if bad_noise.any():
        i, j, k = (int(x) for x in np.argwhere(bad_noise)[0])
        what = (
            f"variance of {metrics[j]!r}"
            if j == k
            else f"covariance of {metrics[j]!r} and {metrics[k]!r}"
        )
        return DataError(
            f"{owner}: the sampling {what} in cell {describe(i)} is {noise_cov[i, j, k]} "
            "(not a finite number): the metric's variances or covariances overflow double "
            "precision. Rescale the metric (e.g. to thousands)."
        )
    return None


def describe_cell(experiment: Any, label: Any) -> str:
    """A cell for messages: its experiment and segment label."""
    exp = experiment.item() if isinstance(experiment, np.generic) else experiment
    return f"(experiment {exp!r}, segment {str(label)!r})"


def check_cells(data: xr.Dataset, segments: Sequence[str], metrics: Sequence[str]) -> None:
    """The checks of the CellEffects constructor on a dataset of the right shape."""
    bad_value = segment_value_error(data, segments)
    if bad_value is not None:
        raise bad_value
    experiment = np.asarray(data[dims.EXPERIMENT].values)
    label = np.asarray(data[dims.SEGMENT_LABEL].values).astype(str)

    def describe(i: int) -> str:
        return describe_cell(experiment[i], label[i])

    err = nonfinite_error(
        data[dims.EFFECT].values,
        data[dims.NOISE_COV].values,
        metrics,
        describe,
        owner="CellEffects",
    )
    if err is not None:
        raise err
    for var in (dims.N_TREAT, dims.N_CONTROL):
        n = np.asarray(data[var].values)
        if n.dtype.kind not in "iu" or (n < 0).any():
            raise DataError(
                f"CellEffects variable {var!r} must hold counts of users (integers >= 0); "
                f"got dtype {n.dtype}, smallest value {n.min()!r}."
            )
    dup = pd.DataFrame({"e": experiment, "s": label}).duplicated(keep=False).to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise DataError(
            f"CellEffects has {int(dup.sum())} cells that repeat one (experiment, segment), "
            f"e.g. {describe(i)}; each must be one cell."
        )


def check_designs(data: xr.Dataset, required: Sequence[str]) -> None:
    """Known designs on the ``design`` coordinate; optional variables with their dims and
    no variable besides ``required`` and :data:`designs.OPTIONAL_VARIABLES`."""
    given = pd.unique(pd.Series(np.asarray(data[dims.DESIGN].values, dtype=object)))
    bad = [str(v) for v in given if str(v) not in designs.DESIGNS]
    if bad:
        raise DataError(
            f"CellEffects coordinate {dims.DESIGN!r} holds {bad[0]!r}; a design is one "
            f"of {list(designs.DESIGNS)}."
        )
    for var, (want_dims, _) in designs.OPTIONAL_VARIABLES.items():
        if var in data and data[var].dims != want_dims:
            raise DataError(
                f"CellEffects variable {var!r} must have dims {want_dims}; got {data[var].dims}."
            )
    unknown = sorted(
        str(v) for v in data.data_vars if v not in required and v not in designs.OPTIONAL_VARIABLES
    )
    if unknown:
        raise DataError(
            f"CellEffects dataset has variables it does not know: {unknown}; known: "
            f"{[*required, *designs.OPTIONAL_VARIABLES]}."
        )


#: Relative tolerance of the positive-semidefinite, symmetry and equality checks of shared_cov.
PSD_TOL = 1e-10


def check_shared_cov(data: xr.Dataset) -> None:
    """``shared_cov`` (when present): the part of the errors every cell of an experiment shares.

    It must be finite and symmetric in every cell, positive semidefinite (smallest
    eigenvalue >= −PSD_TOL × the largest) and the same matrix in every cell of an
    experiment. It may exceed a cell's ``noise_cov`` in some direction (an
    estimate from all of the experiment's clusters against one from the cell's
    own): the model takes the cell's own part as the positive semidefinite part
    of ``noise_cov − shared_cov``.

    Raises
    ------
    DataError
        Naming the variable, the cell (experiment and segment) and what was found.
    """
    var = designs.SHARED_COV
    if var not in data:
        return
    shared = np.asarray(data[var].values, dtype=float)
    metrics = [str(m) for m in data[dims.METRIC].values]
    experiment = np.asarray(data[dims.EXPERIMENT].values)
    label = np.asarray(data[dims.SEGMENT_LABEL].values).astype(str)

    def where(i: int) -> str:
        return f"CellEffects variable {var!r} in cell {describe_cell(experiment[i], label[i])}"

    bad = np.argwhere(~np.isfinite(shared))
    if len(bad):
        i, j, k = (int(x) for x in bad[0])
        raise DataError(
            f"{where(i)} holds {shared[i, j, k]} for ({metrics[j]!r}, {metrics[k]!r}); it must "
            "hold finite numbers (0 where the cells of an experiment share no error)."
        )
    size = np.abs(shared).max(axis=(1, 2), initial=0.0)
    asym = np.abs(shared - np.swapaxes(shared, 1, 2)).max(axis=(1, 2), initial=0.0)
    if (asym > PSD_TOL * size).any():
        i = int(np.flatnonzero(asym > PSD_TOL * size)[0])
        j, k = (
            int(x)
            for x in np.unravel_index(np.argmax(np.abs(shared[i] - shared[i].T)), shared[i].shape)
        )
        raise DataError(
            f"{where(i)} is not symmetric: its entries for ({metrics[j]!r}, {metrics[k]!r}) "
            f"and ({metrics[k]!r}, {metrics[j]!r}) are {shared[i, j, k]:.6g} and "
            f"{shared[i, k, j]:.6g}; a covariance must be symmetric."
        )
    eig = np.linalg.eigvalsh(shared) if shared.size else np.zeros(shared.shape[:2])
    low = eig[:, 0] < -PSD_TOL * np.maximum(eig[:, -1], 0.0)
    if low.any():
        i = int(np.flatnonzero(low)[0])
        raise DataError(
            f"{where(i)} is not positive semidefinite: its smallest eigenvalue is "
            f"{eig[i, 0]:.6g} (largest {eig[i, -1]:.6g}); a covariance has none below 0."
        )
    first = (
        pd.Series(np.arange(len(experiment)))
        .groupby(pd.factorize(pd.Series(list(experiment), dtype=object))[0])
        .transform("first")
        .to_numpy()
    )
    differ = np.abs(shared - shared[first]).max(axis=(1, 2), initial=0.0) > PSD_TOL * size[first]
    if differ.any():
        i = int(np.flatnonzero(differ)[0])
        gap = float(np.abs(shared[i] - shared[first[i]]).max())
        raise DataError(
            f"{where(i)} differs from the one in cell "
            f"{describe_cell(experiment[first[i]], label[first[i]])} by up to {gap:.6g}; every "
            "cell of an experiment must carry the same shared part of the errors."
        )

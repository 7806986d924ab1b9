"""The distribution of users over the 24 segment cells: :class:`SegmentMix`.

A frozen dataclass that fails closed like the other settings of
:mod:`proxyscope.simulate.config`: every check runs in ``__post_init__`` and
raises :class:`proxyscope.errors.ParameterError` naming the field and the bad
value. With it, the read-only mapping that holds its probabilities and the
checks of levels and numbers that the other settings reuse.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

import numpy as np
import xarray as xr

from proxyscope.errors import ParameterError, number_range, suggestion
from proxyscope.simulate import scenario as sc

K = TypeVar("K")


class FrozenMapping(Mapping[K, float]):
    """A read-only, hashable, picklable mapping (a frozen dataclass field must not change)."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[K, float]) -> None:
        self._data = dict(data)

    def __getitem__(self, key: K) -> float:
        return self._data[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(tuple(self._data.items()))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._data == dict(other)
        return NotImplemented

    def __repr__(self) -> str:
        return repr(self._data)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self._data,))


#: Probabilities must sum to one within this tolerance.
SUM_TOLERANCE = 1e-9

_DEFAULT_MARGINALS: dict[str, dict[str, float]] = {
    sc.REGION: {"NA": 0.35, "LATAM": 0.20, "EU": 0.25, "IN": 0.20},
    sc.DEVICE: {"TV": 0.45, "Mobile": 0.45, "Desktop": 0.10},
    sc.TENURE: {"New": 0.30, "Existing": 0.70},
}


def is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_number(
    field: str,
    value: Any,
    low: float | None,
    high: float | None,
    *,
    open_low: bool = False,
    open_high: bool = False,
) -> float:
    """``value`` as a float within the bounds, or a ParameterError naming ``field``
    (e.g. "WorkspaceConfig.icc['early_ctr']") and the value."""
    ok = is_real(value) and math.isfinite(float(value))
    if ok:
        x = float(value)
        ok = (low is None or (x > low if open_low else x >= low)) and (
            high is None or (x < high if open_high else x <= high)
        )
    if not ok:
        want = number_range(low, high, open_low=open_low, open_high=open_high)
        raise ParameterError(f"{field}: must be {want}; got {value!r}.")
    return float(value)


def _check_probability(owner: str, value: Any, where: str) -> float:
    if not is_real(value) or not math.isfinite(float(value)):
        raise ParameterError(
            f"{owner}: probability for {where} must be a finite number; got {value!r}."
        )
    p = float(value)
    if p < 0.0 or p > 1.0:
        raise ParameterError(f"{owner}: probability for {where} must be in [0, 1]; got {p!r}.")
    return p


def _check_sum(owner: str, probs: Mapping[Any, float], shown: Mapping[Any, float]) -> None:
    total = math.fsum(probs.values())
    if abs(total - 1.0) > SUM_TOLERANCE:
        raise ParameterError(
            f"{owner}: probabilities must sum to 1; got {total!r} for {dict(shown)!r}."
        )


def _check_level(owner: str, column: str, level: Any) -> str:
    allowed = sc.LEVELS[column]
    if not isinstance(level, str) or level not in allowed:
        hint = suggestion(level, allowed) if isinstance(level, str) else ""
        raise ParameterError(
            f"{owner}: unknown {column} level {level!r}; expected one of {list(allowed)}.{hint}"
        )
    return level


def _marginal(column: str, value: Any) -> FrozenMapping[str]:
    owner = f"SegmentMix.{column}"
    if not isinstance(value, Mapping):
        raise ParameterError(
            f"{owner}: expected a mapping from {column} level to probability; got {value!r}."
        )
    probs = dict.fromkeys(sc.LEVELS[column], 0.0)
    for level, p in value.items():
        probs[_check_level(owner, column, level)] = _check_probability(owner, p, repr(level))
    _check_sum(owner, probs, value)
    return FrozenMapping(probs)


@dataclasses.dataclass(frozen=True)
class SegmentMix:
    """Distribution of users over the segment cells region × device × tenure.

    Two forms:

    - independent (the default): one marginal distribution per segment column;
      users draw region, device and tenure independently, one ``rng.choice``
      per column, exactly as the seed generator does;
    - joint (:meth:`from_joint`): a probability for each of the 24
      (region, device, tenure) combinations, drawn with a single
      ``rng.choice`` over the cells.

    Parameters
    ----------
    region, device, tenure : mapping of level to probability, optional
        Marginal probabilities. Levels left out have probability 0. Defaults:
        region NA/LATAM/EU/IN = .35/.20/.25/.20, device TV/Mobile/Desktop =
        .45/.45/.10, tenure New/Existing = .30/.70. In the joint form they are
        derived from ``cells`` (if also given they must agree with it).
    cells : mapping of (region, device, tenure) to probability, optional
        The joint form; prefer :meth:`from_joint`.

    Raises
    ------
    ParameterError
        On an unknown level, a probability outside [0, 1] or not finite, or
        probabilities that do not sum to 1 within 1e-9.
    """

    region: Mapping[str, float] | None = None
    device: Mapping[str, float] | None = None
    tenure: Mapping[str, float] | None = None
    cells: Mapping[tuple[str, str, str], float] | None = None

    def __post_init__(self) -> None:
        cells = self._validated_cells() if self.cells is not None else None
        for column in sc.SEGMENT_COLUMNS:
            given = getattr(self, column)
            if cells is None:
                value = _marginal(column, _DEFAULT_MARGINALS[column] if given is None else given)
            else:
                axis = sc.SEGMENT_COLUMNS.index(column)
                derived = {
                    lvl: math.fsum(p for key, p in cells.items() if key[axis] == lvl)
                    for lvl in sc.LEVELS[column]
                }
                if given is not None:
                    value = _marginal(column, given)
                    bad = {k: v for k, v in value.items() if abs(v - derived[k]) > SUM_TOLERANCE}
                    if bad:
                        raise ParameterError(
                            f"SegmentMix.{column}: marginal {dict(value)!r} disagrees with the "
                            f"marginal of cells {derived!r}."
                        )
                value = FrozenMapping(derived)
            object.__setattr__(self, column, value)
        object.__setattr__(self, "cells", cells)

    def _validated_cells(self) -> FrozenMapping[tuple[str, str, str]]:
        owner = "SegmentMix.cells"
        raw = self.cells
        if not isinstance(raw, Mapping):
            raise ParameterError(
                f"{owner}: expected a mapping from (region, device, tenure) to probability; "
                f"got {raw!r}."
            )
        probs = dict.fromkeys(sc.cell_labels(), 0.0)
        for key, p in raw.items():
            if not isinstance(key, tuple) or len(key) != 3:
                raise ParameterError(
                    f"{owner}: keys must be (region, device, tenure) tuples; got {key!r}."
                )
            levels = tuple(
                _check_level(owner, col, lvl)
                for col, lvl in zip(sc.SEGMENT_COLUMNS, key, strict=True)
            )
            probs[levels] = _check_probability(owner, p, repr(key))  # type: ignore[index]
        _check_sum(owner, probs, raw)
        return FrozenMapping(probs)

    @classmethod
    def from_joint(cls, cells: Mapping[tuple[str, str, str], float]) -> SegmentMix:
        """A mix given by its joint probabilities over the 24 segment cells.

        Parameters
        ----------
        cells : mapping of (region, device, tenure) to probability
            Combinations left out have probability 0; the values must sum to 1.

        Returns
        -------
        SegmentMix
            A joint-form mix, sampled with one ``rng.choice`` over the cells.
        """
        return cls(cells=cells)

    def concentrated(self, cell: tuple[str, str, str], share: float) -> SegmentMix:
        """This mix with a share of all users put into one cell (a shifted target cohort).

        Every cell keeps ``1 - share`` of its probability and ``cell`` gets
        ``share`` on top: with ``share=0.6``, 60% of users are drawn into
        ``cell`` and the other 40% follow this mix.
        """
        key = tuple(str(v) for v in cell)
        labels = sc.cell_labels()
        if key not in labels:
            raise ParameterError(
                f"The 'cell' parameter of SegmentMix.concentrated must be a (region, device, "
                f"tenure) tuple of known levels; got {cell!r}."
            )
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
            raise ParameterError(
                "The 'share' parameter of SegmentMix.concentrated must be a number in [0, 1]; "
                f"got {share!r}."
            )
        base = (1.0 - share) * self.cell_probabilities()
        joint = {
            lab: float(p) + (share if lab == key else 0.0)
            for lab, p in zip(labels, base, strict=True)
        }
        return SegmentMix.from_joint(joint)

    @property
    def is_joint(self) -> bool:
        """Whether the mix is in the joint form (sampled over cells at once)."""
        return self.cells is not None

    def marginal(self, column: str) -> np.ndarray:
        """Marginal probabilities of ``column`` ("region", "device" or "tenure") in level order."""
        values = getattr(self, column)
        return np.array([values[lvl] for lvl in sc.LEVELS[column]], dtype=float)

    def cell_probabilities(self) -> np.ndarray:
        """Probability of each of the 24 cells, flat in cell order (region-major)."""
        if self.cells is not None:
            return np.array([self.cells[key] for key in sc.cell_labels()], dtype=float)
        p = (
            self.marginal(sc.REGION)[:, None, None]
            * self.marginal(sc.DEVICE)[None, :, None]
            * self.marginal(sc.TENURE)[None, None, :]
        )
        return p.reshape(-1)

    def joint(self) -> xr.DataArray:
        """The 24-cell probability table over dims ``region``, ``device``, ``tenure``."""
        return xr.DataArray(
            self.cell_probabilities().reshape(sc.SHAPE),
            dims=sc.SEGMENT_COLUMNS,
            coords={col: list(sc.LEVELS[col]) for col in sc.SEGMENT_COLUMNS},
            name="mix_share",
        )

    def __repr__(self) -> str:
        if self.cells is not None:
            nonzero = {k: v for k, v in self.cells.items() if v > 0}
            return f"SegmentMix.from_joint({nonzero!r})"
        parts = ", ".join(f"{c}={dict(getattr(self, c))!r}" for c in sc.SEGMENT_COLUMNS)
        return f"SegmentMix({parts})"

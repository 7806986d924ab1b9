"""Everything a fit needs before sampling: structure, standardized data, coordinates, layout."""

from __future__ import annotations

import dataclasses
import functools

from proxyscope.data.cells import CellEffects
from proxyscope.model import coordinates as coords
from proxyscope.model.fitdata import FitData, fit_data, model_effects
from proxyscope.model.layout import Layout
from proxyscope.model.layout_build import build_layout
from proxyscope.model.posterior import ModelInfo
from proxyscope.model.priors import Priors
from proxyscope.model.structure import SegmentStructure


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A model configuration applied to one dataset, ready to sample."""

    structure: SegmentStructure
    data: FitData
    pooling: str
    priors: Priors
    cell_correlation: str
    noise: str
    metrics: tuple[str, ...]
    proxies: tuple[str, ...]
    coordinates: coords.Coordinates

    @property
    def learned_main(self) -> tuple[bool, ...]:
        return self.priors.learned_main(self.structure.levels)

    @functools.cached_property
    def layout(self) -> Layout:
        """The flat vector the sampler moves in these coordinates."""
        return build_layout(
            self.structure,
            self.pooling,
            self.priors,
            self.metrics,
            self.proxies,
            self.cell_correlation,
            self.coordinates,
            self.data.has_outcome_experiment_effect,
            self.data.bias_designs,
            self.data.n_periods,
        )

    def with_coordinates(self, chosen: coords.Coordinates) -> Prepared:
        """The same model and data sampled in other coordinates."""
        if chosen is self.coordinates:
            return self
        return dataclasses.replace(self, coordinates=chosen)


def prepare(
    effects: CellEffects,
    pooling: str,
    priors: Priors,
    cell_correlation: str,
    noise: str,
    timed: bool = False,
) -> Prepared:
    """Structure, standardized data and sampler coordinates of a fit of ``effects``
    (``timed``: the relation moves over the periods of ``effects``)."""
    structure, cell_segment = SegmentStructure.from_effects(effects)
    data = fit_data(model_effects(effects, noise), cell_segment, timed, structure.n_segments)
    return Prepared(
        structure=structure,
        data=data,
        pooling=pooling,
        priors=priors,
        cell_correlation=cell_correlation,
        noise=noise,
        metrics=effects.metrics,
        proxies=effects.proxies,
        coordinates=coords.choose(data, structure, pooling),
    )


def model_info(prepared: Prepared, effects: CellEffects) -> ModelInfo:
    """What a saved fit needs to read its draws (the draws are stored in named,
    coordinate-free form, so no interaction entry is marked centred)."""
    n_rows = len(prepared.metrics)
    return ModelInfo(
        pooling=prepared.pooling,
        priors=prepared.priors.to_dict(timed=bool(prepared.data.periods)),
        outcome=effects.outcome,
        proxies=effects.proxies,
        directions=effects.directions,
        structure=prepared.structure,
        scales=tuple(float(x) for x in prepared.data.scales),
        centred=tuple(
            tuple(False for _ in range(prepared.structure.n_segments)) for _ in range(n_rows)
        ),
        learned_main=prepared.learned_main,
        experiments=tuple(prepared.data.experiments.tolist()),
        order=tuple(int(x) for x in prepared.data.order),
        cell_correlation=prepared.cell_correlation,
        noise=prepared.noise,
        bias_designs=prepared.data.bias_designs,
        periods=prepared.data.periods,
    )

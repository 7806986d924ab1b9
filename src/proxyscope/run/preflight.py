"""What a spec asks for that can be checked before anything compiles or samples.

``proxyscope validate`` and ``proxyscope run`` both call these, so a spec that
validates does not fail minutes later: the sampler settings are checked against the
chosen sampler's real ones, and the transport target's segments against the segment
columns and levels of the data's cells (and, without pooling, against the segment
combinations the data hold, the only ones such a model can predict).
"""

from __future__ import annotations

from proxyscope.analyses.implied import resolve_target
from proxyscope.data.cells import CellEffects
from proxyscope.errors import ProxyscopeError, SpecError
from proxyscope.model.settings import check_sampler_settings, resolve_sampler
from proxyscope.model.structure import SegmentStructure
from proxyscope.run.transport import transport_target
from proxyscope.spec import ModelSpec, SamplerSpec


def check_settings(sampler: SamplerSpec, surface: str = "spec") -> None:
    """The sampler settings against the chosen sampler's real ones, before anything
    compiles; the error names them as ``surface`` does (spec keys, or ``--setting``)."""
    if not sampler.settings:
        return
    owner, param = {"cli": ("proxyscope fit", "--setting")}.get(
        surface, ("the spec", "[sampler] settings")
    )
    try:
        check_sampler_settings(
            dict(sampler.settings), resolve_sampler(sampler.name), owner=owner, param=param
        )
    except ProxyscopeError as exc:
        raise SpecError(str(exc)) from None


def check_sampler(spec: ModelSpec) -> None:
    """``[sampler] settings`` against the sampler ``[sampler] name`` resolves to."""
    check_settings(spec.sampler)


def check_transport(spec: ModelSpec, effects: CellEffects) -> None:
    """``[analysis.transport]``'s target read and resolved against the cells' segments."""
    if spec.analysis.transport is None:
        return
    structure, _ = SegmentStructure.from_effects(effects)
    try:
        combos, _shares = resolve_target(structure, transport_target(spec))
    except ProxyscopeError as exc:
        raise SpecError(f"[analysis.transport]: {exc}") from None
    if spec.model.pooling == "none" and structure.columns:
        seen = structure.fitted_segment(structure.level_codes(combos))
        unseen = [
            structure.label_of([str(v) for v in combos.iloc[i]])
            for i, index in enumerate(seen)
            if index is None
        ]
        if unseen:
            raise SpecError(
                f"[analysis.transport]: segment combination(s) {unseen[:5]} are not in the data "
                'and pooling = "none" cannot predict them; use additive or exchangeable '
                "pooling, or leave them out of the target."
            )

"""A spec's transport target, and the simulator's exact answer for it.

:func:`transport_target` is what ``[analysis.transport]`` names (shares, or a
table in a file); :func:`simulated_truth` is the expected long-term effect the
simulated world holds for that target, to set beside the model's prediction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from proxyscope import dims
from proxyscope.run.load import read_target
from proxyscope.simulate.mix import SegmentMix
from proxyscope.spec import ModelSpec

if TYPE_CHECKING:
    from proxyscope.simulate.world import World


def transport_target(spec: ModelSpec) -> Any:
    """The spec's transport target: its shares mapping, or the table in its file."""
    tr = spec.analysis.transport
    assert tr is not None
    if tr.shares is not None:
        return dict(tr.shares)
    assert tr.path is not None
    return read_target(spec.resolve(tr.path))


def simulated_truth(world: World, target: Any, spec: ModelSpec) -> float | None:
    """The simulator's exact expected long-term effect of a new experiment on ``target``.

    Only for a shares mapping over (region, device, tenure) of the streaming
    world with its default outcome; None otherwise.
    """
    if tuple(spec.segments) != ("region", "device", "tenure") or not isinstance(target, Mapping):
        return None
    try:
        parts = {tuple(p.strip() for p in str(k).split("/")): float(v) for k, v in target.items()}
        total = sum(parts.values())
        cells = {k: v / total for k, v in parts.items() if len(k) == 3}
        if len(cells) != len(parts):
            return None
        truth = world.population_truth(SegmentMix.from_joint(cells))
        value = truth["pop_mix_effect_mean"].sel({dims.METRIC: spec.outcome})
        return float(value)
    except (ValueError, KeyError, TypeError):
        return None

"""What a spec asks for that can be checked before anything compiles or samples.

``proxyscope validate`` and ``proxyscope run`` both call these, so a spec that
validates does not fail minutes later. Before the data are read,
:func:`check_spec` checks the sampler settings against the chosen sampler's real
ones, reads the transport target's file (when the target is a file) and opens an
existing weights ledger; after the data are read, :func:`check_transport` checks
the transport target's segments against the segment columns and levels of the
data's cells (and, without pooling, against the segment combinations the data
hold, the only ones such a model can predict).

Every problem is a :class:`~proxyscope.errors.SpecError` naming the spec key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from proxyscope.analyses.implied import resolve_target
from proxyscope.data.cells import CellEffects
from proxyscope.errors import ProxyscopeError, SpecError
from proxyscope.ledger import LedgerBusyError, weights_history
from proxyscope.model.settings import check_sampler_settings, resolve_sampler
from proxyscope.model.structure import SegmentStructure
from proxyscope.run.transport import transport_target
from proxyscope.spec import ModelSpec, SamplerSpec

#: Seconds the preflight waits for a ledger another process is writing to; past
#: that the ledger is not checked now (the run's own write waits its full timeout).
LEDGER_WAIT = 2.0


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


def check_spec(spec: ModelSpec) -> None:
    """Everything :func:`check_transport` does not need the data for: the sampler
    settings, the transport target's file, and the weights ledger."""
    check_sampler(spec)
    if spec.analysis.transport is not None:
        _target(spec)
    check_ledger(spec)


def check_ledger(spec: ModelSpec) -> None:
    """``[analysis].ledger``: a new file, or an existing proxyscope ledger (read back
    now, not after the fits when the weights are recorded)."""
    if spec.analysis.ledger is None:
        return
    path = Path(os.path.expanduser(spec.analysis.ledger))  # as run_spec resolves it
    where = f"{spec.origin}: [analysis].ledger"
    if path.is_dir():
        raise SpecError(
            f"{where} {str(path)!r} is a directory; name a ledger file (new or existing)."
        )
    if not path.exists():
        return
    try:
        weights_history(path, timeout=LEDGER_WAIT)
    except LedgerBusyError:
        return  # in use by another process: it is a ledger, and the run will wait for it
    except ProxyscopeError as exc:
        raise SpecError(f"{where}: {exc}") from None


def check_transport(spec: ModelSpec, effects: CellEffects) -> None:
    """``[analysis.transport]``'s target read and resolved against the cells' segments."""
    if spec.analysis.transport is None:
        return
    target = _target(spec)
    structure, _ = SegmentStructure.from_effects(effects)
    try:
        combos, _shares = resolve_target(structure, target)
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


def _target(spec: ModelSpec) -> Any:
    """The transport target: its shares, or its file read (a file that is missing, a
    directory or not a target is a SpecError naming ``[analysis.transport].path``)."""
    tr = spec.analysis.transport
    assert tr is not None
    if tr.path is not None:
        path = spec.resolve(tr.path)
        if not path.is_file():
            found = "is a directory" if path.is_dir() else "does not exist"
            raise SpecError(
                f"{spec.origin}: [analysis.transport].path {str(path)!r} {found}; name a "
                "target file (CSV, Parquet or JSON)."
            )
    try:
        return transport_target(spec)
    except ProxyscopeError as exc:
        raise SpecError(f"{spec.origin}: [analysis.transport].path: {exc}") from None

"""What a spec asks for that can be checked before anything compiles or samples.

``proxyscope validate`` and ``proxyscope run`` both call these, so a spec that
validates does not fail minutes later. Before the data are read,
:func:`check_spec` checks the sampler settings against the chosen sampler's real
ones, reads the transport target's file (when the target is a file) and opens an
existing weights ledger; after the data are read, :func:`check_cells` checks
the transport target's segments against the segment columns and levels of the
data's cells (and, without pooling, against the segment combinations the data
hold, the only ones such a model can predict), and for a model over time
(``[model].time``) the periods it will fit against ``[analysis].period`` and
``[analysis.stability]`` (:func:`check_time`).

Every problem is a :class:`~proxyscope.errors.SpecError` naming the spec key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from proxyscope.analyses.backtest.rolling import MIN_ROLLING_TRAIN, default_origins
from proxyscope.analyses.implied import resolve_target
from proxyscope.data.cells import CellEffects
from proxyscope.errors import ProxyscopeError, SpecError, suggestion
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


def check_cells(spec: ModelSpec, effects: CellEffects) -> None:
    """What the spec asks of the cells, before anything is fitted: the transport target
    (:func:`check_transport`) and the periods (:func:`check_time`)."""
    check_transport(spec, effects)
    check_time(spec, effects)


def _model_cells(spec: ModelSpec, effects: CellEffects) -> CellEffects:
    """The cells as the spec's model over time groups them (see :func:`model_periods`)."""
    time = spec.model.time_argument()
    where = f"{spec.origin}: [model].time"
    if not effects.has_time:
        raise SpecError(
            f"{where} needs cells that carry their experiments' start dates; these have none "
            "(set [data].time to the column with each experiment's start)."
        )
    if time is True:
        return effects
    try:
        return effects.with_periods(time)
    except ProxyscopeError as exc:
        raise SpecError(f"{where} = {time!r} does not fit the data's starts: {exc}") from None


def model_periods(spec: ModelSpec, effects: CellEffects) -> tuple[str, ...]:
    """The periods the spec's model over time fits on ``effects`` (empty for a static
    model): the cells' own (``time = true``) or their starts regrouped.

    Raises
    ------
    SpecError
        ``[model].time`` on cells without start dates, or a grouping that does not
        fit their starts (e.g. a calendar grouping of numbered starts).
    """
    if spec.model.time is None:
        return ()
    return tuple(_model_cells(spec, effects).periods)


def check_time(spec: ModelSpec, effects: CellEffects) -> None:
    """A model over time: at least two periods, and the periods ``[analysis].period``,
    ``[analysis.stability].between`` and ``[analysis.rolling_backtest].origins`` name
    among them."""
    periods = model_periods(spec, effects)
    if not periods:
        return
    if len(periods) < 2:
        raise SpecError(
            f"{spec.origin}: [model].time: the experiments' starts fall in one period "
            f"({periods[0]!r}); a relation that moves over time needs at least two (group the "
            "starts more finely, or leave [model].time out for a static relation)."
        )

    def check(key: str, label: str) -> None:
        if label not in periods:
            raise SpecError(
                f"{spec.origin}: {key} must be one of the model's periods {list(periods)}; "
                f"got {label!r}.{suggestion(label, periods)}"
            )

    a = spec.analysis
    if a.period is not None:
        check("[analysis].period", a.period)
    if a.stability is not None:
        for i, pair in enumerate(a.stability.between):
            for j, label in enumerate(pair):
                check(f"[analysis.stability].between[{i}][{j}]", label)
    if a.rolling_backtest is not None:
        for i, label in enumerate(a.rolling_backtest.origins):
            check(f"[analysis.rolling_backtest].origins[{i}]", label)
        check_origins(spec, _model_cells(spec, effects))


def check_origins(spec: ModelSpec, cells: CellEffects) -> None:
    """Each origin of ``[analysis.rolling_backtest]`` (or each default one) leaves enough
    experiments to fit on and at least one after it to judge (``cells`` grouped as the
    model groups them), as the backtest will require after the main fit."""
    rb = spec.analysis.rolling_backtest
    assert rb is not None
    periods = list(cells.periods)
    origins = list(rb.origins) or default_origins(periods)
    first = pd.Series(np.asarray(cells.period_index), index=pd.Index(cells.experiment))
    started = first.groupby(level=0, sort=False).first().to_numpy()
    counts = {p: int((started == i).sum()) for i, p in enumerate(periods)}
    if not origins:
        raise SpecError(
            f"{spec.origin}: [analysis.rolling_backtest] needs at least two periods with an "
            f"origin between them; experiments per period: {counts}."
        )
    for origin in origins:
        cut = periods.index(origin)
        train, later = int((started <= cut).sum()), int((started > cut).sum())
        if train < MIN_ROLLING_TRAIN or later == 0:
            raise SpecError(
                f"{spec.origin}: [analysis.rolling_backtest]: the origin {origin!r} leaves "
                f"{train} experiment(s) to fit on (at least {MIN_ROLLING_TRAIN}) and {later} "
                f"after it to judge (at least 1); experiments per period: {counts}. Choose "
                "origins = [...] between them."
            )


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

"""The whole spec (:class:`ModelSpec`: its sections, derived roles and paths) and
its canonical form: :func:`to_dict`, :func:`dumps_spec` (every default filled in,
fixed order, so two specs can be diffed) and :func:`dump_spec`."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomli_w

from proxyscope._io import write_text_atomic
from proxyscope.spec.constants import (
    ASOS_ENV,
    ASOS_OUTCOME,
    ASOS_PROXY,
    ASOS_SEGMENT,
    SPEC_VERSION,
)
from proxyscope.spec.parse_design import PER_ARM
from proxyscope.spec.sections import (
    AnalysisSpec,
    AsosSpec,
    ColumnsSpec,
    DataSpec,
    ModelSection,
    ReportSpec,
    SamplerSpec,
)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A complete, validated model spec.

    ``base_dir`` is the directory relative paths are resolved against (the
    spec file's); it and ``origin`` are not part of the spec's content and
    are ignored by ``==``.
    """

    name: str
    data: DataSpec
    columns: ColumnsSpec | None
    # The section defaults are frozen dataclasses, safe to share (RUF009 cannot
    # see that across modules).
    model: ModelSection = ModelSection()  # noqa: RUF009
    sampler: SamplerSpec = SamplerSpec()  # noqa: RUF009
    analysis: AnalysisSpec = AnalysisSpec()  # noqa: RUF009
    report: ReportSpec = ReportSpec()  # noqa: RUF009
    description: str | None = None
    citation: str | None = None
    spec_version: int = SPEC_VERSION
    base_dir: Path = dataclasses.field(default=Path("."), compare=False)
    origin: str = dataclasses.field(default="<spec>", compare=False)

    # -- derived roles -----------------------------------------------------
    @property
    def outcome(self) -> str:
        return ASOS_OUTCOME if self.columns is None else self.columns.outcome

    @property
    def proxies(self) -> tuple[str, ...]:
        return (ASOS_PROXY,) if self.columns is None else self.columns.proxies

    @property
    def segments(self) -> tuple[str, ...]:
        if self.columns is not None:
            return self.columns.segments
        asos = self.data.asos or AsosSpec()
        return () if asos.metrics is not None and len(asos.metrics) == 1 else (ASOS_SEGMENT,)

    def resolve(self, path: str | os.PathLike[str]) -> Path:
        """``path`` relative to the spec's directory (absolute paths unchanged)."""
        p = Path(os.path.expanduser(os.fspath(path)))
        return p if p.is_absolute() else Path(os.path.normpath(self.base_dir / p))

    def data_path(self, override: str | os.PathLike[str] | None = None) -> Path | None:
        """The data file: ``override`` (e.g. ``--data``), then for ASOS the
        ``PROXYSCOPE_ASOS_PATH`` variable, then ``[data].path``; None when
        the data are simulated."""
        if override is not None:
            return Path(os.fspath(override))
        if self.data.kind == "asos" and os.environ.get(ASOS_ENV):
            return Path(os.environ[ASOS_ENV])
        if self.data.path is not None:
            return self.resolve(self.data.path)
        return None

    def to_dict(self) -> dict[str, Any]:
        """The canonical content as plain TOML-able data (None values left out)."""
        return to_dict(self)

    def dumps(self) -> str:
        """Canonical TOML text; :func:`loads_spec` reads it back to an equal spec."""
        return dumps_spec(self)

    def replace(self, **changes: Any) -> ModelSpec:
        """A copy with top-level fields replaced (not re-validated)."""
        return dataclasses.replace(self, **changes)


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------


def _nonempty(d: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return dict(d) if d else None


def to_dict(spec: ModelSpec) -> dict[str, Any]:
    """Canonical plain content of ``spec`` (fixed order, every default written)."""
    out: dict[str, Any] = {
        "spec_version": spec.spec_version,
        "name": spec.name,
        "description": spec.description,
        "citation": spec.citation,
        "data": _data_dict(spec.data),
    }
    if spec.columns is not None:
        out["columns"] = _columns_dict(spec.columns)
    m = spec.model
    out["model"] = {
        "pooling": m.pooling,
        "cell_correlation": m.cell_correlation,
        "noise": m.noise,
        "priors": _nonempty(m.priors),
        # Written only when set, so the hash of every static spec stays.
        "time": list(m.time) if isinstance(m.time, tuple) else m.time,
    }
    s = spec.sampler
    out["sampler"] = {
        "name": s.name,
        "draws": s.draws,
        "tune": s.tune,
        "chains": s.chains,
        "seed": s.seed,
        "settings": _nonempty(s.settings),
    }
    # Only when changed, so the hash of every spec that leaves them alone stays.
    if s.followups != SamplerSpec.followups:
        out["sampler"]["followups"] = s.followups
    if s.followup_budget != SamplerSpec.followup_budget:
        out["sampler"]["followup_budget"] = s.followup_budget
    a = spec.analysis
    analysis: dict[str, Any] = {
        "ci": a.ci,
        "threshold": a.threshold,
        "probability": a.probability,
        "ledger": a.ledger,
    }
    if a.transport is not None:
        tr = a.transport
        analysis["transport"] = {
            "name": tr.name,
            "path": tr.path,
            "proxy_effects": _nonempty(tr.proxy_effects),
            "proxy_se": _nonempty(tr.proxy_se),
            "shares": _nonempty(tr.shares),
        }
    if a.compare is not None:
        cm = a.compare
        analysis["compare"] = {
            "kind": cm.kind,
            "poolings": list(cm.poolings),
            "refit": cm.refit,
            "max_refits": cm.max_refits,
            "proxy_sets": {k: list(v) for k, v in cm.proxy_sets.items()} or None,
        }
    if a.sensitivity is not None:
        analysis["sensitivity"] = {"correlations": list(a.sensitivity.correlations)}
    # The time keys only when set, so the hash of every spec that leaves them alone stays.
    if a.period is not None:
        analysis["period"] = a.period
    if a.stability is not None:
        st = a.stability
        analysis["stability"] = {
            "between": [list(pair) for pair in st.between] or None,
            "probability": st.probability,
            "segments": st.segments,
        }
    if a.rolling_backtest is not None:
        rb = a.rolling_backtest
        analysis["rolling_backtest"] = {
            "origins": list(rb.origins) or None,
            "draws": rb.draws,
            "tune": rb.tune,
            "chains": rb.chains,
        }
    out["analysis"] = analysis
    r = spec.report
    if r.title is not None or r.out is not None:
        out["report"] = {"title": r.title, "out": r.out}
    return _drop_none(out)


def _data_dict(d: DataSpec) -> dict[str, Any]:
    """``[data]`` (or one ``[[data.extra]]`` source, without its columns)."""
    # A source read by a design has no engine or dropna (did and synthetic_control no
    # minimum of users per arm either): the canonical form leaves out what it refuses.
    no_arms = d.reads_design and d.design not in PER_ARM
    data: dict[str, Any] = {
        "kind": d.kind,
        "path": d.path,
        "engine": d.engine if d.kind == "users" and not d.reads_design else None,
        "min_users_per_arm": None if d.kind == "estimates" or no_arms else d.min_users_per_arm,
        "dropna": None if d.kind == "estimates" or d.reads_design else d.dropna,
        "correlation": d.correlation,
        # The keys below are written only when set, so the hash of every spec that
        # leaves them alone stays.
        "covariance": d.covariance,
        "design": d.design,
        "cluster": d.cluster,
        "exposure": d.exposure,
        "exposure_values": _nonempty(d.exposure_values),
        "time": d.time,
        "period": list(d.period) if isinstance(d.period, tuple) else d.period,
    }
    if d.design_options:
        assert d.design is not None
        data[d.design] = dict(d.design_options)
    if d.simulate is not None:
        data["simulate"] = dataclasses.asdict(d.simulate)
    if d.asos is not None:
        ao = d.asos
        data["asos"] = {
            "metrics": None if ao.metrics is None else list(ao.metrics),
            "outcome_metric": ao.outcome_metric,
            "early_day": ao.early_day,
            "scale": ao.scale,
            "variants": None if ao.variants is None else list(ao.variants),
        }
    if d.extra:
        data["extra"] = [
            {**_data_dict(x.data), "columns": _columns_dict(x.columns, shared=False)}
            for x in d.extra
        ]
    return data


def _columns_dict(c: ColumnsSpec, *, shared: bool = True) -> dict[str, Any]:
    """``[columns]``; ``shared=False`` leaves out the keys every source shares (an extra
    source's columns)."""
    cols: dict[str, Any] = {
        "experiment": c.experiment,
        "treatment": c.treatment,
        "treated_value": c.treated_value,
        "outcome": c.outcome,
        "proxies": list(c.proxies),
        "segments": list(c.segments),
        "count": c.count if isinstance(c.count, str) else None,
        "directions": dict(c.directions),
    }
    for key in ("count", "mean", "variance", "covariance"):
        v = getattr(c, key)
        if isinstance(v, Mapping):
            cols[key] = dict(v)
    for key in ("metric", "estimate", "se", "n_treat", "n_control"):
        cols[key] = getattr(c, key)
    if not shared:
        for key in ("outcome", "proxies", "segments", "directions"):
            del cols[key]
    return cols


def _drop_none(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {k: _drop_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_drop_none(v) for v in obj]
    return obj


def dumps_spec(spec: ModelSpec) -> str:
    """Canonical TOML text of ``spec`` (comments are not kept)."""
    header = [
        f"proxyscope model spec (canonical form, spec_version {spec.spec_version}).",
        "Written by proxyscope; every default is spelled out.",
    ]
    comments = "".join(f"# {line}\n" for line in header)
    return comments + "\n" + tomli_w.dumps(to_dict(spec))


def dump_spec(spec: ModelSpec, path: str | os.PathLike[str]) -> Path:
    """Write the canonical TOML of ``spec`` to ``path`` (atomically)."""
    return write_text_atomic(path, dumps_spec(spec))

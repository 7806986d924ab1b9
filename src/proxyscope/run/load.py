"""What a spec's data section becomes: the cells (:class:`~proxyscope.CellEffects`).

:func:`load_effects` reads user-level rows (from a file, or simulated and
written to Parquet first; clustered when ``[data].cluster`` says so), rows that
a design reads (``[data.<design>]``: :mod:`proxyscope.run.designs`), per-arm
summaries, the ASOS snapshots, or estimates made elsewhere, as the spec's
``[data]`` and ``[columns]`` say (with the experiments' starts when ``[data].time``
names their column), and joins the ``[[data.extra]]`` sources'
cells to them. :func:`read_table` and
:func:`read_target` read the tables a run or a command is given.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pandas as pd
from pyarrow import ArrowException as ArrowError

from proxyscope.data.arms import from_arm_summaries
from proxyscope.data.cells import CellEffects
from proxyscope.data.designs import AB, EXTERNAL
from proxyscope.data.estimates import from_estimates
from proxyscope.data.sources import CSV_SUFFIXES, PARQUET_SUFFIXES, read_error, resolve_files
from proxyscope.data.summarize import summarize
from proxyscope.data.time import check_period
from proxyscope.data.time_input import add_time, frame_starts
from proxyscope.datasets.asos import load_asos
from proxyscope.errors import DataError, ParameterError, ProxyscopeError
from proxyscope.run.designs import design_cells
from proxyscope.run.progress import Log, quiet
from proxyscope.spec import ASOS_ENV, ColumnsSpec, DataSpec, ModelSpec

if TYPE_CHECKING:
    from proxyscope.simulate.world import World


@dataclasses.dataclass
class Loaded:
    """Cells read for a spec, and what was learned on the way."""

    effects: CellEffects
    source: str
    world: World | None = None


def load_effects(
    spec: ModelSpec,
    *,
    data: str | os.PathLike[str] | None = None,
    out: Path | None = None,
    correlation: float | None = None,
    log: Log = quiet,
) -> Loaded:
    """Read the spec's data into :class:`~proxyscope.CellEffects`.

    The main source (``[data]``) and then each ``[[data.extra]]`` source are read
    and their cells concatenated (:meth:`~proxyscope.CellEffects.concat`).

    Parameters
    ----------
    spec : ModelSpec
    data : path, optional
        Replaces the main source's path (``--data``).
    out : Path, optional
        Where simulated users are written as Parquet before summarizing; a
        temporary directory when None.
    correlation : float, optional
        Replaces the assumed correlation of every source that takes one
        (``[data].correlation`` and the extra sources'; the sensitivity analysis).
    """
    main = _load_source(
        spec, spec.data, spec.columns, spec.data_path(data), correlation, out=out, log=log
    )
    if not spec.data.extra:
        return main
    effects = join_extras(spec, main.effects, correlation=correlation, log=log)
    sources = [main.source, *(str(spec.resolve(x.data.path or "")) for x in spec.data.extra)]
    return Loaded(effects, " + ".join(sources), main.world)


def join_extras(
    spec: ModelSpec, main: CellEffects, *, correlation: float | None = None, log: Log = quiet
) -> CellEffects:
    """``main`` (the main source's cells) and the cells of every ``[[data.extra]]``
    source, concatenated in that order (``main`` itself without extra sources)."""
    if not spec.data.extra:
        return main
    parts = [main]
    for x in spec.data.extra:
        assert x.data.path is not None
        path = spec.resolve(x.data.path)
        parts.append(
            _load_source(spec, x.data, x.columns, path, correlation, out=None, log=log).effects
        )
    log(f"joining the cells of {len(parts)} sources into one history")
    return CellEffects.concat(parts)


def _load_source(
    spec: ModelSpec,
    d: DataSpec,
    cols: ColumnsSpec | None,
    path: Path | None,
    correlation: float | None,
    *,
    out: Path | None,
    log: Log,
) -> Loaded:
    """One source's cells (the main one, or an extra one)."""
    rho = d.correlation if correlation is None or not d.takes_correlation else correlation
    if d.kind == "asos":
        if path is None:
            raise ParameterError(
                f"{spec.origin}: no ASOS file: set [data].path, pass --data, or set ${ASOS_ENV}."
            )
        asos = d.asos
        assert asos is not None and rho is not None
        metric: int | list[int] | None = None
        if asos.metrics is not None:
            metric = asos.metrics[0] if len(asos.metrics) == 1 else list(asos.metrics)
        log(f"reading the ASOS experiments from {path} (assumed noise correlation {rho:g})")
        effects = load_asos(
            path,
            metric=metric,
            outcome_metric=asos.outcome_metric,
            early_day=asos.early_day,
            scale=asos.scale,
            correlation=rho,
            variants=None if asos.variants is None else list(asos.variants),
            min_users_per_arm=d.min_users_per_arm,
        )
        return Loaded(effects, str(path))

    assert cols is not None
    if d.kind == "estimates":
        assert path is not None
        table = read_table(path)
        pairs = None if d.covariance is None else read_table(spec.resolve(d.covariance))
        shown = "" if rho is None else f" (assumed correlation of their errors {rho:g})"
        log(f"building cells from {len(table):,} estimates in {path}{shown}")
        assert cols.metric is not None and cols.estimate is not None and cols.se is not None
        effects = from_estimates(
            table,
            experiment=cols.experiment,
            metric=cols.metric,
            estimate=cols.estimate,
            se=cols.se,
            outcome=cols.outcome,
            proxies=list(cols.proxies),
            segments=list(cols.segments),
            directions=dict(cols.directions),
            covariance=pairs,
            correlation=None if pairs is not None else rho,
            design=d.design or EXTERNAL,
            n_treat=cols.n_treat,
            n_control=cols.n_control,
            **d.time_arguments(),
        )
        return Loaded(effects, str(path))

    if d.kind == "arm_summaries":
        assert path is not None and cols.treatment is not None
        table = read_table(path)
        log(f"building cells from {len(table):,} per-arm rows in {path}")
        covariance = None
        if cols.covariance:
            # Keys are metric pairs "a|b" (the spec checked them).
            pairs_of = {tuple(k.split("|", 1)): v for k, v in cols.covariance.items()}
            covariance = cast("dict[tuple[str, str], str]", pairs_of)
        assert cols.count is not None and cols.mean is not None and cols.variance is not None
        effects = from_arm_summaries(
            table,
            experiment=cols.experiment,
            arm=cols.treatment,
            treated_value=cols.treated_value,
            outcome=cols.outcome,
            proxies=list(cols.proxies),
            count=cols.count if isinstance(cols.count, str) else dict(cols.count),
            mean=dict(cols.mean),
            variance=dict(cols.variance),
            segments=list(cols.segments),
            covariance=covariance,
            correlation=0.0 if rho is None else rho,
            directions=dict(cols.directions),
            min_users_per_arm=d.min_users_per_arm,
            dropna=d.dropna,
            design=d.design or AB,
            **d.time_arguments(),
        )
        return Loaded(effects, str(path))

    if d.reads_design:
        assert path is not None
        table = read_table(path)
        effects = design_cells(d, cols, table, source=str(path), log=log)
        return Loaded(design_time(d, cols, table, effects), str(path))

    if path is None:
        sim = d.simulate
        assert sim is not None
        log(
            f"simulating {sim.n_users:,} users in {sim.n_experiments} experiments (seed {sim.seed})"
        )
        # The simulator (and scipy) is imported only when a spec simulates: loading
        # a file stays fast.
        from proxyscope.simulate.world import streaming

        world = streaming(n_users=sim.n_users, n_experiments=sim.n_experiments, seed=sim.seed)
        if out is None:
            import tempfile

            with tempfile.TemporaryDirectory(prefix="proxyscope-") as tmp:
                return Loaded(
                    _summarize_file(d, cols, _write_users(world, Path(tmp), log), log),
                    "simulated",
                    world,
                )
        return Loaded(
            _summarize_file(d, cols, _write_users(world, out, log), log), "simulated", world
        )
    return Loaded(_summarize_file(d, cols, path, log), str(path))


def _write_users(world: World, out: Path, log: Log) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "users.parquet"
    world.users.to_parquet(path, index=False)
    log(f"wrote the users to {path}")
    return path


def _summarize_file(d: DataSpec, cols: ColumnsSpec, path: Path, log: Log) -> CellEffects:
    clustered = f", clustered by {d.cluster!r}" if d.cluster is not None else ""
    log(f"summarizing {path} with {d.engine}{clustered}")
    return summarize(
        os.fspath(path),
        **cols.roles(),
        **cluster_roles(d),
        engine=d.engine,
        treated_value=cols.treated_value,
        min_users_per_arm=d.min_users_per_arm,
        dropna=d.dropna,
        **d.time_arguments(),
    )


def design_time(
    d: DataSpec, cols: ColumnsSpec, table: pd.DataFrame, effects: CellEffects
) -> CellEffects:
    """The cells a design built, with their experiments' starts from the rows it read
    (``[data].time``; the cells unchanged without it)."""
    if d.time is None:
        return effects
    owner = f"the {d.design} design"
    starts = frame_starts(table, experiment=cols.experiment, time=d.time, owner=owner)
    grouping = check_period(d.time_arguments()["period"], owner=owner)
    return add_time(effects, starts, grouping, column=d.time, owner=owner)


def cluster_roles(d: DataSpec, *, exposure_values: bool = True) -> dict[str, Any]:
    """The cluster and exposure arguments of ``summarize`` that the source sets (only
    those, so a source without them calls ``summarize`` as before)."""
    out: dict[str, Any] = {}
    if d.cluster is not None:
        out["cluster"] = d.cluster
    if d.exposure is not None:
        out["exposure"] = d.exposure
    if exposure_values and d.exposure_values:
        out["exposure_values"] = dict(d.exposure_values)
    return out


def read_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A CSV or Parquet file (or several, by directory or glob) as one DataFrame."""
    files = resolve_files(path, owner="proxyscope")
    frames = []
    for p in files.paths:
        try:
            if files.format == "parquet":
                frames.append(pd.read_parquet(p))
            else:
                # Only empty fields are missing: "NA" is a region (North America), not NaN.
                frames.append(pd.read_csv(p, keep_default_na=False, na_values=[""]))
        except (ValueError, OSError, ArrowError) as exc:  # pandas' and pyarrow's reader errors
            raise read_error(str(p), f"a {files.format.upper()} file", exc) from None
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def read_target(path: str | os.PathLike[str]) -> Any:
    """A transport target from a file.

    CSV or Parquet: a table with the segment columns (one row per user, or
    with a ``share``/``count``/``n``/``users`` column). JSON: an object
    ``{"A / B / C": share, ...}`` or a list of records like the table.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ParameterError, DataError
        The file is not a target (wrong suffix, unreadable, empty, a JSON value
        that is not a share, a label given twice); the message names the file.
        What the table holds is checked against the fit by
        :func:`proxyscope.analyses.implied.resolve_target`.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no target file at {str(p)!r}")
    if p.suffix.lower() == ".json":
        return _json_target(p)
    kind = "Parquet" if p.name.lower().endswith(PARQUET_SUFFIXES) else "CSV"
    if not p.name.lower().endswith(PARQUET_SUFFIXES + CSV_SUFFIXES):
        raise ParameterError(
            f"{p}: a target file must be CSV ({', '.join(CSV_SUFFIXES)}), Parquet "
            f"({', '.join(PARQUET_SUFFIXES)}) or JSON (.json); got {p.suffix or 'no suffix'!r}."
        )
    try:
        return read_table(p)
    except ProxyscopeError:
        raise
    # The file is parsed here and nowhere else: pandas and pyarrow say "not a table"
    # with these (EmptyDataError, ParserError, UnicodeDecodeError and ArrowInvalid are
    # ValueErrors; an unreadable file an OSError).
    except (ValueError, OSError) as exc:
        raise DataError(
            f"{p}: not a readable {kind} target table "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'empty'})."
        ) from None


def _json_target(p: Path) -> Any:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in items]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice:
            raise ParameterError(f"{p}: the JSON target gives {twice} more than once.")
        return dict(items)

    def constant(name: str) -> float:
        raise ParameterError(f"{p}: the JSON target holds {name}; shares must be finite numbers.")

    try:
        doc = json.loads(
            p.read_text(encoding="utf-8"), object_pairs_hook=pairs, parse_constant=constant
        )
    except UnicodeDecodeError:
        raise ParameterError(f"{p}: not a UTF-8 text file (a JSON target is text).") from None
    except OSError as exc:
        raise DataError(f"{p}: cannot be read ({exc.strerror or exc}).") from None
    except json.JSONDecodeError as exc:
        raise ParameterError(f"{p}: not valid JSON: {exc}.") from None
    if isinstance(doc, dict):
        bad = {
            k: v
            for k, v in doc.items()
            if isinstance(v, bool)
            or not isinstance(v, int | float)
            or (isinstance(v, float) and not math.isfinite(v))  # 1e400 reads as inf
        }
        if bad:
            first = next(iter(bad))
            raise ParameterError(
                f"{p}: a JSON target must map segment labels to shares (numbers); got "
                f"{bad[first]!r} for {first!r}."
            )
        if not doc:
            raise ParameterError(f"{p}: the JSON target is empty; give {{label: share, ...}}.")
        try:
            return {str(k): float(v) for k, v in doc.items()}
        except OverflowError:  # an integer beyond the float range
            raise ParameterError(f"{p}: a share in the JSON target is too large.") from None
    if isinstance(doc, list) and all(isinstance(r, dict) for r in doc):
        if not doc:
            raise ParameterError(f"{p}: the JSON target holds no records.")
        return pd.DataFrame(doc)
    raise ParameterError(
        f"{p}: a JSON target must be an object {{label: share}} or a list of records."
    )

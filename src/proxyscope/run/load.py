"""What a spec's data section becomes: the cells (:class:`~proxyscope.CellEffects`).

:func:`load_effects` reads user-level rows (from a file, or simulated and
written to Parquet first), per-arm summaries, or the ASOS snapshots, as the
spec's ``[data]`` and ``[columns]`` say. :func:`read_table` and
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
from proxyscope.data.sources import CSV_SUFFIXES, PARQUET_SUFFIXES, read_error, resolve_files
from proxyscope.data.summarize import summarize
from proxyscope.datasets.asos import load_asos
from proxyscope.errors import DataError, ParameterError, ProxyscopeError
from proxyscope.run.progress import Log, quiet
from proxyscope.spec import ASOS_ENV, ModelSpec

if TYPE_CHECKING:
    from proxyscope.data.cells import CellEffects
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

    Parameters
    ----------
    spec : ModelSpec
    data : path, optional
        Replaces the spec's data source (``--data``).
    out : Path, optional
        Where simulated users are written as Parquet before summarizing; a
        temporary directory when None.
    correlation : float, optional
        Replaces ``[data].correlation`` (the sensitivity analysis).
    """
    d = spec.data
    path = spec.data_path(data)
    rho = d.correlation if correlation is None else correlation
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

    cols = spec.columns
    assert cols is not None
    if d.kind == "arm_summaries":
        assert path is not None
        table = read_table(path)
        log(f"building cells from {len(table):,} per-arm rows in {path}")
        covariance = None
        if cols.covariance:
            # Keys are metric pairs "a|b" (the spec checked them).
            pairs = {tuple(k.split("|", 1)): v for k, v in cols.covariance.items()}
            covariance = cast("dict[tuple[str, str], str]", pairs)
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
        )
        return Loaded(effects, str(path))

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
                    _summarize_file(spec, _write_users(world, Path(tmp), log), log),
                    "simulated",
                    world,
                )
        return Loaded(_summarize_file(spec, _write_users(world, out, log), log), "simulated", world)
    return Loaded(_summarize_file(spec, path, log), str(path))


def _write_users(world: World, out: Path, log: Log) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "users.parquet"
    world.users.to_parquet(path, index=False)
    log(f"wrote the users to {path}")
    return path


def _summarize_file(spec: ModelSpec, path: Path, log: Log) -> CellEffects:
    d = spec.data
    cols = spec.columns
    assert cols is not None
    log(f"summarizing {path} with {d.engine}")
    return summarize(
        os.fspath(path),
        **cols.roles(),
        engine=d.engine,
        treated_value=cols.treated_value,
        min_users_per_arm=d.min_users_per_arm,
        dropna=d.dropna,
    )


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

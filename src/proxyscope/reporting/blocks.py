"""The report's format-free building blocks and the helpers that fill them.

Paragraphs, bullet lists, tables and figure references, grouped into
sections; Markdown and HTML render the same blocks. The helpers turn rows of
the report document (``report.json``) into table cells.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from proxyscope._format import interval, num


@dataclasses.dataclass(frozen=True)
class Para:
    """A paragraph; ``kind`` is "text", "note" (small print) or "alert" (red)."""

    text: str
    kind: str = "text"


@dataclasses.dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]
    kind: str = "text"


@dataclasses.dataclass(frozen=True)
class Table:
    """A table of strings; ``marked[i][j]`` highlights a cell (e.g. a flagged segment)."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    marked: tuple[tuple[bool, ...], ...] | None = None
    caption: str | None = None


@dataclasses.dataclass(frozen=True)
class FigureRef:
    name: str
    title: str
    png: str
    svg: str


Block = Para | Bullets | Table | FigureRef


@dataclasses.dataclass(frozen=True)
class Section:
    anchor: str
    title: str
    blocks: tuple[Block, ...]


# -- number formatting -----------------------------------------------------------


def prob(x: Any) -> str:
    """A probability or share with three decimals; "n/a" for null."""
    return "n/a" if x is None else f"{float(x):.3f}"


def interval_grid(
    rows: Sequence[Mapping[str, Any]],
    row_key: str,
    col_key: str,
    cols: Sequence[str],
    stem: str,
    fmt: Any = num,
) -> list[tuple[str, ...]]:
    """One table row per distinct ``row_key`` (first-seen order), one interval per ``cols``.

    Each cell reads ``stem``, ``stem_lo`` and ``stem_hi`` (or ``mean``/``lo``/``hi``
    when ``stem`` is ``"mean"``) of the row matching (row, column); "n/a" if none.
    """
    lo, hi = ("lo", "hi") if stem == "mean" else (f"{stem}_lo", f"{stem}_hi")
    by = {(r[row_key], r[col_key]): r for r in rows}
    labels = list(dict.fromkeys(r[row_key] for r in rows))
    return [
        (
            g,
            *[
                interval(by[g, c][stem], by[g, c][lo], by[g, c][hi], fmt) if (g, c) in by else "n/a"
                for c in cols
            ],
        )
        for g in labels
    ]


# -- blocks from the document ----------------------------------------------------


def table(
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    marked: Sequence[Sequence[bool]] | None = None,
    caption: str | None = None,
) -> Table:
    """A :class:`Table` from any sequences (stored as tuples)."""
    return Table(
        tuple(columns),
        tuple(tuple(r) for r in rows),
        None if marked is None else tuple(tuple(m) for m in marked),
        caption,
    )


def figure_blocks(doc: Mapping[str, Any], name: str) -> list[Block]:
    """The figure ``name`` of the document as a one-block list; empty when it was not drawn."""
    fig = doc["figures"].get(name)
    if fig is None:
        return []
    return [FigureRef(name, fig["title"], fig["png"], fig["svg"])]

"""Render the report's sections as GitHub-flavoured Markdown (``report.md``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from proxyscope.reporting.blocks import Block, Bullets, FigureRef, Para, Section, Table
from proxyscope.reporting.content import banner, sections
from proxyscope.reporting.document import UNTRUSTWORTHY_HEADLINE


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _table(t: Table) -> list[str]:
    lines = [
        "| " + " | ".join(_cell(c) for c in t.columns) + " |",
        "|" + "|".join("---" for _ in t.columns) + "|",
    ]
    for i, row in enumerate(t.rows):
        cells = []
        for j, value in enumerate(row):
            text = _cell(value)
            if t.marked is not None and t.marked[i][j]:
                text = f"**{text}**"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    if t.caption:
        lines += ["", f"*{t.caption}*"]
    return lines


def _block(b: Block) -> list[str]:
    if isinstance(b, Para):
        if b.kind == "alert":
            return [f"> **Warning:** {b.text}"]
        if b.kind == "note":
            return [f"*{b.text}*"]
        return [b.text]
    if isinstance(b, Bullets):
        prefix = "> - " if b.kind == "alert" else "- "
        return [prefix + item for item in b.items]
    if isinstance(b, Table):
        return _table(b)
    if isinstance(b, FigureRef):
        return [f"![{b.title}]({b.png})", "", f"*{b.title}* (vector: [{b.svg}]({b.svg}))"]
    raise TypeError(f"unknown block {b!r}")  # pragma: no cover


def render_markdown(doc: Mapping[str, Any], parts: Sequence[Section] | None = None) -> str:
    """``report.md``: the untrustworthy warning first (when the fit failed), then every section."""
    lines: list[str] = []
    alarm = banner(doc)
    if alarm is not None:
        text, summary = alarm
        lines += [
            "> [!CAUTION]",
            f"> **{UNTRUSTWORTHY_HEADLINE}.** **{text}**",
            ">",
            f"> {summary}",
            "",
        ]
    lines += [f"# {doc['title']}", ""]
    for section in parts if parts is not None else sections(doc):
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            lines += [*_block(block), ""]
    return "\n".join(lines).rstrip() + "\n"

"""Render the report's sections as one self-contained HTML file (``report.html``).

Self-contained: figures are embedded as base64 PNG ``data:`` URIs, the CSS is
inline, there is no JavaScript and no web font, and a Content-Security-Policy
forbids every fetch except ``data:`` images, so the page opens offline and
cannot reach the network even if edited.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from typing import Any

from proxyscope.reporting.blocks import Block, Bullets, FigureRef, Para, Section, Table
from proxyscope.reporting.content import banner, sections
from proxyscope.reporting.document import UNTRUSTWORTHY_HEADLINE

#: ``id`` of the red banner shown for a fit that failed its diagnostics.
BANNER_ID = "untrustworthy-banner"

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  color: #1a1a1a; background: #ffffff; margin: 0; line-height: 1.45; }
main, header, nav, footer { max-width: 1100px; margin: 0 auto; padding: 0 24px; }
h1 { font-size: 1.7em; margin: 0.8em 0 0.2em; }
h2 { font-size: 1.3em; margin-top: 1.6em; border-bottom: 2px solid #1f4e79; padding-bottom: 4px; }
nav { font-size: 0.9em; margin-bottom: 1em; }
nav a { margin-right: 12px; color: #1f4e79; }
.banner { background: #b00020; color: #ffffff; padding: 16px 24px; font-size: 1.05em;
  border-bottom: 6px solid #6d0014; }
.banner strong { font-size: 1.4em; display: block; letter-spacing: 0.04em; }
.banner p { margin: 6px 0; font-weight: 600; }
.banner p.banner-detail { font-weight: normal; font-size: 0.85em; }
.alert { background: #fdecee; border-left: 5px solid #b00020; padding: 8px 12px; }
ul.alert { padding-left: 32px; }
.note { color: #555555; font-size: 0.9em; }
table { border-collapse: collapse; margin: 10px 0; font-size: 0.85em; }
th, td { border: 1px solid #c8c8c8; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #eef2f7; }
tr:nth-child(even) td { background: #fafafa; }
td.marked { background: #fbd5da !important; font-weight: bold; }
caption { caption-side: bottom; text-align: left; color: #555555; font-size: 0.9em;
  padding-top: 4px; }
details { margin: 10px 0; }
summary { cursor: pointer; color: #1f4e79; }
figure { margin: 14px 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #e0e0e0; }
figcaption { color: #555555; font-size: 0.9em; }
footer { color: #777777; font-size: 0.8em; margin: 2em auto; }
"""


#: Tables with more rows than this are collapsed (HTML ``details``), opened with a click.
OPEN_ROWS = 12


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _table(t: Table) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in t.columns)
    body = []
    for i, row in enumerate(t.rows):
        cells = []
        for j, value in enumerate(row):
            marked = t.marked is not None and t.marked[i][j]
            cls = ' class="marked"' if marked else ""
            cells.append(f"<td{cls}>{_e(value)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    caption = f"<caption>{_e(t.caption)}</caption>" if t.caption else ""
    markup = (
        f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>"
        + "".join(body)
        + "</tbody></table>"
    )
    if len(t.rows) <= OPEN_ROWS:
        return markup
    # A long table stays one click away instead of running for screens.
    what = _e(t.caption.rstrip(".")) if t.caption else "Table"
    return f"<details><summary>{what} ({len(t.rows)} rows)</summary>{markup}</details>"


def _figure(f: FigureRef, images: Mapping[str, bytes]) -> str:
    png = images.get(f.name)
    if png is None:
        return f'<p class="note">Figure {_e(f.title)}: see {_e(f.png)}.</p>'
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure id="figure-{_e(f.name)}"><img src="data:image/png;base64,{data}" '
        f'alt="{_e(f.title)}"><figcaption>{_e(f.title)} (files: '
        f'<a href="{_e(f.png)}">{_e(f.png)}</a>, <a href="{_e(f.svg)}">{_e(f.svg)}</a>)'
        "</figcaption></figure>"
    )


def _block(b: Block, images: Mapping[str, bytes]) -> str:
    if isinstance(b, Para):
        cls = {"alert": ' class="alert"', "note": ' class="note"'}.get(b.kind, "")
        return f"<p{cls}>{_e(b.text)}</p>"
    if isinstance(b, Bullets):
        cls = ' class="alert"' if b.kind == "alert" else ""
        return f"<ul{cls}>" + "".join(f"<li>{_e(i)}</li>" for i in b.items) + "</ul>"
    if isinstance(b, Table):
        return _table(b)
    if isinstance(b, FigureRef):
        return _figure(b, images)
    raise TypeError(f"unknown block {b!r}")  # pragma: no cover


def render_html(
    doc: Mapping[str, Any],
    images: Mapping[str, bytes],
    parts: Sequence[Section] | None = None,
) -> str:
    """``report.html`` with the figures (``images``: name -> PNG bytes) embedded."""
    parts = list(parts) if parts is not None else sections(doc)
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta name="generator" content="proxyscope {_e(doc["proxyscope_version"])}">',
        '<link rel="icon" href="data:,">',
        f"<title>{_e(doc['title'])}</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
    ]
    alarm = banner(doc)
    if alarm is not None:
        text, summary = alarm
        out.append(
            f'<div class="banner" id="{BANNER_ID}" role="alert">'
            f"<strong>{_e(UNTRUSTWORTHY_HEADLINE)}</strong><p>{_e(text)}</p>"
            f'<p class="banner-detail">{_e(summary)}</p></div>'
        )
    out.append(f"<header><h1>{_e(doc['title'])}</h1></header>")
    out.append(
        "<nav>" + "".join(f'<a href="#{_e(s.anchor)}">{_e(s.title)}</a>' for s in parts) + "</nav>"
    )
    out.append("<main>")
    for section in parts:
        out.append(f'<section id="{_e(section.anchor)}"><h2>{_e(section.title)}</h2>')
        out.extend(_block(b, images) for b in section.blocks)
        out.append("</section>")
    out.append("</main>")
    out.append(
        f"<footer>proxyscope {_e(doc['proxyscope_version'])}, report schema "
        f"{_e(doc['schema_version'])}, generated {_e(doc['generated_at'])}.</footer>"
    )
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"

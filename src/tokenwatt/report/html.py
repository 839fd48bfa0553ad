"""A self-contained HTML report: headings, text, tables and inline SVG charts in one file
that opens offline (no scripts, no fonts, no network)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

__all__ = ["HtmlReport"]

_STYLE = """
body{font-family:sans-serif;max-width:1000px;margin:24px auto;padding:0 16px;color:#222}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;
font-size:13px}th{background:#f4f4f4;text-align:left}td.n{text-align:right}
.note{color:#555;font-size:12px}figure{margin:10px 0}
"""


class HtmlReport:
    """Builds one HTML page from blocks added in order; ``render`` returns it as text."""

    def __init__(self, title: str) -> None:
        self.title = title
        self._blocks: list[str] = []

    def heading(self, text: str) -> HtmlReport:
        """A section heading."""
        self._blocks.append(f"<h2>{html.escape(text)}</h2>")
        return self

    def paragraph(self, text: str, note: bool = False) -> HtmlReport:
        """A paragraph of plain text (``note``: small grey print)."""
        cls = ' class="note"' if note else ""
        self._blocks.append(f"<p{cls}>{html.escape(text)}</p>")
        return self

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> HtmlReport:
        """A table; numbers are right-aligned and printed with 4 significant digits."""
        head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
        body = []
        for row in rows:
            cells = []
            for v in row:
                if isinstance(v, float):
                    cells.append(f'<td class="n">{v:.4g}</td>')
                elif isinstance(v, int) and not isinstance(v, bool):
                    cells.append(f'<td class="n">{v}</td>')
                else:
                    cells.append(f"<td>{html.escape('-' if v is None else str(v))}</td>")
            body.append("<tr>" + "".join(cells) + "</tr>")
        self._blocks.append(f"<table><tr>{head}</tr>{''.join(body)}</table>")
        return self

    def svg(self, svg: str) -> HtmlReport:
        """An inline SVG figure (from ``tokenwatt.report.svg``); trusted markup, not escaped."""
        self._blocks.append(f"<figure>{svg}</figure>")
        return self

    def render(self) -> str:
        """The whole page."""
        title = html.escape(self.title)
        return (
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f"<title>{title}</title><style>{_STYLE}</style></head><body>"
            f"<h1>{title}</h1>{''.join(self._blocks)}</body></html>\n"
        )

    def write(self, path: Path) -> Path:
        """Write the page to ``path`` (parents created); return the path."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.render(), encoding="utf-8")
        return path

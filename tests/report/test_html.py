"""HtmlReport: one self-contained page with escaped text, tables and inline SVG."""

from __future__ import annotations

from pathlib import Path

from tokenwatt.report.html import HtmlReport
from tokenwatt.report.svg import Series, line_chart


def test_render_escapes_text_and_formats_numbers() -> None:
    """Headings and cells are escaped; floats print with 4 significant digits."""
    page = HtmlReport("a<b").heading("x&y").table(["k", "v"], [["<i>", 3.14159], ["n", None]])
    text = page.render()
    assert "<title>a&lt;b</title>" in text
    assert "<h2>x&amp;y</h2>" in text
    assert '<td>&lt;i&gt;</td><td class="n">3.142</td>' in text
    assert "<td>-</td>" in text


def test_page_needs_no_network(tmp_path: Path) -> None:
    """The written page references no external resource (no src=, no link href, no script)."""
    rep = HtmlReport("r").svg(line_chart([Series("s", [(0, 0), (1, 1)])]))
    path = rep.write(tmp_path / "sub" / "r.html")
    text = path.read_text()
    assert "<script" not in text and "src=" not in text and "<link" not in text
    assert text.count("<svg") == 1

"""tokenwatt.report: self-contained HTML reports with inline SVG charts (no network)."""

from tokenwatt.report.html import HtmlReport
from tokenwatt.report.svg import PALETTE, Series, cdf_chart, cdf_points, line_chart, nice_ticks

__all__ = ["PALETTE", "HtmlReport", "Series", "cdf_chart", "cdf_points", "line_chart", "nice_ticks"]

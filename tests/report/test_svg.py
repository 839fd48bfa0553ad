"""SVG charts: round ticks, CDF points, well-formed markup with escaped labels."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from tokenwatt.errors import ConfigError
from tokenwatt.report.svg import Series, cdf_chart, cdf_points, line_chart, nice_ticks

SVG = "{http://www.w3.org/2000/svg}"


def test_nice_ticks_use_round_steps() -> None:
    """0..9.3 gets ticks every 2 from 0 to 10."""
    assert nice_ticks(0, 9.3) == [0, 2, 4, 6, 8, 10]


def test_nice_ticks_widen_an_empty_range() -> None:
    """A zero-width range still gets increasing ticks."""
    ticks = nice_ticks(5, 5)
    assert ticks[0] <= 5 <= ticks[-1] and len(ticks) >= 2


def test_nice_ticks_reject_infinite_bounds() -> None:
    """Non-finite bounds are a ConfigError."""
    with pytest.raises(ConfigError):
        nice_ticks(0, float("inf"))


def test_cdf_points_are_sorted_shares() -> None:
    """Values 3, 1, 2 give (1, 1/3), (2, 2/3), (3, 1)."""
    assert cdf_points([3.0, 1.0, 2.0]) == [(1.0, 1 / 3), (2.0, 2 / 3), (3.0, 1.0)]


def test_line_chart_is_well_formed_svg_with_one_polyline_per_series() -> None:
    """Two series give two polylines; labels with markup characters are escaped."""
    svg = line_chart(
        [Series("a<b", [(0, 1), (1, 2)]), Series("c&d", [(0, 2), (2, 0)])], title="t<1>"
    )
    root = ET.fromstring(svg)
    assert len(root.findall(f"{SVG}polyline")) == 2
    assert "a&lt;b" in svg and "t&lt;1&gt;" in svg


def test_line_chart_without_data_says_so() -> None:
    """No finite points gives a small SVG saying 'no data'."""
    svg = line_chart([Series("x", [(float("nan"), 1.0)])], title="power")
    assert "power: no data" in svg
    ET.fromstring(svg)


def test_cdf_chart_draws_steps_for_each_sample_set() -> None:
    """A CDF of two non-empty sample sets has two step polylines; empty sets are skipped."""
    svg = cdf_chart({"ttft": [1.0, 2.0], "e2e": [3.0], "none": []}, "lat", "ms")
    root = ET.fromstring(svg)
    lines = root.findall(f"{SVG}polyline")
    assert len(lines) == 2
    # Step drawing: 2 values -> 3 vertices (horizontal then vertical move).
    assert len(lines[0].attrib["points"].split()) == 3


def test_dashed_series_is_drawn_dashed() -> None:
    """A dashed series (e.g. goodput over throughput) gets a stroke-dasharray."""
    svg = line_chart([Series("a", [(0, 1), (1, 2)]), Series("b", [(0, 1), (1, 2)], dashed=True)])
    lines = ET.fromstring(svg).findall(f"{SVG}polyline")
    assert ["stroke-dasharray" in line.attrib for line in lines] == [False, True]

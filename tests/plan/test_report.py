"""The HTML report: self-contained, escaped, one column per result."""

from __future__ import annotations

from pathlib import Path

from tokenwatt.plan.config import PlanConfig
from tokenwatt.plan.report import comparison_rows, render_html, write_report
from tokenwatt.plan.results import PlanResult
from tokenwatt.plan.simulator import simulate

from .conftest import poisson_requests


def _result(label: str) -> PlanResult:
    res = simulate(PlanConfig(), poisson_requests(50, 5.0, seed=1))
    return PlanResult.from_dict({**res.to_dict(), "label": label})


def test_report_is_self_contained_and_escaped(tmp_path: Path) -> None:
    """No scripts or remote resources; labels are escaped; SVG charts are inline."""
    path = tmp_path / "r.html"
    write_report([_result("<a>"), _result("b")], path)
    text = path.read_text()
    assert "<script" not in text and "src=" not in text and "href=" not in text
    assert "&lt;a&gt;" in text
    assert text.count("<svg") == 4


def test_comparison_rows_have_one_value_per_result() -> None:
    """Every row carries one formatted value per result, energy source included."""
    rows = comparison_rows([_result("a"), _result("b")])
    assert all(len(values) == 2 for _, values in rows)
    assert dict(rows)["energy source / scope"] == ["preset:H100-SXM / gpu"] * 2


def test_report_lists_full_energy_sources() -> None:
    """The HTML names each result's full power and timing source."""
    text = render_html([_result("a")])
    assert "SplitwiseSim constant power model" in text and "timing: roofline" in text


def test_render_handles_empty_timeline() -> None:
    """A result without timeline data still renders."""
    assert "<table>" in render_html([PlanResult(label="empty")])

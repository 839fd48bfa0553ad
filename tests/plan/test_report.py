"""The HTML report: self-contained, escaped, one column per result."""

from __future__ import annotations

from pathlib import Path

from tokenwatt.plan.config import PlanConfig
from tokenwatt.plan.report import comparison_rows, format_energy, render_html, write_report
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


def _energy(energy_j: float, **facility: float) -> PlanResult:
    split = {"prefill": energy_j / 2, "decode": energy_j / 4, "idle": energy_j / 4}
    fac = {"facility_energy_j": energy_j * 1.5, "reused_heat_j": 0.0, "carbon_g": 0.5, **facility}
    return PlanResult(energy_j=energy_j, energy_split_j=split, facility=facility | fac)


def test_energy_rows_use_joules_for_small_runs() -> None:
    """A run under 1 Wh reads in J, so a tiny CPU run shows real figures, not 0.000 kWh."""
    rows = dict(comparison_rows([_energy(500.0)]))
    assert rows["energy (J)"] == ["500.0"]
    assert rows["  busy (J)"] == ["375.0"]
    assert rows["  idle (J)"] == ["125.0"]
    assert rows["facility energy (J, PUE)"] == ["750.0"]
    assert rows["carbon (g CO2)"] == ["0.500"]


def test_energy_rows_use_wh_and_kwh_by_magnitude() -> None:
    """7.2 kJ reads 2.000 Wh; 7.2 MJ reads 2.000 kWh; one unit per row fits the largest."""
    assert dict(comparison_rows([_energy(7200.0)]))["energy (Wh)"] == ["2.000"]
    rows = dict(comparison_rows([_energy(7200.0), _energy(7.2e6)]))
    assert rows["energy (kWh)"] == ["0.002", "2.000"]


def test_format_energy_picks_the_unit() -> None:
    """J below 1 Wh, Wh below 1 kWh, kWh above."""
    assert [format_energy(j) for j in (12.0, 1800.0, 7200.0, 7.2e6)] == [
        "12.0 J",
        "1800.0 J",
        "2.000 Wh",
        "2.000 kWh",
    ]


def test_cost_rows_label_the_placeholder_and_unset_prices() -> None:
    """The default energy price is FacilityModel's placeholder, said so; an unset
    accelerator-hour price reads "not set", never 0.00."""
    res = PlanResult(
        config={"facility": {"currency": "USD"}},
        facility={"energy_cost": 0.25, "price_per_kwh": 0.1, "price_placeholder": 1.0},
    )
    rows = dict(comparison_rows([res]))
    assert rows["energy cost"] == ["0.25 USD (0.1/kWh placeholder)"]
    assert rows["accelerator cost"] == ["not set"]


def test_cost_rows_show_set_prices_plainly() -> None:
    """Prices you set show as plain amounts in the config's currency."""
    res = PlanResult(
        config={"facility": {"currency": "EUR"}},
        facility={
            "energy_cost": 0.25,
            "price_per_kwh": 0.2,
            "price_placeholder": 0.0,
            "accelerator_cost": 3.0,
        },
    )
    rows = dict(comparison_rows([res]))
    assert rows["energy cost"] == ["0.25 EUR"]
    assert rows["accelerator cost"] == ["3.00 EUR"]


def test_tiny_figures_keep_significant_digits() -> None:
    """Costs, accelerator-hours and carbon too small for two decimals show 3 significant
    digits rather than a misleading 0.00."""
    res = PlanResult(
        config={"facility": {"currency": "USD"}},
        accelerator_hours=0.00123,
        facility={"energy_cost": 9.5e-7, "carbon_g": 0.0042, "accelerator_cost": 0.0},
    )
    rows = dict(comparison_rows([res]))
    assert rows["energy cost"] == ["9.5e-07 USD"]
    assert rows["accelerator-hours"] == ["0.00123"]
    assert rows["carbon (g CO2)"] == ["0.0042"]
    assert rows["accelerator cost"] == ["0.00 USD"]


def test_cost_rows_read_results_written_before_prices_were_optional() -> None:
    """Older result files stored unset prices as 0; they read "not set", not a free 0.00."""
    res = PlanResult(
        config={
            "facility": {"currency": "USD", "price_per_kwh": 0.0, "accelerator_hour_price": 0.0}
        },
        facility={"energy_cost": 0.0, "accelerator_cost": 0.0},
    )
    rows = dict(comparison_rows([res]))
    assert rows["energy cost"] == ["not set"]
    assert rows["accelerator cost"] == ["not set"]

"""Results: facility arithmetic, JSON round trip, loading errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tokenwatt.errors import ConfigError
from tokenwatt.plan.config import FacilityConfig, PlanConfig
from tokenwatt.plan.results import PlanResult, facility_figures, load_result
from tokenwatt.plan.simulator import simulate
from tokenwatt.workload.types import Request


def test_facility_figures_by_definition() -> None:
    """3.6 MJ IT at PUE 1.5, ERF 0.2, 400 g/kWh, 0.1 per kWh: 1.5 kWh facility energy."""
    f = facility_figures(
        3.6e6, FacilityConfig(pue=1.5, erf=0.2, carbon_g_per_kwh=400.0, price_per_kwh=0.1)
    )
    assert f["facility_energy_j"] == pytest.approx(5.4e6)
    assert f["reused_heat_j"] == pytest.approx(1.08e6)
    assert f["carbon_g"] == pytest.approx(600.0)
    assert f["energy_cost"] == pytest.approx(0.15)


def test_result_json_round_trip(tmp_path: Path) -> None:
    """A result written to JSON loads back equal to its JSON form."""
    res = simulate(PlanConfig(), [Request("a", 0.0, 100, 5)])
    path = tmp_path / "r.json"
    res.to_json(path)
    assert load_result(path).to_dict() == json.loads(json.dumps(res.to_dict()))


def test_load_result_rejects_other_files(tmp_path: Path) -> None:
    """Missing files, non-JSON and foreign JSON raise ConfigError."""
    with pytest.raises(ConfigError, match="not found"):
        load_result(tmp_path / "none.json")
    (tmp_path / "x.json").write_text("{oops")
    with pytest.raises(ConfigError, match="not JSON"):
        load_result(tmp_path / "x.json")
    (tmp_path / "y.json").write_text('{"a": 1}')
    with pytest.raises(ConfigError, match="not a plan result"):
        load_result(tmp_path / "y.json")


def test_unset_energy_price_uses_the_facility_placeholder() -> None:
    """No price set: FacilityModel's 0.10/kWh default, flagged as a placeholder."""
    f = facility_figures(3.6e6, FacilityConfig(pue=1.5))
    assert f["price_per_kwh"] == 0.1
    assert f["price_placeholder"] == 1.0
    assert f["energy_cost"] == pytest.approx(0.15)


def test_set_energy_price_is_not_a_placeholder() -> None:
    """A price you set is used and not flagged."""
    f = facility_figures(3.6e6, FacilityConfig(pue=1.0, price_per_kwh=0.3))
    assert f["price_placeholder"] == 0.0
    assert f["energy_cost"] == pytest.approx(0.3)


def test_unset_accelerator_price_leaves_its_cost_out() -> None:
    """No accelerator-hour price: no accelerator_cost figure (shown as "not set")."""
    res = simulate(PlanConfig(), [Request("a", 0.0, 100, 5)])
    assert "accelerator_cost" not in res.facility
    priced = simulate(
        PlanConfig(facility=FacilityConfig(accelerator_hour_price=2.0)),
        [Request("a", 0.0, 100, 5)],
    )
    assert priced.facility["accelerator_cost"] == pytest.approx(priced.accelerator_hours * 2.0)


def test_load_result_rejects_wrong_field_types(tmp_path: Path) -> None:
    """A result JSON whose figures have the wrong type is named, not a TypeError later."""
    data = simulate(PlanConfig(), [Request("a", 0.0, 100, 5)]).to_dict()
    data["energy_j"] = "x"
    (tmp_path / "r.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError) as info:
        load_result(tmp_path / "r.json")
    assert str(info.value) == (
        f"{tmp_path / 'r.json'} is not a plan result: energy_j must be a number, got 'x' "
        "(write one with `tokenwatt plan run`)"
    )


def test_with_label_renames_and_keeps_every_figure() -> None:
    """A relabelled result differs from the original only in its label."""
    r = PlanResult(label="static x4", arrived=10, energy_j=5.0, sim={"wall_s": 0.1})
    named = r.with_label("a: static x4")
    assert named.label == "a: static x4"
    assert {**named.to_dict(), "label": r.label} == r.to_dict()


def test_relative_to_gives_energy_and_tokens_per_joule_ratios() -> None:
    """Ratios are against the base; a base of zero gives nan rather than an error."""
    base = PlanResult(energy_j=200.0, output_tokens_per_j=0.5)
    other = PlanResult(energy_j=50.0, output_tokens_per_j=2.0)
    assert other.relative_to(base) == (0.25, 4.0)
    energy, per_j = other.relative_to(PlanResult())
    assert math.isnan(energy) and math.isnan(per_j)

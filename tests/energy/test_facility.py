"""FacilityModel arithmetic, presets and validation."""

from __future__ import annotations

import pytest

from tokenwatt.energy import FACILITY_PRESETS, FacilityModel, facility_preset
from tokenwatt.energy.facility import J_PER_KWH
from tokenwatt.errors import ConfigError

KWH = J_PER_KWH


def test_default_is_the_uptime_2024_average() -> None:
    """The default model is the Uptime Institute 2024 average PUE with world-average carbon."""
    model = FacilityModel()
    assert (model.name, model.pue, model.erf, model.carbon_g_per_kwh) == (
        "uptime-2024-average",
        1.56,
        0.0,
        475.0,
    )
    assert FACILITY_PRESETS["uptime-2024-average"] == model


def test_facility_energy_is_it_times_pue() -> None:
    """100 J of IT energy at PUE 1.5 is 150 J at the facility."""
    assert FacilityModel(pue=1.5).facility_energy_j(100.0) == 150.0


def test_ere_and_heat_reuse() -> None:
    """ERE = (1 - ERF) x PUE; reused heat = facility energy x ERF."""
    model = FacilityModel(pue=1.2, erf=0.25)
    assert model.ere == pytest.approx(0.9, abs=1e-15)
    assert model.reused_heat_j(1000.0) == pytest.approx(300.0, abs=1e-12)
    assert model.net_energy_j(1000.0) == pytest.approx(900.0, abs=1e-12)


def test_water_carbon_cost_household_for_one_kwh() -> None:
    """One IT kWh at PUE 2: 2 kWh drawn; water per IT kWh; carbon, cost, days per drawn kWh."""
    model = FacilityModel(
        pue=2.0,
        wue_l_per_kwh=1.5,
        carbon_g_per_kwh=400.0,
        price_per_kwh=0.25,
        currency="EUR",
        household_kwh_per_day=8.0,
    )
    report = model.report(KWH)
    assert report.facility_energy_j == 2 * KWH
    assert report.water_l == 1.5
    assert report.carbon_g == 800.0
    assert report.cost == 0.5
    assert report.household_days == 0.25
    assert report.to_dict()["model"]["currency"] == "EUR"


def test_household_default_is_eia_2020() -> None:
    """The household default is EIA's 10,715 kWh a year, per day."""
    assert FacilityModel().household_kwh_per_day == 10_715 / 365


def test_ere_may_fall_below_one() -> None:
    """With heat reuse, ERE can be under 1 (PUE cannot)."""
    assert facility_preset("helsinki-heat-reuse").ere == pytest.approx(0.975, abs=1e-15)


def test_presets_carry_cited_values() -> None:
    """Presets hold the public figures they name and say where they come from."""
    assert FACILITY_PRESETS["hyperscale"].pue == 1.10
    assert FACILITY_PRESETS["new-build"].pue == 1.3
    assert FACILITY_PRESETS["helsinki-heat-reuse"].erf == 0.25
    assert FACILITY_PRESETS["it-only"].pue == 1.0
    assert all(m.source for m in FACILITY_PRESETS.values())
    assert all(name == m.name for name, m in FACILITY_PRESETS.items())


def test_preset_overrides_are_applied_and_labelled() -> None:
    """Overriding a preset renames it; None values are ignored."""
    model = facility_preset("hyperscale", carbon_g_per_kwh=50.0, pue=None)
    assert (model.name, model.pue, model.carbon_g_per_kwh) == ("hyperscale+custom", 1.10, 50.0)


def test_unknown_preset_lists_the_choices() -> None:
    """An unknown preset name is a ConfigError listing the presets."""
    with pytest.raises(ConfigError, match="use one of it-only, uptime-2024-average"):
        facility_preset("moon-base")


def test_unknown_override_field_is_rejected() -> None:
    """Overriding a field that does not exist is a ConfigError."""
    with pytest.raises(ConfigError, match="unknown facility field"):
        facility_preset("hyperscale", puee=1.2)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("pue", 0.9, "pue must be >= 1"),
        ("pue", float("nan"), "pue must be >= 1"),
        ("erf", 1.5, r"erf must be within \[0, 1\]"),
        ("erf", -0.1, r"erf must be within \[0, 1\]"),
        ("price_per_kwh", -0.01, "price_per_kwh must be >= 0"),
        ("carbon_g_per_kwh", -1.0, "carbon_g_per_kwh must be >= 0"),
        ("wue_l_per_kwh", -1.0, "wue_l_per_kwh must be >= 0"),
        ("household_kwh_per_day", 0.0, "household_kwh_per_day must be > 0"),
        ("currency", "", "currency must be a non-empty code"),
    ],
)
def test_invalid_values_are_rejected(field: str, value: object, message: str) -> None:
    """Out-of-range values raise ConfigError naming the field and the rule."""
    with pytest.raises(ConfigError, match=message):
        FacilityModel(**{field: value})  # type: ignore[arg-type]


def test_negative_it_energy_is_rejected() -> None:
    """A report for negative IT energy is a ConfigError."""
    with pytest.raises(ConfigError, match="IT energy must be >= 0"):
        FacilityModel().report(-1.0)

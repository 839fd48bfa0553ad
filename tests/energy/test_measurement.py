"""Measurement, IdleBaseline and PowerSample arithmetic."""

from __future__ import annotations

import pytest

from tokenwatt.energy import Component, IdleBaseline, Measurement, PowerSample, average_power_w
from tokenwatt.errors import ConfigError

COMPONENTS = (
    Component("gpu0", "gpu", "nvml"),
    Component("gpu1", "gpu", "nvml"),
    Component("cpu", "cpu", "estimated:cpu-model", {"active_w_per_core": 3.5}),
)


def window(**kwargs: object) -> Measurement:
    values: dict[str, object] = {
        "name": "w",
        "start_s": 10.0,
        "end_s": 14.0,
        "energy_j": {"gpu0": 800.0, "gpu1": 400.0, "cpu": 40.0},
        "components": COMPONENTS,
    }
    values.update(kwargs)
    return Measurement(**values)  # type: ignore[arg-type]


def test_totals_by_scope_and_overall() -> None:
    """total_j sums a scope or everything; by_scope groups per scope."""
    m = window()
    assert m.duration_s == 4.0
    assert m.total_j() == 1240.0
    assert m.total_j("gpu") == 1200.0
    assert m.total_j("dram") == 0.0
    assert m.by_scope() == {"gpu": 1200.0, "cpu": 40.0}


def test_average_power() -> None:
    """Average power is joules over seconds, overall and per component."""
    m = window()
    assert m.avg_power_w == 310.0
    assert m.power_w() == {"gpu0": 200.0, "gpu1": 100.0, "cpu": 10.0}


def test_zero_length_window_has_zero_power() -> None:
    """An instantaneous window reports 0 W rather than dividing by zero."""
    m = window(end_s=10.0)
    assert m.avg_power_w == 0.0
    assert m.power_w() == {"gpu0": 0.0, "gpu1": 0.0, "cpu": 0.0}


def test_estimated_when_any_component_is() -> None:
    """A measurement with an estimated component is marked estimated."""
    assert window().estimated
    sensors = COMPONENTS[:2]
    assert not window(components=sensors, energy_j={"gpu0": 1.0, "gpu1": 1.0}).estimated


def test_idle_adjusted_energy_subtracts_idle_power_times_duration() -> None:
    """Adjusted energy is energy minus idle watts x duration, floored at zero."""
    m = window(idle_power_w={"gpu0": 50.0, "gpu1": 150.0, "cpu": 2.5})
    assert m.idle_energy_j() == {"gpu0": 200.0, "gpu1": 600.0, "cpu": 10.0}
    assert m.adjusted_energy_j() == {"gpu0": 600.0, "gpu1": 0.0, "cpu": 30.0}
    assert m.adjusted_total_j() == 630.0
    assert m.adjusted_total_j("cpu") == 30.0


def test_no_baseline_means_no_adjusted_figures() -> None:
    """Without a baseline the idle and adjusted figures are None, not zero."""
    m = window()
    assert m.idle_energy_j() is None
    assert m.adjusted_energy_j() is None
    assert m.adjusted_total_j() is None


def test_with_baseline_applies_idle_power() -> None:
    """with_baseline copies the baseline's idle power into the measurement."""
    baseline = IdleBaseline(2.0, {"gpu0": 10.0, "gpu1": 10.0, "cpu": 1.0}, COMPONENTS)
    assert window().with_baseline(baseline).adjusted_total_j() == 1240.0 - 84.0


def test_measurement_rejects_end_before_start() -> None:
    """A window that ends before it starts is a ConfigError."""
    with pytest.raises(ConfigError, match="ends"):
        window(end_s=9.0)


def test_measurement_rejects_energy_for_unknown_components() -> None:
    """Energy names must match the components."""
    with pytest.raises(ConfigError, match="energy for"):
        window(energy_j={"gpu0": 1.0})


def test_baseline_totals_and_validation() -> None:
    """IdleBaseline sums by scope and needs power for every component."""
    baseline = IdleBaseline(1.0, {"gpu0": 60.0, "gpu1": 70.0, "cpu": 5.0}, COMPONENTS)
    assert baseline.total_w() == 135.0
    assert baseline.total_w("gpu") == 130.0
    with pytest.raises(ConfigError, match="lacks power for cpu"):
        IdleBaseline(1.0, {"gpu0": 1.0, "gpu1": 1.0}, COMPONENTS)


def test_power_sample_total() -> None:
    """A sample's total is the sum over components."""
    assert PowerSample(1.0, {"a": 2.0, "b": 3.5}, 0.1).total_w() == 5.5


def test_to_dict_carries_sources_scopes_and_figures() -> None:
    """The JSON form keeps every figure with its component's source and scope."""
    data = window(idle_power_w={"gpu0": 0.0, "gpu1": 0.0, "cpu": 0.0}).to_dict()
    assert data["components"][2] == {
        "name": "cpu",
        "scope": "cpu",
        "source": "estimated:cpu-model",
        "estimated": True,
        "params": {"active_w_per_core": 3.5},
    }
    assert (data["duration_s"], data["total_j"], data["avg_power_w"]) == (4.0, 1240.0, 310.0)
    assert data["by_scope_j"] == {"gpu": 1200.0, "cpu": 40.0}
    assert data["adjusted_total_j"] == 1240.0


def test_average_power_weights_samples_by_interval() -> None:
    """Steady power is the interval-weighted mean of the samples' power."""
    samples = [
        PowerSample(1.0, {"a": 100.0, "b": 0.0}, 1.0),
        PowerSample(4.0, {"a": 200.0, "b": 8.0}, 3.0),
    ]
    assert average_power_w(samples) == {"a": 175.0, "b": 6.0}
    assert average_power_w([]) == {}

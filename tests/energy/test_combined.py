"""CombinedMeter reads several meters as one."""

from __future__ import annotations

import pytest

from tests.energy.fakes import FakeClock
from tokenwatt.energy import CombinedMeter, FixedPowerMeter, Meter
from tokenwatt.errors import ConfigError, MeterError


def test_combined_merges_components_and_readings(clock: FakeClock) -> None:
    """Components and energies of every meter appear in one reading, in meter order."""
    gpu = FixedPowerMeter({"gpu0": 200.0}, scope="gpu", clock=clock)
    cpu = FixedPowerMeter({"cpu": 20.0}, scope="cpu", clock=clock)
    meter = CombinedMeter([gpu, cpu])
    meter.read()
    clock.advance(3.0)
    reading = meter.read()
    assert [c.name for c in meter.components] == ["gpu0", "cpu"]
    assert reading.energy_j == {"gpu0": 600.0, "cpu": 60.0}
    assert reading.time_s == 103.0


def test_combined_is_a_meter() -> None:
    """CombinedMeter satisfies the Meter protocol."""
    assert isinstance(CombinedMeter([FixedPowerMeter({"a": 1.0})]), Meter)


def test_combined_rejects_duplicate_component_names() -> None:
    """Two meters reporting the same component name is a ConfigError."""
    with pytest.raises(ConfigError, match="'gpu0' is reported by meters 0 and 1"):
        CombinedMeter([FixedPowerMeter({"gpu0": 1.0}), FixedPowerMeter({"gpu0": 2.0})])


def test_combined_without_meters_cannot_read() -> None:
    """Reading an empty CombinedMeter is a MeterError that says what to do."""
    with pytest.raises(MeterError, match="no meters"):
        CombinedMeter([]).read()


def test_combined_close_closes_every_meter_even_after_a_failure() -> None:
    """A meter failing to close does not stop the others from closing."""

    class Broken(FixedPowerMeter):
        def close(self) -> None:
            raise MeterError("boom")

    good = FixedPowerMeter({"b": 1.0})
    combined = CombinedMeter([Broken({"a": 1.0}), good])
    with pytest.raises(MeterError, match="boom"):
        combined.close()
    with pytest.raises(MeterError, match="after close"):
        good.read()

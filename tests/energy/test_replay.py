"""FixedPowerMeter and ReplayMeter: exact joules from injected clocks and recordings."""

from __future__ import annotations

import pytest

from tests.energy.fakes import FakeClock
from tokenwatt.energy import Component, FixedPowerMeter, PowerSample, Reading, ReplayMeter
from tokenwatt.errors import ConfigError, MeterError


def test_fixed_power_integrates_watts_over_time(clock: FakeClock) -> None:
    """Energy is watts x seconds since the first read."""
    meter = FixedPowerMeter({"gpu0": 300.0, "cpu": 50.0}, clock=clock)
    assert meter.read().energy_j == {"gpu0": 0.0, "cpu": 0.0}
    clock.advance(2.5)
    reading = meter.read()
    assert reading.time_s == 102.5
    assert reading.energy_j == {"gpu0": 750.0, "cpu": 125.0}


def test_fixed_power_components_carry_scope_source_and_power() -> None:
    """Each component is labelled with its scope, an estimated source and its watts."""
    meter = FixedPowerMeter({"gpu0": 300.0, "cpu": 50.0}, scope={"gpu0": "gpu", "cpu": "cpu"})
    assert list(meter.components) == [
        Component("gpu0", "gpu", "estimated:fixed-power", {"power_w": 300.0}),
        Component("cpu", "cpu", "estimated:fixed-power", {"power_w": 50.0}),
    ]
    assert all(c.estimated for c in meter.components)


def test_fixed_power_rejects_negative_watts() -> None:
    """A negative power is a ConfigError naming the component."""
    with pytest.raises(ConfigError, match="'gpu0' must be >= 0 W"):
        FixedPowerMeter({"gpu0": -1.0})


def test_fixed_power_requires_a_scope_per_component() -> None:
    """A scope mapping that misses a component is a ConfigError naming it."""
    with pytest.raises(ConfigError, match="no scope given for component"):
        FixedPowerMeter({"gpu0": 1.0, "cpu": 1.0}, scope={"gpu0": "gpu"})


def test_fixed_power_read_after_close_fails(clock: FakeClock) -> None:
    """Reading a closed meter is a MeterError."""
    meter = FixedPowerMeter({"node": 1.0}, clock=clock)
    meter.close()
    with pytest.raises(MeterError, match="after close"):
        meter.read()


COMPONENTS = [Component("gpu0", "gpu", "replay")]
READINGS = [Reading(10.0, {"gpu0": 0.0}), Reading(12.0, {"gpu0": 100.0})]


def test_replay_returns_recorded_readings_in_order_then_the_last() -> None:
    """Without a clock, reads walk the recording and stay on its last reading."""
    meter = ReplayMeter(COMPONENTS, READINGS)
    assert [meter.read() for _ in range(3)] == [READINGS[0], READINGS[1], READINGS[1]]


def test_replay_interpolates_at_the_clock(clock: FakeClock) -> None:
    """With a clock, a read between two recorded readings is linearly interpolated."""
    clock.now = 11.5
    meter = ReplayMeter(COMPONENTS, READINGS, clock=clock)
    assert meter.read() == Reading(11.5, {"gpu0": 75.0})


def test_replay_clamps_outside_the_recording(clock: FakeClock) -> None:
    """Before the recording reads as its first reading, after it as its last."""
    meter = ReplayMeter(COMPONENTS, READINGS, clock=clock)
    clock.now = 5.0
    assert meter.read().energy_j == {"gpu0": 0.0}
    clock.now = 50.0
    assert meter.read().energy_j == {"gpu0": 100.0}


def test_replay_rejects_readings_missing_a_component() -> None:
    """A recorded reading must cover exactly the components given."""
    with pytest.raises(ConfigError, match="recorded reading 1 has components"):
        ReplayMeter(COMPONENTS, [READINGS[0], Reading(11.0, {"cpu": 1.0})])


def test_replay_rejects_out_of_order_readings() -> None:
    """Readings must be in time order."""
    with pytest.raises(ConfigError, match="time order"):
        ReplayMeter(COMPONENTS, list(reversed(READINGS)))


def test_replay_from_samples_accumulates_watts_times_intervals() -> None:
    """A power timeline replays as cumulative joules from the first sample's start."""
    samples = [
        PowerSample(11.0, {"gpu0": 100.0}, 1.0),
        PowerSample(13.0, {"gpu0": 50.0}, 2.0),
    ]
    meter = ReplayMeter.from_samples(COMPONENTS, samples)
    assert [meter.read() for _ in range(3)] == [
        Reading(10.0, {"gpu0": 0.0}),
        Reading(11.0, {"gpu0": 100.0}),
        Reading(13.0, {"gpu0": 200.0}),
    ]


def test_replay_from_no_samples_is_rejected() -> None:
    """An empty timeline cannot be replayed."""
    with pytest.raises(ConfigError, match="at least one power sample"):
        ReplayMeter.from_samples(COMPONENTS, [])

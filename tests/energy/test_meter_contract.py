"""The Meter contract, checked for every implementation (hardware ones over fakes)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.energy.fakes import FakeClock, FakeGpu, FakeNvml
from tests.energy.test_rapl import make_zone
from tokenwatt.energy import (
    CombinedMeter,
    Component,
    CpuModelMeter,
    FixedPowerMeter,
    Meter,
    NvmlMeter,
    RaplMeter,
    Reading,
    ReplayMeter,
)
from tokenwatt.errors import MeterError

MeterFactory = Callable[[Path, FakeClock], Meter]


def _fixed(_: Path, clock: FakeClock) -> Meter:
    return FixedPowerMeter({"gpu0": 300.0, "cpu": 20.0}, clock=clock)


def _replay(_: Path, clock: FakeClock) -> Meter:
    readings = [Reading(100.0, {"gpu0": 0.0}), Reading(200.0, {"gpu0": 5.0})]
    return ReplayMeter([Component("gpu0", "gpu", "replay")], readings, clock=clock)


def _combined(tmp_path: Path, clock: FakeClock) -> Meter:
    gpu = FixedPowerMeter({"gpu0": 300.0}, scope="gpu", clock=clock)
    return CombinedMeter([gpu, _cpu_model(tmp_path, clock)])


def _nvml(_: Path, clock: FakeClock) -> Meter:
    nvml = FakeNvml([FakeGpu("GPU-a", 10), FakeGpu("GPU-b", energy_mj=None, power_mw=50_000)])
    return NvmlMeter.open(nvml=nvml, clock=clock)


def _rapl(tmp_path: Path, clock: FakeClock) -> Meter:
    make_zone(tmp_path, "intel-rapl:0", "package-0", 0)
    make_zone(tmp_path, "intel-rapl:0:0", "dram", 0)
    return RaplMeter.open(tmp_path, clock=clock)


def _cpu_model(_: Path, clock: FakeClock) -> Meter:
    return CpuModelMeter(lambda: clock.now / 2, idle_cores=2, clock=clock)


FACTORIES = {
    "fixed": _fixed,
    "replay": _replay,
    "combined": _combined,
    "nvml": _nvml,
    "rapl": _rapl,
    "cpu-model": _cpu_model,
}


@pytest.fixture(params=list(FACTORIES))
def meter(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Meter:
    """Each Meter implementation, on fakes."""
    factory: MeterFactory = FACTORIES[request.param]
    return factory(tmp_path, clock)


def test_is_a_meter(meter: Meter) -> None:
    """Every implementation satisfies the Meter protocol."""
    assert isinstance(meter, Meter)


def test_components_are_unique_and_labelled(meter: Meter) -> None:
    """Components have unique names, and each has a source and a known scope."""
    names = [c.name for c in meter.components]
    assert names and len(names) == len(set(names))
    assert all(c.source for c in meter.components)


def test_reading_covers_exactly_the_components(meter: Meter) -> None:
    """A reading holds energy for every component and nothing else."""
    assert set(meter.read().energy_j) == {c.name for c in meter.components}


def test_energy_never_decreases(meter: Meter, clock: FakeClock) -> None:
    """Cumulative energy is non-decreasing as time passes."""
    first = meter.read()
    clock.advance(1.0)
    second = meter.read()
    assert second.time_s >= first.time_s
    assert all(second.energy_j[n] >= first.energy_j[n] >= 0.0 for n in first.energy_j)


def test_read_after_close_is_a_meter_error(meter: Meter) -> None:
    """Reading a closed meter raises MeterError."""
    meter.close()
    with pytest.raises(MeterError):
        meter.read()

"""EnergyMonitor: windows, sampler timeline, idle baseline."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time

import pytest

from tests.energy.fakes import FakeClock
from tokenwatt.energy import EnergyMonitor, FixedPowerMeter, Measurement, Reading, WindowError
from tokenwatt.errors import ConfigError


@pytest.fixture
def monitor(clock: FakeClock) -> EnergyMonitor:
    """A monitor over a 100 W gpu and a 10 W cpu on a fake clock, sampler off."""
    meters = [
        FixedPowerMeter({"gpu0": 100.0}, scope="gpu", clock=clock),
        FixedPowerMeter({"cpu": 10.0}, scope="cpu", clock=clock),
    ]
    return EnergyMonitor(meters, sample_hz=0, sleep=clock.advance)


def test_window_measures_energy_between_begin_and_end(
    monitor: EnergyMonitor, clock: FakeClock
) -> None:
    """A window's energy is each component's power times its duration."""
    monitor.begin_window("prefill")
    clock.advance(2.0)
    m = monitor.end_window("prefill")
    assert (m.name, m.start_s, m.end_s) == ("prefill", 100.0, 102.0)
    assert m.energy_j == {"gpu0": 200.0, "cpu": 20.0}
    assert [c.name for c in m.components] == ["gpu0", "cpu"]


def test_nested_and_overlapping_windows(monitor: EnergyMonitor, clock: FakeClock) -> None:
    """Windows nest and overlap independently."""
    monitor.begin_window("outer")
    clock.advance(1.0)
    monitor.begin_window("a")
    clock.advance(1.0)
    monitor.begin_window("b")
    clock.advance(1.0)
    a = monitor.end_window("a")
    clock.advance(1.0)
    b = monitor.end_window("b")
    outer = monitor.end_window("outer")
    assert (a.duration_s, b.duration_s, outer.duration_s) == (2.0, 2.0, 4.0)
    assert outer.total_j() == 440.0


def test_beginning_an_open_window_twice_fails(monitor: EnergyMonitor) -> None:
    """Window names are unique among open windows."""
    monitor.begin_window("x")
    with pytest.raises(WindowError, match="'x' is already open"):
        monitor.begin_window("x")


def test_ending_an_unknown_window_fails(monitor: EnergyMonitor) -> None:
    """Ending a window never begun is a WindowError that says to begin it."""
    with pytest.raises(WindowError, match="call begin_window first"):
        monitor.end_window("nope")


def test_cancel_window_forgets_it(monitor: EnergyMonitor) -> None:
    """A cancelled window is no longer open and cannot be ended."""
    monitor.begin_window("x")
    monitor.cancel_window("x")
    assert monitor.open_windows == []
    with pytest.raises(WindowError):
        monitor.end_window("x")


def test_window_context_manager_records_measurement(
    monitor: EnergyMonitor, clock: FakeClock
) -> None:
    """`with monitor.window(name)` measures the block and keeps the result."""
    with monitor.window("decode") as w:
        clock.advance(0.5)
    assert isinstance(w.measurement, Measurement)
    assert w.measurement.energy_j == {"gpu0": 50.0, "cpu": 5.0}
    assert monitor.last("decode") == w.measurement


def test_window_as_decorator_measures_each_call(monitor: EnergyMonitor, clock: FakeClock) -> None:
    """A decorated function is measured per call, even when it recurses."""

    @monitor.window("step")
    def step(depth: int) -> int:
        clock.advance(1.0)
        return depth if depth == 0 else step(depth - 1)

    assert step(1) == 0
    last = monitor.last("step")
    assert last is not None and last.duration_s == 2.0  # the outer call ends last
    assert monitor.open_windows == []


def test_idle_baseline_adjusts_later_windows(monitor: EnergyMonitor, clock: FakeClock) -> None:
    """measure_idle measures average power; later windows report energy above it."""
    baseline = monitor.measure_idle(2.0)
    assert baseline.duration_s == 2.0
    assert baseline.power_w == {"gpu0": 100.0, "cpu": 10.0}
    monitor.begin_window("w")
    clock.advance(1.0)
    m = monitor.end_window("w")
    assert m.idle_power_w == {"gpu0": 100.0, "cpu": 10.0}
    assert m.adjusted_total_j() == 0.0


def test_rejects_negative_sample_rate(clock: FakeClock) -> None:
    """A negative sample rate is a ConfigError."""
    with pytest.raises(ConfigError, match="sample_hz must be >= 0"):
        EnergyMonitor(FixedPowerMeter({"a": 1.0}, clock=clock), sample_hz=-1)


@pytest.mark.parametrize("rate", [1e9, float("inf")])
def test_rejects_a_sample_rate_the_sampler_cannot_keep(clock: FakeClock, rate: float) -> None:
    """Above 1 kHz the sampler would spin a core (and grow its timeline without end) for
    readings no meter refreshes that often: a ConfigError naming the limit."""
    with pytest.raises(ConfigError, match="sample_hz must be at most 1000"):
        EnergyMonitor(FixedPowerMeter({"a": 1.0}, clock=clock), sample_hz=rate)


def test_sampler_builds_a_power_timeline() -> None:
    """The sampler records average power per interval (real clock, 200 Hz for 0.2 s)."""
    monitor = EnergyMonitor(FixedPowerMeter({"gpu0": 40.0}, scope="gpu"), sample_hz=200)
    with monitor:
        assert monitor.sampling
        time.sleep(0.2)
    assert not monitor.sampling
    samples = monitor.timeline()
    assert len(samples) >= 5
    assert all(s.power_w["gpu0"] == pytest.approx(40.0) for s in samples)
    assert all(a.time_s < b.time_s for a, b in itertools.pairwise(samples))
    middle = samples[len(samples) // 2].time_s
    assert monitor.timeline(start_s=middle)[0].time_s == middle


def test_timeline_is_bounded_by_max_samples() -> None:
    """Only the newest max_samples samples are kept."""
    monitor = EnergyMonitor(FixedPowerMeter({"a": 1.0}), sample_hz=500, max_samples=3)
    with monitor:
        time.sleep(0.1)
    assert len(monitor.timeline()) == 3


def test_windows_from_many_threads(clock: FakeClock) -> None:
    """Concurrent windows from several threads each get their own measurement."""
    monitor = EnergyMonitor(FixedPowerMeter({"a": 1.0}, clock=clock), sample_hz=0)
    results: list[Measurement] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        with monitor.window("req") as w:
            pass
        assert w.measurement is not None
        with lock:
            results.append(w.measurement)
        monitor.begin_window(f"t{i}")
        monitor.end_window(f"t{i}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8
    assert monitor.open_windows == []


def test_monitor_needs_a_meter() -> None:
    """A monitor over no meters is a ConfigError pointing at detect_meters."""
    with pytest.raises(ConfigError, match="at least one meter"):
        EnergyMonitor([])


async def test_window_decorates_coroutines_per_task(clock: FakeClock) -> None:
    """A decorated coroutine is measured from call to return, per task, interleaved or not."""
    monitor = EnergyMonitor(FixedPowerMeter({"a": 10.0}, clock=clock), sample_hz=0)
    gate = asyncio.Event()
    durations: list[float] = []

    @monitor.window("request")
    async def request(wait: bool) -> None:
        if wait:
            await gate.wait()
        clock.advance(1.0)

    async def run(wait: bool) -> None:
        await request(wait)
        last = monitor.last("request")
        assert last is not None
        durations.append(last.duration_s)

    slow = asyncio.create_task(run(True))
    await asyncio.sleep(0)
    await run(False)  # starts after slow, ends before it
    gate.set()
    await slow
    assert durations == [1.0, 2.0]
    assert monitor.open_windows == []


def test_sampler_survives_a_failing_read() -> None:
    """A meter read that raises skips a sample; the sampler keeps running."""

    class Flaky(FixedPowerMeter):
        reads = 0

        def read(self) -> Reading:
            self.reads += 1
            if self.reads == 3:
                raise RuntimeError("transient")
            return super().read()

    monitor = EnergyMonitor(Flaky({"a": 1.0}), sample_hz=200)
    with monitor:
        time.sleep(0.15)
    assert len(monitor.timeline()) >= 3


def test_steady_power_from_the_timeline() -> None:
    """steady_power_w averages the samples in a time range; none in range gives {}."""
    monitor = EnergyMonitor(FixedPowerMeter({"gpu0": 40.0}, scope="gpu"), sample_hz=200)
    with monitor:
        time.sleep(0.1)
    samples = monitor.timeline()
    steady = monitor.steady_power_w(samples[1].time_s, samples[-1].time_s)
    assert steady["gpu0"] == pytest.approx(40.0)
    assert monitor.steady_power_w(-2.0, -1.0) == {}


def test_window_body_error_still_ends_the_window(monitor: EnergyMonitor, clock: FakeClock) -> None:
    """An exception inside `with monitor.window()` propagates; the window is still measured."""
    window = monitor.window("failing")
    with pytest.raises(ValueError, match="boom"), window:
        clock.advance(1.0)
        raise ValueError("boom")
    assert window.measurement is not None and window.measurement.duration_s == 1.0
    assert monitor.open_windows == []


def test_window_with_empty_name_is_refused(monitor: EnergyMonitor) -> None:
    """A window needs a name; a refused entry leaves nothing open."""
    with pytest.raises(WindowError, match="non-empty name"), monitor.window(""):
        pass
    assert monitor.open_windows == []

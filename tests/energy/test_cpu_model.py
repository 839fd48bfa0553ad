"""CpuModelMeter: estimated joules from injected CPU time and clock."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
import pytest

from tests.energy.fakes import FakeClock
from tokenwatt.energy import CpuModelMeter, CpuModelParams
from tokenwatt.energy.cpu_model import ProcessTreeCpuTime, machine_busy_cpu_s, process_cpu_s
from tokenwatt.errors import ConfigError, MeterError


class FakeCpuTime:
    def __init__(self) -> None:
        self.busy_s = 10.0

    def __call__(self) -> float:
        return self.busy_s


def test_process_mode_charges_active_watts_per_busy_second(clock: FakeClock) -> None:
    """With no idle cores, energy is active watts x busy CPU-seconds since the first read."""
    cpu = FakeCpuTime()
    meter = CpuModelMeter(cpu, params=CpuModelParams(4.0, 1.0), clock=clock)
    meter.read()
    cpu.busy_s += 1.5
    clock.advance(10.0)
    assert meter.read().energy_j == {"cpu": 6.0}


def test_machine_mode_adds_idle_draw_of_idle_cores(clock: FakeClock) -> None:
    """With 4 cores over 10 s and 15 busy CPU-seconds: 15 x 4 W + 25 x 1 W."""
    cpu = FakeCpuTime()
    meter = CpuModelMeter(cpu, params=CpuModelParams(4.0, 1.0), idle_cores=4, clock=clock)
    meter.read()
    cpu.busy_s += 15.0
    clock.advance(10.0)
    assert meter.read().energy_j == {"cpu": 85.0}


def test_cpu_time_going_backwards_never_lowers_energy(clock: FakeClock) -> None:
    """A dip in CPU time (a child exiting unreaped) keeps the energy at its maximum."""
    cpu = FakeCpuTime()
    meter = CpuModelMeter(cpu, params=CpuModelParams(2.0, 0.0), clock=clock)
    meter.read()
    cpu.busy_s += 3.0
    assert meter.read().energy_j == {"cpu": 6.0}
    cpu.busy_s -= 2.0
    assert meter.read().energy_j == {"cpu": 6.0}


def test_component_is_labelled_an_estimate_with_its_params() -> None:
    """The single cpu component says estimated:cpu-model and carries every parameter."""
    meter = CpuModelMeter(FakeCpuTime(), idle_cores=2, mode="machine")
    (component,) = meter.components
    assert component.estimated
    assert (component.name, component.scope, component.source) == (
        "cpu",
        "cpu",
        "estimated:cpu-model",
    )
    assert dict(component.params) == {
        "active_w_per_core": 3.5,
        "idle_w_per_core": 0.74,
        "idle_cores": 2,
        "mode": "machine",
    }


def test_params_reject_active_below_idle() -> None:
    """Active watts below idle watts is a ConfigError."""
    with pytest.raises(ConfigError, match="must be >= idle_w_per_core"):
        CpuModelParams(active_w_per_core=0.5, idle_w_per_core=1.0)


def test_params_reject_negative_idle() -> None:
    """Negative idle watts is a ConfigError."""
    with pytest.raises(ConfigError, match="idle_w_per_core must be >= 0"):
        CpuModelParams(idle_w_per_core=-1.0)


@pytest.mark.parametrize("watts", [float("inf"), 1e9])
def test_params_reject_impossible_active_watts(watts: float) -> None:
    """Infinite (or absurd) watts per core is refused up front, not found as a NaN total
    after the measured command has run."""
    with pytest.raises(ConfigError, match="active_w_per_core must be at most"):
        CpuModelParams(active_w_per_core=watts)


def test_open_rejects_unknown_mode() -> None:
    """An unknown mode is a ConfigError listing the choices."""
    with pytest.raises(ConfigError, match="process, tree, children, machine"):
        CpuModelMeter.open("galaxy")  # type: ignore[arg-type]


def test_open_unknown_pid_is_a_meter_error() -> None:
    """Watching a process that does not exist is a MeterError."""
    with pytest.raises(MeterError, match="cannot watch process"):
        CpuModelMeter.open("tree", pid=2**22 + 12345)


def test_process_time_of_this_process_matches_os_times() -> None:
    """Process mode on this process is its user + system time plus reaped children."""
    t = os.times()
    measured = process_cpu_s(psutil.Process(), "process")
    expected = t.user + t.system + t.children_user + t.children_system
    assert expected - 0.05 <= measured <= expected + 0.1


def test_process_mode_resolves_less_than_a_clock_tick() -> None:
    """A few milliseconds of CPU are charged as such, not as 0 or a whole 10 ms tick, so a
    short request served by this process gets a non-zero share (serve's per-request energy)."""
    meter = CpuModelMeter.open("process")
    meter.read()
    t0 = time.process_time()
    while time.process_time() - t0 < 0.003:
        pass
    energy_j = meter.read().energy_j["cpu"]
    t1 = time.process_time()
    watts = CpuModelParams().active_w_per_core
    assert 0.003 * watts <= energy_j <= (t1 - t0 + 0.002) * watts


def test_children_mode_excludes_the_root_itself() -> None:
    """Children mode counts less than tree mode by this process's own CPU time."""
    me = psutil.Process()
    assert process_cpu_s(me, "children") <= process_cpu_s(me, "tree")


def test_machine_busy_time_is_positive_and_grows() -> None:
    """Whole-machine busy CPU time is positive and never decreases."""
    first = machine_busy_cpu_s()
    assert 0.0 < first <= machine_busy_cpu_s()


def test_tree_time_includes_live_children_after_a_rescan(clock: FakeClock) -> None:
    """A child started after a listing is counted once the listing is refreshed."""
    tree = ProcessTreeCpuTime(psutil.Process(), "children", rescan_s=0.5, clock=clock)
    before = tree()
    busy_then_sleep = "import time; sum(range(3 * 10**7)); time.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", busy_then_sleep])
    try:
        deadline = time.monotonic() + 10
        while sum(psutil.Process(child.pid).cpu_times()[:2]) < 0.2 and time.monotonic() < deadline:
            time.sleep(0.01)
        # Other children of the test process (servers of earlier tests) may tick meanwhile, so
        # compare against the new child's own CPU time (>= 0.2 s) rather than expecting exact
        # equality; 0.011 s allows for the 10 ms resolution of the kernel's CPU times.
        child_s = sum(psutil.Process(child.pid).cpu_times()[:2])
        assert tree() - before < child_s  # listing not refreshed yet: the child is not counted
        clock.advance(0.5)
        assert tree() - before >= child_s - 0.011  # refreshed: the child's time is counted
    finally:
        child.kill()
        child.wait()


def test_tree_time_rejects_machine_mode() -> None:
    """The process-tree source does not do machine mode."""
    with pytest.raises(ConfigError, match="use machine_busy_cpu_s"):
        ProcessTreeCpuTime(psutil.Process(), "machine")


def test_component_name_can_be_chosen(clock: FakeClock) -> None:
    """A custom name labels both the component and the reading."""
    meter = CpuModelMeter(FakeCpuTime(), name="host-cpu", clock=clock)
    assert meter.components[0].name == "host-cpu"
    assert meter.read().energy_j == {"host-cpu": 0.0}

"""measure_command: run a command inside a monitor window."""

from __future__ import annotations

import sys

import pytest

from tokenwatt.energy import (
    CommandNotStartedError,
    FacilityModel,
    FixedPowerMeter,
    measure_command,
)
from tokenwatt.errors import ConfigError, MeterError

PY = sys.executable


def test_energy_is_power_times_command_duration() -> None:
    """A 100 W meter over the command's run gives 100 W x its duration, per component."""
    result = measure_command([PY, "-c", "pass"], [FixedPowerMeter({"gpu0": 100.0}, scope="gpu")])
    m = result.measurement
    assert result.exit_code == 0
    assert m.name == "command"
    assert m.energy_j["gpu0"] == pytest.approx(100.0 * m.duration_s)
    assert result.facility.it_energy_j == m.total_j()


def test_exit_status_and_signals_pass_through() -> None:
    """The exit status is the command's; a signal N reads as 128 + N, as shells report it."""
    meter = FixedPowerMeter({"a": 1.0})
    assert measure_command([PY, "-c", "raise SystemExit(4)"], [meter]).exit_code == 4
    kill = "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"
    assert measure_command([PY, "-c", kill], [FixedPowerMeter({"a": 1.0})]).exit_code == 143


def test_idle_baseline_and_facility_are_applied() -> None:
    """idle_s measures a baseline; the facility model turns total energy into facility energy."""
    result = measure_command(
        [PY, "-c", "pass"],
        [FixedPowerMeter({"node": 50.0})],
        idle_s=0.05,
        facility=FacilityModel(pue=2.0),
    )
    assert result.baseline is not None
    assert result.baseline.power_w["node"] == pytest.approx(50.0)
    assert result.measurement.adjusted_total_j() == pytest.approx(0.0, abs=1e-6)
    assert result.facility.facility_energy_j == 2.0 * result.measurement.total_j()


def test_json_document_follows_the_schema() -> None:
    """to_dict has the documented keys; timeline times are relative to the command's start."""
    result = measure_command(
        [PY, "-c", "import time; time.sleep(0.2)"], [FixedPowerMeter({"a": 1.0})], sample_hz=50
    )
    data = result.to_dict()
    assert list(data) == [
        "schema",
        "command",
        "exit_code",
        "sample_hz",
        "meters_skipped",
        "measurement",
        "idle_baseline",
        "facility",
        "timeline",
    ]
    assert data["schema"] == "tokenwatt.measure/1"
    assert len(data["timeline"]) >= 3
    assert 0 < data["timeline"][-1]["t_s"] <= data["measurement"]["duration_s"] + 0.1


def test_command_not_found_raises_and_closes_meters() -> None:
    """A command that cannot start raises CommandNotStartedError; the meters are closed."""
    meter = FixedPowerMeter({"a": 1.0})
    with pytest.raises(CommandNotStartedError, match="cannot start 'tokenwatt-nope'"):
        measure_command(["tokenwatt-nope"], [meter])
    with pytest.raises(MeterError, match="after close"):
        meter.read()


def test_empty_command_is_rejected_and_meters_closed() -> None:
    """No command is a ConfigError that says to put one after `--`; meters are closed."""
    meter = FixedPowerMeter({"a": 1.0})
    with pytest.raises(ConfigError, match="after `--`"):
        measure_command([], [meter])
    with pytest.raises(MeterError, match="after close"):
        meter.read()

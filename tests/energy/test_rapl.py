"""RaplMeter over fake powercap sysfs trees."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.energy.fakes import FakeClock
from tokenwatt.energy import Component, RaplMeter
from tokenwatt.energy.rapl import find_rapl_domains, read_text
from tokenwatt.errors import MeterError

MAX_UJ = 1_000_000


def make_zone(root: Path, zone: str, name: str, energy_uj: int) -> Path:
    path = root / zone
    path.mkdir(parents=True)
    (path / "name").write_text(f"{name}\n")
    (path / "energy_uj").write_text(f"{energy_uj}\n")
    (path / "max_energy_range_uj").write_text(f"{MAX_UJ}\n")
    return path


@pytest.fixture
def powercap(tmp_path: Path) -> Path:
    """Two packages; package 0 has dram and core sub-zones, package 1 has no dram."""
    make_zone(tmp_path, "intel-rapl:0", "package-0", 100)
    make_zone(tmp_path, "intel-rapl:0:0", "core", 50)
    make_zone(tmp_path, "intel-rapl:0:1", "dram", 10)
    make_zone(tmp_path, "intel-rapl:1", "package-1", 200)
    (tmp_path / "intel-rapl-mmio:0").mkdir()  # other powercap zones are ignored
    return tmp_path


def set_uj(root: Path, zone: str, energy_uj: int) -> None:
    (root / zone / "energy_uj").write_text(f"{energy_uj}\n")


def test_finds_package_and_dram_domains(powercap: Path) -> None:
    """Packages are cpu scope, dram sub-zones dram scope; core sub-zones are skipped."""
    meter = RaplMeter.open(powercap)
    assert list(meter.components) == [
        Component("rapl:package-0", "cpu", "rapl"),
        Component("rapl:dram-0", "dram", "rapl"),
        Component("rapl:package-1", "cpu", "rapl"),
    ]


def test_energy_is_joules_since_open(powercap: Path, clock: FakeClock) -> None:
    """Counter deltas in microjoules become joules since open()."""
    meter = RaplMeter.open(powercap, clock=clock)
    set_uj(powercap, "intel-rapl:0", 2_500_100)
    set_uj(powercap, "intel-rapl:0:1", 500_010)
    clock.advance(1.0)
    reading = meter.read()
    assert reading.time_s == 101.0
    assert reading.energy_j == {"rapl:package-0": 2.5, "rapl:dram-0": 0.5, "rapl:package-1": 0.0}


def test_counter_wrap_around_adds_the_range(powercap: Path) -> None:
    """A counter that went backwards wrapped at max_energy_range_uj."""
    meter = RaplMeter.open(powercap)
    set_uj(powercap, "intel-rapl:1", 999_000)
    meter.read()
    set_uj(powercap, "intel-rapl:1", 1_000)  # wrapped: 1,000 to the top, 1,000 after
    assert meter.read().energy_j["rapl:package-1"] == pytest.approx((999_000 - 200 + 2_000) / 1e6)


def test_missing_powercap_root_is_a_meter_error(tmp_path: Path) -> None:
    """No powercap directory: a MeterError saying the kernel exposes none."""
    with pytest.raises(MeterError, match="exposes no powercap"):
        RaplMeter.open(tmp_path / "absent")


def test_root_without_rapl_zones_is_a_meter_error(tmp_path: Path) -> None:
    """A powercap directory without intel-rapl zones is a MeterError."""
    with pytest.raises(MeterError, match="no RAPL package zones"):
        find_rapl_domains(tmp_path)


def test_permission_denied_says_how_to_fix_it(powercap: Path) -> None:
    """An unreadable energy_uj gives a MeterError with the chmod fix (injected via the reader)."""

    def reader(path: Path) -> str:
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(path))
        return read_text(path)

    with pytest.raises(MeterError, match=r"permission denied; run `sudo chmod o\+r"):
        RaplMeter.open(powercap, reader=reader)


def test_garbled_counter_is_a_meter_error(powercap: Path) -> None:
    """A counter file that is not an integer is a MeterError naming the file."""
    set_uj(powercap, "intel-rapl:0", "garbage")  # type: ignore[arg-type]
    with pytest.raises(MeterError, match="intel-rapl:0/energy_uj"):
        RaplMeter.open(powercap)

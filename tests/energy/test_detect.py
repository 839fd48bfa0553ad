"""detect_meters/probe_meters: stated order, never raising for absent hardware."""

from __future__ import annotations

from pathlib import Path

from tests.energy.fakes import FakeNvml
from tests.energy.test_rapl import make_zone
from tokenwatt.energy import CpuModelMeter, NvmlMeter, RaplMeter, detect_meters, probe_meters


def test_no_hardware_gives_the_cpu_model_and_reasons(tmp_path: Path) -> None:
    """Without GPUs or RAPL, only the CPU model is used and each skip has a reason."""
    probe = probe_meters(nvml_module=FakeNvml(), powercap_root=tmp_path / "none")
    assert [type(m) for m in probe.meters] == [CpuModelMeter]
    assert set(probe.skipped) == {"nvml", "rapl"}
    assert "no GPU visible" in probe.skipped["nvml"]
    assert "exposes no powercap" in probe.skipped["rapl"]


def test_nvml_then_rapl_and_no_cpu_model(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    """With GPUs and RAPL both are used, in that order, and the CPU model is not needed."""
    make_zone(tmp_path, "intel-rapl:0", "package-0", 0)
    probe = probe_meters(nvml_module=fake_nvml, powercap_root=tmp_path)
    assert [type(m) for m in probe.meters] == [NvmlMeter, RaplMeter]
    assert probe.skipped == {"cpu-model": "not needed: RAPL measures the CPU"}


def test_cpu_model_always_is_added_beside_rapl(tmp_path: Path) -> None:
    """cpu_model='always' adds the model even where RAPL measures the CPU."""
    make_zone(tmp_path, "intel-rapl:0", "package-0", 0)
    probe = probe_meters(nvml=False, powercap_root=tmp_path, cpu_model="always")
    assert [type(m) for m in probe.meters] == [RaplMeter, CpuModelMeter]


def test_disabled_back_ends_are_reported_as_disabled() -> None:
    """Switching every back-end off gives no meters and says so for each."""
    probe = probe_meters(nvml=False, rapl=False, cpu_model="never")
    assert probe.meters == []
    assert probe.skipped == {"nvml": "disabled", "rapl": "disabled", "cpu-model": "disabled"}


def test_unexpected_back_end_failure_is_a_reason_not_a_crash(tmp_path: Path) -> None:
    """A back-end raising something unexpected is skipped with the error as its reason."""
    nvml = FakeNvml(init_error=None)
    nvml.nvmlDeviceGetCount = None  # type: ignore[assignment,method-assign]
    probe = probe_meters(nvml_module=nvml, powercap_root=tmp_path / "none")
    assert probe.skipped["nvml"].startswith("TypeError")


def test_detect_meters_returns_the_meters(tmp_path: Path) -> None:
    """detect_meters is probe_meters(...).meters."""
    meters = detect_meters(nvml=False, powercap_root=tmp_path / "none")
    assert [type(m) for m in meters] == [CpuModelMeter]

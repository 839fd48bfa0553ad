"""NvmlMeter through a fake pynvml module (and a real check where a GPU exists)."""

from __future__ import annotations

import pytest

from tests.energy.fakes import FakeClock, FakeGpu, FakeNvml
from tokenwatt.energy import Component, NvmlMeter
from tokenwatt.energy.nvml import parse_visible_devices
from tokenwatt.errors import MeterError

UUIDS = ["GPU-aaaa-0000", "GPU-bbbb-1111", "GPU-cccc-2222"]


def test_counter_energy_is_joules_since_open(fake_nvml: FakeNvml, clock: FakeClock) -> None:
    """The hardware counter (mJ) becomes joules counted from open()."""
    meter = NvmlMeter.open(nvml=fake_nvml, clock=clock)
    fake_nvml.gpus[0].energy_mj += 1_500
    fake_nvml.gpus[1].energy_mj += 250_000
    assert meter.read().energy_j == {"gpu0": 1.5, "gpu1": 250.0}


def test_components_are_labelled_nvml_gpu(fake_nvml: FakeNvml) -> None:
    """Each GPU is a gpu-scope nvml component that says how it is measured."""
    meter = NvmlMeter.open(nvml=fake_nvml)
    assert meter.components[1] == Component(
        "gpu1", "gpu", "nvml", {"nvml_index": 1, "method": "energy-counter"}
    )


def test_power_is_integrated_by_trapezoid_without_a_counter(clock: FakeClock) -> None:
    """Without a counter, energy is the trapezoid of sampled power (mW) over time."""
    nvml = FakeNvml([FakeGpu("GPU-x", energy_mj=None, power_mw=100_000)])
    meter = NvmlMeter.open(nvml=nvml, clock=clock)
    clock.advance(2.0)
    nvml.gpus[0].power_mw = 300_000
    assert meter.read().energy_j == {"gpu0": 400.0}
    clock.advance(1.0)
    assert meter.read().energy_j == {"gpu0": 700.0}
    assert meter.components[0].params["method"] == "power-integration"


def test_visible_devices_pick_and_renumber_gpus(fake_nvml: FakeNvml) -> None:
    """CUDA_VISIBLE_DEVICES=1 exposes NVML device 1 as gpu0, as CUDA numbers it."""
    meter = NvmlMeter.open("1", nvml=fake_nvml)
    assert [(c.name, c.params["nvml_index"]) for c in meter.components] == [("gpu0", 1)]


def test_no_visible_gpu_is_a_meter_error_and_shuts_nvml_down(fake_nvml: FakeNvml) -> None:
    """An empty CUDA_VISIBLE_DEVICES means no GPU: MeterError, NVML released."""
    with pytest.raises(MeterError, match="no GPU visible"):
        NvmlMeter.open("", nvml=fake_nvml)
    assert fake_nvml.shutdowns == 1


def test_nvml_init_failure_is_a_meter_error() -> None:
    """NVML failing to start (no driver) is a MeterError that names the likely cause."""
    nvml = FakeNvml(init_error=RuntimeError("Driver Not Loaded"))
    with pytest.raises(MeterError, match="is an NVIDIA driver installed"):
        NvmlMeter.open(nvml=nvml)


def test_read_failure_is_a_meter_error(fake_nvml: FakeNvml) -> None:
    """An NVML error during a read becomes a MeterError naming the GPU."""
    meter = NvmlMeter.open(nvml=fake_nvml)
    fake_nvml.gpus[0].energy_mj = None
    with pytest.raises(MeterError, match="NVML read of gpu0 failed"):
        meter.read()


def test_close_shuts_nvml_down_once(fake_nvml: FakeNvml) -> None:
    """close() calls nvmlShutdown once, however often it is called."""
    meter = NvmlMeter.open(nvml=fake_nvml)
    meter.close()
    meter.close()
    assert fake_nvml.shutdowns == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, [0, 1, 2]),
        ("2,0", [2, 0]),
        (" 1 ", [1]),
        ("0,7,1", [0]),
        ("GPU-bbbb", [1]),
        ("GPU-", []),
        ("MIG-abc,2", [2]),
        ("0,0", []),
        ("-1", []),
    ],
)
def test_parse_visible_devices_follows_cuda(value: str | None, expected: list[int]) -> None:
    """Indices, UUID prefixes, stop at the first invalid entry, duplicates hide all."""
    assert parse_visible_devices(value, 3, UUIDS) == expected


@pytest.mark.gpu
def test_real_nvml_reads_non_negative_energy() -> None:
    """On a GPU machine the real NVML gives a gpu0 whose energy never decreases."""
    meter = NvmlMeter.open()
    try:
        first = meter.read().energy_j["gpu0"]
        second = meter.read().energy_j["gpu0"]
        assert 0.0 <= first <= second
    finally:
        meter.close()


def test_first_read_failure_releases_nvml(fake_nvml: FakeNvml) -> None:
    """If the first reading fails, open() raises MeterError and shuts NVML down."""

    class LosesGpuAfterProbe(FakeNvml):
        calls = 0

        def nvmlDeviceGetTotalEnergyConsumption(self, handle: FakeGpu) -> int:
            self.calls += 1
            if self.calls > 1:  # the probe in open() succeeds, the first reading fails
                raise self.NVMLError("GPU is lost")
            return 0

    nvml = LosesGpuAfterProbe([FakeGpu("GPU-x")])
    with pytest.raises(MeterError, match="GPU is lost"):
        NvmlMeter.open(nvml=nvml)
    assert nvml.shutdowns == 1

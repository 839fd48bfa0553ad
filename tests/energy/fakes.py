"""Fakes for the energy tests: a settable clock and a fake ``pynvml`` module."""

from __future__ import annotations

from dataclasses import dataclass, field


class FakeClock:
    """A clock that only moves when a test sets or advances it."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeGpu:
    """One fake device: a settable energy counter (mJ) and power (mW)."""

    uuid: str
    energy_mj: int | None = 0
    """None: the device has no energy counter (raises NotSupported)."""
    power_mw: int = 0


class FakeNvmlError(Exception):
    """Stands in for pynvml.NVMLError."""


@dataclass
class FakeNvml:
    """Just the pynvml functions the meter calls, over a list of FakeGpu."""

    gpus: list[FakeGpu] = field(default_factory=list)
    init_error: Exception | None = None
    initialised: bool = False
    shutdowns: int = 0
    NVMLError: type[Exception] = FakeNvmlError

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise self.init_error
        self.initialised = True

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        return self.gpus[index]

    def nvmlDeviceGetUUID(self, handle: FakeGpu) -> bytes:
        return handle.uuid.encode()

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: FakeGpu) -> int:
        if handle.energy_mj is None:
            raise FakeNvmlError("Not Supported")
        return handle.energy_mj

    def nvmlDeviceGetPowerUsage(self, handle: FakeGpu) -> int:
        return handle.power_mw

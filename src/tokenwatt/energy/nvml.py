"""NvmlMeter: per-GPU energy from NVIDIA's management library (``nvidia-ml-py``, ``import pynvml``).

Uses the hardware energy counter (Volta and newer) where the GPU has one; otherwise integrates
sampled board power. NVML units (mJ, mW) never leave this module: everything above it sees J and W.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tokenwatt.energy.meter import Component, Reading
from tokenwatt.errors import MeterError

__all__ = ["NvmlGpu", "NvmlMeter", "parse_visible_devices"]

log = logging.getLogger(__name__)

Clock = Callable[[], float]

ENERGY_COUNTER = "energy-counter"
POWER_INTEGRATION = "power-integration"


@dataclass(frozen=True)
class NvmlGpu:
    """One GPU as the meter sees it (built by ``NvmlMeter.open``)."""

    name: str
    """Component name, ``gpu<N>`` with N the index CUDA gives it (after CUDA_VISIBLE_DEVICES)."""
    nvml_index: int
    """NVML's own index of the device (PCI bus order)."""
    handle: Any
    """The NVML device handle."""
    method: str
    """``energy-counter`` (hardware counter) or ``power-integration`` (sampled power)."""


def parse_visible_devices(value: str | None, count: int, uuids: Sequence[str]) -> list[int]:
    """NVML indices that a CUDA_VISIBLE_DEVICES value exposes, in CUDA's order.

    ``None`` means every device. Entries are indices or GPU UUIDs (a unique prefix is enough).
    Like CUDA, parsing stops at the first entry that names no device, and a device named twice
    makes the whole list invalid (no devices). MIG entries are skipped: MIG slices have no
    energy counter of their own.
    """
    if value is None:
        return list(range(count))
    chosen: list[int] = []
    for raw in value.split(","):
        entry = raw.strip()
        index = _resolve_entry(entry, count, uuids)
        if index is None:
            if entry:
                log.warning(
                    "CUDA_VISIBLE_DEVICES entry %r names no GPU; ignoring it and the rest", entry
                )
            break
        if index < 0:
            continue  # a MIG slice: skipped, see docstring
        if index in chosen:
            log.warning("CUDA_VISIBLE_DEVICES names GPU %d twice; CUDA then sees no GPU", index)
            return []
        chosen.append(index)
    return chosen


def _resolve_entry(entry: str, count: int, uuids: Sequence[str]) -> int | None:
    """NVML index for one entry, -1 for a MIG slice, None when it names nothing."""
    if entry.isdigit():
        index = int(entry)
        return index if index < count else None
    if entry.startswith("MIG-"):
        log.warning(
            "CUDA_VISIBLE_DEVICES entry %r is a MIG slice; NVML has no per-slice energy", entry
        )
        return -1
    if entry.startswith("GPU-"):
        matches = [i for i, uuid in enumerate(uuids) if uuid.startswith(entry)]
        return matches[0] if len(matches) == 1 else None
    return None


class NvmlMeter:
    """Cumulative energy (J) per visible GPU since ``open()``; source ``nvml``, scope ``gpu``.

    With the hardware counter (``nvmlDeviceGetTotalEnergyConsumption``, mJ) a read is exact
    whenever it happens. Without it, each read samples ``nvmlDeviceGetPowerUsage`` (mW) and adds
    the trapezoid ``(p_prev + p_now) / 2 x dt`` since the previous read, so accuracy depends on
    the read rate: keep an ``EnergyMonitor`` sampler running (10 Hz or faster).
    """

    def __init__(
        self, nvml: Any, gpus: Sequence[NvmlGpu], *, clock: Clock = time.monotonic
    ) -> None:
        self._nvml = nvml
        self._gpus = tuple(gpus)
        self._clock = clock
        self._components = tuple(
            Component(g.name, "gpu", "nvml", {"nvml_index": g.nvml_index, "method": g.method})
            for g in self._gpus
        )
        self._origin_mj: dict[str, float] = {}
        self._energy_j = {g.name: 0.0 for g in self._gpus}
        self._last: dict[str, tuple[float, float]] = {}  # name -> (time_s, power_w)
        self._closed = False
        self._lock = threading.Lock()

    @classmethod
    def open(
        cls,
        visible_devices: str | None = None,
        *,
        nvml: Any | None = None,
        clock: Clock = time.monotonic,
    ) -> NvmlMeter:
        """Initialise NVML and open the GPUs ``visible_devices`` (CUDA_VISIBLE_DEVICES) exposes.

        ``nvml`` replaces the ``pynvml`` module (tests pass a fake). Raises MeterError when
        NVML is missing or fails, or when no GPU is visible.
        """
        module = nvml if nvml is not None else _import_pynvml()
        try:
            module.nvmlInit()
        except Exception as exc:
            raise MeterError(
                f"NVML could not start ({exc}); is an NVIDIA driver installed?"
            ) from exc
        try:
            gpus = _open_gpus(module, visible_devices)
        except module.NVMLError as exc:
            module.nvmlShutdown()
            raise MeterError(f"NVML could not list GPUs: {exc}") from exc
        except Exception:
            module.nvmlShutdown()
            raise
        meter = cls(module, gpus, clock=clock)
        try:
            meter.read()  # sets the origin: energy counts from open()
        except MeterError:
            meter.close()
            raise
        return meter

    @property
    def components(self) -> Sequence[Component]:
        """One ``gpu<N>`` component per visible GPU, in CUDA order."""
        return self._components

    def read(self) -> Reading:
        """Joules per GPU since ``open()``."""
        with self._lock:
            if self._closed:
                raise MeterError("NvmlMeter was read after close()")
            now = self._clock()
            for gpu in self._gpus:
                try:
                    if gpu.method == ENERGY_COUNTER:
                        self._read_counter(gpu)
                    else:
                        self._integrate_power(gpu, now)
                except self._nvml.NVMLError as exc:
                    raise MeterError(f"NVML read of {gpu.name} failed: {exc}") from exc
            return Reading(now, dict(self._energy_j))

    def _read_counter(self, gpu: NvmlGpu) -> None:
        total_mj = float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(gpu.handle))
        origin = self._origin_mj.setdefault(gpu.name, total_mj)
        self._energy_j[gpu.name] = (total_mj - origin) / 1000.0

    def _integrate_power(self, gpu: NvmlGpu, now: float) -> None:
        power_w = float(self._nvml.nvmlDeviceGetPowerUsage(gpu.handle)) / 1000.0
        previous = self._last.get(gpu.name)
        if previous is not None:
            then, power_then_w = previous
            self._energy_j[gpu.name] += (power_then_w + power_w) / 2.0 * max(now - then, 0.0)
        self._last[gpu.name] = (now, power_w)

    def close(self) -> None:
        """Shut NVML down (once)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._nvml.nvmlShutdown()
        except self._nvml.NVMLError as exc:
            log.debug("nvmlShutdown failed: %s", exc)


def _import_pynvml() -> Any:
    try:
        return importlib.import_module("pynvml")
    except ImportError as exc:
        raise MeterError("pynvml is not installed; run `pip install nvidia-ml-py`") from exc


def _open_gpus(nvml: Any, visible_devices: str | None) -> list[NvmlGpu]:
    count = int(nvml.nvmlDeviceGetCount())
    handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
    uuids = [_text(nvml.nvmlDeviceGetUUID(h)) for h in handles]
    indices = parse_visible_devices(visible_devices, count, uuids)
    if not indices:
        raise MeterError(
            f"no GPU visible (NVML sees {count}, CUDA_VISIBLE_DEVICES={visible_devices!r})"
        )
    return [
        NvmlGpu(
            f"gpu{cuda_index}", nvml_index, handles[nvml_index], _method(nvml, handles[nvml_index])
        )
        for cuda_index, nvml_index in enumerate(indices)
    ]


def _method(nvml: Any, handle: Any) -> str:
    try:
        nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    except nvml.NVMLError as exc:
        log.info("GPU has no usable energy counter (%s); integrating sampled power", exc)
        return POWER_INTEGRATION
    return ENERGY_COUNTER


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value

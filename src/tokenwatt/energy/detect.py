"""Find the energy meters this machine offers, in a stated order, never failing on absent hardware.

Order: NVML (GPUs), then RAPL (CPU package and DRAM), then the CPU model, which stands in for a
CPU sensor only when RAPL found none (unless asked for explicitly).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tokenwatt.energy.cpu_model import CpuMode, CpuModelMeter, CpuModelParams
from tokenwatt.energy.meter import Meter
from tokenwatt.energy.nvml import NvmlMeter
from tokenwatt.energy.rapl import DEFAULT_POWERCAP_ROOT, RaplMeter, Reader, read_text
from tokenwatt.errors import MeterError

__all__ = ["MeterProbe", "detect_meters", "probe_meters"]

log = logging.getLogger(__name__)

CpuModelChoice = Literal["auto", "always", "never"]


@dataclass(frozen=True)
class MeterProbe:
    """What detection found: the meters opened and, per back-end skipped, why."""

    meters: list[Meter] = field(default_factory=list)
    """Opened meters in detection order (the caller closes them)."""
    skipped: dict[str, str] = field(default_factory=dict)
    """Back-end name (``nvml``, ``rapl``, ``cpu-model``) -> the reason it was not used."""


def probe_meters(
    *,
    nvml: bool = True,
    rapl: bool = True,
    cpu_model: CpuModelChoice = "auto",
    visible_devices: str | None = None,
    powercap_root: Path = DEFAULT_POWERCAP_ROOT,
    cpu_mode: CpuMode = "process",
    cpu_params: CpuModelParams = CpuModelParams(),
    pid: int | None = None,
    nvml_module: Any | None = None,
    rapl_reader: Reader = read_text,
) -> MeterProbe:
    """Open every available back-end; never raises for missing hardware.

    ``visible_devices`` is the CUDA_VISIBLE_DEVICES value; None means every GPU. Library code
    never reads the environment, so an entry point passes
    ``os.environ.get("CUDA_VISIBLE_DEVICES")`` to honour it.
    ``cpu_model="auto"`` adds the CPU model only when RAPL gave no CPU meter; ``"always"`` adds
    it regardless, ``"never"`` not at all. ``cpu_mode`` and ``pid`` choose whose CPU time the
    model counts (see ``CpuModelMeter.open``).
    """
    meters: list[Meter] = []
    skipped: dict[str, str] = {}
    if not nvml:
        skipped["nvml"] = "disabled"
    else:
        _try(
            "nvml",
            lambda: NvmlMeter.open(visible_devices, nvml=nvml_module),
            meters,
            skipped,
        )
    if not rapl:
        skipped["rapl"] = "disabled"
    else:
        _try("rapl", lambda: RaplMeter.open(powercap_root, reader=rapl_reader), meters, skipped)
    has_cpu_sensor = any(isinstance(m, RaplMeter) for m in meters)
    if cpu_model == "never":
        skipped["cpu-model"] = "disabled"
    elif cpu_model == "auto" and has_cpu_sensor:
        skipped["cpu-model"] = "not needed: RAPL measures the CPU"
    else:
        _try(
            "cpu-model",
            lambda: CpuModelMeter.open(cpu_mode, params=cpu_params, pid=pid),
            meters,
            skipped,
        )
    return MeterProbe(meters, skipped)


def detect_meters(
    *,
    nvml: bool = True,
    rapl: bool = True,
    cpu_model: CpuModelChoice = "auto",
    visible_devices: str | None = None,
    powercap_root: Path = DEFAULT_POWERCAP_ROOT,
    cpu_mode: CpuMode = "process",
    cpu_params: CpuModelParams = CpuModelParams(),
    pid: int | None = None,
) -> list[Meter]:
    """The meters ``probe_meters`` opens with these options (skipped back-ends are logged)."""
    return probe_meters(
        nvml=nvml,
        rapl=rapl,
        cpu_model=cpu_model,
        visible_devices=visible_devices,
        powercap_root=powercap_root,
        cpu_mode=cpu_mode,
        cpu_params=cpu_params,
        pid=pid,
    ).meters


def _try(
    name: str, opener: Callable[[], Meter], meters: list[Meter], skipped: dict[str, str]
) -> None:
    try:
        meters.append(opener())
    except MeterError as exc:
        skipped[name] = str(exc)
        log.info("energy back-end %s skipped: %s", name, exc)
    except Exception as exc:  # a broken driver or library must not stop the measurement
        skipped[name] = f"{type(exc).__name__}: {exc}"
        log.warning("energy back-end %s failed unexpectedly: %r", name, exc)
    else:
        log.info("energy back-end %s in use", name)

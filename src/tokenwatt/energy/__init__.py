"""Energy measurement: meters (nvml, rapl, cpu model, replay), monitor windows, facility model."""

from tokenwatt.energy.combined import CombinedMeter
from tokenwatt.energy.cpu_model import CpuMode, CpuModelMeter, CpuModelParams
from tokenwatt.energy.detect import MeterProbe, detect_meters, probe_meters
from tokenwatt.energy.meter import SCOPES, Component, Meter, Reading, Scope, is_estimated
from tokenwatt.energy.nvml import NvmlMeter
from tokenwatt.energy.rapl import RaplMeter
from tokenwatt.energy.replay import FixedPowerMeter, ReplayMeter

__all__ = [
    "SCOPES",
    "CombinedMeter",
    "Component",
    "CpuMode",
    "CpuModelMeter",
    "CpuModelParams",
    "FixedPowerMeter",
    "Meter",
    "MeterProbe",
    "NvmlMeter",
    "RaplMeter",
    "Reading",
    "ReplayMeter",
    "Scope",
    "detect_meters",
    "is_estimated",
    "probe_meters",
]

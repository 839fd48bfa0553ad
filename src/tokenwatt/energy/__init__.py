"""Energy measurement: meters (nvml, rapl, cpu model, replay), monitor windows, facility model."""

from tokenwatt.energy.combined import CombinedMeter
from tokenwatt.energy.cpu_model import CpuMode, CpuModelMeter, CpuModelParams
from tokenwatt.energy.detect import MeterProbe, detect_meters, probe_meters
from tokenwatt.energy.facility import (
    FACILITY_PRESETS,
    FacilityModel,
    FacilityReport,
    facility_preset,
)
from tokenwatt.energy.measure import CommandMeasurement, CommandNotStartedError, measure_command
from tokenwatt.energy.measurement import IdleBaseline, Measurement, PowerSample, average_power_w
from tokenwatt.energy.meter import SCOPES, Component, Meter, Reading, Scope, is_estimated
from tokenwatt.energy.monitor import EnergyMonitor, Window, WindowError
from tokenwatt.energy.nvml import NvmlMeter
from tokenwatt.energy.rapl import RaplMeter
from tokenwatt.energy.replay import FixedPowerMeter, ReplayMeter

__all__ = [
    "FACILITY_PRESETS",
    "SCOPES",
    "CombinedMeter",
    "CommandMeasurement",
    "CommandNotStartedError",
    "Component",
    "CpuMode",
    "CpuModelMeter",
    "CpuModelParams",
    "EnergyMonitor",
    "FacilityModel",
    "FacilityReport",
    "FixedPowerMeter",
    "IdleBaseline",
    "Measurement",
    "Meter",
    "MeterProbe",
    "NvmlMeter",
    "PowerSample",
    "RaplMeter",
    "Reading",
    "ReplayMeter",
    "Scope",
    "Window",
    "WindowError",
    "average_power_w",
    "detect_meters",
    "facility_preset",
    "is_estimated",
    "measure_command",
    "probe_meters",
]

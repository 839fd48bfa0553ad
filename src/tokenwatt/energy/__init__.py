"""Energy measurement: meters (nvml, rapl, cpu model, replay), monitor windows, facility model."""

from tokenwatt.energy.meter import SCOPES, Component, Meter, Reading, Scope, is_estimated

__all__ = ["SCOPES", "Component", "Meter", "Reading", "Scope", "is_estimated"]

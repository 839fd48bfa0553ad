"""The ``Meter`` seam: what every energy back-end (nvml, rapl, cpu model, replay) provides.

A meter reads *cumulative* energy in joules per component since an origin of its own choosing;
callers take differences of two readings. Every component says where its figure comes from
(``source``) and what it covers (``scope``), so no figure is ever printed without them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from tokenwatt.errors import ConfigError

__all__ = ["SCOPES", "Component", "Meter", "Reading", "Scope", "is_estimated"]

Scope = Literal["gpu", "cpu", "dram", "node", "facility"]
"""What a figure covers: one accelerator, CPU package(s), DRAM, a whole node, or the facility."""

SCOPES: tuple[Scope, ...] = ("gpu", "cpu", "dram", "node", "facility")


def is_estimated(source: str) -> bool:
    """True when ``source`` names an estimate or a preset rather than a hardware sensor."""
    return source.startswith(("estimated", "preset"))


@dataclass(frozen=True)
class Component:
    """One thing a meter measures, e.g. ``gpu0`` (nvml, gpu) or ``package-0`` (rapl, cpu)."""

    name: str
    """Unique name within the meter set, e.g. ``gpu0``, ``rapl:package-0``, ``cpu``."""
    scope: Scope
    """What the figure covers."""
    source: str
    """Where the figure comes from: ``nvml``, ``rapl``, ``estimated:cpu-model``, ``replay``..."""
    params: Mapping[str, float | str] = field(default_factory=dict)
    """Parameters behind an estimate (e.g. watts per core), empty for measured figures."""

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise ConfigError(f"unknown scope {self.scope!r}; use one of {', '.join(SCOPES)}")
        if not self.name:
            raise ConfigError("a meter component needs a non-empty name")

    @property
    def estimated(self) -> bool:
        """True when this component's figures are estimates, not sensor readings."""
        return is_estimated(self.source)


@dataclass(frozen=True)
class Reading:
    """Cumulative energy per component at one instant."""

    time_s: float
    """``time.monotonic()`` when the reading was taken."""
    energy_j: Mapping[str, float]
    """Cumulative joules per component name since the meter's own origin."""


@runtime_checkable
class Meter(Protocol):
    """An energy back-end. Constructors do no I/O; ``read`` is cheap and thread-safe."""

    @property
    def components(self) -> Sequence[Component]:
        """The components this meter reports, in a stable order."""
        ...

    def read(self) -> Reading:
        """Cumulative energy (J) of every component now."""
        ...

    def close(self) -> None:
        """Release handles (NVML, files). Reading after close is an error."""
        ...

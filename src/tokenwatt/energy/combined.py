"""CombinedMeter: several meters (say NVML and RAPL) read as one ``Meter``.

Component names must be unique across the meters so every joule keeps a single label.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from tokenwatt.energy.meter import Component, Meter, Reading
from tokenwatt.errors import ConfigError, MeterError

__all__ = ["CombinedMeter"]

log = logging.getLogger(__name__)


class CombinedMeter:
    """Reads every meter in turn; a reading's time is the mean of the meters' read times."""

    def __init__(self, meters: Iterable[Meter]) -> None:
        self._meters = tuple(meters)
        seen: dict[str, int] = {}
        for index, meter in enumerate(self._meters):
            for component in meter.components:
                if component.name in seen:
                    raise ConfigError(
                        f"component {component.name!r} is reported by meters {seen[component.name]}"
                        f" and {index}; give each meter distinct component names"
                    )
                seen[component.name] = index
        self._components = tuple(c for m in self._meters for c in m.components)

    @property
    def meters(self) -> Sequence[Meter]:
        """The meters combined, in order."""
        return self._meters

    @property
    def components(self) -> Sequence[Component]:
        """Every meter's components, meter by meter."""
        return self._components

    def read(self) -> Reading:
        """One reading holding every meter's components."""
        if not self._meters:
            raise MeterError("CombinedMeter has no meters to read; detect or pass at least one")
        energy_j: dict[str, float] = {}
        times: list[float] = []
        for meter in self._meters:
            reading = meter.read()
            energy_j.update(reading.energy_j)
            times.append(reading.time_s)
        return Reading(sum(times) / len(times), energy_j)

    def close(self) -> None:
        """Close every meter, even when one fails; the first failure is re-raised."""
        first: Exception | None = None
        for meter in self._meters:
            try:
                meter.close()
            except Exception as exc:  # closing the rest matters more than this one's error
                log.warning("closing %r failed: %s", meter, exc)
                first = first or exc
        if first is not None:
            raise first

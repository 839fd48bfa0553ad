"""Meters for tests and presets: constant power per component, or replayed recorded readings.

Both are exact and deterministic (clocks are injectable), so tests anywhere in the project can
assert on joules without hardware.
"""

from __future__ import annotations

import bisect
import itertools
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from tokenwatt.energy.measurement import PowerSample
from tokenwatt.energy.meter import Component, Reading, Scope
from tokenwatt.errors import ConfigError, MeterError

__all__ = ["FixedPowerMeter", "ReplayMeter"]

Clock = Callable[[], float]


class FixedPowerMeter:
    """Constant power per component: energy (J) = watts x seconds since the first read.

    Use it in tests (with an injected clock the figures are exact) or as a labelled preset
    (``source="preset:H100"``). Its default source, ``estimated:fixed-power``, marks its
    figures as estimates; each component carries its ``power_w`` in ``params``.
    """

    def __init__(
        self,
        power_w: Mapping[str, float],
        *,
        scope: Scope | Mapping[str, Scope] = "node",
        source: str = "estimated:fixed-power",
        clock: Clock = time.monotonic,
    ) -> None:
        if not power_w:
            raise ConfigError("FixedPowerMeter needs at least one component, e.g. {'gpu0': 300.0}")
        for name, watts in power_w.items():
            if not watts >= 0:  # also rejects NaN
                raise ConfigError(f"power for {name!r} must be >= 0 W, got {watts!r}")
        scopes = {n: scope for n in power_w} if isinstance(scope, str) else dict(scope)
        missing = sorted(set(power_w) - set(scopes))
        if missing:
            raise ConfigError(f"no scope given for component(s) {', '.join(missing)}")
        self._power_w = dict(power_w)
        self._components = tuple(
            Component(name, scopes[name], source, {"power_w": float(w)})
            for name, w in power_w.items()
        )
        self._clock = clock
        self._origin_s: float | None = None
        self._closed = False
        self._lock = threading.Lock()

    @property
    def components(self) -> Sequence[Component]:
        """One component per name given, in the order given."""
        return self._components

    def read(self) -> Reading:
        """Watts x seconds since the first read (the first read returns zeros)."""
        with self._lock:
            if self._closed:
                raise MeterError("FixedPowerMeter was read after close()")
            now = self._clock()
            if self._origin_s is None:
                self._origin_s = now
            elapsed_s = now - self._origin_s
        return Reading(now, {n: w * elapsed_s for n, w in self._power_w.items()})

    def close(self) -> None:
        """Mark the meter closed; further reads raise MeterError."""
        with self._lock:
            self._closed = True


class ReplayMeter:
    """Replays recorded readings, e.g. from a real run, so a test sees real-shaped data.

    Without a clock each ``read()`` returns the next recorded reading and then keeps returning
    the last one. With a clock, ``read()`` returns the recording linearly interpolated at
    ``clock()`` (clamped to the first and last readings), so a sampler thread sees smooth power.
    """

    def __init__(
        self,
        components: Sequence[Component],
        readings: Sequence[Reading],
        *,
        clock: Clock | None = None,
    ) -> None:
        if not readings:
            raise ConfigError("ReplayMeter needs at least one recorded reading")
        names = [c.name for c in components]
        if len(set(names)) != len(names):
            raise ConfigError(f"duplicate component names in {names}")
        for i, reading in enumerate(readings):
            if set(reading.energy_j) != set(names):
                raise ConfigError(
                    f"recorded reading {i} has components {sorted(reading.energy_j)}, "
                    f"expected {sorted(names)}"
                )
        times = [r.time_s for r in readings]
        if any(b < a for a, b in itertools.pairwise(times)):
            raise ConfigError("recorded readings must be in time order")
        self._components = tuple(components)
        self._readings = tuple(readings)
        self._times = times
        self._clock = clock
        self._next = 0
        self._closed = False
        self._lock = threading.Lock()

    @classmethod
    def from_samples(
        cls,
        components: Sequence[Component],
        samples: Sequence[PowerSample],
        *,
        clock: Clock | None = None,
    ) -> ReplayMeter:
        """Replay a power timeline (e.g. a ``tokenwatt measure --json`` one) as readings.

        Each sample's average watts x its interval is added up, starting from zero at the
        first sample's start; components a sample lacks draw 0 W in it.
        """
        if not samples:
            raise ConfigError("ReplayMeter.from_samples needs at least one power sample")
        names = [c.name for c in components]
        first = samples[0]
        energy = dict.fromkeys(names, 0.0)
        readings = [Reading(first.time_s - first.interval_s, dict(energy))]
        for sample in samples:
            for name in names:
                energy[name] += sample.power_w.get(name, 0.0) * sample.interval_s
            readings.append(Reading(sample.time_s, dict(energy)))
        return cls(components, readings, clock=clock)

    @property
    def components(self) -> Sequence[Component]:
        """The components given, in the order given."""
        return self._components

    def read(self) -> Reading:
        """The next recorded reading, or the recording interpolated at ``clock()``."""
        with self._lock:
            if self._closed:
                raise MeterError("ReplayMeter was read after close()")
            if self._clock is None:
                reading = self._readings[self._next]
                self._next = min(self._next + 1, len(self._readings) - 1)
                return reading
            return self._interpolate(self._clock())

    def _interpolate(self, now: float) -> Reading:
        i = bisect.bisect_right(self._times, now)
        if i == 0:
            return Reading(now, dict(self._readings[0].energy_j))
        if i == len(self._readings):
            return Reading(now, dict(self._readings[-1].energy_j))
        before, after = self._readings[i - 1], self._readings[i]
        span_s = after.time_s - before.time_s
        frac = (now - before.time_s) / span_s if span_s > 0 else 1.0
        energy = {
            n: before.energy_j[n] + frac * (after.energy_j[n] - before.energy_j[n])
            for n in before.energy_j
        }
        return Reading(now, energy)

    def close(self) -> None:
        """Mark the meter closed; further reads raise MeterError."""
        with self._lock:
            self._closed = True

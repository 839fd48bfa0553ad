"""EnergyMonitor: named measurement windows, a background power sampler, and an idle baseline.

Windows may nest and overlap; each is two meter reads and a dict update, so they are cheap
enough to wrap single requests. The monitor owns its meters and closes them in ``close()``.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, TypeVar

from tokenwatt.energy.combined import CombinedMeter
from tokenwatt.energy.measurement import IdleBaseline, Measurement, PowerSample, average_power_w
from tokenwatt.energy.meter import Component, Meter, Reading
from tokenwatt.errors import ConfigError, MeterError

__all__ = ["MAX_SAMPLE_HZ", "EnergyMonitor", "Window", "WindowError"]

log = logging.getLogger(__name__)

MAX_SAMPLE_HZ = 1000.0
"""Highest sampler rate accepted."""

F = TypeVar("F", bound=Callable[..., Any])


class WindowError(MeterError):
    """A window was begun twice or ended without being begun."""


class Window:
    """A window as a context manager (``with``) or decorator; ``measurement`` holds the result.

    Every decorated call, and every ``with`` entry, opens a window of its own, so decorated
    functions may run in several threads or asyncio tasks at once and recurse. Take a fresh
    ``monitor.window(name)`` per ``with`` in concurrent asyncio code: entries of one shared
    object are matched to exits per thread, last in first out.
    """

    def __init__(self, monitor: EnergyMonitor, name: str) -> None:
        self._monitor = monitor
        self.name = name
        self.measurement: Measurement | None = None
        """The last finished measurement of this window (None until one ends)."""
        self._keys = threading.local()

    def __enter__(self) -> Window:
        key = object()
        self._monitor._begin(key, self.name)
        stack: list[object] = self._keys.__dict__.setdefault("stack", [])
        stack.append(key)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        key = self._keys.stack.pop()
        self.measurement = self._monitor._end(key)

    def __call__(self, fn: F) -> F:
        """Measure every call of ``fn``; for a coroutine function, every awaited call."""
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                key = object()
                self._monitor._begin(key, self.name)
                try:
                    return await fn(*args, **kwargs)
                finally:
                    self.measurement = self._monitor._end(key)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            key = object()
            self._monitor._begin(key, self.name)
            try:
                return fn(*args, **kwargs)
            finally:
                self.measurement = self._monitor._end(key)

        return wrapper  # type: ignore[return-value]


class EnergyMonitor:
    """Measures named windows over a set of meters; optionally samples power in the background.

    ``sample_hz`` is the sampler rate (0 disables it); ``start()`` / ``stop()`` run it, and
    ``with EnergyMonitor(...) as m:`` starts it and closes everything on exit. ``max_samples``
    bounds the timeline's memory (oldest samples drop first). ``sleep`` is injectable so
    ``measure_idle`` is exact under a fake clock.
    """

    def __init__(
        self,
        meters: Meter | Iterable[Meter],
        *,
        sample_hz: float = 10.0,
        max_samples: int | None = 100_000,
        baseline: IdleBaseline | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not sample_hz >= 0:
            raise ConfigError(
                f"sample_hz must be >= 0 (0 turns the sampler off), got {sample_hz!r}"
            )
        if sample_hz > MAX_SAMPLE_HZ:
            # faster than any meter refreshes (NVML ~ 10-50 Hz): it would only spin a core
            raise ConfigError(
                f"sample_hz must be at most {MAX_SAMPLE_HZ:g} (meters refresh far slower), "
                f"got {sample_hz!r}; 10 to 100 is usual"
            )
        if max_samples is not None and max_samples < 1:
            raise ConfigError(f"max_samples must be >= 1 or None, got {max_samples}")
        listed = [meters] if isinstance(meters, Meter) else list(meters)
        if not listed:
            raise ConfigError("EnergyMonitor needs at least one meter; see detect_meters()")
        self._meter: Meter = listed[0] if len(listed) == 1 else CombinedMeter(listed)
        self._components = tuple(self._meter.components)
        self.sample_hz = sample_hz
        self.baseline = baseline
        """Idle baseline applied to every window that ends (set by ``measure_idle``)."""
        self._sleep = sleep
        self._open: dict[object, tuple[str, Reading]] = {}
        self._last: dict[str, Measurement] = {}
        self._timeline: deque[PowerSample] = deque(maxlen=max_samples)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def components(self) -> Sequence[Component]:
        """Every component measured, with source and scope."""
        return self._components

    @property
    def meter(self) -> Meter:
        """The (combined) meter the monitor reads."""
        return self._meter

    def read(self) -> Reading:
        """A fresh reading of every meter."""
        return self._meter.read()

    # windows -------------------------------------------------------------------------------

    def begin_window(self, name: str) -> None:
        """Start the window ``name``; names must be unique among open windows."""
        self._begin(name, name)

    def end_window(self, name: str) -> Measurement:
        """End the window ``name`` and return its measurement."""
        return self._end(name)

    def cancel_window(self, name: str) -> None:
        """Forget the open window ``name`` without measuring it."""
        with self._lock:
            if self._open.pop(name, None) is None:
                raise WindowError(f"no open window named {name!r} to cancel")

    def window(self, name: str) -> Window:
        """A window usable as ``with monitor.window("x") as w:`` or ``@monitor.window("x")``."""
        return Window(self, name)

    def last(self, name: str) -> Measurement | None:
        """The most recent finished measurement of the window ``name``."""
        with self._lock:
            return self._last.get(name)

    @property
    def open_windows(self) -> list[str]:
        """Names of the windows now open, oldest first."""
        with self._lock:
            return [name for name, _ in self._open.values()]

    def _begin(self, key: object, name: str) -> None:
        if not name:
            raise WindowError("a window needs a non-empty name")
        reading = self._meter.read()
        with self._lock:
            if key in self._open:
                raise WindowError(f"window {name!r} is already open; end it or use another name")
            self._open[key] = (name, reading)

    def _end(self, key: object) -> Measurement:
        reading = self._meter.read()
        with self._lock:
            opened = self._open.pop(key, None)
            baseline = self.baseline
        if opened is None:
            raise WindowError(f"no open window named {key!r}; call begin_window first")
        name, start = opened
        energy = {n: reading.energy_j[n] - start.energy_j[n] for n in start.energy_j}
        idle = None if baseline is None else dict(baseline.power_w)
        result = Measurement(name, start.time_s, reading.time_s, energy, self._components, idle)
        with self._lock:
            self._last[name] = result
        return result

    # idle baseline ---------------------------------------------------------------------------

    def measure_idle(self, duration_s: float) -> IdleBaseline:
        """Measure average power over ``duration_s`` of (supposed) quiet; later windows use it."""
        if not duration_s > 0:
            raise ConfigError(f"idle baseline duration must be > 0 s, got {duration_s!r}")
        start = self._meter.read()
        self._sleep(duration_s)
        end = self._meter.read()
        elapsed_s = end.time_s - start.time_s
        if elapsed_s <= 0:
            raise MeterError("the meter's clock did not advance while measuring idle power")
        power = {n: (end.energy_j[n] - start.energy_j[n]) / elapsed_s for n in start.energy_j}
        baseline = IdleBaseline(elapsed_s, power, self._components)
        with self._lock:
            self.baseline = baseline
        return baseline

    # sampler ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the background sampler (no-op when ``sample_hz`` is 0 or it already runs)."""
        if self.sample_hz == 0 or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._sample_loop, name="tokenwatt-energy-sampler", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the sampler and wait for it (it stops within one interval)."""
        thread = self._thread
        if thread is None:
            return
        self._stop.set()
        thread.join()
        self._thread = None

    @property
    def sampling(self) -> bool:
        """True while the sampler thread runs."""
        return self._thread is not None

    def timeline(
        self, start_s: float | None = None, end_s: float | None = None
    ) -> list[PowerSample]:
        """Power samples taken so far, optionally only those ending in [start_s, end_s]."""
        with self._lock:
            samples = list(self._timeline)
        return [
            s
            for s in samples
            if (start_s is None or s.time_s >= start_s) and (end_s is None or s.time_s <= end_s)
        ]

    def steady_power_w(self, start_s: float, end_s: float) -> dict[str, float]:
        """Average watts per component from the samples ending in [start_s, end_s].

        Empty when no sample falls in the range (sampler off, or the range is too short).
        """
        return average_power_w(self.timeline(start_s, end_s))

    def _sample_loop(self) -> None:
        interval_s = 1.0 / self.sample_hz
        try:
            previous = self._meter.read()
        except Exception as exc:  # an unreadable meter leaves an empty timeline, not a crash
            log.warning("energy sampler stopped: %s", exc)
            return
        deadline = time.monotonic() + interval_s
        while not self._stop.wait(max(deadline - time.monotonic(), 0.0)):
            try:
                reading = self._meter.read()
            except Exception as exc:  # keep sampling: one failed read must not end the timeline
                log.warning("energy sampler skipped a sample: %s", exc)
                reading = None
            if reading is not None:
                self._record(previous, reading)
                previous = reading
            deadline += interval_s
            now = time.monotonic()
            if deadline < now:  # fell behind (a slow read, a busy machine): skip, don't burst
                deadline = now + interval_s

    def _record(self, previous: Reading, reading: Reading) -> None:
        elapsed_s = reading.time_s - previous.time_s
        if elapsed_s <= 0:
            return
        power = {
            n: (reading.energy_j[n] - previous.energy_j[n]) / elapsed_s for n in reading.energy_j
        }
        sample = PowerSample(reading.time_s, power, elapsed_s)
        with self._lock:
            self._timeline.append(sample)

    # lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the sampler and close the meters."""
        self.stop()
        self._meter.close()

    def __enter__(self) -> EnergyMonitor:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

"""CpuModelMeter: an *estimate* of CPU energy from measured CPU time, for machines with no sensor.

Labelled ``estimated:cpu-model`` with its parameters on every component, never as measured.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Literal, get_args

import psutil

from tokenwatt.energy.meter import Component, Reading
from tokenwatt.errors import ConfigError, MeterError

__all__ = [
    "CpuMode",
    "CpuModelMeter",
    "CpuModelParams",
    "ProcessTreeCpuTime",
    "machine_busy_cpu_s",
    "process_cpu_s",
]

Clock = Callable[[], float]

CpuMode = Literal["process", "tree", "children", "machine"]
"""What CPU time counts: this process; it and its descendants; only its descendants; all CPUs."""

CPU_MODES: tuple[str, ...] = get_args(CpuMode)


_MAX_W_PER_CORE = 1000.0


@dataclass(frozen=True)
class CpuModelParams:
    """Linear power model per logical CPU: idle draw plus a busy increment.

    The defaults are Cloud Carbon Footprint's averages for AWS hosts (derived from SPECpower
    results): 0.74 W per vCPU near idle and 3.5 W per vCPU at full load. They are published
    defaults for typical cloud servers, not a measurement of this machine; override them with
    figures for your CPU (for example its TDP divided by its logical CPUs for ``active``).
    """

    active_w_per_core: float = 3.5
    """Watts one logical CPU draws when fully busy (default: CCF AWS average maximum)."""
    idle_w_per_core: float = 0.74
    """Watts one logical CPU draws when idle (default: CCF AWS average minimum)."""

    def __post_init__(self) -> None:
        if not self.idle_w_per_core >= 0:
            raise ConfigError(f"idle_w_per_core must be >= 0 W, got {self.idle_w_per_core!r}")
        if self.active_w_per_core > _MAX_W_PER_CORE:
            # no CPU core draws a kilowatt; inf would turn every figure into NaN
            raise ConfigError(
                f"active_w_per_core must be at most {_MAX_W_PER_CORE:g} W, "
                f"got {self.active_w_per_core!r}"
            )
        if not self.active_w_per_core >= self.idle_w_per_core:
            raise ConfigError(
                f"active_w_per_core ({self.active_w_per_core!r} W) must be >= idle_w_per_core "
                f"({self.idle_w_per_core!r} W)"
            )


class CpuModelMeter:
    """Estimated CPU energy (J) since the first read, from busy CPU-seconds.

    ``energy = active_w_per_core x busy_s + idle_w_per_core x max(idle_cores x wall_s - busy_s, 0)``

    In the process modes ``idle_cores`` is 0: a process is charged the full draw of the cores it
    keeps busy and none of the idle draw of cores it leaves alone. In ``machine`` mode it is the
    number of logical CPUs, so the estimate covers the whole package like RAPL does.
    """

    def __init__(
        self,
        cpu_time_s: Callable[[], float],
        *,
        params: CpuModelParams = CpuModelParams(),
        idle_cores: int = 0,
        mode: str = "process",
        clock: Clock = time.monotonic,
        name: str = "cpu",
    ) -> None:
        if idle_cores < 0:
            raise ConfigError(f"idle_cores must be >= 0, got {idle_cores}")
        self._cpu_time_s = cpu_time_s
        self._params = params
        self._idle_cores = idle_cores
        self._clock = clock
        details: dict[str, float | str] = {**asdict(params), "idle_cores": idle_cores, "mode": mode}
        self._components = (Component(name, "cpu", "estimated:cpu-model", details),)
        self._origin: tuple[float, float] | None = None  # (time_s, busy_s)
        self._busy_s = 0.0
        self._closed = False
        self._lock = threading.Lock()

    @classmethod
    def open(
        cls,
        mode: CpuMode = "process",
        *,
        params: CpuModelParams = CpuModelParams(),
        pid: int | None = None,
        clock: Clock = time.monotonic,
    ) -> CpuModelMeter:
        """A meter over ``mode``'s CPU time, rooted at ``pid`` (default: this process).

        ``process`` is cheapest (one system call); ``tree`` and ``children`` read each
        descendant and re-list the tree at most twice a second (see ProcessTreeCpuTime).
        """
        if mode not in CPU_MODES:
            raise ConfigError(f"unknown CPU mode {mode!r}; use one of {', '.join(CPU_MODES)}")
        if mode == "machine":
            cores = psutil.cpu_count(logical=True) or 1
            return cls(machine_busy_cpu_s, params=params, idle_cores=cores, mode=mode, clock=clock)
        root = os.getpid() if pid is None else pid
        try:
            process = psutil.Process(root)
        except psutil.Error as exc:
            raise MeterError(f"cannot watch process {root}: {exc}") from exc

        cpu_s = ProcessTreeCpuTime(process, mode)
        return cls(cpu_s, params=params, idle_cores=0, mode=mode, clock=clock)

    @property
    def components(self) -> Sequence[Component]:
        """One ``cpu`` component labelled ``estimated:cpu-model`` with the model's params."""
        return self._components

    @property
    def params(self) -> CpuModelParams:
        """The power model in use."""
        return self._params

    def read(self) -> Reading:
        """Estimated joules since the first read."""
        with self._lock:
            if self._closed:
                raise MeterError("CpuModelMeter was read after close()")
            now = self._clock()
            # CPU time of a process tree can dip when a child dies before it is reaped.
            self._busy_s = max(self._busy_s, self._cpu_time_s())
            if self._origin is None:
                self._origin = (now, self._busy_s)
            start_s, start_busy_s = self._origin
            busy_s = self._busy_s - start_busy_s
        idle_s = max(self._idle_cores * (now - start_s) - busy_s, 0.0)
        p = self._params
        energy_j = p.active_w_per_core * busy_s + p.idle_w_per_core * idle_s
        return Reading(now, {self._components[0].name: energy_j})

    def close(self) -> None:
        """Mark the meter closed."""
        with self._lock:
            self._closed = True


def process_cpu_s(process: psutil.Process, mode: CpuMode) -> float:
    """CPU-seconds (user + system) of ``process`` per ``mode`` (process, tree or children)."""
    return ProcessTreeCpuTime(process, mode, rescan_s=0.0)()


class ProcessTreeCpuTime:
    """Busy CPU-seconds of a process (tree), as a callable for ``CpuModelMeter``.

    Each live process contributes its own time plus that of children it has reaped, so every
    CPU-second is counted once; descendants re-parented away (daemons) escape. Listing the
    tree walks all of /proc (about a millisecond per hundred processes), so the list is
    refreshed at most every ``rescan_s`` and whenever a listed process has gone. Nothing is
    lost in between: a process's CPU time is cumulative since it started, so a late-found
    child brings its whole history, and one that exited unseen is in its parent's reaped time.
    Parents are read before their children, so a child reaped mid-read makes the total dip
    (which the meter ignores) rather than count twice.
    """

    def __init__(
        self,
        root: psutil.Process,
        mode: CpuMode,
        *,
        rescan_s: float = 0.5,
        clock: Clock = time.monotonic,
    ) -> None:
        if mode == "machine":
            raise ConfigError("ProcessTreeCpuTime covers processes; use machine_busy_cpu_s")
        self._root = root
        self._mode = mode
        self._own = mode == "process" and root.pid == os.getpid()
        self._rescan_s = rescan_s
        self._clock = clock
        self._descendants: list[psutil.Process] = []
        self._next_scan_s: float | None = None

    def __call__(self) -> float:
        if self._own:
            # process_time() reads CLOCK_PROCESS_CPUTIME_ID (ns); os.times() and /proc count
            # 10 ms ticks, which would charge a short request 0 J or a whole tick
            own = os.times()
            return time.process_time() + own.children_user + own.children_system
        try:
            root = self._root.cpu_times()
            reaped = root.children_user + root.children_system
            total = reaped if self._mode == "children" else reaped + root.user + root.system
            if self._mode != "process":
                self._refresh()
        except psutil.Error as exc:
            raise MeterError(f"cannot read CPU time of process {self._root.pid}: {exc}") from exc
        for child in self._descendants:
            try:
                t = child.cpu_times()
            except psutil.Error:
                self._next_scan_s = None  # it exited: its parent now holds its time
                continue
            total += t.user + t.system + t.children_user + t.children_system
        return total

    def _refresh(self) -> None:
        now = self._clock()
        if self._next_scan_s is None or now >= self._next_scan_s:
            self._descendants = self._root.children(recursive=True)
            self._next_scan_s = now + self._rescan_s


def machine_busy_cpu_s() -> float:
    """Busy CPU-seconds of all logical CPUs since boot (not idle, iowait, steal or guest)."""
    t = psutil.cpu_times()
    busy = t.user + t.system
    for field in ("nice", "irq", "softirq"):
        busy += getattr(t, field, 0.0)
    return float(busy)

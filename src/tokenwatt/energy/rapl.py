"""RaplMeter: CPU package and DRAM energy from Linux powercap sysfs (Intel RAPL, also recent AMD).

Reads ``energy_uj`` counters, handles their wrap-around at ``max_energy_range_uj``, and turns an
unreadable counter into a MeterError that says how to grant access.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tokenwatt.energy.meter import Component, Reading, Scope
from tokenwatt.errors import MeterError

__all__ = ["DEFAULT_POWERCAP_ROOT", "RaplDomain", "RaplMeter", "find_rapl_domains"]

log = logging.getLogger(__name__)

DEFAULT_POWERCAP_ROOT = Path("/sys/class/powercap")

Reader = Callable[[Path], str]
Clock = Callable[[], float]

_ZONE = re.compile(r"^intel-rapl:(\d+)(?::(\d+))?$")
_PERMISSION_FIX = (
    "run `sudo chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj "
    "/sys/class/powercap/intel-rapl:*:*/energy_uj` (or run as root)"
)


def read_text(path: Path) -> str:
    """Default reader: the file's text."""
    return path.read_text()


@dataclass(frozen=True)
class RaplDomain:
    """One powercap zone that the meter reads."""

    name: str
    """Component name: ``rapl:package-<N>`` or ``rapl:dram-<N>`` (N: the package index)."""
    scope: Scope
    """``cpu`` for a package, ``dram`` for its DRAM."""
    path: Path
    """The zone directory holding ``energy_uj`` and ``max_energy_range_uj``."""
    max_energy_range_uj: int
    """Where the counter wraps to zero."""


def find_rapl_domains(
    root: Path = DEFAULT_POWERCAP_ROOT, reader: Reader = read_text
) -> list[RaplDomain]:
    """Package and DRAM zones under ``root``; other sub-zones (core, uncore) are inside a package.

    Raises MeterError when ``root`` has no RAPL zones.
    """
    if not root.is_dir():
        raise MeterError(f"{root} does not exist: this kernel exposes no powercap (RAPL) interface")
    domains: list[RaplDomain] = []
    for zone in sorted(root.iterdir(), key=lambda p: _zone_key(p.name)):
        match = _ZONE.match(zone.name)
        if match is None:
            continue
        package = int(match.group(1))
        try:
            label = reader(zone / "name").strip()
            max_uj = int(reader(zone / "max_energy_range_uj").strip())
        except (OSError, ValueError) as exc:
            log.info("skipping RAPL zone %s: %s", zone, exc)
            continue
        if match.group(2) is None and label.startswith("package"):
            domains.append(RaplDomain(f"rapl:package-{package}", "cpu", zone, max_uj))
        elif match.group(2) is not None and label == "dram":
            domains.append(RaplDomain(f"rapl:dram-{package}", "dram", zone, max_uj))
    if not domains:
        raise MeterError(f"no RAPL package zones under {root}")
    return domains


def _zone_key(name: str) -> tuple[int, int, str]:
    match = _ZONE.match(name)
    if match is None:
        return (1 << 30, 0, name)
    return (int(match.group(1)), int(match.group(2) or -1), name)


class RaplMeter:
    """Cumulative energy (J) per RAPL domain since ``open()``; source ``rapl``.

    Each read folds counter deltas into a running total, adding ``max_energy_range_uj`` when the
    counter went backwards (wrapped). A counter can wrap at most once between reads without loss:
    at 200 W a typical 262 J x 10^3 range lasts about 20 minutes, so any sampler rate is enough.
    """

    def __init__(
        self,
        domains: Sequence[RaplDomain],
        *,
        reader: Reader = read_text,
        clock: Clock = time.monotonic,
    ) -> None:
        self._domains = tuple(domains)
        self._reader = reader
        self._clock = clock
        self._components = tuple(Component(d.name, d.scope, "rapl") for d in self._domains)
        self._last_uj: dict[str, int] = {}
        self._total_uj = {d.name: 0 for d in self._domains}
        self._closed = False
        self._lock = threading.Lock()

    @classmethod
    def open(
        cls,
        root: Path = DEFAULT_POWERCAP_ROOT,
        *,
        reader: Reader = read_text,
        clock: Clock = time.monotonic,
    ) -> RaplMeter:
        """Find the zones under ``root`` and take a first reading (which checks permissions)."""
        meter = cls(find_rapl_domains(root, reader), reader=reader, clock=clock)
        meter.read()
        return meter

    @property
    def components(self) -> Sequence[Component]:
        """Package (scope cpu) and DRAM (scope dram) domains, by package index."""
        return self._components

    def read(self) -> Reading:
        """Joules per domain since the first read."""
        with self._lock:
            if self._closed:
                raise MeterError("RaplMeter was read after close()")
            now = self._clock()
            for domain in self._domains:
                current = self._read_uj(domain)
                last = self._last_uj.get(domain.name)
                if last is not None:
                    delta = current - last
                    if delta < 0:  # wrapped past max_energy_range_uj
                        delta += domain.max_energy_range_uj
                    self._total_uj[domain.name] += delta
                self._last_uj[domain.name] = current
            return Reading(now, {n: uj / 1e6 for n, uj in self._total_uj.items()})

    def _read_uj(self, domain: RaplDomain) -> int:
        path = domain.path / "energy_uj"
        try:
            return int(self._reader(path).strip())
        except PermissionError as exc:
            raise MeterError(f"cannot read {path}: permission denied; {_PERMISSION_FIX}") from exc
        except (OSError, ValueError) as exc:
            raise MeterError(f"cannot read {path}: {exc}") from exc

    def close(self) -> None:
        """Mark the meter closed (it holds no open files)."""
        with self._lock:
            self._closed = True

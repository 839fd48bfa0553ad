"""Where a benchmark's joules come from: local tokenwatt meters or an endpoint's Prometheus
counter, sampled in the background into an ``EnergyTrace`` (cumulative J per component over time).
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tokenwatt.energy.meter import SCOPES, Component, Meter, Scope
from tokenwatt.errors import ConfigError, MeterError

__all__ = [
    "DEFAULT_COUNTERS",
    "CounterSpec",
    "EnergySampler",
    "EnergySource",
    "EnergyTrace",
    "MeterSource",
    "PrometheusSource",
]

log = logging.getLogger(__name__)


@runtime_checkable
class EnergySource(Protocol):
    """Cumulative energy (J) per component, read without blocking the event loop."""

    @property
    def components(self) -> Sequence[Component]:
        """Components read so far (a scraped source knows them after its first read)."""
        ...

    async def read(self) -> tuple[float, Mapping[str, float]]:
        """(``perf_counter()`` the values hold for, cumulative joules per component name)."""
        ...

    async def aclose(self) -> None:
        """Release what the source holds."""
        ...


class MeterSource:
    """tokenwatt meters on this machine; reads run in a worker thread so that a slow driver
    call never delays the timestamps of the chunks being measured."""

    def __init__(self, meters: Sequence[Meter]) -> None:
        if not meters:
            raise ConfigError("MeterSource needs at least one meter (see detect_meters())")
        self._meters = tuple(meters)

    @property
    def components(self) -> Sequence[Component]:
        """Every component of every meter."""
        return tuple(c for m in self._meters for c in m.components)

    def _read_sync(self) -> tuple[float, dict[str, float]]:
        before = time.perf_counter()
        energy: dict[str, float] = {}
        for meter in self._meters:
            energy.update(meter.read().energy_j)
        # Stamped in the worker thread: the hop back to the event loop must not skew power.
        return (before + time.perf_counter()) / 2, energy

    async def read(self) -> tuple[float, Mapping[str, float]]:
        """(time of the reading, cumulative joules of every component)."""
        return await asyncio.to_thread(self._read_sync)

    async def aclose(self) -> None:
        """Close every meter."""
        for meter in self._meters:
            meter.close()


@dataclass(frozen=True)
class CounterSpec:
    """How to read one Prometheus energy counter."""

    joules_per_unit: float = 1.0
    """Scale to joules (DCGM reports millijoules: 0.001)."""
    scope: Scope = "node"
    """Scope when the series has no ``scope`` label."""
    source: str = "endpoint"
    """Source when the series has no ``source`` label."""


DEFAULT_COUNTERS: Mapping[str, CounterSpec] = {
    # tokenwatt serve's counter, labelled by source (and scope where it knows it).
    "tokenwatt_energy_joules_total": CounterSpec(1.0, "node", "endpoint"),
    # NVIDIA DCGM exporter: total energy since boot per GPU, in millijoules.
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": CounterSpec(0.001, "gpu", "dcgm"),
}


class PrometheusSource:
    """Energy counters scraped from an endpoint's ``/metrics`` (tokenwatt serve, DCGM exporter)."""

    def __init__(
        self,
        url: str,
        counters: Mapping[str, CounterSpec] = DEFAULT_COUNTERS,
        timeout_s: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"metrics URL {url!r} must start with http:// or https://")
        self.url = url
        self._counters = dict(counters)
        self._timeout_s = timeout_s
        self._transport = transport
        self._http: httpx.AsyncClient | None = None
        self._components: dict[str, Component] = {}

    @property
    def components(self) -> Sequence[Component]:
        """Series seen so far, one component each."""
        return tuple(self._components.values())

    async def read(self) -> tuple[float, Mapping[str, float]]:
        """Scrape once; raises MeterError when the page cannot be read or has no counter."""
        before = time.perf_counter()
        if self._http is None:
            self._http = httpx.AsyncClient(transport=self._transport, timeout=self._timeout_s)
        try:
            response = await self._http.get(self.url)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise MeterError(f"cannot scrape energy from {self.url}: {exc!r}") from None
        # A labelled counter has no series until its first increment: that reads as {} (0 J).
        energy = self._parse(response.text)
        return (before + time.perf_counter()) / 2, energy

    def _parse(self, text: str) -> dict[str, float]:
        energy: dict[str, float] = {}
        try:
            families = list(text_string_to_metric_families(text))
        except ValueError as exc:
            raise MeterError(f"{self.url} is not Prometheus text: {exc}") from None
        # Several counters may measure the same joules (tokenwatt's and DCGM's for one GPU):
        # use only the first present in ``counters`` order, so nothing is counted twice.
        present = {s.name for f in families for s in f.samples} | {f.name for f in families}
        present |= {f"{f.name}_total" for f in families if f.type == "counter"}
        chosen = next((n for n in self._counters if n in present), None)
        if chosen is None:
            wanted = ", ".join(self._counters)
            raise MeterError(
                f"{self.url} exports none of the energy counters {wanted}; "
                "use local meters (--energy local) or no energy (--energy none)"
            )
        for family in families:
            for sample in family.samples:
                # The parser appends _total to counters declared without it (DCGM's).
                aliases = (sample.name, family.name, f"{family.name}_total")
                metric = next((n for n in aliases if n in self._counters), None)
                if metric is None or metric != chosen or sample.name.endswith("_created"):
                    continue
                spec = self._counters[metric]
                labels = sample.labels
                key = ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "UUID")
                name = f"{metric}{{{key}}}"
                if name not in self._components:
                    scope = labels.get("scope", spec.scope)
                    self._components[name] = Component(
                        name,
                        scope if scope in SCOPES else spec.scope,  # type: ignore[arg-type]
                        labels.get("source", spec.source),
                        {"metric": metric, "url": self.url},
                    )
                energy[name] = float(sample.value) * spec.joules_per_unit
        return energy

    async def aclose(self) -> None:
        """Close the HTTP client."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None


@dataclass(frozen=True)
class EnergyTrace:
    """Cumulative energy samples: ``times_s`` (perf_counter) and J per component at each."""

    components: tuple[Component, ...] = ()
    """What was measured."""
    times_s: tuple[float, ...] = ()
    """``time.perf_counter()`` of each sample, increasing."""
    energy_j: tuple[Mapping[str, float], ...] = ()
    """Cumulative joules per component at each sample."""

    def total_at(self, t_s: float) -> dict[str, float]:
        """Cumulative joules per component at ``t_s``, linearly interpolated (clamped)."""
        times = self.times_s
        if not times:
            return {}
        i = bisect.bisect_left(times, t_s)
        if i <= 0:
            return dict(self.energy_j[0])
        if i >= len(times):
            return dict(self.energy_j[-1])
        a, b = times[i - 1], times[i]
        w = (t_s - a) / (b - a) if b > a else 1.0
        lo, hi = self.energy_j[i - 1], self.energy_j[i]
        return {k: lo.get(k, 0.0) + w * (hi.get(k, 0.0) - lo.get(k, 0.0)) for k in hi}

    def energy_between(self, start_s: float, end_s: float) -> dict[str, float]:
        """Joules per component spent between two perf_counter instants."""
        a, b = self.total_at(start_s), self.total_at(end_s)
        return {k: b[k] - a.get(k, 0.0) for k in b}

    def power_timeline(self) -> list[tuple[float, float]]:
        """(mid-interval perf_counter time, total W) between consecutive samples."""
        out: list[tuple[float, float]] = []
        for i in range(1, len(self.times_s)):
            dt = self.times_s[i] - self.times_s[i - 1]
            if dt <= 0:
                continue
            prev, cur = self.energy_j[i - 1], self.energy_j[i]
            joules = sum(cur.get(k, 0.0) - prev.get(k, 0.0) for k in cur)
            out.append(((self.times_s[i] + self.times_s[i - 1]) / 2, joules / dt))
        return out


@dataclass
class EnergySampler:
    """Reads a source every ``interval_s`` in the background; ``stop()`` returns the trace."""

    source: EnergySource
    """What to read."""
    interval_s: float = 0.1
    """Seconds between reads."""
    read_errors: int = 0
    """Reads that failed mid-run (skipped, logged)."""
    _times: list[float] = field(default_factory=list)
    _energy: list[Mapping[str, float]] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        if not self.interval_s > 0:
            raise ConfigError(f"energy sampling interval must be > 0 s, got {self.interval_s}")

    async def _sample(self) -> None:
        t_s, energy = await self.source.read()
        self._times.append(t_s)
        self._energy.append(energy)

    async def start(self) -> None:
        """Take the first sample (errors here are the caller's: the source is unusable)."""
        await self._sample()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self._sample()
            except MeterError as exc:
                self.read_errors += 1
                log.warning("energy read failed (sample skipped): %s", exc)

    async def stop(self) -> EnergyTrace:
        """Take a last sample and return everything read."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            await self._sample()
        except MeterError as exc:
            self.read_errors += 1
            log.warning("final energy read failed: %s", exc)
        return EnergyTrace(tuple(self.source.components), tuple(self._times), tuple(self._energy))

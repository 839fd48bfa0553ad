"""Load shapes: when each request is sent (closed loop, open loop, trace replay, agentic sessions).

Shapes are plain frozen data; ``tokenwatt.bench.runner`` drives them. The maximum-goodput search
lives here too: it only needs a function from rate to SLO attainment.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from tokenwatt.errors import ConfigError

__all__ = [
    "Arrival",
    "ClosedLoop",
    "GoodputSearch",
    "LoadShape",
    "OpenLoop",
    "Sessions",
    "TraceReplay",
    "find_max_goodput_rate",
    "interarrival_times",
]

log = logging.getLogger(__name__)

Arrival = Literal["constant", "poisson", "gamma"]


@dataclass(frozen=True)
class ClosedLoop:
    """Fixed concurrency: each of ``concurrency`` workers sends its next request when one ends."""

    concurrency: int = 1
    """Requests in flight at all times (while the workload lasts)."""

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, got {self.concurrency}")

    @property
    def label(self) -> str:
        """Short description for tables and file names."""
        return f"concurrency={self.concurrency}"


@dataclass(frozen=True)
class OpenLoop:
    """Requests sent at a target rate regardless of answers (arrival times from a process)."""

    rate_rps: float = 1.0
    """Mean offered request rate (requests per second)."""
    arrival: Arrival = "poisson"
    """Inter-arrival process: constant gaps, Poisson (exponential gaps) or gamma."""
    burstiness: float = 1.0
    """Gamma shape (vLLM's definition): 1 is Poisson, below 1 burstier, above 1 more regular."""
    seed: int = 0
    """Seed of the arrival process."""
    max_concurrency: int | None = None
    """Cap on requests in flight (arrivals wait for a slot), None for no cap."""

    def __post_init__(self) -> None:
        if not (self.rate_rps > 0 and math.isfinite(self.rate_rps)):
            raise ConfigError(f"rate must be a positive number of requests/s, got {self.rate_rps}")
        if self.arrival not in ("constant", "poisson", "gamma"):
            raise ConfigError(f"unknown arrival {self.arrival!r}; use constant, poisson or gamma")
        if self.burstiness <= 0:
            raise ConfigError(f"burstiness must be > 0, got {self.burstiness}")
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise ConfigError("max_concurrency must be >= 1 (or None for no cap)")

    @property
    def label(self) -> str:
        """Short description for tables and file names."""
        extra = f",burstiness={self.burstiness:g}" if self.arrival == "gamma" else ""
        return f"rate={self.rate_rps:g}/s,{self.arrival}{extra}"


@dataclass(frozen=True)
class TraceReplay:
    """Requests sent at their own ``arrival_s`` (trace timestamps), divided by ``speedup``."""

    speedup: float = 1.0
    """Time compression: 2 replays the trace twice as fast."""
    max_concurrency: int | None = None
    """Cap on requests in flight, None for no cap."""

    def __post_init__(self) -> None:
        if not (self.speedup > 0 and math.isfinite(self.speedup)):
            raise ConfigError(f"speed-up must be a positive number, got {self.speedup}")
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise ConfigError("max_concurrency must be >= 1 (or None for no cap)")

    @property
    def label(self) -> str:
        """Short description for tables and file names."""
        return f"trace x{self.speedup:g}"


@dataclass(frozen=True)
class Sessions:
    """Agentic sessions: ``concurrency`` sessions at once; each turn waits for the previous
    answer plus the turn's ``think_time_s``. Requests are grouped by ``session_id``."""

    concurrency: int = 1
    """Sessions in flight at once."""

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ConfigError(f"session concurrency must be >= 1, got {self.concurrency}")

    @property
    def label(self) -> str:
        """Short description for tables and file names."""
        return f"sessions={self.concurrency}"


LoadShape = ClosedLoop | OpenLoop | TraceReplay | Sessions
"""Any load shape the runner understands."""


def interarrival_times(shape: OpenLoop) -> Iterator[float]:
    """Endless gaps (seconds) between arrivals for an open loop, reproducible by seed."""
    rng = random.Random(shape.seed)
    rate = shape.rate_rps
    while True:
        if shape.arrival == "constant":
            yield 1.0 / rate
        elif shape.arrival == "poisson":
            yield rng.expovariate(rate)
        else:
            yield rng.gammavariate(shape.burstiness, 1.0 / (rate * shape.burstiness))


@dataclass(frozen=True)
class GoodputSearch:
    """Result of a maximum-goodput search: the best rate found and every probe."""

    rate_rps: float
    """Highest probed rate whose SLO attainment met the target (0 when none did)."""
    attainment: float
    """Attainment measured at that rate."""
    target: float
    """Share of requests that had to meet every SLO."""
    probes: tuple[tuple[float, float], ...]
    """(rate, attainment) of every run, in the order they ran."""


async def find_max_goodput_rate(
    attainment_at: Callable[[float], Awaitable[float]],
    low_rps: float,
    high_rps: float,
    target: float = 0.9,
    rel_tolerance: float = 0.05,
    max_probes: int = 12,
) -> GoodputSearch:
    """Highest rate at which ``attainment_at(rate) >= target`` (DistServe's goodput), by bisection.

    Assumes attainment falls as the rate rises. ``high_rps`` is probed first; if it passes it is
    the answer. Otherwise ``low_rps`` is probed (0 when even it fails) and the bracket is halved
    until its width is under ``rel_tolerance`` of the lower bound or ``max_probes`` runs were made.
    """
    if not 0 < low_rps < high_rps:
        raise ConfigError(f"need 0 < low < high rate, got {low_rps} and {high_rps}")
    if not 0 < target <= 1:
        raise ConfigError(f"target attainment must be in (0, 1], got {target}")
    probes: list[tuple[float, float]] = []

    async def probe(rate: float) -> float:
        value = await attainment_at(rate)
        probes.append((rate, value))
        log.info("goodput search: rate %.4g/s -> attainment %.3f", rate, value)
        return value

    top = await probe(high_rps)
    if top >= target:
        return GoodputSearch(high_rps, top, target, tuple(probes))
    bottom = await probe(low_rps)
    if bottom < target:
        return GoodputSearch(0.0, bottom, target, tuple(probes))
    good, good_value, bad = low_rps, bottom, high_rps
    while len(probes) < max_probes and (bad - good) > rel_tolerance * good:
        mid = (good + bad) / 2
        value = await probe(mid)
        if value >= target:
            good, good_value = mid, value
        else:
            bad = mid
    return GoodputSearch(good, good_value, target, tuple(probes))

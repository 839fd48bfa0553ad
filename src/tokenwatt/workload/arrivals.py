"""Arrival processes: when each request (or session) of a synthetic workload is offered.

Closed loop (all at time 0, the client keeps a fixed concurrency), constant rate, Poisson, and
gamma-distributed gaps whose coefficient of variation sets the burstiness.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, get_args

from tokenwatt.errors import ConfigError

__all__ = ["ArrivalKind", "Arrivals"]

ArrivalKind = Literal["closed", "constant", "poisson", "gamma"]
"""``closed``: every arrival at 0 (fixed concurrency). ``constant``: gaps of exactly 1/rate.
``poisson``: exponential gaps with mean 1/rate. ``gamma``: gamma gaps with mean 1/rate and
coefficient of variation ``cv`` (cv 1 is Poisson; above 1 burstier, below 1 smoother)."""


@dataclass(frozen=True)
class Arrivals:
    """An arrival process; the first arrival is always at time 0."""

    kind: ArrivalKind = "closed"
    """Which process (see ArrivalKind)."""
    rate_per_s: float = 1.0
    """Mean arrivals per second (ignored for closed loop)."""
    cv: float = 1.0
    """Coefficient of variation of the gaps for ``gamma`` (std / mean); 1 equals Poisson."""

    def __post_init__(self) -> None:
        if self.kind not in get_args(ArrivalKind):
            raise ConfigError(
                f"unknown arrival process {self.kind!r}; use one of "
                f"{', '.join(get_args(ArrivalKind))}"
            )
        if self.kind != "closed" and not self.rate_per_s > 0:
            raise ConfigError(f"arrival rate_per_s must be > 0, got {self.rate_per_s}")
        if not self.cv > 0:
            raise ConfigError(f"arrival cv must be > 0 (1 is Poisson), got {self.cv}")

    def times(self, rng: random.Random) -> Iterator[float]:
        """Arrival times in seconds, non-decreasing, without end; the first is 0."""
        t = 0.0
        kind, rate = self.kind, self.rate_per_s
        if kind == "closed":
            while True:
                yield 0.0
        if kind == "constant":
            i = 0
            while True:
                yield i / rate
                i += 1
        shape = 1.0 / (self.cv * self.cv)
        scale = 1.0 / (rate * shape)
        while True:
            yield t
            t += rng.expovariate(rate) if kind == "poisson" else rng.gammavariate(shape, scale)

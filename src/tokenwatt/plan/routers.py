"""Routers: which ready replica an arriving request goes to (one small policy per class)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from tokenwatt.errors import ConfigError
from tokenwatt.plan.replica import Replica, SimRequest

__all__ = [
    "LeastOutstandingRouter",
    "PrefixAwareRouter",
    "RoundRobinRouter",
    "Router",
    "make_router",
]


class Router(Protocol):
    """Picks one of ``replicas`` (never empty, all accepting work) for ``req``."""

    def choose(self, replicas: Sequence[Replica], req: SimRequest) -> Replica:
        """The replica that serves ``req``."""
        ...


class RoundRobinRouter:
    """Cycles through the ready replicas in order."""

    def __init__(self) -> None:
        self._next = 0

    def choose(self, replicas: Sequence[Replica], req: SimRequest) -> Replica:
        """The next replica in turn."""
        self._next += 1
        return replicas[(self._next - 1) % len(replicas)]


class LeastOutstandingRouter:
    """The replica with the fewest queued plus running requests (lowest index on ties)."""

    def choose(self, replicas: Sequence[Replica], req: SimRequest) -> Replica:
        """The least loaded replica."""
        best = replicas[0]
        low = best.outstanding
        for r in replicas:
            if r.outstanding < low:
                best, low = r, r.outstanding
        return best


class PrefixAwareRouter:
    """Prefer the replica caching the longest prefix of the request, unless it is overloaded.

    A cached replica wins while its load is within ``max_imbalance`` requests of the least
    loaded one (the SGLang router's cache-aware rule); otherwise, or with no hit, least loaded.
    """

    def __init__(self, max_imbalance: int = 8) -> None:
        if max_imbalance < 0:
            raise ConfigError(
                f"prefix_aware router: max_imbalance must be >= 0, got {max_imbalance}"
            )
        self.max_imbalance = max_imbalance
        self._fallback = LeastOutstandingRouter()

    def choose(self, replicas: Sequence[Replica], req: SimRequest) -> Replica:
        """The replica with the longest cached prefix, or the least loaded one."""
        least = self._fallback.choose(replicas, req)
        if not req.blocks:
            return least
        best, best_hits = least, 0
        limit = least.outstanding + self.max_imbalance
        for r in replicas:
            if r.outstanding > limit:
                continue
            hits = r.cache.leading_hits(req.blocks)
            if hits > best_hits:
                best, best_hits = r, hits
        return best


def make_router(name: str, params: dict[str, float] | None = None) -> Router:
    """The router called ``name`` (round_robin, least_outstanding, prefix_aware)."""
    params = params or {}
    if name == "round_robin":
        return RoundRobinRouter()
    if name == "least_outstanding":
        return LeastOutstandingRouter()
    if name == "prefix_aware":
        return PrefixAwareRouter(int(params.get("max_imbalance", 8)))
    raise ConfigError(
        f"unknown router {name!r}; choose round_robin, least_outstanding or prefix_aware"
    )

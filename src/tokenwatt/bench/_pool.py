"""Connection pools sharded over several httpx clients.

httpcore's pool re-scans every connection for every idle one each time a request starts or ends
(O(connections^2) per request): at a few hundred connections that bookkeeping, not the network,
caps the request rate. Shards of at most ``shard_size`` connections keep each scan short.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

__all__ = ["SHARD_CONNECTIONS", "ShardedPool"]

SHARD_CONNECTIONS = 8
"""Connections per shard: small enough for cheap scans, large enough for few shards."""


class ShardedPool:
    """Hands out the first shard with a free connection slot, opening a new shard when none has
    one, up to ``max_connections`` in all (then the least-loaded shard queues the request)."""

    def __init__(
        self,
        make: Callable[[int], httpx.AsyncClient],
        max_connections: int,
        shard_size: int = SHARD_CONNECTIONS,
    ) -> None:
        self._make = make
        self._shard_size = max(1, min(shard_size, max_connections))
        self._max_shards = max(1, -(-max_connections // self._shard_size))
        self._shards: list[httpx.AsyncClient] = []
        self._load: list[int] = []

    @property
    def shards(self) -> int:
        """Shards opened so far."""
        return len(self._shards)

    def acquire(self) -> tuple[int, httpx.AsyncClient]:
        """A shard for one request; pair with ``release(index)``."""
        for i, load in enumerate(self._load):
            if load < self._shard_size:
                self._load[i] += 1
                return i, self._shards[i]
        if len(self._shards) < self._max_shards:
            self._shards.append(self._make(self._shard_size))
            self._load.append(1)
            return len(self._shards) - 1, self._shards[-1]
        i = min(range(len(self._load)), key=self._load.__getitem__)
        self._load[i] += 1
        return i, self._shards[i]

    def release(self, index: int) -> None:
        """The request on shard ``index`` is over (a no-op once the pool is closed: a stream
        abandoned mid-run may be finalized after ``aclose``)."""
        if index < len(self._load):
            self._load[index] -= 1

    async def aclose(self) -> None:
        """Close every shard."""
        for shard in self._shards:
            await shard.aclose()
        self._shards.clear()
        self._load.clear()

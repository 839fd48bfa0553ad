"""Host DRAM tier: immutable block bytes in a dict under a byte budget, evicted by a policy.

Pinned blocks (in use by a running request) are never evicted; a put that cannot make room
without evicting a pinned block is dropped rather than exceeding the budget.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterator, Sequence

from tokenwatt.errors import ConfigError

from .policies import EvictionPolicy, LRUPolicy
from .tier import TierBase, TierUsage

__all__ = ["MemoryTier"]

log = logging.getLogger(__name__)


class MemoryTier(TierBase):
    """Blocks in process memory, at most ``capacity_bytes`` of them."""

    def __init__(
        self,
        capacity_bytes: int,
        *,
        policy: EvictionPolicy | None = None,
        name: str = "dram",
    ) -> None:
        if capacity_bytes < 0:
            raise ConfigError(f"MemoryTier capacity_bytes must be >= 0, got {capacity_bytes}")
        self.name = name
        self.capacity_bytes = capacity_bytes
        self._policy = policy if policy is not None else LRUPolicy()
        self._data: dict[str, bytes] = {}
        self._used = 0
        self._pins: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.evictions = 0
        """Blocks evicted to make room (for stats and tests)."""

    def contains(self, key: str) -> bool:
        with self._lock:
            return key in self._data

    def contains_many(self, keys: Sequence[str]) -> list[bool]:
        with self._lock:
            return [k in self._data for k in keys]

    def get(self, key: str) -> bytes | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._policy.on_access(key)
            return value

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        with self._lock:
            out = [self._data.get(k) for k in keys]
            for k, v in zip(keys, out, strict=True):
                if v is not None:
                    self._policy.on_access(k)
            return out

    def put(self, key: str, value: bytes, *, cost: float = 0.0) -> None:
        size = len(value)
        with self._lock:
            if key in self._data:
                self._policy.on_access(key)
                return  # same key means same content (keys name their prefix)
            if size > self.capacity_bytes or not self._make_room(size):
                log.debug("dram tier: no room for %d bytes, block %s dropped", size, key)
                return
            self._data[key] = bytes(value)
            self._used += size
            self._policy.on_insert(key, size, cost)

    def delete(self, key: str) -> None:
        with self._lock:
            self._remove(key)

    def pin(self, key: str) -> bool:
        """Keep ``key`` from eviction until a matching :meth:`unpin`; False if it is not stored."""
        with self._lock:
            if key not in self._data:
                return False
            self._pins[key] += 1
            return True

    def unpin(self, key: str) -> None:
        """Release one :meth:`pin` of ``key``."""
        with self._lock:
            if self._pins[key] <= 1:
                self._pins.pop(key, None)
            else:
                self._pins[key] -= 1

    def iter_keys(self) -> Iterator[str]:
        with self._lock:
            keys = list(self._data)
        return iter(keys)

    def usage(self) -> TierUsage:
        with self._lock:
            return TierUsage(len(self._data), self._used, self.capacity_bytes)

    def clear(self) -> None:
        """Remove every unpinned block."""
        with self._lock:
            for key in [k for k in self._data if k not in self._pins]:
                self._remove(key)

    def close(self) -> None:
        with self._lock:
            self._data.clear()
            self._used = 0

    def _make_room(self, size: int) -> bool:
        while self._used + size > self.capacity_bytes:
            victim = self._policy.victim(self._pins)
            if victim is None:
                return False
            self._remove(victim)
            self.evictions += 1
        return True

    def _remove(self, key: str) -> None:
        value = self._data.pop(key, None)
        if value is not None:
            self._used -= len(value)
        self._policy.on_remove(key)

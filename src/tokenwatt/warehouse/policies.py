"""Eviction and admission policies, kept apart from storage so any tier can use any policy.

Eviction: LRU, and a cost-aware GreedyDual-Size policy that keeps the blocks whose recompute
cost per byte is highest. Admission: write always, or only keys seen at least N times.
"""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict
from collections.abc import Container
from typing import Protocol, runtime_checkable

from tokenwatt.errors import ConfigError

__all__ = [
    "AdmissionPolicy",
    "AlwaysAdmit",
    "CostAwarePolicy",
    "EvictionPolicy",
    "LRUPolicy",
    "SeenAtLeast",
]


@runtime_checkable
class EvictionPolicy(Protocol):
    """Tracks a tier's entries and names the next one to evict. Not thread-safe: the tier locks."""

    def on_insert(self, key: str, size_bytes: int, cost: float) -> None:
        """``key`` was stored (``cost``: recompute cost hint in seconds, 0 if unknown)."""

    def on_access(self, key: str) -> None:
        """``key`` was read."""

    def on_remove(self, key: str) -> None:
        """``key`` left the tier (evicted or deleted)."""

    def victim(self, pinned: Container[str]) -> str | None:
        """The key to evict next, never one in ``pinned``; None if nothing can go."""


@runtime_checkable
class AdmissionPolicy(Protocol):
    """Decides whether a block is worth writing to a tier."""

    def admit(self, key: str) -> bool:
        """Record one sighting of ``key`` and say whether to write it now."""


class LRUPolicy:
    """Evict the least recently used entry."""

    def __init__(self) -> None:
        self._order: OrderedDict[str, None] = OrderedDict()

    def on_insert(self, key: str, size_bytes: int, cost: float) -> None:
        self._order[key] = None
        self._order.move_to_end(key)

    def on_access(self, key: str) -> None:
        if key in self._order:
            self._order.move_to_end(key)

    def on_remove(self, key: str) -> None:
        self._order.pop(key, None)

    def victim(self, pinned: Container[str]) -> str | None:
        for key in self._order:
            if key not in pinned:
                return key
        return None


class CostAwarePolicy:
    """GreedyDual-Size: priority = L + cost / size; evict the lowest, then raise L to it.

    Blocks that are expensive to recompute per byte of storage stay longer; among equal costs
    it behaves like LRU, because the inflation value L grows with each eviction.
    """

    def __init__(self) -> None:
        self._inflation = 0.0
        self._entries: dict[str, tuple[float, int, float]] = {}  # key -> (priority, seq, cost/byte)
        self._heap: list[tuple[float, int, str]] = []
        self._seq = itertools.count()

    def on_insert(self, key: str, size_bytes: int, cost: float) -> None:
        self._push(key, max(cost, 0.0) / max(size_bytes, 1))

    def on_access(self, key: str) -> None:
        entry = self._entries.get(key)
        if entry is not None:
            self._push(key, entry[2])

    def on_remove(self, key: str) -> None:
        self._entries.pop(key, None)  # its heap entries go stale and are skipped

    def victim(self, pinned: Container[str]) -> str | None:
        skipped: list[tuple[float, int, str]] = []
        found: str | None = None
        while self._heap:
            item = heapq.heappop(self._heap)
            priority, seq, key = item
            entry = self._entries.get(key)
            if entry is None or entry[1] != seq:
                continue  # stale
            if key in pinned:
                skipped.append(item)
                continue
            self._inflation = priority
            heapq.heappush(self._heap, item)  # stays until on_remove, so victim() is repeatable
            found = key
            break
        for item in skipped:
            heapq.heappush(self._heap, item)
        return found

    def _push(self, key: str, cost_per_byte: float) -> None:
        seq = next(self._seq)
        priority = self._inflation + cost_per_byte
        self._entries[key] = (priority, seq, cost_per_byte)
        heapq.heappush(self._heap, (priority, seq, key))
        if len(self._heap) > 4 * len(self._entries) + 64:
            self._compact()

    def _compact(self) -> None:
        self._heap = [(p, s, k) for k, (p, s, _) in self._entries.items()]
        heapq.heapify(self._heap)


class AlwaysAdmit:
    """Write every block."""

    def admit(self, key: str) -> bool:
        return True


class SeenAtLeast:
    """Write a block only once it has been offered ``times`` times (filters one-off prompts)."""

    def __init__(self, times: int = 2, *, max_tracked: int = 100_000) -> None:
        if times < 1:
            raise ConfigError(f"SeenAtLeast.times must be >= 1, got {times}")
        if max_tracked < 1:
            raise ConfigError(f"SeenAtLeast.max_tracked must be >= 1, got {max_tracked}")
        self.times = times
        self.max_tracked = max_tracked
        self._counts: OrderedDict[str, int] = OrderedDict()

    def admit(self, key: str) -> bool:
        count = self._counts.pop(key, 0) + 1
        self._counts[key] = count
        if len(self._counts) > self.max_tracked:
            self._counts.popitem(last=False)  # forget the longest-unseen key
        return count >= self.times

"""Prefix reuse at fleet scale: a replica's own prefix cache and a shared, tiered token warehouse.

A request's leading prefix blocks that a cache holds skip prefill compute (and its energy); blocks
found in the warehouse cost load time at the tier's bandwidth instead.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from tokenwatt.plan.config import TierSpec

__all__ = ["PrefixCache", "Warehouse", "WarehouseStats"]


class PrefixCache:
    """An LRU set of block ids holding at most ``capacity_tokens`` tokens (0 holds nothing)."""

    __slots__ = ("_blocks", "capacity_tokens", "tokens")

    def __init__(self, capacity_tokens: int) -> None:
        self.capacity_tokens = capacity_tokens
        self.tokens = 0
        self._blocks: OrderedDict[int, int] = OrderedDict()

    def __contains__(self, block: int) -> bool:
        return block in self._blocks

    def __len__(self) -> int:
        return len(self._blocks)

    def leading_hits(self, blocks: Sequence[int]) -> int:
        """How many of ``blocks``, from the first, the cache holds (a prefix stops at a miss)."""
        n = 0
        store = self._blocks
        for b in blocks:
            if b not in store:
                break
            n += 1
        return n

    def touch(self, blocks: Sequence[int], block_tokens: int) -> list[int]:
        """Insert or refresh ``blocks`` of ``block_tokens`` each; returns the ids evicted."""
        if self.capacity_tokens < block_tokens:
            return list(blocks)
        store = self._blocks
        for b in blocks:
            if b in store:
                store.move_to_end(b)
            else:
                store[b] = block_tokens
                self.tokens += block_tokens
        evicted: list[int] = []
        while self.tokens > self.capacity_tokens:
            b, size = store.popitem(last=False)
            self.tokens -= size
            evicted.append(b)
        return evicted

    def discard(self, block: int) -> None:
        """Remove ``block`` if present."""
        size = self._blocks.pop(block, None)
        if size is not None:
            self.tokens -= size


@dataclass
class WarehouseStats:
    """Counters of the shared warehouse over a run."""

    lookups_blocks: int = 0
    """Blocks looked up after the replica's own cache missed."""
    hits_blocks: int = 0
    """Blocks served by a warehouse tier."""
    loaded_bytes: float = 0.0
    """Bytes loaded from the warehouse into replicas."""
    load_s: float = 0.0
    """Seconds spent loading (summed over requests)."""


class Warehouse:
    """Tiers from fastest to slowest, each an LRU of block ids sized in bytes of KV cache."""

    def __init__(self, tiers: Sequence[TierSpec], kv_bytes_per_token: float) -> None:
        self.tiers = tuple(tiers)
        self.kv_bytes_per_token = kv_bytes_per_token
        self._caches = [PrefixCache(int(t.capacity_bytes // kv_bytes_per_token)) for t in tiers]
        self.stats = WarehouseStats()

    def lookup(self, blocks: Sequence[int], block_tokens: int) -> tuple[int, float]:
        """Leading ``blocks`` the warehouse holds and the seconds to load them."""
        block_bytes = block_tokens * self.kv_bytes_per_token
        n = 0
        load_s = 0.0
        for b in blocks:
            for tier, cache in zip(self.tiers, self._caches, strict=True):
                if b in cache:
                    load_s += block_bytes / tier.bandwidth_bytes_per_s
                    break
            else:
                break
            n += 1
        self.stats.lookups_blocks += min(len(blocks), n + 1)
        self.stats.hits_blocks += n
        self.stats.loaded_bytes += n * block_bytes
        self.stats.load_s += load_s
        return n, load_s

    def store(self, blocks: Sequence[int], block_tokens: int) -> None:
        """Write ``blocks`` to the first tier; what it evicts moves down a tier."""
        moving: list[int] = list(blocks)
        for i, cache in enumerate(self._caches):
            if not moving:
                return
            for lower in self._caches[i + 1 :]:
                for b in moving:
                    lower.discard(b)
            moving = cache.touch(moving, block_tokens)

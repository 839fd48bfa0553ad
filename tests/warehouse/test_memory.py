"""DRAM tier: byte budget, eviction through the policy, pinning."""

from __future__ import annotations

import pytest

from tokenwatt.errors import ConfigError
from tokenwatt.warehouse.memory import MemoryTier
from tokenwatt.warehouse.policies import CostAwarePolicy

A, B, C = "aa" * 16, "bb" * 16, "cc" * 16


def test_budget_evicts_lru() -> None:
    """A third 40-byte block in a 100-byte tier evicts the least recently used one."""
    t = MemoryTier(100)
    t.put(A, b"a" * 40)
    t.put(B, b"b" * 40)
    t.get(A)
    t.put(C, b"c" * 40)
    assert t.contains_many([A, B, C]) == [True, False, True]
    assert t.usage().used_bytes == 80
    assert t.evictions == 1


def test_pinned_block_survives() -> None:
    """A pinned block is not evicted; the put that needs its room is dropped instead."""
    t = MemoryTier(100)
    t.put(A, b"a" * 60)
    assert t.pin(A)
    t.put(B, b"b" * 60)
    assert t.contains_many([A, B]) == [True, False]
    t.unpin(A)
    t.put(B, b"b" * 60)
    assert t.contains_many([A, B]) == [False, True]


def test_pin_missing_key() -> None:
    """Pinning a key that is not stored returns False."""
    assert MemoryTier(100).pin(A) is False


def test_oversized_block_dropped() -> None:
    """A block larger than the whole budget is not stored and evicts nothing."""
    t = MemoryTier(100)
    t.put(A, b"a" * 50)
    t.put(B, b"b" * 101)
    assert t.contains_many([A, B]) == [True, False]


def test_cost_aware_policy_in_tier() -> None:
    """With the cost-aware policy, the cheap-to-recompute block is evicted first."""
    t = MemoryTier(100, policy=CostAwarePolicy())
    t.put(A, b"a" * 40, cost=10.0)
    t.put(B, b"b" * 40, cost=1.0)
    t.put(C, b"c" * 40, cost=5.0)
    assert t.contains_many([A, B, C]) == [True, False, True]


def test_clear_keeps_pinned() -> None:
    """clear() removes every unpinned block."""
    t = MemoryTier(100)
    t.put(A, b"a")
    t.put(B, b"b")
    t.pin(A)
    t.clear()
    assert t.contains_many([A, B]) == [True, False]


def test_negative_budget_rejected() -> None:
    """A negative budget is a configuration error."""
    with pytest.raises(ConfigError, match="capacity_bytes"):
        MemoryTier(-1)

"""The Tier contract, run against every implementation (Redis ones need redis-server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tokenwatt.warehouse.disk import DiskTier
from tokenwatt.warehouse.faults import FaultyTier
from tokenwatt.warehouse.memory import MemoryTier
from tokenwatt.warehouse.redis_tier import RedisTier
from tokenwatt.warehouse.tier import Tier

K1, K2, K3 = "aa" * 16, "bb" * 16, "cc" * 16


@pytest.fixture(params=["memory", "disk", "redis", "faulty"])
def tier(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Tier]:
    """Each Tier implementation, empty, with room for 1 MB."""
    t: Tier
    if request.param == "memory":
        t = MemoryTier(1 << 20)
    elif request.param == "disk":
        t = DiskTier(tmp_path / "disk", 1 << 20)
    elif request.param == "redis":
        t = RedisTier(request.getfixturevalue("redis_url"))
    else:
        t = FaultyTier(MemoryTier(1 << 20))
    yield t
    t.close()


def test_satisfies_protocol(tier: Tier) -> None:
    """Every implementation is a Tier."""
    assert isinstance(tier, Tier)


def test_put_get_contains_delete(tier: Tier) -> None:
    """A stored value comes back byte for byte, and is gone after delete."""
    tier.put(K1, b"value-1")
    assert tier.contains(K1)
    assert tier.get(K1) == b"value-1"
    tier.delete(K1)
    assert not tier.contains(K1)
    assert tier.get(K1) is None


def test_missing_key(tier: Tier) -> None:
    """A key never stored is absent; deleting it is not an error."""
    assert tier.get(K1) is None
    assert not tier.contains(K1)
    tier.delete(K1)


def test_batched_forms(tier: Tier) -> None:
    """put_many, get_many and contains_many keep order and report gaps."""
    tier.put_many([(K1, b"one", 0.0), (K3, b"three", 0.0)])
    assert tier.get_many([K1, K2, K3]) == [b"one", None, b"three"]
    assert tier.contains_many([K1, K2, K3]) == [True, False, True]
    assert tier.get_many([]) == []


def test_iter_keys_and_usage(tier: Tier) -> None:
    """iter_keys lists every key; usage counts blocks and bytes."""
    tier.put_many([(K1, b"12345", 0.0), (K2, b"123", 0.0)])
    assert sorted(tier.iter_keys()) == [K1, K2]
    usage = tier.usage()
    assert (usage.blocks, usage.used_bytes) == (2, 8)

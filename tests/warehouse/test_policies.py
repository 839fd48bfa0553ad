"""Eviction and admission policies."""

from __future__ import annotations

import pytest

from tokenwatt.errors import ConfigError
from tokenwatt.warehouse.policies import (
    AlwaysAdmit,
    CostAwarePolicy,
    EvictionPolicy,
    LRUPolicy,
    SeenAtLeast,
)


@pytest.mark.parametrize("policy", [LRUPolicy(), CostAwarePolicy()], ids=["lru", "cost"])
def test_policies_satisfy_protocol(policy: EvictionPolicy) -> None:
    """Both policies implement EvictionPolicy."""
    assert isinstance(policy, EvictionPolicy)


def test_lru_evicts_least_recently_used() -> None:
    """After touching a, b is the LRU victim."""
    p = LRUPolicy()
    for k in "abc":
        p.on_insert(k, 10, 0.0)
    p.on_access("a")
    assert p.victim(()) == "b"


def test_lru_skips_pinned() -> None:
    """A pinned LRU entry is passed over."""
    p = LRUPolicy()
    for k in "abc":
        p.on_insert(k, 10, 0.0)
    assert p.victim({"a"}) == "b"
    assert p.victim({"a", "b", "c"}) is None


def test_cost_aware_keeps_expensive_per_byte() -> None:
    """With equal sizes, the block cheapest to recompute goes first even if it is newest."""
    p = CostAwarePolicy()
    p.on_insert("expensive", 100, 5.0)
    p.on_insert("cheap", 100, 1.0)
    assert p.victim(()) == "cheap"


def test_cost_aware_weighs_size() -> None:
    """Same cost, larger block: lower cost per byte, evicted first."""
    p = CostAwarePolicy()
    p.on_insert("big", 1000, 1.0)
    p.on_insert("small", 10, 1.0)
    assert p.victim(()) == "big"


def test_cost_aware_ages_entries() -> None:
    """After an eviction raises the inflation value, new cheap entries outrank old ones."""
    p = CostAwarePolicy()
    p.on_insert("a", 1, 1.0)
    p.on_insert("b", 1, 2.0)
    assert p.victim(()) == "a"
    p.on_remove("a")
    p.on_insert("c", 1, 1.5)  # priority 1 + 1.5 = 2.5 > b's 2.0
    assert p.victim(()) == "b"


def test_cost_aware_equal_costs_behave_like_lru() -> None:
    """With equal costs, the least recently used entry goes first."""
    p = CostAwarePolicy()
    for k in "abc":
        p.on_insert(k, 10, 0.0)
    p.on_access("a")
    assert p.victim(()) == "b"


def test_cost_aware_skips_pinned_and_removed() -> None:
    """Pinned and removed entries are never victims."""
    p = CostAwarePolicy()
    for k in "abc":
        p.on_insert(k, 10, 0.0)
    p.on_remove("a")
    assert p.victim({"b"}) == "c"
    assert p.victim({"b", "c"}) is None


def test_always_admit() -> None:
    """AlwaysAdmit admits a key seen once."""
    assert AlwaysAdmit().admit("k")


def test_seen_at_least_twice() -> None:
    """SeenAtLeast(2) refuses the first sighting and admits the second."""
    p = SeenAtLeast(2)
    assert [p.admit("k"), p.admit("k"), p.admit("j")] == [False, True, False]


def test_seen_at_least_forgets_beyond_capacity() -> None:
    """With max_tracked=1, a key displaced by another starts counting again."""
    p = SeenAtLeast(2, max_tracked=1)
    p.admit("a")
    p.admit("b")
    assert p.admit("a") is False


def test_seen_at_least_validates() -> None:
    """times < 1 is a configuration error."""
    with pytest.raises(ConfigError, match="times"):
        SeenAtLeast(0)

"""Prefix reuse: LRU prefix caches, tier demotion, and hits that skip prefill in a run."""

from __future__ import annotations

import pytest

from tokenwatt.plan.config import PlanConfig, ReplicaConfig, TierSpec, WarehouseConfig
from tokenwatt.plan.simulator import simulate
from tokenwatt.plan.warehouse_model import PrefixCache, Warehouse
from tokenwatt.workload.types import Request

from .conftest import FLAT_POWER, ConstantModel


def test_prefix_cache_counts_leading_hits_only() -> None:
    """A miss ends the prefix: later cached blocks do not count."""
    c = PrefixCache(1000)
    c.touch((1, 2, 4), 16)
    assert c.leading_hits((1, 2, 3, 4)) == 2


def test_prefix_cache_evicts_least_recent() -> None:
    """Past capacity the least recently touched blocks go first."""
    c = PrefixCache(48)
    c.touch((1, 2, 3), 16)
    c.touch((1,), 16)
    assert c.touch((4,), 16) == [2]
    assert (1 in c, 2 in c, 4 in c) == (True, False, True)


def test_warehouse_demotes_and_prices_loads() -> None:
    """Evictions from the first tier land in the second; loads cost bytes / bandwidth."""
    tiers = (TierSpec("dram", 2 * 16 * 100.0, 1000.0), TierSpec("disk", 1e9, 100.0))
    wh = Warehouse(tiers, kv_bytes_per_token=100.0)
    wh.store((1, 2), 16)
    wh.store((3,), 16)  # evicts 1 to disk
    n, load_s = wh.lookup((1, 2, 3), 16)
    assert n == 3
    assert load_s == pytest.approx(1600.0 / 100.0 + 2 * 1600.0 / 1000.0)


def test_warehouse_hit_skips_prefill_tokens() -> None:
    """The second of two equal prompts on different replicas loads its prefix instead."""
    blocks = tuple(range(10))
    reqs = [
        Request("a", 0.0, 161, 1, prefix_block_ids=blocks, block_tokens=16),
        Request("b", 5.0, 161, 1, prefix_block_ids=blocks, block_tokens=16),
    ]
    cfg = PlanConfig(
        autoscaler="static",
        autoscaler_params={"replicas": 2},
        router="round_robin",
        replica=ReplicaConfig(prefix_cache_tokens=0),
        warehouse=WarehouseConfig(
            (TierSpec("dram", 1e12, 25e9),),
        ),
    )
    res = simulate(cfg, reqs, ConstantModel(), FLAT_POWER)
    assert res.prefill_tokens == 161 + 1
    assert res.warehouse["hits_blocks"] == 10.0
    assert res.warehouse["load_s"] == pytest.approx(10 * 16 * 131072 / 25e9)
    assert res.energy_split_j["load"] == pytest.approx(100.0 * res.warehouse["load_s"])


def test_replica_prefix_cache_hit_needs_no_load() -> None:
    """A repeat prompt on the same replica reuses its own cache: no warehouse, no load time."""
    blocks = tuple(range(4))
    reqs = [
        Request("a", 0.0, 100, 1, prefix_block_ids=blocks, block_tokens=16),
        Request("b", 5.0, 100, 1, prefix_block_ids=blocks, block_tokens=16),
    ]
    cfg = PlanConfig(autoscaler="static", autoscaler_params={"replicas": 1})
    res = simulate(cfg, reqs, ConstantModel(), FLAT_POWER)
    assert res.prefill_tokens == 100 + (100 - 64)
    assert res.energy_split_j["load"] == 0.0

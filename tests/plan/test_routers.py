"""Routers: round robin, least outstanding, prefix-aware."""

from __future__ import annotations

import pytest

from tokenwatt.errors import ConfigError
from tokenwatt.plan.metrics import Metrics, Timeline
from tokenwatt.plan.replica import Replica, ReplicaEnv, SimRequest
from tokenwatt.plan.routers import (
    LeastOutstandingRouter,
    PrefixAwareRouter,
    RoundRobinRouter,
    make_router,
)
from tokenwatt.workload.types import Request

from .conftest import FLAT_POWER, ConstantModel


def _replicas(n: int) -> list[Replica]:
    env = ReplicaEnv(
        execution=ConstantModel(),
        power=FLAT_POWER,
        devices=1,
        metrics=Metrics(),
        timeline=Timeline(60.0),
        kv_capacity_tokens=10_000,
        max_batch=8,
        max_prefill_tokens=8192,
        prefix_cache_tokens=1000,
        fast=True,
    )
    return [Replica(i, env) for i in range(n)]


def _req(blocks: tuple[int, ...] = ()) -> SimRequest:
    return SimRequest(Request("x", 0.0, 200, 5, prefix_block_ids=blocks, block_tokens=16))


def test_round_robin_cycles() -> None:
    """Replicas are chosen in turn."""
    rs = _replicas(3)
    router = RoundRobinRouter()
    assert [router.choose(rs, _req()).index for _ in range(5)] == [0, 1, 2, 0, 1]


def test_least_outstanding_picks_least_loaded() -> None:
    """The replica with the fewest outstanding requests wins; ties go to the lowest index."""
    rs = _replicas(3)
    rs[0].outstanding, rs[1].outstanding, rs[2].outstanding = 4, 1, 1
    assert LeastOutstandingRouter().choose(rs, _req()).index == 1


def test_prefix_aware_prefers_cached_replica() -> None:
    """A replica holding the request's prefix wins over a less loaded one within the slack."""
    rs = _replicas(3)
    rs[2].cache.touch((7, 8), 16)
    rs[2].outstanding = 3
    assert PrefixAwareRouter(max_imbalance=4).choose(rs, _req((7, 8, 9))).index == 2


def test_prefix_aware_avoids_overloaded_cached_replica() -> None:
    """Past the imbalance limit the least loaded replica wins despite the cache."""
    rs = _replicas(3)
    rs[2].cache.touch((7, 8), 16)
    rs[2].outstanding = 10
    assert PrefixAwareRouter(max_imbalance=4).choose(rs, _req((7, 8, 9))).index == 0


def test_make_router_rejects_unknown_name() -> None:
    """An unknown router name raises ConfigError listing the choices."""
    assert isinstance(make_router("round_robin"), RoundRobinRouter)
    with pytest.raises(ConfigError, match="round_robin, least_outstanding or prefix_aware"):
        make_router("random")

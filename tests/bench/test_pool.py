"""ShardedPool: shards fill to their size, new shards open, the cap queues on the least loaded."""

from __future__ import annotations

import httpx

from tokenwatt.bench._pool import ShardedPool


def _pool(max_connections: int, shard_size: int) -> tuple[ShardedPool, list[int]]:
    sizes: list[int] = []

    def make(connections: int) -> httpx.AsyncClient:
        sizes.append(connections)
        return httpx.AsyncClient()

    return ShardedPool(make, max_connections, shard_size), sizes


def test_requests_fill_a_shard_before_opening_the_next() -> None:
    """With shards of 2, three requests use shard 0, 0, then a new shard 1."""
    pool, sizes = _pool(8, 2)
    assert [pool.acquire()[0] for _ in range(3)] == [0, 0, 1]
    assert sizes == [2, 2]


def test_released_slots_are_reused_first() -> None:
    """A slot freed on shard 0 is taken before shard 1's."""
    pool, _ = _pool(8, 2)
    for _ in range(3):
        pool.acquire()
    pool.release(0)
    assert pool.acquire()[0] == 0


def test_at_the_cap_the_least_loaded_shard_takes_the_request() -> None:
    """Cap 4 in shards of 2: the fifth request goes to the least loaded shard, no third shard."""
    pool, _ = _pool(4, 2)
    for _ in range(4):
        pool.acquire()
    pool.release(1)
    assert pool.acquire()[0] == 1
    assert pool.acquire()[0] in (0, 1)
    assert pool.shards == 2

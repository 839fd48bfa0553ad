"""Redis tier against a real redis-server: TTL, prefixes, cluster mode, a server killed mid-run."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pytest

from tokenwatt.errors import ConfigError
from tokenwatt.warehouse.codec import encode_block
from tokenwatt.warehouse.config import WarehouseConfig, build_store
from tokenwatt.warehouse.keys import BlockHasher, fingerprint_digest
from tokenwatt.warehouse.maintenance import clear_tier, summarize_tier, verify_tier
from tokenwatt.warehouse.memory import MemoryTier
from tokenwatt.warehouse.redis_tier import RedisTier
from tokenwatt.warehouse.store import StoreConfig, TierConfig, TieredStore

from .conftest import RedisProcess

A, B = "aa" * 16, "bb" * 16
KV = Callable[..., list[np.ndarray]]


def test_constructor_does_not_connect() -> None:
    """A RedisTier on a port nobody listens on can be built (it connects on first use)."""
    RedisTier("redis://127.0.0.1:1/0")


def test_bad_url_rejected() -> None:
    """A URL without a redis scheme is a configuration error naming the fix."""
    with pytest.raises(ConfigError, match="redis://"):
        RedisTier("localhost:6379")


def test_ttl_expires_blocks(redis_url: str) -> None:
    """With ttl_s=0.2, a block is gone half a second later."""
    tier = RedisTier(redis_url, ttl_s=0.2)
    tier.put(A, b"x")
    assert tier.contains(A)
    time.sleep(0.5)
    assert not tier.contains(A)


def test_key_prefix_isolates(redis_url: str) -> None:
    """Two prefixes on one server do not see each other's blocks."""
    one = RedisTier(redis_url, key_prefix="one:")
    two = RedisTier(redis_url, key_prefix="two:")
    one.put(A, b"x")
    assert not two.contains(A)
    assert list(two.iter_keys()) == []
    assert two.clear() == 0 and one.clear() == 1


def test_dead_server_fails_fast() -> None:
    """A call to a port with no server raises within about the socket timeout."""
    tier = RedisTier("redis://127.0.0.1:1/0", socket_timeout_s=0.2)
    start = time.monotonic()
    with pytest.raises(Exception):  # noqa: B017 - any redis-py connection error will do
        tier.get(A)
    assert time.monotonic() - start < 5


def test_killed_mid_run_reads_as_miss(own_redis: RedisProcess, make_kv: KV) -> None:
    """After the server dies, loads return what DRAM has, writes still succeed; nothing raises."""
    hasher = BlockHasher("m", block_tokens=4)
    keys = hasher.keys(range(8))
    store = TieredStore(
        [TierConfig(MemoryTier(0)), TierConfig(RedisTier(own_redis.url), timeout_s=1.0)],
        fingerprint="m",
        config=StoreConfig(backoff_initial_s=30.0, backoff_max_s=30.0),
    )
    store.put([(k, make_kv(i)) for i, k in enumerate(keys)], block_tokens=4)
    assert len(store.load(keys, block_tokens=4).blocks) == 2
    own_redis.stop()
    start = time.monotonic()
    assert store.load(keys, block_tokens=4).blocks == ()
    store.put([(keys[0], make_kv(0))], block_tokens=4)
    assert store.load(keys, block_tokens=4).blocks == ()
    assert time.monotonic() - start < 5
    counters = store.stats.snapshot().tiers["redis"]
    assert counters.errors == 1
    assert counters.skipped == 2
    store.close()


@pytest.mark.slow
def test_cluster_mode(redis_cluster: str, make_kv: KV) -> None:
    """Blocks spread over a 3-node cluster come back through batched and single calls."""
    tier = RedisTier(redis_cluster, cluster=True)
    keys = BlockHasher("m", block_tokens=1).keys(range(32))
    tier.put_many([(k, k.encode(), 0.0) for k in keys])
    assert tier.get_many(keys) == [k.encode() for k in keys]
    assert tier.contains_many(keys) == [True] * 32
    assert sorted(tier.iter_keys()) == sorted(keys)
    assert tier.get(keys[5]) == keys[5].encode()
    assert tier.clear() == 32
    tier.close()


@pytest.mark.parametrize("ttl_s", [float("nan"), float("inf"), 0.0])
def test_non_finite_ttl_rejected(ttl_s: float) -> None:
    """A NaN or infinite TTL would fail every write later; it is refused at construction."""
    with pytest.raises(ConfigError, match="ttl_s must be"):
        RedisTier("redis://127.0.0.1:1", ttl_s=ttl_s)


def _command_calls(url: str) -> dict[str, int]:
    """Calls per command since the last CONFIG RESETSTAT, from the server's INFO."""
    import redis

    client = redis.Redis.from_url(url)
    stats = client.info("commandstats")
    client.close()
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def _reset_command_stats(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    client.config_resetstat()
    client.close()


def test_store_load_is_one_mget(redis_url: str, make_kv: KV) -> None:
    """A load from the Redis tier of build_store is one MGET: no EXISTS probe round trip."""
    store = build_store(WarehouseConfig(dram_bytes=0, redis_url=redis_url), fingerprint="m")
    keys = BlockHasher("m", block_tokens=4).keys(range(40))
    store.put([(k, make_kv(i)) for i, k in enumerate(keys)], block_tokens=4)
    _reset_command_stats(redis_url)
    loaded = store.load(keys, block_tokens=4)
    assert loaded.tiers == ("redis",) * 10
    np.testing.assert_array_equal(loaded.blocks[9].arrays[3], make_kv(9)[3])
    calls = _command_calls(redis_url)
    assert calls.get("mget") == 1
    assert "exists" not in calls and "get" not in calls
    store.close()


def test_corrupt_redis_block_is_miss_and_deleted(redis_url: str, make_kv: KV) -> None:
    """A value damaged inside Redis (one payload byte rewritten) ends the prefix before it and is
    deleted from the server; the blocks before it load."""
    import redis

    store = build_store(WarehouseConfig(dram_bytes=0, redis_url=redis_url), fingerprint="m")
    keys = BlockHasher("m", block_tokens=4).keys(range(16))
    store.put([(k, make_kv(i)) for i, k in enumerate(keys)], block_tokens=4)
    client = redis.Redis.from_url(redis_url)
    name = "tw:kv:" + keys[2]
    value = client.get(name)
    assert isinstance(value, bytes)
    client.setrange(name, len(value) - 9, bytes([value[-9] ^ 0x01]))
    loaded = store.load(keys, block_tokens=4)
    assert len(loaded.blocks) == 2
    assert store.stats.snapshot().tiers["redis"].rejected == 1
    assert client.exists(name) == 0
    client.close()
    store.close()


@pytest.mark.slow
def test_cluster_store_load(redis_cluster: str, make_kv: KV) -> None:
    """Through build_store in cluster mode, a prefix spread over 3 nodes loads whole and verified
    (one MGET per slot), and a block missing on one node ends it there."""
    config = WarehouseConfig(dram_bytes=0, redis_url=redis_cluster, redis_cluster=True)
    store = build_store(config, fingerprint="m")
    keys = BlockHasher("m", block_tokens=4).keys(range(4 * 24))
    store.put([(k, make_kv(i)) for i, k in enumerate(keys)], block_tokens=4)
    loaded = store.load(keys, block_tokens=4)
    assert loaded.tiers == ("redis",) * 24
    np.testing.assert_array_equal(loaded.blocks[17].arrays[0], make_kv(17)[0])
    store.tiers[0].tier.delete(keys[13])
    assert len(store.load(keys, block_tokens=4).blocks) == 13
    assert store.tiers[0].tier.clear() == 23  # type: ignore[attr-defined]
    store.close()


def test_maintenance_reads_in_batches_and_clears(redis_url: str) -> None:
    """verify and stats read 300 blocks with two MGETs each (256 + 44), no GET per key, and
    find the one bad block; clear deletes all 300."""
    tier = RedisTier(redis_url)
    keys = BlockHasher("m", block_tokens=1).keys(range(300))
    fp = fingerprint_digest("m")
    blocks = [
        encode_block(k, fp, 1, [np.full((1, 1, 2), i, np.float32)]) for i, k in enumerate(keys)
    ]
    tier.put_many([(k, b, 0.0) for k, b in zip(keys, blocks, strict=True)])
    tier.delete(keys[7])
    tier.put(keys[7], b"not a block")
    _reset_command_stats(redis_url)
    report = verify_tier(tier)
    assert (report.checked, report.ok, [b.key for b in report.bad]) == (300, 299, [keys[7]])
    assert summarize_tier(tier).token_counts == {1: 299}
    calls = _command_calls(redis_url)
    assert calls.get("mget") == 4 and "get" not in calls
    assert clear_tier(tier) == 300
    assert list(tier.iter_keys()) == []
    tier.close()

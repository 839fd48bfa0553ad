"""Redis / Valkey tier: blocks as string values under a key prefix, single server or Cluster.

The client is created on first use, never in the constructor. Socket timeouts are short and
client-side retries are off, so a dead server costs one timeout; the store's circuit breaker
then skips the tier until its backoff expires. redis-py parses replies with hiredis (a
dependency: ``redis[hiredis]``), 1.6-1.9x as fast as its pure-Python parser on MGETs of 32 KiB
to 1 MiB blocks (benchmarks/warehouse_tiers.py).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from tokenwatt.errors import ConfigError

from .tier import TierBase, TierUsage

__all__ = ["RedisTier"]


_MAX_TIMEOUT_S = 3600.0
"""Longest socket timeout accepted (sockets reject NaN and overflow on huge values)."""


class RedisTier(TierBase):
    """Blocks in Redis at ``url`` (``redis://host:port/db``); ``cluster=True`` for Redis Cluster."""

    def __init__(
        self,
        url: str,
        *,
        cluster: bool = False,
        ttl_s: float | None = None,
        socket_timeout_s: float = 0.5,
        key_prefix: str = "tw:kv:",
        name: str = "redis",
    ) -> None:
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(
                f"Redis URL must start with redis://, rediss:// or unix://, got {url!r}"
            )
        if ttl_s is not None and not 0 < ttl_s < math.inf:
            raise ConfigError(
                f"Redis ttl_s must be a finite number > 0 (or None for no expiry), got {ttl_s}"
            )
        if not 0 < socket_timeout_s <= _MAX_TIMEOUT_S:
            raise ConfigError(
                f"Redis socket_timeout_s must be > 0 and at most {_MAX_TIMEOUT_S:g} s, "
                f"got {socket_timeout_s}"
            )
        self.name = name
        self.url = url
        self.cluster = cluster
        self.ttl_s = ttl_s
        self.socket_timeout_s = socket_timeout_s
        self.key_prefix = key_prefix
        self._client: Any = None
        self._lock = threading.Lock()

    def _redis(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._connect()
            return self._client

    def _connect(self) -> Any:
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        opts: dict[str, Any] = {
            "socket_timeout": self.socket_timeout_s,
            "socket_connect_timeout": self.socket_timeout_s,
        }
        if self.cluster:
            from redis.cluster import RedisCluster

            return RedisCluster.from_url(self.url, retry=Retry(NoBackoff(), 1), **opts)
        import redis

        return redis.Redis.from_url(self.url, retry=Retry(NoBackoff(), 0), **opts)

    def _k(self, key: str) -> str:
        return self.key_prefix + key

    def _px(self) -> int | None:
        return None if self.ttl_s is None else max(int(self.ttl_s * 1000), 1)

    def contains(self, key: str) -> bool:
        return bool(self._redis().exists(self._k(key)))

    def contains_many(self, keys: Sequence[str]) -> list[bool]:
        if not keys:
            return []
        pipe = self._redis().pipeline(transaction=False)
        for k in keys:
            pipe.exists(self._k(k))
        return [bool(n) for n in pipe.execute()]

    def get(self, key: str) -> bytes | None:
        value = self._redis().get(self._k(key))
        return None if value is None else bytes(value)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        client = self._redis()
        names = [self._k(k) for k in keys]
        values = client.mget_nonatomic(names) if self.cluster else client.mget(names)
        return [None if v is None else bytes(v) for v in values]

    def put(self, key: str, value: bytes, *, cost: float = 0.0) -> None:
        self._redis().set(self._k(key), value, px=self._px())

    def put_many(self, items: Sequence[tuple[str, bytes, float]]) -> None:
        if not items:
            return
        pipe = self._redis().pipeline(transaction=False)
        for key, value, _ in items:
            pipe.set(self._k(key), value, px=self._px())
        pipe.execute()

    def delete(self, key: str) -> None:
        self._redis().delete(self._k(key))

    def iter_keys(self) -> Iterator[str]:
        start = len(self.key_prefix)
        for name in self._redis().scan_iter(match=self.key_prefix + "*", count=1000):
            raw = name.decode() if isinstance(name, bytes) else str(name)
            yield raw[start:]

    def usage(self) -> TierUsage:
        blocks = 0
        used = 0
        keys = list(self.iter_keys())
        for start in range(0, len(keys), 1000):  # one round trip per thousand keys
            pipe = self._redis().pipeline(transaction=False)
            for key in keys[start : start + 1000]:
                pipe.strlen(self._k(key))
            for size in pipe.execute():
                if size:
                    blocks += 1
                    used += int(size)
        return TierUsage(blocks, used, None)

    def clear(self) -> int:
        """Delete every block under the key prefix; returns how many were deleted."""
        keys = list(self.iter_keys())
        removed = 0
        for start in range(0, len(keys), 1000):  # one round trip per thousand keys
            pipe = self._redis().pipeline(transaction=False)
            for key in keys[start : start + 1000]:
                pipe.delete(self._k(key))
            removed += sum(int(n) for n in pipe.execute())
        return removed

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

"""Warehouse configuration: which tiers, how large, and the one-line spec the CLI accepts.

``--warehouse dram=2GiB,disk=/var/cache/tw,disk-size=20GiB,redis=redis://host:6379/0`` becomes a
:class:`WarehouseConfig`; :func:`build_store` turns it into a :class:`TieredStore` (no I/O until
the first block is read or written).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields, replace
from pathlib import Path

from tokenwatt.errors import ConfigError

from .disk import DiskTier
from .memory import MemoryTier
from .policies import AlwaysAdmit, CostAwarePolicy, EvictionPolicy, LRUPolicy, SeenAtLeast
from .redis_tier import RedisTier
from .store import StoreConfig, TierConfig, TieredStore

__all__ = ["WarehouseConfig", "build_store", "parse_bytes", "parse_warehouse_spec"]

_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def parse_bytes(text: str) -> int:
    """``"2GiB"`` -> 2147483648; plain integers are bytes. Raises ConfigError on nonsense."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if m is None or m.group(2).lower() not in _UNITS:
        raise ConfigError(f"cannot read {text!r} as a size; write e.g. 512MiB, 2GiB or 1000000")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


@dataclass(frozen=True)
class WarehouseConfig:
    """Tiers of a warehouse, fastest first: DRAM, then disk, then Redis (each optional)."""

    dram_bytes: int = 1 << 30
    """Host DRAM budget; 0 disables the DRAM tier."""
    disk_dir: Path | None = None
    """Directory of the disk tier; None disables it."""
    disk_bytes: int = 10 << 30
    """Disk tier budget."""
    disk_admit_after: int = 1
    """Write a block to disk once offered this many times (2 filters one-off prompts)."""
    redis_url: str | None = None
    """Redis URL; None disables the Redis tier."""
    redis_cluster: bool = False
    """The Redis URL points at a Redis Cluster node."""
    redis_ttl_s: float | None = None
    """Expiry of Redis blocks; None keeps them until Redis evicts them."""
    redis_timeout_s: float = 0.5
    """Socket timeout and the store's per-call timeout for Redis."""
    tenant: str | None = None
    """Server-wide tenant salt: servers with different salts never read each other's blocks."""
    isolation: str = "tenant"
    """``tenant``: each request's tenant (user or API key) has its own cache; ``shared``: one
    cache for every client of the server (single-tenant deployments wanting cross-user reuse)."""
    eviction: str = "lru"
    """Eviction policy of DRAM and disk: ``lru`` or ``cost`` (cost-aware)."""
    backoff_initial_s: float = 1.0
    """Skip a failed tier this long after its first failure (doubling up to 60 s)."""

    def __post_init__(self) -> None:
        if self.dram_bytes < 0 or self.disk_bytes < 0:
            raise ConfigError("warehouse byte budgets must be >= 0")
        if self.disk_admit_after < 1:
            raise ConfigError(f"disk-admit must be >= 1, got {self.disk_admit_after}")
        if self.isolation not in ("tenant", "shared"):
            raise ConfigError(
                f"isolation must be tenant or shared, got {self.isolation!r} (tenant keeps each "
                "client's cache apart; shared lets all clients of the server reuse each other's)"
            )
        if self.eviction not in ("lru", "cost"):
            raise ConfigError(f"eviction must be lru or cost, got {self.eviction!r}")
        if not 0 < self.redis_timeout_s < math.inf:
            raise ConfigError(
                f"redis-timeout must be a finite number > 0 (seconds), got {self.redis_timeout_s}"
            )
        if self.redis_ttl_s is not None and not 0 < self.redis_ttl_s < math.inf:
            raise ConfigError(
                f"redis-ttl must be a finite number > 0 (seconds; leave it out for no expiry), "
                f"got {self.redis_ttl_s}"
            )
        if self.disk_dir is not None and self.disk_bytes == 0:
            raise ConfigError("disk-size must be > 0 when disk= is given (e.g. disk-size=20GiB)")
        if self.dram_bytes == 0 and self.disk_dir is None and self.redis_url is None:
            raise ConfigError("the warehouse has no tier: give dram=SIZE, disk=DIR or redis=URL")

    def describe(self) -> str:
        """One line naming each tier, fastest first, with its budget and settings."""
        tiers = []
        if self.dram_bytes:
            tiers.append(f"dram {_size(self.dram_bytes)} ({self.eviction})")
        if self.disk_dir is not None:
            admit = f", admit after {self.disk_admit_after} offers" * (self.disk_admit_after > 1)
            tiers.append(f"disk {self.disk_dir} {_size(self.disk_bytes)} ({self.eviction}{admit})")
        if self.redis_url is not None:
            kind = "redis-cluster" if self.redis_cluster else "redis"
            ttl = "no TTL" if self.redis_ttl_s is None else f"TTL {self.redis_ttl_s:g} s"
            tiers.append(f"{kind} {self.redis_url} (timeout {self.redis_timeout_s:g} s, {ttl})")
        tenant = f"; tenant {self.tenant}" if self.tenant else ""
        shared = "; shared across clients" if self.isolation == "shared" else ""
        return " -> ".join(tiers) + tenant + shared


def _size(bytes_: int) -> str:
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if bytes_ >= scale:
            return f"{bytes_ / scale:.3g} {unit}"
    return f"{bytes_} B"


_KEYS = {
    "dram": ("dram_bytes", parse_bytes),
    "disk": ("disk_dir", Path),
    "disk-size": ("disk_bytes", parse_bytes),
    "disk-admit": ("disk_admit_after", int),
    "redis": ("redis_url", str),
    "redis-cluster": ("redis_url", str),
    "redis-ttl": ("redis_ttl_s", float),
    "redis-timeout": ("redis_timeout_s", float),
    "tenant": ("tenant", str),
    "eviction": ("eviction", str),
    "isolation": ("isolation", str),
}


def parse_warehouse_spec(spec: str) -> WarehouseConfig:
    """Parse ``key=value,key=value`` (keys: dram, disk, disk-size, disk-admit, redis,
    redis-cluster, redis-ttl, redis-timeout, tenant, eviction, isolation). ``dram`` alone is
    1 GiB of DRAM; ``isolation`` is ``tenant`` (default: per-client caches) or ``shared``.
    """
    values: dict[str, object] = {}
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        key, sep, raw = item.partition("=")
        key = key.strip().lower()
        if key == "dram" and not sep:
            continue  # the default DRAM budget
        if key not in _KEYS or not sep:
            raise ConfigError(
                f"cannot read warehouse option {item!r}; use key=value with a key among "
                f"{', '.join(_KEYS)} (e.g. dram=2GiB,disk=/tmp/tw)"
            )
        if not raw.strip():
            raise ConfigError(f"warehouse option {item!r} has no value; write {key}=VALUE")
        name, convert = _KEYS[key]
        try:
            values[name] = convert(raw.strip())  # type: ignore[operator]
        except ValueError as exc:
            raise ConfigError(f"bad value in warehouse option {item!r}: {exc}") from None
        if key == "redis-cluster":
            values["redis_cluster"] = True
    known = {f.name for f in fields(WarehouseConfig)}
    assert set(values) <= known
    return replace(WarehouseConfig(), **values)  # type: ignore[arg-type]


def _policy(name: str) -> EvictionPolicy:
    return CostAwarePolicy() if name == "cost" else LRUPolicy()


def build_store(config: WarehouseConfig, *, fingerprint: str) -> TieredStore:
    """The TieredStore for ``config`` (tiers open lazily; nothing is read or connected here)."""
    tiers: list[TierConfig] = []
    if config.dram_bytes > 0:
        # DRAM holds bytes verified when they entered the process; reads check the header only.
        tiers.append(
            TierConfig(MemoryTier(config.dram_bytes, policy=_policy(config.eviction)),
                       verify_payload=False)
        )  # fmt: skip
    if config.disk_dir is not None:
        admission = (
            SeenAtLeast(config.disk_admit_after) if config.disk_admit_after > 1 else AlwaysAdmit()
        )
        disk = DiskTier(config.disk_dir, config.disk_bytes, policy=_policy(config.eviction))
        tiers.append(TierConfig(disk, admission=admission))
    if config.redis_url is not None:
        redis = RedisTier(
            config.redis_url,
            cluster=config.redis_cluster,
            ttl_s=config.redis_ttl_s,
            socket_timeout_s=config.redis_timeout_s,
        )
        # Connect plus one command: a dead server costs at most this, once per backoff period.
        # Probed by fetching (one MGET per load instead of EXISTS, then MGET).
        tiers.append(TierConfig(redis, timeout_s=config.redis_timeout_s * 2, fetch_on_probe=True))
    store_config = StoreConfig(
        backoff_initial_s=config.backoff_initial_s,
        backoff_max_s=max(60.0, config.backoff_initial_s),
    )
    return TieredStore(tiers, fingerprint=fingerprint, config=store_config)

"""Warehouse configuration: sizes, the --warehouse spec, and the store it builds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tokenwatt.errors import ConfigError
from tokenwatt.warehouse.config import (
    WarehouseConfig,
    build_store,
    parse_bytes,
    parse_warehouse_spec,
)
from tokenwatt.warehouse.policies import SeenAtLeast


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1000", 1000), ("2GiB", 2 << 30), ("512 MiB", 512 << 20), ("1.5kb", 1500), ("3G", 3 * 10**9)],
)
def test_parse_bytes(text: str, expected: int) -> None:
    """Decimal and binary units are read exactly."""
    assert parse_bytes(text) == expected


def test_parse_bytes_rejects_nonsense() -> None:
    """An unknown unit names the accepted forms."""
    with pytest.raises(ConfigError, match="512MiB"):
        parse_bytes("12 parsecs")


def test_full_spec() -> None:
    """Every key of the spec lands in its field."""
    cfg = parse_warehouse_spec(
        "dram=2GiB, disk=/tmp/tw, disk-size=5GiB, disk-admit=2, redis-cluster=redis://h:7000/0,"
        "redis-ttl=60, redis-timeout=0.25, tenant=acme, eviction=cost, isolation=shared"
    )
    assert cfg == WarehouseConfig(
        dram_bytes=2 << 30,
        disk_dir=Path("/tmp/tw"),
        disk_bytes=5 << 30,
        disk_admit_after=2,
        redis_url="redis://h:7000/0",
        redis_cluster=True,
        redis_ttl_s=60.0,
        redis_timeout_s=0.25,
        tenant="acme",
        eviction="cost",
        isolation="shared",
    )


def test_bare_dram() -> None:
    """`dram` alone means the default 1 GiB DRAM tier."""
    assert parse_warehouse_spec("dram").dram_bytes == 1 << 30


def test_unknown_key() -> None:
    """An unknown key lists the accepted ones."""
    with pytest.raises(ConfigError, match="dram, disk, disk-size"):
        parse_warehouse_spec("ssd=/tmp")


def test_bad_value() -> None:
    """A non-numeric TTL is a clear error naming the item."""
    with pytest.raises(ConfigError, match="redis-ttl=soon"):
        parse_warehouse_spec("redis-ttl=soon")


def test_no_tier() -> None:
    """A warehouse with every tier off is rejected."""
    with pytest.raises(ConfigError, match="no tier"):
        parse_warehouse_spec("dram=0")


def test_build_store_tiers_in_order(tmp_path: Path) -> None:
    """DRAM, disk (with admission), Redis, fastest first; building connects to nothing."""
    cfg = WarehouseConfig(
        disk_dir=tmp_path / "d", disk_admit_after=2, redis_url="redis://127.0.0.1:1/0"
    )
    store = build_store(cfg, fingerprint="m")
    assert [t.tier.name for t in store.tiers] == ["dram", "disk", "redis"]
    assert store.tiers[0].verify_payload is False
    assert isinstance(store.tiers[1].admission, SeenAtLeast)
    assert store.tiers[2].timeout_s == pytest.approx(1.0)
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("disk=", "warehouse option 'disk=' has no value"),
        ("dram=1MiB,tenant=", "warehouse option 'tenant=' has no value"),
        ("redis=redis://h:1,redis-timeout=nan", "redis-timeout must be a finite number > 0"),
        ("redis=redis://h:1,redis-timeout=inf", "redis-timeout must be a finite number > 0"),
        ("redis=redis://h:1,redis-ttl=nan", "redis-ttl must be a finite number > 0"),
        ("redis=redis://h:1,redis-ttl=0", "redis-ttl must be a finite number > 0"),
        ("disk=/tmp/tw,disk-size=0", "disk-size must be > 0"),
        ("dram=1MiB,isolation=none", "isolation must be tenant or shared, got 'none'"),
    ],
)
def test_values_that_would_misbehave_later_are_refused(spec: str, message: str) -> None:
    """An empty value (disk= would use the current folder), a NaN or infinite timeout or TTL,
    and a zero-byte disk tier are refused when parsed, with the option named."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_warehouse_spec(spec)


def test_describe_names_every_tier_with_its_settings() -> None:
    """describe() spells out the tiers in use, including the default DRAM tier a spec implies."""
    config = parse_warehouse_spec("redis=redis://h:1/0,tenant=acme")
    assert config.describe() == (
        "dram 1 GiB (lru) -> redis redis://h:1/0 (timeout 0.5 s, no TTL); tenant acme"
    )
    config = parse_warehouse_spec("dram=0,disk=/tmp/tw,disk-size=2GiB,disk-admit=2,eviction=cost")
    assert config.describe() == "disk /tmp/tw 2 GiB (cost, admit after 2 offers)"


def test_isolation_defaults_to_tenant_and_shared_is_described() -> None:
    """Per-client caches are the default; a shared cache is said so on the startup line."""
    assert parse_warehouse_spec("dram=1MiB").isolation == "tenant"
    config = parse_warehouse_spec("dram=1MiB,isolation=shared")
    assert config.describe() == "dram 1 MiB (lru); shared across clients"

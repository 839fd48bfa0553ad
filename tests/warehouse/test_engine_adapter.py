"""The warehouse behind the reference engine: the same greedy tokens with it on or off, from
every tier, after a restart, and when blocks are damaged or a tier dies."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from prometheus_client import CollectorRegistry, generate_latest

from tokenwatt.engine.config import EngineConfig
from tokenwatt.engine.core import EngineCore
from tokenwatt.engine.engine import Completion
from tokenwatt.engine.kv import KVLayout, PrefixKV
from tokenwatt.engine.model import LoadedModel
from tokenwatt.engine.request import RequestOutput
from tokenwatt.engine.runner import ModelRunner
from tokenwatt.engine.sampling import SamplingParams
from tokenwatt.errors import ConfigError
from tokenwatt.warehouse.config import WarehouseConfig, build_store
from tokenwatt.warehouse.disk import DiskTier
from tokenwatt.warehouse.engine_adapter import (
    AdapterConfig,
    WarehousePrefixProvider,
    build_prefix_provider,
)

from .conftest import RedisProcess

GREEDY = SamplingParams(max_tokens=6, temperature=0.0, ignore_eos=True)
CONFIG = EngineConfig(block_tokens=16, max_step_tokens=256)
TEXT = "The warehouse keeps every computed token. " * 3  # 126 bytes: 7 whole 16-token blocks


def _run(core: EngineCore) -> dict[str, Completion]:
    outs: dict[str, list[RequestOutput]] = {}
    while core.has_unfinished():
        for o in core.step():
            outs.setdefault(o.request_id, []).append(o)
    return {rid: Completion.join(o) for rid, o in outs.items()}


def _generate(
    model: LoadedModel,
    provider: object | None,
    prompts: list[list[int]],
    tenant: str | None = None,
) -> list[Completion]:
    """Run ``prompts`` concurrently on a fresh engine core; completions in prompt order."""
    core = EngineCore(model, CONFIG, prefix_provider=provider)  # type: ignore[arg-type]
    for i, p in enumerate(prompts):
        core.add_request(f"r{i}", p, GREEDY, tenant=tenant)
    done = _run(core)
    if isinstance(provider, WarehousePrefixProvider):
        assert provider.flush()
    return [done[f"r{i}"] for i in range(len(prompts))]


def _provider(
    model: LoadedModel,
    config: WarehouseConfig,
    tenant: str | None = None,
    isolation: str = "tenant",
) -> WarehousePrefixProvider:
    layout = ModelRunner(model).layout(CONFIG.block_tokens)
    store = build_store(config, fingerprint=model.fingerprint)
    return WarehousePrefixProvider(store, layout, AdapterConfig(tenant=tenant, isolation=isolation))


@pytest.fixture(scope="module")
def prompt(tiny_model: LoadedModel) -> list[int]:
    """A 127-token prompt (7 whole blocks and a partial one)."""
    ids = tiny_model.tokenizer.encode(TEXT)
    assert len(ids) == 127
    return ids


@pytest.fixture(scope="module")
def reference(tiny_model: LoadedModel, prompt: list[int]) -> tuple[int, ...]:
    """Greedy tokens with no warehouse."""
    return _generate(tiny_model, None, [prompt])[0].token_ids


@pytest.fixture
def disk_provider(tiny_model: LoadedModel, tmp_path: Path) -> Iterator[WarehousePrefixProvider]:
    """A disk-only warehouse in a temp directory."""
    provider = _provider(tiny_model, WarehouseConfig(dram_bytes=0, disk_dir=tmp_path / "wh"))
    yield provider
    provider.close()


def test_dram_hit_same_tokens(
    tiny_model: LoadedModel, prompt: list[int], reference: tuple[int, ...]
) -> None:
    """Second run served 112 tokens from DRAM and emitted exactly the reference tokens."""
    provider = _provider(tiny_model, WarehouseConfig(dram_bytes=1 << 26))
    cold = _generate(tiny_model, provider, [prompt])[0]
    warm = _generate(tiny_model, provider, [prompt])[0]
    assert (cold.cached_tokens, warm.cached_tokens) == (0, 112)
    assert cold.token_ids == warm.token_ids == reference
    assert provider.store.stats.snapshot().tokens_served == 112
    provider.close()


def test_tenants_never_hit_each_others_blocks(
    tiny_model: LoadedModel, prompt: list[int], reference: tuple[int, ...]
) -> None:
    """Bob's first run of Alice's prompt computes it all; each tenant's repeat hits its own."""
    provider = _provider(tiny_model, WarehouseConfig(dram_bytes=1 << 26))
    runs = [
        _generate(tiny_model, provider, [prompt], tenant=t)[0]
        for t in ("alice", "bob", "alice", "bob")
    ]
    assert [r.cached_tokens for r in runs] == [0, 0, 112, 112]
    assert all(r.token_ids == reference for r in runs)
    provider.close()


def test_shared_isolation_hits_across_tenants(
    tiny_model: LoadedModel, prompt: list[int], reference: tuple[int, ...]
) -> None:
    """With isolation shared, Bob's first run reuses the blocks Alice's run stored."""
    provider = _provider(tiny_model, WarehouseConfig(dram_bytes=1 << 26), isolation="shared")
    alice = _generate(tiny_model, provider, [prompt], tenant="alice")[0]
    bob = _generate(tiny_model, provider, [prompt], tenant="bob")[0]
    anyone = _generate(tiny_model, provider, [prompt])[0]
    assert (alice.cached_tokens, bob.cached_tokens, anyone.cached_tokens) == (0, 112, 112)
    assert alice.token_ids == bob.token_ids == anyone.token_ids == reference
    provider.close()


def test_request_tenant_keys_differ_from_server_salt_and_nest_in_it(
    tiny_model: LoadedModel, prompt: list[int]
) -> None:
    """A request tenant never shares keys with a server salt of the same name, with no tenant,
    or with the same request tenant under another server-wide salt."""
    config = WarehouseConfig(dram_bytes=1 << 20)
    plain, acme = _provider(tiny_model, config), _provider(tiny_model, config, tenant="acme")
    keys = {
        plain.hasher.keys(prompt)[0],
        plain.hasher_for(None).keys(prompt)[0],
        plain.hasher_for("acme").keys(prompt)[0],
        acme.hasher.keys(prompt)[0],
        acme.hasher_for("bob").keys(prompt)[0],
        plain.hasher_for("bob").keys(prompt)[0],
    }
    assert len(keys) == 5  # hasher_for(None) is the server-wide hasher itself
    assert plain.hasher_for("bob") is plain.hasher_for("bob")
    plain.close()
    acme.close()


def test_per_tenant_hashers_are_bounded(tiny_model: LoadedModel) -> None:
    """Only remember_tenants hashers are kept; the least recently used goes first."""
    layout = ModelRunner(tiny_model).layout(CONFIG.block_tokens)
    store = build_store(WarehouseConfig(dram_bytes=1 << 20), fingerprint=tiny_model.fingerprint)
    provider = WarehousePrefixProvider(store, layout, AdapterConfig(remember_tenants=2))
    a = provider.hasher_for("a")
    provider.hasher_for("b")
    provider.hasher_for("a")
    provider.hasher_for("c")
    assert list(provider._hashers) == ["a", "c"]
    assert provider.hasher_for("a") is a
    provider.close()


def test_unknown_isolation_is_refused() -> None:
    """An isolation other than tenant or shared names both choices."""
    with pytest.raises(ConfigError, match="isolation must be tenant or shared, got 'open'"):
        AdapterConfig(isolation="open")


def test_disk_hit_same_tokens(
    tiny_model: LoadedModel,
    prompt: list[int],
    reference: tuple[int, ...],
    disk_provider: WarehousePrefixProvider,
) -> None:
    """Served from disk only, the tokens equal the reference."""
    _generate(tiny_model, disk_provider, [prompt])
    warm = _generate(tiny_model, disk_provider, [prompt])[0]
    assert warm.cached_tokens == 112
    assert warm.token_ids == reference


def test_disk_after_restart(
    tiny_model: LoadedModel, prompt: list[int], reference: tuple[int, ...], tmp_path: Path
) -> None:
    """A new store and engine on the same directory (a restarted process) hit and match."""
    config = WarehouseConfig(dram_bytes=1 << 26, disk_dir=tmp_path / "wh")
    first = _provider(tiny_model, config)
    _generate(tiny_model, first, [prompt])
    first.close()
    second = _provider(tiny_model, config)
    warm = _generate(tiny_model, second, [prompt])[0]
    assert warm.cached_tokens == 112
    assert warm.token_ids == reference
    assert second.store.stats.snapshot().tiers["disk"].hits == 7
    second.close()


def test_redis_hit_same_tokens(
    tiny_model: LoadedModel, prompt: list[int], reference: tuple[int, ...], redis_url: str
) -> None:
    """Served from Redis only, the tokens equal the reference."""
    provider = _provider(tiny_model, WarehouseConfig(dram_bytes=0, redis_url=redis_url))
    _generate(tiny_model, provider, [prompt])
    warm = _generate(tiny_model, provider, [prompt])[0]
    assert warm.cached_tokens == 112
    assert warm.token_ids == reference
    provider.close()


def test_multi_turn_reuses_history(tiny_model: LoadedModel, prompt: list[int]) -> None:
    """Turn 2 (turn 1 prompt + output + new text) reuses turn 1's blocks; tokens match."""
    provider = _provider(tiny_model, WarehouseConfig(dram_bytes=1 << 26))
    turn1 = _generate(tiny_model, provider, [prompt])[0]
    turn2_prompt = (
        prompt + list(turn1.token_ids) + tiny_model.tokenizer.encode(" next question?")[1:]
    )
    on = _generate(tiny_model, provider, [turn2_prompt])[0]
    off = _generate(tiny_model, None, [turn2_prompt])[0]
    assert on.cached_tokens == 128  # turn 1's prompt + output completed 8 blocks (133 tokens)
    assert on.token_ids == off.token_ids
    provider.close()


@pytest.mark.slow
def test_concurrent_requests_same_tokens(tiny_model: LoadedModel, prompt: list[int]) -> None:
    """Four batched requests sharing a prefix, warehouse on (warm) vs off: identical tokens."""
    tails = [" alpha", " beta beta", " gamma!", " delta, delta"]
    prompts = [prompt + tiny_model.tokenizer.encode(t)[1:] for t in tails]
    provider = _provider(tiny_model, WarehouseConfig(dram_bytes=1 << 26))
    _generate(tiny_model, provider, [prompt])
    on = _generate(tiny_model, provider, prompts)
    off = _generate(tiny_model, None, prompts)
    assert [c.cached_tokens for c in on] == [112] * 4
    assert [c.token_ids for c in on] == [c.token_ids for c in off]
    provider.close()


def _damage(path: Path, how: str, other: Path | None = None) -> None:
    data = bytearray(path.read_bytes())
    if how == "flip":
        data[-7] ^= 0x55
    elif how == "truncate":
        data = data[: len(data) // 2]
    elif how == "stale-version":
        struct.pack_into("<H", data, 4, 0)
        header_len = struct.unpack_from("<I", data, 6)[0]
        struct.pack_into("<I", data, header_len - 4, zlib.crc32(data[: header_len - 4]))
    elif how == "foreign" and other is not None:
        data = bytearray(other.read_bytes())
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["flip", "truncate", "stale-version"])
def test_damaged_block_is_miss(
    tiny_model: LoadedModel,
    prompt: list[int],
    reference: tuple[int, ...],
    disk_provider: WarehousePrefixProvider,
    how: str,
) -> None:
    """Damage to block 3 on disk: blocks 0-2 load (48 tokens), the rest recompute, same tokens."""
    _generate(tiny_model, disk_provider, [prompt])
    disk = disk_provider.store.tiers[0].tier
    assert isinstance(disk, DiskTier)
    _damage(disk.path_of(disk_provider.hasher.keys(prompt)[3]), how)
    warm = _generate(tiny_model, disk_provider, [prompt])[0]
    assert warm.cached_tokens == 48
    assert warm.token_ids == reference
    assert disk_provider.store.stats.snapshot().tiers["disk"].rejected == 1


@pytest.mark.parametrize("other", ["model", "tenant"])
def test_foreign_block_is_miss(
    tiny_model: LoadedModel,
    prompt: list[int],
    reference: tuple[int, ...],
    tmp_path: Path,
    other: str,
) -> None:
    """Another model's or tenant's block copied under our key is rejected; output unchanged."""
    ours = _provider(tiny_model, WarehouseConfig(dram_bytes=0, disk_dir=tmp_path / "ours"), "a")
    _generate(tiny_model, ours, [prompt])
    if other == "tenant":
        theirs = _provider(tiny_model, WarehouseConfig(dram_bytes=0, disk_dir=tmp_path / "t"), "b")
    else:
        from tokenwatt.engine.model import load_model

        other_model = load_model("tiny", device="cpu", seed=1)
        theirs = _provider(other_model, WarehouseConfig(dram_bytes=0, disk_dir=tmp_path / "t"), "a")
        _generate(other_model, theirs, [prompt])
    if other == "tenant":
        _generate(tiny_model, theirs, [prompt])
    our_disk, their_disk = ours.store.tiers[0].tier, theirs.store.tiers[0].tier
    assert isinstance(our_disk, DiskTier) and isinstance(their_disk, DiskTier)
    our_key, their_key = ours.hasher.keys(prompt)[0], theirs.hasher.keys(prompt)[0]
    assert our_key != their_key
    _damage(our_disk.path_of(our_key), "foreign", their_disk.path_of(their_key))
    warm = _generate(tiny_model, ours, [prompt])[0]
    assert warm.cached_tokens == 0
    assert warm.token_ids == reference
    ours.close()
    theirs.close()


def test_redis_killed_mid_run(
    tiny_model: LoadedModel, prompt: list[int], reference: tuple[int, ...], own_redis: RedisProcess
) -> None:
    """With Redis dead after warming it, requests finish with the reference tokens."""
    provider = _provider(
        tiny_model, WarehouseConfig(dram_bytes=0, redis_url=own_redis.url, redis_timeout_s=0.2)
    )
    _generate(tiny_model, provider, [prompt])
    own_redis.stop()
    for _ in range(2):
        done = _generate(tiny_model, provider, [prompt])[0]
        assert (done.cached_tokens, done.token_ids) == (0, reference)
    assert provider.store.stats.snapshot().tiers["redis"].errors >= 1
    provider.close()


def test_prefill_speed_measured(tiny_model: LoadedModel, prompt: list[int]) -> None:
    """A cold request feeds the load-or-recompute decision a prefill time per token."""
    provider = _provider(tiny_model, WarehouseConfig(dram_bytes=1 << 26))
    assert provider.store.decider.prefill_s_per_token is None
    _generate(tiny_model, provider, [prompt])
    measured = provider.store.decider.prefill_s_per_token
    assert measured is not None and measured > 0
    provider.close()


def test_full_write_queue_drops_and_counts(tiny_model: LoadedModel, prompt: list[int]) -> None:
    """With a one-block queue and no writer draining it, extra blocks are dropped and counted."""
    layout = ModelRunner(tiny_model).layout(CONFIG.block_tokens)
    store = build_store(WarehouseConfig(dram_bytes=1 << 26), fingerprint=tiny_model.fingerprint)
    provider = WarehousePrefixProvider(store, layout, AdapterConfig(write_queue_blocks=1))
    provider._ensure_writer = lambda: None  # type: ignore[method-assign]  # writer never starts
    core = EngineCore(tiny_model, CONFIG, prefix_provider=provider)
    core.add_request("r", prompt, GREEDY)
    _run(core)
    # prompt done: 7 blocks, 1 queued, 6 dropped; finished (133 tokens, 8 blocks): 7 dropped
    assert store.stats.snapshot().writes_dropped == 13


def test_build_prefix_provider_from_spec(tiny_model: LoadedModel, prompt: list[int]) -> None:
    """The serve-side factory reads a spec string and produces a working provider."""
    provider = build_prefix_provider(
        "dram=64MiB,tenant=acme,isolation=shared", tiny_model, block_tokens=16
    )
    assert provider.hasher.tenant == "acme"
    assert provider.config.isolation == "shared"
    assert provider.layout.block_tokens == 16
    _generate(tiny_model, provider, [prompt])
    assert _generate(tiny_model, provider, [prompt])[0].cached_tokens == 112
    provider.close()


def test_metrics_on_a_registry(tiny_model: LoadedModel, prompt: list[int]) -> None:
    """register_metrics exposes the warehouse counters on the given registry."""
    provider = build_prefix_provider("dram=64MiB", tiny_model, block_tokens=16)
    registry = CollectorRegistry()
    provider.register_metrics(registry)
    _generate(tiny_model, provider, [prompt])
    _generate(tiny_model, provider, [prompt])
    text = generate_latest(registry).decode()
    assert 'tokenwatt_warehouse_hits_total{tier="dram"} 7.0' in text
    assert "tokenwatt_warehouse_tokens_served_total 112.0" in text
    provider.close()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_kv_round_trip_is_bit_exact(dtype: torch.dtype) -> None:
    """Blocks stored and loaded come back bit for bit, bfloat16 included (numpy lacks it)."""
    layout = KVLayout(num_layers=2, num_kv_heads=2, head_dim=4, dtype=dtype, block_tokens=4,
                      fingerprint=f"fake-{dtype}")  # fmt: skip
    store = build_store(WarehouseConfig(dram_bytes=1 << 20), fingerprint=layout.fingerprint)
    provider = WarehousePrefixProvider(store, layout)
    gen = torch.Generator().manual_seed(0)
    kv = PrefixKV(
        keys=tuple(torch.randn(2, 8, 4, generator=gen).to(dtype) for _ in range(2)),
        values=tuple(torch.randn(2, 8, 4, generator=gen).to(dtype) for _ in range(2)),
    )
    tokens = list(range(8))
    provider.on_blocks_ready(tokens, kv)
    assert provider.flush()
    got = provider.lookup([*tokens, 99])
    assert got is not None and got.num_tokens == 8
    for a, b in zip((*got.keys, *got.values), (*kv.keys, *kv.values), strict=True):
        assert a.dtype == dtype
        assert torch.equal(a.view(torch.uint8), b.contiguous().view(torch.uint8))
    provider.close()

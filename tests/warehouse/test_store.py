"""TieredStore: longest verified prefix across tiers, promotion, admission, failure handling."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from tokenwatt.errors import ConfigError
from tokenwatt.warehouse.codec import encode_block
from tokenwatt.warehouse.disk import DiskTier
from tokenwatt.warehouse.faults import FaultyTier
from tokenwatt.warehouse.keys import BlockHasher, fingerprint_digest
from tokenwatt.warehouse.memory import MemoryTier
from tokenwatt.warehouse.policies import SeenAtLeast
from tokenwatt.warehouse.store import StoreConfig, TierConfig, TieredStore

from .conftest import as_version_1

KV = Callable[..., list[np.ndarray]]
HASHER = BlockHasher("m", block_tokens=4)
KEYS = HASHER.keys(range(16))  # 4 blocks


class FakeClock:
    """A settable monotonic clock."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class RecordingTier(MemoryTier):
    """A DRAM tier that records which batched read each call was (``contains`` or ``get``)."""

    def __init__(self) -> None:
        super().__init__(1 << 20, name="remote")
        self.reads: list[str] = []

    def contains_many(self, keys: Sequence[str]) -> list[bool]:
        self.reads.append("contains")
        return super().contains_many(keys)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        self.reads.append("get")
        return super().get_many(keys)


def _blocks(make_kv: KV, keys: list[str]) -> list[tuple[str, list[np.ndarray]]]:
    return [(k, make_kv(i)) for i, k in enumerate(keys)]


def test_needs_a_tier() -> None:
    """An empty tier list is a configuration error."""
    with pytest.raises(ConfigError, match="at least one tier"):
        TieredStore([], fingerprint="m")


def test_duplicate_tier_names_rejected() -> None:
    """Two tiers with one name would mix their stats: rejected."""
    with pytest.raises(ConfigError, match="unique"):
        TieredStore([MemoryTier(1), MemoryTier(1)], fingerprint="m")


def test_round_trip_through_store(make_kv: KV) -> None:
    """Stored blocks load back in order with identical tensors."""
    store = TieredStore([MemoryTier(1 << 20)], fingerprint="m")
    store.put(_blocks(make_kv, KEYS), block_tokens=4)
    loaded = store.load(KEYS, block_tokens=4)
    assert loaded.tokens == 16
    assert loaded.tiers == ("dram",) * 4
    np.testing.assert_array_equal(loaded.blocks[2].arrays[1], make_kv(2)[1])


def test_prefix_stops_at_first_miss(make_kv: KV) -> None:
    """With block 1 missing, only block 0 loads even though blocks 2 and 3 are stored."""
    store = TieredStore([MemoryTier(1 << 20)], fingerprint="m")
    store.put([b for i, b in enumerate(_blocks(make_kv, KEYS)) if i != 1], block_tokens=4)
    loaded = store.load(KEYS, block_tokens=4)
    assert (len(loaded.blocks), loaded.available_blocks) == (1, 1)


def test_prefix_assembled_across_tiers_and_promoted(make_kv: KV, tmp_path: Path) -> None:
    """Blocks 0-1 in DRAM, 2-3 only on disk: all four load, and 2-3 are promoted to DRAM."""
    dram = MemoryTier(1 << 20)
    disk = DiskTier(tmp_path, 1 << 20)
    store = TieredStore([dram, disk], fingerprint="m")
    store.put(_blocks(make_kv, KEYS), block_tokens=4)
    dram.delete(KEYS[2])
    dram.delete(KEYS[3])
    loaded = store.load(KEYS, block_tokens=4)
    assert loaded.tiers == ("dram", "dram", "disk", "disk")
    assert dram.contains_many(KEYS) == [True] * 4


def test_admission_filter_on_disk(make_kv: KV, tmp_path: Path) -> None:
    """With SeenAtLeast(2) on disk, the first put reaches DRAM only, the second reaches disk."""
    disk = DiskTier(tmp_path, 1 << 20)
    store = TieredStore(
        [TierConfig(MemoryTier(1 << 20)), TierConfig(disk, admission=SeenAtLeast(2))],
        fingerprint="m",
    )
    store.put(_blocks(make_kv, KEYS[:1]), block_tokens=4)
    assert not disk.contains(KEYS[0])
    store.put(_blocks(make_kv, KEYS[:1]), block_tokens=4)
    assert disk.contains(KEYS[0])


def test_corrupt_block_is_miss_and_dropped(make_kv: KV, tmp_path: Path) -> None:
    """A flipped byte in block 1 on disk ends the prefix at 1 block and deletes the bad file."""
    disk = DiskTier(tmp_path, 1 << 20)
    store = TieredStore([disk], fingerprint="m")
    store.put(_blocks(make_kv, KEYS), block_tokens=4)
    path = disk.path_of(KEYS[1])
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    loaded = store.load(KEYS, block_tokens=4)
    assert len(loaded.blocks) == 1
    assert not disk.contains(KEYS[1]) and not path.exists()
    assert store.stats.snapshot().tiers["disk"].rejected == 1


def test_previous_format_block_is_miss_then_replaced(make_kv: KV) -> None:
    """A block written in format 1 (CRC-32) ends the prefix, is dropped, and the recomputed
    block written over it loads."""
    dram = MemoryTier(1 << 20)
    store = TieredStore([TierConfig(dram, verify_payload=True)], fingerprint="m")
    store.put(_blocks(make_kv, KEYS), block_tokens=4)
    current = dram.get(KEYS[1])
    assert current is not None
    dram.delete(KEYS[1])
    dram.put(KEYS[1], as_version_1(current))
    loaded = store.load(KEYS, block_tokens=4)
    assert (len(loaded.blocks), loaded.available_blocks) == (1, 4)
    assert store.stats.snapshot().tiers["dram"].rejected == 1
    assert not dram.contains(KEYS[1])
    store.put(_blocks(make_kv, KEYS[1:2]), block_tokens=4)
    assert len(store.load(KEYS, block_tokens=4).blocks) == 4


def test_other_model_block_is_miss(make_kv: KV) -> None:
    """A block written under another model fingerprint (same key) is rejected, not served."""
    dram = MemoryTier(1 << 20)
    TieredStore([dram], fingerprint="other").put(_blocks(make_kv, KEYS[:1]), block_tokens=4)
    store = TieredStore([dram], fingerprint="m")
    assert store.load(KEYS, block_tokens=4).blocks == ()
    assert store.stats.snapshot().tiers["dram"].rejected == 1


def test_wrong_block_size_is_miss(make_kv: KV) -> None:
    """A block covering a different token count than expected is rejected."""
    store = TieredStore([MemoryTier(1 << 20)], fingerprint="m")
    store.put(_blocks(make_kv, KEYS[:1]), block_tokens=4)
    assert store.load(KEYS, block_tokens=8).blocks == ()


def test_failing_tier_skipped_with_backoff(make_kv: KV) -> None:
    """A failing tier is called once, skipped during its backoff, and retried after it."""
    clock = FakeClock()
    inner = MemoryTier(1 << 20)
    faulty = FaultyTier(inner, name="remote")
    store = TieredStore(
        [TierConfig(MemoryTier(0)), TierConfig(faulty)],
        fingerprint="m",
        config=StoreConfig(backoff_initial_s=2.0, backoff_max_s=8.0),
        clock=clock,
    )
    store.put(_blocks(make_kv, KEYS), block_tokens=4)
    faulty.failing = True
    assert store.load(KEYS, block_tokens=4).blocks == ()
    calls = faulty.calls
    assert store.load(KEYS, block_tokens=4).blocks == ()
    assert faulty.calls == calls  # skipped: breaker open
    assert not store.tier_available("remote")
    clock.now += 2.0
    assert store.load(KEYS, block_tokens=4).blocks == ()  # retried, failed again: 4 s backoff
    clock.now += 2.0
    assert not store.tier_available("remote")
    faulty.failing = False
    clock.now += 2.0
    assert len(store.load(KEYS, block_tokens=4).blocks) == 4
    assert store.tier_available("remote")


def test_slow_tier_times_out_without_hanging(make_kv: KV) -> None:
    """A tier slower than its timeout costs one timeout, then is skipped."""
    slow = FaultyTier(MemoryTier(1 << 20), name="slow")
    store = TieredStore(
        [TierConfig(MemoryTier(0)), TierConfig(slow, timeout_s=0.05)],
        fingerprint="m",
        config=StoreConfig(backoff_initial_s=60.0, backoff_max_s=60.0),
    )
    store.put(_blocks(make_kv, KEYS), block_tokens=4)
    slow.delay_s = 2.0
    start = time.monotonic()
    assert store.load(KEYS, block_tokens=4).blocks == ()
    assert store.load(KEYS, block_tokens=4).blocks == ()
    store.put(_blocks(make_kv, KEYS), block_tokens=4)
    assert time.monotonic() - start < 1.5
    assert store.stats.snapshot().tiers["slow"].errors == 1
    store.close()


def test_decision_limits_load(make_kv: KV) -> None:
    """When loading a block costs more than recomputing it, nothing is loaded."""
    store = TieredStore([MemoryTier(1 << 20)], fingerprint="m")
    store.put(_blocks(make_kv, KEYS), block_tokens=4)
    store.decider.observe_prefill(tokens=1000, seconds=0.001)  # 1 us per token: 4 us per block
    store.decider.observe_load("dram", blocks=1, nbytes=100, seconds=1.0)
    loaded = store.load(KEYS, block_tokens=4)
    assert (len(loaded.blocks), loaded.available_blocks) == (0, 4)
    assert len(store.load(KEYS, block_tokens=4, decide=False).blocks) == 4


def test_stats_count_tokens_and_energy(make_kv: KV) -> None:
    """Tokens served and estimated joules saved follow the measured prefill energy."""
    store = TieredStore([MemoryTier(1 << 20)], fingerprint="m")
    store.put(_blocks(make_kv, KEYS), block_tokens=4)
    store.decider.observe_prefill(tokens=10, seconds=1.0, energy_j=5.0, energy_source="rapl")
    store.load(KEYS, block_tokens=4)
    snap = store.stats.snapshot()
    assert (snap.tokens_served, snap.prefill_tokens_avoided, snap.lookups) == (16, 16, 1)
    assert snap.energy_saved_j == pytest.approx(8.0)
    assert snap.energy_basis == (
        "estimated:prefill-energy-model (0.5 J/token + 0 J/token per position; from rapl)"
    )
    assert snap.tiers["dram"].hits == 4


def test_planned_dram_block_pinned_against_promotion(make_kv: KV, tmp_path: Path) -> None:
    """Block 0 from disk is not promoted over block 1, which DRAM holds for the same load."""
    one_block = len(encode_block(KEYS[0], fingerprint_digest("m"), 4, make_kv(0)))
    dram = MemoryTier(one_block)
    store = TieredStore([dram, DiskTier(tmp_path, 1 << 20)], fingerprint="m")
    store.put(_blocks(make_kv, KEYS[:2]), block_tokens=4)  # DRAM keeps only block 1
    assert dram.contains_many(KEYS[:2]) == [False, True]
    loaded = store.load(KEYS[:2], block_tokens=4)
    assert loaded.tiers == ("disk", "dram")
    assert dram.contains_many(KEYS[:2]) == [False, True]


def test_check_tiers_names_each_failing_tier_and_why(tmp_path: Path) -> None:
    """check_tiers tries every tier once: a healthy tier is absent, a failing one maps to its
    reason and is then skipped like any failed tier."""
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    faulty = FaultyTier(MemoryTier(1 << 20), name="remote")
    faulty.failing = True
    store = TieredStore(
        [TierConfig(MemoryTier(1 << 20)), TierConfig(DiskTier(not_a_dir, 1 << 20)), faulty],
        fingerprint="m",
    )
    problems = store.check_tiers()
    assert sorted(problems) == ["disk", "remote"]
    assert "cannot use" in problems["disk"] and "pick a writable directory" in problems["disk"]
    assert not store.tier_available("disk")
    assert store.tier_available("dram")
    store.close()


@pytest.mark.parametrize(
    ("fetch_on_probe", "reads"), [(False, ["contains", "get"]), (True, ["get"])]
)
def test_fetch_on_probe_loads_in_one_call(
    make_kv: KV, fetch_on_probe: bool, reads: list[str]
) -> None:
    """A fetch_on_probe tier is probed with get_many and the values are used for the load: one
    call per load instead of contains_many then get_many, and the same blocks."""
    remote = RecordingTier()
    store = TieredStore([TierConfig(remote, fetch_on_probe=fetch_on_probe)], fingerprint="m")
    store.put(_blocks(make_kv, KEYS), block_tokens=4)
    loaded = store.load(KEYS, block_tokens=4)
    assert remote.reads == reads
    assert loaded.tiers == ("remote",) * 4
    np.testing.assert_array_equal(loaded.blocks[3].arrays[2], make_kv(3)[2])
    assert store.stats.snapshot().tiers["remote"].hits == 4


def test_fetch_on_probe_prefix_stops_at_gap(make_kv: KV) -> None:
    """Fetched while probing, blocks after a missing one are still not served."""
    remote = RecordingTier()
    store = TieredStore([TierConfig(remote, fetch_on_probe=True)], fingerprint="m")
    store.put(_blocks(make_kv, KEYS), block_tokens=4)
    remote.delete(KEYS[2])
    loaded = store.load(KEYS, block_tokens=4)
    assert (len(loaded.blocks), loaded.available_blocks, remote.reads) == (2, 2, ["get"])


def test_fetch_on_probe_only_checks_existence_when_recompute_is_cheaper(make_kv: KV) -> None:
    """When loading from the tier is judged slower than recomputing, its probe fetches nothing
    (contains_many), and nothing is loaded."""
    remote = RecordingTier()
    store = TieredStore([TierConfig(remote, fetch_on_probe=True)], fingerprint="m")
    store.put(_blocks(make_kv, KEYS), block_tokens=4)
    store.decider.observe_prefill(tokens=1000, seconds=0.001)  # 4 us per block
    store.decider.observe_load("remote", blocks=1, nbytes=100, seconds=1.0)
    loaded = store.load(KEYS, block_tokens=4)
    assert (len(loaded.blocks), loaded.available_blocks, remote.reads) == (0, 4, ["contains"])


def test_fetch_on_probe_times_load_per_block(make_kv: KV) -> None:
    """The fetch made while probing counts as the tier's load time: the decider learns it."""
    remote = FaultyTier(MemoryTier(1 << 20), name="remote")
    store = TieredStore([TierConfig(remote, fetch_on_probe=True)], fingerprint="m")
    store.put(_blocks(make_kv, KEYS), block_tokens=4)
    remote.delay_s = 0.2
    store.load(KEYS, block_tokens=4)
    per_block = store.decider.load_s_per_block("remote")
    assert per_block is not None and 0.05 <= per_block < 0.1  # 0.2 s over 4 blocks, plus decode


def test_corrupt_prefetched_block_is_miss_and_dropped(make_kv: KV) -> None:
    """A damaged block fetched while probing is verified like any other: the prefix ends before
    it, it is counted as rejected and deleted."""
    remote = RecordingTier()
    store = TieredStore([TierConfig(remote, fetch_on_probe=True)], fingerprint="m")
    store.put(_blocks(make_kv, KEYS), block_tokens=4)
    good = remote.get(KEYS[2])
    assert good is not None
    damaged = bytearray(good)
    damaged[-3] ^= 0x10
    remote.delete(KEYS[2])
    remote.put(KEYS[2], bytes(damaged))
    loaded = store.load(KEYS, block_tokens=4)
    assert len(loaded.blocks) == 2
    assert store.stats.snapshot().tiers["remote"].rejected == 1
    assert not remote.contains(KEYS[2])


def test_slow_fetch_on_probe_tier_times_out_then_is_skipped(make_kv: KV) -> None:
    """Fetching while probing keeps the timeout and the breaker: one timeout, then skipped."""
    slow = FaultyTier(MemoryTier(1 << 20), name="slow")
    store = TieredStore(
        [TierConfig(MemoryTier(0)), TierConfig(slow, timeout_s=0.05, fetch_on_probe=True)],
        fingerprint="m",
        config=StoreConfig(backoff_initial_s=60.0, backoff_max_s=60.0),
    )
    store.put(_blocks(make_kv, KEYS), block_tokens=4)
    slow.delay_s = 2.0
    start = time.monotonic()
    assert store.load(KEYS, block_tokens=4).blocks == ()
    assert store.load(KEYS, block_tokens=4).blocks == ()
    assert time.monotonic() - start < 1.5
    counters = store.stats.snapshot().tiers["slow"]
    assert (counters.errors, counters.skipped) == (1, 1)
    store.close()

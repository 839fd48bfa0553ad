"""Disk tier: atomic files, byte budget, an index rebuilt and checked at open."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tokenwatt.errors import WarehouseError
from tokenwatt.warehouse.codec import encode_block
from tokenwatt.warehouse.disk import DiskTier
from tokenwatt.warehouse.keys import BlockHasher, fingerprint_digest
from tokenwatt.warehouse.store import TieredStore

from .conftest import as_version_1

FP = fingerprint_digest("m")
A, B, C = "aa" * 16, "bb" * 16, "cc" * 16
KV = Callable[..., list[np.ndarray]]


def _block(key: str, make_kv: KV, seed: int = 0) -> bytes:
    return encode_block(key, FP, 4, make_kv(seed))


def test_constructor_does_no_io(tmp_path: Path) -> None:
    """Creating a DiskTier does not touch the directory until first use."""
    DiskTier(tmp_path / "d", 1000)
    assert not (tmp_path / "d").exists()


def test_index_survives_restart(tmp_path: Path, make_kv: KV) -> None:
    """Blocks written by one DiskTier are found by a new one on the same directory."""
    first = DiskTier(tmp_path, 1 << 20)
    first.put(A, _block(A, make_kv))
    first.put(B, _block(B, make_kv))
    first.close()
    second = DiskTier(tmp_path, 1 << 20).open()
    assert sorted(second.iter_keys()) == [A, B]
    assert second.get(A) == _block(A, make_kv)
    assert second.rejected_at_open == 0


def test_bad_files_removed_at_open(tmp_path: Path, make_kv: KV) -> None:
    """Truncated, misnamed, garbage and leftover temporary files are removed at open."""
    t = DiskTier(tmp_path, 1 << 20)
    for key in (A, B, C):
        t.put(key, _block(key, make_kv))
    t.close()
    a_path, b_path, c_path = (t.path_of(k) for k in (A, B, C))
    a_path.write_bytes(a_path.read_bytes()[:-3])  # truncated
    b_path.write_bytes(_block(C, make_kv))  # intact block under the wrong name
    garbage = t.path_of("dd" * 16)
    garbage.parent.mkdir(exist_ok=True)
    garbage.write_bytes(b"junk")
    (tmp_path / "tmp" / "x.tmp").write_bytes(b"half a block")
    reopened = DiskTier(tmp_path, 1 << 20).open()
    assert list(reopened.iter_keys()) == [C]
    assert reopened.rejected_at_open == 4
    assert not a_path.exists() and not b_path.exists() and c_path.exists()


def test_previous_format_file_removed_at_open(tmp_path: Path, make_kv: KV) -> None:
    """A file of format 1 (CRC-32 payload checksum) is a stale format: removed at open."""
    t = DiskTier(tmp_path, 1 << 20)
    t.put(A, _block(A, make_kv))
    t.put(B, _block(B, make_kv))
    t.close()
    t.path_of(A).write_bytes(as_version_1(_block(A, make_kv)))
    reopened = DiskTier(tmp_path, 1 << 20).open()
    assert list(reopened.iter_keys()) == [B]
    assert reopened.bad_files == [(t.path_of(A), "block format version 1, this build reads 2")]
    assert not t.path_of(A).exists()


def test_budget_evicts_oldest(tmp_path: Path, make_kv: KV) -> None:
    """With room for two blocks, writing a third evicts the least recently used file."""
    size = len(_block(A, make_kv))
    t = DiskTier(tmp_path, 2 * size)
    t.put(A, _block(A, make_kv))
    t.put(B, _block(B, make_kv))
    t.get(A)
    t.put(C, _block(C, make_kv))
    assert t.contains_many([A, B, C]) == [True, False, True]
    assert not t.path_of(B).exists()
    assert t.usage().used_bytes == 2 * size


def test_smaller_budget_at_reopen_evicts(tmp_path: Path, make_kv: KV) -> None:
    """Reopening with a budget below what is stored evicts down to the budget."""
    t = DiskTier(tmp_path, 1 << 20)
    for key in (A, B, C):
        t.put(key, _block(key, make_kv))
    t.close()
    size = len(_block(A, make_kv))
    assert DiskTier(tmp_path, size).usage().blocks == 1


def test_no_temporary_files_left(tmp_path: Path, make_kv: KV) -> None:
    """After puts, the temporary directory is empty (writes were renamed into place)."""
    t = DiskTier(tmp_path, 1 << 20)
    t.put(A, _block(A, make_kv))
    assert list((tmp_path / "tmp").iterdir()) == []


def test_file_deleted_behind_its_back(tmp_path: Path, make_kv: KV) -> None:
    """A file removed by someone else reads as a miss, and leaves the index."""
    t = DiskTier(tmp_path, 1 << 20)
    t.put(A, _block(A, make_kv))
    t.path_of(A).unlink()
    assert t.get(A) is None
    assert not t.contains(A)


def test_clear(tmp_path: Path, make_kv: KV) -> None:
    """clear() removes every block file and returns the count."""
    t = DiskTier(tmp_path, 1 << 20)
    t.put(A, _block(A, make_kv))
    t.put(B, _block(B, make_kv))
    assert t.clear() == 2
    assert t.usage().blocks == 0


def test_unusable_directory(tmp_path: Path) -> None:
    """A path under a regular file gives a clear WarehouseError."""
    (tmp_path / "file").write_text("x")
    with pytest.raises(WarehouseError, match="pick a writable directory"):
        DiskTier(tmp_path / "file" / "sub", 100).open()


def test_non_hex_key_rejected(tmp_path: Path) -> None:
    """Keys must be lowercase hex (they become file names)."""
    with pytest.raises(WarehouseError, match="hex"):
        DiskTier(tmp_path, 100).put("../../etc", b"x")


def test_recency_survives_restart(tmp_path: Path, make_kv: KV) -> None:
    """A block read before a restart counts as recently used after it: B, not A, is evicted."""
    size = len(_block(A, make_kv))
    first = DiskTier(tmp_path, 2 * size)
    first.put(A, _block(A, make_kv))
    first.put(B, _block(B, make_kv))
    os.utime(first.path_of(A), (1_000_000, 1_000_000))  # written long ago...
    os.utime(first.path_of(B), (2_000_000, 2_000_000))
    first.get(A)  # ...but read just now
    first.close()
    second = DiskTier(tmp_path, 2 * size)
    second.put(C, _block(C, make_kv))
    assert second.contains_many([A, B, C]) == [True, False, True]


def test_reads_refresh_mtime_at_most_once_a_minute(
    tmp_path: Path, make_kv: KV, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first read of a block refreshes its file's mtime; reads within the next minute do not
    write metadata again; once the minute has passed, a read refreshes it again."""
    t = DiskTier(tmp_path, 1 << 20)
    t.put(A, _block(A, make_kv))
    path = t.path_of(A)
    os.utime(path, (1_000_000, 1_000_000))
    assert t.get(A) == _block(A, make_kv)
    assert path.stat().st_mtime > 1_000_000
    os.utime(path, (1_000_000, 1_000_000))
    assert t.get_many([A, B]) == [_block(A, make_kv), None]
    assert path.stat().st_mtime == 1_000_000
    monkeypatch.setattr("tokenwatt.warehouse.disk._MTIME_REFRESH_S", 0.0)
    t.get(A)
    assert path.stat().st_mtime > 1_000_000


def test_inspection_reads_leave_mtime_alone(tmp_path: Path, make_kv: KV) -> None:
    """A tier opened with repair=False (warehouse stats / verify) reads without touching files."""
    DiskTier(tmp_path, 1 << 20).put(A, _block(A, make_kv))
    os.utime(DiskTier(tmp_path, 1).path_of(A), (1_000_000, 1_000_000))
    inspect = DiskTier(tmp_path, 1 << 20, repair=False)
    assert inspect.get(A) == _block(A, make_kv)
    assert inspect.path_of(A).stat().st_mtime == 1_000_000


def test_file_truncated_behind_its_back_is_rejected(tmp_path: Path, make_kv: KV) -> None:
    """A file cut short after the index was built reads short (the index's size is only a
    hint) and fails verification in the store: the prefix ends there."""
    keys = BlockHasher("m", block_tokens=4).keys(range(12))
    disk = DiskTier(tmp_path, 1 << 20)
    store = TieredStore([disk], fingerprint="m")
    store.put([(k, make_kv(i)) for i, k in enumerate(keys)], block_tokens=4)
    path = disk.path_of(keys[1])
    path.write_bytes(path.read_bytes()[:-100])
    assert len(store.load(keys, block_tokens=4).blocks) == 1
    assert store.stats.snapshot().tiers["disk"].rejected == 1
    assert not path.exists()

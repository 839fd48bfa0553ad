"""Offline tier maintenance: summary, verification, clearing."""

from __future__ import annotations

import numpy as np

from tokenwatt.warehouse.codec import encode_block
from tokenwatt.warehouse.keys import fingerprint_digest
from tokenwatt.warehouse.maintenance import clear_tier, summarize_tier, verify_tier
from tokenwatt.warehouse.memory import MemoryTier

A, B = "aa" * 16, "bb" * 16
FP = fingerprint_digest("m")


def _block(key: str, tokens: int = 4) -> bytes:
    return encode_block(key, FP, tokens, [np.zeros((1, tokens, 2), dtype=np.float32)])


def test_summary_counts_sizes_and_models() -> None:
    """The summary groups blocks by token count and fingerprint."""
    tier = MemoryTier(1 << 20)
    tier.put(A, _block(A, 4))
    tier.put(B, _block(B, 8))
    s = summarize_tier(tier)
    assert (s.blocks, s.token_counts, s.fingerprints) == (2, {4: 1, 8: 1}, {FP.hex(): 2})


def test_verify_finds_and_removes_garbage() -> None:
    """A value that is not a block is reported, and removed with remove=True."""
    tier = MemoryTier(1 << 20)
    tier.put(A, _block(A))
    tier.put(B, b"garbage, not a tokenwatt block")
    report = verify_tier(tier, remove=True)
    assert (report.checked, report.ok, report.removed) == (2, 1, 1)
    assert report.bad[0].key == B
    assert "bad magic" in report.bad[0].reason
    assert list(tier.iter_keys()) == [A]


def test_clear_counts() -> None:
    """clear_tier deletes and counts every block."""
    tier = MemoryTier(1 << 20)
    tier.put(A, _block(A))
    tier.put(B, _block(B))
    assert clear_tier(tier) == 2
    assert tier.usage().blocks == 0

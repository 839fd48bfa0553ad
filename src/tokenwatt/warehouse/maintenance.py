"""Offline maintenance of a tier: summary, full verification, clearing (the CLI's library half)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from .codec import BlockError, decode_block
from .disk import DiskTier
from .redis_tier import RedisTier
from .tier import Tier

__all__ = ["BadBlock", "TierSummary", "VerifyReport", "clear_tier", "summarize_tier", "verify_tier"]

_READ_BATCH = 256
"""Blocks read per ``get_many`` call: one Redis round trip each, at most ~256 blocks in memory."""


@dataclass(frozen=True)
class BadBlock:
    """One block (or stray file) that failed verification."""

    key: str = ""
    """Block key, or a file path for stray disk files."""
    reason: str = ""
    """Why it is unusable."""


@dataclass(frozen=True)
class VerifyReport:
    """Outcome of :func:`verify_tier`."""

    checked: int = 0
    """Blocks (and stray files) examined."""
    ok: int = 0
    """Blocks whose header, key and payload checksum are all correct."""
    bad: tuple[BadBlock, ...] = ()
    """Everything that failed, with the reason."""
    removed: int = 0
    """Bad blocks deleted (only with ``remove=True``)."""


@dataclass(frozen=True)
class TierSummary:
    """What a tier holds."""

    blocks: int = 0
    """Blocks stored."""
    used_bytes: int = 0
    """Bytes stored."""
    capacity_bytes: int | None = None
    """Byte budget, if the tier has one."""
    token_counts: dict[int, int] = field(default_factory=dict)
    """Blocks per block size in tokens (from the headers; only when ``read_headers``)."""
    fingerprints: dict[str, int] = field(default_factory=dict)
    """Blocks per model fingerprint digest (hex; only when ``read_headers``)."""


def summarize_tier(tier: Tier, *, read_headers: bool = True) -> TierSummary:
    """Counts, bytes and (reading every header) block sizes and model fingerprints."""
    usage = tier.usage()
    tokens: Counter[int] = Counter()
    fps: Counter[str] = Counter()
    if read_headers:
        for _, data in _stored_blocks(tier):
            try:
                header = decode_block(data, verify_payload=False).header
            except BlockError:
                continue
            tokens[header.token_count] += 1
            fps[header.fingerprint.hex()] += 1
    return TierSummary(
        usage.blocks, usage.used_bytes, usage.capacity_bytes, dict(tokens), dict(fps)
    )


def verify_tier(tier: Tier, *, remove: bool = False) -> VerifyReport:
    """Check every block's header, key and payload checksum; with ``remove``, delete bad ones.

    For a :class:`DiskTier` opened with ``repair=False``, files its index rejected at open are
    reported (and removed with ``remove``) too.
    """
    bad: list[BadBlock] = []
    ok = 0
    removed = 0
    if isinstance(tier, DiskTier):
        tier.open()
        for path, reason in tier.bad_files:
            bad.append(BadBlock(str(path), reason))
            if remove and path.exists():
                path.unlink()
                removed += 1
    for key, data in _stored_blocks(tier):
        try:
            decode_block(data, key=key)
        except BlockError as exc:
            bad.append(BadBlock(key, str(exc)))
            if remove:
                tier.delete(key)
                removed += 1
            continue
        ok += 1
    return VerifyReport(checked=ok + len(bad), ok=ok, bad=tuple(bad), removed=removed)


def _stored_blocks(tier: Tier) -> Iterator[tuple[str, bytes]]:
    """Every (key, bytes) of ``tier``, read in batches; keys gone meanwhile (expired, evicted)
    are skipped."""
    keys = list(tier.iter_keys())
    for start in range(0, len(keys), _READ_BATCH):
        batch = keys[start : start + _READ_BATCH]
        for key, data in zip(batch, tier.get_many(batch), strict=True):
            if data is not None:
                yield key, data


def clear_tier(tier: Tier) -> int:
    """Delete every block of ``tier``; returns how many were deleted."""
    if isinstance(tier, RedisTier):
        return tier.clear()  # pipelined: one round trip per thousand keys, not one per key
    count = 0
    for key in list(tier.iter_keys()):
        tier.delete(key)
        count += 1
    return count

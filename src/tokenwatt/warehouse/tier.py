"""The ``Tier`` seam: a byte store over hex block keys, with batched forms.

Tiers store encoded blocks as opaque bytes; verification is the store's job (see codec). The
batched methods of :class:`TierBase` loop over the single-key ones; remote tiers override them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["PinnableTier", "Tier", "TierBase", "TierUsage"]


@dataclass(frozen=True)
class TierUsage:
    """How full a tier is."""

    blocks: int = 0
    """Blocks stored."""
    used_bytes: int = 0
    """Bytes stored (encoded blocks)."""
    capacity_bytes: int | None = None
    """Byte budget, or None when the tier has none of its own (e.g. Redis maxmemory)."""


@runtime_checkable
class Tier(Protocol):
    """A byte store over block keys. Implementations are thread-safe."""

    name: str
    """Short label used in stats and metrics (``dram``, ``disk``, ``redis``)."""

    def contains(self, key: str) -> bool:
        """Whether ``key`` is stored (a hint: it may be evicted before a get)."""
        ...

    def get(self, key: str) -> bytes | None:
        """The bytes stored under ``key``, or None."""
        ...

    def put(self, key: str, value: bytes, *, cost: float = 0.0) -> None:
        """Store ``value`` (``cost``: recompute cost hint in seconds for eviction; 0 if unknown)."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        ...

    def contains_many(self, keys: Sequence[str]) -> list[bool]:
        """``contains`` for each key, in order."""
        ...

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """``get`` for each key, in order."""
        ...

    def put_many(self, items: Sequence[tuple[str, bytes, float]]) -> None:
        """``put`` for each (key, value, cost)."""
        ...

    def iter_keys(self) -> Iterator[str]:
        """Every stored key (for stats, verify and clear; order unspecified)."""
        ...

    def usage(self) -> TierUsage:
        """Blocks and bytes stored."""
        ...

    def close(self) -> None:
        """Release files, sockets and threads; the tier is unusable afterwards."""
        ...


@runtime_checkable
class PinnableTier(Protocol):
    """A tier that can keep blocks from eviction while a request uses them (e.g. DRAM)."""

    def pin(self, key: str) -> bool:
        """Keep ``key`` until a matching ``unpin``; False if it is not stored."""
        ...

    def unpin(self, key: str) -> None:
        """Release one ``pin`` of ``key``."""
        ...


class TierBase:
    """Batched methods as loops over single-key ones; subclasses implement the rest."""

    name = "tier"

    def contains(self, key: str) -> bool:
        raise NotImplementedError

    def get(self, key: str) -> bytes | None:
        raise NotImplementedError

    def put(self, key: str, value: bytes, *, cost: float = 0.0) -> None:
        raise NotImplementedError

    def contains_many(self, keys: Sequence[str]) -> list[bool]:
        return [self.contains(k) for k in keys]

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [self.get(k) for k in keys]

    def put_many(self, items: Sequence[tuple[str, bytes, float]]) -> None:
        for key, value, cost in items:
            self.put(key, value, cost=cost)

"""A fault-injecting tier for tests: wraps another tier and makes it slow or failing on demand."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence

from .tier import Tier, TierBase, TierUsage

__all__ = ["FaultyTier", "TierFault"]


class TierFault(ConnectionError):
    """The error a :class:`FaultyTier` raises while ``failing`` is set."""


class FaultyTier(TierBase):
    """Delegates to ``inner``; each call sleeps ``delay_s``, and raises while ``failing``.

    ``calls`` counts the calls that reached this tier (to check that a broken tier is skipped).
    """

    def __init__(
        self, inner: Tier, *, delay_s: float = 0.0, failing: bool = False, name: str | None = None
    ) -> None:
        self.inner = inner
        self.name = name if name is not None else inner.name
        self.delay_s = delay_s
        self.failing = failing
        self.calls = 0
        self._lock = threading.Lock()

    def _enter(self) -> None:
        with self._lock:
            self.calls += 1
        if self.delay_s > 0:
            time.sleep(self.delay_s)
        if self.failing:
            raise TierFault(f"injected fault in tier {self.name}")

    def contains(self, key: str) -> bool:
        self._enter()
        return self.inner.contains(key)

    def contains_many(self, keys: Sequence[str]) -> list[bool]:
        self._enter()
        return self.inner.contains_many(keys)

    def get(self, key: str) -> bytes | None:
        self._enter()
        return self.inner.get(key)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        self._enter()
        return self.inner.get_many(keys)

    def put(self, key: str, value: bytes, *, cost: float = 0.0) -> None:
        self._enter()
        self.inner.put(key, value, cost=cost)

    def put_many(self, items: Sequence[tuple[str, bytes, float]]) -> None:
        self._enter()
        self.inner.put_many(items)

    def delete(self, key: str) -> None:
        self._enter()
        self.inner.delete(key)

    def iter_keys(self) -> Iterator[str]:
        self._enter()
        return self.inner.iter_keys()

    def usage(self) -> TierUsage:
        self._enter()
        return self.inner.usage()

    def close(self) -> None:
        self.inner.close()

"""TieredStore: the longest verified cached prefix across tiers, write-through with admission.

Tiers are tried fastest first; a prefix stops at the first block no tier holds. Loaded blocks
are promoted to the faster tiers. A tier that raises or exceeds its timeout is skipped behind a
circuit breaker with exponential backoff, so a request never fails or hangs on the warehouse.
A remote tier (``fetch_on_probe``) is probed by fetching, so a load costs it one round trip.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from tokenwatt.errors import ConfigError

from .codec import BlockError, DecodedBlock, decode_block, encode_block
from .decision import LoadDecider
from .keys import fingerprint_digest
from .policies import AdmissionPolicy, AlwaysAdmit
from .stats import WarehouseStats
from .tier import PinnableTier, Tier

__all__ = ["LoadedPrefix", "StoreConfig", "TierConfig", "TieredStore"]

log = logging.getLogger(__name__)
T = TypeVar("T")


_HEALTH_KEY = "0" * 32
"""A well-formed key no block has in practice: looked up only to see that a tier answers."""


class _TierUnavailable(Exception):
    """Internal: the call was skipped, raised or timed out (already counted)."""


@dataclass(frozen=True)
class TierConfig:
    """One tier of a store and how the store treats it."""

    tier: Tier
    """The storage."""
    admission: AdmissionPolicy = field(default_factory=AlwaysAdmit)
    """Which new blocks are written to this tier (e.g. ``SeenAtLeast(2)`` for disk)."""
    timeout_s: float | None = None
    """Give up on a call after this long (run in a worker thread); None: call inline."""
    verify_payload: bool = True
    """Check the payload checksum on every read; False only for in-process DRAM (see codec)."""
    promote: bool = True
    """Receive blocks loaded from slower tiers."""
    fetch_on_probe: bool = False
    """Probe with ``get_many`` instead of ``contains_many`` and keep the values for the load, when
    the decider judges every block there worth loading: one round trip instead of two. For
    remote tiers (Redis), where a round trip costs more than an existence check saves."""

    def __post_init__(self) -> None:
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise ConfigError(f"tier timeout_s must be > 0 or None, got {self.timeout_s}")


@dataclass(frozen=True)
class StoreConfig:
    """Failure handling of a :class:`TieredStore`."""

    backoff_initial_s: float = 1.0
    """Skip a failed tier this long after its first failure."""
    backoff_max_s: float = 60.0
    """Upper bound of the doubling backoff."""
    worker_threads: int = 4
    """Threads running calls of tiers that have a timeout."""

    def __post_init__(self) -> None:
        if self.backoff_initial_s <= 0 or self.backoff_max_s < self.backoff_initial_s:
            raise ConfigError("need 0 < backoff_initial_s <= backoff_max_s")
        if self.worker_threads < 1:
            raise ConfigError(f"worker_threads must be >= 1, got {self.worker_threads}")


@dataclass(frozen=True)
class LoadedPrefix:
    """The verified leading blocks found for a request."""

    blocks: tuple[DecodedBlock, ...] = ()
    """Decoded blocks, in prefix order."""
    tiers: tuple[str, ...] = ()
    """Tier each block came from."""
    available_blocks: int = 0
    """Leading blocks the tiers held (more than loaded if recompute was judged cheaper)."""

    @property
    def tokens(self) -> int:
        """Tokens covered by the loaded blocks."""
        return sum(b.header.token_count for b in self.blocks)


@dataclass(frozen=True)
class _Prefetch:
    """What a ``fetch_on_probe`` tier returned while it was probed, kept for the load."""

    values: dict[int, bytes]
    """Block bytes by index into the probed keys (present keys only)."""
    seconds: float
    """How long the fetch took."""


class _Breaker:
    def __init__(self, config: StoreConfig, clock: Callable[[], float]) -> None:
        self._config = config
        self._clock = clock
        self.failures = 0
        self.open_until = 0.0

    def allow(self) -> bool:
        return self._clock() >= self.open_until

    def success(self) -> None:
        self.failures = 0
        self.open_until = 0.0

    def failure(self) -> float:
        self.failures += 1
        c = self._config
        backoff = min(c.backoff_initial_s * 2.0 ** (self.failures - 1), c.backoff_max_s)
        self.open_until = self._clock() + backoff
        return backoff


class TieredStore:
    """Blocks of one model (``fingerprint``) over ``tiers``, fastest first."""

    def __init__(
        self,
        tiers: Sequence[TierConfig | Tier],
        *,
        fingerprint: str,
        config: StoreConfig | None = None,
        decider: LoadDecider | None = None,
        stats: WarehouseStats | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not tiers:
            raise ConfigError("a TieredStore needs at least one tier")
        self.tiers = [t if isinstance(t, TierConfig) else TierConfig(tier=t) for t in tiers]
        names = [t.tier.name for t in self.tiers]
        if len(set(names)) != len(names):
            raise ConfigError(f"tier names must be unique, got {names}")
        self.fingerprint = fingerprint
        self._fp_digest = fingerprint_digest(fingerprint)
        self.config = config if config is not None else StoreConfig()
        self.decider = decider if decider is not None else LoadDecider()
        self.stats = stats if stats is not None else WarehouseStats()
        self._clock = clock
        self._breakers = {n: _Breaker(self.config, clock) for n in names}
        self._lock = threading.Lock()
        self._pool: cf.ThreadPoolExecutor | None = None

    # -- guarded calls ----------------------------------------------------------------------

    def _call(self, tc: TierConfig, fn: Callable[[], T]) -> T:
        name = tc.tier.name
        breaker = self._breakers[name]
        with self._lock:
            if not breaker.allow():
                self.stats.record_tier(name, skipped=1)
                raise _TierUnavailable(name)
        try:
            if tc.timeout_s is None:
                result = fn()
            else:
                result = self._executor().submit(fn).result(timeout=tc.timeout_s)
        except Exception as exc:  # any tier failure is a miss, never a failed request
            with self._lock:
                backoff = breaker.failure()
            self.stats.record_tier(name, errors=1)
            log.warning("warehouse tier %s failed (%s); skipping it for %.1fs", name, exc, backoff)
            raise _TierUnavailable(name) from exc
        with self._lock:
            breaker.success()
        return result

    def _executor(self) -> cf.ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = cf.ThreadPoolExecutor(
                    self.config.worker_threads, thread_name_prefix="tw-warehouse"
                )
            return self._pool

    def tier_available(self, name: str) -> bool:
        """False while ``name``'s circuit breaker is open (it failed recently)."""
        with self._lock:
            return self._breakers[name].allow()

    def check_tiers(self) -> dict[str, str]:
        """Try every tier once with a cheap lookup (under its timeout); ``{name: reason}`` for
        each that failed. A failed tier is skipped and retried later with backoff, as always:
        this only lets a caller say so up front instead of at the first request."""
        problems: dict[str, str] = {}
        for tc in self.tiers:
            try:
                self._call(tc, functools.partial(tc.tier.contains_many, [_HEALTH_KEY]))
            except _TierUnavailable as exc:
                cause = exc.__cause__
                if cause is None:
                    problems[tc.tier.name] = "skipped: it failed recently"
                elif isinstance(cause, cf.TimeoutError):
                    problems[tc.tier.name] = f"no answer within {tc.timeout_s:g} s"
                else:
                    problems[tc.tier.name] = str(cause) or type(cause).__name__
        return problems

    # -- reading ----------------------------------------------------------------------------

    def probe(self, keys: Sequence[str]) -> list[int]:
        """For each leading key some tier holds, the index of the fastest such tier."""
        return self._probe(keys, may_fetch=None)[0]

    def _probe(
        self, keys: Sequence[str], *, may_fetch: Callable[[str, int], bool] | None
    ) -> tuple[list[int], dict[int, _Prefetch]]:
        """``probe``, plus the values of each ``fetch_on_probe`` tier for which
        ``may_fetch(tier name, index of its first key to probe)`` is true (None: fetch none)."""
        found: list[int | None] = [None] * len(keys)
        prefetched: dict[int, _Prefetch] = {}
        for ti, tc in enumerate(self.tiers):
            todo = [i for i, f in enumerate(found) if f is None]
            if not todo:
                break
            wanted = [keys[i] for i in todo]
            fetch = tc.fetch_on_probe and may_fetch is not None and may_fetch(tc.tier.name, todo[0])
            try:
                if fetch:
                    t0 = time.perf_counter()
                    raw = self._call(tc, functools.partial(tc.tier.get_many, wanted))
                    values = {i: v for i, v in zip(todo, raw, strict=True) if v is not None}
                    prefetched[ti] = _Prefetch(values, time.perf_counter() - t0)
                    present = [v is not None for v in raw]
                else:
                    present = self._call(tc, functools.partial(tc.tier.contains_many, wanted))
            except _TierUnavailable:
                continue
            for i, hit in zip(todo, present, strict=True):
                if hit:
                    found[i] = ti
            self.stats.record_tier(tc.tier.name, misses=len(todo) - sum(map(bool, present)))
        out: list[int] = []
        for f in found:
            if f is None:
                break
            out.append(f)
        return out, prefetched

    def load(
        self, keys: Sequence[str], *, block_tokens: int | None = None, decide: bool = True
    ) -> LoadedPrefix:
        """The longest verified prefix of ``keys``; with ``decide``, only what is cheaper to load.

        ``block_tokens`` (if given) is checked against every block header. Never raises for
        tier failures or bad blocks: those end the prefix early.
        """
        start = time.perf_counter()
        plan, prefetched = self._probe(keys, may_fetch=self._fetch_judge(decide, block_tokens))
        available = len(plan)
        if decide and plan and block_tokens is not None:
            names = [self.tiers[i].tier.name for i in plan]
            plan = plan[: self.decider.blocks_to_load(names, block_tokens)]
        pins = self._pin(keys, plan)
        try:
            blocks, sources = self._fetch_plan(keys, plan, block_tokens, prefetched)
        finally:
            for tier, pinned in pins:
                for key in pinned:
                    tier.unpin(key)
        seconds = time.perf_counter() - start
        result = LoadedPrefix(tuple(blocks), tuple(sources), available)
        saved_j, basis = self.decider.energy_saved(result.tokens) if result.tokens else (None, "")
        self.stats.record_load(result.tokens, seconds, saved_j, basis)
        return result

    def _fetch_judge(self, decide: bool, block_tokens: int | None) -> Callable[[str, int], bool]:
        """Whether fetching a tier's blocks while probing, from key index ``first`` on, wastes
        nothing: always without a decision (all found blocks load), else when the decider would
        load every one of them."""
        if not decide or block_tokens is None:
            return lambda name, first: True
        bt = block_tokens
        return lambda name, first: self.decider.loads_all(name, first * bt, bt)

    def _pin(
        self, keys: Sequence[str], plan: Sequence[int]
    ) -> list[tuple[PinnableTier, list[str]]]:
        """Pin planned blocks in tiers that support it, so promotions cannot evict them."""
        pins: list[tuple[PinnableTier, list[str]]] = []
        for ti, tc in enumerate(self.tiers):
            tier = tc.tier
            if isinstance(tier, PinnableTier) and ti in plan:
                pins.append(
                    (tier, [keys[i] for i, t in enumerate(plan) if t == ti and tier.pin(keys[i])])
                )
        return pins

    def _fetch_plan(
        self,
        keys: Sequence[str],
        plan: Sequence[int],
        block_tokens: int | None,
        prefetched: dict[int, _Prefetch],
    ) -> tuple[list[DecodedBlock], list[str]]:
        blocks: list[DecodedBlock] = []
        sources: list[str] = []
        pos = 0
        while pos < len(plan):
            ti = plan[pos]
            end = pos
            while end < len(plan) and plan[end] == ti:
                end += 1
            pre = prefetched.get(ti)
            if pre is None:
                got = self._fetch(ti, keys[pos:end], block_tokens)
            else:
                # Every planned key of this tier was present when it was fetched. The fetch's
                # time is shared out by block, so the decider sees the per-block load cost.
                raw = [pre.values[i] for i in range(pos, end)]
                share_s = pre.seconds * (end - pos) / len(pre.values)
                got = self._verify(ti, keys[pos:end], raw, block_tokens, share_s)
            blocks.extend(got)
            sources.extend([self.tiers[ti].tier.name] * len(got))
            if len(got) < end - pos:
                break
            pos = end
        return blocks, sources

    def _fetch(self, ti: int, keys: Sequence[str], block_tokens: int | None) -> list[DecodedBlock]:
        """Fetch, verify and promote ``keys`` from tier ``ti``; stops at the first bad block."""
        tc = self.tiers[ti]
        t0 = time.perf_counter()
        try:
            raw = self._call(tc, lambda: tc.tier.get_many(list(keys)))
        except _TierUnavailable:
            return []
        return self._verify(ti, keys, raw, block_tokens, time.perf_counter() - t0)

    def _verify(
        self,
        ti: int,
        keys: Sequence[str],
        raw: Sequence[bytes | None],
        block_tokens: int | None,
        fetch_s: float,
    ) -> list[DecodedBlock]:
        """Verify and promote blocks fetched from tier ``ti`` (in ``fetch_s``); stops at the
        first missing or bad block."""
        tc = self.tiers[ti]
        name = tc.tier.name
        t0 = time.perf_counter()
        out: list[DecodedBlock] = []
        nbytes = 0
        for key, data in zip(keys, raw, strict=True):
            if data is None:
                self.stats.record_tier(name, misses=1)
                break
            try:
                block = decode_block(
                    data,
                    key=key,
                    fingerprint=self._fp_digest,
                    token_count=block_tokens,
                    verify_payload=tc.verify_payload,
                )
            except BlockError as exc:
                log.warning("warehouse tier %s: dropping block %s (%s)", name, key, exc)
                self.stats.record_tier(name, rejected=1)
                self._try(tc, functools.partial(tc.tier.delete, key))
                break
            out.append(block)
            nbytes += len(data)
        seconds = fetch_s + time.perf_counter() - t0
        if out:
            self.stats.record_tier(name, hits=len(out), bytes_read=nbytes)
            self.decider.observe_load(name, len(out), nbytes, seconds)
            self._promote(ti, keys[: len(out)], raw[: len(out)])
        return out

    def _promote(self, ti: int, keys: Sequence[str], raw: Sequence[bytes | None]) -> None:
        items = [(k, v, 0.0) for k, v in zip(keys, raw, strict=True) if v is not None]
        for tc in self.tiers[:ti]:
            if tc.promote:
                self._write(tc, items)

    def contains_prefix(self, keys: Sequence[str]) -> int:
        """How many leading ``keys`` some available tier holds (no data is read)."""
        return len(self.probe(keys))

    # -- writing ----------------------------------------------------------------------------

    def put(
        self,
        blocks: Sequence[tuple[str, Sequence[np.ndarray]]],
        *,
        block_tokens: int,
        cost_s: float = 0.0,
    ) -> int:
        """Encode and write ``(key, tensors)`` blocks through every tier that admits them.

        ``cost_s`` is the recompute-cost hint per block for cost-aware eviction. Returns the
        number of tier writes made. Never raises for tier failures.
        """
        encoded = [
            (key, encode_block(key, self._fp_digest, block_tokens, arrays), cost_s)
            for key, arrays in blocks
        ]
        return self.put_encoded(encoded)

    def put_encoded(self, items: Sequence[tuple[str, bytes, float]]) -> int:
        """Write already encoded ``(key, bytes, cost_s)`` blocks through every admitting tier."""
        writes = 0
        for tc in self.tiers:
            with self._lock:
                admitted = [it for it in items if tc.admission.admit(it[0])]
            writes += self._write(tc, admitted)
        return writes

    def _write(self, tc: TierConfig, items: Sequence[tuple[str, bytes, float]]) -> int:
        if not items:
            return 0
        try:
            self._call(tc, lambda: tc.tier.put_many(list(items)))
        except _TierUnavailable:
            return 0
        self.stats.record_tier(tc.tier.name, bytes_written=sum(len(v) for _, v, _ in items))
        return len(items)

    def _try(self, tc: TierConfig, fn: Callable[[], object]) -> None:
        with contextlib.suppress(_TierUnavailable):
            self._call(tc, fn)

    def close(self) -> None:
        """Close every tier and the worker threads (without waiting for stuck calls)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        for tc in self.tiers:
            try:
                tc.tier.close()
            except Exception as exc:  # closing must not fail the caller either
                log.warning("warehouse tier %s failed to close: %s", tc.tier.name, exc)

"""The KV-cache seam: where a request's KV cache is created, extended and released, where a
cached prefix can be supplied, and where finished full blocks are handed out (the warehouse).

Tensor layout (everywhere in this module and for every ``PrefixProvider``)
-------------------------------------------------------------------------
For each decoder layer ``l`` there is one key and one value tensor of shape
``[num_kv_heads, num_tokens, head_dim]``, dtype and device of the model (``KVLayout.dtype``,
``KVLayout.device``), contiguous along ``head_dim``. Keys are stored **after** RoPE, so the
key at position ``p`` is only valid for a sequence whose token ``p`` sits at absolute
position ``p``: a prefix is always the first ``num_tokens`` tokens of a sequence, starting at
position 0. Positions ``[0, length)`` of a request's cache are valid; anything beyond is
scratch. The model fingerprint (``KVLayout.fingerprint``) names weights, dtype and tokenizer:
KV computed under a different fingerprint must never be supplied.

Life of a request's cache (all calls on the engine thread)
----------------------------------------------------------
1. admission: the engine calls ``PrefixProvider.lookup(prompt_ids)``; a hit returns KV for the
   first N tokens (N chosen by the provider, normally a multiple of ``block_tokens``). The
   engine keeps at most ``len(prompt_ids) - 1`` of them (the last prompt token is always
   computed, it yields the first logits) and calls ``KVCacheManager.allocate``.
2. each step: the runner writes the new tokens' K/V per layer (``RequestKV.write``) and then
   ``RequestKV.advance``.
3. prompt done: ``PrefixProvider.on_blocks_ready(ids, kv)`` with the largest whole number of
   blocks of the prompt; again when the request finishes if generated tokens completed more
   blocks. ``kv`` holds views into the engine's buffers, valid only during the call: copy
   what you keep. Both calls cover the sequence from position 0.
4. finish or abort: ``KVCacheManager.release``; the memory is free at once.

Tenants
-------
A request may carry a tenant (the server passes the one it bills: the ``user`` field or a hash
of the bearer key). The engine then calls ``lookup(ids, tenant=...)`` and
``on_blocks_ready(ids, kv, tenant=...)``; a provider must never return to one tenant KV that
another tenant's request stored (``cached_tokens`` would reveal that the other sent the same
prefix), unless it is configured to share on purpose. The keyword is passed only when the
request has a tenant, so providers written without it keep working for tenant-less requests.

Provider calls are guarded: an exception or a malformed ``PrefixKV`` is logged and treated as
a miss, so nothing here can fail a request.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch

from tokenwatt.errors import ConfigError

__all__ = [
    "KVCacheManager",
    "KVLayout",
    "KVUsage",
    "NullPrefixProvider",
    "PrefixKV",
    "PrefixProvider",
    "RequestKV",
    "lookup_prefix",
    "publish_blocks",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KVLayout:
    """Shape, dtype and identity of every KV tensor a model produces."""

    num_layers: int = 1
    """Decoder layers: one K and one V tensor per layer."""
    num_kv_heads: int = 1
    """Key/value heads per layer (dimension 0 of each tensor)."""
    head_dim: int = 1
    """Width of one head (dimension 2 of each tensor)."""
    dtype: torch.dtype = torch.float32
    """Element type of K and V."""
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    """Where the engine keeps KV."""
    block_tokens: int = 16
    """Tokens per warehouse block; blocks handed out are whole multiples of this."""
    fingerprint: str = ""
    """Model fingerprint (weights, dtype, tokenizer); salts every warehouse key."""

    def __post_init__(self) -> None:
        for name in ("num_layers", "num_kv_heads", "head_dim", "block_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"KVLayout.{name} must be >= 1, got {getattr(self, name)}")

    @property
    def bytes_per_token(self) -> int:
        """Bytes of K plus V for one token across all layers."""
        item = torch.empty((), dtype=self.dtype).element_size()
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * item


@dataclass(frozen=True, eq=False)
class PrefixKV:
    """KV of the first ``num_tokens`` tokens of a sequence: one (K, V) pair per layer."""

    keys: tuple[torch.Tensor, ...]
    """Per layer ``[num_kv_heads, num_tokens, head_dim]``, post-RoPE."""
    values: tuple[torch.Tensor, ...]
    """Per layer ``[num_kv_heads, num_tokens, head_dim]``."""

    @property
    def num_tokens(self) -> int:
        """Tokens covered (0 when there are no layers)."""
        return int(self.keys[0].shape[1]) if self.keys else 0

    def truncate(self, num_tokens: int) -> PrefixKV:
        """The KV of the first ``num_tokens`` tokens (views, no copy)."""
        return PrefixKV(
            keys=tuple(k[:, :num_tokens] for k in self.keys),
            values=tuple(v[:, :num_tokens] for v in self.values),
        )

    def problem(self, layout: KVLayout) -> str | None:
        """Why this prefix does not fit ``layout``, or None when it does."""
        if len(self.keys) != layout.num_layers or len(self.values) != layout.num_layers:
            return f"{len(self.keys)} layers, expected {layout.num_layers}"
        shape = (layout.num_kv_heads, self.num_tokens, layout.head_dim)
        for t in (*self.keys, *self.values):
            if tuple(t.shape) != shape:
                return f"tensor shape {tuple(t.shape)}, expected {shape}"
            if t.dtype != layout.dtype:
                return f"dtype {t.dtype}, expected {layout.dtype}"
        return None


@runtime_checkable
class PrefixProvider(Protocol):
    """Supplies cached prefixes and receives finished blocks (the warehouse implements it)."""

    def lookup(self, token_ids: Sequence[int], *, tenant: str | None = None) -> PrefixKV | None:
        """KV for the longest prefix of ``token_ids`` (from position 0) cached for ``tenant``."""
        ...

    def on_blocks_ready(
        self, token_ids: Sequence[int], kv: PrefixKV, *, tenant: str | None = None
    ) -> None:
        """``kv`` covers exactly ``token_ids`` (whole blocks from position 0) of ``tenant``'s
        request; copy to keep."""
        ...


def lookup_prefix(
    provider: PrefixProvider, token_ids: Sequence[int], tenant: str | None
) -> PrefixKV | None:
    """``provider.lookup``, passing ``tenant=`` only when there is one (older providers)."""
    if tenant is None:
        return provider.lookup(token_ids)
    return provider.lookup(token_ids, tenant=tenant)


def publish_blocks(
    provider: PrefixProvider, token_ids: Sequence[int], kv: PrefixKV, tenant: str | None
) -> None:
    """``provider.on_blocks_ready``, passing ``tenant=`` only when there is one."""
    if tenant is None:
        provider.on_blocks_ready(token_ids, kv)
    else:
        provider.on_blocks_ready(token_ids, kv, tenant=tenant)


class NullPrefixProvider:
    """The default provider: never hits, keeps nothing."""

    def lookup(self, token_ids: Sequence[int], *, tenant: str | None = None) -> PrefixKV | None:
        """Always a miss."""
        return None

    def on_blocks_ready(
        self, token_ids: Sequence[int], kv: PrefixKV, *, tenant: str | None = None
    ) -> None:
        """Ignore the blocks."""


class RequestKV:
    """One request's KV: per-layer buffers grown on demand; positions ``[0, length)`` valid."""

    def __init__(self, layout: KVLayout, reserved_tokens: int) -> None:
        self.layout = layout
        self.reserved_tokens = reserved_tokens
        self.length = 0
        self._capacity = 0
        self._k: list[torch.Tensor] = []
        self._v: list[torch.Tensor] = []

    def _grow(self, needed: int) -> None:
        if needed <= self._capacity:
            return
        # Doubling keeps appends amortised O(1) without reserving the whole budget up front.
        new_cap = min(max(needed, 2 * self._capacity, 64), max(needed, self.reserved_tokens))
        lay = self.layout
        shape = (lay.num_kv_heads, new_cap, lay.head_dim)
        new_k = [
            torch.empty(shape, dtype=lay.dtype, device=lay.device) for _ in range(lay.num_layers)
        ]
        new_v = [
            torch.empty(shape, dtype=lay.dtype, device=lay.device) for _ in range(lay.num_layers)
        ]
        for layer in range(len(self._k)):
            new_k[layer][:, : self.length] = self._k[layer][:, : self.length]
            new_v[layer][:, : self.length] = self._v[layer][:, : self.length]
        self._k, self._v, self._capacity = new_k, new_v, new_cap

    def load_prefix(self, prefix: PrefixKV) -> None:
        """Copy a cached prefix into positions ``[0, prefix.num_tokens)``."""
        n = prefix.num_tokens
        # Room for the continuation too (as doubling would give), so the first write after the
        # prefix does not copy the whole prefix into a bigger buffer a second time.
        self._grow(min(max(2 * n, 64), max(n, self.reserved_tokens)))
        for layer in range(self.layout.num_layers):
            self._k[layer][:, :n] = prefix.keys[layer].to(self.layout.device)
            self._v[layer][:, :n] = prefix.values[layer].to(self.layout.device)
        self.length = n

    def write(self, layer: int, start: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store ``k``/``v`` (``[num_kv_heads, n, head_dim]``) at positions ``[start, start+n)``."""
        end = start + int(k.shape[1])
        self._grow(end)
        self._k[layer][:, start:end] = k
        self._v[layer][:, start:end] = v

    def view(self, layer: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
        """K and V of positions ``[0, end)`` of ``layer`` (views)."""
        return self._k[layer][:, :end], self._v[layer][:, :end]

    def advance(self, num_tokens: int) -> None:
        """Mark ``num_tokens`` more positions valid (after every layer was written)."""
        self.length += num_tokens

    def prefix(self, num_tokens: int) -> PrefixKV:
        """Views of the first ``num_tokens`` valid positions of every layer."""
        if num_tokens > self.length:
            raise ValueError(f"only {self.length} positions are valid, asked {num_tokens}")
        return PrefixKV(
            keys=tuple(k[:, :num_tokens] for k in self._k),
            values=tuple(v[:, :num_tokens] for v in self._v),
        )

    @property
    def allocated_bytes(self) -> int:
        """Bytes held by the buffers now."""
        return self._capacity * self.layout.bytes_per_token


@dataclass(frozen=True)
class KVUsage:
    """A snapshot of the engine's KV memory."""

    requests: int = 0
    """Requests holding a cache."""
    tokens: int = 0
    """Valid positions across requests."""
    reserved_tokens: int = 0
    """Positions promised to admitted requests (prompt + max_tokens each)."""
    capacity_tokens: int = 0
    """The most positions the engine may promise."""
    bytes_: int = 0
    """Bytes allocated for KV buffers."""

    @property
    def fraction(self) -> float:
        """Reserved share of capacity, 0..1."""
        return self.reserved_tokens / self.capacity_tokens if self.capacity_tokens else 0.0


class KVCacheManager:
    """Creates, finds and releases per-request KV within a token budget (reservation-based)."""

    def __init__(self, layout: KVLayout, capacity_tokens: int) -> None:
        if capacity_tokens < 1:
            raise ConfigError(f"KV capacity must be >= 1 token, got {capacity_tokens}")
        self.layout = layout
        self.capacity_tokens = capacity_tokens
        self._caches: dict[str, RequestKV] = {}
        self._reserved = 0

    def can_allocate(self, reserve_tokens: int) -> bool:
        """Whether ``reserve_tokens`` more positions fit in the budget now."""
        return self._reserved + reserve_tokens <= self.capacity_tokens

    def allocate(
        self, request_id: str, reserve_tokens: int, prefix: PrefixKV | None = None
    ) -> RequestKV:
        """Create the cache of ``request_id``, seeded with ``prefix`` when given."""
        if request_id in self._caches:
            raise ValueError(f"request {request_id!r} already holds a KV cache")
        cache = RequestKV(self.layout, reserve_tokens)
        if prefix is not None and prefix.num_tokens:
            cache.load_prefix(prefix)
        self._caches[request_id] = cache
        self._reserved += reserve_tokens
        return cache

    def get(self, request_id: str) -> RequestKV:
        """The cache of ``request_id`` (KeyError when it has none)."""
        return self._caches[request_id]

    def release(self, request_id: str) -> None:
        """Free the cache of ``request_id`` at once; a no-op when it has none."""
        cache = self._caches.pop(request_id, None)
        if cache is not None:
            self._reserved -= cache.reserved_tokens

    def usage(self) -> KVUsage:
        """Counts and bytes now."""
        caches = list(self._caches.values())
        return KVUsage(
            requests=len(caches),
            tokens=sum(c.length for c in caches),
            reserved_tokens=self._reserved,
            capacity_tokens=self.capacity_tokens,
            bytes_=sum(c.allocated_bytes for c in caches),
        )

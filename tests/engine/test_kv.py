"""The KV-cache seam: layouts, prefixes, per-request caches and the manager's budget."""

from __future__ import annotations

import pytest
import torch

from tokenwatt.engine.kv import (
    KVCacheManager,
    KVLayout,
    NullPrefixProvider,
    PrefixKV,
    PrefixProvider,
    RequestKV,
)
from tokenwatt.errors import ConfigError

LAYOUT = KVLayout(num_layers=2, num_kv_heads=3, head_dim=4, block_tokens=2, fingerprint="fp")


def _prefix(n: int, layers: int = 2, value: float = 1.0) -> PrefixKV:
    t = torch.full((3, n, 4), value)
    return PrefixKV(keys=(t,) * layers, values=(t * 2,) * layers)


def test_bytes_per_token_counts_k_and_v_over_layers() -> None:
    """fp32, 2 layers x 3 heads x 4 dims x (K+V) = 192 bytes."""
    assert LAYOUT.bytes_per_token == 2 * 2 * 3 * 4 * 4


def test_layout_rejects_zero_block_tokens() -> None:
    """A layout with block_tokens 0 fails with a message naming the field."""
    with pytest.raises(ConfigError, match="block_tokens"):
        KVLayout(block_tokens=0)


def test_prefix_truncate_keeps_first_tokens() -> None:
    """truncate(2) of a 5-token prefix covers 2 tokens in every layer."""
    p = _prefix(5).truncate(2)
    assert p.num_tokens == 2
    assert [tuple(k.shape) for k in p.keys] == [(3, 2, 4), (3, 2, 4)]


def test_prefix_problem_names_layer_mismatch() -> None:
    """A prefix with the wrong number of layers is reported, not accepted."""
    assert _prefix(4, layers=1).problem(LAYOUT) == "1 layers, expected 2"
    assert _prefix(4).problem(LAYOUT) is None


def test_prefix_problem_names_dtype_mismatch() -> None:
    """A bfloat16 prefix does not fit a float32 layout."""
    t = torch.zeros((3, 2, 4), dtype=torch.bfloat16)
    p = PrefixKV(keys=(t, t), values=(t, t))
    assert p.problem(LAYOUT) == "dtype torch.bfloat16, expected torch.float32"


def test_request_kv_write_view_advance() -> None:
    """Written positions read back through view; length moves only on advance."""
    cache = RequestKV(LAYOUT, reserved_tokens=8)
    k = torch.arange(24, dtype=torch.float32).view(3, 2, 4)
    for layer in range(2):
        cache.write(layer, 0, k, -k)
    assert cache.length == 0
    cache.advance(2)
    keys, values = cache.view(1, 2)
    assert torch.equal(keys, k)
    assert torch.equal(values, -k)


def test_request_kv_grows_past_initial_capacity() -> None:
    """Writing 100 tokens one by one keeps every earlier position intact."""
    cache = RequestKV(LAYOUT, reserved_tokens=100)
    for pos in range(100):
        t = torch.full((3, 1, 4), float(pos))
        for layer in range(2):
            cache.write(layer, pos, t, t)
        cache.advance(1)
    keys, _ = cache.view(0, 100)
    assert keys[0, :, 0].tolist() == [float(p) for p in range(100)]


def test_manager_allocate_with_prefix_loads_it() -> None:
    """A supplied prefix becomes the first valid positions of the new cache."""
    mgr = KVCacheManager(LAYOUT, capacity_tokens=100)
    cache = mgr.allocate("r", 10, prefix=_prefix(4, value=3.0))
    assert cache.length == 4
    assert torch.equal(cache.prefix(4).values[1], torch.full((3, 4, 4), 6.0))


def test_manager_budget_and_release() -> None:
    """Reservations count against capacity and come back at release."""
    mgr = KVCacheManager(LAYOUT, capacity_tokens=10)
    mgr.allocate("a", 6)
    assert not mgr.can_allocate(5)
    mgr.release("a")
    assert mgr.can_allocate(10)
    assert mgr.usage().requests == 0


def test_manager_usage_counts_tokens() -> None:
    """usage() reports valid tokens, reservations and the reserved fraction."""
    mgr = KVCacheManager(LAYOUT, capacity_tokens=20)
    mgr.allocate("a", 5, prefix=_prefix(2))
    u = mgr.usage()
    assert (u.requests, u.tokens, u.reserved_tokens, u.capacity_tokens) == (1, 2, 5, 20)
    assert u.fraction == 0.25


def test_null_provider_is_a_provider_that_never_hits() -> None:
    """The default provider satisfies the protocol and always misses."""
    p = NullPrefixProvider()
    assert isinstance(p, PrefixProvider)
    assert p.lookup([1, 2, 3]) is None

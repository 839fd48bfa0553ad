"""The model runner: one forward pass over a packed batch of prefill chunks and decode tokens.

All tokens of a step are packed into one sequence so every linear layer runs once per step
(the throughput win of batching); attention runs per request over that request's own KV
(``kv.RequestKV``), so no request ever attends to another's tokens and no padding is needed.
Last-bit differences between batched and alone come only from matrix-multiply blocking that
depends on the packed row count (see docs: logits agree within 1e-4 absolute in fp32).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F

from .kv import KVCacheManager, KVLayout, RequestKV
from .model import LoadedModel

__all__ = ["ModelRunner", "StepItem"]


@dataclass(frozen=True)
class StepItem:
    """One request's share of a step: ``token_ids`` at positions ``[start, start+len)``."""

    request_id: str
    """Which request (its cache must already be allocated)."""
    token_ids: tuple[int, ...]
    """Tokens to run this step (a prefill chunk, or the one newest token when decoding)."""
    start: int
    """Absolute position of the first of ``token_ids``; equals the cache's valid length."""
    wants_logits: bool = True
    """Whether the caller needs logits of the last token (false for a non-final prefill chunk)."""


# The CPU fused attention kernel that also returns each query's log-sum-exp (private ATen op,
# present since torch 2.3; the public SDPA does not expose the log-sum-exp). Without it,
# continuations fall back to SDPA with an explicit mask.
_flash_cpu: Any = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)

# RoPE variants whose cos/sin depend on the position alone (not on the sequence length).
_STATIC_ROPE = frozenset({"default", "linear", "llama3"})


def _attend_continuation(
    q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, start: int, scale: float
) -> torch.Tensor:
    """Attention of ``n`` queries at positions ``start..`` continuing a cached prefix (CPU).

    An explicit ``[n, start+n]`` mask keeps SDPA off its fused path (~40% slower at 300 queries
    over 4.6k keys). Instead: the cached keys ``[0, start)`` are visible to every query, so
    that part runs unmasked (query heads grouped per KV head, so K/V are read once, not
    expanded); the new keys ``[start, start+n)`` are plain top-left causal. The two partial
    softmaxes are merged exactly by their log-sum-exps (the fused kernel returns them).
    """
    n, heads, d = q.shape
    kv_heads = keys.shape[0]
    group = heads // kv_heads
    qh = q.transpose(0, 1)[None]  # [1, heads, n, d]
    o_old, lse_old = _flash_cpu(
        qh.reshape(1, kv_heads, group * n, d),
        keys[None, :, :start],
        values[None, :, :start],
        scale=scale,
    )[:2]
    new_k = keys[:, start:].repeat_interleave(group, 0)[None]
    new_v = values[:, start:].repeat_interleave(group, 0)[None]
    o_new, lse_new = _flash_cpu(qh, new_k, new_v, is_causal=True, scale=scale)[:2]
    lse_old = lse_old.reshape(1, heads, n, 1)
    lse_new = lse_new.reshape(1, heads, n, 1)
    top = torch.maximum(lse_old, lse_new)
    w_old = torch.exp(lse_old - top)
    w_new = torch.exp(lse_new - top)
    o_old = o_old.reshape(1, heads, n, d).float()
    o = (o_old * w_old + o_new.float() * w_new) / (w_old + w_new)
    merged: torch.Tensor = o[0].transpose(0, 1).reshape(n, heads * d).to(q.dtype)
    return merged


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


Fn = Callable[[torch.Tensor], torch.Tensor]


def _linear(module: Any) -> Fn:
    """``module``'s forward as a plain function (same op, no nn.Module call overhead)."""
    if type(module) is torch.nn.Linear:
        weight, bias = module.weight, module.bias
        return lambda x: F.linear(x, weight, bias)
    return cast(Fn, module.forward)


def _rms_norm(module: Any) -> Fn:
    """LlamaRMSNorm's exact op sequence (bit-identical) without the module call; else forward."""
    if type(module).__name__ != "LlamaRMSNorm":
        return cast(Fn, module.forward)
    weight, eps = module.weight, module.variance_epsilon

    def norm(x: torch.Tensor) -> torch.Tensor:
        h = x.to(torch.float32)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
        return cast(torch.Tensor, weight * h.to(x.dtype))

    return norm


def _mlp(module: Any) -> Fn:
    """LlamaMLP (SiLU) as plain functions; any other MLP through its forward."""
    act = getattr(module, "act_fn", None)
    if type(module).__name__ != "LlamaMLP" or type(act).__name__ != "SiLUActivation":
        return cast(Fn, module.forward)
    gate, up, down = _linear(module.gate_proj), _linear(module.up_proj), _linear(module.down_proj)
    return lambda x: down(F.silu(gate(x)) * up(x))


@dataclass(frozen=True)
class _LayerOps:
    """One decoder layer's pieces, resolved once: per-step Python overhead matters at batch 1
    (a tiny-model decode step is ~50 small ops; module calls were ~15% of it)."""

    input_norm: Fn
    q: Fn
    k: Fn
    v: Fn
    o: Fn
    post_norm: Fn
    mlp: Fn
    scaling: float

    @classmethod
    def of(cls, layer: Any) -> _LayerOps:
        attn = layer.self_attn
        return cls(
            input_norm=_rms_norm(layer.input_layernorm),
            q=_linear(attn.q_proj),
            k=_linear(attn.k_proj),
            v=_linear(attn.v_proj),
            o=_linear(attn.o_proj),
            post_norm=_rms_norm(layer.post_attention_layernorm),
            mlp=_mlp(layer.mlp),
            scaling=float(attn.scaling),
        )


class ModelRunner:
    """Runs packed steps of a Llama-like ``LoadedModel`` against per-request KV caches."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        inner = loaded.model.model
        self._embed = inner.embed_tokens
        self._layers = [_LayerOps.of(layer) for layer in inner.layers]
        self._norm = _rms_norm(inner.norm)
        self._rotary = inner.rotary_emb
        self._lm_head = _linear(loaded.model.lm_head)
        self._num_heads = int(loaded.model.config.num_attention_heads)
        rope_type = getattr(self._rotary, "rope_type", "default")
        self._rope_static = rope_type in _STATIC_ROPE
        self._rope_table: tuple[torch.Tensor, torch.Tensor] | None = None

    def layout(self, block_tokens: int = 16) -> KVLayout:
        """The KV layout this model produces."""
        lm = self.loaded
        return KVLayout(
            num_layers=lm.num_layers,
            num_kv_heads=lm.num_kv_heads,
            head_dim=lm.head_dim,
            dtype=lm.dtype,
            device=lm.device,
            block_tokens=block_tokens,
            fingerprint=lm.fingerprint,
        )

    @torch.inference_mode()
    def execute(self, items: Sequence[StepItem], caches: Sequence[RequestKV]) -> torch.Tensor:
        """Run one step; advance each cache; return fp32 logits ``[n_wanting, vocab]``.

        Rows are in ``items`` order, one per item with ``wants_logits``.
        """
        dev = self.loaded.device
        flat = [t for it in items for t in it.token_ids]
        ids = torch.tensor(flat, dtype=torch.long, device=dev)
        total = len(flat)
        h = self._embed(ids)[None]  # [1, T, hidden]
        cos, sin = self._rope(items, h)  # [T, 1, head_dim]
        head_dim = self.loaded.head_dim
        # Per item: its rows, and its mask (built once per step, shared by every layer).
        spans = []
        offset = 0
        for it in items:
            n = len(it.token_ids)
            spans.append((slice(offset, offset + n), n, self._mask(n, it.start, dev)))
            offset += n
        single = len(items) == 1
        for layer_idx, ops in enumerate(self._layers):
            x = ops.input_norm(h)
            q = ops.q(x).view(total, -1, head_dim)
            k = ops.k(x).view(total, -1, head_dim)
            v = ops.v(x).view(total, -1, head_dim)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            if single:
                # One request (the common batch-1 decode): no packing buffer to fill.
                it, cache = items[0], caches[0]
                cache.write(layer_idx, it.start, k.transpose(0, 1), v.transpose(0, 1))
                keys, values = cache.view(layer_idx, it.start + total)
                out = self._attend(q, keys, values, it.start, ops.scaling, spans[0][2])
            else:
                out = torch.empty(total, self._num_heads * head_dim, dtype=h.dtype, device=dev)
                for it, cache, (sl, n, mask) in zip(items, caches, spans, strict=True):
                    cache.write(layer_idx, it.start, k[sl].transpose(0, 1), v[sl].transpose(0, 1))
                    keys, values = cache.view(layer_idx, it.start + n)
                    out[sl] = self._attend(q[sl], keys, values, it.start, ops.scaling, mask)
            h = h + ops.o(out[None])
            h = h + ops.mlp(ops.post_norm(h))
        for it, cache in zip(items, caches, strict=True):
            cache.advance(len(it.token_ids))
        rows = [sl.stop - 1 for (sl, _, _), it in zip(spans, items, strict=True) if it.wants_logits]
        if rows == [total - 1]:
            last = h[0, total - 1 :]
        else:
            last = h[0, torch.tensor(rows, dtype=torch.long, device=dev)]
        logits: torch.Tensor = self._lm_head(self._norm(last)).float()
        return logits

    def _rope(
        self, items: Sequence[StepItem], h: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin ``[T, 1, head_dim]`` for the positions of ``items``.

        Static RoPE is an elementwise function of the position, so rows of a table computed
        once are bit-identical to computing them per step; dynamic variants are computed per step.
        """
        dev = self.loaded.device
        end = max(it.start + len(it.token_ids) for it in items)
        if self._rope_static and end <= self.loaded.max_context:
            if self._rope_table is None or self._rope_table[0].shape[0] < end:
                # Grown by doubling up to the context: a 128k-context checkpoint's full table
                # would hold ~128 MB that short prompts never touch.
                have = 0 if self._rope_table is None else self._rope_table[0].shape[0]
                rows = min(self.loaded.max_context, max(end, 2 * have, 4096))
                cos_t, sin_t = self._rotary(h, torch.arange(rows, device=dev)[None])
                self._rope_table = (cos_t[0, :, None, :], sin_t[0, :, None, :])
            cos_t, sin_t = self._rope_table
            if len(items) == 1:
                it = items[0]
                sl = slice(it.start, it.start + len(it.token_ids))
                return cos_t[sl], sin_t[sl]
            pos = torch.tensor(
                [p for it in items for p in range(it.start, it.start + len(it.token_ids))],
                dtype=torch.long,
                device=dev,
            )
            return cos_t[pos], sin_t[pos]
        positions = torch.cat(
            [torch.arange(it.start, it.start + len(it.token_ids), device=dev) for it in items]
        )
        cos, sin = self._rotary(h, positions[None])
        return cos[0, :, None, :], sin[0, :, None, :]

    @staticmethod
    def _mask(n: int, start: int, dev: torch.device) -> torch.Tensor | None:
        """Query i (position start+i) sees keys 0..start+i; None where no mask is needed."""
        if n == 1 or start == 0:
            return None  # one query sees every key; a prompt from 0 uses is_causal
        keys = torch.arange(start + n, device=dev)
        queries = torch.arange(start, start + n, device=dev)
        return keys[None, :] <= queries[:, None]

    def _attend(
        self,
        q: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        start: int,
        scale: float,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """Causal attention of ``q`` ([n, heads, d]) at positions start.. over keys [0, start+n)."""
        n, heads, d = q.shape
        kv_heads = keys.shape[0]
        if n == 1:
            # Decoding one token: the query heads sharing a KV head become that head's query
            # rows, so grouped-query attention reads K and V once instead of expanding them.
            qg = q.view(kv_heads, heads // kv_heads, d)[None]
            o = F.scaled_dot_product_attention(qg, keys[None], values[None], scale=scale)
            return o.reshape(1, heads * d)
        if mask is not None and q.device.type == "cpu" and _flash_cpu is not None:
            return _attend_continuation(q, keys, values, start, scale)
        o = F.scaled_dot_product_attention(
            q.transpose(0, 1)[None],
            keys[None],
            values[None],
            attn_mask=mask,
            # A whole prompt from position 0 is plain causal: the fused kernel is ~3x faster
            # than an explicit mask at 4k tokens on CPU and gives the same values.
            is_causal=mask is None,
            scale=scale,
            enable_gqa=True,
        )
        return o[0].transpose(0, 1).reshape(n, -1)

    def profile_step(
        self,
        *,
        prefill_tokens: int = 0,
        decode_batch: int = 0,
        context_tokens: int = 128,
        repeats: int = 3,
    ) -> float:
        """Median seconds of one step with a ``prefill_tokens`` prefill and ``decode_batch``
        decodes, each decode over ``context_tokens`` of existing KV (scratch caches, random ids).

        For calibration (the planner): no engine state is touched.
        """
        if prefill_tokens < 0 or decode_batch < 0 or prefill_tokens + decode_batch == 0:
            raise ValueError("profile_step needs prefill_tokens > 0 or decode_batch > 0")
        layout = self.layout()
        vocab = min(self.loaded.vocab_size, 256)
        gen = torch.Generator().manual_seed(0)
        times = []
        for _ in range(max(1, repeats)):
            kv = KVCacheManager(layout, capacity_tokens=1 << 40)
            items: list[StepItem] = []
            caches: list[RequestKV] = []
            if prefill_tokens:
                ids = torch.randint(0, vocab, (prefill_tokens,), generator=gen).tolist()
                items.append(StepItem("prefill", tuple(ids), 0))
                caches.append(kv.allocate("prefill", prefill_tokens))
            for b in range(decode_batch):
                cache = kv.allocate(f"d{b}", context_tokens + 1)
                if context_tokens:
                    ctx = torch.randint(0, vocab, (context_tokens,), generator=gen).tolist()
                    self.execute([StepItem(f"d{b}", tuple(ctx), 0, False)], [cache])
                items.append(StepItem(f"d{b}", (1,), context_tokens))
                caches.append(cache)
            self._sync()
            t0 = time.perf_counter()
            self.execute(items, caches)
            self._sync()
            times.append(time.perf_counter() - t0)
        return sorted(times)[len(times) // 2]

    def _sync(self) -> None:
        if self.loaded.device.type == "cuda":
            torch.cuda.synchronize(self.loaded.device)

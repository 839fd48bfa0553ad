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
from functools import partial
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


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin_signed: torch.Tensor) -> torch.Tensor:
    """RoPE of ``x`` ``[T, heads, head_dim]``: ``x * cos + rotate_half(x) * sin``.

    ``rotate_half(x)`` is ``[-x2, x1]``: here the halves swap in one flip and the minus sign
    lives in ``sin_signed`` (``[-sin1, sin2]``, see ``_sign_fold``). Negation is exact, so the
    result is bit-identical to transformers' ``apply_rotary_pos_emb`` in 3 ops instead of 5.
    """
    t, n, d = x.shape
    swapped = x.view(t, n, 2, d // 2).flip(2).view(t, n, d)
    out = x * cos
    return out.add_(swapped.mul_(sin_signed))


def _sign_fold(sin: torch.Tensor) -> torch.Tensor:
    """``[-sin1, sin2]`` (halves of the last dimension): rotate_half's sign, applied once."""
    half = sin.shape[-1] // 2
    return torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)


Fn = Callable[[torch.Tensor], torch.Tensor]


def _plain(module: Any) -> bool:
    """A bias-free ``nn.Linear`` (exactly: quantized or LoRA subclasses have their own forward)."""
    return type(module) is torch.nn.Linear and module.bias is None


def _linear(module: Any) -> Fn:
    """``module``'s forward as a plain function (same op, no nn.Module call overhead)."""
    if type(module) is torch.nn.Linear:
        weight, bias = module.weight, module.bias
        return lambda x: F.linear(x, weight, bias)
    return cast(Fn, module.forward)


def _row_block(weights: Sequence[torch.Tensor]) -> torch.Tensor | None:
    """The ``[sum(out), in]`` tensor of which ``weights`` are already consecutive row ranges
    (left by an earlier runner on the same model); None otherwise."""
    first = weights[0]
    offset = 0
    for w in weights:
        if (
            not w.is_contiguous()
            or w.dtype != first.dtype
            or w.shape[1:] != first.shape[1:]
            or w.untyped_storage().data_ptr() != first.untyped_storage().data_ptr()
            or w.data_ptr() != first.data_ptr() + offset * w.element_size()
        ):
            return None
        offset += w.numel()
    rows = sum(int(w.shape[0]) for w in weights)
    return first.as_strided((rows, *first.shape[1:]), first.stride())


def _weight_block(linears: Sequence[Any]) -> torch.Tensor:
    """The weights of ``linears`` stacked as one ``[sum(out), in]`` weight, so one matmul runs
    all of them (outputs side by side).

    Each module's weight is rebound to its row range of the block (contiguous, values
    unchanged), so transformers' own forward still runs on it and the weights' memory does
    not double (an 8B model's QKV and MLP would need ~13 GB more). A second runner on the
    same model finds the row ranges and reuses the block.
    """
    weights = [m.weight.detach() for m in linears]
    block = _row_block(weights)
    if block is None:
        # A normal tensor even when built under inference_mode: an inference tensor as the
        # modules' weight would break their forward outside it.
        with torch.inference_mode(False), torch.no_grad():
            block = torch.cat(weights)
            offset = 0
            for m in linears:
                n = int(m.weight.shape[0])
                m.weight.data = block[offset : offset + n]
                offset += n
    return block


def _projection(module: Any) -> Fn:
    """A linear on 2-D input: for a plain one ``torch.mm`` on the weight's transposed view
    (skips F.linear's linear -> matmul -> mm dispatch chain); else its forward."""
    if _plain(module):
        weight_t = module.weight.t()
        return lambda x: torch.mm(x, weight_t)
    return _linear(module)


def _qkv(attn: Any) -> Fn:
    """Q, K and V projections of 2-D input as one matmul (outputs side by side: q | k | v)."""
    parts = (attn.q_proj, attn.k_proj, attn.v_proj)
    if all(_plain(m) for m in parts):
        block_t = _weight_block(parts).t()
        return lambda x: torch.mm(x, block_t)
    fns = [_linear(m) for m in parts]
    return lambda x: torch.cat([f(x) for f in fns], dim=-1)


def _rms_norm(module: Any) -> Fn:
    """LlamaRMSNorm without the module call: for fp32 weights on the CPU ATen's one
    ``rms_norm`` op (the same op sequence in C++, 1 dispatch instead of 8; bit-identical to
    the module on the CPU, where the tests check it); elsewhere the module's exact op sequence
    (on other devices ``rms_norm`` is a different kernel, and in other dtypes it rounds after
    the weight where the module rounds before). Any other norm through its forward."""
    if type(module).__name__ != "LlamaRMSNorm":
        return cast(Fn, module.forward)
    weight, eps = module.weight, float(module.variance_epsilon)
    if weight.dtype == torch.float32 and weight.device.type == "cpu":
        shape = (int(weight.shape[0]),)
        return lambda x: torch.rms_norm(x, shape, weight, eps)

    def norm(x: torch.Tensor) -> torch.Tensor:
        h = x.to(torch.float32)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
        return cast(torch.Tensor, weight * h.to(x.dtype))

    return norm


def _mlp(module: Any) -> Fn:
    """LlamaMLP (SiLU, no bias) on 2-D input with gate and up in one matmul; any other MLP
    through its forward."""
    act = getattr(module, "act_fn", None)
    if (
        type(module).__name__ != "LlamaMLP"
        or type(act).__name__ != "SiLUActivation"
        or not all(_plain(m) for m in (module.gate_proj, module.up_proj))
    ):
        return cast(Fn, module.forward)
    gate_up_t = _weight_block((module.gate_proj, module.up_proj)).t()
    inter = int(module.gate_proj.weight.shape[0])
    down = _projection(module.down_proj)

    def mlp(x: torch.Tensor) -> torch.Tensor:
        gu = torch.mm(x, gate_up_t)
        return down(F.silu(gu[:, :inter]).mul_(gu[:, inter:]))

    return mlp


@dataclass(frozen=True)
class _LayerOps:
    """One decoder layer's pieces, resolved once: a tiny-model decode step at batch 1 is mostly
    the fixed cost of small ops (module calls were ~15% of it), so each piece is as few ops
    as the numerics allow (QKV and gate+up fused, the fp32 norm on the CPU one op)."""

    input_norm: Fn
    qkv: Fn
    o: Fn
    post_norm: Fn
    mlp: Fn
    scaling: float

    @classmethod
    def of(cls, layer: Any) -> _LayerOps:
        attn = layer.self_attn
        return cls(
            input_norm=_rms_norm(layer.input_layernorm),
            qkv=_qkv(attn),
            o=_projection(attn.o_proj),
            post_norm=_rms_norm(layer.post_attention_layernorm),
            mlp=_mlp(layer.mlp),
            scaling=float(attn.scaling),
        )


class ModelRunner:
    """Runs packed steps of a Llama-like ``LoadedModel`` against per-request KV caches.

    Building one stacks each layer's Q/K/V and gate/up weights into one block each for the
    fused matmuls and rebinds the modules' weights to row ranges of those blocks (see
    ``_weight_block``): values never change, so the model's own forward is unaffected.
    """

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        inner = loaded.model.model
        embed = inner.embed_tokens
        self._embed: Fn = (
            partial(F.embedding, weight=embed.weight)
            if type(embed) is torch.nn.Embedding
            else cast(Fn, embed.forward)
        )
        self._layers = [_LayerOps.of(layer) for layer in inner.layers]
        self._norm = _rms_norm(inner.norm)
        self._rotary = inner.rotary_emb
        self._lm_head = _projection(loaded.model.lm_head)
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
        if len(items) == 1:
            flat = list(items[0].token_ids)
        else:
            flat = [t for it in items for t in it.token_ids]
        total = len(flat)
        h = self._embed(torch.tensor(flat, dtype=torch.long, device=dev))  # [T, hidden]
        cos, sin = self._rope(items, h)  # [T, 1, head_dim]; sin sign-folded
        heads, kv_heads, d = self._num_heads, self.loaded.num_kv_heads, self.loaded.head_dim
        qk_width = (heads + kv_heads) * d
        single = len(items) == 1
        if single:
            # One request (the common batch-1 decode): no packing buffer, no per-item spans.
            it, cache = items[0], caches[0]
            mask = self._mask(total, it.start, dev)
        else:
            # Per item: its rows, and its mask (built once per step, shared by every layer).
            spans = []
            offset = 0
            for it in items:
                n = len(it.token_ids)
                spans.append((slice(offset, offset + n), n, self._mask(n, it.start, dev)))
                offset += n
        for layer_idx, ops in enumerate(self._layers):
            qkv = ops.qkv(ops.input_norm(h))  # [T, (heads + 2 kv_heads) * d]
            qk = _rotate(qkv[:, :qk_width].view(total, heads + kv_heads, d), cos, sin)
            q, k = qk[:, :heads], qk[:, heads:]
            v = qkv[:, qk_width:].view(total, kv_heads, d)
            if single:
                cache.write(layer_idx, it.start, k.transpose(0, 1), v.transpose(0, 1))
                keys, values = cache.view(layer_idx, it.start + total)
                out = self._attend(q, keys, values, it.start, ops.scaling, mask)
            else:
                out = torch.empty(total, heads * d, dtype=h.dtype, device=dev)
                for item, item_cache, (sl, n, item_mask) in zip(items, caches, spans, strict=True):
                    item_cache.write(
                        layer_idx, item.start, k[sl].transpose(0, 1), v[sl].transpose(0, 1)
                    )
                    keys, values = item_cache.view(layer_idx, item.start + n)
                    out[sl] = self._attend(q[sl], keys, values, item.start, ops.scaling, item_mask)
            h = h + ops.o(out)
            h = h + ops.mlp(ops.post_norm(h))
        if single:
            cache.advance(total)
            if not it.wants_logits:
                return h.new_empty((0, self.loaded.vocab_size), dtype=torch.float32)
            last = h[total - 1 :]
        else:
            for item, item_cache in zip(items, caches, strict=True):
                item_cache.advance(len(item.token_ids))
            wanting = zip(spans, items, strict=True)
            rows = [sl.stop - 1 for (sl, _, _), item in wanting if item.wants_logits]
            last = h[torch.tensor(rows, dtype=torch.long, device=dev)]
        logits: torch.Tensor = self._lm_head(self._norm(last)).float()
        return logits

    def _rope(
        self, items: Sequence[StepItem], h: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sign-folded sin (``_sign_fold``) ``[T, 1, head_dim]`` for the positions of
        ``items``.

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
                cos_t, sin_t = self._rotary(h[None], torch.arange(rows, device=dev)[None])
                self._rope_table = (cos_t[0, :, None, :], _sign_fold(sin_t[0, :, None, :]))
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
        cos, sin = self._rotary(h[None], positions[None])
        return cos[0, :, None, :], _sign_fold(sin[0, :, None, :])

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

"""The model runner: attention paths, the RoPE table and rotation, fused layer functions."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
import transformers
from torch.overrides import TorchFunctionMode
from transformers.models.llama.modeling_llama import (
    LlamaDecoderLayer,
    LlamaRMSNorm,
    apply_rotary_pos_emb,
)

from tokenwatt.engine import runner as runner_module
from tokenwatt.engine.kv import KVCacheManager
from tokenwatt.engine.model import LoadedModel
from tokenwatt.engine.runner import (
    ModelRunner,
    StepItem,
    _attend_continuation,
    _linear,
    _mlp,
    _projection,
    _qkv,
    _rms_norm,
    _rotate,
    _sign_fold,
)


def _ids(n: int, seed: int = 0) -> tuple[int, ...]:
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randint(32, 127, (n,), generator=gen).tolist())


def _masked_reference(
    q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, start: int, scale: float
) -> torch.Tensor:
    n = q.shape[0]
    mask = torch.ones(n, start + n, dtype=torch.bool).tril(start)
    o = F.scaled_dot_product_attention(
        q.transpose(0, 1)[None],
        keys[None],
        values[None],
        attn_mask=mask,
        scale=scale,
        enable_gqa=True,
    )
    return o[0].transpose(0, 1).reshape(n, -1)


def test_continuation_attention_matches_explicit_mask() -> None:
    """The split (cached part unmasked + new part causal) equals masked SDPA within 1e-5."""
    gen = torch.Generator().manual_seed(1)
    q = torch.randn(37, 4, 8, generator=gen)
    keys = torch.randn(2, 100 + 37, 8, generator=gen)
    values = torch.randn(2, 100 + 37, 8, generator=gen)
    got = _attend_continuation(q, keys, values, 100, 0.3)
    want = _masked_reference(q, keys, values, 100, 0.3)
    assert got.shape == (37, 32)
    assert torch.allclose(got, want, atol=1e-5, rtol=0)


def test_continuation_attention_keeps_bfloat16() -> None:
    """In bfloat16 the split returns bfloat16 within bfloat16 rounding of the masked path."""
    gen = torch.Generator().manual_seed(2)
    q = torch.randn(9, 4, 16, generator=gen).bfloat16()
    keys = torch.randn(2, 40, 16, generator=gen).bfloat16()
    values = torch.randn(2, 40, 16, generator=gen).bfloat16()
    got = _attend_continuation(q, keys, values, 31, 0.25)
    want = _masked_reference(q.float(), keys.float(), values.float(), 31, 0.25)
    assert got.dtype == torch.bfloat16
    assert torch.allclose(got.float(), want, atol=3e-2, rtol=0)


def test_chunked_prefill_logits_match_one_pass(tiny: LoadedModel) -> None:
    """A prompt run as 3 chunks (continuations) gives the one-pass logits within 1e-4."""
    runner = ModelRunner(tiny)
    kv = KVCacheManager(runner.layout(), capacity_tokens=1024)
    ids = _ids(150)
    whole = runner.execute([StepItem("a", ids, 0)], [kv.allocate("a", 150)])
    cache = kv.allocate("b", 150)
    runner.execute([StepItem("b", ids[:64], 0, False)], [cache])
    runner.execute([StepItem("b", ids[64:100], 64, False)], [cache])
    chunked = runner.execute([StepItem("b", ids[100:], 100)], [cache])
    assert cache.length == 150
    assert torch.allclose(chunked, whole, atol=1e-4, rtol=0)


def test_decode_logits_match_one_pass(tiny: LoadedModel) -> None:
    """Decoding the last token alone (grouped-query path) matches the one-pass logits."""
    runner = ModelRunner(tiny)
    kv = KVCacheManager(runner.layout(), capacity_tokens=1024)
    ids = _ids(90, seed=3)
    whole = runner.execute([StepItem("a", ids, 0)], [kv.allocate("a", 90)])
    cache = kv.allocate("b", 90)
    runner.execute([StepItem("b", ids[:-1], 0, False)], [cache])
    step = runner.execute([StepItem("b", ids[-1:], 89)], [cache])
    assert torch.allclose(step, whole, atol=1e-4, rtol=0)


def test_rope_table_rows_equal_per_step_rotary(tiny: LoadedModel) -> None:
    """cos and sign-folded sin from the cached table are bit-identical to the model's rotary."""
    runner = ModelRunner(tiny)
    h = torch.zeros(3, 1, dtype=tiny.dtype)
    items = [StepItem("a", (1, 2), 5), StepItem("b", (3,), 700)]
    cos, sin = runner._rope(items, h)
    ref_cos, ref_sin = tiny.model.model.rotary_emb(h[None], torch.tensor([[5, 6, 700]]))
    assert torch.equal(cos, ref_cos[0, :, None, :])
    assert torch.equal(sin[..., :16], -ref_sin[0, :, None, :16])
    assert torch.equal(sin[..., 16:], ref_sin[0, :, None, 16:])


def test_rotate_is_bit_identical_to_transformers_rope(tiny: LoadedModel) -> None:
    """One flip with the sign folded into sin gives exactly apply_rotary_pos_emb's q and k."""
    gen = torch.Generator().manual_seed(9)
    q = torch.randn(1, 4, 7, 32, generator=gen)
    k = torch.randn(1, 2, 7, 32, generator=gen)
    cos, sin = tiny.model.model.rotary_emb(q, torch.arange(100, 107)[None])
    want_q, want_k = apply_rotary_pos_emb(q, k, cos, sin)
    cos_t, sin_t = cos[0, :, None, :], _sign_fold(sin[0, :, None, :])
    assert torch.equal(_rotate(q[0].transpose(0, 1), cos_t, sin_t), want_q[0].transpose(0, 1))
    assert torch.equal(_rotate(k[0].transpose(0, 1), cos_t, sin_t), want_k[0].transpose(0, 1))


def test_batched_continuation_and_decode_match_alone(tiny: LoadedModel) -> None:
    """A continuation chunk packed with a decode gives each the logits it gets alone (1e-4)."""
    runner = ModelRunner(tiny)
    kv = KVCacheManager(runner.layout(), capacity_tokens=4096)
    a_ids, b_ids = _ids(80, seed=4), _ids(50, seed=5)
    ca, cb = kv.allocate("a", 80), kv.allocate("b", 50)
    runner.execute([StepItem("a", a_ids[:40], 0, False)], [ca])
    runner.execute([StepItem("b", b_ids[:-1], 0, False)], [cb])
    packed = runner.execute(
        [StepItem("a", a_ids[40:], 40), StepItem("b", b_ids[-1:], 49)], [ca, cb]
    )
    alone_a = runner.execute([StepItem("x", a_ids, 0)], [kv.allocate("x", 80)])
    alone_b = runner.execute([StepItem("y", b_ids, 0)], [kv.allocate("y", 50)])
    assert torch.allclose(packed[0], alone_a[0], atol=1e-4, rtol=0)
    assert torch.allclose(packed[1], alone_b[0], atol=1e-4, rtol=0)


def _llama_layer(seed: int = 6) -> Any:
    """A fresh tiny-shaped Llama decoder layer (fusing rebinds its weights)."""
    config = transformers.LlamaConfig(
        hidden_size=128,
        intermediate_size=352,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_hidden_layers=1,
        initializer_range=0.3,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return LlamaDecoderLayer(config, 0).eval()


def test_layer_functions_match_modules() -> None:
    """Norm and projection bit-identical; fused QKV and MLP within 1e-5 of the modules."""
    layer = _llama_layer()
    attn = layer.self_attn
    x = torch.randn(7, 128, generator=torch.Generator().manual_seed(6))
    with torch.inference_mode():
        assert torch.equal(_rms_norm(layer.input_layernorm)(x), layer.input_layernorm(x))
        assert torch.equal(_linear(attn.q_proj)(x), attn.q_proj(x))
        assert torch.allclose(_projection(attn.o_proj)(x), attn.o_proj(x), atol=1e-5, rtol=0)
        want_qkv = torch.cat((attn.q_proj(x), attn.k_proj(x), attn.v_proj(x)), dim=-1)
        want_mlp = layer.mlp(x)
        qkv, mlp = _qkv(attn)(x), _mlp(layer.mlp)(x)
    assert torch.allclose(qkv, want_qkv, atol=1e-5, rtol=0)
    assert torch.allclose(mlp, want_mlp, atol=1e-5, rtol=0)


class _Calls(TorchFunctionMode):
    """Records the name of every torch function called while active."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_function__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        self.names.append(getattr(func, "__name__", repr(func)))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize(("device", "one_op"), [("cpu", True), ("meta", False)])
def test_fp32_norm_is_one_op_only_on_the_cpu(device: str, one_op: bool) -> None:
    """fp32 on the CPU (where it is checked bit-identical, above) runs ATen's one rms_norm;
    on any other device (meta stands in for a GPU) the module's own op sequence."""
    norm = LlamaRMSNorm(128, eps=1e-5).to(device)
    fn = _rms_norm(norm)
    x = torch.randn(3, 128, device=device)
    with torch.inference_mode(), _Calls() as calls:
        out = fn(x)
    assert out.shape == (3, 128) and out.device.type == device
    assert ("rms_norm" in calls.names) is one_op
    assert ("rsqrt" in calls.names) is not one_op


def test_fusing_rebinds_weights_as_views_and_reuses_them() -> None:
    """Q/K/V weights become consecutive row ranges of one block (same values, no second
    copy, still contiguous); fusing again finds them and keeps the block."""
    attn = _llama_layer().self_attn
    parts = (attn.q_proj, attn.k_proj, attn.v_proj)
    before = [m.weight.detach().clone() for m in parts]
    x = torch.randn(3, 128, generator=torch.Generator().manual_seed(8))
    with torch.inference_mode():
        first = _qkv(attn)(x)
    storage = attn.q_proj.weight.untyped_storage().data_ptr()
    for m, want in zip(parts, before, strict=True):
        assert m.weight.untyped_storage().data_ptr() == storage
        assert m.weight.is_contiguous() and torch.equal(m.weight, want)
    assert attn.k_proj.weight.data_ptr() == attn.q_proj.weight.data_ptr() + 128 * 128 * 4
    with torch.inference_mode():
        second = _qkv(attn)(x)
    assert torch.equal(first, second)
    assert attn.q_proj.weight.untyped_storage().data_ptr() == storage


def test_fusing_under_inference_mode_keeps_the_modules_usable() -> None:
    """A runner built inside inference_mode rebinds normal tensors: the module still runs
    with autograd on (an inference-tensor weight would raise there)."""
    attn = _llama_layer().self_attn
    with torch.inference_mode():
        _qkv(attn)
    assert not attn.q_proj.weight.is_inference()
    x = torch.randn(2, 128, generator=torch.Generator().manual_seed(12))
    assert attn.q_proj(x).requires_grad


def test_unknown_modules_run_through_their_forward() -> None:
    """A norm, projection or MLP of another class is called as is, not replaced by Llama's."""
    norm = torch.nn.LayerNorm(4)
    x = torch.randn(2, 4, generator=torch.Generator().manual_seed(7))
    with torch.inference_mode():
        assert torch.equal(_rms_norm(norm)(x), norm(x))
        assert torch.equal(_mlp(norm)(x), norm(x))
        assert torch.equal(_projection(norm)(x), norm(x))


def test_projections_with_bias_are_not_fused() -> None:
    """Q/K/V with biases (Qwen2-like) run as three linears, outputs side by side."""
    attn = _llama_layer().self_attn
    gen = torch.Generator().manual_seed(9)
    for m in (attn.q_proj, attn.k_proj, attn.v_proj):
        m.bias = torch.nn.Parameter(torch.randn(m.out_features, generator=gen))
    x = torch.randn(2, 128, generator=gen)
    with torch.inference_mode():
        want = torch.cat((attn.q_proj(x), attn.k_proj(x), attn.v_proj(x)), dim=-1)
        assert torch.equal(_qkv(attn)(x), want)


def test_decode_logits_match_transformers_at_long_context(tiny: LoadedModel) -> None:
    """Decoding 3 tokens after a 2,000-token prefill gives transformers' own logits (1e-4)."""
    runner = ModelRunner(tiny)
    kv = KVCacheManager(runner.layout(), capacity_tokens=4096)
    ids = _ids(2003, seed=10)
    cache = kv.allocate("a", 2003)
    runner.execute([StepItem("a", ids[:2000], 0, False)], [cache])
    steps = [
        runner.execute([StepItem("a", (token,), 2000 + i)], [cache])
        for i, token in enumerate(ids[2000:])
    ]
    with torch.inference_mode():
        ref = tiny.model(torch.tensor([ids])).logits[0, 2000:]
    assert torch.allclose(torch.cat(steps), ref, atol=1e-4, rtol=0)


def test_continuation_falls_back_to_masked_sdpa(
    tiny: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the fused CPU kernel op, a continuation still gives the one-pass logits."""
    monkeypatch.setattr(runner_module, "_flash_cpu", None)
    runner = ModelRunner(tiny)
    kv = KVCacheManager(runner.layout(), capacity_tokens=1024)
    ids = _ids(70, seed=8)
    whole = runner.execute([StepItem("a", ids, 0)], [kv.allocate("a", 70)])
    cache = kv.allocate("b", 70)
    runner.execute([StepItem("b", ids[:40], 0, False)], [cache])
    chunked = runner.execute([StepItem("b", ids[40:], 40)], [cache])
    assert torch.allclose(chunked, whole, atol=1e-4, rtol=0)


def test_rope_table_grows_only_as_far_as_needed(tiny: LoadedModel) -> None:
    """The table starts at 4,096 rows and doubles when a step reaches past it, exact throughout."""
    runner = ModelRunner(tiny)
    h = torch.zeros(1, 1, dtype=tiny.dtype)
    runner._rope([StepItem("a", (1,), 10)], h)
    assert runner._rope_table is not None and runner._rope_table[0].shape[0] == 4096
    cos, _ = runner._rope([StepItem("a", (1,), 5000)], h)
    assert runner._rope_table[0].shape[0] == 8192
    ref_cos, _ = tiny.model.model.rotary_emb(h[None], torch.tensor([[5000]]))
    assert torch.equal(cos, ref_cos[0, :, None, :])

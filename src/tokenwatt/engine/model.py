"""Model building: seeded Llama-architecture presets with the byte tokenizer, or a local
Hugging Face checkpoint directory; either way a ``LoadedModel`` with a stable fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from tokenwatt.errors import ConfigError, ModelError

from .tokenizer import ByteTokenizer, HFTokenizer, Tokenizer

__all__ = [
    "DTYPES",
    "PRESETS",
    "DTypeName",
    "LoadedModel",
    "Preset",
    "load_model",
    "resolve_device",
]

log = logging.getLogger(__name__)

DTypeName = Literal["float32", "bfloat16", "float16"]
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


@dataclass(frozen=True)
class Preset:
    """The shape of a seeded random Llama-architecture model."""

    hidden_size: int = 128
    """Width of the residual stream."""
    intermediate_size: int = 352
    """Width of the SwiGLU MLP."""
    num_layers: int = 4
    """Decoder layers."""
    num_heads: int = 4
    """Query heads."""
    num_kv_heads: int = 2
    """Key/value heads (grouped-query attention when fewer than ``num_heads``)."""
    vocab_size: int = 259
    """Embedding rows; 259 is exactly the byte tokenizer (no id the tokenizer cannot print)."""
    max_context: int = 8192
    """Longest sequence (prompt + output) the engine accepts."""
    rope_theta: float = 10000.0
    """RoPE base."""
    init_std: float = 0.3
    """Std of the random weights; larger than HF's 0.02 so greedy argmax has clear winners."""


PRESETS: dict[str, Preset] = {
    # Fast on 2 CPU cores; long context for the warehouse's long-prompt benchmarks.
    "tiny": Preset(),
    # The tiny shape with a 32k context: agentic sessions that grow past 8k tokens.
    "tiny-32k": Preset(max_context=32768),
    "small": Preset(
        hidden_size=512, intermediate_size=1408, num_layers=8, num_heads=8, num_kv_heads=4
    ),
    # Real-model shapes (GPU runs only; built on request, never by default).
    "llama-1b-shape": Preset(
        hidden_size=2048,
        intermediate_size=8192,
        num_layers=16,
        num_heads=32,
        num_kv_heads=8,
        vocab_size=128256,
        rope_theta=500000.0,
        init_std=0.02,
    ),
    "llama-8b-shape": Preset(
        hidden_size=4096,
        intermediate_size=14336,
        num_layers=32,
        num_heads=32,
        num_kv_heads=8,
        vocab_size=128256,
        rope_theta=500000.0,
        init_std=0.02,
    ),
}


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model ready for the runner: module, tokenizer, shapes and fingerprint."""

    name: str
    """Preset name or checkpoint directory."""
    model: Any
    """The ``LlamaForCausalLM``-like module, in eval mode, on ``device``."""
    tokenizer: Tokenizer
    """Text <-> ids."""
    fingerprint: str
    """Stable identity of weights + shapes + dtype + tokenizer; the warehouse salts keys with it."""
    device: torch.device
    """Where the weights live."""
    dtype: torch.dtype
    """Weight and KV dtype."""
    num_layers: int
    """Decoder layers (one K and one V tensor each in a KV cache)."""
    num_kv_heads: int
    """Key/value heads per layer."""
    head_dim: int
    """Width of one head."""
    vocab_size: int
    """Logit count."""
    max_context: int
    """Longest prompt + output accepted."""


def resolve_device(device: str) -> torch.device:
    """``auto`` -> cuda when available else cpu; otherwise the named device, checked."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but no CUDA GPU is available; use cpu")
    return dev


def _dtype(dtype: str) -> torch.dtype:
    if dtype not in DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_model(
    spec: str = "tiny", *, device: str = "auto", dtype: str = "float32", seed: int = 0
) -> LoadedModel:
    """Build preset ``spec`` (seeded) or load the checkpoint directory ``spec``.

    Raises ModelError for an unknown preset or a missing/malformed checkpoint, ConfigError for
    a bad device or dtype.
    """
    torch_dtype = _dtype(dtype)
    dev = resolve_device(device)
    if spec in PRESETS:
        return _build_preset(spec, PRESETS[spec], dev, torch_dtype, seed)
    path = Path(spec).expanduser()
    if not path.exists():
        raise ModelError(
            f"model {spec!r} is neither a preset ({', '.join(PRESETS)}) nor an existing "
            "directory; pass a preset name or a local Hugging Face checkpoint directory"
        )
    return _load_checkpoint(path, dev, torch_dtype)


def _build_preset(
    name: str, p: Preset, dev: torch.device, dtype: torch.dtype, seed: int
) -> LoadedModel:
    import transformers

    # transformers' own annotations are looser than strict mypy; treat its classes as Any.
    config_cls: Any = transformers.LlamaConfig
    model_cls: Any = transformers.LlamaForCausalLM
    config = config_cls(
        vocab_size=p.vocab_size,
        hidden_size=p.hidden_size,
        intermediate_size=p.intermediate_size,
        num_hidden_layers=p.num_layers,
        num_attention_heads=p.num_heads,
        num_key_value_heads=p.num_kv_heads,
        max_position_embeddings=p.max_context,
        rope_parameters={"rope_type": "default", "rope_theta": p.rope_theta},
        initializer_range=p.init_std,
        tie_word_embeddings=False,
        bos_token_id=ByteTokenizer.BOS,
        eos_token_id=ByteTokenizer.EOS,
        pad_token_id=ByteTokenizer.PAD,
    )
    # Seed a forked RNG so building a model never disturbs the caller's random state.
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        with torch.device(dev):
            model = model_cls(config)
    model = model.to(dtype=dtype).eval()
    tokenizer = ByteTokenizer()
    head_dim = p.hidden_size // p.num_heads
    canonical = json.dumps(
        {
            "arch": "llama",
            "preset": name,
            "shape": [p.hidden_size, p.intermediate_size, p.num_layers, p.num_heads],
            "kv": [p.num_kv_heads, head_dim],
            "vocab": p.vocab_size,
            "rope": p.rope_theta,
            "init": [seed, p.init_std, dev.type],
            "dtype": str(dtype),
            "tokenizer": tokenizer.identity,
        },
        sort_keys=True,
    )
    return LoadedModel(
        name=name,
        model=model,
        tokenizer=tokenizer,
        fingerprint=f"{name}-s{seed}-{str(dtype).removeprefix('torch.')}-{_digest(canonical)}",
        device=dev,
        dtype=dtype,
        num_layers=p.num_layers,
        num_kv_heads=p.num_kv_heads,
        head_dim=head_dim,
        vocab_size=p.vocab_size,
        max_context=p.max_context,
    )


def _files_digest(path: Path, patterns: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    for pattern in patterns:
        for f in sorted(path.glob(pattern)):
            h.update(f.name.encode())
            if f.suffix == ".safetensors":
                # The header names every tensor with its dtype, shape and byte offsets: a cheap
                # identity that does not read gigabytes of weights.
                with f.open("rb") as fh:
                    size = int.from_bytes(fh.read(8), "little")
                    h.update(fh.read(min(size, 100_000_000)))
                h.update(str(f.stat().st_size).encode())
            else:
                h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _check_llama_like(model: Any, path: Path) -> None:
    inner = getattr(model, "model", None)
    needed = ("embed_tokens", "layers", "norm", "rotary_emb")
    if inner is None or not all(hasattr(inner, n) for n in needed):
        raise ModelError(f"{path}: unsupported architecture; the engine runs Llama-like models")
    attn = inner.layers[0].self_attn
    if not all(hasattr(attn, n) for n in ("q_proj", "k_proj", "v_proj", "o_proj")) or hasattr(
        attn, "q_norm"
    ):
        raise ModelError(f"{path}: unsupported attention block; the engine runs Llama-like models")


def _load_checkpoint(path: Path, dev: torch.device, dtype: torch.dtype) -> LoadedModel:
    import transformers

    auto_model: Any = transformers.AutoModelForCausalLM
    auto_tokenizer: Any = transformers.AutoTokenizer

    if not (path / "config.json").is_file():
        raise ModelError(f"{path}: no config.json; pass a Hugging Face checkpoint directory")
    if not list(path.glob("*.safetensors")):
        raise ModelError(f"{path}: no *.safetensors weights; save the checkpoint as safetensors")
    try:
        model = auto_model.from_pretrained(str(path), local_files_only=True, dtype=dtype).to(dev)
        hf_tok = auto_tokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:
        # safetensors and transformers raise their own types (SafetensorError, RuntimeError
        # on shape mismatch); every one of them means the same thing to the user
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(
            f"{path}: cannot load checkpoint ({type(exc).__name__}: {reason}); check that "
            "config.json, the *.safetensors weights and the tokenizer files belong together "
            "and are complete"
        ) from exc
    model.eval()
    _check_llama_like(model, path)
    cfg = model.config
    num_heads = int(cfg.num_attention_heads)
    head_dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // num_heads)
    tok_digest = _files_digest(path, ("tokenizer*", "*.model", "vocab*", "merges*"))
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    extra = [gen_eos] if isinstance(gen_eos, int) else list(gen_eos or [])
    tokenizer = HFTokenizer(
        hf_tok, identity=f"{type(hf_tok).__name__}:{tok_digest}", extra_stop_ids=extra
    )
    weights = _files_digest(path, ("config.json", "*.safetensors"))
    canonical = f"{weights}|{dtype}|{tokenizer.identity}"
    return LoadedModel(
        name=str(path),
        model=model,
        tokenizer=tokenizer,
        fingerprint=f"{path.name}-{str(dtype).removeprefix('torch.')}-{_digest(canonical)}",
        device=dev,
        dtype=dtype,
        num_layers=int(cfg.num_hidden_layers),
        num_kv_heads=int(getattr(cfg, "num_key_value_heads", None) or num_heads),
        head_dim=head_dim,
        vocab_size=int(cfg.vocab_size),
        max_context=int(getattr(cfg, "max_position_embeddings", 2048)),
    )

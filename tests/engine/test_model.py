"""Model building: presets, fingerprints, checkpoint errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tokenwatt.engine.model import PRESETS, LoadedModel, load_model, resolve_device
from tokenwatt.errors import ConfigError, ModelError


def test_tiny_shapes(tiny: LoadedModel) -> None:
    """The tiny preset is a 4-layer GQA model over the 259-id byte vocabulary."""
    assert (tiny.num_layers, tiny.num_kv_heads, tiny.head_dim, tiny.vocab_size) == (4, 2, 32, 259)
    assert tiny.max_context == 8192
    assert tiny.dtype == torch.float32


def test_tiny_32k_is_tiny_with_a_longer_context(tiny: LoadedModel) -> None:
    """`tiny-32k` has tiny's shapes and weights and a 32,768-token context."""
    long = load_model("tiny-32k", device="cpu")
    assert long.max_context == 32768
    assert (long.num_layers, long.num_kv_heads, long.head_dim) == (4, 2, 32)
    weights = tiny.model.state_dict()
    assert long.model.state_dict().keys() == weights.keys()
    assert all(torch.equal(t, weights[name]) for name, t in long.model.state_dict().items())


def test_fingerprint_is_stable_across_builds(tiny: LoadedModel) -> None:
    """Building the same preset twice gives the same fingerprint and the same weights."""
    again = load_model("tiny", device="cpu")
    assert again.fingerprint == tiny.fingerprint
    w1 = tiny.model.model.embed_tokens.weight
    assert torch.equal(again.model.model.embed_tokens.weight, w1)


def test_fingerprint_changes_with_seed(tiny: LoadedModel) -> None:
    """Another seed means other weights, so another fingerprint."""
    assert load_model("tiny", device="cpu", seed=1).fingerprint != tiny.fingerprint


def test_building_does_not_disturb_global_rng() -> None:
    """load_model draws from a forked RNG: the caller's random stream is unchanged."""
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    load_model("tiny", device="cpu")
    assert torch.equal(torch.rand(3), expected)


def test_unknown_spec_is_a_model_error(tmp_path: Path) -> None:
    """A name that is neither a preset nor a directory says which presets exist."""
    with pytest.raises(ModelError, match="neither a preset"):
        load_model(str(tmp_path / "nope"), device="cpu")


def test_directory_without_config_is_a_model_error(tmp_path: Path) -> None:
    """An empty directory is reported as missing config.json."""
    with pytest.raises(ModelError, match=r"no config\.json"):
        load_model(str(tmp_path), device="cpu")


def test_malformed_checkpoint_is_a_model_error(tmp_path: Path) -> None:
    """A config.json that is not JSON is a clear ModelError, not a traceback."""
    (tmp_path / "config.json").write_text("{not json")
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(ModelError, match="cannot load checkpoint"):
        load_model(str(tmp_path), device="cpu")


def _save_checkpoint(tiny: LoadedModel, path: Path) -> None:
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {(chr(i) if i > 32 else f"<{i}>"): i for i in range(256)}
    fast = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.BPE(vocab=vocab, merges=[])),
        bos_token="<0>",
        eos_token="<1>",
    )
    tiny.model.save_pretrained(path)
    fast.save_pretrained(path)


def test_saved_preset_loads_as_checkpoint(tiny: LoadedModel, tmp_path: Path) -> None:
    """A saved tiny model (with a local tokenizer) loads back with identical weights."""
    _save_checkpoint(tiny, tmp_path)
    loaded = load_model(str(tmp_path), device="cpu")
    assert torch.equal(loaded.model.model.embed_tokens.weight, tiny.model.model.embed_tokens.weight)
    assert loaded.tokenizer.encode("abc") == [97, 98, 99]
    assert (loaded.num_layers, loaded.num_kv_heads, loaded.head_dim) == (4, 2, 32)


def test_checkpoint_fingerprint_is_stable(tiny: LoadedModel, tmp_path: Path) -> None:
    """Loading the same directory twice gives the same fingerprint, unlike the preset's."""
    _save_checkpoint(tiny, tmp_path)
    first = load_model(str(tmp_path), device="cpu").fingerprint
    assert load_model(str(tmp_path), device="cpu").fingerprint == first
    assert first != tiny.fingerprint


def test_bad_dtype_and_device_are_config_errors() -> None:
    """Unknown dtype and device names fail with the accepted choices."""
    with pytest.raises(ConfigError, match="float32"):
        load_model("tiny", dtype="float8")
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("tpu:0")


def test_real_shapes_are_presets_not_built_by_default() -> None:
    """The 8B shape exists as a preset (built only on request)."""
    assert PRESETS["llama-8b-shape"].num_layers == 32


def test_checkpoint_stop_ids_include_generation_config_eos(
    tiny: LoadedModel, tmp_path: Path
) -> None:
    """EOS ids of the checkpoint's generation config end generation too (end-of-turn ids)."""
    original = tiny.model.generation_config.eos_token_id
    tiny.model.generation_config.eos_token_id = [1, 7]
    try:
        _save_checkpoint(tiny, tmp_path)
    finally:
        tiny.model.generation_config.eos_token_id = original
    assert load_model(str(tmp_path), device="cpu").tokenizer.stop_ids == frozenset({1, 7})


def test_bfloat16_tiny_runs_with_bfloat16_kv() -> None:
    """dtype bfloat16 builds bf16 weights, a distinct fingerprint, and bf16 KV."""
    from tokenwatt.engine.core import EngineCore
    from tokenwatt.engine.sampling import SamplingParams

    lm = load_model("tiny", device="cpu", dtype="bfloat16")
    assert lm.model.model.embed_tokens.weight.dtype == torch.bfloat16
    assert "bfloat16" in lm.fingerprint
    core = EngineCore(lm)
    core.add_request("r", lm.tokenizer.encode("hi"), SamplingParams(max_tokens=2, temperature=0))
    core.step()
    assert core.kv.get("r").prefix(1).keys[0].dtype == torch.bfloat16


@pytest.mark.slow
def test_small_preset_builds() -> None:
    """The small preset (8 layers, hidden 512) builds with its documented shapes."""
    lm = load_model("small", device="cpu")
    assert (lm.num_layers, lm.num_kv_heads, lm.head_dim) == (8, 4, 64)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda d: (d / "model.safetensors").write_bytes(b"garbage"), id="garbage"),
        pytest.param(lambda d: _truncate(d / "model.safetensors"), id="truncated"),
        pytest.param(
            lambda d: (d / "config.json").write_text(
                (d / "config.json").read_text().replace('"hidden_size": 128', '"hidden_size": 64')
            ),
            id="shape-mismatch",
        ),
    ],
)
def test_damaged_weights_are_a_model_error(
    tiny: LoadedModel, tmp_path: Path, damage: Callable[[Path], object]
) -> None:
    """Corrupt, truncated or mis-shaped safetensors give a ModelError naming the folder."""
    _save_checkpoint(tiny, tmp_path)
    assert '"hidden_size": 128' in (tmp_path / "config.json").read_text()
    damage(tmp_path)
    with pytest.raises(ModelError, match="cannot load checkpoint"):
        load_model(str(tmp_path), device="cpu")

"""Tokenizer contract, run against every implementation (byte-level and a local HF one)."""

from __future__ import annotations

import pytest

from tokenwatt.engine.tokenizer import ByteTokenizer, HFTokenizer, Tokenizer, render_chat


def _hf() -> HFTokenizer:
    from tokenizers import Tokenizer as RawTokenizer
    from tokenizers import decoders, models
    from transformers import PreTrainedTokenizerFast

    vocab = {(chr(i) if i > 32 else f"<{i}>"): i for i in range(256)}
    raw = RawTokenizer(models.BPE(vocab=vocab, merges=[]))
    raw.decoder = decoders.Fuse()  # one character per token: join without spaces
    fast = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token="<0>",
        eos_token="<1>",
    )
    return HFTokenizer(fast, identity="test-hf", extra_stop_ids=[7])


@pytest.fixture(params=["bytes", "hf"])
def tokenizer(request: pytest.FixtureRequest) -> Tokenizer:
    """Each Tokenizer implementation."""
    return ByteTokenizer() if request.param == "bytes" else _hf()


def test_is_a_tokenizer(tokenizer: Tokenizer) -> None:
    """Both satisfy the runtime-checkable protocol."""
    assert isinstance(tokenizer, Tokenizer)


def test_ascii_roundtrip(tokenizer: Tokenizer) -> None:
    """Plain ASCII text (no spaces: the toy HF vocabulary has none) decodes back to itself."""
    assert tokenizer.decode(tokenizer.encode("hello,world!")) == "hello,world!"


def test_eos_is_a_stop_id(tokenizer: Tokenizer) -> None:
    """EOS always ends generation."""
    assert tokenizer.eos_id is not None and tokenizer.eos_id in tokenizer.stop_ids


def test_identity_is_stable(tokenizer: Tokenizer) -> None:
    """The identity string is non-empty and the same on every call."""
    assert tokenizer.identity and tokenizer.identity == tokenizer.identity


def test_chat_without_template_uses_render_chat(tokenizer: Tokenizer) -> None:
    """Without a chat template, a chat is the rendered text, encoded."""
    chat = [{"role": "user", "content": "hi"}]
    assert tokenizer.apply_chat(chat) == tokenizer.encode(render_chat(chat))


def test_hf_stop_ids_add_generation_eos() -> None:
    """Extra stop ids join the tokenizer's EOS."""
    assert _hf().stop_ids == frozenset({1, 7})


def test_render_chat_format() -> None:
    """The fallback template is `<|role|>` lines and an open assistant turn."""
    chat = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    assert render_chat(chat) == "<|system|>\ns\n<|user|>\nu\n<|assistant|>\n"

"""Sampling parameters and the token choice."""

from __future__ import annotations

import pytest
import torch

from tokenwatt.engine.sampling import SamplingParams, sample_token
from tokenwatt.engine.tokenizer import ByteTokenizer
from tokenwatt.errors import ConfigError


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_tokens": 0}, "max_tokens must be >= 1"),
        ({"max_tokens": 1.5}, "max_tokens must be an integer"),
        ({"temperature": -0.1}, "temperature must be between 0 and 2"),
        ({"top_p": 0.0}, r"top_p must be in \(0, 1\]"),
        ({"stop": ("",)}, "stop strings must be non-empty"),
    ],
)
def test_invalid_params_are_named(kwargs: dict[str, object], message: str) -> None:
    """Each invalid field fails with a message naming it."""
    with pytest.raises(ConfigError, match=message):
        SamplingParams(**kwargs)  # type: ignore[arg-type]


def test_greedy_is_argmax() -> None:
    """Temperature 0 picks the largest logit."""
    logits = torch.tensor([0.1, 3.0, 2.9])
    assert sample_token(logits, SamplingParams(temperature=0), None) == 1


def test_tiny_top_p_keeps_only_the_best() -> None:
    """top_p small enough leaves one candidate: the most likely token, whatever the seed."""
    logits = torch.tensor([0.0, 5.0, 1.0])
    params = SamplingParams(temperature=1.0, top_p=0.01)
    picks = {sample_token(logits, params, torch.Generator().manual_seed(s)) for s in range(20)}
    assert picks == {1}


def test_byte_tokenizer_roundtrip_and_specials() -> None:
    """Text round-trips through bytes; BOS/EOS/PAD decode to nothing."""
    tok = ByteTokenizer()
    ids = tok.encode("héllo")
    assert ids[0] == 256 and len(ids) == 7
    assert tok.decode([*ids, 257, 258]) == "héllo"

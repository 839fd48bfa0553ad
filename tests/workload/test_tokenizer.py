"""Local tokenizer loading: exact prompt lengths with a real tokenizer; clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenwatt.errors import ModelError
from tokenwatt.workload.prompts import PromptSynthesizer
from tokenwatt.workload.tokenizer import load_tokenizer


def _train_tokenizer_json(path: Path) -> Path:
    tokenizers = pytest.importorskip("tokenizers")
    bpe = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token=None))
    bpe.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = tokenizers.decoders.ByteLevel()
    alphabet = tokenizers.pre_tokenizers.ByteLevel.alphabet()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=alphabet, special_tokens=["<s>"]
    )
    bpe.train_from_iterator([PromptSynthesizer().unique(50, f"c{i}") for i in range(50)], trainer)
    bpe.post_processor = tokenizers.processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", bpe.token_to_id("<s>"))]
    )
    out = path / "tokenizer.json"
    bpe.save(str(out))
    return out


def test_missing_path_is_a_model_error(tmp_path: Path) -> None:
    """A path that does not exist names itself and says nothing is downloaded."""
    with pytest.raises(ModelError, match="never downloaded"):
        load_tokenizer(tmp_path / "nope")


@pytest.mark.slow
def test_tokenizer_json_gives_exact_lengths_with_bos(tmp_path: Path) -> None:
    """A tokenizer.json that adds a BOS: prompts measure exactly N tokens with it."""
    tok = load_tokenizer(_train_tokenizer_json(tmp_path))
    synth = PromptSynthesizer(tok)
    assert synth.special_tokens == 1
    lengths = [2, 9, 64, 300]
    assert [len(tok.encode(synth.unique(n, f"r{n}"))) for n in lengths] == lengths
    assert synth.token_counts == "exact"


@pytest.mark.slow
def test_directory_without_tokenizer_is_a_model_error(tmp_path: Path) -> None:
    """An empty directory raises ModelError explaining what it must hold."""
    with pytest.raises(ModelError, match=r"tokenizer\.json"):
        load_tokenizer(tmp_path)

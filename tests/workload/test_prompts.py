"""Prompt synthesis: exact lengths, uniqueness, block-shared prefixes, stated approximation."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest

from tokenwatt.errors import ConfigError
from tokenwatt.workload.prompts import APPROXIMATE_RULE, PromptSynthesizer
from tokenwatt.workload.synthetic import SyntheticSpec, synthetic_requests
from tokenwatt.workload.types import Request

BOS = 256


class ByteTokenizer:
    """Each UTF-8 byte is a token, plus an optional BOS (like the reference engine)."""

    def __init__(self, bos: bool = True) -> None:
        self.bos = bos

    def encode(self, text: str) -> list[int]:
        return ([BOS] if self.bos else []) + list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(i for i in ids if i != BOS).decode("utf-8", errors="replace")


@pytest.mark.parametrize("n", [1, 2, 3, 7, 50, 513])
def test_unique_prompt_has_exactly_n_tokens_with_bos(n: int) -> None:
    """len(encode(prompt)) == n, BOS included, for short and long prompts."""
    synth = PromptSynthesizer(ByteTokenizer())
    assert len(synth.tokenizer.encode(synth.unique(n, "req-1"))) == n


def test_unique_prompts_differ_from_their_first_token() -> None:
    """Two unique prompts start with their nonces, so they share no prefix beyond BOS."""
    synth = PromptSynthesizer(ByteTokenizer(bos=False))
    a, b = synth.unique(64, "a1"), synth.unique(64, "b2")
    assert a.startswith("a1:") and b.startswith("b2:")
    assert a[0] != b[0]


def test_salt_changes_the_text() -> None:
    """Another salt gives other text for the same request, same length."""
    tok = ByteTokenizer()
    a = PromptSynthesizer(tok, salt="run1").from_blocks([1, 2], 16, 33)
    b = PromptSynthesizer(tok, salt="run2").from_blocks([1, 2], 16, 33)
    assert a != b and len(tok.encode(a)) == len(tok.encode(b)) == 33


def test_shared_block_ids_share_exactly_that_prefix() -> None:
    """Requests sharing leading ids [7, 8] share 32 tokens exactly and differ at token 33."""
    tok = ByteTokenizer(bos=False)
    synth = PromptSynthesizer(tok)
    a = tok.encode(synth.from_blocks([7, 8, 9], 16, 48))
    b = tok.encode(synth.from_blocks([7, 8, 10], 16, 40))
    assert (len(a), len(b)) == (48, 40)
    assert a[:32] == b[:32]
    assert a[32:40] != b[32:40]


def test_block_layout_counts_bos_in_the_total() -> None:
    """With a BOS, the text holds n - 1 tokens and block 0's text is unchanged."""
    synth = PromptSynthesizer(ByteTokenizer())
    text = synth.from_blocks([3, 4], 16, 20)
    assert len(synth.tokenizer.encode(text)) == 20
    assert text.startswith(synth.block_text(3, 16))


def test_lengths_past_the_block_ids_are_filled_uniquely() -> None:
    """A prompt longer than its blocks gets a tail unique to its nonce."""
    tok = ByteTokenizer(bos=False)
    synth = PromptSynthesizer(tok)
    a = synth.from_blocks([1], 16, 40, nonce="x")
    b = synth.from_blocks([1], 16, 40, nonce="y")
    assert len(tok.encode(a)) == 40 and a[:16] == b[:16] and a[16:] != b[16:]


def test_for_request_fills_prompts_of_a_synthetic_workload() -> None:
    """Every synthetic request gets a prompt of its exact length; no two prompts are equal."""
    synth = PromptSynthesizer(ByteTokenizer())
    spec = SyntheticSpec(num_requests=20, prefix_share=0.5)
    reqs = [synth.for_request(r) for r in synthetic_requests(spec)]
    assert all(r.prompt is not None for r in reqs)
    assert all(len(synth.tokenizer.encode(r.prompt or "")) == r.input_tokens for r in reqs)
    assert len({r.prompt for r in reqs}) == 20


def test_for_request_without_blocks_is_unique() -> None:
    """A request without block ids gets a unique prompt led by its id."""
    synth = PromptSynthesizer(ByteTokenizer(bos=False))
    filled = synth.for_request(Request("r9", input_tokens=30))
    assert filled.prompt is not None and filled.prompt.startswith("r9:")


def test_without_tokenizer_counts_are_words_and_stated() -> None:
    """No tokenizer: N words, and token_counts states the approximation."""
    synth = PromptSynthesizer()
    assert synth.token_counts == APPROXIMATE_RULE == "approximate:1 token per word"
    assert len(synth.unique(25, "n1").split()) == 25
    assert len(synth.from_blocks([1, 2], 16, 20).split()) == 20
    assert PromptSynthesizer(ByteTokenizer()).token_counts == "exact"


def test_too_short_for_the_special_tokens() -> None:
    """Asking for fewer tokens than BOS alone raises ConfigError."""
    with pytest.raises(ConfigError, match="shorter than the 1 special"):
        PromptSynthesizer(ByteTokenizer()).unique(0, "x")


def test_block_text_is_deterministic_across_instances() -> None:
    """The same block id and salt give the same text in a new synthesizer."""
    tok = ByteTokenizer()
    assert PromptSynthesizer(tok).block_text(42, 16) == PromptSynthesizer(tok).block_text(42, 16)


def test_exact_lengths_and_shared_prefixes_with_a_bpe_tokenizer() -> None:
    """A byte-level BPE (trained in memory) also gets exact lengths and exact shared prefixes."""
    tokenizers = pytest.importorskip("tokenizers")
    bpe = tokenizers.Tokenizer(tokenizers.models.BPE())
    bpe.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = tokenizers.decoders.ByteLevel()
    corpus = [PromptSynthesizer().unique(60, f"c{i}") + " ... !!" for i in range(100)]
    alphabet = tokenizers.pre_tokenizers.ByteLevel.alphabet()
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=400, initial_alphabet=alphabet)
    bpe.train_from_iterator(corpus, trainer)

    class Bpe:
        def encode(self, text: str) -> list[int]:
            return list(bpe.encode(text).ids)

        def decode(self, ids: Sequence[int]) -> str:
            return str(bpe.decode(list(ids)))

    synth = PromptSynthesizer(Bpe())
    lengths = [1, 2, 5, 17, 100, 333]
    assert [synth.count(synth.unique(n, f"r{n}")) for n in lengths] == lengths
    assert [synth.count(synth.from_blocks([n, n + 1], 16, n)) for n in lengths] == lengths
    a = Bpe().encode(synth.from_blocks([7, 8, 9], 16, 48))
    b = Bpe().encode(synth.from_blocks([7, 8, 10], 16, 48))
    assert a[:32] == b[:32] and a[32:] != b[32:]


def test_mooncake_requests_share_exactly_their_common_hash_id_prefix() -> None:
    """Fixture lines 16 and 59 share hash ids 708-712: their prompts share 5 x 512 tokens."""
    from pathlib import Path

    from tokenwatt.workload.traces import open_trace

    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "traces"
    reqs = list(open_trace(fixture / "mooncake_synthetic_head60.jsonl"))
    tok = ByteTokenizer(bos=False)
    synth = PromptSynthesizer(tok)
    a, b = (tok.encode(synth.for_request(reqs[i]).prompt or "") for i in (15, 58))
    assert (len(a), len(b)) == (2752, 2754)
    assert a[: 5 * 512] == b[: 5 * 512]
    assert a[5 * 512 : 5 * 512 + 16] != b[5 * 512 : 5 * 512 + 16]


def test_agentic_turns_extend_the_previous_prompt() -> None:
    """Flattened agentic requests: turn t+1's prompt starts with turn t's full blocks."""
    from tokenwatt.workload.agentic import AgenticSpec, agentic_requests

    synth = PromptSynthesizer(ByteTokenizer(bos=False))
    spec = AgenticSpec(num_sessions=1, turns=3, system_prefix_tokens=64)
    prompts = [(r.input_tokens, synth.for_request(r).prompt or "") for r in agentic_requests(spec)]
    for (n0, p0), (_, p1) in itertools.pairwise(prompts):
        full = n0 // 16 * 16
        assert p1[:full] == p0[:full]
    assert [len(p) for _, p in prompts] == [n for n, _ in prompts]


def test_word_tokenizer_round_trips_and_caps_its_memory() -> None:
    """Words encode to one id each and decode back; past max_words they decode as <unk>."""
    from tokenwatt.workload.prompts import WordTokenizer

    tok = WordTokenizer(max_words=2)
    ids = tok.encode("alpha beta  gamma")
    assert len(ids) == 3
    assert tok.decode(ids) == "alpha beta <unk>"
    assert tok.encode("alpha") == ids[:1]

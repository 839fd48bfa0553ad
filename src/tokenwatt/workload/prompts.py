"""Prompt text of an exact token length, unique where it must be, shared where block ids say.

With a tokenizer (anything with ``encode``/``decode``) lengths are exact: ``len(encode(text))``
equals the request's ``input_tokens``, special tokens such as BOS included. Without one, the
stated approximation is one token per word (``token_counts == "approximate:1 token per word"``).
"""

from __future__ import annotations

import logging
import random
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

from tokenwatt.errors import ConfigError
from tokenwatt.workload.types import Request

__all__ = ["APPROXIMATE_RULE", "PromptSynthesizer", "Tokenizer", "WordTokenizer"]

log = logging.getLogger(__name__)

APPROXIMATE_RULE = "approximate:1 token per word"
"""What ``token_counts`` says when no tokenizer is known."""

# Short, common words: most BPE vocabularies hold " word" as one token, so the word-count
# approximation is close, and with a real tokenizer they keep the fitting loop short.
_WORD_TEXT = (
    "the of and to in is it you that he was for on are as with his they at be this have from "
    "or one had by word but not what all were we when your can said there use an each which "
    "she do how their if will up other about out many then them these so some her would make "
    "like him into time has look two more write go see number no way could people my than "
    "first water been call who oil its now find long down day did get come made may part over "
    "new sound take only little work know place year live me back give most very after thing "
    "our just name good sentence man think say great where help through much before line right "
    "too mean old any same tell boy follow came want show also around form three small set put "
    "end does another well large must big even such because turn here why ask went men read "
    "need land different home us move try kind hand picture again change off play spell air "
    "away animal house point page letter mother answer found study still learn should world"
)
_WORDS = tuple(_WORD_TEXT.split())


class Tokenizer(Protocol):
    """The tokenizer seam: text to token ids and back (a HF tokenizer or a byte tokenizer)."""

    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: Sequence[int]) -> str: ...


class WordTokenizer:
    """One token per whitespace-separated word: the stated approximation for unknown tokenizers.

    Ids are CRC-32s of the words, so encoding keeps no state; ``decode`` knows the words it has
    encoded, up to ``max_words`` of them (later ones decode as ``<unk>``).
    """

    def __init__(self, max_words: int = 65536) -> None:
        self._words: dict[int, str] = {}
        self._max_words = max_words

    def encode(self, text: str) -> list[int]:
        """One id per word."""
        out = []
        words = self._words
        for w in text.split():
            i = zlib.crc32(w.encode())
            if len(words) < self._max_words:
                words.setdefault(i, w)
            out.append(i)
        return out

    def decode(self, ids: Sequence[int]) -> str:
        """Words joined by spaces."""
        return " ".join(self._words.get(i, "<unk>") for i in ids)


class PromptSynthesizer:
    """Makes prompt text of exactly N tokens for a tokenizer (or N words without one).

    - :meth:`unique` starts with a nonce, so no two requests share a cacheable prefix.
    - :meth:`from_blocks` gives each block id its own deterministic text: requests that share
      leading block ids share exactly that prefix (text and token ids) and differ after it.
    ``salt`` changes every text; pass a fresh one per run so a server's prefix cache cannot
    reuse a previous run's prompts.
    """

    def __init__(
        self, tokenizer: Tokenizer | None = None, salt: str = "", cache_blocks: int = 4096
    ) -> None:
        self.tokenizer: Tokenizer = tokenizer if tokenizer is not None else WordTokenizer()
        self.token_counts = "exact" if tokenizer is not None else APPROXIMATE_RULE
        """``exact``, or ``approximate:<rule>`` when no tokenizer was given."""
        self.salt = salt
        self._exact = tokenizer is not None
        self._cache_blocks = cache_blocks
        self._blocks: OrderedDict[tuple[int, int], str] = OrderedDict()
        self._costs: dict[str, int] = {}
        self._special: int | None = None
        self._filler: str | None = None

    # -- token accounting ---------------------------------------------------------------------

    def count(self, text: str) -> int:
        """Tokens of ``text`` as the endpoint sees it (special tokens included)."""
        return len(self.tokenizer.encode(text))

    @property
    def special_tokens(self) -> int:
        """Tokens the tokenizer adds to every text (BOS and the like): ``len(encode(""))``."""
        if self._special is None:
            self._special = self.count("")
        return self._special

    def _cost(self, unit: str) -> int:
        cost = self._costs.get(unit)
        if cost is None:
            cost = self._costs[unit] = self.count(unit) - self.special_tokens
        return cost

    def _one_token_filler(self) -> str:
        if self._filler is None:
            for unit in (" a", ".", " .", ",", "a", " x", "!"):
                if self._cost(unit) == 1:
                    self._filler = unit
                    break
            else:
                raise ConfigError(
                    "tokenizer has no one-token filler among ' a', '.', ',', 'a': exact prompt "
                    "lengths are impossible; use no tokenizer (approximate counts) instead"
                )
        return self._filler

    def _fit(self, rng: random.Random, lead: str, n_text: int) -> str:
        """``n_text`` tokens (specials excluded): ``lead``, then random words, then filler."""
        if n_text <= 0:
            return ""
        parts: list[str] = []
        used = 0
        if lead:
            # Not cached: leads are nonces, one per request, and the cache would grow forever.
            lead_cost = self.count(lead) - self.special_tokens
            if lead_cost <= n_text:
                parts.append(lead)
                used = lead_cost
        while True:
            word = " " + rng.choice(_WORDS)
            cost = self._cost(word)
            if used + cost > n_text:
                break
            parts.append(word)
            used += cost
        filler = self._one_token_filler() if used < n_text else ""
        parts.extend([filler] * (n_text - used))
        return "".join(parts)

    def _repair(self, text: str, n_tokens: int) -> str:
        """Make ``len(encode(text)) == n_tokens`` where merges across parts broke additivity."""
        filler = self._one_token_filler()
        for _ in range(64):
            have = self.count(text)
            if have == n_tokens:
                return text
            if have > n_tokens:
                ids = self.tokenizer.encode(text)[self.special_tokens :]
                text = self.tokenizer.decode(ids[: max(0, len(ids) - (have - n_tokens))])
            else:
                text += filler * (n_tokens - have)
        log.warning("prompt length %d not reached exactly (got %d)", n_tokens, self.count(text))
        return text

    # -- public -------------------------------------------------------------------------------

    def unique(self, n_tokens: int, nonce: str) -> str:
        """A prompt of ``n_tokens`` tokens that starts with ``nonce`` (as far as it fits)."""
        self._check(n_tokens)
        rng = random.Random(f"{self.salt}:u:{nonce}")
        n_text = n_tokens - self.special_tokens
        lead = f"{nonce}:" if self._exact else f"{nonce}"
        text = self._fit(rng, lead, n_text)
        if text and not text.startswith(lead) and self._exact:
            # The nonce alone is longer than the prompt: keep its tail, the most distinct part.
            text = self._fit(rng, lead[-n_text:], n_text)
        return self._repair(text, n_tokens) if self._exact else text

    def block_text(self, block_id: int, n_text: int) -> str:
        """Deterministic text for one block: ``n_text`` tokens, specials excluded."""
        key = (block_id, n_text)
        text = self._blocks.get(key)
        if text is None:
            seed = zlib.crc32(f"{self.salt}:b:{block_id}".encode())
            rng = random.Random(seed ^ (block_id << 32))
            text = self._fit(rng, "", n_text)
            self._blocks[key] = text
            if len(self._blocks) > self._cache_blocks:
                self._blocks.popitem(last=False)
        else:
            self._blocks.move_to_end(key)
        return text

    def from_blocks(
        self, block_ids: Sequence[int], block_tokens: int, n_tokens: int, nonce: str = ""
    ) -> str:
        """A prompt of ``n_tokens`` laid out as ``block_tokens``-token blocks named by ids.

        Blocks past the ids (a trace whose lengths outrun its hash ids) are unique to ``nonce``.
        """
        self._check(n_tokens)
        if block_tokens < 1:
            raise ConfigError(f"block_tokens must be >= 1, got {block_tokens}")
        remaining = n_tokens - self.special_tokens
        parts: list[str] = []
        for bid in block_ids:
            if remaining <= 0:
                break
            take = min(block_tokens, remaining)
            parts.append(self.block_text(bid, take))
            remaining -= take
        if remaining > 0:
            rng = random.Random(f"{self.salt}:t:{nonce}")
            parts.append(self._fit(rng, "", remaining))
        text = "".join(parts)
        return self._repair(text, n_tokens) if self._exact else text

    def for_request(self, request: Request) -> Request:
        """``request`` with its prompt filled in (block ids honoured, else unique)."""
        if request.prefix_block_ids:
            text = self.from_blocks(
                request.prefix_block_ids,
                request.block_tokens,
                request.input_tokens,
                nonce=request.request_id,
            )
        else:
            text = self.unique(request.input_tokens, request.request_id)
        return replace(request, prompt=text)

    def _check(self, n_tokens: int) -> None:
        if n_tokens < self.special_tokens:
            raise ConfigError(
                f"a prompt of {n_tokens} tokens is shorter than the {self.special_tokens} special "
                f"tokens the tokenizer adds; ask for at least {self.special_tokens}"
            )

"""Tokenizers the engine uses: a byte-level tokenizer shipped in the package, and a wrapper
over a local Hugging Face tokenizer. Both satisfy the small ``Tokenizer`` protocol.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

__all__ = ["ByteTokenizer", "HFTokenizer", "Tokenizer", "render_chat"]


@runtime_checkable
class Tokenizer(Protocol):
    """Text <-> token ids, plus the special ids the engine needs."""

    @property
    def identity(self) -> str:
        """A stable string naming this tokenizer (part of the model fingerprint)."""
        ...

    @property
    def bos_id(self) -> int | None:
        """Id prepended to every prompt, or None when the tokenizer has none."""
        ...

    @property
    def eos_id(self) -> int | None:
        """Id that ends generation, or None."""
        ...

    @property
    def stop_ids(self) -> frozenset[int]:
        """Every id that ends generation (EOS plus e.g. a chat model's end-of-turn id)."""
        ...

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (with BOS prepended when the tokenizer has one)."""
        ...

    def decode(self, token_ids: Sequence[int]) -> str:
        """Text of ``token_ids``; special ids decode to nothing, invalid bytes to U+FFFD."""
        ...

    def apply_chat(self, messages: Sequence[Mapping[str, str]]) -> list[int]:
        """Token ids of a chat (a list of ``{"role", "content"}``) ready for the reply."""
        ...


def render_chat(messages: Sequence[Mapping[str, str]]) -> str:
    """A minimal chat template for models that ship none: ``<|role|>\\ncontent\\n`` per turn."""
    parts = [f"<|{m['role']}|>\n{m['content']}\n" for m in messages]
    parts.append("<|assistant|>\n")
    return "".join(parts)


class ByteTokenizer:
    """UTF-8 bytes as ids 0-255, then BOS=256, EOS=257, PAD=258 (vocab size 259)."""

    BOS = 256
    EOS = 257
    PAD = 258
    VOCAB_SIZE = 259

    @property
    def identity(self) -> str:
        """Stable name: the byte tokenizer has no files, its version is its layout."""
        return "bytes-v1(bos=256,eos=257,pad=258)"

    @property
    def bos_id(self) -> int | None:
        """Id 256."""
        return self.BOS

    @property
    def eos_id(self) -> int | None:
        """Id 257."""
        return self.EOS

    @property
    def stop_ids(self) -> frozenset[int]:
        """Only EOS."""
        return frozenset({self.EOS})

    def encode(self, text: str) -> list[int]:
        """BOS, then the UTF-8 bytes of ``text``."""
        return [self.BOS, *text.encode("utf-8")]

    def decode(self, token_ids: Sequence[int]) -> str:
        """Bytes below 256 as UTF-8 (invalid sequences become U+FFFD); specials vanish."""
        return bytes(t for t in token_ids if 0 <= t < 256).decode("utf-8", errors="replace")

    def apply_chat(self, messages: Sequence[Mapping[str, str]]) -> list[int]:
        """The chat rendered with ``render_chat`` and encoded."""
        return self.encode(render_chat(messages))


class HFTokenizer:
    """A transformers tokenizer loaded from a local directory, behind the ``Tokenizer`` protocol."""

    def __init__(self, tokenizer: Any, identity: str, extra_stop_ids: Sequence[int] = ()) -> None:
        self._tok = tokenizer
        self._identity = identity
        eos = [] if tokenizer.eos_token_id is None else [int(tokenizer.eos_token_id)]
        self._stop_ids = frozenset([*eos, *(int(t) for t in extra_stop_ids)])

    @property
    def identity(self) -> str:
        """Class name and a hash of the tokenizer files (computed by the loader)."""
        return self._identity

    @property
    def bos_id(self) -> int | None:
        """The tokenizer's ``bos_token_id``."""
        value = self._tok.bos_token_id
        return None if value is None else int(value)

    @property
    def eos_id(self) -> int | None:
        """The tokenizer's ``eos_token_id``."""
        value = self._tok.eos_token_id
        return None if value is None else int(value)

    @property
    def stop_ids(self) -> frozenset[int]:
        """EOS plus the checkpoint's generation-config EOS ids (e.g. Llama 3's end of turn)."""
        return self._stop_ids

    def encode(self, text: str) -> list[int]:
        """The tokenizer's own encoding, special tokens included."""
        return [int(t) for t in self._tok.encode(text)]

    def decode(self, token_ids: Sequence[int]) -> str:
        """The tokenizer's decoding, special tokens skipped."""
        return str(self._tok.decode(list(token_ids), skip_special_tokens=True))

    def apply_chat(self, messages: Sequence[Mapping[str, str]]) -> list[int]:
        """The checkpoint's chat template when it has one, else ``render_chat``."""
        if getattr(self._tok, "chat_template", None):
            ids = self._tok.apply_chat_template(
                [dict(m) for m in messages], add_generation_prompt=True, tokenize=True
            )
            if isinstance(ids, Mapping):  # some versions return a BatchEncoding
                ids = ids["input_ids"]
            return [int(t) for t in ids]
        return self.encode(render_chat(messages))

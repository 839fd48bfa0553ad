"""Load a local Hugging Face tokenizer as a :class:`~tokenwatt.workload.prompts.Tokenizer`.

Exact prompt lengths need the endpoint's tokenizer; this reads one from a local directory (or a
``tokenizer.json``) and never downloads. transformers is imported only when it is called.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tokenwatt.errors import ModelError

__all__ = ["HFTokenizer", "load_tokenizer"]


class HFTokenizer:
    """A transformers tokenizer behind the two-method Tokenizer seam.

    ``encode`` adds the tokenizer's special tokens (BOS and the like), as an OpenAI-compatible
    server does when it tokenizes a completion prompt, so counts match its ``prompt_tokens``.
    """

    def __init__(self, tokenizer: Any) -> None:
        self._tok = tokenizer

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, special tokens included."""
        return list(self._tok.encode(text))

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``, special tokens left out."""
        return str(self._tok.decode(list(ids), skip_special_tokens=True))


def load_tokenizer(path: str | Path) -> HFTokenizer:
    """The tokenizer in a local directory (``tokenizer.json`` / ``tokenizer_config.json``) or file.

    Raises:
        ModelError: the path is missing or holds no tokenizer transformers can read.
    """
    p = Path(path)
    if not p.exists():
        raise ModelError(
            f"tokenizer path {p} not found; pass a local directory holding tokenizer.json "
            f"(models are never downloaded)"
        )
    tok: Any
    try:
        if p.is_file():
            from transformers import PreTrainedTokenizerFast

            fast: Any = PreTrainedTokenizerFast  # untyped constructor in transformers 5
            tok = fast(tokenizer_file=str(p))
        else:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(str(p), local_files_only=True)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ModelError(
            f"cannot load a tokenizer from {p}: {exc}; pass a directory with tokenizer.json "
            f"and tokenizer_config.json, or a tokenizer.json file"
        ) from exc
    return HFTokenizer(tok)

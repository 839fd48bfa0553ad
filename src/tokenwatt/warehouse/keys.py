"""Block keys: a token sequence cut into full prefix blocks, each named by a chained hash.

The hash covers canonical bytes (little-endian uint32 token ids) and is salted by the model
fingerprint and an optional tenant, so keys match across processes, machines and Python versions
and one tenant cannot address another tenant's blocks.
"""

from __future__ import annotations

import array
import hashlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tokenwatt.errors import ConfigError, WarehouseError

__all__ = [
    "DEFAULT_BLOCK_TOKENS",
    "KEY_BYTES",
    "BlockHasher",
    "ModelFingerprint",
    "fingerprint_digest",
]

DEFAULT_BLOCK_TOKENS = 256
"""Tokens per block unless configured otherwise."""

KEY_BYTES = 16
"""Digest size of a block key (hex keys are twice as long)."""

# Bumping this invalidates every key ever written, which is what a change of key layout needs.
_KEY_DOMAIN = b"tokenwatt/kv-block-key/v1\x00"
_MAX_TOKEN_ID = 2**32 - 1
_U32 = next(code for code in ("I", "L") if array.array(code).itemsize == 4)


def fingerprint_digest(fingerprint: str) -> bytes:
    """The 16-byte digest of a model fingerprint string, as stored in block headers."""
    return hashlib.blake2b(fingerprint.encode("utf-8"), digest_size=KEY_BYTES).digest()


@dataclass(frozen=True)
class ModelFingerprint:
    """What makes one model's KV cache unusable by another: any change gives new keys."""

    architecture: str = "unknown"
    """Model class or architecture name (e.g. ``LlamaForCausalLM``)."""
    dtype: str = "float32"
    """Dtype of the cached KV tensors."""
    num_layers: int = 0
    """Transformer layers (each contributes one key and one value tensor per block)."""
    num_kv_heads: int = 0
    """Key/value heads per layer."""
    head_dim: int = 0
    """Size of one head."""
    weights_id: str = ""
    """Identity of the weights: a checkpoint hash, or the seed of a random model."""
    tokenizer_id: str = ""
    """Identity of the tokenizer (name plus vocabulary hash); token ids mean nothing without it."""

    def __post_init__(self) -> None:
        for name in ("num_layers", "num_kv_heads", "head_dim"):
            if getattr(self, name) < 0:
                raise ConfigError(
                    f"ModelFingerprint.{name} must be >= 0, got {getattr(self, name)}"
                )

    def as_string(self) -> str:
        """A canonical one-line form, stable across processes (used as the key salt)."""
        return (
            f"arch={self.architecture};dtype={self.dtype};layers={self.num_layers};"
            f"kv_heads={self.num_kv_heads};head_dim={self.head_dim};"
            f"weights={self.weights_id};tokenizer={self.tokenizer_id}"
        )


class BlockHasher:
    """Cuts token ids into full blocks and names each by a chained, salted hash.

    Key ``i`` depends on every token of blocks ``0..i``, so a key names a whole prefix: two
    sequences share key ``i`` only if they share their first ``(i + 1) * block_tokens`` tokens.
    """

    def __init__(
        self,
        fingerprint: str,
        *,
        block_tokens: int = DEFAULT_BLOCK_TOKENS,
        tenant: str | None = None,
    ) -> None:
        if block_tokens < 1:
            raise ConfigError(f"block_tokens must be >= 1, got {block_tokens}")
        if not fingerprint:
            raise ConfigError("the model fingerprint must not be empty (see ModelFingerprint)")
        self.fingerprint = fingerprint
        self.block_tokens = block_tokens
        self.tenant = tenant
        salt = hashlib.blake2b(digest_size=KEY_BYTES)
        salt.update(_KEY_DOMAIN)
        salt.update(block_tokens.to_bytes(4, "little"))
        salt.update(_length_prefixed(fingerprint))
        # None and "" are different tenants on purpose: "no tenant" is its own namespace.
        salt.update(b"\x00" if tenant is None else b"\x01" + _length_prefixed(tenant))
        self._root = salt.digest()

    def full_blocks(self, num_tokens: int) -> int:
        """How many full blocks ``num_tokens`` tokens make (partial blocks are never keyed)."""
        return max(num_tokens, 0) // self.block_tokens

    def keys(
        self, token_ids: Sequence[int] | np.ndarray, max_blocks: int | None = None
    ) -> list[str]:
        """Hex keys of the full blocks of ``token_ids`` (at most ``max_blocks``), in order."""
        return [d.hex() for d in self.digests(token_ids, max_blocks)]

    def digests(
        self, token_ids: Sequence[int] | np.ndarray, max_blocks: int | None = None
    ) -> list[bytes]:
        """Raw 16-byte digests of the full blocks of ``token_ids``, in order."""
        n_blocks = self.full_blocks(len(token_ids))
        if max_blocks is not None:
            n_blocks = min(n_blocks, max(max_blocks, 0))
        if n_blocks == 0:
            return []
        data = _canonical_bytes(token_ids, n_blocks * self.block_tokens)
        step = self.block_tokens * 4
        out: list[bytes] = []
        prev = self._root
        view = memoryview(data)
        for i in range(n_blocks):
            h = hashlib.blake2b(prev, digest_size=KEY_BYTES)
            h.update(view[i * step : (i + 1) * step])
            prev = h.digest()
            out.append(prev)
        return out


def _length_prefixed(text: str) -> bytes:
    raw = text.encode("utf-8")
    return len(raw).to_bytes(4, "little") + raw


def _canonical_bytes(token_ids: Sequence[int] | np.ndarray, count: int) -> bytes:
    """Little-endian uint32 bytes of the first ``count`` token ids, rejecting ids out of range."""
    if isinstance(token_ids, np.ndarray):
        arr = token_ids[:count]
        if arr.dtype.kind not in "iu":
            raise WarehouseError(f"token ids must be integers, got an array of {arr.dtype}")
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) > _MAX_TOKEN_ID):
            raise WarehouseError(f"token ids must be in [0, {_MAX_TOKEN_ID}] to be keyed")
        return arr.astype("<u4", copy=False).tobytes()
    # array.array converts a list of ints in C, several times faster than numpy does.
    try:
        packed = array.array(_U32, token_ids[:count])
    except OverflowError:
        raise WarehouseError(f"token ids must be in [0, {_MAX_TOKEN_ID}] to be keyed") from None
    except TypeError:
        raise WarehouseError("token ids must be integers (got a non-integer id)") from None
    if sys.byteorder == "big":
        packed.byteswap()
    return packed.tobytes()

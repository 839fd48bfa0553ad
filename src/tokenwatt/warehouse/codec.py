"""Block codec: a self-describing header plus the raw KV tensor bytes, verified on every decode.

The header names the format version, the block key, the model fingerprint digest, the token
count, the dtype and every tensor shape, and carries an XXH3-64 hash of the payload and a CRC-32
of itself. Any mismatch raises a :class:`BlockError` subclass; the store turns those into misses.
"""

from __future__ import annotations

import functools
import math
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from xxhash import xxh3_64_intdigest

from tokenwatt.errors import WarehouseError

from .keys import KEY_BYTES

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "BlockChecksumError",
    "BlockError",
    "BlockFormatError",
    "BlockHeader",
    "BlockMismatchError",
    "BlockTruncatedError",
    "DecodedBlock",
    "decode_block",
    "encode_block",
    "read_header",
]

MAGIC = b"TWKV"
FORMAT_VERSION = 2
"""Version 2: the payload checksum is XXH3-64 (version 1 had CRC-32). Blocks of any other
version fail :func:`read_header` with :class:`BlockFormatError`, so they read as misses and are
replaced by the recomputed blocks."""

# Payload: XXH3-64. Every block read from disk or Redis is hashed in full, and zlib's CRC-32
# (2-5 GB/s on the development machine) halved disk reads. There, XXH3-64 hashed 32 KiB and 1 MiB
# payloads at 17-27 GB/s, 5-7x CRC-32 (benchmarks/warehouse_tiers.py --checksums); CRC32C
# (google-crc32c, hardware) is about as fast on bytes but takes nothing else, and with the copy
# of the payload that would need it ran at 11-13 GB/s. XXH3-64 also has 64 bits: an arbitrary
# corruption passes with probability 2**-64, not 2**-32. CRC's specific guarantee (every burst
# up to 32 bits) buys nothing against what damages stored blocks (torn or lost writes, zeroed or
# stale pages, flipped bits), which XXH3's avalanche catches; the tests flip every bit of a
# payload.
# Header: CRC-32 stays. A header is ~150 bytes, where CRC-32 detects every error of up to three
# bits and every burst up to 32 bits, and verified headers are cached, so speed does not matter.
# magic, version, header length (bytes, including both checksums)
_FIXED = struct.Struct("<4sHI")
_TAIL = struct.Struct("<QQI")  # payload length, payload XXH3-64, header CRC-32
_MAX_HEADER_BYTES = 1 << 20


class BlockError(WarehouseError):
    """A stored block cannot be used; ``reason`` is a short label used in the stats."""

    reason = "corrupt"


class BlockFormatError(BlockError):
    """The bytes are not a block of a format version this build reads (or the header is mangled)."""

    reason = "format"


class BlockTruncatedError(BlockError):
    """The block is shorter (or longer) than its header says."""

    reason = "truncated"


class BlockChecksumError(BlockError):
    """The header or payload checksum does not match: the bytes were damaged."""

    reason = "checksum"


class BlockMismatchError(BlockError):
    """The block is intact but belongs elsewhere: another key, model fingerprint or size."""

    reason = "mismatch"


@dataclass(frozen=True)
class BlockHeader:
    """What a block's header says about it."""

    version: int = FORMAT_VERSION
    """Format version the block was written with."""
    key: str = ""
    """Hex block key the block was written under."""
    fingerprint: bytes = b""
    """16-byte digest of the model fingerprint (see ``keys.fingerprint_digest``)."""
    token_count: int = 0
    """Tokens the block covers."""
    dtype: str = "<f4"
    """Numpy dtype string of every tensor."""
    shapes: tuple[tuple[int, ...], ...] = ()
    """Shape of each tensor, in payload order."""
    header_bytes: int = 0
    """Length of the header (the payload starts here)."""
    payload_bytes: int = 0
    """Length of the payload."""
    payload_xxh3: int = 0
    """XXH3-64 (seed 0) of the payload."""

    @property
    def total_bytes(self) -> int:
        """Length of the whole encoded block."""
        return self.header_bytes + self.payload_bytes


@dataclass(frozen=True)
class DecodedBlock:
    """A verified block: its header and read-only tensor views over the encoded bytes."""

    header: BlockHeader
    """The verified header."""
    arrays: tuple[np.ndarray, ...]
    """One array per stored tensor (zero-copy, read-only)."""


def encode_block(
    key: str, fingerprint: bytes, token_count: int, arrays: Sequence[np.ndarray]
) -> bytes:
    """Encode tensors (all of one dtype) as a block for ``key`` under model ``fingerprint``."""
    if len(fingerprint) != KEY_BYTES:
        raise WarehouseError(
            f"fingerprint digest must be {KEY_BYTES} bytes, got {len(fingerprint)}"
        )
    key_raw = bytes.fromhex(key)
    if len(key_raw) != KEY_BYTES:
        raise WarehouseError(f"block key must be {2 * KEY_BYTES} hex characters, got {key!r}")
    if not arrays:
        raise WarehouseError("a block needs at least one tensor")
    dtype = np.dtype(arrays[0].dtype)
    if any(np.dtype(a.dtype) != dtype for a in arrays):
        raise WarehouseError("every tensor of a block must share one dtype")
    dtype_raw = dtype.str.encode("ascii")
    parts = [
        key_raw,
        fingerprint,
        struct.pack("<IB", token_count, len(dtype_raw)),
        dtype_raw,
        struct.pack("<H", len(arrays)),
    ]
    for a in arrays:
        parts.append(struct.pack(f"<B{a.ndim}I", a.ndim, *a.shape))
    payload = b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)
    body = b"".join(parts)
    header_len = _FIXED.size + len(body) + _TAIL.size
    head = _FIXED.pack(MAGIC, FORMAT_VERSION, header_len) + body
    head += struct.pack("<QQ", len(payload), xxh3_64_intdigest(payload))
    head += struct.pack("<I", zlib.crc32(head))
    return head + payload


def read_header(data: bytes | memoryview) -> BlockHeader:
    """Parse and check a header (magic, version, header checksum); ``data`` may be just the header.

    Raises a :class:`BlockError` subclass if the header is damaged or of another format.
    """
    view = memoryview(data)
    if len(view) < _FIXED.size:
        raise BlockTruncatedError(f"block is {len(view)} bytes, shorter than a header")
    magic, version, header_len = _FIXED.unpack_from(view, 0)
    if magic != MAGIC:
        raise BlockFormatError("not a tokenwatt KV block (bad magic)")
    if version != FORMAT_VERSION:
        raise BlockFormatError(f"block format version {version}, this build reads {FORMAT_VERSION}")
    if not _FIXED.size + 2 * KEY_BYTES + _TAIL.size <= header_len <= _MAX_HEADER_BYTES:
        raise BlockFormatError(f"implausible header length {header_len}")
    if len(view) < header_len:
        raise BlockTruncatedError(f"block is {len(view)} bytes, its header alone is {header_len}")
    return _verified_header(bytes(view[:header_len]))


@functools.lru_cache(maxsize=16384)
def _verified_header(raw: bytes) -> BlockHeader:
    """Check and parse one complete header. A pure function of its bytes, so cached: a session
    re-reads the same blocks every turn, and parsing was ~40% of decoding a DRAM block. A cache
    hit means these exact bytes already passed the checksum; a damaged header is other bytes."""
    header_len = len(raw)
    (header_crc,) = struct.unpack_from("<I", raw, header_len - 4)
    if zlib.crc32(memoryview(raw)[: header_len - 4]) != header_crc:
        raise BlockChecksumError("header checksum mismatch")
    try:
        return _parse_body(memoryview(raw), header_len)
    except (struct.error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise BlockFormatError(f"malformed header: {exc}") from None


def _parse_body(view: memoryview, header_len: int) -> BlockHeader:
    pos = _FIXED.size
    key = bytes(view[pos : pos + KEY_BYTES]).hex()
    pos += KEY_BYTES
    fingerprint = bytes(view[pos : pos + KEY_BYTES])
    pos += KEY_BYTES
    token_count, dtype_len = struct.unpack_from("<IB", view, pos)
    pos += 5
    dtype = bytes(view[pos : pos + dtype_len]).decode("ascii")
    pos += dtype_len
    (n_arrays,) = struct.unpack_from("<H", view, pos)
    pos += 2
    shapes: list[tuple[int, ...]] = []
    for _ in range(n_arrays):
        ndim = view[pos]
        dims = struct.unpack_from(f"<{ndim}I", view, pos + 1)
        shapes.append(tuple(dims))
        pos += 1 + 4 * ndim
    payload_len, payload_hash, _ = _TAIL.unpack_from(view, pos)
    if pos + _TAIL.size != header_len:
        raise BlockFormatError("header length does not match its fields")
    itemsize = np.dtype(dtype).itemsize
    expected = sum(math.prod(s) for s in shapes) * itemsize
    if expected != payload_len:
        raise BlockFormatError(f"shapes need {expected} payload bytes, header says {payload_len}")
    return BlockHeader(
        version=FORMAT_VERSION,
        key=key,
        fingerprint=fingerprint,
        token_count=token_count,
        dtype=dtype,
        shapes=tuple(shapes),
        header_bytes=header_len,
        payload_bytes=payload_len,
        payload_xxh3=payload_hash,
    )


def decode_block(
    data: bytes,
    *,
    key: str | None = None,
    fingerprint: bytes | None = None,
    token_count: int | None = None,
    verify_payload: bool = True,
) -> DecodedBlock:
    """Verify ``data`` and return its tensors; ``key``, ``fingerprint``, ``token_count`` if given.

    ``verify_payload=False`` skips only the payload hash (for bytes verified when they entered
    this process and held immutable since); the header is always checked.
    """
    header = read_header(data)
    if len(data) != header.total_bytes:
        raise BlockTruncatedError(
            f"block is {len(data)} bytes, its header says {header.total_bytes}"
        )
    if key is not None and header.key != key:
        raise BlockMismatchError(f"block stored under {key} says it is {header.key}")
    if fingerprint is not None and header.fingerprint != fingerprint:
        raise BlockMismatchError("block was written for another model (fingerprint mismatch)")
    if token_count is not None and header.token_count != token_count:
        raise BlockMismatchError(
            f"block covers {header.token_count} tokens, expected {token_count}"
        )
    view = memoryview(data)[header.header_bytes :]
    if verify_payload and xxh3_64_intdigest(view) != header.payload_xxh3:
        raise BlockChecksumError("payload checksum mismatch")
    dtype = np.dtype(header.dtype)
    shapes = header.shapes
    if header.payload_bytes and all(s == shapes[0] for s in shapes):
        # One view over the payload split along a new first axis: same read-only views as
        # one frombuffer per tensor, at a fraction of the per-call cost.
        whole = np.frombuffer(view, dtype=dtype).reshape(len(shapes), *shapes[0])
        return DecodedBlock(header=header, arrays=tuple(whole))
    arrays: list[np.ndarray] = []
    offset = 0
    for shape in shapes:
        count = math.prod(shape)
        arrays.append(np.frombuffer(view, dtype=dtype, count=count, offset=offset).reshape(shape))
        offset += count * dtype.itemsize
    return DecodedBlock(header=header, arrays=tuple(arrays))

"""Block codec: round trip, and every kind of damage raises its specific error."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable

import numpy as np
import pytest
import xxhash

from tokenwatt.errors import WarehouseError
from tokenwatt.warehouse.codec import (
    FORMAT_VERSION,
    BlockChecksumError,
    BlockFormatError,
    BlockMismatchError,
    BlockTruncatedError,
    decode_block,
    encode_block,
    read_header,
)
from tokenwatt.warehouse.keys import fingerprint_digest

from .conftest import as_version_1

KEY = "00112233445566778899aabbccddeeff"
FP = fingerprint_digest("model-a")
KV = Callable[..., list[np.ndarray]]


def test_round_trip(make_kv: KV) -> None:
    """Decoding an encoded block returns the same tensors and header fields."""
    arrays = make_kv(1)
    block = decode_block(encode_block(KEY, FP, 4, arrays), key=KEY, fingerprint=FP, token_count=4)
    assert block.header.key == KEY
    assert block.header.token_count == 4
    assert block.header.dtype == "<f4"
    assert block.header.shapes == ((2, 4, 8),) * 4
    for got, want in zip(block.arrays, arrays, strict=True):
        np.testing.assert_array_equal(got, want)


def test_decoded_arrays_are_read_only(make_kv: KV) -> None:
    """Decoded tensors are zero-copy views and cannot be written through."""
    block = decode_block(encode_block(KEY, FP, 4, make_kv(1)))
    assert not block.arrays[0].flags.writeable


def test_header_size_is_exact(make_kv: KV) -> None:
    """Header length: fixed 10 + key 16 + fp 16 + 5 + dtype 3 + 2 + 4 x 13 shapes + 20 tail."""
    header = read_header(encode_block(KEY, FP, 4, make_kv(1)))
    assert header.header_bytes == 10 + 16 + 16 + 5 + 3 + 2 + 4 * 13 + 20
    assert header.payload_bytes == 4 * 2 * 4 * 8 * 4


def test_payload_hash_is_xxh3_64_of_the_payload(make_kv: KV) -> None:
    """The header's payload hash is XXH3-64 (seed 0) of exactly the payload bytes."""
    data = encode_block(KEY, FP, 4, make_kv(1))
    header = read_header(data)
    assert header.version == FORMAT_VERSION == 2
    assert header.payload_xxh3 == xxhash.xxh3_64_intdigest(data[header.header_bytes :])


def test_flipped_payload_byte_is_checksum_error(make_kv: KV) -> None:
    """One flipped payload bit fails the payload checksum."""
    data = bytearray(encode_block(KEY, FP, 4, make_kv(1)))
    data[-1] ^= 0x01
    with pytest.raises(BlockChecksumError, match="payload"):
        decode_block(bytes(data))


def test_every_single_bit_flip_of_a_payload_is_detected() -> None:
    """Each of the 8,192 one-bit flips of a 1 KiB payload fails the payload hash."""
    data = encode_block(KEY, FP, 1, [np.arange(256, dtype=np.float32)])
    start = read_header(data).header_bytes
    for pos in range(start, len(data)):
        for bit in range(8):
            damaged = bytearray(data)
            damaged[pos] ^= 1 << bit
            with pytest.raises(BlockChecksumError, match="payload"):
                decode_block(bytes(damaged))


@pytest.mark.parametrize("damage", ["zeroed page", "swapped words", "stale page", "flipped byte"])
def test_storage_damage_to_a_large_payload_is_detected(damage: str) -> None:
    """What storage does to a 1 MiB block (a 4 KiB page zeroed or from an older version of the
    data, two 8-byte words swapped, one byte flipped) fails the payload hash."""
    rng = np.random.default_rng(7)
    arrays = [rng.standard_normal(1 << 16).astype(np.float32) for _ in range(4)]
    data = bytearray(encode_block(KEY, FP, 16, arrays))
    page = read_header(data).header_bytes + 4096 * 37
    if damage == "zeroed page":
        data[page : page + 4096] = bytes(4096)
    elif damage == "swapped words":
        data[page : page + 16] = data[page + 8 : page + 16] + data[page : page + 8]
    elif damage == "stale page":
        older = encode_block(KEY, FP, 16, [a * 0.5 for a in arrays])
        data[page : page + 4096] = older[page : page + 4096]
    else:
        data[-12345] ^= 0x80
    with pytest.raises(BlockChecksumError, match="payload"):
        decode_block(bytes(data))


def test_flipped_payload_passes_when_payload_check_is_off(make_kv: KV) -> None:
    """verify_payload=False checks the header only (for trusted in-process bytes)."""
    data = bytearray(encode_block(KEY, FP, 4, make_kv(1)))
    data[-1] ^= 0x01
    assert decode_block(bytes(data), verify_payload=False).header.key == KEY


def test_flipped_header_byte_is_checksum_error(make_kv: KV) -> None:
    """A flipped token-count byte fails the header checksum."""
    data = bytearray(encode_block(KEY, FP, 4, make_kv(1)))
    data[10 + 32] ^= 0x01
    with pytest.raises(BlockChecksumError, match="header"):
        decode_block(bytes(data))


def test_truncated_block(make_kv: KV) -> None:
    """A block cut short is a truncation error, whether in the payload or the header."""
    data = encode_block(KEY, FP, 4, make_kv(1))
    with pytest.raises(BlockTruncatedError):
        decode_block(data[:-1])
    with pytest.raises(BlockTruncatedError):
        decode_block(data[:20])
    with pytest.raises(BlockTruncatedError):
        decode_block(b"")


def test_wrong_key_fingerprint_or_size(make_kv: KV) -> None:
    """An intact block under another key, model or block size is a mismatch."""
    data = encode_block(KEY, FP, 4, make_kv(1))
    with pytest.raises(BlockMismatchError, match="stored under"):
        decode_block(data, key="ff" * 16)
    with pytest.raises(BlockMismatchError, match="fingerprint"):
        decode_block(data, fingerprint=fingerprint_digest("model-b"))
    with pytest.raises(BlockMismatchError, match="covers 4 tokens"):
        decode_block(data, token_count=8)


def test_stale_format_version(make_kv: KV) -> None:
    """A block of another format version (even with a valid header checksum) is rejected."""
    data = bytearray(encode_block(KEY, FP, 4, make_kv(1)))
    struct.pack_into("<H", data, 4, FORMAT_VERSION + 1)
    header_len = struct.unpack_from("<I", data, 6)[0]
    struct.pack_into("<I", data, header_len - 4, zlib.crc32(data[: header_len - 4]))
    with pytest.raises(BlockFormatError, match=f"version {FORMAT_VERSION + 1}"):
        decode_block(bytes(data))


def test_version_1_block_is_a_stale_format(make_kv: KV) -> None:
    """An intact block written by the previous format (CRC-32 payload checksum) is rejected as a
    stale format, not misread with this version's layout."""
    old = as_version_1(encode_block(KEY, FP, 4, make_kv(1)))
    with pytest.raises(BlockFormatError, match="block format version 1, this build reads 2"):
        decode_block(old, key=KEY, fingerprint=FP, token_count=4)


def test_bad_magic() -> None:
    """Arbitrary bytes are not a block."""
    with pytest.raises(BlockFormatError, match="magic"):
        decode_block(b"hello world, not a block")


def test_mixed_dtypes_rejected(make_kv: KV) -> None:
    """Tensors of different dtypes cannot share a block."""
    arrays = make_kv(1)
    arrays[1] = arrays[1].astype(np.float16)
    with pytest.raises(WarehouseError, match="one dtype"):
        encode_block(KEY, FP, 4, arrays)

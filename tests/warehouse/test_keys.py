"""Block keys: full blocks only, chained, salted, canonical across processes."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from tokenwatt.errors import ConfigError, WarehouseError
from tokenwatt.warehouse.keys import BlockHasher, ModelFingerprint, fingerprint_digest

# Frozen on purpose: a change here means every deployed warehouse silently misses.
GOLDEN_KEYS = ["7d19f5953e2c8925390b9266fda84adc", "8ae803ac498a02b443d65e7d6f42bef4"]


def test_only_full_blocks_are_keyed() -> None:
    """9 tokens with 4-token blocks give exactly 2 keys."""
    assert len(BlockHasher("m", block_tokens=4).keys(list(range(9)))) == 2


def test_default_block_is_256_tokens() -> None:
    """The default block size is 256 tokens."""
    assert BlockHasher("m").block_tokens == 256
    assert len(BlockHasher("m").keys([1] * 511)) == 1


def test_golden_keys() -> None:
    """The key format is stable: known input, known keys."""
    assert BlockHasher("golden-model", block_tokens=4, tenant="t1").keys(range(8)) == GOLDEN_KEYS


def test_key_depends_on_whole_prefix() -> None:
    """Changing a token of block 0 changes block 1's key too (chained hash)."""
    h = BlockHasher("m", block_tokens=4)
    a = h.keys([1, 2, 3, 4, 5, 6, 7, 8])
    b = h.keys([9, 2, 3, 4, 5, 6, 7, 8])
    assert a[0] != b[0] and a[1] != b[1]


def test_shared_prefix_shares_keys() -> None:
    """Two sequences with the same first block share exactly that key."""
    h = BlockHasher("m", block_tokens=4)
    a = h.keys([1, 2, 3, 4, 5, 6, 7, 8])
    b = h.keys([1, 2, 3, 4, 0, 0, 0, 0])
    assert a[0] == b[0] and a[1] != b[1]


def test_fingerprint_and_tenant_salt_keys() -> None:
    """Another model, another tenant, or no tenant give disjoint keys for the same tokens."""
    tokens = list(range(4))
    keys = {
        BlockHasher("m1", block_tokens=4).keys(tokens)[0],
        BlockHasher("m2", block_tokens=4).keys(tokens)[0],
        BlockHasher("m1", block_tokens=4, tenant="a").keys(tokens)[0],
        BlockHasher("m1", block_tokens=4, tenant="b").keys(tokens)[0],
        BlockHasher("m1", block_tokens=4, tenant="").keys(tokens)[0],
    }
    assert len(keys) == 5


def test_numpy_and_list_inputs_agree() -> None:
    """int64 numpy arrays, int32 arrays and Python lists give the same keys."""
    h = BlockHasher("m", block_tokens=4)
    ids = [5, 70000, 3, 2**32 - 1]
    assert h.keys(ids) == h.keys(np.array(ids, dtype=np.int64)) == h.keys(np.array(ids, np.uint32))


def test_max_blocks_limits_keys() -> None:
    """max_blocks=1 returns only the first key."""
    h = BlockHasher("m", block_tokens=2)
    assert h.keys(range(8), max_blocks=1) == h.keys(range(8))[:1]


def test_out_of_range_token_rejected() -> None:
    """A negative token id is an error, not a silent wrap-around."""
    with pytest.raises(WarehouseError, match="token ids must be in"):
        BlockHasher("m", block_tokens=2).keys([1, -1])


def test_non_integer_token_rejected() -> None:
    """Float token ids are rejected with a clear message."""
    with pytest.raises(WarehouseError, match="integers"):
        BlockHasher("m", block_tokens=2).keys([1.0, 2.5])


def test_bad_config_rejected() -> None:
    """block_tokens < 1 and an empty fingerprint are configuration errors."""
    with pytest.raises(ConfigError, match="block_tokens"):
        BlockHasher("m", block_tokens=0)
    with pytest.raises(ConfigError, match="fingerprint"):
        BlockHasher("")


def test_model_fingerprint_string_is_canonical() -> None:
    """The fingerprint string lists every field in a fixed order."""
    fp = ModelFingerprint("Llama", "float32", 2, 4, 16, "seed:0", "bytes")
    assert fp.as_string() == (
        "arch=Llama;dtype=float32;layers=2;kv_heads=4;head_dim=16;weights=seed:0;tokenizer=bytes"
    )
    assert len(fingerprint_digest(fp.as_string())) == 16


def test_model_fingerprint_rejects_negative_shapes() -> None:
    """A negative layer count is a configuration error."""
    with pytest.raises(ConfigError, match="num_layers"):
        ModelFingerprint(num_layers=-1)


def test_keys_equal_across_hash_seeds() -> None:
    """Two processes with different PYTHONHASHSEED compute the same keys."""
    code = (
        "from tokenwatt.warehouse.keys import BlockHasher;"
        "print(','.join(BlockHasher('m', block_tokens=3, tenant='t').keys(list(range(10)))))"
    )
    outputs = []
    for seed in ("1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        outputs.append(out.stdout.strip())
    assert outputs[0] == outputs[1]
    assert outputs[0] == ",".join(BlockHasher("m", block_tokens=3, tenant="t").keys(range(10)))

"""Block ids: packing, round trip, bounds."""

from __future__ import annotations

import pytest

from tokenwatt.errors import ConfigError
from tokenwatt.workload.blocks import SESSION, SHARED, block_id, split_block_id


def test_round_trip() -> None:
    """split_block_id inverts block_id."""
    assert split_block_id(block_id(SESSION, 123456, 789)) == (SESSION, 123456, 789)


def test_ids_fit_int64_and_differ_by_namespace() -> None:
    """The same owner and index in two namespaces give two ids, both below 2**63."""
    a, b = block_id(SHARED, 0, 0), block_id(SESSION, 0, 0)
    assert a != b
    assert max(a, b, block_id(127, 2**32 - 1, 2**24 - 1)) < 2**63


def test_index_out_of_range_raises() -> None:
    """An index past 2**24 raises ConfigError."""
    with pytest.raises(ConfigError, match="block index"):
        block_id(SHARED, 0, 2**24)

"""Prefix block ids for synthetic workloads: equal ids mean equal prompt text.

Ids are computed, not stored: ``namespace << 56 | owner << 24 | index``, so a generator can stream
millions of requests with no table, and ids stay below 2**63 for int64 arrays in the planner.
"""

from __future__ import annotations

from tokenwatt.errors import ConfigError

__all__ = ["SESSION", "SHARED", "TAIL", "UNIQUE", "block_id", "split_block_id"]

SHARED = 1
"""Namespace of blocks shared by every request of a prefix group (system prompt, tool schema)."""
SESSION = 2
"""Namespace of blocks of one session's history, shared by that session's later turns."""
UNIQUE = 3
"""Namespace of blocks that belong to one request alone."""
TAIL = 4
"""Namespace of a session turn's partial last block (owner: session, index: turn)."""

_OWNER_BITS = 32
_INDEX_BITS = 24


def block_id(namespace: int, owner: int, index: int) -> int:
    """The id of block ``index`` of ``owner`` (prefix group, session or request) in a namespace."""
    if not 0 < namespace < 1 << 7:
        raise ConfigError(f"block namespace must be in 1..127, got {namespace}")
    if not 0 <= owner < 1 << _OWNER_BITS:
        raise ConfigError(f"block owner must be in 0..2**32-1, got {owner}")
    if not 0 <= index < 1 << _INDEX_BITS:
        raise ConfigError(f"block index must be in 0..2**24-1 (prompt too long?), got {index}")
    return (namespace << (_OWNER_BITS + _INDEX_BITS)) | (owner << _INDEX_BITS) | index


def split_block_id(value: int) -> tuple[int, int, int]:
    """(namespace, owner, index) of an id made by :func:`block_id`."""
    index = value & ((1 << _INDEX_BITS) - 1)
    owner = (value >> _INDEX_BITS) & ((1 << _OWNER_BITS) - 1)
    return value >> (_OWNER_BITS + _INDEX_BITS), owner, index

"""tokenwatt.warehouse: the token warehouse, a tiered KV-cache store that never prefills twice.

Keys (``BlockHasher``) name full prefix blocks; the codec verifies every block read; tiers (DRAM,
disk, Redis) store bytes; ``TieredStore`` finds the longest verified prefix and skips failing tiers.
The engine hook is ``tokenwatt.warehouse.engine_adapter``, imported on demand (it needs torch).
"""

from .codec import (
    FORMAT_VERSION,
    BlockChecksumError,
    BlockError,
    BlockFormatError,
    BlockHeader,
    BlockMismatchError,
    BlockTruncatedError,
    DecodedBlock,
    decode_block,
    encode_block,
    read_header,
)
from .config import WarehouseConfig, build_store, parse_bytes, parse_warehouse_spec
from .costmodel import PrefillCostModel
from .decision import DecisionConfig, LoadDecider
from .disk import DiskTier
from .faults import FaultyTier, TierFault
from .keys import DEFAULT_BLOCK_TOKENS, BlockHasher, ModelFingerprint, fingerprint_digest
from .maintenance import (
    BadBlock,
    TierSummary,
    VerifyReport,
    clear_tier,
    summarize_tier,
    verify_tier,
)
from .memory import MemoryTier
from .policies import (
    AdmissionPolicy,
    AlwaysAdmit,
    CostAwarePolicy,
    EvictionPolicy,
    LRUPolicy,
    SeenAtLeast,
)
from .redis_tier import RedisTier
from .stats import (
    StatsSnapshot,
    TierCounters,
    WarehouseCollector,
    WarehouseStats,
    register_collector,
)
from .store import LoadedPrefix, StoreConfig, TierConfig, TieredStore
from .tier import PinnableTier, Tier, TierBase, TierUsage

__all__ = [
    "DEFAULT_BLOCK_TOKENS",
    "FORMAT_VERSION",
    "AdmissionPolicy",
    "AlwaysAdmit",
    "BadBlock",
    "BlockChecksumError",
    "BlockError",
    "BlockFormatError",
    "BlockHasher",
    "BlockHeader",
    "BlockMismatchError",
    "BlockTruncatedError",
    "CostAwarePolicy",
    "DecisionConfig",
    "DecodedBlock",
    "DiskTier",
    "EvictionPolicy",
    "FaultyTier",
    "LRUPolicy",
    "LoadDecider",
    "LoadedPrefix",
    "MemoryTier",
    "ModelFingerprint",
    "PinnableTier",
    "PrefillCostModel",
    "RedisTier",
    "SeenAtLeast",
    "StatsSnapshot",
    "StoreConfig",
    "Tier",
    "TierBase",
    "TierConfig",
    "TierCounters",
    "TierFault",
    "TierSummary",
    "TierUsage",
    "TieredStore",
    "VerifyReport",
    "WarehouseCollector",
    "WarehouseConfig",
    "WarehouseStats",
    "build_store",
    "clear_tier",
    "decode_block",
    "encode_block",
    "fingerprint_digest",
    "parse_bytes",
    "parse_warehouse_spec",
    "read_header",
    "register_collector",
    "summarize_tier",
    "verify_tier",
]

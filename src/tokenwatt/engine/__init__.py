"""tokenwatt.engine: the reference inference engine (model loading, KV seam, runner)."""

from .kv import (
    KVCacheManager,
    KVLayout,
    KVUsage,
    NullPrefixProvider,
    PrefixKV,
    PrefixProvider,
    RequestKV,
)
from .model import PRESETS, LoadedModel, Preset, load_model
from .runner import ModelRunner, StepItem
from .tokenizer import ByteTokenizer, Tokenizer

__all__ = [
    "PRESETS",
    "ByteTokenizer",
    "KVCacheManager",
    "KVLayout",
    "KVUsage",
    "LoadedModel",
    "ModelRunner",
    "NullPrefixProvider",
    "PrefixKV",
    "PrefixProvider",
    "Preset",
    "RequestKV",
    "StepItem",
    "Tokenizer",
    "load_model",
]

"""tokenwatt.engine: the reference inference engine (model loading, KV seam, continuous
batching, OpenAI-compatible server). See docs in each module; ``kv`` documents the seam.
"""

from .config import EngineConfig
from .core import EngineCore
from .engine import Completion, Engine, EngineStats, OutputCallback
from .kv import (
    KVCacheManager,
    KVLayout,
    KVUsage,
    NullPrefixProvider,
    PrefixKV,
    PrefixProvider,
    RequestKV,
)
from .model import PRESETS, LoadedModel, Preset, load_model, resolve_device
from .request import (
    EnergyShare,
    EngineOverloadedError,
    InvalidRequestError,
    RequestOutput,
)
from .runner import ModelRunner, StepItem
from .sampling import SamplingParams
from .scheduler import ScheduledItem, Scheduler, SchedulerOutput
from .tokenizer import ByteTokenizer, HFTokenizer, Tokenizer

__all__ = [
    "PRESETS",
    "ByteTokenizer",
    "Completion",
    "EnergyShare",
    "Engine",
    "EngineConfig",
    "EngineCore",
    "EngineOverloadedError",
    "EngineStats",
    "HFTokenizer",
    "InvalidRequestError",
    "KVCacheManager",
    "KVLayout",
    "KVUsage",
    "LoadedModel",
    "ModelRunner",
    "NullPrefixProvider",
    "OutputCallback",
    "PrefixKV",
    "PrefixProvider",
    "Preset",
    "RequestKV",
    "RequestOutput",
    "SamplingParams",
    "ScheduledItem",
    "Scheduler",
    "SchedulerOutput",
    "StepItem",
    "Tokenizer",
    "load_model",
    "resolve_device",
]

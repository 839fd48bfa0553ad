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
from .server import RunningServer, ServeConfig, build_app, serve, start_server
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
    "RunningServer",
    "SamplingParams",
    "ScheduledItem",
    "Scheduler",
    "SchedulerOutput",
    "ServeConfig",
    "StepItem",
    "Tokenizer",
    "build_app",
    "load_model",
    "resolve_device",
    "serve",
    "start_server",
]

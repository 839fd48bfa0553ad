"""Engine configuration: batching limits, KV budget, queue bound (validated on construction)."""

from __future__ import annotations

from dataclasses import dataclass

from tokenwatt.errors import ConfigError

__all__ = ["EngineConfig"]


@dataclass(frozen=True)
class EngineConfig:
    """Limits of the continuous-batching loop."""

    max_batch: int = 64
    """Most requests in the running batch at once."""
    max_step_tokens: int = 1024
    """Token budget of one step (decodes count 1 each; prefills are chunked to fit)."""
    kv_capacity_tokens: int = 1 << 20
    """Most KV positions promised at once (each request reserves prompt + max_tokens)."""
    max_queue: int = 1024
    """Most waiting requests; beyond it submissions fail with EngineOverloadedError (HTTP 429)."""
    block_tokens: int = 16
    """Tokens per KV block handed to the prefix provider (the warehouse's block size)."""
    default_chat_max_tokens: int = 256
    """max_tokens of a chat request that gives none (OpenAI leaves it unbounded)."""
    torch_threads: int | None = None
    """Torch intra-op threads, set process-wide at ``Engine.start``; None keeps torch's
    default. Use 1 for small models on a shared CPU: idle OpenMP workers spin and, with
    other busy processes, a 2-thread tiny model ran 25x slower than 1 thread here."""

    def __post_init__(self) -> None:
        for name in (
            "max_batch",
            "max_step_tokens",
            "kv_capacity_tokens",
            "max_queue",
            "block_tokens",
            "default_chat_max_tokens",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"EngineConfig.{name} must be an integer >= 1, got {value!r}")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise ConfigError(f"EngineConfig.torch_threads must be >= 1, got {self.torch_threads}")

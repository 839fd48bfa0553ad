"""Requests and sessions: the plain data every workload generator and trace reader yields.

The bench client sends them, the planner simulates them; neither needs more than this.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenwatt.errors import ConfigError

__all__ = ["Request"]


@dataclass(frozen=True)
class Request:
    """One inference request as a workload describes it (token counts, arrival, shared prefix)."""

    request_id: str
    """Unique id within the workload."""
    arrival_s: float = 0.0
    """Offered arrival time in seconds from the workload's start (0 for closed-loop loads)."""
    input_tokens: int = 1
    """Prompt length in tokens (exact for a known tokenizer, else the trace's count)."""
    output_tokens: int = 1
    """Number of tokens to generate (sent as max_tokens; EOS ignored where the endpoint allows)."""
    prompt: str | None = None
    """Prompt text; None when only token counts matter (the planner)."""
    session_id: str | None = None
    """Session this request belongs to (multi-turn chat, agentic), or None."""
    turn: int = 0
    """Turn index within the session, from 0."""
    prefix_block_ids: tuple[int, ...] = ()
    """Ids of the prompt's leading blocks (Mooncake ``hash_ids``): equal ids mean equal prefixes."""
    block_tokens: int = 512
    """Tokens per prefix block named by ``prefix_block_ids``."""
    tenant: str | None = None
    """Tenant (API key or user) the request is billed to, or None."""
    think_time_s: float = 0.0
    """Delay a session waits after the previous turn's answer before sending this one."""

    def __post_init__(self) -> None:
        if self.input_tokens < 1:
            raise ConfigError(f"request {self.request_id}: input_tokens must be >= 1")
        if self.output_tokens < 1:
            raise ConfigError(f"request {self.request_id}: output_tokens must be >= 1")
        if self.arrival_s < 0:
            raise ConfigError(f"request {self.request_id}: arrival_s must be >= 0")

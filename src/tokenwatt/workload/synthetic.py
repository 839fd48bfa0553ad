"""Seeded synthetic workloads: chat, reasoning, prefix-share, and (via agentic) agent sessions.

The one generator module the bench and the planner share. Every request carries prefix block ids
so a cache model can count hits, and prompt synthesis can give equal blocks equal text.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from tokenwatt.errors import ConfigError
from tokenwatt.workload.agentic import AgenticSpec, agentic_requests
from tokenwatt.workload.arrivals import Arrivals
from tokenwatt.workload.blocks import SHARED, UNIQUE, block_id
from tokenwatt.workload.distributions import LogNormal
from tokenwatt.workload.types import Request

__all__ = [
    "CHAT_INPUT",
    "CHAT_OUTPUT",
    "REASONING_INPUT",
    "REASONING_OUTPUT",
    "WORKLOAD_NAMES",
    "SyntheticSpec",
    "generate",
    "prefix_blocks",
    "synthetic_requests",
    "workload_spec",
]

CHAT_INPUT = LogNormal(median=1020.0, sigma=0.50, minimum=16.0, maximum=16384.0)
"""Chat prompt tokens: median 1,020, sigma 0.50: Azure 2023 conv's median 1,020 and mean 1,155."""
CHAT_OUTPUT = LogNormal(median=129.0, sigma=0.99, minimum=1.0, maximum=4096.0)
"""Chat answer tokens: median 129, sigma 0.99: Azure 2023 conv's median 129 and mean 211."""
REASONING_INPUT = LogNormal(median=256.0, sigma=0.50, minimum=16.0, maximum=4096.0)
"""Reasoning prompt tokens: short questions (an illustrative choice, not fitted to a trace)."""
REASONING_OUTPUT = LogNormal(median=4096.0, sigma=0.60, minimum=256.0, maximum=32768.0)
"""Reasoning answer tokens: long chains of thought (illustrative, not fitted to a trace)."""


@dataclass(frozen=True)
class SyntheticSpec:
    """Independent requests with lognormal lengths and an optional shared prefix (default: chat)."""

    name: str = "chat"
    """Label carried into results (chat, reasoning, prefix, or your own)."""
    num_requests: int = 100
    """How many requests to generate."""
    seed: int = 0
    """Seed of the generator's private random stream; equal seeds give equal workloads."""
    arrivals: Arrivals = field(default_factory=Arrivals)
    """When requests are offered (default: closed loop, all at 0)."""
    input_tokens: LogNormal = CHAT_INPUT
    """Prompt length distribution (tokens)."""
    output_tokens: LogNormal = CHAT_OUTPUT
    """Answer length distribution (tokens)."""
    prefix_share: float = 0.0
    """Fraction of each prompt that is its group's shared prefix, rounded down to whole blocks."""
    num_prefixes: int = 1
    """Distinct shared prefixes; each request draws one uniformly."""
    block_tokens: int = 16
    """Tokens per prefix block (the cache's block size; vLLM's default is 16)."""

    def __post_init__(self) -> None:
        if self.num_requests < 1:
            raise ConfigError(f"num_requests must be >= 1, got {self.num_requests}")
        if not 0.0 <= self.prefix_share <= 1.0:
            raise ConfigError(f"prefix_share must be in [0, 1], got {self.prefix_share}")
        if self.num_prefixes < 1:
            raise ConfigError(f"num_prefixes must be >= 1, got {self.num_prefixes}")
        if self.block_tokens < 1:
            raise ConfigError(f"block_tokens must be >= 1, got {self.block_tokens}")


def prefix_blocks(
    input_tokens: int, shared_tokens: int, group: int, owner: int, block_tokens: int
) -> tuple[int, ...]:
    """Block ids of a prompt: shared ids for whole blocks inside the shared prefix, unique after.

    A partial last block is always unique: its content is not a whole cacheable block.
    """
    count = -(-input_tokens // block_tokens)
    shared_full = min(shared_tokens, input_tokens) // block_tokens
    block_id(UNIQUE, owner, max(0, count - 1))  # validates the owner and the largest index
    # Ids of one owner are consecutive, so ranges build them at C speed (the planner streams
    # millions of requests through here).
    shared = block_id(SHARED, group, 0)
    unique = block_id(UNIQUE, owner, 0)
    return tuple(range(shared, shared + shared_full)) + tuple(
        range(unique + shared_full, unique + count)
    )


def synthetic_requests(spec: SyntheticSpec) -> Iterator[Request]:
    """The requests of ``spec`` in arrival order, deterministic for its seed."""
    rng = random.Random(spec.seed)
    times = spec.arrivals.times(random.Random(spec.seed ^ 0x5EED))
    for i in range(spec.num_requests):
        inp = max(1, spec.input_tokens.sample_int(rng))
        out = max(1, spec.output_tokens.sample_int(rng))
        group = rng.randrange(spec.num_prefixes) if spec.num_prefixes > 1 else 0
        shared = int(spec.prefix_share * inp)
        yield Request(
            request_id=f"{spec.name}-{i}",
            arrival_s=next(times),
            input_tokens=inp,
            output_tokens=out,
            prefix_block_ids=prefix_blocks(inp, shared, group, i, spec.block_tokens),
            block_tokens=spec.block_tokens,
        )


WORKLOAD_NAMES = ("chat", "reasoning", "prefix", "agentic")
"""Names :func:`workload_spec` knows."""


def workload_spec(name: str, **overrides: Any) -> SyntheticSpec | AgenticSpec:
    """The preset spec for a workload name, with fields overridden by keyword.

    ``prefix`` is chat lengths with ``prefix_share=0.5`` unless overridden.

    Raises:
        ConfigError: unknown name or field.
    """
    presets: dict[str, SyntheticSpec | AgenticSpec] = {
        "chat": SyntheticSpec(name="chat"),
        "reasoning": SyntheticSpec(
            name="reasoning", input_tokens=REASONING_INPUT, output_tokens=REASONING_OUTPUT
        ),
        "prefix": SyntheticSpec(name="prefix", prefix_share=0.5),
        "agentic": AgenticSpec(),
    }
    if name not in presets:
        raise ConfigError(f"unknown workload {name!r}; use one of {', '.join(WORKLOAD_NAMES)}")
    try:
        return replace(presets[name], **overrides)
    except TypeError as exc:
        raise ConfigError(f"workload {name!r}: {exc}") from exc


def generate(spec: SyntheticSpec | AgenticSpec) -> Iterator[Request]:
    """The requests of any synthetic spec, in (nominal) arrival order."""
    if isinstance(spec, AgenticSpec):
        return agentic_requests(spec)
    return synthetic_requests(spec)

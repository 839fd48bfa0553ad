"""Helpers for planner tests: hand-built requests, a constant-time model, a flat power model."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from tokenwatt.plan.hardware import PowerModel
from tokenwatt.workload.types import Request


@dataclass(frozen=True)
class ConstantModel:
    """Every prefill takes ``prefill_step_s``; every decode iteration ``decode_step_s``."""

    prefill_step_s: float = 1.0
    decode_step_s: float = 0.1

    def prefill_s(self, tokens: int, batch: int, attention_pairs: int = 0) -> float:
        return self.prefill_step_s

    def decode_s(self, batch: int, context_tokens: int, steps: int) -> float:
        return self.decode_step_s * steps


FLAT_POWER = PowerModel(
    name="flat",
    idle_w=100.0,
    prefill_w=400.0,
    decode_min_w=200.0,
    decode_max_w=200.0,
    cold_start_w=50.0,
    load_w=100.0,
)
"""Round numbers so energies can be computed by hand."""


def poisson_requests(
    n: int,
    rate_per_s: float,
    seed: int = 0,
    input_tokens: int | tuple[int, int] = 100,
    output_tokens: int | tuple[int, int] = 10,
    blocks: int = 0,
    groups: int = 4,
) -> list[Request]:
    """``n`` requests with Poisson arrivals; token counts fixed or uniform in a range.

    With ``blocks`` > 0 each request carries that many 16-token prefix blocks shared within one
    of ``groups`` groups.
    """
    rng = random.Random(seed)
    t = 0.0
    out: list[Request] = []
    for i in range(n):
        inp = input_tokens if isinstance(input_tokens, int) else rng.randint(*input_tokens)
        outp = output_tokens if isinstance(output_tokens, int) else rng.randint(*output_tokens)
        g = rng.randrange(groups)
        ids = tuple(g * 1000 + k for k in range(blocks))
        if blocks:
            inp = max(inp, blocks * 16 + 1)
        out.append(Request(f"r{i}", t, inp, outp, prefix_block_ids=ids, block_tokens=16))
        t += rng.expovariate(rate_per_s)
    return out


@pytest.fixture
def constant_model() -> ConstantModel:
    """Prefill 1 s, decode 0.1 s per iteration."""
    return ConstantModel()

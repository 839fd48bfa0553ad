"""Fit request lengths to what the endpoint accepts: explicit caps, or its context window
(``max_model_len``), counting every request that had to change so the result can say so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from tokenwatt.errors import ConfigError
from tokenwatt.workload.types import Request

__all__ = ["LengthFitter", "LengthLimits", "describe_fit", "fit_lengths"]


@dataclass(frozen=True)
class LengthLimits:
    """Caps on request lengths (defaults: none, lengths as the workload gives them)."""

    max_input_tokens: int | None = None
    """Explicit prompt cap (``--max-input-tokens``); when set, ``max_model_len`` is not used."""
    max_output_tokens: int | None = None
    """Explicit answer cap (``--max-output-tokens``), applied first."""
    max_model_len: int | None = None
    """The endpoint's context, prompt plus output (``GET /v1/models``); None: unknown."""

    def __post_init__(self) -> None:
        for name in ("max_input_tokens", "max_output_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be >= 1, got {value}")
        if self.max_model_len is not None and self.max_model_len < 2:
            # One prompt token and one output token is the least a request can be.
            raise ConfigError(f"max_model_len must be >= 2, got {self.max_model_len}")

    @property
    def binding(self) -> str | None:
        """Which limit clamps prompts: ``max_input_tokens``, ``max_model_len``, or None."""
        if self.max_input_tokens is not None:
            return "max_input_tokens"
        return "max_model_len" if self.max_model_len is not None else None


def fit_lengths(input_tokens: int, output_tokens: int, limits: LengthLimits) -> tuple[int, int]:
    """(prompt, output) tokens of a request after ``limits``.

    The output is capped by ``max_output_tokens``. An explicit ``max_input_tokens`` then caps
    the prompt and nothing else applies. Otherwise, with a known ``max_model_len``, the prompt is
    cut so prompt + output fits, keeping the output length; an output that alone does not fit
    becomes ``max_model_len - 1``, leaving one prompt token.
    """
    out = (
        output_tokens
        if limits.max_output_tokens is None
        else min(output_tokens, limits.max_output_tokens)
    )
    if limits.max_input_tokens is not None:
        return min(input_tokens, limits.max_input_tokens), out
    context = limits.max_model_len
    if context is None:
        return input_tokens, out
    if out >= context:
        return 1, context - 1
    return min(input_tokens, context - out), out


class LengthFitter:
    """Applies ``LengthLimits`` to requests and counts what it changed (see ``stats``)."""

    def __init__(self, limits: LengthLimits) -> None:
        self.limits = limits
        self.requests = 0
        """Requests seen."""
        self.prompts_clamped = 0
        """Requests whose prompt was shortened by the binding limit."""
        self.outputs_clamped = 0
        """Requests whose output alone did not fit ``max_model_len`` and was shortened."""

    def fit(self, request: Request) -> Request:
        """``request`` with its lengths fitted; prefix blocks wholly cut off by a shorter prompt
        are dropped (a capped output alone leaves them as they are)."""
        self.requests += 1
        out_capped = request.output_tokens
        if self.limits.max_output_tokens is not None:
            out_capped = min(out_capped, self.limits.max_output_tokens)
        inp, out = fit_lengths(request.input_tokens, request.output_tokens, self.limits)
        self.prompts_clamped += inp < request.input_tokens
        self.outputs_clamped += out < out_capped
        if (inp, out) == (request.input_tokens, request.output_tokens):
            return request
        blocks = request.prefix_block_ids
        if inp < request.input_tokens:
            # Blocks the clamped prompt still reaches, a partial last one included (as a
            # trace's scaled prompts keep them): only a shorter prompt loses shared prefix.
            blocks = blocks[: -(-inp // request.block_tokens)]
        return dataclasses.replace(
            request, input_tokens=inp, output_tokens=out, prefix_block_ids=blocks
        )

    def fit_all(self, requests: Iterable[Request]) -> Iterator[Request]:
        """Each request fitted, lazily (a trace is never read whole)."""
        for request in requests:
            yield self.fit(request)

    def stats(self) -> dict[str, Any]:
        """What a result records: the binding limit, and how many requests it changed."""
        lim = self.limits
        out: dict[str, Any] = {
            "limit": lim.binding,
            "max_input_tokens": lim.max_input_tokens,
            "max_model_len": lim.max_model_len,
            "requests": self.requests,
            "prompts_clamped": self.prompts_clamped,
            "outputs_clamped": self.outputs_clamped,
        }
        if lim.binding is None:
            out["note"] = (
                "context limit unknown (the endpoint reported no max_model_len and no "
                "max_input_tokens was given): prompts not clamped"
            )
        return out


def describe_fit(stats: Mapping[str, Any]) -> tuple[str, str]:
    """(label, value) saying which limit fitted prompts and how many it clamped, from
    ``LengthFitter.stats()``: e.g. ("prompts clamped to fit max_model_len 8192", "37 of 500")."""
    limit = stats.get("limit")
    if limit is None:
        return ("max_model_len", "unknown: prompts not clamped")
    value = f"{stats['prompts_clamped']} of {stats['requests']}"
    if limit == "max_input_tokens":
        return (f"prompts clamped to --max-input-tokens {stats['max_input_tokens']}", value)
    if stats.get("outputs_clamped"):
        value += f" ({stats['outputs_clamped']} outputs cut to max_model_len - 1)"
    return (f"prompts clamped to fit max_model_len {stats['max_model_len']}", value)

"""Benchmark workloads by name: tokenwatt.workload's synthetic generators and trace readers,
with token counts fitted to what the endpoint accepts, plus the stats a result records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenwatt.bench.lengths import LengthFitter, LengthLimits
from tokenwatt.errors import ConfigError
from tokenwatt.workload.agentic import AgenticSpec
from tokenwatt.workload.prompts import PromptSynthesizer
from tokenwatt.workload.synthetic import generate, workload_spec
from tokenwatt.workload.tokenizer import load_tokenizer
from tokenwatt.workload.traces import TraceOptions, open_trace
from tokenwatt.workload.types import Request

__all__ = ["BENCH_WORKLOADS", "BenchWorkload", "WorkloadOptions", "build_workload"]

BENCH_WORKLOADS = ("chat", "reasoning", "agentic", "prefix-share", "trace")
"""Workload names ``tokenwatt bench`` accepts."""

_SYNTHETIC = {
    "chat": "chat",
    "reasoning": "reasoning",
    "prefix-share": "prefix",
    "agentic": "agentic",
}

TOKEN_NOTE = (
    "prompt lengths approximate: one synthetic word is about one token; exact counts need "
    "the endpoint's tokenizer"
)


@dataclass(frozen=True)
class WorkloadOptions:
    """How to build a workload (defaults: 100 chat requests, seed 0, lengths as generated)."""

    name: str = "chat"
    """One of ``BENCH_WORKLOADS``."""
    num_requests: int = 100
    """Requests to generate (synthetic) or read at most (trace)."""
    seed: int = 0
    """Seed of the generator."""
    trace: Path | None = None
    """Trace file for the ``trace`` workload."""
    sessions: int = 8
    """Agentic sessions."""
    turns: int = 10
    """Turns per agentic session."""
    prefix_share: float | None = None
    """Shared-prefix fraction for ``prefix-share`` (None: the preset's 0.5)."""
    max_input_tokens: int | None = None
    """Clamp prompts to this many tokens; when set, ``max_model_len`` is not used."""
    max_output_tokens: int | None = None
    """Clamp answers to this many tokens."""
    tokenizer: str | None = None
    """The endpoint's tokenizer for exact prompt lengths: ``bytes`` (tokenwatt serve's preset
    models) or a local Hugging Face tokenizer directory; None: about one token per word."""
    salt: str = ""
    """Mixed into every prompt so a prefix cache cannot reuse another run's prompts."""
    max_model_len: int | None = None
    """The endpoint's context (``GET /v1/models``): prompts are clamped so prompt + output
    fits (see ``bench.lengths``); None: unknown, prompts are not clamped."""

    def __post_init__(self) -> None:
        if self.name not in BENCH_WORKLOADS:
            raise ConfigError(
                f"unknown workload {self.name!r}; use one of {', '.join(BENCH_WORKLOADS)}"
            )
        if self.name == "trace" and self.trace is None:
            raise ConfigError("the trace workload needs --trace FILE (Azure, BurstGPT or Mooncake)")
        if self.num_requests < 1 or self.sessions < 1 or self.turns < 1:
            raise ConfigError("request, session and turn counts must be >= 1")
        _ = self.limits  # the caps validate themselves: bad ones are refused here, up front

    @property
    def limits(self) -> LengthLimits:
        """The length caps these options set."""
        return LengthLimits(self.max_input_tokens, self.max_output_tokens, self.max_model_len)


@dataclass(frozen=True)
class BenchWorkload:
    """Requests to send and a function giving the workload's stats once they were read."""

    requests: Iterable[Request]
    """The requests, in send order."""
    stats: Callable[[], Mapping[str, Any]]
    """Rows skipped, approximations: called after the run."""


def _synthesizer(opts: WorkloadOptions) -> PromptSynthesizer:
    if opts.tokenizer is None:
        return PromptSynthesizer(salt=opts.salt)
    if opts.tokenizer == "bytes":
        # Imported here: the engine package pulls in torch, which only this choice needs.
        from tokenwatt.engine.tokenizer import ByteTokenizer

        return PromptSynthesizer(ByteTokenizer(), salt=opts.salt)
    return PromptSynthesizer(load_tokenizer(opts.tokenizer), salt=opts.salt)


def build_workload(opts: WorkloadOptions) -> BenchWorkload:
    """The requests of a named workload, prompts filled in (shared exactly where their prefix
    block ids say, unique elsewhere).

    Raises:
        ConfigError: bad options. TraceError: missing or unreadable trace. ModelError: a
            tokenizer directory that cannot be read.
    """
    synth = _synthesizer(opts)
    fitter = LengthFitter(opts.limits)
    if opts.name == "trace":
        assert opts.trace is not None
        # Lengths are fitted here, not by the reader, so every clamp is counted in one place.
        reader = open_trace(opts.trace, options=TraceOptions(limit=opts.num_requests))

        def trace_stats() -> Mapping[str, Any]:
            s = reader.stats
            return {
                "trace": s.path,
                "format": s.format,
                "rows": s.rows,
                "requests": s.requests,
                "skipped": dict(s.skipped),
                "token_counts": synth.token_counts,
                "context": fitter.stats(),
            }

        return BenchWorkload(map(synth.for_request, fitter.fit_all(reader)), trace_stats)
    overrides: dict[str, Any] = {"seed": opts.seed}
    if opts.name == "agentic":
        overrides.update(num_sessions=opts.sessions, turns=opts.turns)
    else:
        overrides["num_requests"] = opts.num_requests
        if opts.prefix_share is not None:
            overrides["prefix_share"] = opts.prefix_share
    spec = workload_spec(_SYNTHETIC[opts.name], **overrides)
    requests = [synth.for_request(r) for r in fitter.fit_all(generate(spec))]
    kind = "sessions" if isinstance(spec, AgenticSpec) else "requests"
    summary = {"workload": opts.name, "requests": len(requests), "kind": kind}

    def stats() -> Mapping[str, Any]:
        return {**summary, "token_counts": synth.token_counts, "context": fitter.stats()}

    return BenchWorkload(requests, stats)

"""Workload recipes: a request stream named by small picklable values (a trace file, a synthetic
generator's name and parameters, or requests in memory) that any process can open again.

``WorkloadOptions`` turns the flat choices a user makes (a trace, or ``-w chat -n 1000 --rate 5``)
into a recipe, with the rules that tie them together.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tokenwatt.errors import ConfigError
from tokenwatt.workload import Arrivals, TraceOptions, TraceReader, open_trace
from tokenwatt.workload.types import Request

__all__ = [
    "WORKLOADS",
    "ListWorkload",
    "SyntheticWorkload",
    "TraceWorkload",
    "Workload",
    "WorkloadOptions",
]

WORKLOADS = ("chat", "reasoning", "agentic", "prefix-share")
"""Synthetic workload names, the same as ``tokenwatt bench`` (``prefix`` is kept as an alias)."""

_GENERATOR_NAMES = {"chat": "chat", "reasoning": "reasoning", "agentic": "agentic"}
_GENERATOR_NAMES |= {"prefix-share": "prefix", "prefix": "prefix"}

_REQUESTS_PER_SESSION = 10
"""Agentic runs count sessions, not requests: ``num_requests`` over this (at least one)."""


class Workload:
    """A recipe for a request stream that can be opened again in another process."""

    def __iter__(self) -> Iterator[Request]:
        raise NotImplementedError


@dataclass(frozen=True)
class TraceWorkload(Workload):
    """A trace file read with ``tokenwatt.workload.open_trace``."""

    path: str = ""
    """The trace file."""
    format: str = "auto"
    """auto, azure, burstgpt or mooncake."""
    options: TraceOptions = field(default_factory=TraceOptions)
    """Window, limit, speed-up and token scaling."""
    columns: bool | None = None
    """Simulate from numpy columns (faster, no prefix block ids); None: yes unless the trace
    carries block ids (Mooncake)."""

    def reader(self) -> TraceReader:
        """The trace reader (format detected unless given)."""
        return open_trace(self.path, self.format, self.options)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Request]:
        return iter(self.reader())

    def use_columns(self) -> bool:
        """Whether ``run_workload`` takes the columnar path."""
        if self.columns is not None:
            return self.columns
        return self.reader().format != "mooncake"


@dataclass(frozen=True)
class SyntheticWorkload(Workload):
    """A synthetic workload from ``tokenwatt.workload.workload_spec(name, **params)``."""

    name: str = "chat"
    """chat, reasoning, prefix or agentic."""
    params: tuple[tuple[str, Any], ...] = ()
    """Spec fields to override, as (name, value) pairs."""

    def __iter__(self) -> Iterator[Request]:
        from tokenwatt.workload import generate, workload_spec

        return generate(workload_spec(self.name, **dict(self.params)))


@dataclass(frozen=True)
class ListWorkload(Workload):
    """Requests held in memory (small cases and tests)."""

    requests: tuple[Request, ...] = ()
    """The requests, in arrival order."""

    def __iter__(self) -> Iterator[Request]:
        return iter(self.requests)


@dataclass(frozen=True)
class WorkloadOptions:
    """A plan's request stream as flat choices: a trace file, else a synthetic workload with
    Poisson arrivals. Checked on construction; messages name the ``tokenwatt plan`` options."""

    trace: str | None = None
    """A trace file (Azure CSV, BurstGPT CSV, Mooncake JSONL); None: the synthetic workload."""
    workload: str = "chat"
    """Synthetic workload, one of ``WORKLOADS`` (or ``prefix``); ignored with a trace."""
    num_requests: int = 1000
    """Synthetic requests (agentic: a tenth as many sessions, at least one)."""
    rate_per_s: float = 5.0
    """Synthetic Poisson arrivals (agentic: session arrivals) per second."""
    seed: int = 0
    """Seed of the synthetic workload."""
    limit: int | None = None
    """Read at most this many trace requests; None: all."""
    speedup: float = 1.0
    """Replay the trace this many times faster."""
    prefix_share: float | None = None
    """Fraction of each synthetic prompt shared with its group (0..1); None: the workload's
    default (0.5 for prefix-share, 0 for chat and reasoning). Refused for agentic and traces."""

    def __post_init__(self) -> None:
        share = self.prefix_share
        if share is not None and not 0.0 <= share <= 1.0:
            raise ConfigError(f"--prefix-share must be in [0, 1] (a fraction), got {share}")
        if self.trace is not None:
            if share is not None:
                raise ConfigError(
                    "--prefix-share applies to synthetic workloads; drop it with a trace"
                )
            return
        name = _GENERATOR_NAMES.get(self.workload)
        if name is None:
            raise ConfigError(
                f"unknown workload {self.workload!r}; use one of {', '.join(WORKLOADS)} "
                "(or pass a trace file)"
            )
        self._arrivals()
        if name == "agentic" and share is not None:
            raise ConfigError(
                "--prefix-share applies to chat, reasoning and prefix-share; agentic sessions "
                "share their system prefix and history by construction"
            )

    def _arrivals(self) -> Arrivals:
        return Arrivals("poisson", self.rate_per_s)

    def recipe(self) -> TraceWorkload | SyntheticWorkload:
        """The workload these options name, ready for ``run_workload``, ``sweep`` or
        ``search_min_energy``."""
        if self.trace is not None:
            options = TraceOptions(limit=self.limit, speedup=self.speedup)
            return TraceWorkload(self.trace, "auto", options)
        name = _GENERATOR_NAMES[self.workload]
        if name == "agentic":
            sessions = max(1, self.num_requests // _REQUESTS_PER_SESSION)
            params: tuple[tuple[str, Any], ...] = (
                ("num_sessions", sessions),
                ("session_arrivals", self._arrivals()),
                ("seed", self.seed),
            )
        else:
            params = (
                ("num_requests", self.num_requests),
                ("arrivals", self._arrivals()),
                ("seed", self.seed),
            )
            if self.prefix_share is not None:
                params += (("prefix_share", self.prefix_share),)
        return SyntheticWorkload(name, params)

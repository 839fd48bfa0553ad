"""A request inside the engine: its mutable state, the plain-data output it emits each step,
its energy share, and incremental detokenization with stop strings.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch

from tokenwatt.energy.meter import Component
from tokenwatt.errors import ConfigError, TokenwattError

from .sampling import SamplingParams
from .tokenizer import Tokenizer

__all__ = [
    "EnergyShare",
    "EngineOverloadedError",
    "FinishReason",
    "InvalidRequestError",
    "RequestOutput",
    "RequestState",
    "RequestStatus",
]

FinishReason = Literal["stop", "length", "abort", "error"]


class InvalidRequestError(ConfigError):
    """A request the engine cannot run (empty prompt, longer than the context, ...)."""


class EngineOverloadedError(TokenwattError):
    """The waiting queue is full; retry after ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class EnergyShare:
    """Energy attributed to one request: each step's energy split by tokens processed."""

    energy_j: float = 0.0
    """Joules summed over components (see ``scope`` for what that covers)."""
    by_component: Mapping[str, float] = field(default_factory=dict)
    """Joules per meter component name."""
    source: str = ""
    """Sources of the components, ``+``-joined (``nvml``, ``estimated:cpu-model``, ...)."""
    scope: str = ""
    """Scopes of the components, ``+``-joined (``gpu``, ``cpu+dram``, ...)."""
    estimated: bool = False
    """True when any component is an estimate rather than a sensor reading."""

    def to_dict(self) -> dict[str, object]:
        """The ``usage.energy`` extension object of API responses."""
        return {
            "energy_j": self.energy_j,
            "source": self.source,
            "scope": self.scope,
            "estimated": self.estimated,
            "components": dict(self.by_component),
        }

    @staticmethod
    def build(joules: Mapping[str, float], components: Sequence[Component]) -> EnergyShare:
        """Share from per-component joules, labelled from the meter's components."""
        sources = sorted({c.source for c in components})
        scopes = sorted({c.scope for c in components})
        return EnergyShare(
            energy_j=float(sum(joules.values())),
            by_component=dict(joules),
            source="+".join(sources),
            scope="+".join(scopes),
            estimated=any(c.estimated for c in components),
        )


@dataclass(frozen=True)
class RequestOutput:
    """What one step produced for one request (plain data; deltas since the last output)."""

    request_id: str
    """The request."""
    text: str = ""
    """New text since the previous output (stop strings removed)."""
    token_ids: tuple[int, ...] = ()
    """New token ids since the previous output."""
    finished: bool = False
    """True on the request's last output."""
    finish_reason: FinishReason | None = None
    """Why it finished: stop (EOS or stop string), length (max_tokens), abort, error."""
    prompt_tokens: int = 0
    """Prompt length in tokens."""
    completion_tokens: int = 0
    """Tokens generated so far."""
    cached_tokens: int = 0
    """Prompt tokens supplied by the prefix provider instead of computed."""
    energy: EnergyShare | None = None
    """Energy attributed so far (None when the engine has no meter)."""
    error: str | None = None
    """What went wrong when ``finish_reason`` is ``error``."""


class RequestStatus(enum.Enum):
    """Where a request is in its life."""

    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


class RequestState:
    """Engine-internal mutable state of one request (touched only by the engine thread)."""

    def __init__(
        self,
        request_id: str,
        prompt_ids: Sequence[int],
        params: SamplingParams,
        tokenizer: Tokenizer,
        *,
        tenant: str | None = None,
    ) -> None:
        self.request_id = request_id
        self.tenant = tenant
        self.prompt_ids = list(prompt_ids)
        self.params = params
        self.status = RequestStatus.WAITING
        self.output_ids: list[int] = []
        self.num_computed = 0
        self.cached_tokens = 0
        self.blocks_published = 0
        self.energy_j: dict[str, float] = {}
        self.finish_reason: FinishReason | None = None
        self.generator: torch.Generator | None = None
        if not params.greedy:
            self.generator = torch.Generator()
            if params.seed is None:
                self.generator.seed()
            else:
                self.generator.manual_seed(params.seed)
        self._tokenizer = tokenizer
        self._stop_ids = tokenizer.stop_ids
        self._emitted_text = ""
        self._emitted_tokens = 0
        self._hold = max((len(s) for s in params.stop), default=1) - 1

    @property
    def all_ids(self) -> list[int]:
        """Prompt followed by output."""
        return self.prompt_ids + self.output_ids

    @property
    def prefill_done(self) -> bool:
        """True once every prompt token is in the cache."""
        return self.num_computed >= len(self.prompt_ids)

    @property
    def reserve_tokens(self) -> int:
        """KV positions this request may need: prompt plus max_tokens."""
        return len(self.prompt_ids) + self.params.max_tokens

    def append_token(self, token_id: int) -> None:
        """Record a generated token and finish on a stop id (EOS) or max_tokens."""
        self.output_ids.append(token_id)
        if token_id in self._stop_ids and not self.params.ignore_eos:
            self.finish_reason = "stop"
        elif len(self.output_ids) >= self.params.max_tokens:
            self.finish_reason = "length"

    def take_text(self) -> str:
        """New text to emit; detects stop strings (and then finishes the request)."""
        ids = self.output_ids
        if self.finish_reason == "stop" and ids and ids[-1] in self._stop_ids:
            ids = ids[:-1]
        text = self._tokenizer.decode(ids)
        if self.params.stop:
            start = max(0, len(self._emitted_text) - self._hold)
            hits = [i for i in (text.find(s, start) for s in self.params.stop) if i >= 0]
            if hits:
                text = text[: min(hits)]
                self.finish_reason = "stop"
        finished = self.finish_reason is not None
        if not finished:
            # Hold back an incomplete UTF-8 tail and a possible partial stop string.
            if text.endswith("\ufffd"):
                text = text.rstrip("\ufffd")
            if self._hold:
                text = text[: max(len(self._emitted_text), len(text) - self._hold)]
        if len(text) <= len(self._emitted_text):
            return ""
        delta = text[len(self._emitted_text) :]
        self._emitted_text = text
        return delta

    def take_new_tokens(self) -> tuple[int, ...]:
        """Token ids not yet emitted."""
        new = tuple(self.output_ids[self._emitted_tokens :])
        self._emitted_tokens = len(self.output_ids)
        return new

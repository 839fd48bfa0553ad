"""Agentic sessions: a shared system/tool prefix, a growing history, tool-result turns, think time.

Each session is planned up front (a :class:`SessionPlan`, so the bench can build chat messages
turn by turn) and flattened into Requests whose prefix block ids follow the shared prefix and the
session's history, so a cache model sees exactly the reuse a real agent loop offers.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from tokenwatt.errors import ConfigError
from tokenwatt.workload.arrivals import Arrivals
from tokenwatt.workload.blocks import SESSION, SHARED, TAIL, block_id
from tokenwatt.workload.distributions import LogNormal
from tokenwatt.workload.types import Request

__all__ = ["AgenticSpec", "SessionPlan", "TurnPlan", "agentic_requests", "agentic_sessions"]

TurnRole = Literal["user", "tool"]

# Illustrative defaults (no public agent trace is shipped); every one is a spec field.
USER_TOKENS = LogNormal(median=64.0, sigma=0.6, minimum=4.0, maximum=1024.0)
TOOL_RESULT_TOKENS = LogNormal(median=384.0, sigma=0.8, minimum=8.0, maximum=8192.0)
AGENT_OUTPUT_TOKENS = LogNormal(median=96.0, sigma=0.7, minimum=4.0, maximum=2048.0)
TOOL_TIME_S = LogNormal(median=0.5, sigma=1.0, minimum=0.01, maximum=30.0)
USER_THINK_S = LogNormal(median=5.0, sigma=0.8, minimum=0.5, maximum=120.0)


@dataclass(frozen=True)
class AgenticSpec:
    """N concurrent agent sessions of several turns each (defaults: 8 sessions x 10 turns)."""

    name: str = "agentic"
    """Label for session and request ids."""
    num_sessions: int = 8
    """Sessions to generate."""
    turns: int = 10
    """Turns per session (fewer if ``max_context_tokens`` ends it first)."""
    seed: int = 0
    """Seed; session s draws from its own stream, so it does not change with num_sessions."""
    session_arrivals: Arrivals = field(default_factory=Arrivals)
    """When sessions start (default closed loop: all at 0, so num_sessions run concurrently)."""
    system_prefix_tokens: int = 2048
    """Tokens of the system prompt and tool schemas every session of a group shares."""
    num_system_prefixes: int = 1
    """Distinct system prefixes (agents); each session draws one uniformly."""
    user_tokens: LogNormal = USER_TOKENS
    """Tokens of a user message (turn 0 is always one)."""
    tool_result_tokens: LogNormal = TOOL_RESULT_TOKENS
    """Tokens of a tool result appended to the history."""
    tool_turn_share: float = 0.75
    """Probability that a turn after the first brings a tool result rather than a user message."""
    output_tokens: LogNormal = AGENT_OUTPUT_TOKENS
    """Tokens of each assistant answer (a tool call or a reply)."""
    tool_time_s: LogNormal = TOOL_TIME_S
    """Seconds a tool runs between the assistant's call and the next turn."""
    user_think_s: LogNormal = USER_THINK_S
    """Seconds a user thinks before the next user message."""
    max_context_tokens: int | None = None
    """End a session before a turn whose prompt plus answer would exceed this; None: no limit."""
    block_tokens: int = 16
    """Tokens per prefix block."""

    def __post_init__(self) -> None:
        for name in ("num_sessions", "turns", "num_system_prefixes", "block_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"agentic {name} must be >= 1, got {getattr(self, name)}")
        if self.system_prefix_tokens < 0:
            raise ConfigError(
                f"agentic system_prefix_tokens must be >= 0, got {self.system_prefix_tokens}"
            )
        if not 0.0 <= self.tool_turn_share <= 1.0:
            raise ConfigError(
                f"agentic tool_turn_share must be in [0, 1], got {self.tool_turn_share}"
            )
        if (
            self.max_context_tokens is not None
            and self.max_context_tokens < self.system_prefix_tokens + 2
        ):
            raise ConfigError(
                f"agentic max_context_tokens ({self.max_context_tokens}) leaves no room after the "
                f"{self.system_prefix_tokens}-token system prefix; raise it or shrink the prefix"
            )


@dataclass(frozen=True)
class TurnPlan:
    """One planned turn: the message appended to the history and the answer's length."""

    role: TurnRole = "user"
    """``user`` for a user message, ``tool`` for a tool result."""
    message_tokens: int = 1
    """Tokens of the appended message."""
    output_tokens: int = 1
    """Tokens the assistant answers with."""
    think_time_s: float = 0.0
    """Delay after the previous answer before this turn is sent (0 for the first turn)."""
    input_tokens: int = 1
    """Whole prompt: system prefix + history + this message."""


@dataclass(frozen=True)
class SessionPlan:
    """A planned session: its prefix group, start time and turns."""

    session_id: str = ""
    """Unique session id."""
    index: int = 0
    """Session number within the workload."""
    start_s: float = 0.0
    """When the first turn is offered."""
    group: int = 0
    """Which system prefix it shares."""
    system_tokens: int = 0
    """Tokens of that shared prefix."""
    turns: tuple[TurnPlan, ...] = ()
    """Its turns, in order."""
    block_tokens: int = 16
    """Tokens per prefix block."""

    def requests(self) -> Iterator[Request]:
        """The session's turns as Requests; arrival = start + think times (instant answers).

        That arrival is the earliest a turn can be sent; a client that waits for answers sends turn
        t ``think_time_s`` after turn t-1's answer instead.
        """
        arrival = self.start_s
        for t, turn in enumerate(self.turns):
            arrival += turn.think_time_s
            yield Request(
                request_id=f"{self.session_id}-{t}",
                arrival_s=arrival,
                input_tokens=turn.input_tokens,
                output_tokens=turn.output_tokens,
                session_id=self.session_id,
                turn=t,
                prefix_block_ids=self.block_ids(t),
                block_tokens=self.block_tokens,
                think_time_s=turn.think_time_s,
            )

    def block_ids(self, turn: int) -> tuple[int, ...]:
        """Prefix block ids of a turn's prompt: shared system blocks, then session history."""
        b = self.block_tokens
        context = self.turns[turn].input_tokens
        full = context // b
        shared_full = min(full, self.system_tokens // b)
        shared = block_id(SHARED, self.group, 0)
        own = block_id(SESSION, self.index, max(0, full - 1))  # validates the largest index
        own -= max(0, full - 1)
        ids = tuple(range(shared, shared + shared_full)) + tuple(
            range(own + shared_full, own + full)
        )
        if context % b:
            ids += (block_id(TAIL, self.index, turn),)
        return ids


def _plan_session(spec: AgenticSpec, index: int, start_s: float) -> SessionPlan:
    rng = random.Random(f"{spec.seed}:{index}")
    group = rng.randrange(spec.num_system_prefixes) if spec.num_system_prefixes > 1 else 0
    limit = spec.max_context_tokens
    history = spec.system_prefix_tokens
    turns: list[TurnPlan] = []
    for t in range(spec.turns):
        tool = t > 0 and rng.random() < spec.tool_turn_share
        role: TurnRole = "tool" if tool else "user"
        message = (spec.tool_result_tokens if tool else spec.user_tokens).sample_int(rng)
        output = max(1, spec.output_tokens.sample_int(rng))
        think = 0.0 if t == 0 else (spec.tool_time_s if tool else spec.user_think_s).sample(rng)
        message = max(1, message)
        if limit is not None and history + message + output > limit:
            if t > 0:
                break
            # The first turn always runs: shrink it to fit rather than plan an empty session.
            output = max(1, min(output, (limit - history) // 2))
            message = max(1, limit - history - output)
        prompt = history + message
        turns.append(TurnPlan(role, message, output, think, prompt))
        history = prompt + output
    return SessionPlan(
        session_id=f"{spec.name}-{index}",
        index=index,
        start_s=start_s,
        group=group,
        system_tokens=spec.system_prefix_tokens,
        turns=tuple(turns),
        block_tokens=spec.block_tokens,
    )


def agentic_sessions(spec: AgenticSpec) -> Iterator[SessionPlan]:
    """The planned sessions of ``spec`` in start order, deterministic for its seed."""
    starts = spec.session_arrivals.times(random.Random(f"{spec.seed}:arrivals"))
    for index in range(spec.num_sessions):
        yield _plan_session(spec, index, next(starts))


def agentic_requests(spec: AgenticSpec) -> Iterator[Request]:
    """Every turn of every session as Requests ordered by nominal arrival (ties: session, turn).

    Streams: only sessions already started are held, so a long workload needs little memory.
    """
    heap: list[tuple[float, int, int, Request, Iterator[Request]]] = []
    sessions = agentic_sessions(spec)
    pending = next(sessions, None)
    while heap or pending is not None:
        while pending is not None and (not heap or pending.start_s <= heap[0][0]):
            it = pending.requests()
            first = next(it, None)
            if first is not None:
                heapq.heappush(heap, (first.arrival_s, pending.index, 0, first, it))
            pending = next(sessions, None)
        if not heap:
            continue
        _, index, turn, request, it = heapq.heappop(heap)
        yield request
        nxt = next(it, None)
        if nxt is not None:
            heapq.heappush(heap, (nxt.arrival_s, index, turn + 1, nxt, it))

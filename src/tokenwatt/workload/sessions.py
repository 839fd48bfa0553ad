"""Multi-turn session state for the bench client: the next turn's chat messages and think time.

The history holds the answers the endpoint actually gave (as a real agent loop would), so a
session's context grows by what was generated, not by what was planned.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from tokenwatt.errors import ConfigError
from tokenwatt.workload.agentic import AgenticSpec, SessionPlan, agentic_sessions
from tokenwatt.workload.blocks import SHARED, block_id
from tokenwatt.workload.prompts import PromptSynthesizer
from tokenwatt.workload.types import Request

__all__ = ["ChatMessage", "SessionState", "SessionTurn", "agentic_states", "states_from_requests"]

ChatMessage = dict[str, str]
"""One OpenAI chat message: ``{"role": ..., "content": ...}``."""


@dataclass(frozen=True)
class SessionTurn:
    """What one turn adds and asks for."""

    role: str = "user"
    """Role of the appended message."""
    message_tokens: int = 1
    """Tokens of the appended message's content."""
    output_tokens: int = 1
    """max_tokens for the answer."""
    think_time_s: float = 0.0
    """Wait after the previous answer before sending this turn."""
    request_id: str = ""
    """Id of the workload request this turn stands for."""


class SessionState:
    """One session's chat history; ask :meth:`messages`, send, then :meth:`add_answer`.

    Tool results are sent with ``tool_role`` (default ``user`` with a ``[tool result]`` tag):
    OpenAI's ``tool`` role needs a matching ``tool_calls`` id in the previous assistant message,
    which a synthetic answer does not carry, and servers reject it.
    """

    def __init__(
        self,
        session_id: str,
        turns: Sequence[SessionTurn],
        synth: PromptSynthesizer,
        system_text: str = "",
        tool_role: str = "user",
    ) -> None:
        if not turns:
            raise ConfigError(f"session {session_id} has no turns")
        self.session_id = session_id
        self.turns = tuple(turns)
        self.synth = synth
        self.tool_role = tool_role
        self._history: list[ChatMessage] = []
        if system_text:
            self._history.append({"role": "system", "content": system_text})
        self._turn = 0
        self._pending: ChatMessage | None = None

    @classmethod
    def from_plan(
        cls, plan: SessionPlan, synth: PromptSynthesizer, tool_role: str = "user"
    ) -> SessionState:
        """A session of the agentic generator; a prefix group's sessions share the system text."""
        b = plan.block_tokens
        n_blocks = -(-plan.system_tokens // b)
        ids = [block_id(SHARED, plan.group, k) for k in range(n_blocks)]
        # Token counts exclude the tokenizer's specials: the system prompt is content only.
        system = (
            synth.from_blocks(ids, b, plan.system_tokens + synth.special_tokens)
            if plan.system_tokens
            else ""
        )
        turns = [
            SessionTurn(
                t.role, t.message_tokens, t.output_tokens, t.think_time_s, f"{plan.session_id}-{i}"
            )
            for i, t in enumerate(plan.turns)
        ]
        return cls(plan.session_id, turns, synth, system, tool_role)

    @classmethod
    def from_requests(cls, requests: Sequence[Request], synth: PromptSynthesizer) -> SessionState:
        """A session from trace requests of one session id, in turn order.

        A turn's new message is its prompt minus the previous prompt and answer when the prompt
        grew by more than that (the trace counts the whole context), else the whole prompt.
        """
        if not requests:
            raise ConfigError("a session needs at least one request")
        turns: list[SessionTurn] = []
        context = 0
        for r in sorted(requests, key=lambda r: r.turn):
            grown = r.input_tokens - context
            message = grown if context and grown > 0 else r.input_tokens
            turns.append(
                SessionTurn("user", message, r.output_tokens, r.think_time_s, r.request_id)
            )
            context = r.input_tokens + r.output_tokens
        return cls(requests[0].session_id or requests[0].request_id, turns, synth)

    @property
    def turn(self) -> int:
        """Index of the next turn to send."""
        return self._turn

    @property
    def done(self) -> bool:
        """True when every turn has been answered."""
        return self._turn >= len(self.turns)

    @property
    def next_turn(self) -> SessionTurn:
        """The turn :meth:`messages` builds (max_tokens, think time, request id)."""
        if self.done:
            raise ConfigError(f"session {self.session_id} has no turns left")
        return self.turns[self._turn]

    def messages(self) -> list[ChatMessage]:
        """The full chat for the next turn: history plus the new user or tool message."""
        turn = self.next_turn
        if self._pending is None:
            self._pending = self._new_message(turn)
        return [*self._history, self._pending]

    def add_answer(self, text: str) -> None:
        """Record the endpoint's answer to the turn just sent and move to the next turn."""
        self._history.append(self.messages()[-1])
        self._history.append({"role": "assistant", "content": text})
        self._pending = None
        self._turn += 1

    def _new_message(self, turn: SessionTurn) -> ChatMessage:
        synth = self.synth
        nonce = f"{self.session_id}/{self._turn}"
        role, tag = "user", ""
        if turn.role == "tool":
            role = self.tool_role
            tag = "" if role == "tool" else "[tool result] "
        tag_tokens = synth.count(tag) - synth.special_tokens if tag else 0
        # The tag counts toward the message's tokens when there is room for it.
        if tag_tokens >= turn.message_tokens:
            tag, tag_tokens = "", 0
        body = synth.unique(turn.message_tokens - tag_tokens + synth.special_tokens, nonce)
        return {"role": role, "content": tag + body}


def agentic_states(
    spec: AgenticSpec, synth: PromptSynthesizer, tool_role: str = "user"
) -> Iterator[SessionState]:
    """One SessionState per session of an agentic spec, in start order."""
    for plan in agentic_sessions(spec):
        yield SessionState.from_plan(plan, synth, tool_role)


def states_from_requests(
    requests: Iterable[Request], synth: PromptSynthesizer
) -> list[SessionState]:
    """Trace requests grouped into sessions by ``session_id``, in order of first appearance.

    A request without a session id is a session of one turn.
    """
    groups: dict[str, list[Request]] = {}
    for r in requests:
        groups.setdefault(r.session_id or f"\0{r.request_id}", []).append(r)
    return [SessionState.from_requests(g, synth) for g in groups.values()]

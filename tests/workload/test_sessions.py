"""Session state: chat messages per turn, real answers in the history, shared system text."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from tokenwatt.errors import ConfigError
from tokenwatt.workload.agentic import AgenticSpec, agentic_sessions
from tokenwatt.workload.prompts import PromptSynthesizer
from tokenwatt.workload.sessions import SessionState, SessionTurn
from tokenwatt.workload.types import Request


class ByteTokenizer:
    """Each UTF-8 byte is a token, plus a BOS (id 256)."""

    def encode(self, text: str) -> list[int]:
        return [256, *text.encode("utf-8")]

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(i for i in ids if i != 256).decode("utf-8", errors="replace")


def _plans(n: int = 2) -> list[SessionState]:
    synth = PromptSynthesizer(ByteTokenizer())
    spec = AgenticSpec(num_sessions=n, turns=4, system_prefix_tokens=64)
    return [SessionState.from_plan(p, synth) for p in agentic_sessions(spec)]


def test_first_turn_is_system_plus_user_message_of_planned_size() -> None:
    """Turn 0: the 64-token system text and a user message of the planned length."""
    (state,) = _plans(1)
    msgs = state.messages()
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert len(msgs[0]["content"].encode()) == 64
    assert len(msgs[1]["content"].encode()) == state.turns[0].message_tokens


def test_answers_enter_the_history_and_turns_advance() -> None:
    """After an answer the next turn carries it, then one new message; done after the last."""
    (state,) = _plans(1)
    first = state.messages()
    state.add_answer("ANSWER-0")
    second = state.messages()
    assert second[: len(first)] == first
    assert second[len(first)] == {"role": "assistant", "content": "ANSWER-0"}
    assert len(second) == len(first) + 2 and state.turn == 1
    for i in range(1, 4):
        state.add_answer(f"ANSWER-{i}")
    assert state.done
    with pytest.raises(ConfigError, match="no turns left"):
        state.messages()


def test_messages_are_stable_until_answered() -> None:
    """Asking twice for the same turn gives the same messages (a retry resends them)."""
    (state,) = _plans(1)
    assert state.messages() == state.messages()


def test_sessions_share_the_system_text_and_nothing_else() -> None:
    """Two sessions of one group have equal system messages and different user messages."""
    a, b = _plans(2)
    ma, mb = a.messages(), b.messages()
    assert ma[0] == mb[0]
    assert ma[1]["content"] != mb[1]["content"]


def test_tool_results_are_tagged_user_messages_by_default() -> None:
    """A tool turn is a user message starting with '[tool result] ' of the planned length."""
    synth = PromptSynthesizer(ByteTokenizer())
    turns = [SessionTurn("user", 10, 5), SessionTurn("tool", 40, 5, think_time_s=0.5)]
    state = SessionState("s", turns, synth)
    state.add_answer("call tool")
    msg = state.messages()[-1]
    assert msg["role"] == "user" and msg["content"].startswith("[tool result] ")
    assert len(msg["content"].encode()) == 40
    assert state.next_turn.think_time_s == 0.5
    tool_state = SessionState("s", turns, synth, tool_role="tool")
    tool_state.add_answer("call tool")
    assert tool_state.messages()[-1]["role"] == "tool"


def test_from_requests_takes_the_growth_as_the_new_message() -> None:
    """Trace turns whose prompts include the history: new message = growth past the last answer."""
    reqs = [
        Request("r0", input_tokens=100, output_tokens=20, session_id="s", turn=0),
        Request("r1", input_tokens=150, output_tokens=10, session_id="s", turn=1),
        Request("r2", input_tokens=30, output_tokens=10, session_id="s", turn=2),
    ]
    state = SessionState.from_requests(reqs, PromptSynthesizer())
    assert [t.message_tokens for t in state.turns] == [100, 30, 30]
    assert [t.request_id for t in state.turns] == ["r0", "r1", "r2"]


def test_empty_sessions_are_rejected() -> None:
    """A session without turns raises ConfigError."""
    with pytest.raises(ConfigError, match="at least one request"):
        SessionState.from_requests([], PromptSynthesizer())


def test_agentic_states_give_one_state_per_session() -> None:
    """agentic_states yields num_sessions states with the spec's turns."""
    from tokenwatt.workload.sessions import agentic_states

    spec = AgenticSpec(num_sessions=3, turns=2, system_prefix_tokens=32)
    states = list(agentic_states(spec, PromptSynthesizer(ByteTokenizer())))
    assert [s.session_id for s in states] == ["agentic-0", "agentic-1", "agentic-2"]
    assert all(len(s.turns) == 2 for s in states)


def test_states_from_requests_group_by_session_id() -> None:
    """Requests group by session id in first-seen order; lone requests are one-turn sessions."""
    from tokenwatt.workload.sessions import states_from_requests

    reqs = [
        Request("a0", session_id="a", turn=0),
        Request("x", session_id=None),
        Request("a1", session_id="a", turn=1),
    ]
    states = states_from_requests(reqs, PromptSynthesizer())
    assert [(s.session_id, len(s.turns)) for s in states] == [("a", 2), ("x", 1)]

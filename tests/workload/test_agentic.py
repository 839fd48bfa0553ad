"""Agentic sessions: growing contexts, consistent prefix blocks, think times, ordering."""

from __future__ import annotations

import itertools
from collections import defaultdict

import pytest

from tokenwatt.errors import ConfigError
from tokenwatt.workload.agentic import AgenticSpec, agentic_requests, agentic_sessions
from tokenwatt.workload.arrivals import Arrivals
from tokenwatt.workload.blocks import SHARED, split_block_id
from tokenwatt.workload.types import Request


def _by_session(reqs: list[Request]) -> dict[str, list[Request]]:
    out: dict[str, list[Request]] = defaultdict(list)
    for r in reqs:
        assert r.session_id is not None
        out[r.session_id].append(r)
    return out


def test_default_is_8_sessions_of_10_turns_growing_to_thousands() -> None:
    """Defaults: 80 requests; every session's last prompt exceeds 2,500 tokens."""
    reqs = list(agentic_requests(AgenticSpec()))
    sessions = _by_session(reqs)
    assert len(reqs) == 80 and len(sessions) == 8
    assert all([r.turn for r in s] == list(range(10)) for s in sessions.values())
    assert min(s[-1].input_tokens for s in sessions.values()) > 2500


def test_history_grows_by_answer_plus_new_message() -> None:
    """Each turn's prompt is the previous prompt + its answer + the new message."""
    (plan,) = list(agentic_sessions(AgenticSpec(num_sessions=1)))
    for prev, turn in itertools.pairwise(plan.turns):
        assert turn.input_tokens == prev.input_tokens + prev.output_tokens + turn.message_tokens
    assert plan.turns[0].input_tokens == 2048 + plan.turns[0].message_tokens
    assert plan.turns[0].role == "user"
    assert {t.role for t in plan.turns[1:]} == {"user", "tool"}


def test_later_turns_extend_earlier_turns_blocks() -> None:
    """Turn t+1's block ids start with turn t's full blocks (the cached history)."""
    (plan,) = list(agentic_sessions(AgenticSpec(num_sessions=1)))
    for t in range(len(plan.turns) - 1):
        full = plan.turns[t].input_tokens // 16
        assert plan.block_ids(t + 1)[:full] == plan.block_ids(t)[:full]


def test_sessions_share_exactly_the_system_prefix_blocks() -> None:
    """Two sessions share their 128 system blocks (2,048 / 16) and nothing else."""
    a, b = list(agentic_sessions(AgenticSpec(num_sessions=2)))
    ids_a, ids_b = set(a.block_ids(9)), set(b.block_ids(9))
    common = ids_a & ids_b
    assert len(common) == 128
    assert {split_block_id(x)[0] for x in common} == {SHARED}


def test_think_times_set_nominal_arrivals() -> None:
    """Turn 0 has no think time; turn t arrives think_time_s after turn t-1's arrival."""
    spec = AgenticSpec(num_sessions=3, session_arrivals=Arrivals("constant", 1.0))
    for turns in _by_session(list(agentic_requests(spec))).values():
        assert turns[0].think_time_s == 0.0
        for prev, cur in itertools.pairwise(turns):
            assert cur.think_time_s > 0
            assert cur.arrival_s == pytest.approx(prev.arrival_s + cur.think_time_s)


def test_requests_come_in_arrival_order() -> None:
    """The merged stream never goes back in time, and closed-loop sessions all start at 0."""
    reqs = list(agentic_requests(AgenticSpec(num_sessions=5)))
    arrivals = [r.arrival_s for r in reqs]
    assert arrivals == sorted(arrivals)
    assert [r.arrival_s for r in reqs if r.turn == 0] == [0.0] * 5


def test_max_context_ends_sessions_early() -> None:
    """No turn's prompt plus answer exceeds max_context_tokens; sessions end instead."""
    spec = AgenticSpec(num_sessions=4, system_prefix_tokens=100, max_context_tokens=600)
    reqs = list(agentic_requests(spec))
    assert max(r.input_tokens + r.output_tokens for r in reqs) <= 600
    assert len(reqs) < 40


def test_a_session_does_not_depend_on_the_number_of_sessions() -> None:
    """Session 0 is the same whether 1 or 5 sessions are generated."""
    one = next(agentic_sessions(AgenticSpec(num_sessions=1)))
    five = next(agentic_sessions(AgenticSpec(num_sessions=5)))
    assert one == five


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"turns": 0}, "turns must be >= 1"),
        ({"tool_turn_share": 2.0}, "tool_turn_share"),
        ({"max_context_tokens": 100}, "leaves no room"),
    ],
)
def test_invalid_spec_raises(kwargs: dict[str, float], message: str) -> None:
    """Bad agentic settings raise ConfigError naming them."""
    with pytest.raises(ConfigError, match=message):
        AgenticSpec(**kwargs)  # type: ignore[arg-type]

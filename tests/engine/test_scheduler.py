"""The scheduler: decode first, chunked prefill within the token budget, FCFS admission."""

from __future__ import annotations

from tokenwatt.engine.kv import KVCacheManager, KVLayout, NullPrefixProvider
from tokenwatt.engine.request import RequestState
from tokenwatt.engine.sampling import SamplingParams
from tokenwatt.engine.scheduler import ScheduledItem, Scheduler
from tokenwatt.engine.tokenizer import ByteTokenizer

PARAMS = SamplingParams(max_tokens=4, temperature=0)


def _scheduler(capacity: int = 1000, max_batch: int = 8, budget: int = 10) -> Scheduler:
    kv = KVCacheManager(KVLayout(), capacity)
    return Scheduler(kv, NullPrefixProvider(), max_batch=max_batch, max_step_tokens=budget)


def _req(rid: str, n: int) -> RequestState:
    return RequestState(rid, list(range(n)), PARAMS, ByteTokenizer())


def test_long_prompt_is_chunked_by_the_budget() -> None:
    """A 25-token prompt with a 10-token budget runs as chunks 10, 10, 5."""
    s = _scheduler()
    req = _req("a", 25)
    s.add(req)
    chunks = []
    for _ in range(3):
        out = s.schedule()
        chunks.append(out.items)
        req.num_computed += out.num_tokens
    assert chunks == [
        (ScheduledItem("a", 0, 10),),
        (ScheduledItem("a", 10, 10),),
        (ScheduledItem("a", 20, 5),),
    ]


def test_decodes_go_before_prefills() -> None:
    """A decoding request gets its token first; a new prompt fills the rest of the budget."""
    s = _scheduler()
    first = _req("a", 3)
    s.add(first)
    first.num_computed += s.schedule().num_tokens  # prefill done
    s.add(_req("b", 20))
    out = s.schedule()
    assert out.items == (ScheduledItem("a", 3, 1), ScheduledItem("b", 0, 9))
    assert out.admitted == ("b",)


def test_max_batch_limits_admission() -> None:
    """With max_batch 2, the third request waits."""
    s = _scheduler(max_batch=2)
    for rid in "abc":
        s.add(_req(rid, 2))
    out = s.schedule()
    assert out.admitted == ("a", "b")
    assert [r.request_id for r in s.waiting] == ["c"]


def test_head_of_line_waits_for_kv() -> None:
    """FCFS: a big head request that does not fit blocks smaller ones behind it."""
    s = _scheduler(capacity=20)
    s.add(_req("small", 2))
    s.schedule()
    s.add(_req("big", 15))  # needs 19 positions, 14 are free
    s.add(_req("tiny", 1))
    assert s.schedule().admitted == ()


def test_remove_frees_kv() -> None:
    """Removing a running request releases its reservation."""
    s = _scheduler()
    s.add(_req("a", 5))
    s.schedule()
    assert s.kv.usage().reserved_tokens == 9
    assert s.remove("a") is not None
    assert s.kv.usage().reserved_tokens == 0
    assert s.remove("a") is None


def test_decodes_round_robin_when_budget_is_smaller_than_batch() -> None:
    """Three decoding requests and a 2-token budget: each step serves the two that waited."""
    s = _scheduler(budget=3)
    reqs = {rid: _req(rid, 1) for rid in "abc"}
    for r in reqs.values():
        s.add(r)
    seen = []
    for _ in range(4):
        out = s.schedule()
        for item in out.items:
            reqs[item.request_id].num_computed += item.num_tokens
        seen.append(tuple(i.request_id for i in out.items))
        s.max_step_tokens = 2  # after the three prefills, less budget than running requests
    assert seen == [("a", "b", "c"), ("a", "b"), ("c", "a"), ("b", "c")]

"""The threaded engine: blocking generate, async stream, abort on close, overload, stop."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tokenwatt.engine.config import EngineConfig
from tokenwatt.engine.engine import Engine
from tokenwatt.engine.model import LoadedModel
from tokenwatt.engine.request import EngineOverloadedError, RequestOutput
from tokenwatt.engine.sampling import SamplingParams

from .test_core import TenantRecorder

GREEDY = SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True)


@pytest.fixture
def engine(tiny: LoadedModel) -> Iterator[Engine]:
    """A started engine, stopped after the test."""
    with Engine(tiny) as eng:
        yield eng


def _wait_idle(engine: Engine, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        s = engine.stats()
        if s.running == 0 and s.waiting == 0 and s.kv.requests == 0:
            return
        time.sleep(0.01)
    raise AssertionError(f"engine not idle: {engine.stats()}")


def test_generate_returns_completion(engine: Engine) -> None:
    """A blocking generate returns max_tokens tokens and the prompt length."""
    c = engine.generate("hello", GREEDY, timeout_s=30)
    assert (c.completion_tokens, c.prompt_tokens, c.finish_reason) == (8, 6, "length")


async def test_stream_yields_deltas_then_finish(engine: Engine) -> None:
    """Streaming yields one token per output and ends with a finished output."""
    outs = [o async for o in engine.stream("hello", GREEDY)]
    assert [len(o.token_ids) for o in outs] == [1] * 8
    assert outs[-1].finished and not any(o.finished for o in outs[:-1])
    assert engine.generate("hello", GREEDY).token_ids == tuple(t for o in outs for t in o.token_ids)


async def test_closing_stream_aborts_request(engine: Engine) -> None:
    """Leaving a stream after the first output frees the request's slot and cache."""
    long = SamplingParams(max_tokens=2000, temperature=0.0, ignore_eos=True)
    agen = engine.stream("a long one", long)
    first = await agen.__anext__()
    assert not first.finished
    await agen.aclose()
    _wait_idle(engine)
    assert engine.stats().kv.reserved_tokens == 0


def test_full_queue_is_overloaded(tiny: LoadedModel) -> None:
    """With max_queue=1 and the engine thread busy, a second queued submission is refused."""
    eng = Engine(tiny, EngineConfig(max_queue=1))
    eng.start()
    try:
        # Hold the engine thread busy inside a callback so submissions pile up in the inbox.
        gate: list[RequestOutput] = []

        def slow(out: RequestOutput) -> None:
            gate.append(out)
            time.sleep(0.5)

        eng.submit("first", GREEDY, slow)
        deadline = time.monotonic() + 10
        while not gate and time.monotonic() < deadline:
            time.sleep(0.005)
        eng.submit("second", GREEDY, lambda o: None)
        with pytest.raises(EngineOverloadedError, match="max_queue=1"):
            eng.submit("third", GREEDY, lambda o: None)
    finally:
        eng.stop()


def test_stop_aborts_pending_requests(tiny: LoadedModel) -> None:
    """stop() finishes requests still in flight with finish_reason abort."""
    eng = Engine(tiny).start()
    seen: list[RequestOutput] = []
    eng.submit("x", SamplingParams(max_tokens=4000, temperature=0, ignore_eos=True), seen.append)
    time.sleep(0.1)
    eng.stop()
    assert seen[-1].finished and seen[-1].finish_reason == "abort"
    assert not eng.running


def test_submit_before_start_is_refused(tiny: LoadedModel) -> None:
    """An engine that was never started refuses work instead of hanging."""
    with pytest.raises(EngineOverloadedError, match="not running"):
        Engine(tiny).submit("x", GREEDY, lambda o: None)


def test_engine_fault_fails_requests_instead_of_hanging(
    tiny: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If a step raises unexpectedly, its requests finish with error and the engine lives on."""
    with Engine(tiny) as eng:
        real_step = eng.core.step
        calls = {"n": 0}

        def broken_step() -> list[RequestOutput]:
            calls["n"] += 1
            if calls["n"] == 1:
                raise RuntimeError("boom")
            return real_step()

        monkeypatch.setattr(eng.core, "step", broken_step)
        c = eng.generate("x", GREEDY, timeout_s=30)
        assert (c.finish_reason, c.error) == ("error", "RuntimeError: boom")
        assert eng.generate("x", GREEDY, timeout_s=30).finish_reason == "length"


def test_mixed_load_with_aborts_leaks_nothing(tiny: LoadedModel) -> None:
    """30 requests of mixed lengths, every third aborted early: all finish, KV returns to 0."""
    import random
    import threading

    rng = random.Random(0)
    finished: dict[str, RequestOutput] = {}
    lock = threading.Lock()

    def on_output(out: RequestOutput) -> None:
        if out.finished:
            with lock:
                finished[out.request_id] = out

    config = EngineConfig(max_batch=8, max_step_tokens=64, kv_capacity_tokens=2000)
    with Engine(tiny, config) as eng:
        ids = []
        for i in range(30):
            prompt = "p" * rng.randint(1, 120)
            params = SamplingParams(max_tokens=rng.randint(1, 40), temperature=0.0)
            ids.append(eng.submit(prompt, params, on_output, request_id=f"r{i}"))
        for rid in ids[::3]:
            eng.abort(rid)
        deadline = time.monotonic() + 60
        while len(finished) < len(ids) and time.monotonic() < deadline:
            time.sleep(0.01)
        _wait_idle(eng, timeout_s=10)
        assert eng.stats().kv.reserved_tokens == 0
    assert sorted(finished) == sorted(ids)
    reasons = {o.finish_reason for o in finished.values()}
    assert reasons <= {"stop", "length", "abort"}


def test_tenant_reaches_the_provider_through_the_thread(tiny: LoadedModel) -> None:
    """generate(tenant=...) hands the tenant to the prefix provider on the engine thread."""
    provider = TenantRecorder()
    with Engine(tiny, prefix_provider=provider) as eng:
        eng.generate("x" * 40, GREEDY, timeout_s=30, tenant="acme")
        eng.generate("x" * 40, GREEDY, timeout_s=30)
    assert [t for call, t in provider.calls if call == "lookup"] == ["acme", None]

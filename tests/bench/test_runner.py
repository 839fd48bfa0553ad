"""LoadRunner: concurrency, rates, limits, warm-up, sessions, and faults counted by kind."""

from __future__ import annotations

import asyncio
import collections
import itertools
import time
from collections.abc import AsyncIterator

import pytest

from tests.bench.conftest import StartServer
from tokenwatt.bench.client import ClientConfig, FunctionClient, OpenAIClient
from tokenwatt.bench.load import ClosedLoop, OpenLoop, Sessions, TraceReplay
from tokenwatt.bench.record import Chunk, Done, StreamEvent
from tokenwatt.bench.runner import LoadRunner, RunLimits, send_one
from tokenwatt.errors import ConfigError
from tokenwatt.workload.types import Request


def _requests(n: int, **kwargs: object) -> list[Request]:
    return [Request(f"r{i}", **kwargs) for i in range(n)]  # type: ignore[arg-type]


class _Gauge:
    """A fake client that tracks the most requests it ever had in flight."""

    def __init__(self, hold_s: float = 0.01) -> None:
        self.now = 0
        self.peak = 0
        self.hold_s = hold_s

    async def fn(self, request: Request) -> AsyncIterator[StreamEvent]:
        self.now += 1
        self.peak = max(self.peak, self.now)
        await asyncio.sleep(self.hold_s)
        self.now -= 1
        yield Chunk(time.perf_counter(), "x")
        yield Done(time.perf_counter(), {"completion_tokens": 1})


async def test_closed_loop_keeps_concurrency_at_its_level() -> None:
    """A closed loop of 3 never has more than 3 requests in flight and reaches 3."""
    gauge = _Gauge()
    runner = LoadRunner(FunctionClient(gauge.fn), _requests(12), ClosedLoop(3))
    records = await runner.run()
    assert (len(records), gauge.peak) == (12, 3)


async def test_max_requests_counts_measured_requests_after_warmup() -> None:
    """With 2 warm-up requests and max 5, 7 are sent and exactly 2 are marked warm-up."""
    client = FunctionClient.scripted()
    limits = RunLimits(max_requests=5, warmup_requests=2)
    records = await LoadRunner(client, _requests(20), ClosedLoop(1), limits).run()
    assert len(records) == 7
    assert [r.request_id for r in records if r.warmup] == ["r0", "r1"]


async def test_open_loop_sends_on_the_constant_schedule() -> None:
    """At a constant 50 req/s, request i is scheduled at i/50 s and sent no earlier."""
    runner = LoadRunner(
        FunctionClient.scripted(), _requests(5), OpenLoop(rate_rps=50, arrival="constant")
    )
    records = sorted(await runner.run(), key=lambda r: r.scheduled_s)
    assert [round(r.scheduled_s, 6) for r in records] == [0.0, 0.02, 0.04, 0.06, 0.08]
    assert all(r.start_s >= r.scheduled_s for r in records)


async def test_open_loop_does_not_wait_for_answers() -> None:
    """An open loop sends on time even when each answer takes longer than the gap."""
    gauge = _Gauge(hold_s=0.2)
    runner = LoadRunner(FunctionClient(gauge.fn), _requests(6), OpenLoop(100, "constant"))
    await runner.run()
    assert gauge.peak == 6


async def test_open_loop_max_concurrency_caps_in_flight() -> None:
    """max_concurrency=2 holds arrivals until a slot frees."""
    gauge = _Gauge(hold_s=0.02)
    shape = OpenLoop(1000, "constant", max_concurrency=2)
    await LoadRunner(FunctionClient(gauge.fn), _requests(8), shape).run()
    assert gauge.peak == 2


async def test_trace_replay_divides_timestamps_by_speedup() -> None:
    """Arrivals at 10, 10.4 and 11 s replayed x10 are scheduled at 0, 0.04 and 0.1 s."""
    reqs = [Request(f"r{i}", arrival_s=t) for i, t in enumerate([10.0, 10.4, 11.0])]
    records = await LoadRunner(FunctionClient.scripted(), reqs, TraceReplay(10)).run()
    by_id = {r.request_id: round(r.scheduled_s, 6) for r in records}
    assert by_id == {"r0": 0.0, "r1": 0.04, "r2": 0.1}


async def test_duration_limit_stops_sending() -> None:
    """With a 0.1 s duration at 100 req/s, no request is sent after 0.1 s."""
    shape = OpenLoop(100, "constant")
    runner = LoadRunner(
        FunctionClient.scripted(), _requests(1000), shape, RunLimits(duration_s=0.1)
    )
    records = await runner.run()
    assert 1 <= len(records) <= 11
    assert max(r.start_s for r in records) < 0.1 + 0.02


async def test_sessions_run_turns_in_order_with_think_time() -> None:
    """Two sessions of 3 turns: within a session each turn starts after the previous ended
    plus its think time; the two sessions overlap."""
    reqs = [
        Request(f"s{s}t{t}", session_id=f"s{s}", turn=t, think_time_s=0.03)
        for s in range(2)
        for t in range(3)
    ]
    client = FunctionClient.scripted(ttft_s=0.01)
    records = await LoadRunner(client, reqs, Sessions(2)).run()
    by_session = collections.defaultdict(list)
    for r in sorted(records, key=lambda r: r.start_s):
        by_session[r.session_id].append(r)
    for turns in by_session.values():
        assert [r.turn for r in turns] == [0, 1, 2]
        for prev, nxt in itertools.pairwise(turns):
            assert nxt.start_s - prev.end_s >= 0.03
    assert by_session["s1"][0].start_s < by_session["s0"][0].end_s


async def test_requests_in_flight_after_drain_timeout_are_cancelled() -> None:
    """A request still unanswered drain_timeout_s after the last send is recorded 'cancelled'."""
    client = FunctionClient.scripted(ttft_s=5.0)
    limits = RunLimits(max_requests=1, drain_timeout_s=0.05)
    records = await LoadRunner(client, _requests(1), ClosedLoop(1), limits).run()
    assert [r.error for r in records] == ["cancelled"]


async def test_a_raising_client_becomes_an_other_error() -> None:
    """A client that raises produces a record with error 'other', and the run continues."""

    async def broken(request: Request) -> AsyncIterator[StreamEvent]:
        raise RuntimeError("bug")
        yield  # pragma: no cover

    record = await send_one(FunctionClient(broken), Request("r0"), t0=time.perf_counter())
    assert (record.error, record.error_message) == ("other", "client raised RuntimeError('bug')")


async def test_record_takes_token_counts_and_energy_from_usage() -> None:
    """Usage's prompt/completion tokens and energy_j override the workload's counts."""

    async def fn(request: Request) -> AsyncIterator[StreamEvent]:
        yield Chunk(time.perf_counter(), "ab")
        yield Done(time.perf_counter(), {"prompt_tokens": 9, "completion_tokens": 2, "energy_j": 3})

    record = await send_one(FunctionClient(fn), Request("r0", input_tokens=5), time.perf_counter())
    assert (record.input_tokens, record.output_tokens, record.endpoint_energy_j) == (9, 2, 3.0)
    assert (record.endpoint_energy_source, record.endpoint_energy_scope) == ("", "")


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        (
            {"energy": {"energy_j": 0.25, "source": "estimated:cpu-model", "scope": "cpu"}},
            (0.25, "estimated:cpu-model", "cpu"),
        ),
        ({"energy": {"energy_j": 1, "source": 7}}, (1.0, "", "")),
        ({"energy": {"source": "nvml"}}, (None, "", "")),
        ({"energy_j": True}, (None, "", "")),
        ({}, (None, "", "")),
    ],
)
async def test_record_keeps_the_energy_label_the_endpoint_states(
    usage: dict[str, object], expected: tuple[float | None, str, str]
) -> None:
    """tokenwatt serve's usage.energy gives joules with its source and scope; anything that is
    not a number of joules is no figure (None), never zero."""

    async def fn(request: Request) -> AsyncIterator[StreamEvent]:
        yield Chunk(time.perf_counter(), "ab")
        yield Done(time.perf_counter(), usage)

    record = await send_one(FunctionClient(fn), Request("r0"), time.perf_counter())
    got = (record.endpoint_energy_j, record.endpoint_energy_source, record.endpoint_energy_scope)
    assert got == expected


def test_limits_reject_bad_values() -> None:
    """A zero request count or negative duration is a ConfigError."""
    with pytest.raises(ConfigError):
        RunLimits(max_requests=0)
    with pytest.raises(ConfigError):
        RunLimits(duration_s=-1)


async def test_faults_against_a_live_server_are_counted_by_kind(start_server: StartServer) -> None:
    """A run mixing healthy and faulty requests records each fault by kind and ends by itself."""
    server = await start_server()
    faults = ["", "reset", "429", "500", "malformed", "truncated", "stall", ""]
    reqs = [
        Request(f"r{i}", prompt=f"p [fault:{f}]", output_tokens=4) for i, f in enumerate(faults)
    ]
    client = OpenAIClient(ClientConfig(base_url=server.url, stall_timeout_s=0.2, timeout_s=2.0))
    try:
        records = await LoadRunner(client, reqs, ClosedLoop(4)).run()
    finally:
        await client.aclose()
    kinds = collections.Counter(r.error for r in records)
    assert kinds == {
        None: 2,
        "reset": 1,
        "http_429": 1,
        "http_5xx": 1,
        "malformed_sse": 1,
        "truncated": 1,
        "stall": 1,
    }


async def test_endpoint_down_run_ends_with_connect_errors(start_server: StartServer) -> None:
    """Against a port that refuses connections every request is a 'connect' error."""
    server = await start_server(fault="refuse")
    client = OpenAIClient(ClientConfig(base_url=server.url))
    try:
        records = await LoadRunner(client, _requests(3), ClosedLoop(2)).run()
    finally:
        await client.aclose()
    assert [r.error for r in records] == ["connect"] * 3


async def test_runner_opens_the_client_before_its_clock_starts() -> None:
    """open() runs once, before t0, so warm-up costs never delay the first scheduled sends."""
    opened: list[float] = []

    class Opening(FunctionClient):
        async def open(self) -> None:
            opened.append(time.perf_counter())

    client = Opening(FunctionClient.scripted()._fn)
    runner = LoadRunner(client, _requests(2), ClosedLoop(1))
    await runner.run()
    assert len(opened) == 1
    assert opened[0] <= runner.t0


async def test_open_warms_the_pool_without_raising_when_the_endpoint_is_down(
    start_server: StartServer,
) -> None:
    """OpenAIClient.open() against a refusing port logs and returns; the requests then fail."""
    server = await start_server(fault="refuse")
    client = OpenAIClient(ClientConfig(base_url=server.url))
    try:
        await client.open()
    finally:
        await client.aclose()


async def test_run_against_a_stalled_endpoint_ends_on_its_duration(
    start_server: StartServer,
) -> None:
    """Streams that stall (and a stall timeout far away) cannot hold a run past its duration
    plus drain: the unanswered requests are recorded as 'cancelled'."""
    server = await start_server(fault="stall")
    client = OpenAIClient(ClientConfig(base_url=server.url, stall_timeout_s=30.0))
    limits = RunLimits(duration_s=0.2, drain_timeout_s=0.2)
    started = time.perf_counter()
    try:
        records = await LoadRunner(
            client, _requests(10, output_tokens=5), ClosedLoop(2), limits
        ).run()
    finally:
        await client.aclose()
    assert time.perf_counter() - started < 5.0
    assert [r.error for r in records] == ["cancelled", "cancelled"]

"""Drive a workload through an ``EndpointClient`` under a load shape; keep one record per request.

The run ends on its own limits (request count, duration) whatever the endpoint does: failures
are records with an error kind, and requests still in flight after the drain timeout are cancelled.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from tokenwatt.bench.client import EndpointClient
from tokenwatt.bench.load import (
    ClosedLoop,
    LoadShape,
    OpenLoop,
    Sessions,
    TraceReplay,
    interarrival_times,
)
from tokenwatt.bench.record import Chunk, Done, ErrorKind, RequestRecord
from tokenwatt.errors import ConfigError
from tokenwatt.workload.types import Request

__all__ = ["LoadRunner", "RunLimits", "send_one"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunLimits:
    """When a run stops and which requests are warm-up."""

    max_requests: int | None = None
    """Measured (non-warm-up) requests to send, None for no count limit."""
    duration_s: float | None = None
    """Stop sending after this many seconds from the start, None for no time limit."""
    warmup_requests: int = 0
    """The first N requests sent are warm-up (excluded from summaries)."""
    warmup_s: float = 0.0
    """Requests sent in the first S seconds are warm-up."""
    drain_timeout_s: float = 30.0
    """After the last send, wait this long for answers, then cancel what is left."""

    def __post_init__(self) -> None:
        if self.max_requests is not None and self.max_requests < 1:
            raise ConfigError(f"max_requests must be >= 1, got {self.max_requests}")
        if self.duration_s is not None and not self.duration_s > 0:
            raise ConfigError(f"duration must be > 0 seconds, got {self.duration_s}")
        if self.warmup_requests < 0 or self.warmup_s < 0:
            raise ConfigError("warm-up counts and durations must be >= 0")
        if self.drain_timeout_s < 0:
            raise ConfigError("drain_timeout_s must be >= 0")


@dataclass(frozen=True)
class _UsageEnergy:
    """Per-request energy found in a response's ``usage``."""

    energy_j: float | None = None
    """Joules, None when the endpoint reported none."""
    source: str = ""
    """The source it states (``nvml``, ``estimated:cpu-model``), empty when unstated."""
    scope: str = ""
    """The scope it states (``gpu``, ``cpu``), empty when unstated."""


_NO_ENERGY = _UsageEnergy()


def _energy_from_usage(usage: Mapping[str, Any]) -> _UsageEnergy:
    """Energy the endpoint attributed to the request, from known ``usage`` extensions, with the
    source and scope it states (tokenwatt serve: ``usage.energy``)."""
    for key in ("energy_j", "tokenwatt_energy_j"):
        value = usage.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return _UsageEnergy(float(value))
    nested = usage.get("tokenwatt") or usage.get("energy")
    if isinstance(nested, Mapping):
        value = nested.get("energy_j", nested.get("total_j"))
        if isinstance(value, int | float) and not isinstance(value, bool):
            source, scope = nested.get("source"), nested.get("scope")
            return _UsageEnergy(
                float(value),
                source if isinstance(source, str) else "",
                scope if isinstance(scope, str) else "",
            )
    return _NO_ENERGY


async def send_one(
    client: EndpointClient,
    request: Request,
    t0: float,
    scheduled_s: float = 0.0,
    warmup: bool = False,
) -> RequestRecord:
    """Send ``request`` and return its record (times relative to ``t0``); never raises."""
    start = time.perf_counter()
    chunks: list[float] = []
    end = start
    error: ErrorKind | None = "truncated"
    message = "client stream ended without a final event"
    status: int | None = None
    usage: Mapping[str, Any] = {}
    try:
        # Read to the end (nothing follows the final event) so the client's generator finishes
        # and releases its connection now rather than when the garbage collector finds it.
        final = False
        async for event in client.stream(request):
            if final:
                continue
            end = event.time_s
            if isinstance(event, Chunk):
                chunks.append(event.time_s - t0)
            elif isinstance(event, Done):
                error, message, status, usage = None, "", event.status, event.usage
                final = True
            else:
                error, message, status = event.kind, event.message, event.status
                final = True
    except asyncio.CancelledError:
        error, message, end = "cancelled", "run ended before the answer", time.perf_counter()
    except Exception as exc:  # a third-party client must not end the run
        log.debug("client raised for %s", request.request_id, exc_info=True)
        error, message, end = "other", f"client raised {exc!r}", time.perf_counter()
    completion = usage.get("completion_tokens")
    prompt = usage.get("prompt_tokens")
    energy = _energy_from_usage(usage) if usage else _NO_ENERGY
    return RequestRecord(
        request_id=request.request_id,
        scheduled_s=scheduled_s,
        start_s=start - t0,
        chunk_times_s=tuple(chunks),
        end_s=end - t0,
        input_tokens=prompt if isinstance(prompt, int) else request.input_tokens,
        output_tokens=completion if isinstance(completion, int) else len(chunks),
        requested_output_tokens=request.output_tokens,
        error=error,
        error_message=message,
        http_status=status,
        session_id=request.session_id,
        turn=request.turn,
        warmup=warmup,
        endpoint_energy_j=energy.energy_j,
        endpoint_energy_source=energy.source,
        endpoint_energy_scope=energy.scope,
    )


@dataclass
class LoadRunner:
    """One run: a workload, a load shape, limits. ``records`` fills as answers arrive, so a
    caller interrupted mid-run (Ctrl-C) still has every finished request."""

    client: EndpointClient
    """Where requests go."""
    workload: Iterable[Request]
    """Requests in send order (arrival times are used only by ``TraceReplay``)."""
    shape: LoadShape
    """When to send."""
    limits: RunLimits = field(default_factory=RunLimits)
    """When to stop."""
    on_record: Callable[[RequestRecord], None] | None = None
    """Called with each finished record (progress bars)."""
    records: list[RequestRecord] = field(default_factory=list, init=False)
    """Finished requests, in completion order."""
    t0: float = field(default=0.0, init=False)
    """``perf_counter()`` at the start of the run."""
    ended_s: float = field(default=0.0, init=False)
    """Run length in seconds (set when the run ends)."""
    in_flight: int = field(default=0, init=False)
    """Requests sent and not yet answered."""

    _sent: int = field(default=0, init=False, repr=False)
    _measured_sent: int = field(default=0, init=False, repr=False)

    async def run(self) -> list[RequestRecord]:
        """Run to the limits; return the records (also kept in ``records``)."""
        await self.client.open()
        self.t0 = time.perf_counter()
        tasks: set[asyncio.Task[None]] = set()
        try:
            await self._dispatch(tasks)
            if tasks:
                _done, pending = await asyncio.wait(tasks, timeout=self.limits.drain_timeout_s)
                for task in pending:
                    task.cancel()
                if pending:
                    await asyncio.wait(pending)
        finally:
            for task in list(tasks):
                task.cancel()
            if tasks:
                # Let cancelled requests record themselves ('cancelled') before returning.
                await asyncio.gather(*tasks, return_exceptions=True)
            self.ended_s = time.perf_counter() - self.t0
        return self.records

    # -- sending ---------------------------------------------------------------------------

    def _now(self) -> float:
        return time.perf_counter() - self.t0

    def _may_send(self) -> bool:
        lim = self.limits
        if lim.duration_s is not None and self._now() >= lim.duration_s:
            return False
        return lim.max_requests is None or self._measured_sent < lim.max_requests

    def _next_is_warmup(self) -> bool:
        lim = self.limits
        return self._sent < lim.warmup_requests or self._now() < lim.warmup_s

    async def _send(self, request: Request, scheduled_s: float, warmup: bool) -> None:
        self.in_flight += 1
        try:
            record = await send_one(self.client, request, self.t0, scheduled_s, warmup)
        finally:
            self.in_flight -= 1
        self.records.append(record)
        if self.on_record is not None:
            self.on_record(record)

    def _launch(
        self, tasks: set[asyncio.Task[None]], request: Request, scheduled_s: float
    ) -> asyncio.Task[None]:
        warmup = self._next_is_warmup()
        self._sent += 1
        if not warmup:
            self._measured_sent += 1
        task = asyncio.get_running_loop().create_task(self._send(request, scheduled_s, warmup))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return task

    async def _dispatch(self, tasks: set[asyncio.Task[None]]) -> None:
        shape = self.shape
        if isinstance(shape, ClosedLoop):
            await self._closed(tasks, shape.concurrency)
        elif isinstance(shape, Sessions):
            await self._sessions(tasks, shape.concurrency)
        elif isinstance(shape, OpenLoop):
            gaps = interarrival_times(shape)
            times = itertools.accumulate(gaps, initial=0.0)
            await self._timed(tasks, zip(times, self.workload, strict=False), shape.max_concurrency)
        else:
            await self._timed(tasks, self._trace_times(shape), shape.max_concurrency)

    def _trace_times(self, shape: TraceReplay) -> Iterator[tuple[float, Request]]:
        origin: float | None = None
        for request in self.workload:
            origin = request.arrival_s if origin is None else origin
            yield (request.arrival_s - origin) / shape.speedup, request

    async def _timed(
        self,
        tasks: set[asyncio.Task[None]],
        schedule: Iterable[tuple[float, Request]],
        max_concurrency: int | None,
    ) -> None:
        slots = asyncio.Semaphore(max_concurrency) if max_concurrency else None
        for at_s, request in schedule:
            if self.limits.duration_s is not None and at_s >= self.limits.duration_s:
                return
            delay = at_s - self._now()
            if delay > 0:
                await asyncio.sleep(delay)
            if not self._may_send():
                return
            if slots is None:
                self._launch(tasks, request, at_s)
                continue
            await slots.acquire()
            if not self._may_send():
                slots.release()
                return
            self._launch(tasks, request, at_s).add_done_callback(lambda _t: slots.release())

    async def _closed(self, tasks: set[asyncio.Task[None]], concurrency: int) -> None:
        source = iter(self.workload)

        async def worker() -> None:
            request = next(source, None)
            while request is not None and self._may_send():
                task = self._launch(tasks, request, self._now())
                # Look ahead so the last answers are awaited by the drain phase (which has a
                # timeout), not by a worker that does not know it has nothing left to send.
                request = next(source, None) if self._may_send() else None
                if request is None:
                    return
                await asyncio.shield(task)

        await self._workers(worker, concurrency)

    async def _sessions(self, tasks: set[asyncio.Task[None]], concurrency: int) -> None:
        sessions: dict[str, list[Request]] = {}
        for request in self.workload:
            sessions.setdefault(request.session_id or request.request_id, []).append(request)
        queue = iter(sessions.values())

        async def worker() -> None:
            for turns in queue:
                for i, request in enumerate(sorted(turns, key=lambda r: r.turn)):
                    if i and request.think_time_s > 0:
                        await asyncio.sleep(request.think_time_s)
                    if not self._may_send():
                        return
                    task = self._launch(tasks, request, self._now())
                    if not self._may_send():
                        return
                    await asyncio.shield(task)

        await self._workers(worker, concurrency)

    async def _workers(self, worker: Callable[[], Any], concurrency: int) -> None:
        deadline = self.limits.duration_s
        group = [asyncio.ensure_future(worker()) for _ in range(concurrency)]
        try:
            timeout = None if deadline is None else max(deadline - self._now(), 0.0)
            _done, pending = await asyncio.wait(group, timeout=timeout)
            # Workers still waiting on an answer at the deadline: the drain phase owns that
            # answer (its task is in ``tasks``); the worker itself just stops.
            for w in pending:
                w.cancel()
        finally:
            for w in group:
                w.cancel()
            await asyncio.gather(*group, return_exceptions=True)

"""Served calibration: the reference engine's HTTP server in process on loopback, a workload
replayed against it by the bench client, and a profile fitted to the steps and energy recorded.

Isolated steps (``calibrate``) miss what serving adds on a CPU: the HTTP thread and streaming
share the interpreter and the cores, and each request spends time outside the engine (HTTP,
tokenising, SSE, the client) whose tail sets the TTFT tail. ``calibrate_served`` is what
``tokenwatt plan calibrate --method served`` runs; ``ServedSession`` also serves the fidelity
benchmark's comparison runs.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import platform
import random
import statistics
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from multiprocessing import get_context
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from tokenwatt.bench.record import RequestRecord
from tokenwatt.energy.meter import Meter
from tokenwatt.errors import ConfigError
from tokenwatt.plan.calibrate import (
    CalibrationSpec,
    EnergyWindow,
    EngineTarget,
    StepRecord,
    calibrate,
    profile_from_steps,
)
from tokenwatt.plan.overheads import request_overheads_s
from tokenwatt.workload.types import Request

if TYPE_CHECKING:  # the engine pulls in torch: imported where it is used
    from tokenwatt.engine import Engine, EngineConfig, LoadedModel
    from tokenwatt.engine.server import RunningServer

__all__ = [
    "ServedCalibrationSpec",
    "ServedRun",
    "ServedSession",
    "StepTelemetry",
    "calibrate_served",
    "replay",
    "request_overheads_s",
    "served_workload",
]

Progress = Callable[[int, int], None]
"""Called with (requests finished, requests sent) while a workload is served."""


@dataclass(frozen=True)
class ServedCalibrationSpec:
    """The calibration workload and how it is served."""

    requests: int = 400
    """Requests in the calibration workload (the TTFT tail is set by the slowest few percent of
    them: with 120, the p99 of the overhead is one request)."""
    rate_per_s: float = 4.0
    """Poisson arrivals per second."""
    prompt_tokens: tuple[int, int] = (32, 256)
    """Prompt lengths in tokens, uniform in [low, high]."""
    output_tokens: tuple[int, int] = (16, 64)
    """Output lengths in tokens (EOS ignored), uniform in [low, high]."""
    seed: int = 1000
    """Seed of the arrivals and lengths."""
    idle_s: float = 3.0
    """Seconds of idle power metered with the server up and no traffic (with a meter)."""
    warmup_requests: int = 8
    """Requests sent first and not recorded: lazy initialisation is not a step cost."""
    client: Literal["process", "thread"] = "process"
    """Where the load client runs: its own process (its work then neither takes the server's
    interpreter lock nor lands on the server's meter, as with a real client) or a thread."""
    jitter_points: int = 200
    """Quantiles kept of the prefill steps' spread around their row."""
    overhead_points: int = 200
    """Quantiles kept of the per-request overhead outside the engine."""
    decode_jitter_points: int = 0
    """Quantiles kept of the decode steps' spread (0: none, the default; see
    ``profile_from_steps``)."""

    def __post_init__(self) -> None:
        if self.requests < 1 or self.warmup_requests < 0:
            raise ConfigError(
                f"served calibration: requests must be >= 1 and warmup_requests >= 0, got "
                f"{self.requests} and {self.warmup_requests}"
            )
        if not (self.rate_per_s > 0 and math.isfinite(self.rate_per_s)):
            raise ConfigError(
                f"served calibration: rate must be a finite number > 0 per second, got "
                f"{self.rate_per_s}"
            )
        for name in ("prompt_tokens", "output_tokens"):
            low, high = getattr(self, name)
            if not 1 <= low <= high:
                raise ConfigError(f"served calibration: {name} needs 1 <= low <= high")
        if not (self.idle_s >= 0 and math.isfinite(self.idle_s)):
            raise ConfigError(f"served calibration: idle_s must be >= 0, got {self.idle_s}")
        if self.client not in ("process", "thread"):
            raise ConfigError(f"served calibration: client is process or thread, not {self.client}")
        if min(self.jitter_points, self.decode_jitter_points) < 0 or self.overhead_points < 1:
            raise ConfigError(
                "served calibration: jitter_points and decode_jitter_points must be >= 0 and "
                "overhead_points >= 1"
            )


def served_workload(
    requests: int,
    rate_per_s: float,
    seed: int,
    unique: Callable[[int, str], str],
    prompt_tokens: tuple[int, int] = (32, 256),
    output_tokens: tuple[int, int] = (16, 64),
) -> list[Request]:
    """Poisson arrivals with uniform prompt and output lengths; ``unique(tokens, id)`` writes
    each prompt (unique per request, so no prefix is reused)."""
    rng = random.Random(seed)
    t = 0.0
    out = []
    for i in range(requests):
        inp = rng.randint(*prompt_tokens)
        outp = rng.randint(*output_tokens)
        rid = f"s{seed}r{i}"
        out.append(Request(rid, t, inp, outp, prompt=unique(inp, rid)))
        t += rng.expovariate(rate_per_s)
    return out


def replay(url: str, model: str, requests: list[Request]) -> list[RequestRecord]:
    """Replay ``requests`` at their arrival times against ``url`` with the bench client (EOS
    ignored); a plain function so that a client process can run it.

    The first request that cannot connect ends the replay with the records so far: the server
    is gone (``ServedSession`` stops it first when it leaves on an error), and the rest of the
    workload would only wait for its arrival times to fail the same way."""
    from tokenwatt.bench.client import ClientConfig, OpenAIClient
    from tokenwatt.bench.load import TraceReplay
    from tokenwatt.bench.runner import LoadRunner, RunLimits

    async def go() -> list[RequestRecord]:
        client = OpenAIClient(ClientConfig(base_url=url, model=model, ignore_eos=True))
        gone = asyncio.Event()

        def watch(record: RequestRecord) -> None:
            if record.error == "connect":
                gone.set()

        runner = LoadRunner(client, requests, TraceReplay(), RunLimits(), on_record=watch)
        run = asyncio.ensure_future(runner.run())
        stop = asyncio.ensure_future(gone.wait())
        try:
            await asyncio.wait({run, stop}, return_when=asyncio.FIRST_COMPLETED)
            if run.done():
                return run.result()
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
            return list(runner.records)
        finally:
            stop.cancel()
            await client.aclose()

    return asyncio.run(go())


class StepTelemetry:
    """Engine steps and per-request engine TTFTs, recorded by wrapping the engine's scheduler,
    step and submit (instrumentation only: what the engine does is unchanged).

    A request is keyed by the tenant it was submitted under (``ServedSession.serve`` sends
    each request's id as its tenant, which the server passes to ``Engine.submit``), else by
    the engine's own id: the key the client's records are paired by."""

    def __init__(self, engine: Any, clock: Callable[[], float] = time.perf_counter) -> None:
        core = engine.core
        self.marks: list[tuple[float, float, int, int, int, bool]] = []
        """(start, end, decodes, prompt tokens, decode context, work left) per step."""
        self.submits: dict[str, float] = {}
        """Request key -> when it was submitted."""
        self.first: dict[str, float] = {}
        """Request key -> when its first output was emitted."""
        self.finished = 0
        """Requests that emitted their last output."""
        self.on = False
        """Record only while True."""
        plan: list[tuple[int, int, int]] = []
        schedule, step, submit = core.scheduler.schedule, core.step, engine.submit

        def scheduled() -> Any:
            out = schedule()
            dec = pre = ctx = 0
            for item in out.items:
                if item.start >= len(core.requests[item.request_id].prompt_ids):
                    dec, ctx = dec + 1, ctx + item.start
                else:
                    pre += item.num_tokens
            plan.append((dec, pre, ctx))
            return out

        def stepped() -> Any:
            plan.clear()
            t0 = clock()
            outs = step()
            t1 = clock()
            if self.on and plan and plan[0][0] + plan[0][1] > 0:
                self.marks.append((t0, t1, *plan[0], bool(core.has_unfinished())))
            return outs

        def submitted(prompt: Any, params: Any, on_output: Any, **kw: Any) -> str:
            # Known before submitting when there is a tenant: the engine thread may emit the
            # first output before submit returns.
            key: list[str] = [str(kw["tenant"])] if kw.get("tenant") else []

            def watch(out: Any) -> None:
                if key and self.on:
                    if key[0] not in self.first:
                        self.first[key[0]] = clock()
                    if out.finished:
                        self.finished += 1
                on_output(out)

            t = clock()
            rid = str(submit(prompt, params, watch, **kw))
            if not key:
                key.append(rid)
            if self.on:
                self.submits[key[0]] = t
            return rid

        core.scheduler.schedule, core.step, engine.submit = scheduled, stepped, submitted

    def reset(self) -> None:
        """Forget what was recorded."""
        self.marks, self.submits, self.first, self.finished = [], {}, {}, 0

    def steps(self) -> list[StepRecord]:
        """The recorded steps: a step followed at once by another lasts until that one starts
        (the loop's dispatch of outputs counts); the last before an idle spell gets its own
        time plus the median gap between busy steps."""
        m = self.marks
        gaps = [b[0] - a[1] for a, b in itertools.pairwise(m) if a[5]]
        gap = statistics.median(gaps) if gaps else 0.0
        out = []
        for i, (t0, t1, dec, pre, ctx, busy) in enumerate(m):
            end = m[i + 1][0] if busy and i + 1 < len(m) else t1 + gap
            out.append(StepRecord(end - t0, dec, pre, ctx))
        return out

    def engine_ttfts_s(self) -> dict[str, float]:
        """Submit to first output per request that emitted one, by request key, in submit
        order."""
        ordered = sorted(self.submits.items(), key=lambda x: x[1])
        return {k: self.first[k] - t for k, t in ordered if k in self.first}


@dataclass(frozen=True)
class ServedRun:
    """What serving one workload recorded."""

    records: tuple[RequestRecord, ...]
    """The client's records of the requests that completed with a first token."""
    steps: tuple[StepRecord, ...]
    """Every engine step while the workload ran."""
    engine_ttfts_s: tuple[float, ...]
    """Submit to first output inside the engine, per request that got one, in submit order
    (those in ``failed_at_client`` included)."""
    overheads_s: tuple[float, ...]
    """Client TTFT less engine TTFT per record, in ``records``' order, paired by request id
    (``request_overheads_s``): the time spent outside the engine (HTTP, tokenising, SSE, the
    client)."""
    energy_j: float
    """Joules the meter counted over the run (0 without a meter)."""
    wall_s: float
    """Seconds the run lasted."""
    load_average: float
    """The machine's 1-minute load average at the end of the run."""
    failed_at_client: tuple[str, ...] = ()
    """Ids of the requests that got their first output in the engine but failed at the client
    (a stall, a timeout): they have an engine TTFT and no overhead."""

    @property
    def client_ttfts_s(self) -> list[float]:
        """Send to first token at the client, per completed request."""
        return [r.first_token_s - r.start_s for r in self.records if r.first_token_s is not None]

    @property
    def busy_s(self) -> float:
        """Seconds of engine steps."""
        return sum(s.seconds for s in self.steps)


class ServedSession:
    """The engine served over HTTP on loopback, instrumented and metered, with a load client.

    Use as a context manager: entering starts the engine, the server and the client; leaving
    stops them. The meter, if any, is the caller's to close.
    """

    def __init__(
        self,
        loaded: LoadedModel,
        engine_config: EngineConfig,
        model_name: str = "tiny",
        meter: Meter | None = None,
        client: Literal["process", "thread"] = "process",
    ) -> None:
        self.loaded = loaded
        self.engine_config = engine_config
        self.model_name = model_name
        self.meter = meter
        self.client = client
        self.engine: Engine | None = None
        self.telemetry: StepTelemetry | None = None
        self._server: RunningServer | None = None
        self._pool: Executor | None = None

    def __enter__(self) -> ServedSession:
        from tokenwatt.engine import Engine, ServeConfig
        from tokenwatt.engine.server import start_server

        self.engine = Engine(self.loaded, self.engine_config)
        self.telemetry = StepTelemetry(self.engine)
        self.engine.start()
        try:
            self._server = start_server(self.engine, ServeConfig(model=self.model_name, port=0))
            if self.client == "process":
                # spawn, not fork: the server's threads and torch state must not be copied
                self._pool = ProcessPoolExecutor(1, mp_context=get_context("spawn"))
            else:
                self._pool = ThreadPoolExecutor(1)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Leaving on an error (Ctrl-C mid-replay), stop the server first: the replay then ends
        # at its next send (it cannot connect) rather than running to the end of the workload
        # while the pool waits for it.
        if exc_type is not None:
            self._stop_server()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._stop_server()

    def _stop_server(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
        elif self.engine is not None:
            self.engine.stop()

    @property
    def url(self) -> str:
        """The server's base URL."""
        if self._server is None:
            raise ConfigError("served session: use it inside `with ServedSession(...)`")
        return str(self._server.url)

    def energy_j(self) -> float:
        """The meter's cumulative joules (0 without a meter)."""
        return sum(self.meter.read().energy_j.values()) if self.meter else 0.0

    def warm_up(self, requests: list[Request]) -> None:
        """Serve ``requests`` unrecorded."""
        self._replay(requests, None)

    def idle_power_w(self, seconds: float, sleep: Callable[[float], None] = time.sleep) -> float:
        """Watts the meter counts over ``seconds`` with no request in flight (0 without one)."""
        if self.meter is None or seconds <= 0:
            return 0.0
        e0, t0 = self.energy_j(), time.perf_counter()
        sleep(seconds)
        return (self.energy_j() - e0) / max(time.perf_counter() - t0, 1e-9)

    def serve(self, requests: list[Request], progress: Progress | None = None) -> ServedRun:
        """Replay ``requests`` and record the engine's steps, TTFTs and the meter.

        Each request goes out with its id as its tenant (the OpenAI ``user`` field, which a
        server without API keys hands to the engine), so its engine TTFT is found by id; the
        ids must be unique. Raises ConfigError when no request completes or the server stops
        answering."""
        tele = self.telemetry
        assert tele is not None
        seen: set[str] = set()
        for r in requests:
            if r.request_id in seen:
                raise ConfigError(
                    f"served calibration: request id {r.request_id!r} repeats; each request's "
                    "engine TTFT is found by its id, so give every request its own"
                )
            seen.add(r.request_id)
        tagged = [replace(r, tenant=r.request_id) for r in requests]
        tele.reset()
        tele.on = True
        e0, t0 = self.energy_j(), time.perf_counter()
        try:
            records = self._replay(tagged, progress)
        finally:
            tele.on = False
        wall_s = time.perf_counter() - t0
        energy_j = self.energy_j() - e0
        unreachable = sum(1 for r in records if r.error == "connect")
        if unreachable:
            raise ConfigError(
                f"served calibration: the server at {self.url} stopped answering "
                f"({unreachable} of {len(requests)} requests could not connect)"
            )
        ok = tuple(r for r in records if r.ok and r.first_token_s is not None)
        if not ok:
            errors = sorted({str(r.error) for r in records if r.error})[:3]
            raise ConfigError(
                f"served calibration: no request completed ({'; '.join(errors) or 'no answer'})"
            )
        engine_ttfts = tele.engine_ttfts_s()
        completed = {r.request_id for r in ok}
        return ServedRun(
            records=ok,
            steps=tuple(tele.steps()),
            engine_ttfts_s=tuple(engine_ttfts.values()),
            overheads_s=request_overheads_s(ok, engine_ttfts),
            energy_j=energy_j,
            wall_s=wall_s,
            load_average=os.getloadavg()[0],
            failed_at_client=tuple(k for k in engine_ttfts if k not in completed),
        )

    def _replay(self, requests: list[Request], progress: Progress | None) -> list[RequestRecord]:
        if self._pool is None:
            raise ConfigError("served session: use it inside `with ServedSession(...)`")
        future = self._pool.submit(replay, self.url, self.model_name, requests)
        tele = self.telemetry
        while True:
            try:
                return future.result(timeout=0.25)
            except FutureTimeout:  # not the builtin TimeoutError before Python 3.11
                if progress is not None and tele is not None:
                    progress(tele.finished, len(requests))
            except BrokenProcessPool:
                raise ConfigError(
                    "served calibration: the load client's process died before it could "
                    "replay; a script that serves must start under `if __name__ == "
                    "'__main__':` (the client process imports it), or use client='thread'"
                ) from None

    def profile(
        self,
        run: ServedRun,
        name: str,
        *,
        idle_w: float,
        decode_s_per_context_token: float,
        spec: ServedCalibrationSpec | None = None,
    ) -> dict[str, Any]:
        """The profile of ``run``: step tables, spread, busy power (with a meter) and the
        per-request overhead (its median as the constant, its quantiles as the distribution)."""
        spec = spec or ServedCalibrationSpec()
        window = None
        if self.meter is not None:
            sources = ", ".join(sorted({c.source for c in self.meter.components}))
            scopes = sorted({c.scope for c in self.meter.components})
            scope = scopes[0] if len(scopes) == 1 else "node"
            window = EnergyWindow(run.energy_j, run.wall_s, idle_w, sources, scope)
        overhead_s = statistics.median(run.overheads_s) if run.overheads_s else 0.0
        return profile_from_steps(
            run.steps,
            name,
            decode_s_per_context_token=decode_s_per_context_token,
            energy=window,
            request_overhead_s=overhead_s,
            jitter_points=spec.jitter_points,
            request_overheads_s=run.overheads_s,
            overhead_points=spec.overhead_points,
            decode_jitter_points=spec.decode_jitter_points,
        )


def context_slope(loaded: LoadedModel, engine_config: EngineConfig) -> float:
    """Extra decode seconds per token of context, from isolated steps at two prompt lengths
    (served steps mix contexts and batch sizes too much to separate the term)."""
    from tokenwatt.engine import EngineCore

    batch = min(4, engine_config.max_batch)
    spec = CalibrationSpec(
        prefill_tokens=(16,), decode_batches=(batch,), long_context=256, rounds=3
    )
    isolated = calibrate(lambda: EngineTarget(EngineCore(loaded, engine_config)), spec)
    return float(isolated["decode_s_per_context_token"])


def calibrate_served(
    loaded: LoadedModel,
    engine_config: EngineConfig,
    spec: ServedCalibrationSpec | None = None,
    *,
    model_name: str = "tiny",
    meter: Meter | None = None,
    name: str | None = None,
    decode_s_per_context_token: float | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Serve ``loaded`` over HTTP on loopback, replay the calibration workload, and return the
    profile (``write_profile``'s dict) with its provenance. ``decode_s_per_context_token``
    None measures it from isolated steps first."""
    from tokenwatt.workload.prompts import PromptSynthesizer

    spec = spec or ServedCalibrationSpec()
    slope = decode_s_per_context_token
    if slope is None:
        slope = context_slope(loaded, engine_config)
    synth = PromptSynthesizer(loaded.tokenizer, salt=f"calibrate-{spec.seed}-{time.time()}")
    requests = served_workload(
        spec.requests,
        spec.rate_per_s,
        spec.seed,
        synth.unique,
        spec.prompt_tokens,
        spec.output_tokens,
    )
    with ServedSession(loaded, engine_config, model_name, meter, spec.client) as session:
        warm = [
            Request(f"w{i}", 0.05 * i, 64, 8, prompt=synth.unique(64, f"w{i}"))
            for i in range(spec.warmup_requests)
        ]
        session.warm_up(warm)
        idle_w = session.idle_power_w(spec.idle_s)
        run = session.serve(requests, progress)
        profile = session.profile(
            run,
            name or f"{model_name}-served",
            idle_w=idle_w,
            decode_s_per_context_token=slope,
            spec=spec,
        )
    profile["provenance"] = provenance(spec, engine_config, run)
    return profile


def provenance(
    spec: ServedCalibrationSpec, engine_config: EngineConfig, run: ServedRun
) -> dict[str, str]:
    """Where a served profile came from, in words (stored in the profile file)."""
    import psutil

    return {
        "method": "served: HTTP on loopback, bench client in its own "
        + ("process" if spec.client == "process" else "thread"),
        "workload": f"Poisson {spec.rate_per_s}/s, {spec.requests} requests, seed {spec.seed}, "
        f"prompts {spec.prompt_tokens[0]}-{spec.prompt_tokens[1]}, outputs "
        f"{spec.output_tokens[0]}-{spec.output_tokens[1]} tokens",
        "requests": f"{len(run.records)} answered (their overheads fitted); "
        f"{len(run.failed_at_client)} failed at the client after their first token",
        "engine": f"max_batch {engine_config.max_batch}, max_step_tokens "
        f"{engine_config.max_step_tokens}, torch threads {engine_config.torch_threads}",
        "machine": f"{platform.machine()}, {psutil.cpu_count()} logical CPUs, load average "
        f"{run.load_average:.1f} at the end",
    }

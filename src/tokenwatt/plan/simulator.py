"""The planner's discrete-event loop: one heap ordered by (time, priority, seq), trace streamed.

``simulate(config, requests)`` is the public entry point; ``Simulation`` wires models, fleet,
router and autoscaler from a ``PlanConfig`` and keeps only the next arrival of the trace in memory.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import replace

from tokenwatt.errors import ConfigError, TraceError
from tokenwatt.plan.autoscalers import ScalingGovernor, make_autoscaler
from tokenwatt.plan.calibrate import overhead_from_profile, power_from_profile
from tokenwatt.plan.config import PlanConfig
from tokenwatt.plan.events import Arrival, Event, Tick
from tokenwatt.plan.execution import (
    ExecutionModel,
    ProfileModel,
    RooflineModel,
    ServingOverhead,
)
from tokenwatt.plan.fleet import Fleet
from tokenwatt.plan.hardware import PowerModel, accelerator_preset, model_preset, power_preset
from tokenwatt.plan.ingress import IngressDelay
from tokenwatt.plan.metrics import Metrics, Timeline
from tokenwatt.plan.replica import ReplicaEnv, SimRequest
from tokenwatt.plan.results import PlanResult, build_result
from tokenwatt.plan.routers import make_router
from tokenwatt.plan.warehouse_model import Warehouse
from tokenwatt.workload.traces import TraceColumns
from tokenwatt.workload.types import Request

__all__ = ["Simulation", "simulate", "simulate_columns"]

log = logging.getLogger(__name__)


class Simulation:
    """One run of one configuration over one trace (use once)."""

    def __init__(
        self,
        config: PlanConfig,
        execution: ExecutionModel | None = None,
        power: PowerModel | None = None,
        record_power: bool = False,
    ) -> None:
        self.config = config
        roofline = RooflineModel(
            accelerator=accelerator_preset(config.accelerator),
            model=model_preset(config.model),
            devices=config.devices_per_replica,
        )
        if execution is None:
            execution = (
                replace(ProfileModel.from_file(config.profile_path), seed=config.seed)
                if config.profile_path
                else roofline
            )
        if config.replica.token_overhead_s > 0:
            execution = ServingOverhead(execution, config.replica.token_overhead_s)
        self.execution = execution
        if power is None and config.profile_path and config.power is None:
            power = power_from_profile(config.profile_path)
        self.power = power or power_preset(config.power or config.accelerator)
        rc = config.replica
        kv_cap = rc.kv_capacity_tokens or roofline.kv_capacity_tokens()
        if kv_cap <= 0:
            raise ConfigError("replica KV capacity is 0 tokens: the weights fill the memory")
        prefix_cache = rc.prefix_cache_tokens
        if prefix_cache is None:
            prefix_cache = kv_cap // 4
        self.metrics = Metrics(ttft_slo_s=config.slo.ttft_s, tpot_slo_s=config.slo.tpot_s)
        self.timeline = Timeline(config.timeline_interval_s)
        kv_bytes = model_preset(config.model).kv_bytes_per_token
        warehouse = Warehouse(config.warehouse.tiers, kv_bytes) if config.warehouse.tiers else None
        self.warehouse = warehouse
        self.env = ReplicaEnv(
            execution=execution,
            power=self.power.with_host(),
            devices=config.devices_per_replica,
            metrics=self.metrics,
            timeline=self.timeline,
            kv_capacity_tokens=kv_cap,
            max_batch=rc.max_batch,
            max_prefill_tokens=rc.max_prefill_tokens,
            prefix_cache_tokens=prefix_cache,
            fast=config.mode == "fast",
            warehouse=warehouse,
            drop_after_s=config.drop_after_s,
            record_power=record_power,
            chunked_prefill=rc.chunked_prefill,
        )
        scaling = config.scaling
        self.autoscaler, initial = make_autoscaler(
            config.autoscaler, config.autoscaler_params, scaling
        )
        if config.autoscaler == "static":
            # a static fleet has exactly its size, whatever the scaling bounds say
            scaling = replace(scaling, min_replicas=initial, max_replicas=max(initial, 1))
        self.scaling = scaling
        self.governor = ScalingGovernor(scaling, initial)
        self.fleet = Fleet(
            self.env,
            make_router(config.router),
            scaling.cold_start_s,
            scaling.cold_start_jitter_s,
            config.seed,
        )
        self.fleet.boot(initial)
        self.tick_s = scaling.tick_s
        self.arrivals_since_tick = 0
        self.exhausted = False
        self.stalled = False
        self.iterations = 0
        self.events = 0
        self.last_tick_s = 0.0
        self.ingress = IngressDelay(_overheads(config), config.seed)
        self.in_flight = 0
        """Requests that arrived but are still in the serving stack (not yet at a replica)."""
        self._source: Iterator[SimRequest] | None = None
        self._last_arrival_s = 0.0

    def next_arrival(self) -> Arrival | None:
        """The next request of the trace as an event (None once the trace is exhausted)."""
        assert self._source is not None
        try:
            req = next(self._source)
        except StopIteration:
            self.exhausted = True
            return None
        if req.arrival_s < self._last_arrival_s:
            raise TraceError(
                f"request {req.request_id} arrives at {req.arrival_s} s, before the previous "
                f"one ({self._last_arrival_s} s); sort the trace by arrival time"
            )
        self._last_arrival_s = req.arrival_s
        return Arrival(req.arrival_s, req)

    def run(self, requests: Iterable[Request]) -> PlanResult:
        """Simulate ``requests`` (arrival order, streamed) to the end; returns the result."""
        return self._run(_from_requests(requests))

    def run_columns(self, chunks: Iterable[TraceColumns]) -> PlanResult:
        """Simulate numpy chunks from ``TraceReader.columns()`` (no Request objects: faster;
        no prefix block ids, so no prefix reuse)."""
        return self._run(_from_columns(chunks))

    def _run(self, source: Iterator[SimRequest]) -> PlanResult:
        if self._source is not None:
            raise ConfigError("a Simulation runs once; build a new one for another run")
        self._source = source
        wall0 = time.perf_counter()
        heap: list[tuple[float, int, int, Event]] = []
        seq = 0
        first = self.next_arrival()
        if first is None:
            raise TraceError("the workload has no requests")
        heap.append((first.time_s, first.priority, 0, first))
        tick = Tick(self.tick_s)
        heap.append((tick.time_s, tick.priority, 1, tick))
        heapq.heapify(heap)
        seq = 2
        pop, push = heapq.heappop, heapq.heappush
        events = 0
        while heap:
            ev = pop(heap)[3]
            events += 1
            if type(ev) is Tick:
                self.last_tick_s = ev.time_s
            for new in ev.handle(self):
                push(heap, (new.time_s, new.priority, seq, new))
                seq += 1
        self.events = events
        end_s = max(self.metrics.last_completion_s, self._last_arrival_s, self.last_tick_s)
        self._finish(end_s)
        wall_s = time.perf_counter() - wall0
        return build_result(self, end_s, wall_s)

    def _finish(self, end_s: float) -> None:
        fleet = self.fleet
        while fleet.pending:
            fleet.pending.popleft()
            self.metrics.drop("no_capacity")
        for r in fleet.replicas:
            r.close(end_s)
        accounted = self.metrics.completed + sum(self.metrics.dropped.values())
        if accounted != self.metrics.arrived:
            raise AssertionError(
                f"planner bug: {self.metrics.arrived} arrived, {accounted} completed or dropped"
            )


def _overheads(config: PlanConfig) -> tuple[float, ...]:
    """The per-request overheads: the config's distribution or constant, else the profile's."""
    rc = config.replica
    if rc.request_overhead_quantiles_s:
        return rc.request_overhead_quantiles_s
    if rc.request_overhead_s is not None:
        return (rc.request_overhead_s,)
    if config.profile_path:
        return overhead_from_profile(config.profile_path) or (0.0,)
    return (0.0,)


def _from_requests(requests: Iterable[Request]) -> Iterator[SimRequest]:
    for req in requests:
        if not isinstance(req, Request):
            raise TraceError(f"the workload yielded {type(req).__name__}, not a Request")
        yield SimRequest(req)


def _from_columns(chunks: Iterable[TraceColumns]) -> Iterator[SimRequest]:
    make = SimRequest.from_counts
    for chunk in chunks:
        first = chunk.first_index
        rows = zip(
            chunk.arrival_s.tolist(),
            chunk.input_tokens.tolist(),
            chunk.output_tokens.tolist(),
            strict=True,
        )
        for i, (t, inp, out) in enumerate(rows):
            yield make(f"row-{first + i}", t, inp, out)


def simulate_columns(
    config: PlanConfig,
    chunks: Iterable[TraceColumns],
    execution: ExecutionModel | None = None,
    power: PowerModel | None = None,
) -> PlanResult:
    """Like ``simulate`` over ``open_trace(path).columns()``: the bulk path for long traces."""
    return Simulation(config, execution=execution, power=power).run_columns(chunks)


def simulate(
    config: PlanConfig,
    requests: Iterable[Request],
    execution: ExecutionModel | None = None,
    power: PowerModel | None = None,
) -> PlanResult:
    """Run ``config`` over ``requests`` (streamed in arrival order); returns the result."""
    return Simulation(config, execution=execution, power=power).run(requests)

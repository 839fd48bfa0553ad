"""One benchmark end to end: run the load with an energy sampler beside it, then join
records, SLOs, energy and the facility model into a ``BenchResult``. ``run_configured`` does it
all from one ``BenchConfig``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from tokenwatt.bench.client import OpenAIClient
from tokenwatt.bench.config import BenchConfig
from tokenwatt.bench.energy import summarize_energy
from tokenwatt.bench.energy_sources import EnergySampler, EnergySource, EnergyTrace
from tokenwatt.bench.load import ClosedLoop, Sessions
from tokenwatt.bench.metrics import meets_slos, request_metrics, run_metrics
from tokenwatt.bench.record import RequestRecord
from tokenwatt.bench.request_energy import summarize_request_energy
from tokenwatt.bench.results import BenchResult
from tokenwatt.bench.runner import LoadRunner, RunLimits
from tokenwatt.bench.slo import SloSet
from tokenwatt.bench.workloads import BenchWorkload
from tokenwatt.energy.facility import FacilityModel
from tokenwatt.workload.types import Request

__all__ = ["build_result", "planned_requests", "run_bench", "run_configured"]

log = logging.getLogger(__name__)


def build_result(
    runner: LoadRunner,
    slos: SloSet,
    trace: EnergyTrace | None,
    facility: FacilityModel | None = None,
    config: Mapping[str, Any] | None = None,
    started_at: str = "",
    interrupted: bool = False,
    workload_stats: Mapping[str, Any] | None = None,
) -> BenchResult:
    """Join a finished (or interrupted) run's records with its energy trace."""
    records = tuple(runner.records)
    measured = [r for r in records if not r.warmup]
    metrics = run_metrics(measured, slos)
    energy: dict[str, Any] | None = None
    timeline: tuple[tuple[float, float], ...] = ()
    if trace is not None:
        good = [meets_slos(request_metrics(r), slos) for r in measured]
        shape = runner.shape
        level = shape.concurrency if isinstance(shape, ClosedLoop | Sessions) else None
        summary = summarize_energy(trace, runner.t0, measured, good, level)
        timeline = tuple((t - runner.t0, w) for t, w in trace.power_timeline())
        if summary is not None:
            energy = summary.to_dict()
            it_energy = summary.whole_run.energy_j
            if facility is not None and "facility" not in summary.scope:
                energy["facility"] = facility.report(it_energy).to_dict()
    # Independent of the sampled source: the endpoint's own figures, whenever it sent them.
    per_request = summarize_request_energy(records)
    return BenchResult(
        config=dict(config or {}),
        started_at=started_at,
        duration_s=runner.ended_s,
        interrupted=interrupted,
        summary=dataclasses.asdict(metrics),
        energy=energy,
        request_energy=None if per_request is None else per_request.to_dict(),
        power_timeline=timeline,
        workload_stats=dict(workload_stats or {}),
        records=records,
    )


async def run_bench(
    runner: LoadRunner,
    slos: SloSet = SloSet(),
    energy: EnergySource | None = None,
    energy_interval_s: float = 0.1,
    facility: FacilityModel | None = None,
    config: Mapping[str, Any] | None = None,
    workload_stats: Callable[[], Mapping[str, Any]] | None = None,
) -> BenchResult:
    """Run ``runner`` with ``energy`` sampled beside it; return the joined result.

    When the run is cancelled (Ctrl-C), the result covers what finished and says so; the
    cancellation is not swallowed beyond this call's return value (asyncio.run re-raises
    KeyboardInterrupt), so callers keep the result in a variable they can read afterwards.
    """
    started_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    sampler = EnergySampler(energy, energy_interval_s) if energy is not None else None
    if sampler is not None:
        await sampler.start()
    interrupted = False
    trace: EnergyTrace | None = None
    try:
        await runner.run()
    except asyncio.CancelledError:
        interrupted = True
        log.warning("run interrupted: writing the partial result")
    finally:
        if sampler is not None:
            trace = await sampler.stop()
        if energy is not None:
            await energy.aclose()
    stats = workload_stats() if workload_stats is not None else None
    return build_result(runner, slos, trace, facility, config, started_at, interrupted, stats)


def planned_requests(limits: RunLimits, requests: Iterable[Request]) -> int | None:
    """How many requests a run under ``limits`` sends, for a progress bar: the measured cap
    plus warm-up, at most the workload's length when it is known (the whole workload when
    there is no cap); None when neither is known."""
    cap = None if limits.max_requests is None else limits.max_requests + limits.warmup_requests
    if isinstance(requests, Sequence):
        return len(requests) if cap is None else min(cap, len(requests))
    return cap


async def run_configured(
    config: BenchConfig,
    workload: BenchWorkload,
    on_record: Callable[[RequestRecord], None] | None = None,
) -> BenchResult:
    """Run ``workload`` (built from ``config.workload``) as ``config`` says, against a new
    ``OpenAIClient``, with ``config``'s energy source sampled beside it; ``on_record`` sees each
    finished request. On Ctrl-C the partial result comes back, marked so (see ``run_bench``)."""
    source = config.energy_source()
    client = OpenAIClient(config.client)
    runner = LoadRunner(client, workload.requests, config.shape, config.limits, on_record)
    try:
        return await run_bench(
            runner,
            config.slos,
            source,
            0.1,
            config.facility_model,
            config.record(),
            workload.stats,
        )
    finally:
        await client.aclose()

"""The whole story on one machine: measure, serve, bench with the warehouse off and on, plan.

``run_demo`` is what ``tokenwatt demo`` runs. Everything is real and offline: the reference
engine with its tiny seeded model served over HTTP on loopback, the bench client driving it with
agentic multi-turn sessions, tokenwatt's meters (estimated where no sensor exists, and labelled so),
and the fleet planner on a synthetic Azure-like chat load with published power presets.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tokenwatt.errors import ConfigError

__all__ = ["BenchLeg", "DemoConfig", "DemoResult", "PlanLeg", "run_demo"]

log = logging.getLogger(__name__)

Autoscaler = Literal["static", "concurrency", "queue_kv", "predictive"]

Progress = Callable[[str], None]
"""Receives one line per stage the demo starts (the CLI prints them)."""


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs. Defaults take about a minute or two on 2 CPU cores."""

    out_dir: Path = Path("tokenwatt-demo")
    """Where results (JSON, CSV) and HTML reports are written."""
    model: str = "tiny"
    """Reference engine model: a preset name or a local checkpoint directory."""
    sessions: int = 2
    """Concurrent agentic sessions per bench leg."""
    turns: int = 8
    """Turns per agentic session."""
    system_tokens: int = 3072
    """Tokens of the system/tool prefix every session shares."""
    max_output_tokens: int = 24
    """Cap on each answer (keeps the CPU demo short)."""
    slo: str = "ttft<=1s,tpot<=250ms"
    """SLOs behind goodput in the bench legs."""
    plan_requests: int = 20_000
    """Requests of the planner's synthetic chat load (about an hour at ``plan_rate``)."""
    plan_rate_rps: float = 5.5
    """Arrival rate of the planner's load (Azure 2023 conversation trace's mean: 5.53/s)."""
    plan_replicas: int = 4
    """Size of the static fleet the autoscalers are compared with."""
    facility: str = "uptime-2024-average"
    """Facility preset for the facility view (PUE, carbon, cost)."""
    seed: int = 0
    """Seed of the workloads and the model weights."""

    def __post_init__(self) -> None:
        for name in ("sessions", "turns", "max_output_tokens", "plan_requests", "plan_replicas"):
            if getattr(self, name) < 1:
                raise ConfigError(f"demo {name.replace('_', '-')} must be >= 1")
        if self.system_tokens < 0 or self.plan_rate_rps <= 0:
            raise ConfigError("demo system-tokens must be >= 0 and plan-rate > 0")


@dataclass(frozen=True)
class BenchLeg:
    """One bench run against the reference engine (warehouse off or on)."""

    label: str
    """``warehouse off`` or ``warehouse on``."""
    summary: Mapping[str, Any]
    """The bench result's summary (latency, goodput, energy with source and scope)."""
    energy: Mapping[str, Any] | None = None
    """The bench result's energy figures (each with source and scope), None without energy."""
    warehouse: Mapping[str, float] = field(default_factory=dict)
    """Warehouse counters after the run (empty when off)."""
    result_path: Path | None = None
    """The bench JSON written for this leg."""
    report_path: Path | None = None
    """The bench HTML report written for this leg."""


@dataclass(frozen=True)
class PlanLeg:
    """One planner configuration and its outcome."""

    label: str
    """Policy name, e.g. ``static x4``."""
    result: Any
    """The ``tokenwatt.plan.PlanResult``."""
    report_path: Path | None = None
    """The plan HTML report written for this configuration."""


@dataclass(frozen=True)
class DemoResult:
    """Everything the demo measured and simulated."""

    meters: tuple[tuple[str, str, str], ...]
    """(component, source, scope) of every meter the engine used."""
    skipped_meters: Mapping[str, str]
    """Meter back-ends not found here, with the reason."""
    outputs_identical: bool
    """Greedy answers to the longest demo prompt were identical with the warehouse off, on and
    cold, and on and warm (served from the warehouse)."""
    identity_cached_tokens: int
    """Prompt tokens the warm warehouse supplied in that check."""
    bench: tuple[BenchLeg, ...]
    """Bench legs: warehouse off, then on."""
    plan: tuple[PlanLeg, ...]
    """Planner configurations."""
    facility: Mapping[str, Any]
    """The facility preset used (its parameters, ``ere`` and ``source``)."""


def run_demo(config: DemoConfig, progress: Progress | None = None) -> DemoResult:
    """Run measure -> serve -> bench (warehouse off, on) -> plan; write results under out_dir."""
    say = progress or (lambda _line: None)
    out = config.out_dir
    out.mkdir(parents=True, exist_ok=True)

    from tokenwatt.energy import probe_meters

    say("measure: probing energy meters (NVML, RAPL, else the estimated CPU model)")
    probe = probe_meters(cpu_mode="process")
    meters = tuple((c.name, c.source, c.scope) for m in probe.meters for c in m.components)

    legs: list[BenchLeg] = []
    for warehouse in (None, "dram=1GiB"):
        label = "warehouse on" if warehouse else "warehouse off"
        say(f"serve + bench: tiny engine on loopback, {label}, agentic sessions")
        legs.append(_bench_leg(config, label, warehouse, out / label.replace(" ", "-")))

    say("warehouse: greedy output with the warehouse off, on (cold) and on (warm) must match")
    identical, cached = _identity_check(config)

    say(f"plan: {config.plan_requests} chat requests at {config.plan_rate_rps}/s on H100 presets")
    plan = _plan_legs(config, out / "plan")

    from tokenwatt.energy import facility_preset

    fac = facility_preset(config.facility)
    return DemoResult(
        meters=meters,
        skipped_meters=dict(probe.skipped),
        outputs_identical=identical,
        identity_cached_tokens=cached,
        bench=tuple(legs),
        plan=plan,
        facility=fac.to_dict(),
    )


def _bench_leg(config: DemoConfig, label: str, warehouse: str | None, out: Path) -> BenchLeg:
    from tokenwatt.bench.bench import run_bench
    from tokenwatt.bench.client import ClientConfig, OpenAIClient
    from tokenwatt.bench.energy_sources import PrometheusSource
    from tokenwatt.bench.load import Sessions
    from tokenwatt.bench.report import write_report
    from tokenwatt.bench.runner import LoadRunner, RunLimits
    from tokenwatt.bench.slo import parse_slos
    from tokenwatt.energy import CombinedMeter, detect_meters, facility_preset
    from tokenwatt.engine import EngineConfig, ServeConfig, load_model, start_server
    from tokenwatt.engine.engine import Engine

    loaded = load_model(config.model, device="cpu", seed=config.seed)
    meter = CombinedMeter(detect_meters(cpu_mode="process"))
    engine_config = EngineConfig(torch_threads=1)
    provider = None
    if warehouse:
        from tokenwatt.warehouse.engine_adapter import build_prefix_provider

        provider = build_prefix_provider(
            warehouse, loaded, block_tokens=engine_config.block_tokens, meter=meter
        )
    engine = Engine(loaded, engine_config, meter=meter, prefix_provider=provider)
    requests = _agentic_requests(config, loaded.max_context)
    slos = parse_slos(config.slo)
    with start_server(engine, ServeConfig(port=0)) as server:
        client = OpenAIClient(
            ClientConfig(base_url=server.url + "/v1", model=config.model, api="chat")
        )
        runner = LoadRunner(client, requests, Sessions(config.sessions), RunLimits())
        source = PrometheusSource(server.url + "/metrics")

        async def go() -> Any:
            try:
                return await run_bench(
                    runner,
                    slos,
                    source,
                    0.1,
                    facility_preset(config.facility),
                    {"demo": label, "model": config.model, "warehouse": warehouse or "off"},
                )
            finally:
                await client.aclose()

        result = asyncio.run(go())
    wh_stats: dict[str, float] = {}
    if provider is not None:
        provider.flush(30.0)
        snap = provider.store.stats.snapshot()
        wh_stats = {
            "tokens_served": float(snap.tokens_served),
            "prefill_tokens_avoided": float(snap.prefill_tokens_avoided),
            "hits": float(sum(t.hits for t in snap.tiers.values())),
            "misses": float(sum(t.misses for t in snap.tiers.values())),
        }
        provider.close()
    meter.close()
    paths = result.write(out)
    report = write_report(result, out / "report.html")
    return BenchLeg(label, result.summary, result.energy, wh_stats, paths["json"], report)


def _identity_check(config: DemoConfig) -> tuple[bool, int]:
    """The warehouse's promise, checked on the demo's longest prompt: same greedy tokens."""
    from tokenwatt.engine import EngineConfig, SamplingParams, load_model
    from tokenwatt.engine.engine import Engine
    from tokenwatt.warehouse.engine_adapter import build_prefix_provider

    loaded = load_model(config.model, device="cpu", seed=config.seed)
    prompt = max((r.prompt or "" for r in _agentic_requests(config, loaded.max_context)), key=len)
    params = SamplingParams(max_tokens=config.max_output_tokens, temperature=0.0, ignore_eos=True)
    engine_config = EngineConfig(torch_threads=1)
    off = Engine(loaded, engine_config).start()
    try:
        reference = off.generate(prompt, params, timeout_s=300).token_ids
    finally:
        off.stop()
    provider = build_prefix_provider("dram=256MiB", loaded, block_tokens=engine_config.block_tokens)
    on = Engine(loaded, engine_config, prefix_provider=provider).start()
    try:
        cold = on.generate(prompt, params, timeout_s=300)
        provider.flush(30.0)
        warm = on.generate(prompt, params, timeout_s=300)
    finally:
        on.stop()
        provider.close()
    same = reference == cold.token_ids == warm.token_ids
    return same, warm.cached_tokens


def _agentic_requests(config: DemoConfig, max_context: int) -> list[Any]:
    from tokenwatt.engine.tokenizer import ByteTokenizer
    from tokenwatt.workload import LogNormal, PromptSynthesizer, generate, workload_spec

    spec = workload_spec(
        "agentic",
        num_sessions=config.sessions,
        turns=config.turns,
        seed=config.seed,
        system_prefix_tokens=config.system_tokens,
        # Room for the answer and the chat template's few tokens per message.
        max_context_tokens=max_context - config.max_output_tokens - 256,
        # Short pauses keep the demo brief; the bench still waits for each answer first.
        user_think_s=LogNormal(median=0.05, sigma=0.0),
        tool_time_s=LogNormal(median=0.02, sigma=0.0),
    )
    synth = PromptSynthesizer(ByteTokenizer(), salt=f"demo-{config.seed}")
    return [
        synth.for_request(
            dataclasses.replace(r, output_tokens=min(r.output_tokens, config.max_output_tokens))
        )
        for r in generate(spec)
    ]


def _plan_legs(config: DemoConfig, out: Path) -> tuple[PlanLeg, ...]:
    from tokenwatt.energy import facility_preset
    from tokenwatt.plan import (
        FacilityConfig,
        PlanConfig,
        SyntheticWorkload,
        run_workload,
        write_report,
    )
    from tokenwatt.workload import Arrivals

    out.mkdir(parents=True, exist_ok=True)
    workload = SyntheticWorkload(
        "chat",
        (
            ("num_requests", config.plan_requests),
            ("seed", config.seed),
            ("arrivals", Arrivals("poisson", config.plan_rate_rps)),
        ),
    )
    fac = facility_preset(config.facility)
    facility = FacilityConfig(
        pue=fac.pue,
        erf=fac.erf,
        carbon_g_per_kwh=fac.carbon_g_per_kwh,
        wue_l_per_kwh=fac.wue_l_per_kwh,
        price_per_kwh=fac.price_per_kwh,
        currency=fac.currency,
    )
    base = PlanConfig(seed=config.seed, facility=facility)
    choices: tuple[tuple[str, Autoscaler, dict[str, float]], ...] = (
        (f"static x{config.plan_replicas}", "static", {"replicas": float(config.plan_replicas)}),
        ("Knative-like", "concurrency", {}),
        ("AIBrix-like", "queue_kv", {}),
    )
    legs = []
    for label, autoscaler, params in choices:
        cfg = dataclasses.replace(base, autoscaler=autoscaler, autoscaler_params=params)
        result = run_workload(cfg, workload)
        path = out / f"{autoscaler}.html"
        write_report([result], path)
        legs.append(PlanLeg(label, result, path))
    return tuple(legs)

"""End to end: the bench against `tokenwatt serve`'s engine (tiny model) on loopback."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tokenwatt.bench.bench import run_bench
from tokenwatt.bench.client import ClientConfig, OpenAIClient, list_models
from tokenwatt.bench.energy_sources import PrometheusSource
from tokenwatt.bench.load import ClosedLoop, Sessions
from tokenwatt.bench.runner import LoadRunner
from tokenwatt.bench.slo import parse_slos
from tokenwatt.bench.workloads import WorkloadOptions, build_workload
from tokenwatt.energy.replay import FixedPowerMeter
from tokenwatt.engine.config import EngineConfig
from tokenwatt.engine.engine import Engine
from tokenwatt.engine.model import load_model
from tokenwatt.engine.server import RunningServer, ServeConfig, start_server
from tokenwatt.workload.types import Request


@pytest.fixture(scope="module")
def engine_server() -> Iterator[RunningServer]:
    """The tiny preset served on a free port, with a 10 W meter ticking 1 s per read."""
    torch.set_num_threads(1)
    ticks = itertools.count()
    meter = FixedPowerMeter({"cpu": 10.0}, scope="cpu", clock=lambda: float(next(ticks)))
    engine = Engine(load_model("tiny", device="cpu"), EngineConfig(max_queue=64), meter=meter)
    running = start_server(engine, ServeConfig(port=0))
    try:
        yield running
    finally:
        running.stop()


@pytest.mark.parametrize("api", ["completions", "chat"])
async def test_bench_against_tokenwatt_serve(engine_server: RunningServer, api: str) -> None:
    """4 requests of 5 tokens (ignore_eos) all succeed with exact token counts; the endpoint's
    own energy counter and per-request usage energy are both read, labelled by its meter."""
    reqs = [Request(f"r{i}", input_tokens=8, output_tokens=5) for i in range(4)]
    client = OpenAIClient(
        ClientConfig(base_url=engine_server.url, api=api, model="tiny", ignore_eos=True)  # type: ignore[arg-type]
    )
    runner = LoadRunner(client, reqs, ClosedLoop(2))
    try:
        result = await run_bench(
            runner,
            parse_slos("e2e<=60s"),
            PrometheusSource(engine_server.url + "/metrics"),
            energy_interval_s=0.05,
        )
    finally:
        await client.aclose()
    assert result.summary["errors"] == {}
    assert [r.output_tokens for r in result.records] == [5, 5, 5, 5]
    assert all(r.endpoint_energy_j is not None and r.endpoint_energy_j > 0 for r in result.records)
    energy = result.energy
    assert energy is not None
    assert (energy["source"], energy["scope"]) == ("estimated:fixed-power", "cpu")
    assert energy["whole_run"]["energy_j"] > 0


async def test_prompts_longer_than_the_context_are_clamped_to_fit(
    engine_server: RunningServer, tmp_path: Path
) -> None:
    """A trace with prompts of 9,000 and 8,190 tokens against the tiny model (context 8,192, read
    from /v1/models): both are cut to 8,188 so the 4 output tokens fit; no request fails, and
    the result counts exactly 2 of 3 prompts clamped."""
    models = await list_models(engine_server.url)
    assert models is not None
    assert (models[0].id, models[0].max_model_len) == ("tiny", 8192)
    trace = tmp_path / "long.csv"
    trace.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:15:46.0,9000,4\n"
        "2023-11-16 18:15:46.1,100,4\n"
        "2023-11-16 18:15:46.2,8190,4\n"
    )
    opts = WorkloadOptions(
        "trace", trace=trace, tokenizer="bytes", max_model_len=models[0].max_model_len
    )
    workload = build_workload(opts)
    client = OpenAIClient(ClientConfig(base_url=engine_server.url, model="tiny", ignore_eos=True))
    runner = LoadRunner(client, workload.requests, ClosedLoop(1))
    try:
        result = await run_bench(runner, workload_stats=workload.stats)
    finally:
        await client.aclose()
    assert result.summary["errors"] == {}
    # The server's own prompt_tokens: the byte tokenizer makes the synthesized lengths exact.
    by_id = {r.request_id: (r.input_tokens, r.output_tokens) for r in result.records}
    assert by_id == {"azure-0": (8188, 4), "azure-1": (100, 4), "azure-2": (8188, 4)}
    context = result.workload_stats["context"]
    assert (context["limit"], context["max_model_len"]) == ("max_model_len", 8192)
    assert (context["requests"], context["prompts_clamped"], context["outputs_clamped"]) == (
        3,
        2,
        0,
    )


async def test_energy_per_request_and_session_from_usage(engine_server: RunningServer) -> None:
    """Two sessions of two turns: each request keeps the joules the server put in usage.energy,
    labelled with its meter's source and scope; J per session is the sum of its turns."""
    reqs = [
        Request(f"s{s}t{t}", input_tokens=8, output_tokens=3, session_id=f"s{s}", turn=t)
        for s in range(2)
        for t in range(2)
    ]
    client = OpenAIClient(ClientConfig(base_url=engine_server.url, model="tiny", ignore_eos=True))
    runner = LoadRunner(client, reqs, Sessions(2))
    try:
        result = await run_bench(runner)
    finally:
        await client.aclose()
    assert result.summary["errors"] == {}
    labels = {(r.endpoint_energy_source, r.endpoint_energy_scope) for r in result.records}
    assert labels == {("estimated:fixed-power", "cpu")}
    joules = {r.request_id: r.endpoint_energy_j for r in result.records}
    assert all(j is not None and j > 0 for j in joules.values())
    e = result.request_energy
    assert e is not None
    assert (e["source"], e["scope"], e["requests"], e["unreported"]) == (
        "estimated:fixed-power",
        "cpu",
        4,
        0,
    )
    assert e["total_j"] == math.fsum(j for j in joules.values() if j is not None)
    sessions = sorted(
        math.fsum(j for rid, j in joules.items() if rid.startswith(f"s{s}") and j is not None)
        for s in range(2)
    )
    per_session = e["j_per_session"]
    assert (e["sessions"], per_session["min"], per_session["max"]) == (2, *sessions)
    assert per_session["mean"] == pytest.approx(sum(sessions) / 2)

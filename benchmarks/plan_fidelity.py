"""Claim (goal): the planner predicts a measured run of the reference engine within 10% on TTFT
p50 and p99, output throughput and energy.

In the same run: (1) calibrate the tiny reference engine in process (``tokenwatt plan calibrate``'s
library call, with this machine's meters); (2) serve the same engine over HTTP and replay a Poisson
workload with the bench client (exact prompt lengths, EOS ignored), metering the run; (3) simulate
that workload with the calibrated profile (timing and power) on one replica with the engine's
limits. Prints predicted, measured and their ratio for each figure. A per-request serving
overhead (HTTP, tokenization: the time outside engine steps) is calibrated first from isolated
requests. Energy is compared twice: with the engine thread's CPU time under the same CPU power
model the calibration used (what the simulator models: engine steps), and with the whole process
(the HTTP server and the load client share it, so the serving stack's cost shows as the gap).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import statistics
import tempfile
import time
from pathlib import Path

import psutil
import torch

from tokenwatt.bench.client import ClientConfig, OpenAIClient
from tokenwatt.bench.load import TraceReplay
from tokenwatt.bench.runner import LoadRunner, RunLimits
from tokenwatt.energy import CombinedMeter, CpuModelParams, detect_meters
from tokenwatt.engine import Engine, EngineConfig, EngineCore, ServeConfig, load_model
from tokenwatt.engine.server import start_server
from tokenwatt.plan import (
    CalibrationSpec,
    EngineTarget,
    PlanConfig,
    ProfileModel,
    ReplicaConfig,
    calibrate,
    simulate,
    write_profile,
)
from tokenwatt.workload import Request
from tokenwatt.workload.prompts import PromptSynthesizer

CPU_ACTIVE_W = CpuModelParams().active_w_per_core
"""The CPU model's watts per busy logical CPU, applied to the engine thread's CPU time."""


def thread_cpu_s(proc: psutil.Process, engine: Engine) -> float:
    """CPU seconds of the engine's own thread (the steps the simulator models)."""
    thread = engine._thread
    assert thread is not None and thread.native_id is not None
    for t in proc.threads():
        if t.id == thread.native_id:
            return float(t.user_time + t.system_time)
    raise RuntimeError("engine thread not found")


def workload(n: int, rate: float, seed: int, synth: PromptSynthesizer) -> list[Request]:
    rng = random.Random(seed)
    t = 0.0
    out = []
    for i in range(n):
        inp = rng.randint(32, 256)
        outp = rng.randint(16, 64)
        prompt = synth.unique(inp, f"r{i}")
        out.append(Request(f"r{i}", t, inp, outp, prompt=prompt))
        t += rng.expovariate(rate)
    return out


def quantile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def energy(meter: CombinedMeter | None) -> float:
    return sum(meter.read().energy_j.values()) if meter else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--requests", type=int, default=80)
    ap.add_argument("--rate", type=float, default=4.0, help="Poisson arrivals per second")
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=5, help="calibration passes (medians)")
    ap.add_argument("--step-tokens", type=int, default=1024, help="engine token budget per step")
    ap.add_argument(
        "--no-token-overhead",
        dest="token_overhead",
        action="store_false",
        help="leave the per-token serving cost out of the simulation",
    )
    args = ap.parse_args()

    loaded = load_model(args.model, device="cpu")
    # The engine fuses prompt chunks with decodes under a token budget: the simulator's chunked
    # prefill does the same. One torch thread: on a shared 2-core machine a second intra-op
    # thread waits on a busy core, and identical steps varied 10x.
    engine_cfg = EngineConfig(
        max_batch=args.max_batch, max_step_tokens=args.step_tokens, torch_threads=1
    )
    torch.set_num_threads(1)
    meters = detect_meters()
    meter = CombinedMeter(meters) if meters else None
    batches = tuple(b for b in (1, 2, 4, 8, 16, 32) if b <= args.max_batch)
    spec = CalibrationSpec(
        prefill_tokens=(32, 128, 256, args.step_tokens),
        decode_batches=batches,
        rounds=args.rounds,
    )
    t0 = time.perf_counter()
    profile = calibrate(
        lambda: EngineTarget(EngineCore(loaded, engine_cfg)), spec, meter, args.model
    )
    calib_s = time.perf_counter() - t0
    profile_path = Path(tempfile.mkdtemp()) / "profile.json"
    write_profile(profile, profile_path)

    synth = PromptSynthesizer(loaded.tokenizer, salt=str(time.time()))
    reqs = workload(args.requests, args.rate, args.seed, synth)
    probes = [
        Request(f"p{i}", 0.4 * i, 128, 1, prompt=synth.unique(128, f"p{i}")) for i in range(10)
    ]
    warm = [Request(f"w{i}", 0.0, 64, 8, prompt=synth.unique(64, f"w{i}")) for i in range(4)]
    # a batch of 8 streams at once calibrates the per-token serving cost (inter-token gaps)
    burst = [Request(f"s{i}", 0.0, 64, 64, prompt=synth.unique(64, f"s{i}")) for i in range(8)]

    engine = Engine(loaded, engine_cfg).start()
    server = start_server(engine, ServeConfig(model=args.model, port=0))
    proc = psutil.Process()
    marks: dict[str, float] = {}
    client = OpenAIClient(ClientConfig(base_url=server.url, model=args.model, ignore_eos=True))
    probe_run = LoadRunner(client, probes, TraceReplay(), RunLimits())
    burst_run = LoadRunner(client, burst, TraceReplay(), RunLimits())
    runner = LoadRunner(client, reqs, TraceReplay(), RunLimits())

    async def run() -> None:
        try:
            # first requests pay one-off costs (HTTP connections, allocator growth)
            await LoadRunner(client, warm, TraceReplay(), RunLimits()).run()
            await probe_run.run()  # isolated requests: the serving overhead
            await burst_run.run()
            marks.update(e0=energy(meter), cpu0=thread_cpu_s(proc, engine))
            t = time.perf_counter()
            await runner.run()
            marks.update(wall=time.perf_counter() - t)
            marks.update(e1=energy(meter), cpu1=thread_cpu_s(proc, engine))
        finally:
            await client.aclose()

    try:
        asyncio.run(run())
    finally:
        server.stop()

    probe_ttft = [r.first_token_s - r.start_s for r in probe_run.records if r.first_token_s]
    prefill_128 = ProfileModel.from_file(profile_path).prefill_s(128, 1)
    overhead_s = max(0.0, statistics.median(probe_ttft) - prefill_128)
    gaps = [b - a for r in burst_run.records for a, b in itertools.pairwise(r.chunk_times_s)]
    step_8 = ProfileModel.from_file(profile_path).decode_s(8, 8 * (64 + 32), 1)
    token_s = max(0.0, (statistics.median(gaps) - step_8) / 8) if args.token_overhead else 0.0
    records = [r for r in runner.records if r.ok and r.first_token_s is not None]
    ttfts = [r.first_token_s - r.start_s for r in records if r.first_token_s is not None]
    span = max(r.end_s for r in records) - min(r.start_s for r in records)
    measured = {
        "TTFT p50 (s)": quantile(ttfts, 0.5),
        "TTFT p99 (s)": quantile(ttfts, 0.99),
        "output tokens/s": sum(r.output_tokens for r in records) / span,
        "engine energy (J)": CPU_ACTIVE_W * (marks["cpu1"] - marks["cpu0"]),
        "process energy (J)": marks["e1"] - marks["e0"],
    }

    cfg = PlanConfig(
        autoscaler="static",
        autoscaler_params={"replicas": 1},
        profile_path=str(profile_path),
        replica=ReplicaConfig(
            max_batch=args.max_batch,
            max_prefill_tokens=engine_cfg.max_step_tokens,
            kv_capacity_tokens=engine_cfg.kv_capacity_tokens,
            prefix_cache_tokens=0,
            request_overhead_s=overhead_s,
            token_overhead_s=token_s,
            chunked_prefill=True,
        ),
    )
    res = simulate(cfg, reqs)
    predicted = {
        "TTFT p50 (s)": res.latency_s["ttft_p50"],
        "TTFT p99 (s)": res.latency_s["ttft_p99"],
        "output tokens/s": res.output_tokens / res.last_completion_s,
        "engine energy (J)": res.energy_j,
        "process energy (J)": res.energy_j,
    }
    sources = sorted({c.source for c in meter.components}) if meter else ["no meter"]
    print(
        f"model {args.model}: {len(records)}/{len(reqs)} requests ok, Poisson {args.rate}/s, "
        f"max batch {args.max_batch}; calibration {calib_s:.1f} s; run {marks['wall']:.1f} s"
    )
    print(
        f"serving overhead: {overhead_s * 1e3:.2f} ms per request (isolated probes), "
        f"{token_s * 1e3:.3f} ms per token (8 concurrent streams)"
    )
    print(f"predicted energy: {res.energy_source}; measured with {', '.join(sources)}")
    print(f"{'figure':18s} {'predicted':>10s} {'measured':>10s} {'ratio':>7s}")
    for key, m in measured.items():
        p = predicted[key]
        ratio = p / m if m else float("nan")
        flag = "within 10%" if abs(ratio - 1) <= 0.10 else "off"
        print(f"{key:18s} {p:10.4g} {m:10.4g} {ratio:7.3f} {flag}")


if __name__ == "__main__":
    main()

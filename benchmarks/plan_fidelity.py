"""Claim (goal): the planner predicts a measured run of the reference engine within 10% on TTFT
p50 and p99, output throughput and energy.

In the same run: (1) calibrate the tiny reference engine in process (``tokenwatt plan calibrate``'s
library call, with this machine's meters); (2) serve the same engine over HTTP and replay a Poisson
workload with the bench client (exact prompt lengths, EOS ignored), metering the run; (3) simulate
that workload with the calibrated profile (timing and power) on one replica with the engine's
limits. Prints predicted, measured and their ratio for each figure.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch

from tokenwatt.bench.client import ClientConfig, OpenAIClient
from tokenwatt.bench.load import TraceReplay
from tokenwatt.bench.runner import LoadRunner, RunLimits
from tokenwatt.energy import CombinedMeter, detect_meters
from tokenwatt.engine import Engine, EngineConfig, EngineCore, ServeConfig, load_model
from tokenwatt.engine.server import start_server
from tokenwatt.plan import (
    CalibrationSpec,
    EngineTarget,
    PlanConfig,
    ReplicaConfig,
    calibrate,
    simulate,
    write_profile,
)
from tokenwatt.workload import Request
from tokenwatt.workload.prompts import PromptSynthesizer


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--requests", type=int, default=80)
    ap.add_argument("--rate", type=float, default=4.0, help="Poisson arrivals per second")
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    loaded = load_model(args.model, device="cpu")
    # prefill in one step (as the simulator's prefill iterations), decode batches up to max_batch
    # one torch thread: on a shared 2-core machine a second intra-op thread waits on a busy core
    # and made step times vary 10x between identical steps
    engine_cfg = EngineConfig(max_batch=args.max_batch, max_step_tokens=4096, torch_threads=1)
    torch.set_num_threads(1)
    meters = detect_meters()
    meter = CombinedMeter(meters) if meters else None
    batches = tuple(b for b in (1, 2, 4, 8, 16, 32) if b <= args.max_batch)
    spec = CalibrationSpec(prefill_tokens=(32, 128, 256, 1024), decode_batches=batches)
    t0 = time.perf_counter()
    profile = calibrate(
        lambda: EngineTarget(EngineCore(loaded, engine_cfg)), spec, meter, args.model
    )
    calib_s = time.perf_counter() - t0
    tmp = Path(tempfile.mkdtemp())
    profile_path = tmp / "profile.json"
    write_profile(profile, profile_path)

    synth = PromptSynthesizer(loaded.tokenizer, salt=str(time.time()))
    reqs = workload(args.requests, args.rate, args.seed, synth)

    engine = Engine(loaded, engine_cfg).start()
    server = start_server(engine, ServeConfig(model=args.model, port=0))
    try:
        client = OpenAIClient(ClientConfig(base_url=server.url, model=args.model, ignore_eos=True))
        warm = [Request(f"w{i}", 0.0, 64, 8, prompt=synth.unique(64, f"w{i}")) for i in range(4)]
        runner = LoadRunner(client, reqs, TraceReplay(), RunLimits())

        async def run() -> None:
            try:
                # first requests pay one-off costs (HTTP connections, allocator growth)
                await LoadRunner(client, warm, TraceReplay(), RunLimits()).run()
                e_run[0] = sum(meter.read().energy_j.values()) if meter else 0.0
                await runner.run()
            finally:
                await client.aclose()

        e_run = [0.0]
        w0 = time.perf_counter()
        asyncio.run(run())
        wall = time.perf_counter() - w0
        e1 = sum(meter.read().energy_j.values()) if meter else 0.0
        e0 = e_run[0]
    finally:
        server.stop()
    records = [r for r in runner.records if r.ok and r.first_token_s is not None]
    ttfts = [r.first_token_s - r.start_s for r in records if r.first_token_s is not None]
    out_tokens = sum(r.output_tokens for r in records)
    span = max(r.end_s for r in records) - min(r.start_s for r in records)
    measured = {
        "TTFT p50 (s)": quantile(ttfts, 0.5),
        "TTFT p99 (s)": quantile(ttfts, 0.99),
        "output tokens/s": out_tokens / span,
        "energy (J)": e1 - e0,
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
        ),
    )
    res = simulate(cfg, reqs)
    lat = res.latency_s
    predicted = {
        "TTFT p50 (s)": lat["ttft_p50"],
        "TTFT p99 (s)": lat["ttft_p99"],
        "output tokens/s": res.output_tokens / res.last_completion_s,
        "energy (J)": res.energy_j,
    }
    print(
        f"model {args.model}: {len(records)}/{len(reqs)} requests ok, Poisson {args.rate}/s, "
        f"max batch {args.max_batch}; calibration {calib_s:.1f} s; run {wall:.1f} s"
    )
    print(
        f"energy: {res.energy_source}; measured with "
        f"{', '.join(sorted({c.source for c in meter.components})) if meter else 'no meter'}"
    )
    print(f"{'figure':18s} {'predicted':>10s} {'measured':>10s} {'ratio':>7s}")
    for key in measured:
        p, m = predicted[key], measured[key]
        ratio = p / m if m else float("nan")
        flag = "ok" if abs(ratio - 1) <= 0.10 else "off"
        print(f"{key:18s} {p:10.4g} {m:10.4g} {ratio:7.3f} {flag}")
    print(
        f"median calibrated decode step: {statistics.median(d[1] for d in profile['decode']):.4f} s"
    )


if __name__ == "__main__":
    main()

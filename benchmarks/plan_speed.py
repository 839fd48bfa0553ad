"""Claim: the planner simulates >= 50,000 requests/s on one core (Azure 2023 conversation trace,
10-replica fleet with autoscaling), because its fast mode jumps over decode iterations.

In the same run, median of ``--runs`` runs each:
  baseline  step mode: one event per batch iteration (the plain discrete-event simulation)
  fast      fast mode: one event per batch change, decode runs in closed form
Both must give the same results (checked here, field by field). ``--stream-copies N`` then replays
the trace N times back to back from the file (each copy after the previous one) in fast mode, as
Request objects and as numpy columns, to show the streaming simulation's peak memory does not
grow with the number of requests.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from tokenwatt.plan import PlanConfig, PlanResult, ScalingConfig, simulate, simulate_columns
from tokenwatt.workload import TraceColumns, open_trace
from tokenwatt.workload.types import Request

DEFAULT_TRACE = (
    Path(__file__).resolve().parents[2] / "shared" / "traces" / "azure_llm_2023_conv.csv"
)


def config(mode: str, replicas: int, autoscaler: str) -> PlanConfig:
    return PlanConfig(
        autoscaler=autoscaler,  # type: ignore[arg-type]
        autoscaler_params={"replicas": float(replicas)} if autoscaler == "static" else {},
        scaling=ScalingConfig(min_replicas=1, max_replicas=replicas),
        mode=mode,  # type: ignore[arg-type]
    )


def timed(cfg: PlanConfig, requests: list[Request], runs: int) -> tuple[float, PlanResult]:
    """Median CPU seconds of this process per run (the machine is shared: wall time would
    count other people's work), and the last result."""
    cpu = []
    result = None
    for _ in range(runs):
        t0 = time.process_time()
        result = simulate(cfg, requests)
        cpu.append(time.process_time() - t0)
    assert result is not None
    return statistics.median(cpu), result


def differences(a: PlanResult, b: PlanResult) -> list[str]:
    """Fields where the two results differ beyond float rounding."""
    out = []
    da, db = a.to_dict(), b.to_dict()
    for key in ("arrived", "completed", "dropped", "prefill_tokens", "output_tokens"):
        if da[key] != db[key]:
            out.append(key)
    for key in ("energy_j", "duration_s", "slo_attainment", "accelerator_hours"):
        if abs(da[key] - db[key]) > 1e-9 * max(1.0, abs(da[key])):
            out.append(key)
    for group in ("energy_split_j", "latency_s"):
        for k, v in da[group].items():
            if abs(v - db[group][k]) > 1e-9 * max(1.0, abs(v)):
                out.append(f"{group}.{k}")
    return out


def looped(path: Path, copies: int) -> Iterator[Request]:
    """The trace streamed ``copies`` times, each copy shifted by the previous copy's span."""
    offset = 0.0
    last = 0.0
    for c in range(copies):
        for r in open_trace(path):
            last = r.arrival_s
            yield Request(
                f"{c}-{r.request_id}", r.arrival_s + offset, r.input_tokens, r.output_tokens
            )
        offset += last + 1.0


def looped_columns(path: Path, copies: int) -> Iterator[TraceColumns]:
    """The trace's numpy chunks ``copies`` times, each copy shifted like ``looped``."""
    offset = 0.0
    for _ in range(copies):
        last = 0.0
        for chunk in open_trace(path).columns():
            yield replace(chunk, arrival_s=chunk.arrival_s + offset)
            last = float(chunk.arrival_s[-1])
        offset += last + 1.0


def stream_child(
    path: Path, copies: int, replicas: int, autoscaler: str, columns: bool
) -> dict[str, Any]:
    t0 = time.process_time()
    cfg = config("fast", replicas, autoscaler)
    if columns:
        res = simulate_columns(cfg, looped_columns(path, copies))
    else:
        res = simulate(cfg, looped(path, copies))
    cpu = time.process_time() - t0
    return {
        "copies": copies,
        "requests": res.arrived,
        "cpu_s": cpu,
        "requests_per_s": res.arrived / cpu,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", type=Path, default=DEFAULT_TRACE)
    ap.add_argument("--replicas", type=int, default=10, help="fleet size (max for autoscalers)")
    ap.add_argument("--autoscaler", default="concurrency")
    ap.add_argument("--runs", type=int, default=5, help="fast-mode runs (median)")
    ap.add_argument("--step-runs", type=int, default=3, help="step-mode runs (median)")
    ap.add_argument("--stream-copies", type=int, default=20, help="0 skips the memory check")
    ap.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--child-columns", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        d = stream_child(args.trace, args.child, args.replicas, args.autoscaler, args.child_columns)
        print(json.dumps(d))
        return

    requests = list(open_trace(args.trace))
    n = len(requests)
    fast_s, fast = timed(config("fast", args.replicas, args.autoscaler), requests, args.runs)
    step_s, step = timed(config("step", args.replicas, args.autoscaler), requests, args.step_runs)
    diff = differences(fast, step)
    print(f"trace: {args.trace.name}, {n} requests, {args.replicas} replicas, {args.autoscaler}")
    print(
        f"peak replicas {fast.peak_replicas}, SLO attainment {fast.slo_attainment:.4f}, "
        f"energy {fast.energy_j / 3.6e6:.4f} kWh ({fast.energy_source})"
    )
    print(
        f"baseline step mode: {n / step_s:10,.0f} requests/s  ({step_s:.3f} CPU s, "
        f"{step.sim['events']:,.0f} events)"
    )
    print(
        f"fast mode:          {n / fast_s:10,.0f} requests/s  ({fast_s:.3f} CPU s, "
        f"{fast.sim['events']:,.0f} events)"
    )
    print(f"ratio fast / step:  {step_s / fast_s:.1f}x")
    print(f"results identical (rel 1e-9): {'yes' if not diff else 'NO: ' + ', '.join(diff)}")
    if args.stream_copies > 0:
        for columns in (False, True):
            for copies in (1, args.stream_copies):
                cmd = [
                    sys.executable,
                    __file__,
                    "--trace",
                    str(args.trace),
                    "--replicas",
                    str(args.replicas),
                    "--autoscaler",
                    args.autoscaler,
                    "--child",
                    str(copies),
                ]
                if columns:
                    cmd.append("--child-columns")
                out = subprocess.run(cmd, check=True, capture_output=True, text=True)
                d = json.loads(out.stdout)
                how = "numpy columns" if columns else "Request objects"
                print(
                    f"streamed x{copies:<3d} {d['requests']:>9,d} requests as {how:15s}: "
                    f"{d['requests_per_s']:,.0f} requests/CPU-s incl. parsing, "
                    f"peak RSS {d['peak_rss_mib']:.0f} MiB"
                )


if __name__ == "__main__":
    main()

"""Claim: on the Mooncake trace, a token warehouse raises output tokens per joule at the fleet
level, because hits skip prefill compute (they pay load time instead).

Simulated with the planner (power from public-figure presets, not measured), in the same run,
a static fleet with the prefix-aware router:
  baseline   no prefix reuse at all (replica cache 0, no warehouse)
  replica    each replica reuses prefixes from its own cache only
  warehouse  replica caches plus a shared DRAM tier (--dram-gb at --dram-gbps)
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tokenwatt.plan import PlanConfig, PlanResult, TraceWorkload, sweep
from tokenwatt.plan.search import Backend

DEFAULT_TRACE = (
    Path(__file__).resolve().parents[2] / "shared" / "traces" / "mooncake_synthetic.jsonl"
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", type=Path, default=DEFAULT_TRACE)
    ap.add_argument("--replicas", type=int, default=4)
    ap.add_argument("--dram-gb", type=float, default=1000.0)
    ap.add_argument("--dram-gbps", type=float, default=25.0)
    ap.add_argument("--workers", type=int, default=1, help="local processes for the sweep")
    args = ap.parse_args()

    base = PlanConfig(
        autoscaler="static",
        autoscaler_params={"replicas": float(args.replicas)},
        router="prefix_aware",
    )
    tier = {
        "name": "dram",
        "capacity_bytes": args.dram_gb * 1e9,
        "bandwidth_bytes_per_s": args.dram_gbps * 1e9,
    }
    names = ("baseline", "replica", "warehouse")
    variants: list[dict[str, Any]] = [
        {"replica.prefix_cache_tokens": 0},
        {},
        {"warehouse": {"tiers": [tier]}},
    ]
    backend: Backend = "serial" if args.workers == 1 else "process"
    results: list[PlanResult] = sweep(
        base, variants, TraceWorkload(str(args.trace)), backend, args.workers
    )
    ref = results[0]
    print(
        f"trace {args.trace.name}: {ref.arrived} requests, {ref.input_tokens:,} prompt tokens; "
        f"{args.replicas} x {base.accelerator}, energy source {ref.energy_source} (simulated)"
    )
    print(
        f"{'variant':10s} {'prefilled':>12s} {'SLO %':>7s} {'kWh':>7s} {'prefill kWh':>11s} "
        f"{'ttft p50':>8s} {'tok/J':>6s} {'tok/J vs baseline':>18s}"
    )
    for name, r in zip(names, results, strict=True):
        print(
            f"{name:10s} {r.prefill_tokens:12,d} {r.slo_attainment * 100:7.2f} "
            f"{r.energy_j / 3.6e6:7.3f} {r.energy_split_j['prefill'] / 3.6e6:11.3f} "
            f"{r.latency_s['ttft_p50']:8.3f} {r.output_tokens_per_j:6.3f} "
            f"{r.output_tokens_per_j / ref.output_tokens_per_j:17.3f}x"
        )


if __name__ == "__main__":
    main()

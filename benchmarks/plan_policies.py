"""Claim: on the Azure 2023 conversation trace, autoscaling serves the same SLO with less
accelerator energy than a static fleet sized for the peak (the idle energy it does not burn).

Simulated with the planner (power from public-figure presets, not measured), in the same run:
  baseline  static fleet of --replicas replicas
  policies  concurrency (Knative-like), queue_kv (AIBrix-like), predictive; max --replicas
Prints SLO attainment, energy split and the energy ratio against the baseline.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tokenwatt.plan import PlanConfig, PlanResult, ScalingConfig, TraceWorkload, sweep
from tokenwatt.plan.search import Backend

DEFAULT_TRACE = (
    Path(__file__).resolve().parents[2] / "shared" / "traces" / "azure_llm_2023_conv.csv"
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", type=Path, default=DEFAULT_TRACE)
    ap.add_argument("--replicas", type=int, default=10)
    ap.add_argument("--accelerator", default="H100-SXM")
    ap.add_argument("--power", default=None, help="power preset (e.g. H100-SXM-node)")
    ap.add_argument("--cold-start-s", type=float, default=30.0)
    ap.add_argument("--workers", type=int, default=1, help="local processes for the sweep")
    args = ap.parse_args()

    base = PlanConfig(
        accelerator=args.accelerator,
        power=args.power,
        scaling=ScalingConfig(
            min_replicas=1, max_replicas=args.replicas, cold_start_s=args.cold_start_s
        ),
    )
    variants = [
        {"autoscaler": "static", "autoscaler_params.replicas": args.replicas},
        {"autoscaler": "concurrency"},
        {"autoscaler": "queue_kv"},
        {"autoscaler": "predictive"},
    ]
    backend: Backend = "serial" if args.workers == 1 else "process"
    results: list[PlanResult] = sweep(
        base, variants, TraceWorkload(str(args.trace)), backend, args.workers
    )
    static = results[0]
    print(
        f"trace {args.trace.name}: {static.arrived} requests over {static.duration_s:.0f} s; "
        f"{args.accelerator}, energy source {static.energy_source} (simulated)"
    )
    print(
        f"{'policy':12s} {'SLO %':>7s} {'kWh':>7s} {'idle kWh':>9s} {'cold kWh':>9s} "
        f"{'acc-h':>6s} {'tok/J':>6s} {'ttft p99':>8s} {'energy vs static':>17s}"
    )
    for v, r in zip(variants, results, strict=True):
        idle, cold = r.energy_split_j["idle"], r.energy_split_j["cold_start"]
        print(
            f"{v['autoscaler']:12s} {r.slo_attainment * 100:7.2f} {r.energy_j / 3.6e6:7.3f} "
            f"{idle / 3.6e6:9.3f} {cold / 3.6e6:9.3f} "
            f"{r.accelerator_hours:6.2f} {r.output_tokens_per_j:6.3f} "
            f"{r.latency_s['ttft_p99']:8.3f} {r.energy_j / static.energy_j:16.3f}x"
        )


if __name__ == "__main__":
    main()

"""The options `tokenwatt plan run|search|sweep` share (the trace or synthetic workload, the
config and its overrides, the sweep backend), declared once, and the checks that only the
command line can make."""

from __future__ import annotations

from pathlib import Path

import typer

from tokenwatt.errors import ConfigError
from tokenwatt.plan.files import check_output_folders
from tokenwatt.plan.search import Backend, parse_backend
from tokenwatt.plan.workloads import WORKLOADS, WorkloadOptions

__all__ = [
    "BACKEND",
    "CONFIG",
    "HTML",
    "LIMIT",
    "NUM_REQUESTS",
    "PREFIX_SHARE",
    "RATE",
    "SEED",
    "SET",
    "SPEEDUP",
    "TRACE",
    "WORKERS",
    "WORKLOAD",
    "parallel_runs",
    "workload_options",
]

TRACE = typer.Argument(None, help="Trace file (Azure CSV, BurstGPT CSV, Mooncake JSONL).")
CONFIG = typer.Option(None, "--config", help="PlanConfig JSON file (partial is fine).")
SET = typer.Option([], "--set", help="Override a config key, e.g. scaling.max_replicas=8.")
WORKLOAD = typer.Option(
    "chat", "--workload", "-w", help=f"Synthetic workload without a trace: {', '.join(WORKLOADS)}."
)
PREFIX_SHARE = typer.Option(
    None,
    "--prefix-share",
    help="Fraction of each prompt shared with its group (0..1; prefix-share's default: 0.5).",
)
NUM_REQUESTS = typer.Option(1000, "--num-requests", "-n", help="Synthetic requests.")
RATE = typer.Option(5.0, "--rate", help="Synthetic arrivals per second (Poisson).")
SEED = typer.Option(0, "--seed", help="Seed of the synthetic workload.")
LIMIT = typer.Option(None, "--limit", help="Read at most N trace requests.")
SPEEDUP = typer.Option(1.0, "--speedup", help="Replay the trace N times faster.")
BACKEND = typer.Option("process", "--backend", help="serial, process or ray.")
WORKERS = typer.Option(None, "--workers", help="Parallel processes (default: cores).")
HTML = typer.Option(None, "--html", help="Write an HTML report here.")


def workload_options(
    trace: Path | None,
    workload: str,
    num_requests: int,
    rate: float,
    seed: int,
    limit: int | None,
    speedup: float,
    prefix_share: float | None,
) -> WorkloadOptions:
    """The shared workload options as the library's checked value."""
    return WorkloadOptions(
        trace=None if trace is None else str(trace),
        workload=workload,
        num_requests=num_requests,
        rate_per_s=rate,
        seed=seed,
        limit=limit,
        speedup=speedup,
        prefix_share=prefix_share,
    )


def parallel_runs(backend: str, workers: int | None, *outputs: Path | None) -> Backend:
    """Check search's and sweep's backend, worker count and output folders, in that order,
    before any run starts; the backend as the library's value."""
    chosen = parse_backend(backend)
    check_output_folders(*outputs)
    # the library reads 0 as every core, which nobody typing 0 means
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers} (omit it to use every core)")
    return chosen

"""Parameter sweeps in parallel and the search for the least-energy configuration meeting an SLO.

Sweeps run serially, across local processes (concurrent.futures), or on Ray when it is installed.
Workloads travel to workers as small picklable recipes (``tokenwatt.plan.workloads``) that re-open
the trace or generator there.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

from tokenwatt.errors import ConfigError
from tokenwatt.plan.config import PlanConfig
from tokenwatt.plan.results import PlanResult
from tokenwatt.plan.simulator import simulate, simulate_columns
from tokenwatt.plan.workloads import ListWorkload, SyntheticWorkload, TraceWorkload, Workload
from tokenwatt.workload.types import Request

__all__ = [
    "BACKENDS",
    "Backend",
    "ListWorkload",
    "SearchResult",
    "SyntheticWorkload",
    "TraceWorkload",
    "Workload",
    "parse_backend",
    "run_workload",
    "search_min_energy",
    "sweep",
]

log = logging.getLogger(__name__)

Backend = Literal["serial", "process", "ray"]
"""Where sweep runs go: this process, local worker processes, or a Ray cluster."""

BACKENDS: tuple[str, ...] = get_args(Backend)
"""Every ``Backend``, in the order messages list them."""


def parse_backend(name: str) -> Backend:
    """``name`` as a Backend; an unknown one is a ConfigError listing the choices."""
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r}; use serial, process or ray")
    return cast(Backend, name)


def run_workload(config: PlanConfig, workload: Iterable[Request]) -> PlanResult:
    """Simulate ``workload``, reading traces as columns where nothing is lost by it."""
    if isinstance(workload, TraceWorkload) and workload.use_columns():
        return simulate_columns(config, workload.reader().columns())
    return simulate(config, workload)


def _run_one(config: PlanConfig, workload: Iterable[Request]) -> PlanResult:
    return run_workload(config, workload)


def sweep(
    base: PlanConfig,
    variants: Sequence[dict[str, Any]],
    workload: Workload,
    backend: Backend = "process",
    workers: int | None = None,
) -> list[PlanResult]:
    """Simulate ``base.replace(**v)`` for every v in ``variants``; results in the same order."""
    configs = [base.replace(**v) for v in variants]
    if not configs:
        return []
    if backend == "serial" or (backend == "process" and (workers == 1 or len(configs) == 1)):
        return [_run_one(c, workload) for c in configs]
    if backend == "process":
        n = min(len(configs), workers or os.cpu_count() or 1)
        with ProcessPoolExecutor(max_workers=n) as pool:
            return list(pool.map(_run_one, configs, [workload] * len(configs)))
    if backend == "ray":
        return _sweep_ray(configs, workload)
    raise ConfigError(f"unknown sweep backend {backend!r}; use serial, process or ray")


def _sweep_ray(configs: Sequence[PlanConfig], workload: Workload) -> list[PlanResult]:
    """Run on Ray (an existing distributed engine); ``ray.init()`` joins or starts a cluster."""
    try:
        ray: Any = importlib.import_module("ray")
    except ImportError:
        raise ConfigError(
            "the ray backend needs Ray (pip install ray); use --backend process instead"
        ) from None
    if not ray.is_initialized():
        ray.init()
    remote = ray.remote(_run_one)
    shared = ray.put(workload)  # stored once in the object store, not shipped with every task
    return list(ray.get([remote.remote(c, shared) for c in configs]))


@dataclass(frozen=True)
class SearchResult:
    """The outcome of ``search_min_energy``."""

    param: str = ""
    """The config key searched (dotted, e.g. ``autoscaler_params.replicas``)."""
    values: tuple[Any, ...] = ()
    """The values tried, in order."""
    target_attainment: float = 0.99
    """The SLO attainment a candidate had to reach."""
    results: tuple[PlanResult, ...] = ()
    """One result per value."""
    best_index: int | None = None
    """Index of the least-energy result meeting the target; None if none did."""

    @property
    def best(self) -> PlanResult | None:
        """The least-energy result meeting the target, or None."""
        return None if self.best_index is None else self.results[self.best_index]


def search_min_energy(
    base: PlanConfig,
    param: str,
    values: Sequence[Any],
    workload: Workload,
    target_attainment: float = 0.99,
    backend: Backend = "process",
    workers: int | None = None,
) -> SearchResult:
    """Try every value of ``param``; the best meets ``target_attainment`` with the least energy."""
    if not 0 < target_attainment <= 1:
        raise ConfigError(f"target attainment must be in (0, 1], got {target_attainment}")
    if not values:
        raise ConfigError(f"give at least one value to try for {param}")
    results = sweep(base, [{param: v} for v in values], workload, backend, workers)
    best: int | None = None
    for i, r in enumerate(results):
        if r.slo_attainment >= target_attainment and (
            best is None or r.energy_j < results[best].energy_j
        ):
            best = i
    return SearchResult(param, tuple(values), target_attainment, tuple(results), best)

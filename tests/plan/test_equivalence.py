"""Fast mode equals step mode over seeded random configurations (a property check)."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest

from tokenwatt.plan.config import (
    PlanConfig,
    ReplicaConfig,
    ScalingConfig,
    TierSpec,
    WarehouseConfig,
)
from tokenwatt.plan.simulator import Simulation, simulate
from tokenwatt.workload.types import Request

from .conftest import poisson_requests
from .test_simulator import _same

_OVERHEADS: list[dict[str, Any]] = [
    {},
    {"request_overhead_s": 0.01},
    {"request_overhead_quantiles_s": (0.001, 0.004, 0.05, 0.4)},
]
"""None, a constant, and a long-tailed distribution (draws that reorder close arrivals)."""


def _case(k: int) -> tuple[PlanConfig, list[Request]]:
    rng = random.Random(k)
    auto = rng.choice(["static", "concurrency", "queue_kv", "predictive"])
    tiers = (TierSpec("dram", rng.choice([1e8, 1e10]), 25e9),) if rng.random() < 0.5 else ()
    cfg = PlanConfig(
        router=rng.choice(["round_robin", "least_outstanding", "prefix_aware"]),
        autoscaler=auto,  # type: ignore[arg-type]
        autoscaler_params={"replicas": rng.randint(0, 3)} if auto == "static" else {},
        scaling=ScalingConfig(
            min_replicas=rng.randint(0, 1),
            max_replicas=rng.randint(1, 5),
            scale_down_delay_s=rng.choice([0, 10, 60]),
            scale_up_delay_s=rng.choice([0, 4]),
            cold_start_s=rng.choice([0, 3, 20]),
            cold_start_jitter_s=rng.choice([0, 5]),
        ),
        replica=ReplicaConfig(
            max_batch=rng.choice([1, 4, 32]),
            kv_capacity_tokens=rng.choice([5000, 50000]),
            max_prefill_tokens=rng.choice([256, 2048]),
            chunked_prefill=rng.random() < 0.5,
            prefix_cache_tokens=rng.choice([0, 200, None]),
            **rng.choice(_OVERHEADS),
        ),
        warehouse=WarehouseConfig(tiers),
        drop_after_s=rng.choice([None, 5.0, 60.0]),
        seed=k,
    )
    reqs = poisson_requests(
        rng.randint(20, 150),
        rng.choice([1.0, 5.0, 30.0]),
        seed=k,
        input_tokens=(1, 4000),
        output_tokens=(1, 500),
        blocks=rng.choice([0, 2, 5]),
    )
    return cfg, reqs


@pytest.mark.parametrize("k", range(16))
def test_random_configuration_fast_equals_step(k: int) -> None:
    """Seeded random routers, autoscalers, limits, warehouses and chunking: same results."""
    cfg, reqs = _case(k)
    _same(simulate(cfg, reqs).to_dict(), simulate(cfg.replace(mode="step"), reqs).to_dict())


@pytest.mark.parametrize("k", range(16))
def test_random_configuration_conserves_energy(k: int) -> None:
    """Over the same random cases, energy equals the integral of each replica's power steps."""
    cfg, reqs = _case(k)
    sim = Simulation(cfg, record_power=True)
    res = sim.run(reqs)
    integral = 0.0
    for r in sim.fleet.replicas:
        log = r.power_log
        for (t0, p), (t1, _) in itertools.pairwise(log):
            integral += p * (t1 - t0)
        if log:
            integral += log[-1][1] * max(0.0, res.duration_s - log[-1][0])
    assert integral == pytest.approx(res.energy_j, rel=1e-9, abs=1e-9)
    assert res.completed + sum(res.dropped.values()) == res.arrived == len(reqs)


@pytest.mark.parametrize("chunked", [False, True])
def test_overhead_distribution_fast_equals_step(chunked: bool) -> None:
    """Per-request overheads drawn from a long-tailed distribution give the same results in
    fast and step mode (the draw hangs on the request id, not on event order)."""
    cfg = PlanConfig(
        autoscaler="concurrency",
        scaling=ScalingConfig(max_replicas=3, cold_start_s=2.0),
        replica=ReplicaConfig(
            max_batch=8,
            kv_capacity_tokens=20000,
            max_prefill_tokens=512,
            chunked_prefill=chunked,
            request_overhead_quantiles_s=(0.002, 0.005, 0.01, 0.3),
        ),
        seed=4,
    )
    reqs = poisson_requests(200, 8.0, seed=2, input_tokens=(10, 1500), output_tokens=(1, 200))
    fast, step = simulate(cfg, reqs).to_dict(), simulate(cfg.replace(mode="step"), reqs).to_dict()
    _same(fast, step)
    constant = simulate(cfg.replace(**{"replica.request_overhead_quantiles_s": [0.079]}), reqs)
    assert fast["latency_s"]["ttft_p99"] != constant.latency_s["ttft_p99"]

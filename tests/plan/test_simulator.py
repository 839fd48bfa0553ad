"""The event loop end to end: hand-computed cases, conservation, determinism, bad input."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest

from tokenwatt.errors import ConfigError, TraceError
from tokenwatt.plan.config import (
    PlanConfig,
    ReplicaConfig,
    ScalingConfig,
    TierSpec,
    WarehouseConfig,
)
from tokenwatt.plan.ingress import IngressDelay
from tokenwatt.plan.simulator import Simulation, simulate
from tokenwatt.workload import open_trace
from tokenwatt.workload.types import Request

from .conftest import FLAT_POWER, ConstantModel, poisson_requests


def _one_replica(**changes: object) -> PlanConfig:
    base = PlanConfig(autoscaler="static", autoscaler_params={"replicas": 1})
    return base.replace(**changes) if changes else base


def test_single_request_hand_computed(constant_model: ConstantModel) -> None:
    """Prefill 1 s at 400 W then 10 decode steps of 0.1 s at 200 W: 600 J, TTFT 1 s, e2e 2 s."""
    res = simulate(_one_replica(), [Request("a", 0.0, 100, 11)], constant_model, FLAT_POWER)
    assert res.completed == 1
    assert res.energy_split_j["prefill"] == pytest.approx(400.0)
    assert res.energy_split_j["decode"] == pytest.approx(200.0)
    assert res.energy_j == pytest.approx(600.0)
    assert res.latency_s["ttft_mean"] == pytest.approx(1.0)
    assert res.latency_s["e2e_mean"] == pytest.approx(2.0)
    assert res.latency_s["tpot_mean"] == pytest.approx(0.1)


def test_request_overhead_adds_to_ttft(constant_model: ConstantModel) -> None:
    """A per-request serving overhead delays scheduling and counts in TTFT and e2e."""
    cfg = _one_replica(**{"replica.request_overhead_s": 0.25})
    res = simulate(cfg, [Request("a", 0.0, 100, 11)], constant_model, FLAT_POWER)
    assert res.latency_s["ttft_mean"] == pytest.approx(1.25)
    assert res.latency_s["e2e_mean"] == pytest.approx(2.25)


def test_token_overhead_stretches_every_iteration(constant_model: ConstantModel) -> None:
    """A per-token serving cost adds batch x cost to each iteration (1 token per prefill)."""
    cfg = _one_replica(**{"replica.token_overhead_s": 0.05})
    res = simulate(cfg, [Request("a", 0.0, 100, 11)], constant_model, FLAT_POWER)
    assert res.latency_s["ttft_mean"] == pytest.approx(1.05)
    assert res.latency_s["e2e_mean"] == pytest.approx(1.05 + 10 * 0.15)


def test_arrival_during_prefill_waits_for_next_iteration(constant_model: ConstantModel) -> None:
    """A request arriving mid-prefill is prefilled at the next boundary, then both decode."""
    reqs = [Request("a", 0.0, 100, 11), Request("b", 0.5, 100, 11)]
    res = simulate(_one_replica(), reqs, constant_model, FLAT_POWER)
    # a: prefill [0,1]; b: prefill [1,2]; both decode 10 steps together [2,3]
    assert res.latency_s["ttft_mean"] == pytest.approx((1.0 + 1.5) / 2)
    assert res.duration_s == pytest.approx(4.0)  # last tick at 4 s sees nothing outstanding
    assert res.energy_split_j["prefill"] == pytest.approx(800.0)
    assert res.energy_split_j["decode"] == pytest.approx(200.0)
    assert res.energy_split_j["idle"] == pytest.approx(100.0)  # idle [3, 4] at 100 W


def test_chunked_prefill_shares_iterations_with_decodes(constant_model: ConstantModel) -> None:
    """With chunked prefill a long prompt is cut by the token budget and the running request
    keeps decoding beside it; each fused iteration takes the prefill time (1 s here)."""
    cfg = _one_replica(**{"replica.chunked_prefill": True, "replica.max_prefill_tokens": 100})
    reqs = [Request("a", 0.0, 50, 4), Request("b", 0.5, 250, 1)]
    res = simulate(cfg, reqs, constant_model, FLAT_POWER)
    # [0,1] a's prompt; [1,2] a decodes + b 99 tokens; [2,3] a decodes + 99; [3,4] a's last
    # decode + b's final 52 tokens: a done at 4, b's first (only) token at 4
    assert res.completed == 2
    assert res.latency_s["e2e_mean"] == pytest.approx((4.0 + 3.5) / 2)
    assert res.prefill_tokens == 300
    assert res.energy_split_j["prefill"] == pytest.approx(4 * 400.0)


def test_energy_equals_integrated_power() -> None:
    """Each replica's energy equals the integral of its recorded power steps."""
    cfg = PlanConfig(autoscaler="concurrency", scaling=ScalingConfig(max_replicas=4))
    sim = Simulation(cfg, record_power=True)
    res = sim.run(poisson_requests(400, 8.0, seed=3, input_tokens=(50, 3000)))
    integral = 0.0
    for r in sim.fleet.replicas:
        log = r.power_log
        for (t0, p), (t1, _) in itertools.pairwise(log):
            integral += p * (t1 - t0)
        integral += log[-1][1] * max(0.0, res.duration_s - log[-1][0])
    assert integral == pytest.approx(res.energy_j, rel=1e-9)
    assert sum(res.energy_split_j.values()) == pytest.approx(res.energy_j, rel=1e-12)
    assert sum(res.timeline["energy_j"]) == pytest.approx(res.energy_j, rel=1e-9)


def test_every_request_completes_or_is_dropped() -> None:
    """Arrived = completed + dropped, with the too-large request dropped by reason."""
    reqs = poisson_requests(200, 20.0, seed=1)
    reqs.append(Request("huge", reqs[-1].arrival_s + 1, 5000, 10))
    cfg = _one_replica(**{"replica.kv_capacity_tokens": 2000})
    res = simulate(cfg, reqs)
    assert res.arrived == 201
    assert res.completed == 200
    assert res.dropped == {"exceeds_kv_capacity": 1}


def test_queue_timeout_drops(constant_model: ConstantModel) -> None:
    """With drop_after_s, a request that waited longer than that is dropped, not served."""
    reqs = [Request(f"r{i}", 0.0, 10, 1) for i in range(5)]
    cfg = _one_replica(drop_after_s=2.5, **{"replica.max_batch": 1})
    res = simulate(cfg, reqs, constant_model, FLAT_POWER)
    # served one per second: r0..r2 start at 0, 1, 2 s; r3 would start at 3 s > 2.5 s
    assert res.completed == 3
    assert res.dropped == {"queue_timeout": 2}


def test_deterministic_for_equal_inputs() -> None:
    """Two runs of the same config and workload give identical results (bar wall time)."""
    cfg = PlanConfig(autoscaler="predictive", router="round_robin", seed=7)
    reqs = poisson_requests(300, 5.0, seed=11, input_tokens=(10, 4000), output_tokens=(1, 300))
    a, b = simulate(cfg, reqs).to_dict(), simulate(cfg, reqs).to_dict()
    a.pop("sim")
    b.pop("sim")
    assert a == b


def test_seed_drives_cold_start_jitter() -> None:
    """With cold-start jitter, equal seeds give equal results and another seed differs."""
    cfg = PlanConfig(
        autoscaler="concurrency",
        scaling=ScalingConfig(max_replicas=6, cold_start_s=10.0, cold_start_jitter_s=20.0),
    )
    reqs = poisson_requests(400, 20.0, seed=3, output_tokens=(1, 200))
    a, b = simulate(cfg, reqs), simulate(cfg, reqs)
    c = simulate(cfg.replace(seed=1), reqs)
    assert a.latency_s == b.latency_s and a.energy_j == b.energy_j
    assert c.energy_j != a.energy_j


def _same(a: dict[str, object], b: dict[str, object]) -> None:
    for key in ("arrived", "completed", "dropped", "prefill_tokens", "output_tokens"):
        assert a[key] == b[key], key
    for key in ("energy_j", "duration_s", "slo_attainment", "accelerator_hours"):
        assert a[key] == pytest.approx(b[key], rel=1e-9), key
    for group in ("energy_split_j", "latency_s"):
        ga, gb = a[group], b[group]
        assert isinstance(ga, dict) and isinstance(gb, dict)
        for k in ga:
            assert ga[k] == pytest.approx(gb[k], rel=1e-9, abs=1e-9), f"{group}.{k}"


@pytest.mark.parametrize(
    ("router", "autoscaler", "warehouse", "chunked"),
    [
        ("least_outstanding", "static", False, False),
        ("round_robin", "concurrency", False, False),
        ("prefix_aware", "queue_kv", True, False),
        ("least_outstanding", "predictive", False, False),
        ("prefix_aware", "concurrency", True, False),
        ("least_outstanding", "concurrency", False, True),
        ("prefix_aware", "queue_kv", True, True),
    ],
)
def test_fast_mode_matches_step_mode(
    router: str, autoscaler: str, warehouse: bool, chunked: bool
) -> None:
    """Jumping over decode iterations gives the results of one event per iteration."""
    reqs = poisson_requests(
        300, 6.0, seed=5, input_tokens=(20, 3000), output_tokens=(1, 400), blocks=3
    )
    tiers = (TierSpec("dram", 1e9, 25e9), TierSpec("disk", 1e10, 2e9)) if warehouse else ()
    base = PlanConfig(
        router=router,  # type: ignore[arg-type]
        autoscaler=autoscaler,  # type: ignore[arg-type]
        scaling=ScalingConfig(
            max_replicas=4, scale_down_delay_s=20, cold_start_s=5, cold_start_jitter_s=3
        ),
        replica=ReplicaConfig(
            max_batch=16,
            kv_capacity_tokens=20000,
            prefix_cache_tokens=256,
            max_prefill_tokens=1024,
            chunked_prefill=chunked,
        ),
        warehouse=WarehouseConfig(tiers),
        drop_after_s=30.0,
    )
    fast = simulate(base, reqs).to_dict()
    step = simulate(base.replace(mode="step"), reqs).to_dict()
    _same(fast, step)
    assert fast["sim"]["iterations"] < step["sim"]["iterations"]
    if warehouse:
        assert fast["energy_split_j"]["load"] > 0


def test_static_fleet_has_no_cold_start_energy() -> None:
    """A fleet that never scales spends nothing on cold starts."""
    cfg = PlanConfig(autoscaler="static", autoscaler_params={"replicas": 3})
    res = simulate(cfg, poisson_requests(300, 10.0, seed=2))
    assert res.energy_split_j["cold_start"] == 0.0
    assert res.peak_replicas == 3


def test_scale_from_zero_pays_cold_start(constant_model: ConstantModel) -> None:
    """From zero replicas, the first request waits for a cold start that costs its energy."""
    cfg = PlanConfig(
        autoscaler="concurrency",
        scaling=ScalingConfig(min_replicas=0, max_replicas=2, cold_start_s=10.0, tick_s=2.0),
    )
    res = simulate(cfg, [Request("a", 0.0, 100, 1)], constant_model, FLAT_POWER)
    # tick at 2 s starts one replica, ready at 12 s; prefill [12, 13]
    assert res.completed == 1
    assert res.latency_s["ttft_mean"] == pytest.approx(13.0)
    assert res.energy_split_j["cold_start"] == pytest.approx(50.0 * 10.0)


def test_md1_mean_wait_matches_theory() -> None:
    """One replica, batch 1, constant 1 s service, Poisson at rho=0.5: Wq = rho/(2 mu (1-rho)).

    Theory gives 0.5 s. Over seeds 0-19 of 20,000 requests each, the estimate's standard
    deviation was 0.012 s (2.5%; mean 0.506 s), so 8% is over 3 standard deviations.
    """
    cfg = _one_replica(**{"replica.max_batch": 1})
    rho, mu = 0.5, 1.0
    reqs = poisson_requests(20_000, rho * mu, seed=42, output_tokens=1)
    res = simulate(cfg, reqs, ConstantModel(prefill_step_s=1.0 / mu), FLAT_POWER)
    mean_wait = res.latency_s["ttft_mean"] - 1.0 / mu
    assert mean_wait == pytest.approx(rho / (2 * mu * (1 - rho)), rel=0.08)


def test_unsorted_trace_is_a_clear_error() -> None:
    """Arrivals that go back in time raise TraceError naming the request."""
    reqs = [Request("a", 5.0, 10, 1), Request("b", 1.0, 10, 1)]
    with pytest.raises(TraceError, match=r"request b arrives at 1\.0 s"):
        simulate(PlanConfig(), reqs)


def test_empty_workload_is_a_clear_error() -> None:
    """No requests at all raises TraceError."""
    with pytest.raises(TraceError, match="no requests"):
        simulate(PlanConfig(), [])


def test_malformed_trace_file_is_a_clear_error(tmp_path: Path) -> None:
    """A trace file with no valid rows raises TraceError from the reader."""
    bad = tmp_path / "bad.csv"
    bad.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\nnot-a-time,x,y\n")
    with pytest.raises(TraceError):
        simulate(PlanConfig(), open_trace(bad))


def test_unknown_preset_is_a_clear_error() -> None:
    """An unknown accelerator names the choices."""
    with pytest.raises(ConfigError, match="unknown accelerator preset 'B300'"):
        Simulation(PlanConfig(accelerator="B300"))


def test_simulation_runs_once() -> None:
    """A second run of one Simulation is refused."""
    sim = Simulation(PlanConfig())
    sim.run([Request("a", 0.0, 10, 1)])
    with pytest.raises(ConfigError, match="runs once"):
        sim.run([Request("a", 0.0, 10, 1)])


def test_azure_trace_slice(shared_traces: Path) -> None:
    """A slice of the Azure 2023 conversation trace runs on the default fleet within the SLO."""
    from tokenwatt.workload import TraceOptions

    trace = open_trace(shared_traces / "azure_llm_2023_conv.csv", options=TraceOptions(limit=500))
    res = simulate(PlanConfig(autoscaler="static", autoscaler_params={"replicas": 2}), trace)
    assert res.completed == 500
    assert math.isfinite(res.output_tokens_per_j) and res.output_tokens_per_j > 0


def test_fleet_at_zero_that_never_scales_drops_with_reason() -> None:
    """A static fleet of zero serves nothing: requests are dropped as no_capacity, no hang."""
    cfg = PlanConfig(autoscaler="static", autoscaler_params={"replicas": 0})
    res = simulate(cfg, [Request("a", 0.0, 10, 1), Request("b", 1.0, 10, 1)])
    assert res.dropped == {"no_capacity": 2}
    assert res.energy_j == 0.0


def test_autoscaler_scales_down_after_a_burst(constant_model: ConstantModel) -> None:
    """A burst scales the fleet up; the quiet after it brings it back down after the delay."""
    burst = [Request(f"b{i}", 0.1 * i, 10, 50) for i in range(200)]
    tail = [Request(f"t{i}", 100.0 + 10.0 * i, 10, 5) for i in range(20)]
    cfg = PlanConfig(
        autoscaler="concurrency",
        scaling=ScalingConfig(max_replicas=6, scale_down_delay_s=20.0, cold_start_s=5.0),
    )
    res = simulate(cfg, burst + tail, constant_model, FLAT_POWER)
    replicas = res.timeline["replicas"]
    assert res.peak_replicas == 6
    assert replicas[-1] == 1.0
    assert res.energy_split_j["cold_start"] == pytest.approx(5 * 50.0 * 5.0)


def _ids_with_delay(delay: IngressDelay, value: float, count: int) -> list[str]:
    """The first ``count`` ids ``x0, x1, ...`` that draw ``value``."""
    ids = (f"x{i}" for i in itertools.count())
    return list(itertools.islice((r for r in ids if delay.delay_s(r) == value), count))


def test_overhead_distribution_known_answer(constant_model: ConstantModel) -> None:
    """Two equally likely overheads, 0.25 s and 0.75 s: requests far apart each see TTFT
    1 s of prefill plus its own draw, and both draws occur."""
    cfg = _one_replica(**{"replica.request_overhead_quantiles_s": [0.25, 0.75]})
    delay = IngressDelay((0.25, 0.75), seed=0)
    ids = _ids_with_delay(delay, 0.25, 3) + _ids_with_delay(delay, 0.75, 1)
    reqs = [Request(rid, 10.0 * i, 100, 1) for i, rid in enumerate(ids)]
    sim = Simulation(cfg, execution=constant_model, power=FLAT_POWER)
    res = sim.run(reqs)
    ttft = sim.metrics.ttft
    assert (ttft.min, ttft.max) == pytest.approx((1.25, 1.75))
    assert res.latency_s["ttft_mean"] == pytest.approx((3 * 1.25 + 1.75) / 4)


def test_overhead_can_reorder_requests(constant_model: ConstantModel) -> None:
    """A later request with a shorter overhead reaches the replica first: a (t=0, 0.75 s) waits
    behind b (t=0.1, 0.25 s) whose prefill runs [0.35, 1.35]; a's runs [1.35, 2.35]."""
    cfg = _one_replica(**{"replica.request_overhead_quantiles_s": [0.25, 0.75]})
    delay = IngressDelay((0.25, 0.75), seed=0)
    slow, fast = _ids_with_delay(delay, 0.75, 1)[0], _ids_with_delay(delay, 0.25, 1)[0]
    reqs = [Request(slow, 0.0, 100, 1), Request(fast, 0.1, 100, 1)]
    sim = Simulation(cfg, execution=constant_model, power=FLAT_POWER)
    res = sim.run(reqs)
    assert (sim.metrics.ttft.min, sim.metrics.ttft.max) == pytest.approx((1.25, 2.35))
    assert res.completed == 2


def test_overhead_from_the_profile_by_default(
    constant_model: ConstantModel, tmp_path: Path
) -> None:
    """With request_overhead_s unset, a profile's measured overheads apply; 0 overrides them."""
    path = tmp_path / "p.json"
    serving = {"request_s": 0.4, "token_s": 0.0, "request_quantiles_s": [0.5]}
    path.write_text(json.dumps({"prefill": [[1, 0.1]], "decode": [[1, 0.1]], "serving": serving}))
    cfg = _one_replica(profile_path=str(path))
    res = simulate(cfg, [Request("a", 0.0, 100, 1)], constant_model, FLAT_POWER)
    assert res.latency_s["ttft_mean"] == pytest.approx(1.5)
    off = cfg.replace(**{"replica.request_overhead_s": 0.0})
    res = simulate(off, [Request("a", 0.0, 100, 1)], constant_model, FLAT_POWER)
    assert res.latency_s["ttft_mean"] == pytest.approx(1.0)


def test_overhead_keeps_ticking_for_requests_in_flight(constant_model: ConstantModel) -> None:
    """A fleet scaled from zero still serves a request whose overhead outlasts the trace."""
    cfg = PlanConfig(
        autoscaler="concurrency",
        scaling=ScalingConfig(min_replicas=0, max_replicas=1, cold_start_s=1.0, tick_s=1.0),
        replica=ReplicaConfig(request_overhead_s=5.0),
    )
    res = simulate(cfg, [Request("a", 0.0, 100, 1)], constant_model, FLAT_POWER)
    assert res.completed == 1
    assert res.dropped == {}


@pytest.mark.parametrize("mode", ["fast", "step"])
def test_decodes_filling_the_budget_hold_back_prompts(
    constant_model: ConstantModel, mode: str
) -> None:
    """As in the engine, decodes take the step budget first: with a budget of 2 tokens and two
    requests decoding, c's prompt waits until one finishes (no prompt token is squeezed in).
    a: prompt [0, 1]; b (queued behind a): 1-token prompt fused with a's decode [1, 2]; at 2 s
    a and b fill the budget, so c (arrived 0.5 s) waits while they decode [2, 2.2] (a done);
    c's prompt fused with b's last decode [2.2, 3.2]; c's decode [3.2, 3.3]."""
    cfg = _one_replica(
        mode=mode,
        **{"replica.chunked_prefill": True, "replica.max_prefill_tokens": 2},
    )
    reqs = [Request("a", 0.0, 1, 4), Request("b", 0.0, 1, 4), Request("c", 0.5, 1, 2)]
    sim = Simulation(cfg, execution=constant_model, power=FLAT_POWER)
    res = sim.run(reqs)
    assert res.completed == 3
    assert res.latency_s["ttft_mean"] == pytest.approx((1.0 + 2.0 + 2.7) / 3)
    assert (sim.metrics.ttft.min, sim.metrics.ttft.max) == pytest.approx((1.0, 2.7))
    assert res.latency_s["e2e_mean"] == pytest.approx((2.2 + 3.2 + 2.8) / 3)
    assert res.energy_split_j["prefill"] == pytest.approx(3 * 400.0)

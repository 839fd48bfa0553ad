"""Sweeps and the least-energy search."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenwatt.errors import ConfigError
from tokenwatt.plan.config import PlanConfig
from tokenwatt.plan.results import PlanResult
from tokenwatt.plan.search import (
    BACKENDS,
    ListWorkload,
    SyntheticWorkload,
    TraceWorkload,
    parse_backend,
    search_min_energy,
    sweep,
)

from .conftest import poisson_requests


def _workload() -> ListWorkload:
    return ListWorkload(
        tuple(
            poisson_requests(300, 40.0, seed=4, input_tokens=(100, 2000), output_tokens=(50, 400))
        )
    )


def test_sweep_in_processes_matches_serial() -> None:
    """Two worker processes give the results of running the variants one after another."""
    base = PlanConfig(autoscaler="static")
    variants = [{"autoscaler_params.replicas": n} for n in (1, 2)]
    serial = sweep(base, variants, _workload(), backend="serial")
    parallel = sweep(base, variants, _workload(), backend="process", workers=2)
    assert [r.energy_j for r in parallel] == [r.energy_j for r in serial]


def test_search_picks_least_energy_meeting_target() -> None:
    """Among fleet sizes meeting the target, the cheapest in energy wins; too small ones fail."""
    base = PlanConfig(autoscaler="static").replace(**{"slo.ttft_s": 0.5})
    found = search_min_energy(
        base, "autoscaler_params.replicas", [1, 2, 4, 8], _workload(), 0.95, backend="serial"
    )
    assert found.best is not None and found.best_index is not None
    meeting = [r for r in found.results if r.slo_attainment >= 0.95]
    assert found.best.energy_j == min(r.energy_j for r in meeting)
    assert found.results[0].slo_attainment < 0.95  # one replica cannot keep up at 40 req/s
    assert found.best_index == 1  # two replicas suffice; more only add idle energy


def test_search_reports_none_when_unreachable() -> None:
    """An impossible target leaves no best result."""
    base = PlanConfig(autoscaler="static").replace(**{"slo.ttft_s": 1e-6})
    found = search_min_energy(base, "autoscaler_params.replicas", [1], _workload(), 0.99, "serial")
    assert found.best is None


def test_ray_backend_without_ray_is_a_clear_error() -> None:
    """The Ray seam says how to install Ray when it is missing."""
    try:
        import ray  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="pip install ray"):
            sweep(PlanConfig(), [{}, {"seed": 1}], _workload(), backend="ray")
    else:
        pytest.skip("ray is installed")


def test_ray_backend_matches_serial_on_a_local_cluster() -> None:
    """With Ray installed, a sweep on a local two-CPU Ray cluster equals the serial sweep.

    Ray is not in the dev extras (a large install CI does not need); this runs where it is.
    """
    ray = pytest.importorskip("ray")
    base = PlanConfig(autoscaler="static")
    variants = [{"autoscaler_params.replicas": n} for n in (1, 2, 3)]
    serial = sweep(base, variants, _workload(), backend="serial")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = sweep(base, variants, _workload(), backend="ray")
    finally:
        ray.shutdown()

    def simulated(result: PlanResult) -> dict[str, object]:
        out = result.to_dict()
        out["sim"] = {k: v for k, v in out["sim"].items() if k not in ("wall_s", "requests_per_s")}
        return out  # everything but how long the simulation took

    assert [simulated(r) for r in on_ray] == [simulated(r) for r in serial]


def test_synthetic_workload_reopens_identically() -> None:
    """A synthetic workload recipe yields the same requests each time it is iterated."""
    wl = SyntheticWorkload("chat", (("num_requests", 20), ("seed", 3)))
    assert list(wl) == list(wl)


def test_search_rejects_bad_target() -> None:
    """A target outside (0, 1] is refused."""
    with pytest.raises(ConfigError, match="target attainment"):
        search_min_energy(PlanConfig(), "seed", [1], _workload(), 1.5)


def test_columnar_trace_path_matches_requests(shared_traces: Path) -> None:
    """Simulating numpy columns gives the result of simulating Request objects."""
    from tokenwatt.plan.simulator import simulate, simulate_columns
    from tokenwatt.workload import TraceOptions, open_trace

    path = shared_traces / "azure_llm_2023_conv.csv"
    opts = TraceOptions(limit=800)
    cfg = PlanConfig(autoscaler="concurrency")
    a = simulate(cfg, open_trace(path, options=opts)).to_dict()
    b = simulate_columns(cfg, open_trace(path, options=opts).columns(chunk_rows=100)).to_dict()
    a.pop("sim")
    b.pop("sim")
    assert a == b


def test_trace_workload_reads_columns_unless_blocks_matter(shared_traces: Path) -> None:
    """Azure traces take the columnar path; Mooncake (block ids) keeps Request objects."""
    assert TraceWorkload(str(shared_traces / "azure_llm_2023_code.csv")).use_columns()
    assert not TraceWorkload(str(shared_traces / "mooncake_synthetic.jsonl")).use_columns()


def test_parse_backend_accepts_the_three_and_names_the_rest() -> None:
    """serial, process and ray pass through; anything else lists them."""
    assert [parse_backend(b) for b in BACKENDS] == ["serial", "process", "ray"]
    with pytest.raises(ConfigError) as err:
        parse_backend("threads")
    assert str(err.value) == "unknown backend 'threads'; use serial, process or ray"

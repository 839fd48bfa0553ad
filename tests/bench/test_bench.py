"""A run from one BenchConfig against the faulty server, and the request count a run plans."""

from __future__ import annotations

import pytest

from tests.bench.conftest import StartServer
from tokenwatt.bench.bench import planned_requests, run_configured
from tokenwatt.bench.client import ClientConfig
from tokenwatt.bench.config import BenchConfig
from tokenwatt.bench.load import ClosedLoop
from tokenwatt.bench.record import RequestRecord
from tokenwatt.bench.runner import RunLimits
from tokenwatt.bench.workloads import WorkloadOptions, build_workload
from tokenwatt.workload.types import Request


@pytest.mark.parametrize(
    ("limits", "length", "planned"),
    [
        (RunLimits(max_requests=10, warmup_requests=2), 12, 12),
        (RunLimits(max_requests=10), 4, 4),
        (RunLimits(), 7, 7),
        (RunLimits(warmup_requests=1), 2, 2),
        (RunLimits(max_requests=10, warmup_requests=2), None, 12),
        (RunLimits(), None, None),
    ],
)
def test_planned_requests_is_the_cap_at_most_the_workload(
    limits: RunLimits, length: int | None, planned: int | None
) -> None:
    """Measured cap plus warm-up, cut to a workload of known length; without a cap (agentic
    sessions) the whole workload, warm-up included; unknown: None."""
    requests = [Request(f"r{i}") for i in range(length or 0)]
    workload = requests if length is not None else iter(requests)
    assert planned_requests(limits, workload) == planned


async def test_run_configured_runs_and_records_the_config(start_server: StartServer) -> None:
    """3 measured chat requests after 1 warm-up, 2 at a time, no energy: 4 records, 3
    measured, each seen by on_record, and the result keeps the config's record."""
    server = await start_server(itl_s=0.001)
    config = BenchConfig.build(
        WorkloadOptions(num_requests=3, max_output_tokens=2),
        ClosedLoop(2),
        warmup_requests=1,
        client=ClientConfig(base_url=server.url, model="faulty"),
        energy="none",
    )
    seen: list[RequestRecord] = []
    result = await run_configured(config, build_workload(config.workload), seen.append)
    assert len(result.records) == len(seen) == 4
    assert result.summary["requests"] == 3
    assert result.summary["completed"] == 3
    assert result.energy is None
    assert result.config == config.record()
    assert result.config["shape"] == {"kind": "ClosedLoop", "concurrency": 2}

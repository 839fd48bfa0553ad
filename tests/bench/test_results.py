"""Results: a full run joined with energy, JSON round trip, per-request CSV, compare."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tokenwatt.bench.bench import run_bench
from tokenwatt.bench.client import FunctionClient
from tokenwatt.bench.energy_sources import MeterSource
from tokenwatt.bench.load import ClosedLoop
from tokenwatt.bench.record import Chunk, Done, RequestRecord, StreamEvent
from tokenwatt.bench.results import (
    BenchResult,
    compare,
    energy_alike,
    errors_by_kind,
    load_result,
)
from tokenwatt.bench.runner import LoadRunner, RunLimits
from tokenwatt.bench.slo import parse_slos
from tokenwatt.energy.facility import facility_preset
from tokenwatt.energy.replay import FixedPowerMeter
from tokenwatt.errors import ConfigError
from tokenwatt.workload.types import Request


async def _result() -> BenchResult:
    reqs = [Request(f"r{i}", output_tokens=3) for i in range(6)]
    runner = LoadRunner(
        FunctionClient.scripted(itl_s=0.002), reqs, ClosedLoop(2), RunLimits(warmup_requests=1)
    )
    return await run_bench(
        runner,
        parse_slos("ttft<=1s"),
        MeterSource([FixedPowerMeter({"node": 100.0})]),
        energy_interval_s=0.005,
        facility=facility_preset(),
        config={"workload": "test"},
    )


async def test_run_bench_joins_metrics_energy_and_facility() -> None:
    """A fake run gives 5 measured requests, 15 output tokens, and energy at 100 W with its
    source/scope and a facility figure of IT energy x PUE."""
    result = await _result()
    assert (result.summary["requests"], result.summary["output_tokens"]) == (5, 15)
    assert result.summary["slo_attainment"] == 1.0
    energy = result.energy
    assert energy is not None
    assert (energy["source"], energy["scope"]) == ("estimated:fixed-power", "node")
    whole = energy["whole_run"]
    assert whole["avg_power_w"] == pytest.approx(100.0, rel=1e-3)
    facility = energy["facility"]
    assert facility["facility_energy_j"] == pytest.approx(whole["energy_j"] * 1.56)
    assert len(result.records) == 6


async def test_result_round_trips_through_json(tmp_path: Path) -> None:
    """write() then load_result() gives back equal records, summary and energy."""
    result = await _result()
    paths = result.write(tmp_path)
    loaded = load_result(paths["json"])
    assert loaded.records == result.records
    assert loaded.summary == json.loads(json.dumps(result.summary))
    assert loaded.energy == json.loads(json.dumps(result.energy))
    assert loaded.versions["tokenwatt"] == result.versions["tokenwatt"]


def test_requests_csv_has_one_row_per_request_with_latencies(tmp_path: Path) -> None:
    """The CSV has a header and one row per record with TTFT and chunk times."""
    rec = RequestRecord("a", start_s=1.0, chunk_times_s=(1.5, 2.0), end_s=2.0, output_tokens=2)
    BenchResult(records=(rec,)).write(tmp_path)
    rows = list(csv.DictReader((tmp_path / "requests.csv").open()))
    assert len(rows) == 1
    assert (rows[0]["request_id"], rows[0]["ttft_s"], rows[0]["tpot_s"]) == ("a", "0.5", "0.5")
    assert rows[0]["chunk_times_s"] == "1.500000 2.000000"


def test_compare_gives_ratios_b_over_a() -> None:
    """Throughput 10 vs 20 req/s is a ratio of 2; figures missing in both are left out."""
    a = BenchResult(summary={"request_throughput_rps": 10.0, "ttft_s": {"p50": 0.2}})
    b = BenchResult(summary={"request_throughput_rps": 20.0, "ttft_s": {"p50": 0.1}})
    rows = {row.label: row for row in compare(a, b)}
    assert set(rows) == {"requests/s", "TTFT p50 (s)"}
    assert rows["requests/s"].ratio == 2.0
    assert rows["TTFT p50 (s)"].ratio == 0.5
    assert rows["TTFT p50 (s)"].higher_is_better is False


def test_load_result_rejects_other_json(tmp_path: Path) -> None:
    """A JSON file that is not a bench result is a ConfigError naming the expected format."""
    path = tmp_path / "x.json"
    path.write_text('{"a": 1}')
    with pytest.raises(ConfigError, match=r"tokenwatt\.bench/1"):
        load_result(path)
    with pytest.raises(ConfigError, match="not found"):
        load_result(tmp_path / "missing.json")


def test_load_result_accepts_the_run_folder(tmp_path: Path) -> None:
    """A run's output folder stands for the result.json in it."""
    BenchResult(summary={"completed": 3}).write(tmp_path / "run")
    assert load_result(tmp_path / "run").summary == {"completed": 3}


def test_load_result_names_a_folder_without_a_result(tmp_path: Path) -> None:
    """A folder with no result.json is named as such, not reported as a missing file."""
    with pytest.raises(ConfigError, match=r"has no result\.json"):
        load_result(tmp_path)


async def test_cancelled_run_returns_a_partial_result() -> None:
    """Cancelling run_bench mid-run (Ctrl-C) returns a result marked interrupted that keeps
    the finished requests and records the in-flight ones as 'cancelled'."""
    import asyncio

    reqs = [Request(f"r{i}", output_tokens=2) for i in range(1000)]
    runner = LoadRunner(FunctionClient.scripted(ttft_s=0.01), reqs, ClosedLoop(2))
    task = asyncio.ensure_future(run_bench(runner))
    while len(runner.records) < 4:
        await asyncio.sleep(0.005)
    task.cancel()
    result = await task
    assert result.interrupted is True
    kinds = {r.error for r in result.records}
    assert None in kinds and kinds <= {None, "cancelled"}
    assert 4 <= len(result.records) < 1000


def _energy_client(joules: dict[str, float]) -> FunctionClient:
    """A client whose usage states each request's joules as tokenwatt serve does."""

    async def fn(request: Request) -> AsyncIterator[StreamEvent]:
        yield Chunk(time.perf_counter(), "x")
        energy = {"energy_j": joules[request.request_id], "source": "nvml", "scope": "gpu"}
        yield Done(time.perf_counter(), {"completion_tokens": 1, "energy": energy})

    return FunctionClient(fn)


async def test_result_reports_endpoint_energy_per_request_and_session(tmp_path: Path) -> None:
    """Two sessions of turns (1, 3) and (2, 6) J: J/request p50 2.5, mean 3; J/session p50 6;
    labelled nvml/gpu; kept in the JSON and per request in the CSV; compared by compare()."""
    joules = {"a0": 1.0, "a1": 3.0, "b0": 2.0, "b1": 6.0}
    reqs = [Request(rid, session_id=rid[0], turn=int(rid[1])) for rid in joules]
    runner = LoadRunner(_energy_client(joules), reqs, ClosedLoop(2))
    result = await run_bench(runner)
    assert result.energy is None  # no sampled source: the endpoint's figures stand alone
    e = result.request_energy
    assert e is not None
    assert (e["source"], e["scope"], e["requests"], e["total_j"]) == ("nvml", "gpu", 4, 12.0)
    assert (e["j_per_request"]["p50"], e["j_per_request"]["mean"]) == (2.5, 3.0)
    assert (e["sessions"], e["j_per_session"]["p50"], e["j_per_session"]["mean"]) == (2, 6.0, 6.0)
    paths = result.write(tmp_path)
    assert load_result(paths["json"]).request_energy == json.loads(json.dumps(e))
    rows = {r["request_id"]: r for r in csv.DictReader(paths["csv"].open())}
    assert (rows["b1"]["endpoint_energy_j"], rows["b1"]["endpoint_energy_source"]) == (
        "6.0",
        "nvml",
    )
    labels = {row.label: row for row in compare(result, result)}
    assert labels["J/request p50 (endpoint usage)"].a == 2.5
    assert labels["J/session p50 (endpoint usage)"].ratio == 1.0


async def test_result_without_endpoint_energy_has_none() -> None:
    """An endpoint that reports no usage energy gives request_energy None, not zeros."""
    runner = LoadRunner(FunctionClient.scripted(), [Request("r0")], ClosedLoop(1))
    assert (await run_bench(runner)).request_energy is None


def test_first_errors_keeps_the_first_message_of_each_kind() -> None:
    """Two http_5xx and a stall give the first 5xx message and the stall's; a failed warm-up
    request is not counted."""
    records = (
        RequestRecord("w", error="connect", error_message="warm-up refused", warmup=True),
        RequestRecord("a", error="http_5xx", error_message="first 500"),
        RequestRecord("b"),
        RequestRecord("c", error="http_5xx", error_message="second 500"),
        RequestRecord("d", error="stall", error_message="silent 60 s"),
    )
    assert BenchResult(records=records).first_errors() == {
        "http_5xx": "first 500",
        "stall": "silent 60 s",
    }


def test_comparison_says_better_in_the_figures_direction() -> None:
    """Higher throughput is better, higher TTFT worse; equal or missing figures say neither."""
    a = BenchResult(summary={"request_throughput_rps": 10.0, "ttft_s": {"p50": 0.2, "p99": 0.3}})
    b = BenchResult(summary={"request_throughput_rps": 20.0, "ttft_s": {"p50": 0.4, "p99": 0.3}})
    rows = {row.label: row.better for row in compare(a, b)}
    assert rows == {"requests/s": True, "TTFT p50 (s)": False, "TTFT p99 (s)": None}


def test_energy_alike_compares_source_and_scope() -> None:
    """Results of one source and scope, or with energy missing on a side, are alike; a
    different scope is not."""
    node = BenchResult(energy={"source": "nvml", "scope": "gpu"})
    cpu = BenchResult(energy={"source": "nvml", "scope": "cpu"})
    assert energy_alike(node, node)
    assert energy_alike(node, BenchResult())
    assert not energy_alike(node, cpu)


def test_errors_by_kind_sums_over_results() -> None:
    """Errors of several runs add up per kind."""
    runs = [
        BenchResult(summary={"errors": {"connect": 2}}),
        BenchResult(summary={"errors": {"connect": 1, "stall": 1}}),
        BenchResult(summary={}),
    ]
    assert errors_by_kind(runs) == {"connect": 3, "stall": 1}

"""Sweeps and the goodput search over full runs."""

from __future__ import annotations

import pytest

from tokenwatt.bench.load import ClosedLoop, LoadShape, OpenLoop, Sessions, TraceReplay
from tokenwatt.bench.results import BenchResult
from tokenwatt.bench.sweep import run_sweep, search_max_goodput, shape_dirname, sweep_shapes
from tokenwatt.errors import ConfigError


def test_sweep_keeps_the_arrival_process_and_varies_the_rate() -> None:
    """An open-loop gamma shape swept over 1 and 2 req/s keeps its burstiness and seed."""
    shapes = sweep_shapes(OpenLoop(5, "gamma", 0.5, seed=3), [1, 2])
    assert shapes == [OpenLoop(1, "gamma", 0.5, 3), OpenLoop(2, "gamma", 0.5, 3)]


def test_sweep_rounds_concurrency() -> None:
    """Closed loops and sessions take whole concurrencies."""
    assert sweep_shapes(ClosedLoop(1), [2.0, 4.4]) == [ClosedLoop(2), ClosedLoop(4)]
    assert sweep_shapes(Sessions(1), [3]) == [Sessions(3)]


def test_trace_replay_cannot_be_swept() -> None:
    """Sweeping a trace replay is a ConfigError pointing at --speedup."""
    with pytest.raises(ConfigError, match="speedup"):
        sweep_shapes(TraceReplay(2), [1])


def test_shape_dirname_is_file_system_safe() -> None:
    """Labels become folder names without '/', ',', '=' or spaces."""
    assert shape_dirname(OpenLoop(2.5, "poisson")) == "rate-2.5rps_poisson"
    assert shape_dirname(TraceReplay(10)) == "tracex10"


async def test_search_runs_full_benchmarks_until_the_knee() -> None:
    """Runs meeting the target up to 4 req/s (attainment 1.0) and missing it above give a
    rate between 3.8 and 4 within 5%."""
    seen: list[float] = []

    async def run_at(shape: OpenLoop) -> BenchResult:
        seen.append(shape.rate_rps)
        return BenchResult(summary={"slo_attainment": 1.0 if shape.rate_rps <= 4 else 0.2})

    found = await search_max_goodput(run_at, OpenLoop(1, "constant"), 1, 8, target=0.9)
    assert 4 * 0.95 <= found.rate_rps <= 4
    assert seen[:2] == [8, 1]


async def test_run_sweep_runs_each_point_in_order() -> None:
    """Concurrencies 1, 2 and 3: three runs, each with its shape, in order."""

    async def run_at(shape: LoadShape) -> BenchResult:
        return BenchResult(summary={"label": shape.label})

    points = await run_sweep(run_at, ClosedLoop(1), [1, 2, 3])
    assert [shape for shape, _ in points] == [ClosedLoop(1), ClosedLoop(2), ClosedLoop(3)]
    assert [r.summary["label"] for _, r in points] == [
        "concurrency=1",
        "concurrency=2",
        "concurrency=3",
    ]


async def test_run_sweep_stops_after_an_interrupted_run() -> None:
    """An interrupted second run ends the sweep: it is the last point, the third never runs."""
    seen: list[LoadShape] = []

    async def run_at(shape: LoadShape) -> BenchResult:
        seen.append(shape)
        return BenchResult(interrupted=shape == ClosedLoop(2))

    points = await run_sweep(run_at, ClosedLoop(1), [1, 2, 3])
    assert seen == [ClosedLoop(1), ClosedLoop(2)]
    assert points[-1][1].interrupted

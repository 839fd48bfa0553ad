"""Several runs as one experiment: sweeps over rate or concurrency, and the maximum-goodput
search (DistServe) driven by full benchmark runs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from tokenwatt.bench.load import (
    ClosedLoop,
    GoodputSearch,
    LoadShape,
    OpenLoop,
    Sessions,
    TraceReplay,
    find_max_goodput_rate,
)
from tokenwatt.bench.results import BenchResult
from tokenwatt.errors import ConfigError

__all__ = ["run_sweep", "search_max_goodput", "shape_dirname", "sweep_shapes"]


def sweep_shapes(shape: LoadShape, values: Sequence[float]) -> list[LoadShape]:
    """``shape`` at each value: rates for an open loop, concurrencies for closed loops and
    sessions (rounded to whole requests). A trace replay has nothing to sweep."""
    if isinstance(shape, TraceReplay):
        raise ConfigError("a trace replay has no rate or concurrency to sweep; use --speedup")
    out: list[LoadShape] = []
    for value in values:
        if isinstance(shape, OpenLoop):
            out.append(
                OpenLoop(value, shape.arrival, shape.burstiness, shape.seed, shape.max_concurrency)
            )
        elif isinstance(shape, Sessions):
            out.append(Sessions(round(value)))
        else:
            out.append(ClosedLoop(round(value)))
    return out


def shape_dirname(shape: LoadShape) -> str:
    """A file-system-safe name for a shape's output folder, e.g. ``rate-2.5rps_poisson``."""
    label = shape.label.replace("/s", "rps")
    return label.replace("/", "").replace(",", "_").replace("=", "-").replace(" ", "")


async def run_sweep(
    run_at: Callable[[LoadShape], Awaitable[BenchResult]],
    shape: LoadShape,
    values: Sequence[float],
) -> list[tuple[LoadShape, BenchResult]]:
    """A full run of ``shape`` at each value (see ``sweep_shapes``), in order; an interrupted
    run ends the sweep and is the last one returned."""
    done: list[tuple[LoadShape, BenchResult]] = []
    for point in sweep_shapes(shape, values):
        result = await run_at(point)
        done.append((point, result))
        if result.interrupted:
            break
    return done


async def search_max_goodput(
    run_at: Callable[[OpenLoop], Awaitable[BenchResult]],
    base: OpenLoop,
    low_rps: float,
    high_rps: float,
    target: float = 0.9,
) -> GoodputSearch:
    """Highest rate whose run meets ``target`` SLO attainment, each probe a full run of
    ``base`` at that rate. An interrupted probe stops the search (CancelledError)."""

    async def attainment_at(rate: float) -> float:
        shape = OpenLoop(rate, base.arrival, base.burstiness, base.seed, base.max_concurrency)
        result = await run_at(shape)
        if result.interrupted:
            raise asyncio.CancelledError
        return float(result.summary.get("slo_attainment", 0.0))

    return await find_max_goodput_rate(attainment_at, low_rps, high_rps, target)

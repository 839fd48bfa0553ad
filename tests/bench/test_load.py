"""Load shapes: validation, arrival processes, and the maximum-goodput bisection."""

from __future__ import annotations

import itertools
import statistics

import pytest

from tokenwatt.bench.load import (
    ClosedLoop,
    OpenLoop,
    Sessions,
    TraceReplay,
    find_max_goodput_rate,
    interarrival_times,
)
from tokenwatt.errors import ConfigError


def _gaps(shape: OpenLoop, n: int) -> list[float]:
    return list(itertools.islice(interarrival_times(shape), n))


def test_constant_arrivals_are_evenly_spaced() -> None:
    """A constant 4 req/s process has gaps of exactly 0.25 s."""
    assert _gaps(OpenLoop(rate_rps=4, arrival="constant"), 3) == [0.25, 0.25, 0.25]


def test_poisson_arrivals_have_the_requested_mean_rate() -> None:
    """Poisson gaps at 10 req/s average 0.1 s (within 3% over 20k draws)."""
    gaps = _gaps(OpenLoop(rate_rps=10, arrival="poisson", seed=1), 20_000)
    assert statistics.fmean(gaps) == pytest.approx(0.1, rel=0.03)


def test_gamma_burstiness_raises_the_spread_not_the_mean() -> None:
    """Gamma gaps with burstiness 0.25 keep mean 1/rate but have CV 2 (= 1/sqrt(shape))."""
    gaps = _gaps(OpenLoop(rate_rps=5, arrival="gamma", burstiness=0.25, seed=2), 40_000)
    mean = statistics.fmean(gaps)
    assert mean == pytest.approx(0.2, rel=0.05)
    assert statistics.pstdev(gaps) / mean == pytest.approx(2.0, rel=0.05)


def test_arrivals_are_reproducible_by_seed() -> None:
    """The same seed gives the same gaps."""
    shape = OpenLoop(rate_rps=3, seed=7)
    assert _gaps(shape, 5) == _gaps(shape, 5)


@pytest.mark.parametrize(
    "build",
    [
        lambda: ClosedLoop(concurrency=0),
        lambda: OpenLoop(rate_rps=0),
        lambda: OpenLoop(rate_rps=float("inf")),
        lambda: OpenLoop(arrival="uniform"),  # type: ignore[arg-type]
        lambda: OpenLoop(burstiness=0),
        lambda: TraceReplay(speedup=-1),
        lambda: Sessions(concurrency=0),
    ],
)
def test_shapes_reject_bad_values(build: object) -> None:
    """Zero or infinite rates, unknown arrivals, non-positive counts are ConfigErrors."""
    with pytest.raises(ConfigError):
        build()  # type: ignore[operator]


def test_labels_name_the_shape() -> None:
    """Each shape has a short label for tables."""
    labels = [
        ClosedLoop(4).label,
        OpenLoop(2.5, "gamma", 0.5).label,
        TraceReplay(10).label,
        Sessions(3).label,
    ]
    assert labels == ["concurrency=4", "rate=2.5/s,gamma,burstiness=0.5", "trace x10", "sessions=3"]


async def _step(rate: float) -> float:
    """Attainment 1.0 up to 7 req/s, 0.5 above: the answer is just under 7."""
    return 1.0 if rate <= 7 else 0.5


async def test_goodput_search_brackets_the_knee() -> None:
    """Bisection between 1 and 16 req/s converges within 5% below the knee at 7 req/s."""
    result = await find_max_goodput_rate(_step, 1, 16, target=0.9, rel_tolerance=0.05)
    assert 7 * 0.95 <= result.rate_rps <= 7
    assert result.attainment == 1.0
    assert result.probes[:2] == ((16, 0.5), (1, 1.0))


async def test_goodput_search_returns_high_when_it_passes() -> None:
    """When the highest rate already meets the target, it is the answer after one probe."""
    result = await find_max_goodput_rate(_step, 1, 5)
    assert (result.rate_rps, len(result.probes)) == (5, 1)


async def test_goodput_search_returns_zero_when_nothing_passes() -> None:
    """When even the lowest rate misses the target, the answer is 0 req/s."""
    result = await find_max_goodput_rate(_step, 8, 9)
    assert (result.rate_rps, result.attainment) == (0.0, 0.5)


async def test_goodput_search_stops_at_max_probes() -> None:
    """The search never runs more than max_probes loads."""
    result = await find_max_goodput_rate(_step, 1, 1000, rel_tolerance=1e-9, max_probes=5)
    assert len(result.probes) == 5


async def test_goodput_search_rejects_an_empty_bracket() -> None:
    """low >= high is a ConfigError."""
    with pytest.raises(ConfigError):
        await find_max_goodput_rate(_step, 5, 5)

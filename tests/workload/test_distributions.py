"""LogNormal: constants, clamping, rounding, moments, validation."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from tokenwatt.errors import ConfigError
from tokenwatt.workload.distributions import LogNormal


def test_zero_sigma_is_the_median() -> None:
    """sigma 0 always returns the median."""
    dist = LogNormal(median=42.0)
    rng = random.Random(1)
    assert [dist.sample(rng) for _ in range(3)] == [42.0, 42.0, 42.0]


def test_samples_are_clamped_to_the_range() -> None:
    """Every draw lies inside [minimum, maximum]."""
    dist = LogNormal(median=100.0, sigma=3.0, minimum=50.0, maximum=200.0)
    rng = random.Random(2)
    draws = [dist.sample(rng) for _ in range(2000)]
    assert min(draws) == 50.0
    assert max(draws) == 200.0


def test_sample_int_rounds_inside_fractional_bounds() -> None:
    """Integer draws stay within the ceil/floor of fractional bounds."""
    dist = LogNormal(median=1.0, sigma=5.0, minimum=0.2, maximum=3.7)
    rng = random.Random(3)
    assert {dist.sample_int(rng) for _ in range(500)} == {1, 2, 3}


def test_median_and_mean_match_parameters() -> None:
    """The sample median approaches ``median`` and the mean approaches median*exp(sigma^2/2)."""
    dist = LogNormal(median=100.0, sigma=0.5)
    rng = random.Random(4)
    draws = [dist.sample(rng) for _ in range(40000)]
    assert statistics.median(draws) == pytest.approx(100.0, rel=0.02)
    assert statistics.fmean(draws) == pytest.approx(dist.mean, rel=0.02)
    assert dist.mean == pytest.approx(100.0 * math.exp(0.125))


def test_scaled_multiplies_median_and_range() -> None:
    """scaled(0.5) halves the median and both bounds, keeping sigma."""
    assert LogNormal(100.0, 0.3, 10.0, 1000.0).scaled(0.5) == LogNormal(50.0, 0.3, 5.0, 500.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"median": 0.0}, "median must be > 0"),
        ({"sigma": -0.1}, "sigma must be >= 0"),
        ({"minimum": 5.0, "maximum": 4.0}, "is empty or negative"),
    ],
)
def test_invalid_parameters_raise(kwargs: dict[str, float], message: str) -> None:
    """Bad parameters raise ConfigError naming the problem."""
    with pytest.raises(ConfigError, match=message):
        LogNormal(**kwargs)

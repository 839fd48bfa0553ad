"""Arrival processes: closed, constant, Poisson, gamma burstiness."""

from __future__ import annotations

import itertools
import random
import statistics

import pytest

from tokenwatt.errors import ConfigError
from tokenwatt.workload.arrivals import Arrivals


def _gaps(arrivals: Arrivals, n: int, seed: int = 0) -> list[float]:
    times = list(itertools.islice(arrivals.times(random.Random(seed)), n + 1))
    return [b - a for a, b in itertools.pairwise(times)]


def test_closed_loop_is_all_zero() -> None:
    """Closed loop offers every request at time 0."""
    times = list(itertools.islice(Arrivals().times(random.Random(0)), 4))
    assert times == [0.0, 0.0, 0.0, 0.0]


def test_constant_rate_spaces_arrivals_evenly() -> None:
    """A constant 4/s rate gives arrivals at 0, 0.25, 0.5, 0.75."""
    times = list(itertools.islice(Arrivals("constant", 4.0).times(random.Random(0)), 4))
    assert times == [0.0, 0.25, 0.5, 0.75]


def test_poisson_gaps_have_mean_one_over_rate_and_cv_one() -> None:
    """Poisson gaps average 1/rate with coefficient of variation near 1."""
    gaps = _gaps(Arrivals("poisson", 10.0), 20000)
    mean = statistics.fmean(gaps)
    assert mean == pytest.approx(0.1, rel=0.03)
    assert statistics.pstdev(gaps) / mean == pytest.approx(1.0, rel=0.05)


@pytest.mark.parametrize("cv", [0.5, 3.0])
def test_gamma_gaps_have_the_requested_cv(cv: float) -> None:
    """Gamma gaps keep the mean rate and show the requested burstiness (CV)."""
    gaps = _gaps(Arrivals("gamma", 5.0, cv=cv), 40000)
    mean = statistics.fmean(gaps)
    assert mean == pytest.approx(0.2, rel=0.05)
    assert statistics.pstdev(gaps) / mean == pytest.approx(cv, rel=0.08)


def test_same_seed_same_times() -> None:
    """Equal seeds give equal arrival times."""
    a = Arrivals("gamma", 2.0, cv=2.0)
    assert _gaps(a, 50, seed=7) == _gaps(a, 50, seed=7)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "bursty"}, "unknown arrival process 'bursty'"),
        ({"kind": "poisson", "rate_per_s": 0.0}, "rate_per_s must be > 0"),
        ({"kind": "gamma", "cv": 0.0}, "cv must be > 0"),
    ],
)
def test_invalid_arrivals_raise(kwargs: dict[str, object], message: str) -> None:
    """Bad arrival settings raise ConfigError naming the problem."""
    with pytest.raises(ConfigError, match=message):
        Arrivals(**kwargs)  # type: ignore[arg-type]

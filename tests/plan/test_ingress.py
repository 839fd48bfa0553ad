"""Per-request serving overhead: quantiles drawn by a hash of the request id and the seed."""

from __future__ import annotations

import pytest

from tokenwatt.errors import ConfigError
from tokenwatt.plan.ingress import IngressDelay, overhead_quantiles


def test_one_value_is_a_constant() -> None:
    """A single delay applies to every request."""
    d = IngressDelay((0.25,))
    assert d.constant
    assert {d.delay_s(f"r{i}") for i in range(50)} == {0.25}


def test_draws_are_deterministic_and_cover_every_quantile() -> None:
    """Equal ids and seeds draw equal delays; over many ids each quantile is drawn about as
    often as the others."""
    d = IngressDelay((0.001, 0.002, 0.003, 0.004), seed=3)
    ids = [f"req-{i}" for i in range(4000)]
    first = [d.delay_s(r) for r in ids]
    assert first == [IngressDelay((0.001, 0.002, 0.003, 0.004), seed=3).delay_s(r) for r in ids]
    for q in d.quantiles_s:
        assert 900 <= first.count(q) <= 1100
    assert d.mean_s == pytest.approx(0.0025)


def test_seed_changes_the_draws() -> None:
    """Another seed draws other delays for the same ids."""
    q = (0.0, 1.0)
    ids = [f"r{i}" for i in range(200)]
    a = [IngressDelay(q, seed=0).delay_s(r) for r in ids]
    b = [IngressDelay(q, seed=1).delay_s(r) for r in ids]
    assert a != b


def test_bad_delays_are_refused() -> None:
    """Empty, negative or infinite delays raise ConfigError naming the field."""
    with pytest.raises(ConfigError, match="at least one delay"):
        IngressDelay(())
    with pytest.raises(ConfigError, match="finite and >= 0"):
        IngressDelay((0.1, -0.1))
    with pytest.raises(ConfigError, match="finite and >= 0"):
        IngressDelay((float("inf"),))


def test_overhead_quantiles_known_answer() -> None:
    """Mid-points of equal-count bins: 100 samples 1..100 in 4 bins -> 13, 38, 63, 88."""
    samples = [float(i) for i in range(100, 0, -1)]
    assert overhead_quantiles(samples, 4) == (13.0, 38.0, 63.0, 88.0)
    assert overhead_quantiles([0.003, -0.001], 40) == (0.0, 0.003)
    with pytest.raises(ConfigError, match="no per-request overheads"):
        overhead_quantiles([], 40)
    with pytest.raises(ConfigError, match="points must be >= 1"):
        overhead_quantiles([1.0], 0)

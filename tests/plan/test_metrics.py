"""Bounded-memory metrics: log histograms and timeline buckets."""

from __future__ import annotations

import pytest

from tokenwatt.plan.metrics import LogHistogram, Metrics, Timeline


def test_histogram_quantiles_within_one_percent() -> None:
    """Quantiles of 1..1000 ms land within 1% of the exact order statistics."""
    h = LogHistogram()
    for i in range(1, 1001):
        h.add(i / 1000)
    assert h.mean == pytest.approx(0.5005)
    assert h.quantile(0.5) == pytest.approx(0.5005, rel=0.01)
    assert h.quantile(0.99) == pytest.approx(0.99, rel=0.01)
    assert (h.quantile(0.0), h.quantile(1.0)) == (pytest.approx(0.001, rel=0.01), 1.0)


def test_empty_histogram_reads_zero() -> None:
    """No samples: mean and quantiles are 0."""
    assert (LogHistogram().mean, LogHistogram().quantile(0.5)) == (0.0, 0.0)


def test_timeline_splits_energy_at_bucket_edges() -> None:
    """100 W over [50, 130] s in 60 s buckets puts 1000, 6000 and 1000 J in three buckets."""
    t = Timeline(60.0)
    t.energy(50.0, 130.0, 100.0)
    assert t.energy_j == pytest.approx([1000.0, 6000.0, 1000.0])
    assert t.to_dict()["power_w"] == pytest.approx([1000 / 60, 100.0, 1000 / 60])


def test_timeline_counts_and_samples() -> None:
    """Arrivals and completions count per bucket; samples keep the last value."""
    t = Timeline(10.0)
    t.arrival(1.0)
    t.arrival(12.0)
    t.completion(15.0)
    t.sample(11.0, 3, 7)
    assert (t.arrivals, t.completions, t.replicas, t.queue) == (
        [1, 1],
        [0, 1],
        [0.0, 3.0],
        [0.0, 7.0],
    )


def test_metrics_slo_counts_ttft_and_tpot() -> None:
    """A request meets the SLO only if both its TTFT and its time per output token do."""
    m = Metrics(ttft_slo_s=1.0, tpot_slo_s=0.1)
    m.complete(0.0, 0.5, 1.4, 10, 11)  # ttft 0.5, tpot 0.09: met
    m.complete(0.0, 0.5, 2.5, 10, 11)  # tpot 0.2: missed
    m.complete(0.0, 1.5, 1.5, 10, 1)  # ttft 1.5: missed
    assert (m.completed, m.slo_met, m.slo_output_tokens) == (3, 1, 11)

"""Metrics: percentiles, per-request latencies, SLO checks, run aggregates (known answers)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from tokenwatt.bench.metrics import (
    Percentiles,
    meets_slos,
    percentile,
    request_metrics,
    run_metrics,
    slo_value,
    summarize,
)
from tokenwatt.bench.record import RequestRecord
from tokenwatt.bench.slo import Slo, parse_slos
from tokenwatt.errors import ConfigError

# Binary-exact times so expected values are exact.
A = RequestRecord(
    "a", start_s=0.0, chunk_times_s=(0.25, 0.375, 0.5, 0.75), end_s=0.75,
    input_tokens=10, output_tokens=4,
)  # fmt: skip
B = RequestRecord(
    "b", start_s=1.0, chunk_times_s=(1.5, 2.5), end_s=2.5, input_tokens=20, output_tokens=2
)
C = RequestRecord("c", start_s=2.0, end_s=3.0, input_tokens=30, error="timeout")
D = RequestRecord(
    "d", start_s=2.5, chunk_times_s=(2.75,), end_s=2.75, input_tokens=5, output_tokens=1
)
W = RequestRecord(
    "w", start_s=-5.0, chunk_times_s=(-4.0,), end_s=-4.0, output_tokens=1, warmup=True
)
RUN = [W, A, B, C, D]


def test_percentile_linear_interpolation_known_answers() -> None:
    """p0, p25, p50, p90, p100 of 10..50 by linear interpolation between closest ranks."""
    xs = [50.0, 10.0, 40.0, 20.0, 30.0]
    assert [percentile(xs, q) for q in (0, 25, 50, 100)] == [10.0, 20.0, 30.0, 50.0]
    assert percentile(xs, 90) == pytest.approx(46.0, rel=1e-12)
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5


def test_percentile_matches_numpy_default() -> None:
    """On random data the result equals numpy.percentile's default (linear) method."""
    rng = random.Random(5)
    xs = [rng.random() for _ in range(101)]
    for q in (1, 50, 90, 95, 99):
        assert percentile(xs, q) == pytest.approx(float(np.percentile(xs, q)), rel=1e-12)


def test_percentile_rejects_empty_and_out_of_range() -> None:
    """No values or q outside [0, 100] raise ConfigError."""
    with pytest.raises(ConfigError, match="no values"):
        percentile([], 50)
    with pytest.raises(ConfigError, match=r"q must be in \[0, 100\]"):
        percentile([1.0], 101)


def test_summarize_single_value_and_empty() -> None:
    """One value is every statistic; no values give count 0 and None everywhere."""
    assert summarize([2.0]) == Percentiles(1, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0)
    assert summarize([]) == Percentiles()


def test_request_metrics_known_answers() -> None:
    """A: TTFT 0.25, E2E 0.75, ITLs (0.125, 0.125, 0.25), TPOT (0.75-0.25)/3."""
    m = request_metrics(A)
    assert (m.ttft_s, m.e2e_s, m.itl_s) == (0.25, 0.75, (0.125, 0.125, 0.25))
    assert m.tpot_s == pytest.approx(0.5 / 3, rel=1e-15)
    assert m.ok


def test_tpot_is_undefined_below_two_tokens_and_ttft_without_output() -> None:
    """One output token has no TPOT; a request with no chunk has no TTFT."""
    assert request_metrics(D).tpot_s is None
    failed = request_metrics(C)
    assert (failed.ttft_s, failed.tpot_s, failed.e2e_s, failed.ok) == (None, None, 1.0, False)


def test_itl_slo_statistics_over_one_request() -> None:
    """itl max/mean/p50 of A's gaps: 0.25, 1/6, 0.125."""
    m = request_metrics(A)
    assert slo_value(m, Slo("itl", 1.0)) == 0.25
    assert slo_value(m, Slo("itl", 1.0, "mean")) == pytest.approx(0.5 / 3, rel=1e-15)
    assert slo_value(m, Slo("itl", 1.0, "p50")) == 0.125


def test_single_token_meets_tpot_and_itl_vacuously() -> None:
    """D has no TPOT and no gaps: tpot and itl objectives hold; a failed request meets none."""
    slos = parse_slos("tpot<=1ms,itl<=1ms")
    assert meets_slos(request_metrics(D), slos)
    assert not meets_slos(request_metrics(C), parse_slos(""))


def test_run_counts_errors_and_excludes_warmup() -> None:
    """4 measured requests (warm-up left out), 3 completed, 1 timeout; window 0..3 s."""
    r = run_metrics(RUN)
    assert (r.requests, r.completed, r.failed, r.errors) == (4, 3, 1, {"timeout": 1})
    assert (r.duration_s, r.input_tokens, r.output_tokens) == (3.0, 35, 7)
    assert r.request_throughput_rps == 1.0
    assert r.output_throughput_tps == pytest.approx(7 / 3, rel=1e-15)
    assert r.offered_rps == pytest.approx(4 / 3, rel=1e-15)


def test_run_latency_distributions() -> None:
    """TTFT over A, B, D; TPOT over A, B; ITL pools A's three gaps and B's one."""
    r = run_metrics(RUN)
    assert (r.ttft_s.count, r.ttft_s.p50, r.ttft_s.max) == (3, 0.25, 0.5)
    assert (r.tpot_s.count, r.tpot_s.max) == (2, 1.0)
    assert (r.itl_s.count, r.itl_s.p50, r.itl_s.max) == (4, 0.1875, 1.0)
    assert (r.e2e_s.min, r.e2e_s.p50, r.e2e_s.max) == (0.25, 0.75, 1.5)


def test_goodput_counts_requests_meeting_every_slo() -> None:
    """ttft<=300ms and tpot<=200ms: A and D meet both; B misses both; C failed."""
    r = run_metrics(RUN, parse_slos("ttft<=300ms,tpot<=200ms"))
    assert (r.slo_met, r.slo_attainment) == (2, 0.5)
    assert r.request_goodput_rps == pytest.approx(2 / 3, rel=1e-15)
    assert r.token_goodput_tps == pytest.approx(5 / 3, rel=1e-15)
    assert r.slo_attainment_by_metric == {"ttft": 0.5, "tpot": 0.5}
    assert r.slos == "ttft<=300ms,tpot<=200ms"


def test_goodput_needs_every_slo_not_any() -> None:
    """With ttft<=600ms (A, B, D meet) and itl<=200ms (only D meets), only D is good."""
    r = run_metrics(RUN, parse_slos("ttft<=600ms,itl<=200ms"))
    assert r.slo_met == 1
    assert r.slo_attainment_by_metric == {"ttft": 0.75, "itl": 0.25}


def test_explicit_duration_and_empty_run() -> None:
    """A given window sets the rates; an empty run gives zeros, not an error."""
    assert run_metrics(RUN, duration_s=7.0).request_throughput_rps == pytest.approx(3 / 7)
    empty = run_metrics([])
    assert (empty.requests, empty.slo_attainment, empty.request_throughput_rps) == (0, 0.0, 0.0)

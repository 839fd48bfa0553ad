"""Pure latency, throughput and goodput metrics over per-request timing records.

Definitions (stated once, used everywhere):
- TTFT: first output chunk minus send time. E2E: end of stream minus send time.
- ITL: gaps between consecutive output chunks; run-level ITL percentiles pool every gap.
- TPOT: time per output token excluding the first, (e2e - ttft) / (output_tokens - 1), as vLLM.
- Percentiles: linear interpolation between closest ranks (numpy's default, Hyndman-Fan type 7).
- Goodput (DistServe): completed requests that meet every SLO, per second of the run; token
  goodput counts their output tokens. SLO attainment: that count over all measured requests.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Protocol

from tokenwatt.bench.slo import Slo, SloSet
from tokenwatt.errors import ConfigError

__all__ = [
    "Percentiles",
    "RequestMetrics",
    "RunMetrics",
    "TimedRecord",
    "meets_slos",
    "percentile",
    "request_metrics",
    "run_metrics",
    "slo_value",
    "summarize",
]


class TimedRecord(Protocol):
    """What metrics need from a request record (``tokenwatt.bench.RequestRecord`` has it)."""

    @property
    def request_id(self) -> str: ...
    @property
    def start_s(self) -> float: ...
    @property
    def chunk_times_s(self) -> Sequence[float]: ...
    @property
    def end_s(self) -> float: ...
    @property
    def input_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...
    @property
    def error(self) -> str | None: ...
    @property
    def warmup(self) -> bool: ...


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks.

    For sorted x of length n: h = (n - 1) * q / 100, result x[floor h] + frac(h) * (x[floor h
    + 1] - x[floor h]). Equals ``numpy.percentile(values, q)`` with its default method.

    Raises:
        ConfigError: no values, or q outside [0, 100].
    """
    if not 0.0 <= q <= 100.0:
        raise ConfigError(f"percentile q must be in [0, 100], got {q}")
    if not values:
        raise ConfigError("percentile of no values is undefined")
    xs = sorted(values)
    h = (len(xs) - 1) * q / 100.0
    lo = math.floor(h)
    if lo + 1 >= len(xs):
        return float(xs[-1])
    return float(xs[lo] + (h - lo) * (xs[lo + 1] - xs[lo]))


@dataclass(frozen=True)
class Percentiles:
    """Distribution summary of one metric; every statistic is None when there are no values."""

    count: int = 0
    """Number of values."""
    mean: float | None = None
    """Arithmetic mean."""
    min: float | None = None
    """Smallest value."""
    p50: float | None = None
    """Median (linear interpolation)."""
    p90: float | None = None
    """90th percentile."""
    p95: float | None = None
    """95th percentile."""
    p99: float | None = None
    """99th percentile."""
    max: float | None = None
    """Largest value."""


def summarize(values: Iterable[float]) -> Percentiles:
    """Count, mean, min, p50/p90/p95/p99 and max of ``values``."""
    xs = sorted(values)
    if not xs:
        return Percentiles()
    return Percentiles(
        count=len(xs),
        mean=math.fsum(xs) / len(xs),
        min=xs[0],
        p50=percentile(xs, 50),
        p90=percentile(xs, 90),
        p95=percentile(xs, 95),
        p99=percentile(xs, 99),
        max=xs[-1],
    )


@dataclass(frozen=True)
class RequestMetrics:
    """Latencies of one request, derived from its record (seconds)."""

    request_id: str = ""
    """Id of the workload request."""
    error: str | None = None
    """Error kind, None when it completed."""
    ttft_s: float | None = None
    """Time to first token; None when no output arrived."""
    tpot_s: float | None = None
    """Time per output token after the first; None below two output tokens."""
    e2e_s: float = 0.0
    """Send to end of stream."""
    itl_s: tuple[float, ...] = ()
    """Gaps between consecutive output chunks."""
    input_tokens: int = 0
    """Prompt tokens."""
    output_tokens: int = 0
    """Output tokens."""

    @property
    def ok(self) -> bool:
        """True when the request completed without error."""
        return self.error is None


def request_metrics(record: TimedRecord) -> RequestMetrics:
    """TTFT, TPOT, ITLs and E2E of one record."""
    chunks = tuple(record.chunk_times_s)
    ttft = chunks[0] - record.start_s if chunks else None
    e2e = record.end_s - record.start_s
    tpot = None
    if ttft is not None and record.output_tokens >= 2:
        tpot = (e2e - ttft) / (record.output_tokens - 1)
    return RequestMetrics(
        request_id=record.request_id,
        error=record.error,
        ttft_s=ttft,
        tpot_s=tpot,
        e2e_s=e2e,
        itl_s=tuple(b - a for a, b in pairwise(chunks)),
        input_tokens=record.input_tokens,
        output_tokens=record.output_tokens,
    )


def slo_value(m: RequestMetrics, slo: Slo) -> float | None:
    """The request's value for an objective's metric; None when it has none.

    A request with one output token has no TPOT and no gaps: those objectives hold vacuously,
    so they return 0.0. A completed request with no output chunk has no TTFT (None: not met).
    """
    if slo.metric == "ttft":
        return m.ttft_s
    if slo.metric == "e2e":
        return m.e2e_s
    if slo.metric == "tpot":
        if m.tpot_s is None:
            return None if m.ttft_s is None else 0.0
        return m.tpot_s
    if not m.itl_s:
        return None if m.ttft_s is None else 0.0
    stat = slo.stat or "max"
    if stat == "max":
        return max(m.itl_s)
    if stat == "mean":
        return math.fsum(m.itl_s) / len(m.itl_s)
    return percentile(m.itl_s, float(stat[1:]))


def meets_slos(m: RequestMetrics, slos: SloSet) -> bool:
    """True when the request completed and meets every objective (DistServe's definition)."""
    if not m.ok:
        return False
    for slo in slos.slos:
        value = slo_value(m, slo)
        if value is None or value > slo.bound_s:
            return False
    return True


@dataclass(frozen=True)
class RunMetrics:
    """Latency distributions, throughput, SLO attainment and goodput of a run (warm-up excluded)."""

    requests: int = 0
    """Measured requests (completed or failed)."""
    completed: int = 0
    """Requests that completed without error."""
    failed: int = 0
    """Requests that failed."""
    errors: dict[str, int] = field(default_factory=dict)
    """Failed requests by error kind (timeouts included as their own kinds)."""
    duration_s: float = 0.0
    """Measurement window the rates divide by."""
    input_tokens: int = 0
    """Prompt tokens of completed requests."""
    output_tokens: int = 0
    """Output tokens of completed requests."""
    offered_rps: float = 0.0
    """Measured requests per second of the window (the offered load)."""
    request_throughput_rps: float = 0.0
    """Completed requests per second."""
    output_throughput_tps: float = 0.0
    """Output tokens of completed requests per second."""
    total_token_throughput_tps: float = 0.0
    """Prompt plus output tokens of completed requests per second."""
    ttft_s: Percentiles = field(default_factory=Percentiles)
    """TTFT over completed requests with output."""
    tpot_s: Percentiles = field(default_factory=Percentiles)
    """TPOT over completed requests with at least two output tokens."""
    itl_s: Percentiles = field(default_factory=Percentiles)
    """Every inter-chunk gap of every completed request, pooled."""
    e2e_s: Percentiles = field(default_factory=Percentiles)
    """E2E over completed requests."""
    slos: str = ""
    """The SLO set, as a string (empty: any completed request counts as good)."""
    slo_met: int = 0
    """Requests that completed and met every SLO."""
    slo_attainment: float = 0.0
    """slo_met / requests."""
    slo_attainment_by_metric: dict[str, float] = field(default_factory=dict)
    """Share of measured requests meeting each objective alone."""
    request_goodput_rps: float = 0.0
    """slo_met / duration_s."""
    token_goodput_tps: float = 0.0
    """Output tokens of requests that met every SLO / duration_s."""


def _window_s(records: Sequence[TimedRecord]) -> float:
    if not records:
        return 0.0
    return max(r.end_s for r in records) - min(r.start_s for r in records)


def run_metrics(
    records: Iterable[TimedRecord],
    slos: SloSet | None = None,
    duration_s: float | None = None,
) -> RunMetrics:
    """Summarize a run's records; warm-up records are left out.

    ``duration_s`` is the measurement window; by default the span from the first send to the
    last end among measured records. Rates are 0 when the window is empty.
    """
    slos = slos or SloSet()
    measured = [r for r in records if not r.warmup]
    window = _window_s(measured) if duration_s is None else duration_s
    if window < 0:
        raise ConfigError(f"duration_s must be >= 0, got {window}")
    per = [request_metrics(r) for r in measured]
    done = [m for m in per if m.ok]
    errors: dict[str, int] = {}
    for m in per:
        if m.error is not None:
            errors[m.error] = errors.get(m.error, 0) + 1
    good = [m for m in done if meets_slos(m, slos)]
    n = len(per)

    def rate(x: float) -> float:
        return x / window if window > 0 else 0.0

    by_metric = {
        s.name: (sum(1 for m in done if meets_slos(m, SloSet((s,)))) / n if n else 0.0)
        for s in slos.slos
    }
    input_tokens = sum(m.input_tokens for m in done)
    output_tokens = sum(m.output_tokens for m in done)
    return RunMetrics(
        requests=n,
        completed=len(done),
        failed=n - len(done),
        errors=dict(sorted(errors.items())),
        duration_s=window,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        offered_rps=rate(n),
        request_throughput_rps=rate(len(done)),
        output_throughput_tps=rate(output_tokens),
        total_token_throughput_tps=rate(input_tokens + output_tokens),
        ttft_s=summarize(m.ttft_s for m in done if m.ttft_s is not None),
        tpot_s=summarize(m.tpot_s for m in done if m.tpot_s is not None),
        itl_s=summarize(g for m in done for g in m.itl_s),
        e2e_s=summarize(m.e2e_s for m in done),
        slos=str(slos),
        slo_met=len(good),
        slo_attainment=len(good) / n if n else 0.0,
        slo_attainment_by_metric=by_metric,
        request_goodput_rps=rate(len(good)),
        token_goodput_tps=rate(sum(m.output_tokens for m in good)),
    )

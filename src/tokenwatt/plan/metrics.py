"""Online metrics with bounded memory: request counters, latency histograms, bucketed timelines.

Memory grows with the simulated duration (one timeline bucket per interval), never with the
number of requests, so a week-long trace of tens of millions of requests fits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["LogHistogram", "Metrics", "Timeline"]

_LOG_STEP = math.log(1.01)


class LogHistogram:
    """Counts in buckets 1% wide on a log scale; quantiles within about 0.5% of the truth."""

    __slots__ = ("_counts", "count", "max", "min", "total")

    def __init__(self) -> None:
        self._counts: dict[int, int] = {}
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, value: float) -> None:
        """Record one value (seconds; values <= 1 us share the lowest bucket)."""
        key = math.floor(math.log(max(value, 1e-6)) / _LOG_STEP)
        c = self._counts
        c[key] = c.get(key, 0) + 1
        self.count += 1
        self.total += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value

    @property
    def mean(self) -> float:
        """Exact mean of the recorded values (0 when empty)."""
        return self.total / self.count if self.count else 0.0

    def quantile(self, q: float) -> float:
        """The q-quantile (0..1), clamped to the exact min and max."""
        if not self.count:
            return 0.0
        rank = q * (self.count - 1)
        seen = 0
        for key in sorted(self._counts):
            seen += self._counts[key]
            if seen > rank:
                mid = math.exp((key + 0.5) * _LOG_STEP)
                return min(max(mid, self.min), self.max)
        return self.max


class Timeline:
    """Per-interval series: arrivals, completions, energy (J), replicas and queue samples."""

    __slots__ = ("arrivals", "completions", "energy_j", "interval_s", "queue", "replicas")

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.arrivals: list[int] = []
        self.completions: list[int] = []
        self.energy_j: list[float] = []
        self.replicas: list[float] = []
        self.queue: list[float] = []

    def _grow(self, idx: int) -> None:
        while len(self.energy_j) <= idx:
            self.arrivals.append(0)
            self.completions.append(0)
            self.energy_j.append(0.0)
            self.replicas.append(self.replicas[-1] if self.replicas else 0.0)
            self.queue.append(0.0)

    def arrival(self, t: float) -> None:
        """Count one arrival at ``t``."""
        idx = int(t / self.interval_s)
        if idx >= len(self.arrivals):
            self._grow(idx)
        self.arrivals[idx] += 1

    def completion(self, t: float) -> None:
        """Count one completion at ``t``."""
        idx = int(t / self.interval_s)
        if idx >= len(self.completions):
            self._grow(idx)
        self.completions[idx] += 1

    def sample(self, t: float, replicas: int, queue: int) -> None:
        """Record the replica count and queue length seen at ``t`` (the bucket keeps the last)."""
        idx = int(t / self.interval_s)
        if idx >= len(self.replicas):
            self._grow(idx)
        self.replicas[idx] = float(replicas)
        self.queue[idx] = float(queue)

    def energy(self, t0: float, t1: float, power_w: float) -> None:
        """Add ``power_w`` over [t0, t1], split exactly across bucket edges."""
        if t1 <= t0 or power_w == 0.0:
            return
        width = self.interval_s
        idx = int(t0 / width)
        end_idx = int(t1 / width)
        if end_idx >= len(self.energy_j):
            self._grow(end_idx)
        if idx == end_idx:
            self.energy_j[idx] += power_w * (t1 - t0)
            return
        t = t0
        while idx < end_idx:
            edge = (idx + 1) * width
            self.energy_j[idx] += power_w * (edge - t)
            t = edge
            idx += 1
        self.energy_j[idx] += power_w * (t1 - t)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready series; power is the bucket's mean (energy / interval)."""
        w = self.interval_s
        return {
            "interval_s": w,
            "time_s": [i * w for i in range(len(self.energy_j))],
            "arrivals": list(self.arrivals),
            "completions": list(self.completions),
            "replicas": list(self.replicas),
            "queue": list(self.queue),
            "energy_j": list(self.energy_j),
            "power_w": [e / w for e in self.energy_j],
        }


@dataclass
class Metrics:
    """Request outcomes over a run, counted online."""

    ttft_slo_s: float = 2.0
    """TTFT bound of the SLO."""
    tpot_slo_s: float = 0.2
    """Time-per-output-token bound of the SLO."""
    arrived: int = 0
    """Requests that arrived."""
    completed: int = 0
    """Requests that finished."""
    dropped: dict[str, int] = field(default_factory=dict)
    """Dropped requests by reason."""
    input_tokens: int = 0
    """Prompt tokens of completed requests."""
    output_tokens: int = 0
    """Output tokens of completed requests."""
    prefill_tokens: int = 0
    """Prompt tokens actually computed (the rest came from caches)."""
    slo_met: int = 0
    """Completed requests within both SLO bounds."""
    slo_output_tokens: int = 0
    """Output tokens of requests within the SLO."""
    ttft: LogHistogram = field(default_factory=LogHistogram)
    """Time to first token."""
    e2e: LogHistogram = field(default_factory=LogHistogram)
    """Arrival to last token."""
    tpot: LogHistogram = field(default_factory=LogHistogram)
    """Mean seconds per output token after the first (requests with > 1 output token)."""
    last_completion_s: float = 0.0
    """Time of the last completion."""

    def complete(
        self, arrival_s: float, first_token_s: float, done_s: float, inp: int, out: int
    ) -> None:
        """Record one finished request."""
        self.completed += 1
        self.input_tokens += inp
        self.output_tokens += out
        ttft = first_token_s - arrival_s
        self.ttft.add(ttft)
        self.e2e.add(done_s - arrival_s)
        ok = ttft <= self.ttft_slo_s
        if out > 1:
            tpot = (done_s - first_token_s) / (out - 1)
            self.tpot.add(tpot)
            ok = ok and tpot <= self.tpot_slo_s
        if ok:
            self.slo_met += 1
            self.slo_output_tokens += out
        if done_s > self.last_completion_s:
            self.last_completion_s = done_s

    def drop(self, reason: str) -> None:
        """Record one dropped request."""
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

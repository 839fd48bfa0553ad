"""Warehouse statistics: per-tier hits, misses and bytes; tokens served; joules saved (estimated).

Joules saved are an estimate: what prefilling the served tokens would have cost under the prefill
energy model fitted from measured windows (see costmodel), labelled with its basis.
:class:`WarehouseCollector` exports everything as Prometheus metrics on a given registry.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

__all__ = [
    "LOAD_BUCKETS_S",
    "StatsSnapshot",
    "TierCounters",
    "WarehouseCollector",
    "WarehouseStats",
    "register_collector",
]


LOAD_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Upper bounds (seconds) of the prefix-load latency histogram."""


@dataclass(frozen=True)
class TierCounters:
    """Counters of one tier."""

    hits: int = 0
    """Blocks loaded from this tier."""
    misses: int = 0
    """Blocks looked for here and not found."""
    bytes_read: int = 0
    """Bytes of verified blocks loaded from this tier."""
    bytes_written: int = 0
    """Bytes offered to this tier (writes and promotions that passed admission)."""
    rejected: int = 0
    """Blocks dropped because they failed verification (checksum, format, key, fingerprint)."""
    errors: int = 0
    """Calls that raised or exceeded the tier timeout."""
    skipped: int = 0
    """Calls not made because the tier's circuit breaker was open."""


@dataclass(frozen=True)
class StatsSnapshot:
    """A consistent copy of every warehouse counter."""

    tiers: dict[str, TierCounters] = field(default_factory=dict)
    """Counters per tier name."""
    lookups: int = 0
    """Prefix loads attempted."""
    tokens_served: int = 0
    """Tokens whose KV came from the warehouse."""
    prefill_tokens_avoided: int = 0
    """Prefill tokens the engine did not compute thanks to the warehouse (= tokens served)."""
    energy_saved_j: float = 0.0
    """Estimated joules saved: the prefill energy model's cost of the tokens served."""
    energy_basis: str = "estimated:prefill-energy-model (no prefill energy measured yet)"
    """Source label of ``energy_saved_j``: always an estimate, with the basis it used."""
    load_s_sum: float = 0.0
    """Total seconds spent in prefix loads."""
    load_s_max: float = 0.0
    """Longest prefix load, seconds."""
    load_s_buckets: tuple[int, ...] = (0,) * len(LOAD_BUCKETS_S)
    """Loads that took at most each of ``LOAD_BUCKETS_S`` seconds (cumulative counts)."""
    writes_dropped: int = 0
    """Blocks not stored because the background write queue was full."""


class WarehouseStats:
    """Thread-safe counters; :meth:`snapshot` returns a frozen copy."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snap = StatsSnapshot()

    def _tier(self, name: str, **deltas: int) -> None:
        tiers = self._snap.tiers
        current = tiers.get(name, TierCounters())
        updated = replace(current, **{k: getattr(current, k) + v for k, v in deltas.items()})
        self._snap = replace(self._snap, tiers={**tiers, name: updated})

    def record_tier(self, tier: str, **deltas: int) -> None:
        """Add ``deltas`` (field name -> increment) to ``tier``'s counters."""
        with self._lock:
            self._tier(tier, **deltas)

    def record_load(
        self, tokens: int, seconds: float, energy_saved_j: float | None, energy_basis: str
    ) -> None:
        """One prefix load that served ``tokens`` tokens in ``seconds``, saving an estimated
        ``energy_saved_j`` (None: no estimate yet) described by ``energy_basis``."""
        with self._lock:
            s = self._snap
            saved = s.energy_saved_j
            basis = s.energy_basis
            if energy_saved_j is not None:
                saved += energy_saved_j
                basis = energy_basis
            self._snap = replace(
                s,
                lookups=s.lookups + 1,
                tokens_served=s.tokens_served + tokens,
                prefill_tokens_avoided=s.prefill_tokens_avoided + tokens,
                energy_saved_j=saved,
                energy_basis=basis,
                load_s_sum=s.load_s_sum + seconds,
                load_s_max=max(s.load_s_max, seconds),
                load_s_buckets=tuple(
                    n + (seconds <= bound)
                    for n, bound in zip(s.load_s_buckets, LOAD_BUCKETS_S, strict=True)
                ),
            )

    def record_dropped_writes(self, blocks: int) -> None:
        """``blocks`` blocks were dropped instead of written (queue full)."""
        with self._lock:
            self._snap = replace(self._snap, writes_dropped=self._snap.writes_dropped + blocks)

    def snapshot(self) -> StatsSnapshot:
        """The counters as they are now."""
        with self._lock:
            return self._snap


class WarehouseCollector(Collector):
    """Prometheus collector over :class:`WarehouseStats` (metrics ``tokenwatt_warehouse_*``)."""

    def __init__(self, stats: WarehouseStats) -> None:
        self.stats = stats

    def describe(self) -> list[CounterMetricFamily]:
        return []  # metric families are dynamic (one label per tier); collect() is cheap

    def collect(
        self,
    ) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        snap = self.stats.snapshot()
        for attr, help_text in (
            ("hits", "Blocks loaded from the tier."),
            ("misses", "Blocks not found in the tier."),
            ("bytes_read", "Verified bytes loaded from the tier."),
            ("bytes_written", "Bytes written to the tier."),
            ("rejected", "Blocks dropped for failing verification."),
            ("errors", "Tier calls that raised or timed out."),
            ("skipped", "Tier calls skipped while its circuit breaker was open."),
        ):
            fam = CounterMetricFamily(f"tokenwatt_warehouse_{attr}", help_text, labels=["tier"])
            for name, counters in sorted(snap.tiers.items()):
                fam.add_metric([name], getattr(counters, attr))
            yield fam
        yield CounterMetricFamily(
            "tokenwatt_warehouse_lookups", "Prefix loads attempted.", value=snap.lookups
        )
        yield CounterMetricFamily(
            "tokenwatt_warehouse_tokens_served",
            "Tokens whose KV came from the warehouse.",
            value=snap.tokens_served,
        )
        yield CounterMetricFamily(
            "tokenwatt_warehouse_prefill_tokens_avoided",
            "Prefill tokens not computed thanks to the warehouse.",
            value=snap.prefill_tokens_avoided,
        )
        energy = CounterMetricFamily(
            "tokenwatt_warehouse_energy_saved_joules",
            "Estimated joules saved (measured prefill energy model applied to tokens served).",
            labels=["source"],
        )
        energy.add_metric(["estimated:prefill-energy-model"], snap.energy_saved_j)
        yield energy
        buckets = [(str(b), n) for b, n in zip(LOAD_BUCKETS_S, snap.load_s_buckets, strict=True)]
        yield HistogramMetricFamily(
            "tokenwatt_warehouse_load_seconds",
            "Seconds per prefix load (lookup, fetch, verify).",
            buckets=[*buckets, ("+Inf", snap.lookups)],
            sum_value=snap.load_s_sum,
        )
        yield GaugeMetricFamily(
            "tokenwatt_warehouse_load_seconds_max", "Longest prefix load.", value=snap.load_s_max
        )


def register_collector(stats: WarehouseStats, registry: CollectorRegistry) -> WarehouseCollector:
    """Register a collector for ``stats`` on ``registry`` and return it."""
    collector = WarehouseCollector(stats)
    registry.register(collector)
    return collector

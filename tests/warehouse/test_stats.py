"""Warehouse stats and their Prometheus export."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from tokenwatt.warehouse.stats import WarehouseStats, register_collector


def test_tier_counters_accumulate() -> None:
    """record_tier adds to the named counters of one tier only."""
    stats = WarehouseStats()
    stats.record_tier("dram", hits=2, bytes_read=100)
    stats.record_tier("dram", hits=1)
    stats.record_tier("disk", misses=3)
    snap = stats.snapshot()
    assert (snap.tiers["dram"].hits, snap.tiers["dram"].bytes_read) == (3, 100)
    assert snap.tiers["disk"].misses == 3 and snap.tiers["disk"].hits == 0


def test_energy_unlabelled_until_measured() -> None:
    """Without a prefill energy measurement, no joules are claimed and the basis says so."""
    stats = WarehouseStats()
    stats.record_load(tokens=256, seconds=0.01, energy_saved_j=None, energy_basis="")
    snap = stats.snapshot()
    assert snap.energy_saved_j == 0.0
    assert snap.energy_basis.startswith("estimated:")
    assert "no prefill energy measured" in snap.energy_basis


def test_load_latency_sum_and_max() -> None:
    """Load seconds are summed and the maximum kept."""
    stats = WarehouseStats()
    stats.record_load(1, 0.5, None, "")
    stats.record_load(1, 0.25, None, "")
    snap = stats.snapshot()
    assert (snap.load_s_sum, snap.load_s_max, snap.lookups) == (0.75, 0.5, 2)
    assert snap.load_s_buckets == (0, 0, 0, 0, 0, 0, 0, 1, 2, 2, 2)


def test_prometheus_export() -> None:
    """The collector exposes per-tier counters and the labelled energy estimate."""
    stats = WarehouseStats()
    stats.record_tier("dram", hits=4, bytes_read=4096)
    stats.record_load(1024, 0.1, 512.0, "estimated:prefill-energy-model (0.5 J/token; from rapl)")
    registry = CollectorRegistry()
    register_collector(stats, registry)
    text = generate_latest(registry).decode()
    assert 'tokenwatt_warehouse_hits_total{tier="dram"} 4.0' in text
    assert 'tokenwatt_warehouse_bytes_read_total{tier="dram"} 4096.0' in text
    assert "tokenwatt_warehouse_tokens_served_total 1024.0" in text
    assert (
        'tokenwatt_warehouse_energy_saved_joules_total{source="estimated:prefill-energy-model"}'
        " 512.0" in text
    )


def test_load_latency_histogram() -> None:
    """Loads of 3 ms and 0.3 s fall in the right cumulative buckets of the exported histogram."""
    stats = WarehouseStats()
    stats.record_load(1, 0.003, None, "")
    stats.record_load(1, 0.3, None, "")
    registry = CollectorRegistry()
    register_collector(stats, registry)
    text = generate_latest(registry).decode()
    assert 'tokenwatt_warehouse_load_seconds_bucket{le="0.0025"} 0.0' in text
    assert 'tokenwatt_warehouse_load_seconds_bucket{le="0.005"} 1.0' in text
    assert 'tokenwatt_warehouse_load_seconds_bucket{le="0.5"} 2.0' in text
    assert 'tokenwatt_warehouse_load_seconds_bucket{le="+Inf"} 2.0' in text
    assert "tokenwatt_warehouse_load_seconds_count 2.0" in text

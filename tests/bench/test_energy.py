"""Energy join: steady-state window, per-token/request/session figures, idle share, sources."""

from __future__ import annotations

import httpx
import pytest

from tests.bench.conftest import StartServer
from tokenwatt.bench.energy import (
    concurrency_steps,
    steady_state_window,
    summarize_energy,
    tokens_between,
)
from tokenwatt.bench.energy_sources import (
    EnergySampler,
    EnergyTrace,
    MeterSource,
    PrometheusSource,
)
from tokenwatt.bench.record import RequestRecord
from tokenwatt.energy.meter import Component
from tokenwatt.energy.replay import FixedPowerMeter
from tokenwatt.errors import ConfigError, MeterError


def _rec(rid: str, start: float, end: float, tokens: int = 2, **kw: object) -> RequestRecord:
    chunks = tuple(start + (end - start) * (i + 1) / tokens for i in range(tokens))
    return RequestRecord(
        rid, start_s=start, end_s=end, chunk_times_s=chunks, output_tokens=tokens, **kw
    )  # type: ignore[arg-type]


def _trace_100w(until_s: float = 10.0) -> EnergyTrace:
    """100 W constant on one cpu component, sampled each second from t=0."""
    comp = Component("cpu", "cpu", "estimated:cpu-model", {"watts": 100.0})
    times = tuple(float(t) for t in range(int(until_s) + 1))
    return EnergyTrace((comp,), times, tuple({"cpu": 100.0 * t} for t in times))


def test_concurrency_steps_count_requests_in_flight() -> None:
    """Two overlapping requests give levels 1, 2, 1, 0 at their starts and ends."""
    steps = concurrency_steps([_rec("a", 0, 4), _rec("b", 1, 3)])
    assert steps == [(0, 1), (1, 2), (3, 1), (4, 0)]


def test_steady_window_spans_the_time_at_the_fixed_level() -> None:
    """With level 2, the window runs from the second request's start to the first drop below 2."""
    records = [_rec("a", 0, 4), _rec("b", 1, 3), _rec("c", 3, 6), _rec("d", 5, 7)]
    window = steady_state_window(records, level=2)
    assert window is not None
    assert (window.start_s, window.end_s, window.level) == (1, 6, 2)


def test_steady_level_defaults_to_time_weighted_median() -> None:
    """Without a level, the median in-flight count (1 here: 6 s at 1 vs 2 s at 2) is used."""
    records = [_rec("a", 0, 4), _rec("b", 1, 3), _rec("c", 5, 9)]
    window = steady_state_window(records)
    assert window is not None
    assert (window.start_s, window.end_s, window.level) == (0, 9, 1)


def test_no_steady_window_when_level_never_reached() -> None:
    """A level above the peak gives no window."""
    assert steady_state_window([_rec("a", 0, 1)], level=3) is None


def test_tokens_between_counts_chunks_in_the_window() -> None:
    """Chunks at 1, 2, 3, 4 s (one token each): 2 fall in [1.5, 3]."""
    assert tokens_between([_rec("a", 0, 4, tokens=4)], 1.5, 3.0) == 2


def test_summary_figures_at_100_watts() -> None:
    """At 100 W, 2 requests over 0..4 s with 4 tokens each: 400 J, 50 J/token, 200 J/request,
    1 good request -> 0.0025 good requests/J; 1 s idle between requests -> idle share 0.25."""
    records = [_rec("a", 0, 1, tokens=4, session_id="s"), _rec("b", 2, 4, tokens=4, session_id="s")]
    summary = summarize_energy(_trace_100w(), 0.0, records, good=[True, False])
    assert summary is not None
    whole = summary.whole_run
    assert (whole.energy_j, whole.output_tokens, whole.j_per_output_token) == (400, 8, 50)
    assert whole.avg_power_w == 100
    assert (summary.j_per_request, summary.j_per_session) == (200, 400)
    assert summary.good_requests_per_j == 1 / 400
    assert summary.good_tokens_per_j == 4 / 400
    assert summary.idle_share == 0.25
    assert (summary.source, summary.scope, summary.estimated) == (
        "estimated:cpu-model",
        "cpu",
        True,
    )


def test_summary_offsets_record_times_by_t0() -> None:
    """Record times are relative to t0; a t0 of 5 s reads the trace at 5..7 s."""
    comp = Component("gpu0", "gpu", "nvml")
    trace = EnergyTrace((comp,), (5.0, 6.0, 7.0), ({"gpu0": 0.0}, {"gpu0": 10.0}, {"gpu0": 30.0}))
    summary = summarize_energy(trace, 5.0, [_rec("a", 0, 2)])
    assert summary is not None
    assert summary.whole_run.energy_j == 30
    assert summary.good_requests_per_j is None
    assert summary.estimated is False


def test_summary_needs_two_samples() -> None:
    """A trace with one sample gives no summary."""
    trace = EnergyTrace((Component("c", "cpu", "rapl"),), (0.0,), ({"c": 0.0},))
    assert summarize_energy(trace, 0.0, [_rec("a", 0, 1)]) is None


def test_trace_interpolates_between_samples() -> None:
    """Half-way between samples of 0 and 100 J is 50 J; outside the samples it clamps."""
    trace = _trace_100w(1)
    assert trace.total_at(0.5) == {"cpu": 50.0}
    assert trace.total_at(9.0) == {"cpu": 100.0}
    assert trace.power_timeline() == [(0.5, 100.0)]


async def test_meter_source_samples_a_fixed_power_meter() -> None:
    """A sampler over a 50 W FixedPowerMeter yields increasing cumulative joules."""
    source = MeterSource([FixedPowerMeter({"node": 50.0})])
    sampler = EnergySampler(source, interval_s=0.01)
    await sampler.start()
    trace = await sampler.stop()
    await source.aclose()
    assert [c.name for c in trace.components] == ["node"]
    assert len(trace.times_s) >= 2
    assert trace.energy_j[-1]["node"] >= trace.energy_j[0]["node"]


async def test_prometheus_source_prefers_the_tokenwatt_counter(start_server: StartServer) -> None:
    """With both counters present only tokenwatt's is read (no double counting), in joules."""
    server = await start_server(energy_per_token_j=0.5)
    server.tokens_sent = 4
    source = PrometheusSource(server.url + "/metrics")
    try:
        _t, energy = await source.read()
    finally:
        await source.aclose()
    assert energy == {"tokenwatt_energy_joules_total{scope=node,source=replay}": 2.0}
    assert [(c.scope, c.source) for c in source.components] == [("node", "replay")]


async def test_prometheus_source_scales_dcgm_millijoules() -> None:
    """DCGM's total energy counter (mJ, declared a counter) is read per GPU in joules."""
    text = (
        "# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter\n"
        'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu="0",UUID="GPU-a"} 2500\n'
        'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu="1",UUID="GPU-b"} 1000\n'
    )
    transport = httpx.MockTransport(lambda r: httpx.Response(200, text=text))
    source = PrometheusSource("http://x/metrics", transport=transport)
    _t, energy = await source.read()
    await source.aclose()
    assert energy == {
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu=0}": 2.5,
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu=1}": 1.0,
    }
    assert {(c.scope, c.source) for c in source.components} == {("gpu", "dcgm")}


async def test_prometheus_source_without_counter_says_what_to_do() -> None:
    """A /metrics page with no energy counter raises a MeterError naming the alternatives."""
    transport = httpx.MockTransport(lambda r: httpx.Response(200, text="up 1\n"))
    source = PrometheusSource("http://x/metrics", transport=transport)
    with pytest.raises(MeterError, match="--energy none"):
        await source.read()
    await source.aclose()


async def test_prometheus_source_unreachable_is_a_meter_error() -> None:
    """A connection failure is a MeterError, not an httpx exception."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    source = PrometheusSource("http://x/metrics", transport=httpx.MockTransport(refuse))
    with pytest.raises(MeterError, match="cannot scrape"):
        await source.read()
    await source.aclose()


def test_sources_reject_bad_config() -> None:
    """No meters, a URL without scheme, or a zero interval is a ConfigError."""
    with pytest.raises(ConfigError):
        MeterSource([])
    with pytest.raises(ConfigError):
        PrometheusSource("localhost/metrics")
    with pytest.raises(ConfigError):
        EnergySampler(MeterSource([FixedPowerMeter({"n": 1.0})]), interval_s=0)


async def test_declared_counter_without_series_reads_as_zero() -> None:
    """A labelled counter with no increments yet (TYPE line only) reads as {}, not an error."""
    text = "# HELP tokenwatt_energy_joules E\n# TYPE tokenwatt_energy_joules counter\n"
    transport = httpx.MockTransport(lambda r: httpx.Response(200, text=text))
    source = PrometheusSource("http://x/metrics", transport=transport)
    _t, energy = await source.read()
    await source.aclose()
    assert energy == {}

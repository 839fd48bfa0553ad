"""The bench HTML report: token-rate bins and the sections a reader expects."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tokenwatt.bench.record import RequestRecord
from tokenwatt.bench.report import build_report, rate_series, write_report
from tokenwatt.bench.results import BenchResult
from tokenwatt.errors import ConfigError


def test_rate_series_bins_tokens_per_second() -> None:
    """4 tokens in 2 chunks at 0.5 s and 1.5 s, 1 s bins over 2 s: 2 tok/s in each bin."""
    rec = RequestRecord("a", chunk_times_s=(0.5, 1.5), end_s=1.5, output_tokens=4)
    assert rate_series([rec], 1.0, 2.0) == [(0.5, 2.0), (1.5, 2.0)]


def test_rate_series_rejects_zero_bins() -> None:
    """A zero bin width is a ConfigError."""
    with pytest.raises(ConfigError):
        rate_series([], 0.0, 1.0)


def test_report_has_latency_throughput_and_energy_sections(tmp_path: Path) -> None:
    """A result with energy gets latency CDFs, throughput, power and J/token charts, each
    energy figure labelled with its source and scope."""
    recs = tuple(
        RequestRecord(
            f"r{i}", start_s=i, chunk_times_s=(i + 0.1, i + 0.2), end_s=i + 0.2, output_tokens=2
        )
        for i in range(3)
    )
    whole = {
        "start_s": 0.0,
        "end_s": 2.2,
        "energy_j": 22.0,
        "avg_power_w": 10.0,
        "j_per_output_token": 22 / 6,
        "output_tokens_per_j": 6 / 22,
    }
    energy = {
        "source": "rapl",
        "scope": "cpu",
        "estimated": False,
        "whole_run": whole,
        "steady": None,
        "components": [{"name": "pkg", "scope": "cpu", "source": "rapl", "params": {}}],
    }
    result = BenchResult(
        records=recs,
        summary={"slos": "ttft<=1s"},
        energy=energy,
        power_timeline=((0.5, 10.0), (1.5, 10.0)),
    )
    text = build_report(result).render()
    for title in ("Latency CDFs", "Throughput and goodput over time", "Energy"):
        assert f"<h2>{title}</h2>" in text
    assert "source rapl, scope cpu" in text
    path = write_report(result, tmp_path / "r.html")
    body = path.read_text()
    svgs = body.count("<svg")
    assert svgs == 5
    start = body.index("<svg")
    ET.fromstring(body[start : body.index("</svg>", start) + 6])


def test_report_without_energy_says_it_was_not_measured() -> None:
    """No energy: the section says so instead of drawing empty charts."""
    text = build_report(BenchResult()).render()
    assert "Energy was not measured" in text


def test_report_shows_the_context_clamp_count() -> None:
    """The summary names the limit prompts were fitted to and how many it clamped."""
    context = {
        "limit": "max_model_len",
        "max_model_len": 8192,
        "requests": 500,
        "prompts_clamped": 37,
        "outputs_clamped": 0,
    }
    text = build_report(BenchResult(workload_stats={"context": context})).render()
    assert "prompts clamped to fit max_model_len 8192" in text and "37 of 500" in text


def test_report_shows_endpoint_energy_per_request() -> None:
    """The endpoint's per-request joules get their own section with the source, scope and basis
    the endpoint states; without them there is no such section."""
    per_request = {"count": 2, "mean": 1.5, "p50": 1.5, "p90": 1.9, "p99": 1.99}
    energy = {
        "source": "nvml",
        "scope": "gpu",
        "basis": "split by tokens",
        "requests": 2,
        "unreported": 0,
        "j_per_request": per_request,
        "j_per_session": None,
    }
    text = build_report(BenchResult(request_energy=energy)).render()
    assert "<h2>Energy per request and session, endpoint-reported</h2>" in text
    assert "Source nvml, scope gpu, as the endpoint states them; split by tokens." in text
    assert "endpoint-reported" not in build_report(BenchResult()).render()

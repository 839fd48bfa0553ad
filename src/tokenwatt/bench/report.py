"""The HTML report of a bench result: latency CDFs, throughput and goodput over time, power
timeline and J/token, every energy figure with its source and scope."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tokenwatt.bench.lengths import describe_fit
from tokenwatt.bench.metrics import meets_slos, request_metrics
from tokenwatt.bench.record import RequestRecord
from tokenwatt.bench.results import BenchResult
from tokenwatt.bench.slo import parse_slos
from tokenwatt.errors import ConfigError
from tokenwatt.report.html import HtmlReport
from tokenwatt.report.svg import Series, cdf_chart, line_chart

__all__ = ["build_report", "rate_series", "write_report"]


def rate_series(
    records: Sequence[RequestRecord], bin_s: float, end_s: float
) -> list[tuple[float, float]]:
    """Output tokens per second in bins of ``bin_s`` (each chunk carries its share of tokens)."""
    if bin_s <= 0:
        raise ConfigError(f"bin width must be > 0 s, got {bin_s}")
    bins = [0.0] * (max(math.ceil(end_s / bin_s), 1))
    for r in records:
        if not r.chunk_times_s:
            continue
        per = r.output_tokens / len(r.chunk_times_s)
        for t in r.chunk_times_s:
            i = min(max(int(t / bin_s), 0), len(bins) - 1)
            bins[i] += per
    return [((i + 0.5) * bin_s, v / bin_s) for i, v in enumerate(bins)]


def _ms(values: Sequence[float | None]) -> list[float]:
    return [v * 1e3 for v in values if v is not None]


def build_report(result: BenchResult) -> HtmlReport:
    """The report page of ``result``."""
    cfg = result.config
    title = f"tokenwatt bench: {cfg.get('url', 'endpoint')}"
    rep = HtmlReport(title)
    if result.interrupted:
        rep.paragraph("This run was interrupted: the figures cover the requests that finished.")
    rep.paragraph(
        f"Started {result.started_at}, {result.duration_s:.3g} s; workload "
        f"{cfg.get('workload', {}).get('name', '?')}, load {cfg.get('shape', {})}; "
        f"versions {dict(result.versions)}.",
        note=True,
    )
    s = result.summary
    rep.heading("Summary")
    rows: list[list[Any]] = [
        ["requests measured", s.get("requests")],
        ["completed / failed", f"{s.get('completed')} / {s.get('failed')}"],
        ["request throughput (req/s)", s.get("request_throughput_rps")],
        ["output throughput (tok/s)", s.get("output_throughput_tps")],
        [f"SLO attainment ({s.get('slos') or 'no SLO'})", s.get("slo_attainment")],
        ["request goodput (req/s)", s.get("request_goodput_rps")],
        ["token goodput (tok/s)", s.get("token_goodput_tps")],
    ]
    context = result.workload_stats.get("context")
    if context:
        rows.append(list(describe_fit(context)))
    rep.table(["figure", "value"], rows)
    lat_rows = []
    for name in ("ttft_s", "itl_s", "tpot_s", "e2e_s"):
        p = s.get(name, {})
        lat_rows.append(
            [name.removesuffix("_s").upper()]
            + [
                None if p.get(q) is None else p[q] * 1e3
                for q in ("mean", "p50", "p90", "p95", "p99")
            ]
        )
    rep.table(["latency (ms)", "mean", "p50", "p90", "p95", "p99"], lat_rows)
    if s.get("errors"):
        rep.table(["error kind", "requests"], sorted(s["errors"].items()))

    measured = [r for r in result.records if not r.warmup]
    per = [request_metrics(r) for r in measured]
    ok = [m for m in per if m.ok]
    rep.heading("Latency CDFs")
    rep.svg(
        cdf_chart(
            {"TTFT": _ms([m.ttft_s for m in ok]), "E2E": _ms([m.e2e_s for m in ok])},
            "TTFT and end-to-end latency",
            "milliseconds",
        )
    )
    rep.svg(
        cdf_chart(
            {"TPOT": _ms([m.tpot_s for m in ok]), "ITL": _ms([g for m in ok for g in m.itl_s])},
            "Time per output token and inter-token latency",
            "milliseconds",
        )
    )

    end = max((r.end_s for r in measured), default=0.0)
    bin_s = max(end / 60, 0.1)
    slos = parse_slos(str(s.get("slos", "")))
    good = [r for r, m in zip(measured, per, strict=True) if meets_slos(m, slos)]
    rep.heading("Throughput and goodput over time")
    rep.svg(
        line_chart(
            [
                Series("output tok/s", rate_series(measured, bin_s, end), step=True),
                Series("goodput tok/s", rate_series(good, bin_s, end), step=True, dashed=True),
            ],
            f"Tokens per second ({bin_s:.2g} s bins)",
            "seconds from start",
            "tokens/s",
            y_min=0.0,
        )
    )
    _energy_section(rep, result, measured, bin_s, end)
    _request_energy_section(rep, result)
    return rep


def _request_energy_section(rep: HtmlReport, result: BenchResult) -> None:
    e = result.request_energy
    if e is None:
        return
    rep.heading("Energy per request and session, endpoint-reported")
    rep.paragraph(
        f"Source {e['source']}, scope {e['scope']}, as the endpoint states them; {e['basis']}. "
        f"{e['requests']} completed requests carried a figure, {e['unreported']} did not."
    )
    rows: list[list[Any]] = []
    for label, key in (("J per request", "j_per_request"), ("J per session", "j_per_session")):
        p = e.get(key)
        if p is not None:
            rows.append([label, p["count"], p["mean"], p["p50"], p["p90"], p["p99"]])
    rep.table(["figure", "count", "mean", "p50", "p90", "p99"], rows)


def _energy_section(
    rep: HtmlReport,
    result: BenchResult,
    measured: Sequence[RequestRecord],
    bin_s: float,
    end: float,
) -> None:
    rep.heading("Energy")
    e = result.energy
    if e is None:
        rep.paragraph("Energy was not measured (--energy none, or too few samples).")
        return
    tag = f"source {e['source']}, scope {e['scope']}" + (" (estimate)" if e["estimated"] else "")
    rep.paragraph(f"Every figure below: {tag}.")
    rows: list[list[Any]] = []
    for label, key in (("whole run", "whole_run"), ("steady state", "steady")):
        w = e.get(key)
        if w is not None:
            rows.append(
                [
                    label,
                    w["start_s"],
                    w["end_s"],
                    w["energy_j"],
                    w["avg_power_w"],
                    w["j_per_output_token"],
                    w["output_tokens_per_j"],
                ]
            )
    rep.table(["window", "start s", "end s", "J", "avg W", "J/token", "tokens/J"], rows)
    extra = [
        ["J per request", e.get("j_per_request")],
        ["J per session", e.get("j_per_session")],
        ["goodput requests per J", e.get("good_requests_per_j")],
        ["goodput tokens per J", e.get("good_tokens_per_j")],
        ["idle energy share", e.get("idle_share")],
        ["steady level (requests in flight)", e.get("steady_level")],
        ["endpoint-attributed J (usage)", e.get("endpoint_attributed_j")],
    ]
    fac = e.get("facility")
    if fac is not None:
        m = fac["model"]
        extra += [
            [f"facility energy J (PUE {m['pue']}, {m['name']})", fac["facility_energy_j"]],
            [f"carbon g ({m['carbon_g_per_kwh']} g/kWh)", fac["carbon_g"]],
            [f"cost {m['currency']} ({m['price_per_kwh']}/kWh)", fac["cost"]],
            ["water L", fac["water_l"]],
        ]
    rep.table(["figure", "value"], extra)
    rep.table(
        ["component", "scope", "source", "params"],
        [[c["name"], c["scope"], c["source"], c["params"]] for c in e["components"]],
    )
    timeline = list(result.power_timeline)
    rep.svg(line_chart([Series("power W", timeline)], f"Power ({tag})", "seconds", "W", y_min=0.0))
    tokens = dict(rate_series(measured, bin_s, end))
    jpt: list[tuple[float, float]] = []
    for t, tps in tokens.items():
        near = [w for (x, w) in timeline if abs(x - t) <= bin_s / 2]
        if near and tps > 0:
            jpt.append((t, (sum(near) / len(near)) / tps))
    rep.svg(line_chart([Series("J/token", jpt)], f"J per output token ({tag})", "seconds", "J"))


def write_report(result: BenchResult, path: Path) -> Path:
    """Write the report of ``result`` to ``path``."""
    return build_report(result).write(path)

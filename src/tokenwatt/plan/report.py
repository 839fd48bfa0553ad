"""A self-contained HTML report of plan results: one comparison table, inline SVG timelines.

No scripts, fonts or network: the file opens the same anywhere, offline.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tokenwatt.plan.results import PlanResult

__all__ = ["comparison_rows", "format_energy", "render_html", "write_report"]

_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


_J_PER_WH = 3600.0
_ENERGY_UNITS = (("J", 1.0, ".1f"), ("Wh", _J_PER_WH, ".3f"), ("kWh", 1000 * _J_PER_WH, ".3f"))


def _energy_unit(largest_j: float) -> tuple[str, float, str]:
    """(unit, joules per unit, format) that shows ``largest_j`` with real digits: J below 1 Wh,
    Wh below 1 kWh, kWh above (a tiny CPU run reads 500.0 J, not 0.000 kWh)."""
    if abs(largest_j) < _J_PER_WH:
        return _ENERGY_UNITS[0]
    if abs(largest_j) < 1000 * _J_PER_WH:
        return _ENERGY_UNITS[1]
    return _ENERGY_UNITS[2]


def format_energy(energy_j: float) -> str:
    """``energy_j`` in the unit that fits its magnitude, e.g. ``12.0 J``, ``0.500 Wh``."""
    unit, scale, spec = _energy_unit(energy_j)
    return f"{format(energy_j / scale, spec)} {unit}"


def _small(value: float, spec: str) -> str:
    """``value`` in ``spec``, or 3 significant digits where ``spec`` would round it to zero."""
    return format(value, ".3g") if 0 < abs(value) < 0.01 else format(value, spec)


def _facility_config(r: PlanResult) -> dict[str, Any]:
    facility = r.config.get("facility")
    return facility if isinstance(facility, dict) else {}


def _currency(r: PlanResult) -> str:
    return str(_facility_config(r).get("currency", "USD"))


def _legacy_unset(r: PlanResult, price_key: str) -> bool:
    """Results written before prices became optional stored "not set" as a price of 0."""
    return "price_placeholder" not in r.facility and _facility_config(r).get(price_key) == 0


def _energy_cost(r: PlanResult) -> str:
    cost = r.facility.get("energy_cost")
    if cost is None or _legacy_unset(r, "price_per_kwh"):
        return "not set"
    text = f"{_small(cost, '.2f')} {_currency(r)}"
    if r.facility.get("price_placeholder"):
        text += f" ({r.facility.get('price_per_kwh', 0):g}/kWh placeholder)"
    return text


def _accelerator_cost(r: PlanResult) -> str:
    cost = r.facility.get("accelerator_cost")
    return (
        "not set"
        if cost is None or _legacy_unset(r, "accelerator_hour_price")
        else f"{_small(cost, '.2f')} {_currency(r)}"
    )


def comparison_rows(results: Sequence[PlanResult]) -> list[tuple[str, list[str]]]:
    """(metric, one formatted value per result) rows shared by the HTML and the CLI tables.

    Energy rows share one unit per group (J, Wh or kWh, fitting the largest value); unset
    prices read "not set" and the default energy price is labelled a placeholder."""

    def fmt(values: Sequence[float], spec: str) -> list[str]:
        return [format(v, spec) for v in values]

    def energy_rows(
        names: Sequence[str], series: Sequence[Sequence[float]]
    ) -> list[tuple[str, list[str]]]:
        unit, scale, spec = _energy_unit(max((abs(v) for s in series for v in s), default=0.0))
        return [
            (name.format(unit=unit), fmt([v / scale for v in values], spec))
            for name, values in zip(names, series, strict=True)
        ]

    split = [r.energy_split_j for r in results]
    carbon_g = [r.facility.get("carbon_g", 0.0) for r in results]
    carbon_kg = max((abs(c) for c in carbon_g), default=0.0) >= 1000
    rows: list[tuple[str, list[str]]] = [
        ("requests (completed / arrived)", [f"{r.completed} / {r.arrived}" for r in results]),
        ("dropped", [str(sum(r.dropped.values())) for r in results]),
        ("SLO attainment", fmt([r.slo_attainment * 100 for r in results], ".2f")),
        ("goodput (req/s)", fmt([r.goodput_rps for r in results], ".3f")),
        (
            "TTFT p50 / p99 (s)",
            [
                f"{r.latency_s.get('ttft_p50', 0):.3f} / {r.latency_s.get('ttft_p99', 0):.3f}"
                for r in results
            ],
        ),
        (
            "TPOT p50 / p99 (ms)",
            [
                f"{r.latency_s.get('tpot_p50', 0) * 1e3:.1f} / "
                f"{r.latency_s.get('tpot_p99', 0) * 1e3:.1f}"
                for r in results
            ],
        ),
        *energy_rows(
            ("energy ({unit})", "  busy ({unit})", "  idle ({unit})", "  cold start ({unit})"),
            (
                [r.energy_j for r in results],
                [r.busy_j for r in results],
                [s.get("idle", 0.0) for s in split],
                [s.get("cold_start", 0.0) for s in split],
            ),
        ),
        ("output tokens / J", fmt([r.output_tokens_per_j for r in results], ".3f")),
        ("goodput tokens / J", fmt([r.goodput_tokens_per_j for r in results], ".3f")),
        ("J / request", fmt([r.j_per_request for r in results], ".1f")),
        ("accelerator-hours", [_small(r.accelerator_hours, ".2f") for r in results]),
        ("peak replicas", [str(r.peak_replicas) for r in results]),
        *energy_rows(
            ("facility energy ({unit}, PUE)", "heat reused ({unit}, ERF)"),
            (
                [r.facility.get("facility_energy_j", 0.0) for r in results],
                [r.facility.get("reused_heat_j", 0.0) for r in results],
            ),
        ),
        (
            "carbon (kg CO2)" if carbon_kg else "carbon (g CO2)",
            [_small(c / 1e3 if carbon_kg else c, ".3f") for c in carbon_g],
        ),
        ("energy cost", [_energy_cost(r) for r in results]),
        ("accelerator cost", [_accelerator_cost(r) for r in results]),
        (
            "energy source / scope",
            [f"{r.energy_source.split(' (')[0]} / {r.energy_scope}" for r in results],
        ),
    ]
    return rows


def _polyline(
    xs: Sequence[float], ys: Sequence[float], x_max: float, y_max: float, color: str
) -> str:
    w, h = 640.0, 140.0
    if not xs or x_max <= 0:
        return ""
    y_top = y_max if y_max > 0 else 1.0
    pts = " ".join(
        f"{30 + x / x_max * (w - 40):.1f},{h - 20 - y / y_top * (h - 30):.1f}"
        for x, y in zip(xs, ys, strict=False)
    )
    return f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{pts}"/>'


def _chart(title: str, key: str, results: Sequence[PlanResult], unit: str) -> str:
    series = []
    x_max = 0.0
    y_max = 0.0
    for r in results:
        tl = r.timeline
        xs = [float(x) for x in tl.get("time_s", [])]
        ys = [float(y) for y in tl.get(key, [])]
        series.append((xs, ys))
        if xs:
            x_max = max(x_max, xs[-1] + float(tl.get("interval_s", 0)))
        if ys:
            y_max = max(y_max, max(ys))
    lines = "".join(
        _polyline(xs, ys, x_max, y_max, _COLORS[i % len(_COLORS)])
        for i, (xs, ys) in enumerate(series)
    )
    return (
        f"<figure><figcaption>{html.escape(title)} (max {y_max:.4g} {html.escape(unit)}, "
        f"over {x_max:.0f} s)</figcaption>"
        f'<svg xmlns="http://www.w3.org/2000/svg" width="640" height="140" role="img">'
        f'<line x1="30" y1="120" x2="630" y2="120" stroke="#999"/>'
        f'<line x1="30" y1="10" x2="30" y2="120" stroke="#999"/>{lines}</svg></figure>'
    )


def render_html(results: Sequence[PlanResult], title: str = "tokenwatt plan") -> str:
    """The report as one HTML string."""
    labels = [r.label or f"run {i + 1}" for i, r in enumerate(results)]
    head = "".join(
        f'<th style="color:{_COLORS[i % len(_COLORS)]}">{html.escape(label)}</th>'
        for i, label in enumerate(labels)
    )
    body = "".join(
        f"<tr><td>{html.escape(name)}</td>"
        + "".join(f"<td>{html.escape(v)}</td>" for v in values)
        + "</tr>"
        for name, values in comparison_rows(results)
    )
    charts = "".join(
        _chart(t, k, results, u)
        for t, k, u in (
            ("Mean accelerator power", "power_w", "W"),
            ("Replicas on", "replicas", "replicas"),
            ("Requests waiting", "queue", "requests"),
            ("Arrivals per interval", "arrivals", "requests"),
        )
    )
    sources = (
        "<ul>"
        + "".join(
            f"<li>{html.escape(label)}: {html.escape(r.energy_source)}</li>"
            for label, r in zip(labels, results, strict=True)
        )
        + "</ul>"
    )
    note = (
        "Energy is simulated from the power model named in each column (published figures, not "
        "measurements); scope: accelerators. Facility rows apply PUE, ERF and carbon intensity."
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:sans-serif;margin:2em;max-width:60em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;"
        "text-align:right}td:first-child{text-align:left}figure{margin:1em 0}"
        "</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(note)}</p>"
        f"<table><tr><th>metric</th>{head}</tr>{body}</table>{sources}{charts}</body></html>"
    )


def write_report(
    results: Sequence[PlanResult], path: str | Path, title: str = "tokenwatt plan"
) -> None:
    """Write the HTML report of ``results`` to ``path``."""
    Path(path).write_text(render_html(results, title), encoding="utf-8")

"""What `tokenwatt plan` prints: result tables with notes on unset prices, the preset tables,
and a calibrated profile's summary."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

from tokenwatt.plan.hardware import ACCELERATOR_PRESETS, MODEL_PRESETS, POWER_PRESETS
from tokenwatt.plan.report import comparison_rows
from tokenwatt.plan.results import PlanResult

from ._common import console, err_console

__all__ = ["print_presets", "print_profile", "print_results"]


def print_results(results: Sequence[PlanResult], title: str) -> None:
    """One column per result (its label, else ``run N``), then the price notes on stderr."""
    table = Table(title=title)
    table.add_column("metric")
    for i, r in enumerate(results):
        table.add_column(r.label or f"run {i + 1}", justify="right")
    for name, values in comparison_rows(results):
        table.add_row(name, *values)
    console.print(table)
    _price_notes(results)


def _price_notes(results: Sequence[PlanResult]) -> None:
    """Say which costs rest on a placeholder or an unset price, and how to set them."""
    if any(r.facility.get("price_placeholder") for r in results):
        price = next(r.facility.get("price_per_kwh", 0) for r in results)
        err_console.print(
            f"energy cost uses a placeholder price of {price:g}/kWh (tokenwatt.energy's default, "
            "as in measure and bench); set yours with --set facility.price_per_kwh=PRICE"
        )
    if any("accelerator_cost" not in r.facility for r in results):
        err_console.print(
            "accelerator cost: not set; price it with --set facility.accelerator_hour_price=PRICE"
        )


def _table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    return table


def print_presets() -> None:
    """The accelerator, power and model presets, with the source of each figure."""
    accelerators = [
        (
            name,
            f"{a.memory_bytes / 1e9:.0f}",
            f"{a.bandwidth_bytes_per_s / 1e12:.2f}",
            f"{a.flops_per_s / 1e12:.0f}",
            f"{a.tdp_w:.0f}",
        )
        for name, a in ACCELERATOR_PRESETS.items()
    ]
    heads = ["name", "memory GB", "bandwidth TB/s", "BF16 TFLOP/s", "TDP W"]
    console.print(_table("accelerator presets (--accelerator)", heads, accelerators))
    power = [
        (
            name,
            f"{p.idle_w:.0f} / {p.prefill_w:.0f} / {p.decode_min_w:.0f}-{p.decode_max_w:.0f}",
            f"{p.host_w:.0f}",
            p.scope,
        )
        for name, p in POWER_PRESETS.items()
    ]
    heads = ["name", "idle / prefill / decode W", "host W", "scope"]
    title = "power presets (--set power=NAME; default: the accelerator's)"
    console.print(_table(title, heads, power))
    for name, a in ACCELERATOR_PRESETS.items():
        console.print(f"{name}: {a.source}")
    for name, p in POWER_PRESETS.items():
        console.print(f"power {name}: {p.source}")
    models = [
        (
            name,
            f"{m.params / 1e9:.2f}B",
            f"{m.weight_bytes / 1e9:.2f}",
            f"{m.kv_bytes_per_token:.0f}",
        )
        for name, m in MODEL_PRESETS.items()
    ]
    heads = ["name", "params", "weight GB", "KV bytes/token"]
    console.print(_table("model presets", heads, models))


def print_profile(profile: dict[str, Any], path: Path) -> None:
    """Where a calibrated profile went, its points, serving overhead and power source."""
    console.print(
        f"profile: {path} ({len(profile['prefill'])} prefill, "
        f"{len(profile['decode'])} decode points)"
    )
    serving = profile.get("serving") or {}
    quantiles = serving.get("request_quantiles_s")
    if quantiles:
        console.print(
            f"request overhead: median {serving['request_s'] * 1e3:.2f} ms; quantiles "
            f"{quantiles[0] * 1e3:.2f}-{quantiles[-1] * 1e3:.2f} ms"
        )
    power = profile.get("power")
    if power:
        console.print(f"power: {power['source']}")

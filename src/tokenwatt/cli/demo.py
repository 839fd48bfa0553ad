"""`tokenwatt demo`: the whole story in one command, offline, on this machine."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from tokenwatt.demo import BenchLeg, DemoConfig, DemoResult, run_demo

from ._common import console, user_errors

__all__ = ["register"]


def _num(value: Any, fmt: str = ".3g", scale: float = 1.0, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if scale != 1.0:
        value = value * scale
    return f"{value:{fmt}}{unit}"


def _ratio(a: Any, b: Any) -> str:
    if not a or not b or (isinstance(a, float) and math.isnan(a)):
        return "-"
    return f"{a / b:.2f}x"


def _get(d: Mapping[str, Any] | None, *keys: str) -> Any:
    for key in keys:
        if not isinstance(d, Mapping):
            return None
        d = d.get(key)
    return d


def meters_table(result: DemoResult) -> Table:
    """Which meters the engine used, and why the others were skipped."""
    table = Table(title="1. measure: energy meters on this machine")
    for col in ("component", "source", "scope"):
        table.add_column(col)
    for name, source, scope in result.meters:
        table.add_row(name, source, scope)
    for backend, why in result.skipped_meters.items():
        table.add_row(f"[dim]{backend}[/]", "[dim]not used[/]", f"[dim]{why}[/]")
    return table


def bench_table(off: BenchLeg, on: BenchLeg) -> Table:
    """Warehouse off vs on, over HTTP against the reference engine, same workload."""
    e = off.energy or {}
    tag = escape(
        f"[{e.get('source', '?')}, {e.get('scope', '?')}"
        + (", estimate]" if e.get("estimated") else "]")
    )
    table = Table(title="2-3. serve + bench: agentic sessions, warehouse off vs on")
    table.add_column("figure")
    table.add_column("off", justify="right")
    table.add_column("on", justify="right")
    table.add_column("on / off", justify="right")

    def row(label: str, a: Any, b: Any, **fmt: Any) -> None:
        table.add_row(label, _num(a, **fmt), _num(b, **fmt), _ratio(b, a))

    so, sn = off.summary, on.summary
    row("requests completed", so.get("completed"), sn.get("completed"), fmt="d")
    row("TTFT p50 (ms)", _get(so, "ttft_s", "p50"), _get(sn, "ttft_s", "p50"), scale=1e3)
    row("TTFT p99 (ms)", _get(so, "ttft_s", "p99"), _get(sn, "ttft_s", "p99"), scale=1e3)
    row("TPOT p50 (ms)", _get(so, "tpot_s", "p50"), _get(sn, "tpot_s", "p50"), scale=1e3)
    row("SLO attainment", so.get("slo_attainment"), sn.get("slo_attainment"))
    row(
        f"energy, J {tag}",
        _get(off.energy, "whole_run", "energy_j"),
        _get(on.energy, "whole_run", "energy_j"),
    )
    row(
        f"J / output token {tag}",
        _get(off.energy, "whole_run", "j_per_output_token"),
        _get(on.energy, "whole_run", "j_per_output_token"),
    )
    row(
        f"goodput tokens / J {tag}",
        _get(off.energy, "good_tokens_per_j"),
        _get(on.energy, "good_tokens_per_j"),
    )
    row(
        "prompt tokens served by the warehouse",
        0,
        on.warehouse.get("tokens_served"),
        fmt=".0f",
    )
    return table


def plan_table(result: DemoResult) -> Table:
    """The planner's policies side by side (accelerator energy from public power presets)."""
    first = result.plan[0].result
    table = Table(
        title=(
            f"4. plan: {first.arrived} chat requests over {first.duration_s / 3600:.2g} "
            "simulated hours, fleet policies"
        ),
        caption=escape(f"accelerator energy [{first.energy_source}; scope {first.energy_scope}]"),
    )
    for col in ("policy", "SLO", "J/req", "tok/J", "idle", "GPU-h", "fac. kWh", "kgCO2", "cost"):
        if col == "policy":
            table.add_column(col, min_width=12, no_wrap=True)
        else:
            table.add_column(col, justify="right")
    for leg in result.plan:
        r = leg.result
        split = r.energy_split_j
        idle = (split.get("idle", 0.0) + split.get("cold_start", 0.0)) / r.energy_j
        fac = r.facility
        table.add_row(
            leg.label,
            _num(r.slo_attainment, ".0%"),
            _num(r.j_per_request, ".0f"),
            _num(r.output_tokens_per_j, ".3g"),
            _num(idle, ".0%"),
            _num(r.accelerator_hours, ".2g"),
            _num(fac.get("facility_energy_j"), ".2g", 1 / 3.6e6),
            _num(fac.get("carbon_g"), ".2g", 1e-3),
            _num(fac.get("energy_cost"), ".2g"),
        )
    return table


def print_result(result: DemoResult) -> None:
    """The demo's tables and where its reports are."""
    console.print(meters_table(result))
    off, on = result.bench
    console.print(bench_table(off, on))
    verdict = "[green]identical[/]" if result.outputs_identical else "[bold red]DIFFERENT[/]"
    console.print(
        f"warehouse correctness: greedy tokens off / on-cold / on-warm are {verdict} "
        f"({result.identity_cached_tokens} prompt tokens came from the warehouse when warm)"
    )
    console.print(plan_table(result))
    fac = result.facility
    static = result.plan[0].result
    days = static.facility.get("facility_energy_j", 0.0) / 3.6e6 / fac["household_kwh_per_day"]
    console.print(
        f"facility view: preset {fac['name']} (PUE {fac['pue']}, ERE {fac['ere']:.2f}, "
        f"{fac['carbon_g_per_kwh']} gCO2/kWh, {fac['price_per_kwh']} {fac['currency']}/kWh, a "
        "placeholder price; "
        f"source: {fac['source']}). The static fleet's run uses {days:.2g} days of an average "
        f"household's electricity ({fac['household_kwh_per_day']:.1f} kWh/day). Override the "
        "preset with the measure, bench and plan commands' facility options.",
        highlight=False,
    )
    console.print("[bold]reports[/] (open in a browser, no network needed):")
    for leg in result.bench:
        console.print(f"  bench, {leg.label}: {leg.report_path}", highlight=False)
    for p in result.plan:
        console.print(f"  plan, {p.label}: {p.report_path}", highlight=False)


def demo(
    out: Path = typer.Option(Path("tokenwatt-demo"), "--out", "-o", help="Output folder."),
    sessions: int = typer.Option(2, help="Concurrent agentic sessions per bench leg."),
    turns: int = typer.Option(6, help="Turns per session."),
    plan_requests: int = typer.Option(20_000, help="Requests the planner simulates."),
    facility: str = typer.Option("uptime-2024-average", help="Facility preset."),
) -> None:
    """Run the whole story offline: measure, serve, bench (warehouse off/on), plan."""
    with user_errors():
        config = DemoConfig(
            out_dir=out,
            sessions=sessions,
            turns=turns,
            plan_requests=plan_requests,
            facility=facility,
        )
        with console.status("starting") as status:

            def progress(line: str) -> None:
                console.print(f"[bold cyan]>[/] {line}", highlight=False)
                status.update(line)

            result = run_demo(config, progress)
    print_result(result)
    if not result.outputs_identical:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``tokenwatt demo`` to ``app``."""
    app.command("demo")(demo)

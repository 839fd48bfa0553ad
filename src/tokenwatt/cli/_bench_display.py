"""How `tokenwatt bench` shows things: the progress bar of a run and the rich tables of a
result, a sweep and a comparison (every energy figure with its source and scope)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tokenwatt.bench.lengths import describe_fit
from tokenwatt.bench.load import LoadShape
from tokenwatt.bench.record import RequestRecord
from tokenwatt.bench.results import BenchResult, Comparison

from ._common import err_console

__all__ = [
    "compare_table",
    "fmt",
    "progress",
    "request_energy_rows",
    "summary_table",
    "sweep_table",
]


def fmt(value: Any, unit: str = "", scale: float = 1.0) -> str:
    """``value`` (times ``scale``) to 4 significant digits with ``unit``; ``-`` when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, int | float):
        return f"{value * scale:.4g}{unit}"
    return str(value)


def summary_table(result: BenchResult) -> Table:
    """The run's headline figures, each energy figure with its source and scope."""
    s = result.summary
    table = Table(
        title="tokenwatt bench" + (" (interrupted: partial)" if result.interrupted else "")
    )
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows: list[tuple[str, str]] = [
        ("requests (ok / failed)", f"{s.get('completed', 0)} / {s.get('failed', 0)}"),
        ("errors by kind", ", ".join(f"{k}={v}" for k, v in s.get("errors", {}).items()) or "-"),
        ("request throughput", fmt(s.get("request_throughput_rps"), " req/s")),
        ("output throughput", fmt(s.get("output_throughput_tps"), " tok/s")),
    ]
    rows += _workload_rows(result.workload_stats)
    for name in ("ttft_s", "tpot_s", "itl_s", "e2e_s"):
        p = s.get(name, {})
        label = name.removesuffix("_s").upper()
        rows.append(
            (
                f"{label} p50 / p90 / p99",
                " / ".join(fmt(p.get(q), " ms", 1e3) for q in ("p50", "p90", "p99")),
            )
        )
    rows += [
        (f"SLO attainment ({s.get('slos') or 'no SLO'})", fmt(s.get("slo_attainment"))),
        (
            "goodput",
            fmt(s.get("request_goodput_rps"), " req/s")
            + ", "
            + fmt(s.get("token_goodput_tps"), " tok/s"),
        ),
    ]
    if result.energy is not None:
        rows += _energy_rows(result.energy)
    rows += request_energy_rows(result.request_energy)
    for label, value in rows:
        table.add_row(label, value)
    return table


def _workload_rows(stats: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Token-count approximation, context fit and skipped trace rows, where there are any."""
    rows: list[tuple[str, str]] = []
    if stats.get("token_counts"):
        rows.append(("prompt token counts", str(stats["token_counts"])))
    context = stats.get("context")
    if context:
        rows.append(describe_fit(context))
    skipped = stats.get("skipped") or {}
    if skipped:
        detail = ", ".join(f"{k}={v}" for k, v in sorted(skipped.items()))
        rows.append(("trace rows skipped", f"{sum(skipped.values())} ({detail})"))
    return rows


def _energy_rows(e: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The sampled energy figures under one header row naming their source and scope."""
    estimate = " (estimate)" if e["estimated"] else ""
    whole = e["whole_run"]
    rows = [
        (f"[bold]energy: {escape(e['source'])}, scope {e['scope']}{estimate}", ""),
        ("  energy, whole run", fmt(whole["energy_j"], " J")),
        ("  J / output token", fmt(whole["j_per_output_token"])),
        ("  output tokens / J", fmt(whole["output_tokens_per_j"])),
        ("  goodput tokens / J", fmt(e["good_tokens_per_j"])),
        ("  J / request", fmt(e["j_per_request"])),
        ("  idle energy share", fmt(e["idle_share"])),
    ]
    if e.get("j_per_session") is not None:
        rows.append(("  J / session", fmt(e["j_per_session"])))
    steady = e.get("steady")
    if steady is not None:
        rows.append(
            (
                f"  J / output token, steady state (level {e['steady_level']})",
                fmt(steady["j_per_output_token"]),
            )
        )
    fac = e.get("facility")
    if fac is not None:
        model = fac["model"]
        rows += [
            (
                f"  facility energy (PUE {model['pue']}, {model['name']})",
                fmt(fac["facility_energy_j"], " J"),
            ),
            (f"  carbon ({model['carbon_g_per_kwh']} g/kWh)", fmt(fac["carbon_g"], " g")),
            (
                f"  cost ({model['price_per_kwh']:g}/kWh placeholder, {model['currency']})",
                fmt(fac["cost"], f" {model['currency']}"),
            ),
        ]
    return rows


def request_energy_rows(energy: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """Rows of the endpoint's own per-request and per-session joules, labelled as it states
    them; none when it reported none."""
    if energy is None:
        return []
    per_request = energy["j_per_request"]
    rows = [
        ("[bold]endpoint energy per request", ""),
        (f"  source {escape(energy['source'])}, scope {escape(energy['scope'])}", ""),
        ("  (its meter's step J split by tokens)", ""),
        (
            "  J / request p50 / p90 / mean",
            " / ".join(fmt(per_request[q]) for q in ("p50", "p90", "mean"))
            + f" ({energy['requests']} requests)",
        ),
    ]
    per_session = energy.get("j_per_session")
    if per_session is not None:
        rows.append(
            (
                "  J / session p50 / mean",
                " / ".join(fmt(per_session[q]) for q in ("p50", "mean"))
                + f" ({energy['sessions']} sessions)",
            )
        )
    return rows


def sweep_table(points: Sequence[tuple[LoadShape, BenchResult]]) -> Table:
    """One row per swept load: throughput, SLO attainment and J per output token."""
    table = Table(title="sweep")
    for col in ("load", "req/s", "tok/s", "SLO attainment", "J/token"):
        table.add_column(col, justify="right")
    for shape, result in points:
        e = result.energy or {}
        table.add_row(
            shape.label,
            fmt(result.summary.get("request_throughput_rps")),
            fmt(result.summary.get("output_throughput_tps")),
            fmt(result.summary.get("slo_attainment")),
            fmt((e.get("whole_run") or {}).get("j_per_output_token")),
        )
    return table


def compare_table(title: str, rows: Sequence[Comparison]) -> Table:
    """Two results side by side, each ratio B / A marked better or worse."""
    table = Table(title=title)
    for col in ("figure", "A", "B", "B / A"):
        table.add_column(col, justify="right" if col != "figure" else "left")
    for row in rows:
        ratio, better = row.ratio, row.better
        mark = "" if better is None else (" [green]better" if better else " [red]worse")
        table.add_row(
            row.label, fmt(row.a), fmt(row.b), (fmt(ratio) + "x" + mark) if ratio else "-"
        )
    return table


@contextlib.contextmanager
def progress(total: int | None, quiet: bool) -> Iterator[Callable[[RequestRecord], None]]:
    """A progress bar on stderr counting requests and errors; yields the per-record callback
    (one that does nothing when ``quiet``)."""
    if quiet:
        yield lambda record: None
        return
    columns = [
        TextColumn("[bold]bench"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[errors]} errors"),
    ]
    with Progress(*columns, console=err_console, transient=False) as bar:
        task = bar.add_task("bench", total=total, errors=0)
        errors = 0

        def on_record(record: RequestRecord) -> None:
            nonlocal errors
            errors += record.error is not None
            bar.update(task, advance=1, errors=errors)

        yield on_record

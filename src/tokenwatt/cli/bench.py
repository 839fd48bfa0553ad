"""`tokenwatt bench run|compare`: goodput per joule of any OpenAI-compatible endpoint.

A thin layer over tokenwatt.bench: options are resolved once here into a ``BenchConfig``; the
option checks only a command line can make are in ``_bench_options``, the tables in
``_bench_display``.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

import typer

from tokenwatt.bench.bench import planned_requests, run_configured
from tokenwatt.bench.client import ClientConfig, EndpointError, find_model
from tokenwatt.bench.config import BenchConfig, load_shape
from tokenwatt.bench.load import LoadShape, OpenLoop
from tokenwatt.bench.output import write_run
from tokenwatt.bench.results import (
    BenchResult,
    compare,
    energy_alike,
    errors_by_kind,
    load_result,
)
from tokenwatt.bench.slo import parse_slos
from tokenwatt.bench.sweep import run_sweep, search_max_goodput, shape_dirname
from tokenwatt.bench.workloads import BENCH_WORKLOADS, WorkloadOptions, build_workload
from tokenwatt.errors import ConfigError

from ._bench_display import compare_table, progress, summary_table, sweep_table
from ._bench_options import check_applies, check_ranges, parse_numbers, parse_search_rate
from ._common import console, err_console, fail, user_errors

__all__ = ["register", "summary_table"]

bench_app = typer.Typer(
    help="Benchmark an OpenAI-compatible endpoint: latency, SLO goodput and goodput per joule.",
    no_args_is_help=True,
)


@bench_app.command("run")
def run(
    ctx: typer.Context,
    url: str = typer.Option(..., "--url", help="Endpoint root, e.g. http://127.0.0.1:8000."),
    workload: str = typer.Option(
        "chat", "--workload", "-w", help=f"One of {', '.join(BENCH_WORKLOADS)}."
    ),
    trace: Path | None = typer.Option(None, "--trace", help="Trace file for --workload trace."),
    num_requests: int = typer.Option(
        100, "--num-requests", "-n", help="Measured requests (agentic: --sessions x --turns)."
    ),
    rate: float | None = typer.Option(None, "--rate", help="Open loop: requests per second."),
    concurrency: int | None = typer.Option(
        None,
        "--concurrency",
        "-c",
        help="Closed loop: requests in flight, default 1 (agentic: sessions at once, default 4).",
    ),
    arrival: str = typer.Option("poisson", "--arrival", help="constant, poisson or gamma."),
    burstiness: float = typer.Option(1.0, "--burstiness", help="Gamma shape (1 = Poisson)."),
    speedup: float | None = typer.Option(None, "--speedup", help="Trace replay speed-up."),
    duration: float | None = typer.Option(None, "--duration", help="Stop sending after S seconds."),
    warmup: int = typer.Option(0, "--warmup", help="Warm-up requests (not measured)."),
    slo: str = typer.Option("", "--slo", help='SLOs, e.g. "ttft<=1s,tpot<=100ms".'),
    energy: str = typer.Option(
        "local",
        "--energy",
        help="local (this machine's meters, whole machine), endpoint (its /metrics) or none.",
    ),
    metrics_url: str | None = typer.Option(None, "--metrics-url", help="Energy /metrics URL."),
    facility: str = typer.Option("uptime-2024-average", "--facility", help="Facility preset."),
    api: str = typer.Option("completions", "--api", help="completions or chat."),
    model: str | None = typer.Option(
        None, "--model", help="Model name sent in requests (default: the endpoint's first model)."
    ),
    api_key: str | None = typer.Option(
        None, "--api-key", envvar="OPENAI_API_KEY", help="Bearer key."
    ),
    timeout: float = typer.Option(600.0, "--timeout", help="Per-request timeout, seconds."),
    stall_timeout: float = typer.Option(60.0, "--stall-timeout", help="Max silence, seconds."),
    ignore_eos: bool = typer.Option(
        False, "--ignore-eos", help="Send ignore_eos (vLLM, tokenwatt)."
    ),
    max_input_tokens: int | None = typer.Option(None, "--max-input-tokens", help="Clamp prompts."),
    max_output_tokens: int | None = typer.Option(
        None, "--max-output-tokens", help="Clamp answers."
    ),
    tokenizer: str | None = typer.Option(
        None,
        "--tokenizer",
        help="Endpoint tokenizer for exact prompt lengths: 'bytes' (tokenwatt serve presets) or "
        "a local tokenizer directory. Default: about one token per word (stated in results).",
    ),
    sessions: int = typer.Option(8, "--sessions", help="Agentic sessions to generate."),
    turns: int = typer.Option(10, "--turns", help="Turns per agentic session."),
    seed: int = typer.Option(0, "--seed", help="Workload and arrival seed."),
    sweep: str | None = typer.Option(
        None, "--sweep", help="Comma-separated rates (with --rate) or concurrencies to sweep."
    ),
    search: str | None = typer.Option(
        None, "--search-rate", help="LO:HI: find the highest rate meeting --target (bisection)."
    ),
    target: float = typer.Option(0.9, "--target", help="SLO attainment the search must meet."),
    out: Path = typer.Option(Path("bench-out"), "--out", "-o", help="Output directory."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or table."),
) -> None:
    """Run a workload against an endpoint; write result.json, requests.csv and report.html."""
    with user_errors():
        check_ranges(num_requests, sessions, turns, timeout, stall_timeout)
        check_applies(ctx)
        slos = parse_slos(slo)
        shape = load_shape(workload, rate, concurrency, arrival, burstiness, speedup, seed)
        if out.exists() and not out.is_dir():
            # Checked now: finding it out after the run would lose the run's results.
            raise ConfigError(f"--out {out} is a file; give a folder (created if missing)")
        client = ClientConfig(
            base_url=url,
            api=api,  # type: ignore[arg-type]  # ClientConfig validates the choice
            model=model or "default",
            api_key=api_key,
            timeout_s=timeout,
            stall_timeout_s=stall_timeout,
            ignore_eos=ignore_eos,
        )
        measured = WorkloadOptions(
            name=workload,
            num_requests=num_requests,
            seed=seed,
            trace=trace,
            sessions=sessions,
            turns=turns,
            max_input_tokens=max_input_tokens,
            max_output_tokens=max_output_tokens,
            tokenizer=tokenizer,
            # A fresh salt per run: a server's prefix cache cannot reuse an earlier run's prompts.
            salt=secrets.token_hex(4),
        )
        config = BenchConfig.build(
            measured,
            shape,
            warmup_requests=warmup,
            duration_s=duration,
            client=client,
            slos=slos,
            energy=energy,  # type: ignore[arg-type]  # BenchConfig validates the choice
            metrics_url=metrics_url,
            facility=facility,
        )
        sweep_values = None if sweep is None else parse_numbers(sweep, "--sweep")
        search_bounds = None if search is None else parse_search_rate(search, slos)
        if model is None or max_input_tokens is None:
            # Asked only once every option is valid: a bad option must not wait on the network.
            config = _fit_to_endpoint(config, model)

        finished: list[BenchResult] = []

        async def one(s: LoadShape, out_dir: Path) -> BenchResult:
            result = await _run_once(replace(config, shape=s), quiet)
            _write(result, out_dir, quiet)
            finished.append(result)
            return result

        main: Coroutine[Any, Any, BenchResult | None]
        if search_bounds is not None:
            base = (
                shape if isinstance(shape, OpenLoop) else OpenLoop(1.0, arrival, burstiness, seed)  # type: ignore[arg-type]
            )
            main = _search(search_bounds, target, base, one, out)
        elif sweep_values is not None:
            main = _sweep(sweep_values, shape, one, out)
        else:
            main = one(shape, out)
        try:
            outcome = asyncio.run(main)
        except KeyboardInterrupt:
            msg = "interrupted: results of finished and interrupted runs are written"
            raise fail(msg, 130) from None
        if isinstance(outcome, BenchResult) and outcome.interrupted:
            raise fail("interrupted: the partial result is written", 130)
        if finished and not any(r.summary.get("completed") for r in finished):
            kinds = ", ".join(f"{k}={v}" for k, v in errors_by_kind(finished).items())
            raise fail(f"no request completed ({kinds or 'nothing sent'}); results written", 1)


def _fit_to_endpoint(config: BenchConfig, model: str | None) -> BenchConfig:
    """``config`` with what the endpoint says of ``model`` (None: of its first model, which
    the run then uses, saying so)."""
    client = config.client
    try:
        info, note = asyncio.run(find_model(client.base_url, client.api_key, model))
    except EndpointError as exc:
        raise fail(str(exc), 1) from None
    if note is not None:
        message = f"note: {note}; max_model_len unknown, prompts not clamped"
        err_console.print(message, highlight=False)
    if model is None and info is not None:
        console.print(f"using model {info.id!r} (the endpoint's first model)")
    return config.fitted_to(info, adopt_model=model is None)


async def _run_once(config: BenchConfig, quiet: bool) -> BenchResult:
    """One run with a progress bar; on Ctrl-C the partial result comes back, marked so."""
    workload = build_workload(config.workload)
    with progress(planned_requests(config.limits, workload.requests), quiet) as on_record:
        return await run_configured(config, workload, on_record)


def _write(result: BenchResult, out: Path, quiet: bool) -> None:
    """Write the run's folder; print its table and first errors (unless ``quiet``) and paths."""
    paths = write_run(result, out)
    if not quiet:
        console.print(summary_table(result))
        errors = result.first_errors()
        if errors:
            console.print("first error of each kind:", highlight=False)
            for kind, message in errors.items():
                console.print(f"  {kind}: {message[:200]}", highlight=False, soft_wrap=True)
    console.print(f"wrote {paths['json']}, {paths['csv']}, {paths['report']}", highlight=False)


async def _sweep(
    values: list[float],
    shape: LoadShape,
    one: Callable[[LoadShape, Path], Awaitable[BenchResult]],
    out: Path,
) -> BenchResult | None:
    """Run each swept load into its own folder and print the sweep table; the interrupted
    run's result, if one was."""

    async def run_at(s: LoadShape) -> BenchResult:
        return await one(s, out / shape_dirname(s))

    points = await run_sweep(run_at, shape, values)
    console.print(sweep_table(points))
    last = points[-1][1] if points else None
    return last if last is not None and last.interrupted else None


async def _search(
    bounds: tuple[float, float],
    target: float,
    base: OpenLoop,
    one: Callable[[LoadShape, Path], Awaitable[BenchResult]],
    out: Path,
) -> BenchResult | None:
    """Search the highest rate meeting ``target``, each probe a run in its own folder."""

    async def run_at(s: OpenLoop) -> BenchResult:
        return await one(s, out / shape_dirname(s))

    found = await search_max_goodput(run_at, base, bounds[0], bounds[1], target)
    console.print(
        f"max goodput rate: {found.rate_rps:.4g} req/s at attainment {found.attainment:.3f} "
        f"(target {target}); probes: " + ", ".join(f"{r:.4g}->{a:.3f}" for r, a in found.probes),
        highlight=False,
    )
    return None


@bench_app.command("compare")
def compare_cmd(
    a: Path = typer.Argument(..., help="First result.json (the baseline)."),
    b: Path = typer.Argument(..., help="Second result.json."),
) -> None:
    """Print two results side by side with ratios (B / A)."""
    with user_errors():
        ra, rb = load_result(a), load_result(b)
    console.print(compare_table(f"{a} vs {b}", compare(ra, rb)))
    for name, r in (("A", ra), ("B", rb)):
        if r.energy is not None:
            console.print(
                f"{name} energy: {r.energy['source']}, scope {r.energy['scope']}", highlight=False
            )
    if not energy_alike(ra, rb):
        console.print(
            "[yellow]warning:[/] the energy figures are not like for like (different sources or "
            "scopes): their ratios compare different measurements",
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    """Add the ``bench`` group to the root app."""
    app.add_typer(bench_app, name="bench")

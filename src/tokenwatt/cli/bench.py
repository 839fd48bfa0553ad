"""`tokenwatt bench run|compare`: goodput per joule of any OpenAI-compatible endpoint.

A thin layer over tokenwatt.bench: options are resolved once here into library config objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tokenwatt.bench.bench import run_bench
from tokenwatt.bench.client import ClientConfig, EndpointError, ModelInfo, OpenAIClient, list_models
from tokenwatt.bench.energy_sources import EnergySource, MeterSource, PrometheusSource
from tokenwatt.bench.lengths import describe_fit
from tokenwatt.bench.load import ClosedLoop, LoadShape, OpenLoop, Sessions, TraceReplay
from tokenwatt.bench.record import RequestRecord
from tokenwatt.bench.report import write_report
from tokenwatt.bench.results import BenchResult, compare, load_result
from tokenwatt.bench.runner import LoadRunner, RunLimits
from tokenwatt.bench.slo import SloSet, parse_slos
from tokenwatt.bench.sweep import search_max_goodput, shape_dirname, sweep_shapes
from tokenwatt.bench.workloads import BENCH_WORKLOADS, WorkloadOptions, build_workload
from tokenwatt.energy.detect import detect_meters
from tokenwatt.energy.facility import FacilityModel, facility_preset
from tokenwatt.errors import ConfigError

from ._common import console, err_console, fail, user_errors

__all__ = ["register"]

bench_app = typer.Typer(
    help="Benchmark an OpenAI-compatible endpoint: latency, SLO goodput and goodput per joule.",
    no_args_is_help=True,
)


def _shape(
    workload: str,
    rate: float | None,
    concurrency: int | None,
    arrival: str,
    burstiness: float,
    speedup: float | None,
    seed: int,
) -> LoadShape:
    if rate is not None and concurrency is not None and workload != "agentic":
        raise ConfigError("give either --rate (open loop) or --concurrency (closed loop), not both")
    if workload == "agentic" and rate is not None:
        raise ConfigError(
            "--rate does not apply to --workload agentic: sessions are closed loops; "
            "set how many run at once with --concurrency"
        )
    if speedup is not None and workload != "trace":
        raise ConfigError("--speedup applies only to --workload trace (it compresses trace time)")
    if workload == "agentic":
        return Sessions(4 if concurrency is None else concurrency)
    if rate is not None:
        return OpenLoop(rate, arrival, burstiness, seed)  # type: ignore[arg-type]
    if workload == "trace" and concurrency is None:
        return TraceReplay(speedup or 1.0)
    return ClosedLoop(1 if concurrency is None else concurrency)


def _energy_source(
    energy: str, url: str, metrics_url: str | None
) -> tuple[EnergySource | None, str]:
    if energy == "none":
        return None, "none"
    if energy == "endpoint":
        target = metrics_url or url.rstrip("/").removesuffix("/v1") + "/metrics"
        return PrometheusSource(target), f"endpoint:{target}"
    if energy == "local":
        # The endpoint usually runs beside the client: count the whole machine, not this process.
        return MeterSource(detect_meters(cpu_mode="machine")), "local"
    raise ConfigError(f"unknown energy source {energy!r}; use local, endpoint or none")


def _fmt(value: Any, unit: str = "", scale: float = 1.0) -> str:
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
        ("request throughput", _fmt(s.get("request_throughput_rps"), " req/s")),
        ("output throughput", _fmt(s.get("output_throughput_tps"), " tok/s")),
    ]
    stats = result.workload_stats
    if stats.get("token_counts"):
        rows.append(("prompt token counts", str(stats["token_counts"])))
    context = stats.get("context")
    if context:
        rows.append(describe_fit(context))
    skipped = stats.get("skipped") or {}
    if skipped:
        detail = ", ".join(f"{k}={v}" for k, v in sorted(skipped.items()))
        rows.append(("trace rows skipped", f"{sum(skipped.values())} ({detail})"))
    for name in ("ttft_s", "tpot_s", "itl_s", "e2e_s"):
        p = s.get(name, {})
        label = name.removesuffix("_s").upper()
        rows.append(
            (
                f"{label} p50 / p90 / p99",
                " / ".join(_fmt(p.get(q), " ms", 1e3) for q in ("p50", "p90", "p99")),
            )
        )
    rows += [
        (f"SLO attainment ({s.get('slos') or 'no SLO'})", _fmt(s.get("slo_attainment"))),
        (
            "goodput",
            _fmt(s.get("request_goodput_rps"), " req/s")
            + ", "
            + _fmt(s.get("token_goodput_tps"), " tok/s"),
        ),
    ]
    e = result.energy
    if e is not None:
        estimate = " (estimate)" if e["estimated"] else ""
        # One header row names the source and scope every energy row below it carries.
        rows.append((f"[bold]energy: {escape(e['source'])}, scope {e['scope']}{estimate}", ""))
        whole = e["whole_run"]
        rows += [
            ("  energy, whole run", _fmt(whole["energy_j"], " J")),
            ("  J / output token", _fmt(whole["j_per_output_token"])),
            ("  output tokens / J", _fmt(whole["output_tokens_per_j"])),
            ("  goodput tokens / J", _fmt(e["good_tokens_per_j"])),
            ("  J / request", _fmt(e["j_per_request"])),
            ("  idle energy share", _fmt(e["idle_share"])),
        ]
        if e.get("j_per_session") is not None:
            rows.append(("  J / session", _fmt(e["j_per_session"])))
        steady = e.get("steady")
        if steady is not None:
            rows.append(
                (
                    f"  J / output token, steady state (level {e['steady_level']})",
                    _fmt(steady["j_per_output_token"]),
                )
            )
        fac = e.get("facility")
        if fac is not None:
            model = fac["model"]
            rows += [
                (
                    f"  facility energy (PUE {model['pue']}, {model['name']})",
                    _fmt(fac["facility_energy_j"], " J"),
                ),
                (f"  carbon ({model['carbon_g_per_kwh']} g/kWh)", _fmt(fac["carbon_g"], " g")),
                (
                    f"  cost ({model['price_per_kwh']:g}/kWh placeholder, {model['currency']})",
                    _fmt(fac["cost"], f" {model['currency']}"),
                ),
            ]
    rows += request_energy_rows(result.request_energy)
    for label, value in rows:
        table.add_row(label, value)
    return table


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
            " / ".join(_fmt(per_request[q]) for q in ("p50", "p90", "mean"))
            + f" ({energy['requests']} requests)",
        ),
    ]
    per_session = energy.get("j_per_session")
    if per_session is not None:
        rows.append(
            (
                "  J / session p50 / mean",
                " / ".join(_fmt(per_session[q]) for q in ("p50", "mean"))
                + f" ({energy['sessions']} sessions)",
            )
        )
    return rows


@contextlib.contextmanager
def _progress(total: int | None, quiet: bool) -> Iterator[Any]:
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
    with Progress(*columns, console=err_console, transient=False) as progress:
        task = progress.add_task("bench", total=total, errors=0)
        errors = 0

        def on_record(record: RequestRecord) -> None:
            nonlocal errors
            errors += record.error is not None
            progress.update(task, advance=1, errors=errors)

        yield on_record


async def _run_once(
    client_cfg: ClientConfig,
    workload_opts: WorkloadOptions,
    shape: LoadShape,
    limits: RunLimits,
    slos: SloSet,
    energy: str,
    metrics_url: str | None,
    facility: FacilityModel | None,
    config: Mapping[str, Any],
    quiet: bool,
) -> BenchResult:
    """One run with a progress bar; on Ctrl-C the partial result comes back, marked so."""
    workload = build_workload(workload_opts)
    source, energy_label = _energy_source(energy, client_cfg.base_url, metrics_url)
    client = OpenAIClient(client_cfg)
    total = (limits.max_requests or 0) + limits.warmup_requests or None
    if isinstance(workload.requests, Sequence):
        total = min(total or len(workload.requests), len(workload.requests))
    cfg = {**config, "shape": {"kind": type(shape).__name__, **asdict(shape)}}
    with _progress(total, quiet) as on_record:
        runner = LoadRunner(client, workload.requests, shape, limits, on_record)
        try:
            return await run_bench(
                runner,
                slos,
                source,
                0.1,
                facility,
                {**cfg, "energy_source": energy_label},
                workload.stats,
            )
        finally:
            await client.aclose()


def first_errors(result: BenchResult) -> dict[str, str]:
    """The first error message of each error kind among the measured requests."""
    found: dict[str, str] = {}
    for r in result.records:
        if r.error is not None and not r.warmup and r.error not in found:
            found[r.error] = r.error_message
    return found


def _write(result: BenchResult, out: Path, quiet: bool) -> None:
    try:
        paths = result.write(out)
        report = write_report(result, out / "report.html")
    except OSError as exc:
        raise ConfigError(f"cannot write results to {out}: {exc}; choose another --out") from None
    if not quiet:
        console.print(summary_table(result))
        errors = first_errors(result)
        if errors:
            console.print("first error of each kind:", highlight=False)
            for kind, message in errors.items():
                console.print(f"  {kind}: {message[:200]}", highlight=False, soft_wrap=True)
    console.print(f"wrote {paths['json']}, {paths['csv']}, {report}", highlight=False)


def _parse_list(text: str, cast: type, what: str) -> list[Any]:
    try:
        values = [cast(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(
            f"{what} must be comma-separated numbers, e.g. 1,2,4; got {text!r}"
        ) from None
    if not values:
        raise ConfigError(f"{what} is empty; give comma-separated numbers, e.g. 1,2,4")
    return values


def _check_ranges(
    num_requests: int, sessions: int, turns: int, timeout_s: float, stall_timeout_s: float
) -> None:
    """Refuse out-of-range counts and timeouts by the option's name, as the user typed it."""
    counts = (("--num-requests", num_requests), ("--sessions", sessions), ("--turns", turns))
    for option, count in counts:
        if count < 1:
            raise ConfigError(f"{option} must be >= 1, got {count}")
    for option, seconds in (("--timeout", timeout_s), ("--stall-timeout", stall_timeout_s)):
        if not (seconds > 0 and math.isfinite(seconds)):
            raise ConfigError(f"{option} must be > 0 seconds, got {seconds:g}")


def _check_applies(ctx: typer.Context) -> None:
    """Refuse options the run would otherwise ignore without a word: options with a default
    are refused only when the user actually passed them."""
    p = ctx.params

    def given(name: str) -> bool:
        # By name: typer ships its own copy of click, whose enum is not click's.
        source = ctx.get_parameter_source(name)
        return source is not None and source.name != "DEFAULT"

    workload, rate, search = p["workload"], p["rate"], p["search"]
    open_loop = rate is not None or search is not None
    refusals = [
        (
            p["trace"] is not None and workload != "trace",
            f"--trace applies only to --workload trace (got --workload {workload})",
        ),
        (
            p["sweep"] is not None and search is not None,
            "give either --sweep or --search-rate, not both",
        ),
        (
            p["metrics_url"] is not None and p["energy"] != "endpoint",
            f"--metrics-url applies only to --energy endpoint (got --energy {p['energy']})",
        ),
        (given("arrival") and not open_loop, "--arrival needs --rate (or --search-rate)"),
        (
            given("burstiness") and p["arrival"] != "gamma",
            "--burstiness applies to --arrival gamma only",
        ),
        (given("target") and search is None, "--target needs --search-rate"),
        (
            (given("sessions") or given("turns")) and workload != "agentic",
            "--sessions/--turns apply to --workload agentic only",
        ),
        (
            given("num_requests") and workload == "agentic",
            "--num-requests does not apply to --workload agentic: it sends --sessions x --turns",
        ),
        (
            search is not None and workload == "agentic",
            "--search-rate does not apply to --workload agentic: sessions are closed loops",
        ),
        (
            search is not None and (rate is not None or p["concurrency"] is not None),
            "--search-rate chooses the rates itself: drop --rate and --concurrency",
        ),
        (
            p["speedup"] is not None
            and workload == "trace"
            and (open_loop or p["concurrency"] is not None),
            "--speedup applies to trace replay only: drop --rate/--concurrency/--search-rate to "
            "replay the trace's timestamps",
        ),
        (
            given("seed")
            and workload == "trace"
            and not (open_loop and p["arrival"] != "constant"),
            "--seed applies to synthetic workloads and poisson/gamma arrivals, not to a trace "
            "replayed as recorded",
        ),
        (
            given("facility") and p["energy"] == "none",
            "--facility applies only when energy is measured (not with --energy none)",
        ),
    ]
    for refused, message in refusals:
        if refused:
            raise ConfigError(message)


async def _context_of(
    url: str, api_key: str | None, model: str | None
) -> tuple[ModelInfo | None, str | None]:
    """(the endpoint's entry for ``model``, or its first model when None; a note when the list
    could not be read and ``model`` was given, so the run goes on without a known context).

    Raises:
        EndpointError: no ``model`` given, and the endpoint is silent or not OpenAI-compatible.
    """
    try:
        models = await list_models(url, api_key)
    except EndpointError as exc:
        if model is None:
            raise
        return None, str(exc)
    if not models:
        return None, None
    if model is None:
        return models[0], None
    return next((m for m in models if m.id == model), None), None


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
        _check_ranges(num_requests, sessions, turns, timeout, stall_timeout)
        _check_applies(ctx)
        slos = parse_slos(slo)
        shape = _shape(workload, rate, concurrency, arrival, burstiness, speedup, seed)
        if out.exists() and not out.is_dir():
            # Checked now: finding it out after the run would lose the run's results.
            raise ConfigError(f"--out {out} is a file; give a folder (created if missing)")
        client_cfg = ClientConfig(
            base_url=url,
            api=api,  # type: ignore[arg-type]  # ClientConfig validates the choice
            model=model or "default",
            api_key=api_key,
            timeout_s=timeout,
            stall_timeout_s=stall_timeout,
            ignore_eos=ignore_eos,
        )
        extra = 0 if workload == "agentic" else warmup
        wl = WorkloadOptions(
            name=workload,
            num_requests=num_requests + extra,
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
        limits = RunLimits(
            max_requests=None if workload == "agentic" else num_requests,
            duration_s=duration,
            warmup_requests=warmup,
        )
        fac = facility_preset(facility)
        if model is None or max_input_tokens is None:
            # Asked only once every option is valid: a bad option must not wait on the network.
            try:
                info, note = asyncio.run(_context_of(url, api_key, model))
            except EndpointError as exc:
                raise fail(str(exc), 1) from None
            if note is not None:
                err_console.print(
                    f"note: {note}; max_model_len unknown, prompts not clamped", highlight=False
                )
            if model is None and info is not None:
                console.print(f"using model {info.id!r} (the endpoint's first model)")
                client_cfg = replace(client_cfg, model=info.id)
            if max_input_tokens is None and info is not None:
                wl = replace(wl, max_model_len=info.max_model_len)
        base_config = {
            "url": url,
            "client": {**asdict(client_cfg), "api_key": "***" if api_key else None},
            "workload": asdict(wl),
            "limits": asdict(limits),
            "slos": str(slos),
            "facility": facility,
        }

        finished: list[BenchResult] = []

        async def one(s: LoadShape, out_dir: Path) -> BenchResult:
            result = await _run_once(
                client_cfg, wl, s, limits, slos, energy, metrics_url, fac, base_config, quiet
            )
            _write(result, out_dir, quiet)
            finished.append(result)
            return result

        main: Coroutine[Any, Any, BenchResult | None]
        if search is not None:
            base = (
                shape if isinstance(shape, OpenLoop) else OpenLoop(1.0, arrival, burstiness, seed)  # type: ignore[arg-type]
            )
            main = _search(search, target, slos, base, one, out)
        elif sweep is not None:
            main = _sweep(_parse_list(sweep, float, "--sweep"), shape, one, out)
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
            errors: dict[str, int] = {}
            for r in finished:
                for kind, n in r.summary.get("errors", {}).items():
                    errors[kind] = errors.get(kind, 0) + n
            kinds = ", ".join(f"{k}={v}" for k, v in errors.items())
            raise fail(f"no request completed ({kinds or 'nothing sent'}); results written", 1)


async def _sweep(
    values: list[float],
    shape: LoadShape,
    one: Callable[[LoadShape, Path], Awaitable[BenchResult]],
    out: Path,
) -> BenchResult | None:
    table = Table(title="sweep")
    for col in ("load", "req/s", "tok/s", "SLO attainment", "J/token"):
        table.add_column(col, justify="right")
    for s in sweep_shapes(shape, values):
        result = await one(s, out / shape_dirname(s))
        e = result.energy or {}
        table.add_row(
            s.label,
            _fmt(result.summary.get("request_throughput_rps")),
            _fmt(result.summary.get("output_throughput_tps")),
            _fmt(result.summary.get("slo_attainment")),
            _fmt((e.get("whole_run") or {}).get("j_per_output_token")),
        )
        if result.interrupted:
            console.print(table)
            return result
    console.print(table)
    return None


async def _search(
    text: str,
    target: float,
    slos: SloSet,
    base: OpenLoop,
    one: Callable[[LoadShape, Path], Awaitable[BenchResult]],
    out: Path,
) -> BenchResult | None:
    lo_hi = _parse_list(text.replace(":", ","), float, "--search-rate")
    if len(lo_hi) != 2:
        raise ConfigError(f"--search-rate takes LO:HI, e.g. 1:32; got {text!r}")
    if not slos:
        raise ConfigError('--search-rate needs --slo, e.g. --slo "ttft<=1s,tpot<=100ms"')

    async def run_at(s: OpenLoop) -> BenchResult:
        return await one(s, out / shape_dirname(s))

    found = await search_max_goodput(run_at, base, lo_hi[0], lo_hi[1], target)
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
    table = Table(title=f"{a} vs {b}")
    for col in ("figure", "A", "B", "B / A"):
        table.add_column(col, justify="right" if col != "figure" else "left")
    for row in compare(ra, rb):
        ratio = row.ratio
        better = ratio is not None and ratio != 1 and (ratio > 1) == row.higher_is_better
        mark = (
            "" if ratio is None or ratio == 1 else (" [green]better" if better else " [red]worse")
        )
        table.add_row(
            row.label, _fmt(row.a), _fmt(row.b), (_fmt(ratio) + "x" + mark) if ratio else "-"
        )
    console.print(table)
    labels = []
    for name, r in (("A", ra), ("B", rb)):
        if r.energy is not None:
            labels.append((r.energy["source"], r.energy["scope"]))
            console.print(
                f"{name} energy: {r.energy['source']}, scope {r.energy['scope']}", highlight=False
            )
    if len(labels) == 2 and labels[0] != labels[1]:
        console.print(
            "[yellow]warning:[/] the energy figures are not like for like (different sources or "
            "scopes): their ratios compare different measurements",
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    """Add the ``bench`` group to the root app."""
    app.add_typer(bench_app, name="bench")

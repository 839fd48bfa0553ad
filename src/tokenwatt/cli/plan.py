"""`tokenwatt plan run|compare|search|sweep|presets|calibrate`: the fleet planner from the command
line.

A thin layer over tokenwatt.plan: options are resolved once here into a PlanConfig
(``plan.overrides``) and a workload (``plan.workloads``); the library runs and writes them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tokenwatt.errors import ConfigError
from tokenwatt.plan.calibrate import write_profile
from tokenwatt.plan.engine_calibration import EngineCalibration, calibrate_engine
from tokenwatt.plan.files import check_output_folders, write_output, write_runs
from tokenwatt.plan.overrides import (
    cross_product,
    load_config,
    parse_axis,
    parse_values,
    shortcut_overrides,
    variant_label,
)
from tokenwatt.plan.report import format_energy, write_report
from tokenwatt.plan.results import load_result
from tokenwatt.plan.search import run_workload, search_min_energy, sweep

from . import _plan_options as opt
from ._common import console, err_console, fail, user_errors
from ._plan_display import print_presets, print_profile, print_results

__all__ = ["register"]

plan_app = typer.Typer(
    help="Simulate a fleet over a trace: replicas, autoscaling, SLO goodput and energy.",
    no_args_is_help=True,
)


def _save(what: str, path: Path | None, write: Callable[[Path], object]) -> None:
    """Write ``path`` with ``write`` when the user asked for it, and say where ``what`` went."""
    if path is not None:
        write_output(path, write)
        console.print(f"{what}: {path}")


@plan_app.command("run")
def run(
    trace: Path | None = opt.TRACE,
    config_file: Path | None = opt.CONFIG,
    settings: list[str] = opt.SET,
    workload: str = opt.WORKLOAD,
    prefix_share: float | None = opt.PREFIX_SHARE,
    num_requests: int = opt.NUM_REQUESTS,
    rate: float = opt.RATE,
    seed: int = opt.SEED,
    limit: int | None = opt.LIMIT,
    speedup: float = opt.SPEEDUP,
    accelerator: str | None = typer.Option(None, "--accelerator", help="H100-SXM, H200-SXM, ..."),
    autoscaler: str | None = typer.Option(
        None, "--autoscaler", help="static, concurrency, queue_kv, predictive."
    ),
    router: str | None = typer.Option(
        None, "--router", help="round_robin, least_outstanding, prefix_aware."
    ),
    replicas: int | None = typer.Option(None, "--replicas", help="Static fleet size."),
    mode: str | None = typer.Option(None, "--mode", help="fast (default) or step."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write the result JSON here."),
    html_path: Path | None = opt.HTML,
) -> None:
    """Simulate one configuration and print SLO attainment, goodput and energy."""
    with user_errors():
        check_output_folders(out, html_path)
        shortcuts = shortcut_overrides(
            accelerator=accelerator,
            autoscaler=autoscaler,
            router=router,
            mode=mode,
            replicas=replicas,
        )
        config = load_config(config_file, settings, shortcuts)
        wl = opt.workload_options(
            trace, workload, num_requests, rate, seed, limit, speedup, prefix_share
        ).recipe()
        result = run_workload(config, wl)
        print_results([result], "tokenwatt plan")
        sim = result.sim
        err_console.print(
            f"simulated {result.arrived} requests in {sim['wall_s']:.2f} s "
            f"({sim['requests_per_s']:,.0f} requests/s, {config.mode} mode)"
        )
        _save("result", out, result.to_json)
        _save("report", html_path, lambda p: write_report([result], p))


@plan_app.command("compare")
def compare(
    results: list[Path] = typer.Argument(..., help="Two or more result JSON files."),
    html_path: Path | None = opt.HTML,
) -> None:
    """Print results side by side (the first is the baseline for the ratios)."""
    with user_errors():
        if len(results) < 2:
            raise fail("compare needs at least two result files")
        check_output_folders(html_path)
        loaded = [load_result(p) for p in results]
        # the file's stem tells apart results that share a label (two static x4 runs)
        loaded = [
            r.with_label(f"{p.stem}: {r.label}") for p, r in zip(results, loaded, strict=True)
        ]
        print_results(loaded, "tokenwatt plan compare")
        base = loaded[0]
        for r in loaded[1:]:
            energy, per_j = r.relative_to(base)
            console.print(
                f"{r.label}: energy x{energy:.3f}, output tokens/J x{per_j:.3f} vs {base.label}"
            )
        _save("report", html_path, lambda p: write_report(loaded, p, "tokenwatt plan compare"))


@plan_app.command("search")
def search(
    trace: Path | None = opt.TRACE,
    param: str = typer.Option(
        ..., "--param", help="Config key to vary, e.g. autoscaler_params.replicas."
    ),
    values: str = typer.Option(..., "--values", help="Comma-separated values, e.g. 2,4,6,8."),
    target: float = typer.Option(0.99, "--target", help="SLO attainment to reach (0..1)."),
    config_file: Path | None = opt.CONFIG,
    settings: list[str] = opt.SET,
    workload: str = opt.WORKLOAD,
    prefix_share: float | None = opt.PREFIX_SHARE,
    num_requests: int = opt.NUM_REQUESTS,
    rate: float = opt.RATE,
    seed: int = opt.SEED,
    limit: int | None = opt.LIMIT,
    speedup: float = opt.SPEEDUP,
    backend: str = opt.BACKEND,
    workers: int | None = opt.WORKERS,
    out: Path | None = typer.Option(None, "--out", "-o", help="Write the best result JSON here."),
    html_path: Path | None = typer.Option(None, "--html", help="Write an HTML report of all runs."),
) -> None:
    """Find the least-energy value of one parameter that meets the target SLO attainment."""
    with user_errors():
        where = opt.parallel_runs(backend, workers, out, html_path)
        config = load_config(config_file, settings)
        wl = opt.workload_options(
            trace, workload, num_requests, rate, seed, limit, speedup, prefix_share
        ).recipe()
        tried = parse_values(values)
        if not tried:
            raise ConfigError(f"--values needs at least one value (e.g. 2,4,8), got {values!r}")
        found = search_min_energy(config, param, tried, wl, target, where, workers)
        labelled = [
            r.with_label(variant_label({param: v}))
            for r, v in zip(found.results, tried, strict=True)
        ]
        print_results(labelled, f"tokenwatt plan search ({param})")
        title = f"tokenwatt plan search: {param}"
        _save("report", html_path, lambda p: write_report(labelled, p, title))
        best = found.best
        if best is None:
            raise fail(f"no value of {param} reached {target:.2%} SLO attainment; widen --values")
        console.print(
            f"best: {param}={tried[found.best_index or 0]} attains "
            f"{best.slo_attainment:.2%} SLO attainment (target {target:.2%}) with "
            f"{format_energy(best.energy_j)} ({best.output_tokens_per_j:.3f} output tokens/J)"
        )
        _save("result", out, best.to_json)


@plan_app.command("sweep")
def sweep_cmd(
    trace: Path | None = opt.TRACE,
    vary: list[str] = typer.Option(
        ..., "--vary", help="KEY=V1,V2,... (repeat: the runs are the cross product)."
    ),
    config_file: Path | None = opt.CONFIG,
    settings: list[str] = opt.SET,
    workload: str = opt.WORKLOAD,
    prefix_share: float | None = opt.PREFIX_SHARE,
    num_requests: int = opt.NUM_REQUESTS,
    rate: float = opt.RATE,
    seed: int = opt.SEED,
    limit: int | None = opt.LIMIT,
    speedup: float = opt.SPEEDUP,
    backend: str = opt.BACKEND,
    workers: int | None = opt.WORKERS,
    out_dir: Path | None = typer.Option(None, "--out-dir", help="Write one JSON per run here."),
    html_path: Path | None = opt.HTML,
) -> None:
    """Run every combination of the --vary values, in parallel, and compare them."""
    with user_errors():
        where = opt.parallel_runs(backend, workers, html_path)
        variants = cross_product([parse_axis(item) for item in vary])
        config = load_config(config_file, settings)
        wl = opt.workload_options(
            trace, workload, num_requests, rate, seed, limit, speedup, prefix_share
        ).recipe()
        results = sweep(config, variants, wl, where, workers)
        labelled = [r.with_label(variant_label(v)) for r, v in zip(results, variants, strict=True)]
        print_results(labelled, "tokenwatt plan sweep")
        _save("results", out_dir, lambda p: write_runs(labelled, p))
        _save("report", html_path, lambda p: write_report(labelled, p, "tokenwatt plan sweep"))


@plan_app.command("presets")
def presets() -> None:
    """List the accelerator, power and model presets with their sources."""
    print_presets()


_CALIBRATE_HELP = (
    "Profile the reference engine (step times, power, serving overhead) into a profile file.\n\n"
    "The default method, served, serves the engine over HTTP on loopback (127.0.0.1, a free "
    "port), replays a Poisson workload of unique prompts with the bench client from its own "
    "process, and records every engine step, each request's time outside the engine (kept as "
    "200 quantiles) and the meters. Then `tokenwatt plan run --set profile_path=FILE` simulates "
    "with it."
)


@plan_app.command("calibrate", help=_CALIBRATE_HELP)
def calibrate_cmd(
    out: Path = typer.Option(Path("profile.json"), "--out", "-o", help="Profile file to write."),
    method: str = typer.Option(
        "served",
        "--method",
        help="served: serve the engine over HTTP on loopback and fit the steps it runs under "
        "load, with the per-request serving overhead (what the fidelity benchmark found "
        "faithful); isolated: time single steps in process (faster, misses serving costs).",
    ),
    model: str = typer.Option("tiny", "--model", help="Engine preset or checkpoint directory."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    meter: bool = typer.Option(True, "--meter/--no-meter", help="Measure power with meters."),
    quick: bool = typer.Option(False, "--quick", help="Fewer sizes and requests (a smoke run)."),
    threads: int | None = typer.Option(
        None, "--threads", help="torch threads (1 is steadiest on a shared CPU)."
    ),
    requests: int = typer.Option(
        400,
        "--requests",
        "-n",
        help="served: requests in the calibration workload (the TTFT tail needs hundreds).",
    ),
    rate: float = typer.Option(4.0, "--rate", help="served: Poisson arrivals per second."),
    seed: int = typer.Option(1000, "--seed", help="served: seed of arrivals and lengths."),
    idle_s: float = typer.Option(
        3.0, "--idle-s", help="served: seconds of idle power metered before the workload."
    ),
    max_batch: int = typer.Option(16, "--max-batch", help="served: the engine's batch limit."),
    step_tokens: int = typer.Option(
        1024, "--step-tokens", help="served: the engine's token budget per step."
    ),
) -> None:
    """Profile the reference engine into a profile file (help: ``_CALIBRATE_HELP``)."""
    with user_errors():
        options = EngineCalibration(
            method=method,
            model=model,
            device=device,
            use_meters=meter,
            quick=quick,
            torch_threads=threads,
            requests=requests,
            rate_per_s=rate,
            seed=seed,
            idle_s=idle_s,
            max_batch=max_batch,
            step_tokens=step_tokens,
        )
        check_output_folders(out)
        profile = _calibrate_with_progress(options)
        write_output(out, lambda p: write_profile(profile, p))
        print_profile(profile, out)


def _calibrate_with_progress(options: EngineCalibration) -> dict[str, Any]:
    """``calibrate_engine`` with a progress bar on stderr while a served workload runs."""
    if options.method != "served":
        return calibrate_engine(options)
    total = options.served_spec().requests
    columns = (
        TextColumn("[bold]calibrate"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task("served", total=total)

        def progress(done: int, sent: int) -> None:
            bar.update(task, completed=done, total=sent)

        profile = calibrate_engine(options, progress)
        bar.update(task, completed=total)
    return profile


def register(app: typer.Typer) -> None:
    """Add the ``plan`` group to the root app."""
    app.add_typer(plan_app, name="plan")

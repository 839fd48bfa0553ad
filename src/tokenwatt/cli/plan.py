"""`tokenwatt plan run|compare|search|presets`: the fleet planner from the command line.

A thin layer over tokenwatt.plan: options are resolved once here into a PlanConfig and a workload.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import typer
from rich.table import Table

from tokenwatt.errors import ConfigError
from tokenwatt.plan.config import PlanConfig
from tokenwatt.plan.hardware import ACCELERATOR_PRESETS, MODEL_PRESETS, POWER_PRESETS
from tokenwatt.plan.report import comparison_rows, format_energy, write_report
from tokenwatt.plan.results import PlanResult, load_result
from tokenwatt.plan.search import (
    Backend,
    SyntheticWorkload,
    TraceWorkload,
    Workload,
    run_workload,
    search_min_energy,
    sweep,
)
from tokenwatt.workload import Arrivals, TraceOptions

from ._common import console, err_console, fail, user_errors

__all__ = ["register"]

plan_app = typer.Typer(
    help="Simulate a fleet over a trace: replicas, autoscaling, SLO goodput and energy.",
    no_args_is_help=True,
)


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _config(
    config_file: Path | None,
    settings: list[str],
    shortcuts: dict[str, Any],
) -> PlanConfig:
    data: dict[str, Any] = {}
    if config_file is not None:
        try:
            data = json.loads(config_file.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {config_file} not found") from None
        except ValueError as exc:
            raise ConfigError(f"config file {config_file} is not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {config_file} must hold a JSON object")
    config = PlanConfig.from_dict(data)
    changes = {k: v for k, v in shortcuts.items() if v is not None}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(
                f"--set expects KEY=VALUE (e.g. scaling.max_replicas=8), got {item!r}"
            )
        changes[key.strip()] = _parse_value(value.strip())
    return config.replace(**changes) if changes else config


WORKLOADS = ("chat", "reasoning", "agentic", "prefix-share")
"""Synthetic workload names, the same as ``tokenwatt bench`` (``prefix`` is kept as an alias)."""
_GENERATOR_NAMES = {"chat": "chat", "reasoning": "reasoning", "agentic": "agentic"}
_GENERATOR_NAMES |= {"prefix-share": "prefix", "prefix": "prefix"}


def _workload(
    trace: Path | None,
    workload: str,
    num_requests: int,
    rate: float,
    seed: int,
    limit: int | None,
    speedup: float,
    prefix_share: float | None = None,
) -> Workload:
    if prefix_share is not None and not 0.0 <= prefix_share <= 1.0:
        raise ConfigError(f"--prefix-share must be in [0, 1] (a fraction), got {prefix_share}")
    if trace is not None:
        if prefix_share is not None:
            raise ConfigError("--prefix-share applies to synthetic workloads; drop it with a trace")
        return TraceWorkload(str(trace), "auto", TraceOptions(limit=limit, speedup=speedup))
    name = _GENERATOR_NAMES.get(workload)
    if name is None:
        raise ConfigError(
            f"unknown workload {workload!r}; use one of {', '.join(WORKLOADS)} "
            "(or pass a trace file)"
        )
    arrivals = Arrivals("poisson", rate)
    if name == "agentic":
        if prefix_share is not None:
            raise ConfigError(
                "--prefix-share applies to chat, reasoning and prefix-share; agentic sessions "
                "share their system prefix and history by construction"
            )
        params: tuple[tuple[str, Any], ...] = (
            ("num_sessions", max(1, num_requests // 10)),
            ("session_arrivals", arrivals),
            ("seed", seed),
        )
    else:
        params = (("num_requests", num_requests), ("arrivals", arrivals), ("seed", seed))
        if prefix_share is not None:
            params += (("prefix_share", prefix_share),)
    return SyntheticWorkload(name, params)


def _price_notes(results: list[PlanResult]) -> None:
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


def _save(path: Path, write: Callable[[Path], None]) -> None:
    """Run ``write(path)``, turning a bad output path into a ConfigError naming it."""
    try:
        write(path)
    except OSError as exc:
        raise ConfigError(
            f"cannot write {path} ({exc.strerror or exc}); create the folder or pick another path"
        ) from None


def _check_outputs(*paths: Path | None) -> None:
    """Fail before a long simulation, not after it, when an output folder is missing."""
    for path in paths:
        if path is not None and not path.parent.is_dir():
            raise ConfigError(
                f"cannot write {path}: the folder {path.parent} does not exist; "
                "create the folder or pick another path"
            )


def _check_workers(workers: int | None) -> None:
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers} (omit it to use every core)")


def _print_table(results: list[PlanResult], title: str) -> None:
    table = Table(title=title)
    table.add_column("metric")
    for i, r in enumerate(results):
        table.add_column(r.label or f"run {i + 1}", justify="right")
    for name, values in comparison_rows(results):
        table.add_row(name, *values)
    console.print(table)
    _price_notes(results)


_TRACE = typer.Argument(None, help="Trace file (Azure CSV, BurstGPT CSV, Mooncake JSONL).")
_CONFIG = typer.Option(None, "--config", help="PlanConfig JSON file (partial is fine).")
_SET = typer.Option([], "--set", help="Override a config key, e.g. scaling.max_replicas=8.")
_WORKLOAD = typer.Option(
    "chat", "--workload", "-w", help=f"Synthetic workload without a trace: {', '.join(WORKLOADS)}."
)
_PREFIX_SHARE = typer.Option(
    None,
    "--prefix-share",
    help="Fraction of each prompt shared with its group (0..1; prefix-share's default: 0.5).",
)


@plan_app.command("run")
def run(
    trace: Path | None = _TRACE,
    config_file: Path | None = _CONFIG,
    settings: list[str] = _SET,
    workload: str = _WORKLOAD,
    prefix_share: float | None = _PREFIX_SHARE,
    num_requests: int = typer.Option(1000, "--num-requests", "-n", help="Synthetic requests."),
    rate: float = typer.Option(5.0, "--rate", help="Synthetic arrivals per second (Poisson)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the synthetic workload."),
    limit: int | None = typer.Option(None, "--limit", help="Read at most N trace requests."),
    speedup: float = typer.Option(1.0, "--speedup", help="Replay the trace N times faster."),
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
    html_path: Path | None = typer.Option(None, "--html", help="Write an HTML report here."),
) -> None:
    """Simulate one configuration and print SLO attainment, goodput and energy."""
    with user_errors():
        _check_outputs(out, html_path)
        shortcuts: dict[str, Any] = {
            "accelerator": accelerator,
            "autoscaler": autoscaler,
            "router": router,
            "mode": mode,
        }
        if replicas is not None:
            shortcuts["autoscaler_params.replicas"] = replicas
            shortcuts["autoscaler"] = autoscaler or "static"
        config = _config(config_file, settings, shortcuts)
        wl = _workload(trace, workload, num_requests, rate, seed, limit, speedup, prefix_share)
        result = run_workload(config, wl)
        _print_table([result], "tokenwatt plan")
        sim = result.sim
        err_console.print(
            f"simulated {result.arrived} requests in {sim['wall_s']:.2f} s "
            f"({sim['requests_per_s']:,.0f} requests/s, {config.mode} mode)"
        )
        if out is not None:
            _save(out, result.to_json)
            console.print(f"result: {out}")
        if html_path is not None:
            _save(html_path, lambda p: write_report([result], p))
            console.print(f"report: {html_path}")


@plan_app.command("compare")
def compare(
    results: list[Path] = typer.Argument(..., help="Two or more result JSON files."),
    html_path: Path | None = typer.Option(None, "--html", help="Write an HTML report here."),
) -> None:
    """Print results side by side (the first is the baseline for the ratios)."""
    with user_errors():
        if len(results) < 2:
            raise fail("compare needs at least two result files")
        _check_outputs(html_path)
        loaded = [load_result(p) for p in results]
        labels = [f"{p.stem}: {r.label}" for p, r in zip(results, loaded, strict=True)]
        loaded = [
            PlanResult.from_dict({**r.to_dict(), "label": label})
            for r, label in zip(loaded, labels, strict=True)
        ]
        _print_table(loaded, "tokenwatt plan compare")
        base = loaded[0]
        for r in loaded[1:]:
            ratio = r.energy_j / base.energy_j if base.energy_j else float("nan")
            tpj = (
                r.output_tokens_per_j / base.output_tokens_per_j
                if base.output_tokens_per_j
                else float("nan")
            )
            console.print(
                f"{r.label}: energy x{ratio:.3f}, output tokens/J x{tpj:.3f} vs {base.label}"
            )
        if html_path is not None:
            _save(html_path, lambda p: write_report(loaded, p, "tokenwatt plan compare"))
            console.print(f"report: {html_path}")


@plan_app.command("search")
def search(
    trace: Path | None = _TRACE,
    param: str = typer.Option(
        ..., "--param", help="Config key to vary, e.g. autoscaler_params.replicas."
    ),
    values: str = typer.Option(..., "--values", help="Comma-separated values, e.g. 2,4,6,8."),
    target: float = typer.Option(0.99, "--target", help="SLO attainment to reach (0..1)."),
    config_file: Path | None = _CONFIG,
    settings: list[str] = _SET,
    workload: str = _WORKLOAD,
    prefix_share: float | None = _PREFIX_SHARE,
    num_requests: int = typer.Option(1000, "--num-requests", "-n", help="Synthetic requests."),
    rate: float = typer.Option(5.0, "--rate", help="Synthetic arrivals per second (Poisson)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the synthetic workload."),
    limit: int | None = typer.Option(None, "--limit", help="Read at most N trace requests."),
    speedup: float = typer.Option(1.0, "--speedup", help="Replay the trace N times faster."),
    backend: str = typer.Option("process", "--backend", help="serial, process or ray."),
    workers: int | None = typer.Option(
        None, "--workers", help="Parallel processes (default: cores)."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write the best result JSON here."),
    html_path: Path | None = typer.Option(None, "--html", help="Write an HTML report of all runs."),
) -> None:
    """Find the least-energy value of one parameter that meets the target SLO attainment."""
    with user_errors():
        if backend not in ("serial", "process", "ray"):
            raise ConfigError(f"unknown backend {backend!r}; use serial, process or ray")
        _check_outputs(out, html_path)
        _check_workers(workers)
        config = _config(config_file, settings, {})
        wl = _workload(trace, workload, num_requests, rate, seed, limit, speedup, prefix_share)
        tried = [_parse_value(v.strip()) for v in values.split(",") if v.strip()]
        if not tried:
            raise ConfigError(f"--values needs at least one value (e.g. 2,4,8), got {values!r}")
        found = search_min_energy(config, param, tried, wl, target, cast(Backend, backend), workers)
        labelled = [
            PlanResult.from_dict({**r.to_dict(), "label": f"{param}={v}"})
            for r, v in zip(found.results, tried, strict=True)
        ]
        _print_table(labelled, f"tokenwatt plan search ({param})")
        if html_path is not None:
            _save(html_path, lambda p: write_report(labelled, p, f"tokenwatt plan search: {param}"))
            console.print(f"report: {html_path}")
        best = found.best
        if best is None:
            raise fail(f"no value of {param} reached {target:.2%} SLO attainment; widen --values")
        console.print(
            f"best: {param}={tried[found.best_index or 0]} attains "
            f"{best.slo_attainment:.2%} SLO attainment (target {target:.2%}) with "
            f"{format_energy(best.energy_j)} ({best.output_tokens_per_j:.3f} output tokens/J)"
        )
        if out is not None:
            _save(out, best.to_json)
            console.print(f"result: {out}")


@plan_app.command("sweep")
def sweep_cmd(
    trace: Path | None = _TRACE,
    vary: list[str] = typer.Option(
        ..., "--vary", help="KEY=V1,V2,... (repeat: the runs are the cross product)."
    ),
    config_file: Path | None = _CONFIG,
    settings: list[str] = _SET,
    workload: str = _WORKLOAD,
    prefix_share: float | None = _PREFIX_SHARE,
    num_requests: int = typer.Option(1000, "--num-requests", "-n", help="Synthetic requests."),
    rate: float = typer.Option(5.0, "--rate", help="Synthetic arrivals per second (Poisson)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the synthetic workload."),
    limit: int | None = typer.Option(None, "--limit", help="Read at most N trace requests."),
    speedup: float = typer.Option(1.0, "--speedup", help="Replay the trace N times faster."),
    backend: str = typer.Option("process", "--backend", help="serial, process or ray."),
    workers: int | None = typer.Option(None, "--workers", help="Parallel processes."),
    out_dir: Path | None = typer.Option(None, "--out-dir", help="Write one JSON per run here."),
    html_path: Path | None = typer.Option(None, "--html", help="Write an HTML report here."),
) -> None:
    """Run every combination of the --vary values, in parallel, and compare them."""
    with user_errors():
        if backend not in ("serial", "process", "ray"):
            raise ConfigError(f"unknown backend {backend!r}; use serial, process or ray")
        _check_outputs(html_path)
        _check_workers(workers)
        axes: list[tuple[str, list[Any]]] = []
        for item in vary:
            key, sep, values = item.partition("=")
            tried = [_parse_value(v.strip()) for v in values.split(",") if v.strip()]
            if not sep or not key.strip() or not tried:
                raise ConfigError(
                    f"--vary expects KEY=V1,V2 (e.g. scaling.max_replicas=4,8), got {item!r}"
                )
            axes.append((key.strip(), tried))
        variants: list[dict[str, Any]] = [{}]
        for key, tried in axes:
            variants = [{**v, key: value} for v in variants for value in tried]
        config = _config(config_file, settings, {})
        wl = _workload(trace, workload, num_requests, rate, seed, limit, speedup, prefix_share)
        results = sweep(config, variants, wl, cast(Backend, backend), workers)
        labelled = [
            PlanResult.from_dict(
                {**r.to_dict(), "label": ", ".join(f"{k}={val}" for k, val in v.items())}
            )
            for r, v in zip(results, variants, strict=True)
        ]
        _print_table(labelled, "tokenwatt plan sweep")
        if out_dir is not None:
            _save(out_dir, lambda p: p.mkdir(parents=True, exist_ok=True))
            for i, r in enumerate(labelled):
                _save(out_dir / f"run-{i:03d}.json", r.to_json)
            console.print(f"results: {out_dir}")
        if html_path is not None:
            _save(html_path, lambda p: write_report(labelled, p, "tokenwatt plan sweep"))
            console.print(f"report: {html_path}")


@plan_app.command("presets")
def presets() -> None:
    """List the accelerator, power and model presets with their sources."""
    table = Table(title="accelerator presets (--accelerator)")
    for col in ("name", "memory GB", "bandwidth TB/s", "BF16 TFLOP/s", "TDP W"):
        table.add_column(col)
    for name, a in ACCELERATOR_PRESETS.items():
        table.add_row(
            name,
            f"{a.memory_bytes / 1e9:.0f}",
            f"{a.bandwidth_bytes_per_s / 1e12:.2f}",
            f"{a.flops_per_s / 1e12:.0f}",
            f"{a.tdp_w:.0f}",
        )
    console.print(table)
    power = Table(title="power presets (--set power=NAME; default: the accelerator's)")
    for col in ("name", "idle / prefill / decode W", "host W", "scope"):
        power.add_column(col)
    for name, p in POWER_PRESETS.items():
        power.add_row(
            name,
            f"{p.idle_w:.0f} / {p.prefill_w:.0f} / {p.decode_min_w:.0f}-{p.decode_max_w:.0f}",
            f"{p.host_w:.0f}",
            p.scope,
        )
    console.print(power)
    for name, a in ACCELERATOR_PRESETS.items():
        console.print(f"{name}: {a.source}")
    for name, p in POWER_PRESETS.items():
        console.print(f"power {name}: {p.source}")
    models = Table(title="model presets")
    for col in ("name", "params", "weight GB", "KV bytes/token"):
        models.add_column(col)
    for name, m in MODEL_PRESETS.items():
        models.add_row(
            name,
            f"{m.params / 1e9:.2f}B",
            f"{m.weight_bytes / 1e9:.2f}",
            f"{m.kv_bytes_per_token:.0f}",
        )
    console.print(models)


_METHODS = ("served", "isolated")
"""Calibration methods ``plan calibrate --method`` accepts."""


_CALIBRATE_HELP = (
    "Profile the reference engine (step times, power, serving overhead) into a profile file.\n\n"
    "The default method, served, serves the engine over HTTP on loopback (127.0.0.1, a free "
    "port), replays a Poisson workload of unique prompts with the bench client from its own "
    "process, and records every engine step, each request's time outside the engine (kept as "
    "40 quantiles) and the meters. Then `tokenwatt plan run --set profile_path=FILE` simulates "
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
        120, "--requests", "-n", help="served: requests in the calibration workload."
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
        if method not in _METHODS:
            raise ConfigError(f"--method must be served or isolated, got {method!r}")
        _check_outputs(out)
        if threads is not None:
            import torch

            if threads < 1:
                raise ConfigError(f"--threads must be >= 1, got {threads}")
            torch.set_num_threads(threads)
        if method == "isolated":
            profile = _calibrate_isolated(model, device, meter, quick)
        else:
            profile = _calibrate_served(
                model,
                device,
                meter,
                quick,
                threads,
                (requests, rate, seed, idle_s, max_batch, step_tokens),
            )
        _save(out, lambda p: _write_profile(profile, p))
        console.print(
            f"profile: {out} ({len(profile['prefill'])} prefill, "
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


def _write_profile(profile: dict[str, Any], path: Path) -> None:
    from tokenwatt.plan.calibrate import write_profile

    write_profile(profile, path)


def _meter(meter: bool) -> Any:
    from tokenwatt.energy import CombinedMeter, detect_meters

    meters = detect_meters() if meter else []
    return CombinedMeter(meters) if meters else None


def _calibrate_isolated(model: str, device: str, meter: bool, quick: bool) -> dict[str, Any]:
    from tokenwatt.engine import EngineConfig, EngineCore, load_model
    from tokenwatt.plan.calibrate import CalibrationSpec, EngineTarget, calibrate

    spec = (
        CalibrationSpec(
            prefill_tokens=(16, 128),
            decode_batches=(1, 4),
            long_context=128,
            decode_steps=3,
            repeats=1,
        )
        if quick
        else CalibrationSpec()
    )
    loaded = load_model(model, device=device)
    engine_cfg = EngineConfig(
        max_batch=max(spec.decode_batches), max_step_tokens=max(spec.prefill_tokens)
    )
    combined = _meter(meter)
    try:
        return calibrate(
            lambda: EngineTarget(EngineCore(loaded, engine_cfg)), spec, combined, model
        )
    finally:
        if combined is not None:
            combined.close()


def _calibrate_served(
    model: str,
    device: str,
    meter: bool,
    quick: bool,
    threads: int | None,
    workload: tuple[int, float, int, float, int, int],
) -> dict[str, Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from tokenwatt.engine import EngineConfig, load_model
    from tokenwatt.plan.served import ServedCalibrationSpec, calibrate_served

    requests, rate, seed, idle_s, max_batch, step_tokens = workload
    if max_batch < 1 or step_tokens < 1:
        raise ConfigError(
            f"--max-batch and --step-tokens must be >= 1, got {max_batch} and {step_tokens}"
        )
    if quick:
        requests, idle_s = min(requests, 40), min(idle_s, 0.5)
    spec = ServedCalibrationSpec(
        requests=requests,
        rate_per_s=rate,
        seed=seed,
        idle_s=idle_s,
        warmup_requests=2 if quick else 8,
    )
    loaded = load_model(model, device=device)
    engine_cfg = EngineConfig(
        max_batch=max_batch, max_step_tokens=step_tokens, torch_threads=threads
    )
    combined = _meter(meter)
    columns = [
        TextColumn("[bold]calibrate"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    ]
    try:
        with Progress(*columns, console=err_console, transient=True) as bar:
            task = bar.add_task("served", total=spec.requests)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            profile = calibrate_served(
                loaded,
                engine_cfg,
                spec,
                model_name=model,
                meter=combined,
                progress=progress,
            )
            bar.update(task, completed=spec.requests)
    finally:
        if combined is not None:
            combined.close()
    return profile


def register(app: typer.Typer) -> None:
    """Add the ``plan`` group to the root app."""
    app.add_typer(plan_app, name="plan")

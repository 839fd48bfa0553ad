"""`tokenwatt serve`: the reference engine behind an OpenAI-compatible HTTP API.

A thin layer over ``tokenwatt.engine.server.serve_engine``: resolves the model, meters, API
keys and the optional warehouse once, prints where it listens, and serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from tokenwatt.cli._common import console, err_console, user_errors
from tokenwatt.energy.combined import CombinedMeter
from tokenwatt.energy.detect import CpuModelChoice, probe_meters
from tokenwatt.energy.meter import Meter
from tokenwatt.errors import ConfigError

if TYPE_CHECKING:
    from tokenwatt.engine.kv import PrefixProvider
    from tokenwatt.engine.model import LoadedModel
    from tokenwatt.warehouse.config import WarehouseConfig

__all__ = [
    "ADMIN_KEY_ENV",
    "API_KEY_ENV",
    "PRESET_NAMES",
    "check_listen_address",
    "is_loopback",
    "parse_meters",
    "register",
    "resolve_keys",
    "serve",
]

# The engine (and torch, seconds to import) loads only when `serve` runs, so that every other
# command and `--help` start fast; a test keeps this list equal to the engine's PRESETS.
PRESET_NAMES = ("tiny", "tiny-32k", "small", "llama-1b-shape", "llama-8b-shape")

_BACKENDS = ("nvml", "rapl", "cpu-model")

API_KEY_ENV = "TOKENWATT_API_KEY"
"""Comma-separated API keys, used when neither --api-key nor --api-key-file is given."""
ADMIN_KEY_ENV = "TOKENWATT_ADMIN_KEY"
"""Comma-separated admin keys, used when neither --admin-key nor --admin-key-file is given."""


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command to ``app``."""
    app.command("serve")(serve)


def serve(
    model: str = typer.Option(
        "tiny",
        "--model",
        "-m",
        help=f"Preset ({', '.join(PRESET_NAMES)}) or a local HF checkpoint dir.",
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind."),
    port: int = typer.Option(8000, "--port", "-p", help="TCP port."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    dtype: str = typer.Option("float32", "--dtype", help="float32, bfloat16 or float16."),
    seed: int = typer.Option(0, "--seed", help="Weight seed of preset models."),
    served_model_name: str | None = typer.Option(
        None,
        "--served-model-name",
        help="Name clients pass as `model` (default: the --model value).",
    ),
    max_batch: int = typer.Option(64, "--max-batch", help="Most requests in a step."),
    max_step_tokens: int = typer.Option(1024, "--max-step-tokens", help="Token budget per step."),
    kv_capacity_tokens: int = typer.Option(
        1 << 20, "--kv-capacity-tokens", help="Most KV positions reserved at once."
    ),
    max_queue: int = typer.Option(
        1024, "--max-queue", help="Most waiting requests; beyond it clients get 429."
    ),
    block_tokens: int = typer.Option(16, "--block-tokens", help="Tokens per warehouse block."),
    torch_threads: int = typer.Option(
        0,
        "--torch-threads",
        help="Torch CPU threads; 0: 1 on CPU (fastest for small models on a shared CPU), "
        "torch's default on GPU.",
    ),
    meters: str = typer.Option(
        "auto", "--meters", help="auto, none, or a comma list of nvml, rapl, cpu-model."
    ),
    warehouse: str | None = typer.Option(
        None,
        "--warehouse",
        help=(
            "Token warehouse tiers, e.g. dram=2GiB,disk=/tmp/tw,redis=redis://host:6379. "
            "isolation=tenant (default) keeps each client's cache apart (tenant: the user "
            "field, else the API key); isolation=shared lets all clients reuse one cache."
        ),
    ),
    api_key: list[str] | None = typer.Option(
        None,
        "--api-key",
        help=(
            "A key clients must send as `Authorization: Bearer KEY`; repeat for several "
            f"(default: ${API_KEY_ENV}, comma-separated). Every route but /health and /metrics "
            "then answers 401 without one."
        ),
    ),
    api_key_file: Path | None = typer.Option(
        None,
        "--api-key-file",
        help="A file of API keys, one per line (blank lines and # comments skipped); keeps "
        "keys out of `ps`.",
    ),
    admin_key: list[str] | None = typer.Option(
        None,
        "--admin-key",
        help=(
            "A key that may also read every tenant's usage on /v1/tenants (an API key sees "
            f"only its own); repeatable (default: ${ADMIN_KEY_ENV}, comma-separated)."
        ),
    ),
    admin_key_file: Path | None = typer.Option(
        None, "--admin-key-file", help="A file of admin keys, one per line."
    ),
) -> None:
    """Serve a model with an OpenAI-compatible API (/v1/completions, /v1/chat/completions,
    /v1/models, /v1/tenants, /health, /metrics). Stops cleanly on Ctrl-C or SIGTERM."""
    from tokenwatt.engine.config import EngineConfig
    from tokenwatt.engine.engine import Engine
    from tokenwatt.engine.model import load_model
    from tokenwatt.engine.server import run
    from tokenwatt.warehouse.config import parse_warehouse_spec

    with user_errors():
        port = check_listen_address(host, port)
        api_keys = resolve_keys(api_key or (), api_key_file, "--api-key", API_KEY_ENV)
        admin_keys = resolve_keys(admin_key or (), admin_key_file, "--admin-key", ADMIN_KEY_ENV)
        warehouse_config = parse_warehouse_spec(warehouse) if warehouse else None
        config = run.ServeConfig(
            model=model,
            host=host,
            port=port,
            device=device,
            dtype=dtype,
            seed=seed,
            served_model_name=served_model_name,
            engine=EngineConfig(
                max_batch=max_batch,
                max_step_tokens=max_step_tokens,
                kv_capacity_tokens=kv_capacity_tokens,
                max_queue=max_queue,
                block_tokens=block_tokens,
            ),
            api_keys=api_keys,
            admin_keys=admin_keys,
        )
        meter = parse_meters(meters)
        loaded = load_model(model, device=device, dtype=dtype, seed=seed)
        threads = torch_threads or (1 if loaded.device.type == "cpu" else None)
        engine_config = replace(config.engine, torch_threads=threads)
        provider = _warehouse(warehouse_config, loaded, block_tokens, meter)
        engine = Engine(loaded, engine_config, meter=meter, prefix_provider=provider)
    components = meter.components if meter else ()
    sources = ", ".join(f"{c.name} ({c.source}, {c.scope})" for c in components) or "none"
    console.print(
        f"serving [bold]{config.served_model_name or model}[/] ({loaded.fingerprint}) on "
        f"{loaded.device} at http://{host}:{port}/v1\n"
        f"energy meters: {sources}\n"
        f"warehouse: {escape(warehouse_config.describe()) if warehouse_config else 'off'}\n"
        f"auth: {_describe_auth(api_keys, admin_keys)}",
        highlight=False,
    )
    if not (api_keys or admin_keys) and not is_loopback(host):
        err_console.print(
            f"[yellow]warning:[/] {escape(host)} is reachable from other machines and no API "
            "key is set: anyone who reaches it can use the API and read every tenant's usage "
            f"on /v1/tenants; set --api-key (or ${API_KEY_ENV})",
            highlight=False,
            soft_wrap=True,
        )
    _report_warehouse_tiers(provider)
    hooks = [h for h in (getattr(provider, "close", None), meter.close if meter else None) if h]
    run.serve_engine(engine, config, on_shutdown=hooks)


def check_listen_address(host: str, port: int) -> int:
    """The port to serve on (a free one for 0), once a test bind shows it can be used.

    Checked before the model loads, so a port in use or a bad host fails at once with the
    fix, instead of after "serving ..." has been printed.
    """
    if not 0 <= port <= 65535:
        raise ConfigError(f"port must be 0..65535, got {port}")
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise ConfigError(
            f"cannot listen on {host}:{port}: unknown host ({exc.strerror}); use an address "
            "of this machine, e.g. --host 127.0.0.1 or --host 0.0.0.0"
        ) from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(addr)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port} ({exc.strerror}); stop whatever uses it or "
                "pick another with --port (--port 0 picks a free one)"
            ) from None
        return int(probe.getsockname()[1])


def resolve_keys(
    flag_values: Sequence[str], key_file: Path | None, flag: str, env_var: str
) -> tuple[str, ...]:
    """The keys of ``flag`` (repeated) and of its ``--...-file``; when neither is given, the
    comma-separated keys of ``env_var`` (unset or blank: none).

    A key file that holds no key is an error, not "no authentication": a server the operator
    meant to protect must not start open.
    """
    from tokenwatt.engine.server.auth import check_key  # the engine package imports torch

    keys: list[str] = []
    for i, key in enumerate(flag_values, 1):
        check_key(key, f"{flag} #{i}")
        keys.append(key)
    if key_file is not None:
        keys.extend(_read_key_file(key_file, f"{flag}-file"))
    if keys or key_file is not None:
        return tuple(keys)
    value = os.environ.get(env_var, "")
    if not value.strip():
        return ()
    from_env = [item.strip() for item in value.split(",")]
    for i, key in enumerate(from_env, 1):
        check_key(key, f"{env_var} item {i}")
    return tuple(from_env)


def _read_key_file(path: Path, option: str) -> list[str]:
    from tokenwatt.engine.server.auth import check_key

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(
            f"cannot read {option} {path} ({reason}); give a text file with one key per line"
        ) from None
    keys: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        key = line.strip()
        if key and not key.startswith("#"):
            check_key(key, f"{option} {path} line {number}")
            keys.append(key)
    if not keys:
        raise ConfigError(
            f"{option} {path} holds no key (blank lines and # comments are skipped); put one "
            "key per line, or leave the option out to serve without keys"
        )
    return keys


def _describe_auth(api_keys: Sequence[str], admin_keys: Sequence[str]) -> str:
    if not (api_keys or admin_keys):
        return "off (no API key: every route is open)"
    return (
        f"{_count(len(set(api_keys)), 'API key')}, {_count(len(set(admin_keys)), 'admin key')} "
        "(every route but /health and /metrics needs one)"
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` resolves to is a loopback one (reachable only from this
    machine); an unresolvable host counts as not loopback."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return False
    try:
        return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)
    except ValueError:  # an address ipaddress cannot parse is not known to be loopback
        return False


def parse_meters(value: str) -> Meter | None:
    """``auto`` (every back-end found), ``none``, or a comma list of back-ends; one meter."""
    value = value.strip()
    if value == "none":
        return None
    cpu_model: CpuModelChoice = "auto"
    if value == "auto":
        nvml, rapl = True, True
    else:
        names = {n.strip() for n in value.split(",") if n.strip()}
        unknown = sorted(names - set(_BACKENDS))
        if unknown or not names:
            raise ConfigError(
                f"unknown meter(s) {', '.join(unknown) or value!r}; "
                f"use auto, none or a comma list of {', '.join(_BACKENDS)}"
            )
        cpu_model = "always" if "cpu-model" in names else "never"
        nvml, rapl = "nvml" in names, "rapl" in names
    probe = probe_meters(
        nvml=nvml,
        rapl=rapl,
        cpu_model=cpu_model,
        visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
        cpu_mode="process",
    )
    if not probe.meters:
        reasons = "; ".join(f"{k}: {v}" for k, v in probe.skipped.items())
        raise ConfigError(f"no energy meter available ({reasons}); use --meters none or cpu-model")
    return probe.meters[0] if len(probe.meters) == 1 else CombinedMeter(probe.meters)


def _warehouse(
    config: WarehouseConfig | None, loaded: LoadedModel, block_tokens: int, meter: Meter | None
) -> PrefixProvider | None:
    if config is None:
        return None
    from tokenwatt.warehouse.engine_adapter import build_prefix_provider

    return build_prefix_provider(config, loaded, block_tokens=block_tokens, meter=meter)


def _report_warehouse_tiers(provider: PrefixProvider | None) -> None:
    """Say now which warehouse tiers do not work, rather than at the first request."""
    store = getattr(provider, "store", None)
    check = getattr(store, "check_tiers", None)
    if check is None:
        return
    problems: dict[str, str] = check()
    for name, reason in problems.items():
        console.print(
            f"[yellow]warehouse tier {name} skipped:[/] {escape(reason)}", highlight=False
        )
    if problems:
        console.print(
            "serving without them; they are retried with backoff, so a tier that comes back "
            "is used again",
            highlight=False,
        )

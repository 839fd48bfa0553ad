"""Running the server: a blocking ``serve()`` for the CLI, and ``start_server()`` which runs
uvicorn on a background thread (tests, benchmarks, notebooks) and stops it cleanly.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import uvicorn

from tokenwatt.energy.meter import Meter
from tokenwatt.errors import ConfigError

from ..config import EngineConfig
from ..engine import Engine
from ..kv import PrefixProvider
from ..model import load_model
from .app import build_app
from .auth import check_keys

__all__ = [
    "RunningServer",
    "ServeConfig",
    "build_engine",
    "free_port",
    "serve",
    "serve_engine",
    "start_server",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeConfig:
    """Everything ``tokenwatt serve`` needs (the CLI resolves it once)."""

    model: str = "tiny"
    """Preset name or local checkpoint directory."""
    host: str = "127.0.0.1"
    """Interface to bind."""
    port: int = 8000
    """TCP port (0 picks a free one)."""
    device: str = "auto"
    """auto, cpu, cuda or cuda:N."""
    dtype: str = "float32"
    """float32, bfloat16 or float16."""
    seed: int = 0
    """Weight seed of preset models."""
    served_model_name: str | None = None
    """Name clients pass as ``model`` (default: the preset name or directory)."""
    engine: EngineConfig = field(default_factory=EngineConfig)
    """Batching, KV and queue limits."""
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    """Keys clients send as ``Authorization: Bearer <key>``; with these or ``admin_keys``, every
    route but /health and /metrics answers 401 without one. Empty (default): no authentication,
    and /v1/tenants shows every tenant's usage to anyone who can reach the server."""
    admin_keys: tuple[str, ...] = field(default=(), repr=False)
    """Keys that may also read every tenant's totals on /v1/tenants (an API key sees only its
    own); none by default."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0..65535, got {self.port}")
        for name in ("api_keys", "admin_keys"):
            keys = getattr(self, name)
            if isinstance(keys, str):  # a lone string would be taken as one key per character
                raise ConfigError(f"{name} is a tuple of keys, not a string; write {name}=(key,)")
            object.__setattr__(self, name, tuple(keys))
        check_keys(self.api_keys, self.admin_keys)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def build_engine(
    config: ServeConfig,
    *,
    meter: Meter | None = None,
    prefix_provider: PrefixProvider | None = None,
) -> Engine:
    """Load the model and wrap it in a (not yet started) engine."""
    loaded = load_model(config.model, device=config.device, dtype=config.dtype, seed=config.seed)
    return Engine(loaded, config.engine, meter=meter, prefix_provider=prefix_provider)


def _uvicorn(
    engine: Engine,
    config: ServeConfig,
    port: int,
    on_shutdown: Sequence[Callable[[], None]] = (),
) -> uvicorn.Server:
    app = build_app(
        engine,
        model_name=config.served_model_name,
        on_shutdown=on_shutdown,
        api_keys=config.api_keys,
        admin_keys=config.admin_keys,
    )
    ucfg = uvicorn.Config(
        app,
        host=config.host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        # Open streams get this long to finish on SIGINT/SIGTERM; then they are cut.
        timeout_graceful_shutdown=5,
    )
    return uvicorn.Server(ucfg)


def serve(
    config: ServeConfig,
    *,
    meter: Meter | None = None,
    prefix_provider: PrefixProvider | None = None,
) -> None:
    """Load the model and serve until SIGINT/SIGTERM (see ``serve_engine``)."""
    serve_engine(build_engine(config, meter=meter, prefix_provider=prefix_provider), config)


def serve_engine(
    engine: Engine, config: ServeConfig, *, on_shutdown: Sequence[Callable[[], None]] = ()
) -> None:
    """Serve ``engine`` on ``config.host:config.port`` in this thread until SIGINT/SIGTERM.

    uvicorn turns the signal into a graceful shutdown (open streams get 5 s); the app's
    shutdown stops the engine thread and runs ``on_shutdown``; uvicorn then re-raises the
    signal, so the process ends the way the signal asks (exit status 128 + signal number).
    """
    server = _uvicorn(engine, config, config.port, on_shutdown)
    try:
        server.run()
    finally:
        engine.stop()


@dataclass
class RunningServer:
    """A server on a background thread; ``stop()`` shuts it and its engine down."""

    url: str
    """Base URL, e.g. ``http://127.0.0.1:43125`` (the OpenAI base_url is ``url + "/v1"``)."""
    engine: Engine
    """The engine behind it."""
    _server: uvicorn.Server
    _thread: threading.Thread

    def stop(self, timeout_s: float = 10.0) -> None:
        """Shut down uvicorn (graceful) and the engine thread."""
        self._server.should_exit = True
        self._thread.join(timeout_s)
        self.engine.stop()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_server(
    engine: Engine, config: ServeConfig | None = None, *, timeout_s: float = 30.0
) -> RunningServer:
    """Serve ``engine`` on a background thread; return once it accepts connections."""
    config = config or ServeConfig(port=0)
    port = config.port or free_port(config.host)
    server = _uvicorn(engine, config, port)
    # uvicorn installs signal handlers only on the main thread, so this one leaves them alone.
    thread = threading.Thread(target=server.run, name="tokenwatt-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            engine.stop()
            raise ConfigError(f"the server did not start on {config.host}:{port}")
        time.sleep(0.01)
    return RunningServer(f"http://{config.host}:{port}", engine, server, thread)

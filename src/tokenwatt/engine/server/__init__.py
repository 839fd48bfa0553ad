"""tokenwatt.engine.server: the OpenAI-compatible HTTP server over an ``Engine``."""

from .app import build_app
from .metrics import ServerMetrics, TenantTotals, tenant_of
from .protocol import ApiError
from .run import (
    RunningServer,
    ServeConfig,
    build_engine,
    free_port,
    serve,
    serve_engine,
    start_server,
)

__all__ = [
    "ApiError",
    "RunningServer",
    "ServeConfig",
    "ServerMetrics",
    "TenantTotals",
    "build_app",
    "build_engine",
    "free_port",
    "serve",
    "serve_engine",
    "start_server",
    "tenant_of",
]

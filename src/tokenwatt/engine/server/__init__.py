"""tokenwatt.engine.server: the OpenAI-compatible HTTP server over an ``Engine``.

Endpoints
- ``POST /v1/completions``, ``POST /v1/chat/completions``: OpenAI bodies, ``stream`` (SSE, ends
  with ``data: [DONE]``) and ``stream_options.include_usage``; ``n`` must be 1. Extension:
  ``ignore_eos`` (bool). A chat without ``max_tokens`` gets ``EngineConfig.default_chat_max_tokens``
  (256), shortened to fit the context.
- ``usage`` carries ``prompt_tokens_details.cached_tokens`` (prompt tokens served by the
  warehouse) and, when the engine has a meter, ``energy``::

      {"energy_j": 0.41, "source": "estimated:cpu-model", "scope": "cpu",
       "estimated": true, "components": {"cpu": 0.41}}

  the request's share of each engine step's energy, split by tokens processed in the step
  (idle time between steps is charged to nobody).
- ``GET /v1/models`` (with ``fingerprint`` and ``max_model_len``), ``GET /health`` (503 once
  the engine stopped), ``GET /metrics`` (Prometheus text, ``tokenwatt_*`` series: prompt,
  cached and completion tokens, requests by finish reason, energy joules by component, source
  and scope, TTFT / inter-token / request latency histograms, queue length, running requests,
  KV tokens and usage ratio; plus ``tokenwatt_warehouse_*`` when a warehouse is attached).
- ``GET /v1/tenants``: ``{"object": "list", "data": [{"object": "tenant", "tenant",
  requests, prompt_tokens, completion_tokens, energy_j, source, scope, energy_by_component},
  ...]}`` sorted by tenant; a tenant (also the warehouse isolation unit) is the
  request's ``user`` field, else ``key:`` + the first 12 hex digits of the SHA-256 of its bearer
  API key, else ``anonymous``.

Authentication (``ServeConfig.api_keys`` / ``admin_keys``, off by default): every route but
``/health`` and ``/metrics`` needs ``Authorization: Bearer <key>``, else 401 in OpenAI's error
shape. A request is then billed to its key's tenant (``key:<hash>``, or ``key:<hash>/<user>``
with a ``user`` field), and /v1/tenants shows an API key only its own tenants; an admin key sees
all. Without keys, /v1/tenants shows every tenant to anyone who can reach the server.

Errors: a missing or wrong key is 401 (code ``invalid_api_key`` for a wrong one); every other
client mistake is HTTP 400 with ``{"error": {"message", "type", "param",
"code"}}`` (codes ``context_length_exceeded``, ``model_not_found``); a full queue is 429 with
``Retry-After``; a shutdown mid-request is 503.
"""

from .app import build_app
from .auth import OPEN_PATHS, ApiKeyMiddleware, Caller, KeyRing, check_key, check_keys
from .metrics import ServerMetrics, TenantTotals, key_tenant, tenant_of
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
    "OPEN_PATHS",
    "ApiError",
    "ApiKeyMiddleware",
    "Caller",
    "KeyRing",
    "RunningServer",
    "ServeConfig",
    "ServerMetrics",
    "TenantTotals",
    "build_app",
    "build_engine",
    "check_key",
    "check_keys",
    "free_port",
    "key_tenant",
    "serve",
    "serve_engine",
    "start_server",
    "tenant_of",
]

"""Server metrics: Prometheus series on a private registry, and per-tenant totals.

Without API keys, tenants are named by the request's ``user`` field, else by a hash of its bearer
key (``key:<sha256[:12]>``, never the key itself), else ``anonymous``; with keys, see ``auth``.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ..engine import Completion, EngineStats

__all__ = ["ServerMetrics", "TenantTotals", "key_tenant", "tenant_of"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def key_tenant(key: str) -> str:
    """The tenant of requests sent with bearer ``key``: a hash of it, never the key itself."""
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:12]


def tenant_of(user: str | None, authorization: str | None) -> str:
    """The tenant a request is counted under on a server without API keys (with keys, see
    ``auth.Caller.tenant_for``: the ``user`` field cannot leave the key's namespace)."""
    if user:
        return user
    if authorization and authorization.lower().startswith("bearer "):
        key = authorization[7:].strip()
        if key:
            return key_tenant(key)
    return "anonymous"


@dataclass
class TenantTotals:
    """What one tenant has used so far."""

    requests: int = 0
    """Finished requests."""
    prompt_tokens: int = 0
    """Prompt tokens processed (cached ones included)."""
    completion_tokens: int = 0
    """Tokens generated."""
    energy_j: float = 0.0
    """Joules attributed (see ``source`` and ``scope``)."""
    source: str = ""
    """Where ``energy_j`` comes from."""
    scope: str = ""
    """What ``energy_j`` covers."""
    energy_by_component: dict[str, float] = field(default_factory=dict)
    """Joules per meter component."""


class ServerMetrics:
    """All series of one server; ``render()`` gives the Prometheus text exposition."""

    def __init__(self, stats: Callable[[], EngineStats]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.prompt_tokens = Counter(
            "tokenwatt_prompt_tokens", "Prompt tokens of finished requests", registry=r
        )
        self.cached_tokens = Counter(
            "tokenwatt_cached_prompt_tokens",
            "Prompt tokens served from the prefix cache",
            registry=r,
        )
        self.completion_tokens = Counter(
            "tokenwatt_completion_tokens", "Generated tokens of finished requests", registry=r
        )
        self.requests = Counter(
            "tokenwatt_requests", "Finished requests", ["finish_reason"], registry=r
        )
        self.rejected = Counter(
            "tokenwatt_rejected_requests", "Requests refused", ["status"], registry=r
        )
        self.energy = Counter(
            "tokenwatt_energy_joules",
            "Energy attributed to requests",
            ["component", "source", "scope"],
            registry=r,
        )
        self.ttft = Histogram(
            "tokenwatt_time_to_first_token_seconds",
            "Request arrival to first token",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.itl = Histogram(
            "tokenwatt_inter_token_latency_seconds",
            "Time between consecutive output tokens",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.e2e = Histogram(
            "tokenwatt_request_latency_seconds",
            "Request arrival to last token",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        queue = Gauge("tokenwatt_queue_length", "Requests waiting for admission", registry=r)
        queue.set_function(lambda: stats().waiting)
        running = Gauge("tokenwatt_running_requests", "Requests in the running batch", registry=r)
        running.set_function(lambda: stats().running)
        kv_tokens = Gauge("tokenwatt_kv_tokens", "Valid KV positions held", registry=r)
        kv_tokens.set_function(lambda: stats().kv.tokens)
        kv_usage = Gauge("tokenwatt_kv_usage_ratio", "Reserved share of KV capacity", registry=r)
        kv_usage.set_function(lambda: stats().kv.fraction)
        self._tenants: dict[str, TenantTotals] = {}
        self._lock = threading.Lock()
        self._components: dict[str, tuple[str, str]] = {}

    def set_components(self, components: dict[str, tuple[str, str]]) -> None:
        """Meter component name -> (source, scope), for energy labels."""
        self._components = dict(components)

    def finished(self, tenant: str, c: Completion) -> None:
        """Count a finished request."""
        self.requests.labels(c.finish_reason or "unknown").inc()
        self.prompt_tokens.inc(c.prompt_tokens)
        self.cached_tokens.inc(c.cached_tokens)
        self.completion_tokens.inc(c.completion_tokens)
        with self._lock:
            t = self._tenants.setdefault(tenant, TenantTotals())
            t.requests += 1
            t.prompt_tokens += c.prompt_tokens
            t.completion_tokens += c.completion_tokens
            if c.energy is not None:
                t.energy_j += c.energy.energy_j
                t.source, t.scope = c.energy.source, c.energy.scope
                for name, joules in c.energy.by_component.items():
                    t.energy_by_component[name] = t.energy_by_component.get(name, 0.0) + joules
        if c.energy is not None:
            for name, joules in c.energy.by_component.items():
                source, scope = self._components.get(name, (c.energy.source, c.energy.scope))
                self.energy.labels(name, source, scope).inc(joules)

    def tenants(self) -> dict[str, TenantTotals]:
        """A copy of every tenant's totals."""
        with self._lock:
            return {
                k: TenantTotals(
                    **{**v.__dict__, "energy_by_component": dict(v.energy_by_component)}
                )
                for k, v in self._tenants.items()
            }

    def render(self) -> bytes:
        """Prometheus text format of every series."""
        return generate_latest(self.registry)

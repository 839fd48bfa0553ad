"""API keys: who may call the server, the tenant each caller is billed as, and which tenants'
totals it may read. Keys are held only as SHA-256 digests and compared in constant time.

A key never appears in a log line, an error message or a repr: messages name a key by where it
came from (``API key #2``, ``keys.txt line 3``), tenants by ``key:`` + 12 hex digits of its hash.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocketClose

from tokenwatt.errors import ConfigError

from .metrics import key_tenant
from .protocol import ApiError, error_body

__all__ = [
    "OPEN_PATHS",
    "ApiKeyMiddleware",
    "Caller",
    "KeyRing",
    "caller_of",
    "check_key",
    "check_keys",
]

OPEN_PATHS = frozenset({"/health", "/metrics"})
"""Paths served without a key, as vLLM does: probes and Prometheus scrapers carry no secrets,
and ``/metrics`` has no per-tenant series."""

_CHECKED = frozenset({"http", "websocket"})
"""ASGI scope types that carry requests, so need a key; ``lifespan`` passes, others are refused."""

_SCOPE_KEY = "tokenwatt.caller"
"""Where the middleware leaves the authenticated ``Caller`` in the ASGI scope."""


def check_key(key: str, where: str) -> None:
    """Refuse a ``key`` that cannot be an API key; ``where`` names it (the key is never shown).

    A key is one word of printable ASCII: it travels as ``Authorization: Bearer <key>``, so
    whitespace (usually a pasted newline) or other characters would make it unusable.
    """
    if not key:
        raise ConfigError(f"{where} is empty; give a non-empty key, or leave the option out")
    if any(c.isspace() for c in key):
        raise ConfigError(
            f"{where} contains whitespace (a stray space or newline?); a key is one word, "
            "sent as `Authorization: Bearer <key>`"
        )
    if not all("!" <= c <= "~" for c in key):
        raise ConfigError(
            f"{where} has a character outside printable ASCII; HTTP headers carry ASCII only, "
            "so use letters, digits and punctuation (e.g. from `openssl rand -hex 32`)"
        )


def check_keys(api_keys: Iterable[str], admin_keys: Iterable[str]) -> None:
    """Refuse malformed keys, and a key given both as an API key and as an admin key (which
    of the two it should be is a decision the operator has to make, not the server)."""
    api, admin = list(api_keys), list(admin_keys)
    for i, key in enumerate(api, 1):
        check_key(key, f"API key #{i}")
    for i, key in enumerate(admin, 1):
        check_key(key, f"admin key #{i}")
    both = sum(1 for key in set(admin) if key in set(api))
    if both:
        raise ConfigError(
            f"{both} key(s) are given both as an API key and as an admin key; give each key "
            "once: as an admin key if it may read every tenant's usage, else as an API key"
        )


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: the tenant of its key, and whether it is an admin."""

    tenant: str = "anonymous"
    """``key:`` + 12 hex digits of its key's SHA-256; its requests are billed under it."""
    admin: bool = False
    """An admin key: may read every tenant's totals on /v1/tenants."""

    def tenant_for(self, user: str | None) -> str:
        """The tenant of a request with this key and ``user`` field: the key's tenant, or
        ``<key tenant>/<user>``, so a ``user`` can split a key's usage but never name (and so
        read the warehouse cache or totals of) another key's tenant."""
        return f"{self.tenant}/{user}" if user else self.tenant

    def may_read(self, tenant: str) -> bool:
        """Whether /v1/tenants shows ``tenant`` to this caller: its own tenants, or all for
        an admin."""
        return self.admin or tenant == self.tenant or tenant.startswith(self.tenant + "/")


class KeyRing:
    """The keys a server accepts, as SHA-256 digests; ``caller()`` checks a request's header."""

    def __init__(self, api_keys: Iterable[str] = (), admin_keys: Iterable[str] = ()) -> None:
        api, admin = list(api_keys), list(admin_keys)
        check_keys(api, admin)
        # Digests, not keys: equal lengths for compare_digest, and no plaintext kept.
        self._digests = tuple(
            (_digest(key), is_admin)
            for keys, is_admin in ((dict.fromkeys(api), False), (dict.fromkeys(admin), True))
            for key in keys
        )

    @property
    def enabled(self) -> bool:
        """Whether any key is set (without keys the server is open)."""
        return bool(self._digests)

    def __repr__(self) -> str:
        admins = sum(1 for _, is_admin in self._digests if is_admin)
        return f"KeyRing(api_keys={len(self._digests) - admins}, admin_keys={admins})"

    def caller(self, authorization: str | None) -> Caller:
        """The caller a request's ``Authorization`` header authenticates.

        Raises:
            ApiError: 401 in OpenAI's shape, when the header is missing, not ``Bearer <key>``,
                or carries a key this ring does not hold.
        """
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiError(
                401,
                "no API key: this server needs `Authorization: Bearer <key>` with one of its "
                "API keys",
                headers={"WWW-Authenticate": "Bearer"},
            )
        presented = _digest(token)
        match: bool | None = None
        # Every digest is compared, with no early exit, so the time taken says nothing about
        # which key (or how much of one) matched.
        for digest, is_admin in self._digests:
            if hmac.compare_digest(presented, digest):
                match = is_admin
        if match is None:
            raise ApiError(
                401,
                "incorrect API key; send one of this server's keys as "
                "`Authorization: Bearer <key>`",
                code="invalid_api_key",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        return Caller(tenant=key_tenant(token), admin=match)


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def caller_of(scope: Scope) -> Caller | None:
    """The caller ``ApiKeyMiddleware`` authenticated for this request; None without keys."""
    caller = scope.get(_SCOPE_KEY)
    return caller if isinstance(caller, Caller) else None


class ApiKeyMiddleware:
    """Answers 401 to any request outside ``OPEN_PATHS`` without a valid key, before routing
    (so unknown paths do not reveal which exist); otherwise records the ``Caller`` in the scope.
    A websocket without a valid key is closed with code 1008 before it is accepted; lifespan
    events pass; any other scope type is refused.

    Plain ASGI rather than Starlette's ``BaseHTTPMiddleware``, so that streamed responses and
    the handlers' client-disconnect detection pass through untouched.
    """

    def __init__(
        self, app: ASGIApp, keys: KeyRing, open_paths: frozenset[str] = OPEN_PATHS
    ) -> None:
        self.app = app
        self.keys = keys
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan" or (kind in _CHECKED and scope["path"] in self.open_paths):
            await self.app(scope, receive, send)
            return
        if kind not in _CHECKED:
            # An unknown scope type could carry requests past the key check: refuse it, as
            # the ASGI spec asks of scope types an application does not understand.
            raise RuntimeError(f"ApiKeyMiddleware: unsupported ASGI scope type {kind!r}")
        try:
            caller = self.keys.caller(Headers(scope=scope).get("authorization"))
        except ApiError as err:
            if kind == "websocket":
                # Closing before accepting refuses the handshake (HTTP 403 to the client);
                # 1008 is "policy violation", the close code for failed authentication.
                await WebSocketClose(code=1008, reason="missing or incorrect API key")(
                    scope, receive, send
                )
                return
            response = JSONResponse(error_body(err), status_code=err.status, headers=err.headers)
            await response(scope, receive, send)
            return
        scope[_SCOPE_KEY] = caller
        await self.app(scope, receive, send)

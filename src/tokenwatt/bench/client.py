"""Endpoint clients: send one request, yield its stream events stamped with ``perf_counter``.

``OpenAIClient`` speaks OpenAI-compatible SSE over httpx; every failure (endpoint down, reset,
HTTP 429/5xx, malformed or truncated SSE, stall, timeout) ends the stream with a typed ``Failure``
event instead of an exception. ``FunctionClient`` turns a function into a client for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
import urllib.parse
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import httpx

from tokenwatt.bench._pool import SHARD_CONNECTIONS, ShardedPool
from tokenwatt.bench.record import Chunk, Done, ErrorKind, Failure, StreamEvent
from tokenwatt.errors import ConfigError, TokenwattError
from tokenwatt.workload.prompts import PromptSynthesizer
from tokenwatt.workload.types import Request

__all__ = [
    "ClientConfig",
    "EndpointAuthError",
    "EndpointClient",
    "FunctionClient",
    "ModelInfo",
    "OpenAIClient",
    "discover_model",
    "find_model",
    "list_models",
    "synthetic_prompt",
]

log = logging.getLogger(__name__)

Api = Literal["completions", "chat"]


@runtime_checkable
class EndpointClient(Protocol):
    """Sends one request and yields its events: chunks, then one ``Done`` or ``Failure``."""

    async def open(self) -> None:
        """Get ready to send (pools, first connection); called before a run's clock starts.
        Must not raise for endpoint failures: those show up on the first request."""
        ...

    def stream(self, request: Request) -> AsyncIterator[StreamEvent]:
        """Send ``request``; yield timed events. Must not raise for endpoint failures."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


@dataclass(frozen=True)
class ClientConfig:
    """How to reach an OpenAI-compatible endpoint and how long to wait for it."""

    base_url: str = "http://127.0.0.1:8000"
    """Server root; ``/v1/completions`` or ``/v1/chat/completions`` is appended."""
    api: Api = "completions"
    """Which endpoint to call: ``completions`` (prompt) or ``chat`` (one user message)."""
    model: str = "default"
    """Model name sent in the body."""
    api_key: str | None = field(default=None, repr=False)
    """Bearer token, or None to send no Authorization header (kept out of the repr, so a
    logged or printed config never shows it)."""
    timeout_s: float = 600.0
    """Per-request deadline from send to the end of the stream."""
    stall_timeout_s: float = 60.0
    """Longest silence (no bytes) tolerated mid-request before it counts as a stall."""
    connect_timeout_s: float = 10.0
    """Time allowed to open a connection."""
    ignore_eos: bool = False
    """Send ``ignore_eos: true`` (vLLM, tokenwatt serve) so outputs reach max_tokens exactly."""
    extra_body: Mapping[str, Any] = field(default_factory=dict)
    """Extra JSON fields merged into every request body (e.g. temperature)."""
    max_connections: int = 4096
    """Connection pool size; keep above the highest concurrency you drive."""

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"endpoint URL {self.base_url!r} must start with http:// or https://")
        try:
            parts = urllib.parse.urlsplit(self.base_url)
            port = parts.port
        except ValueError as exc:
            # urllib says "Port out of range" for 99999 and "Invalid IPv6 URL" for a stray "[".
            if "out of range" in str(exc):
                raise ConfigError(f"endpoint URL {self.base_url!r}: port must be 1-65535") from None
            raise ConfigError(
                f"endpoint URL {self.base_url!r} is not a valid URL ({exc}); "
                "give e.g. http://127.0.0.1:8000"
            ) from None
        if port == 0:
            raise ConfigError(f"endpoint URL {self.base_url!r}: port must be 1-65535")
        if not parts.hostname:
            raise ConfigError(
                f"endpoint URL {self.base_url!r} has no host; give e.g. http://127.0.0.1:8000"
            )
        if self.api not in ("completions", "chat"):
            raise ConfigError(f"unknown api {self.api!r}; use completions or chat")
        for name in ("timeout_s", "stall_timeout_s", "connect_timeout_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.max_connections < 1:
            raise ConfigError("max_connections must be >= 1")

    @property
    def url(self) -> str:
        """Full URL of the endpoint called."""
        root = self.base_url.rstrip("/")
        if root.endswith("/v1"):
            root = root[:-3]
        path = "/v1/completions" if self.api == "completions" else "/v1/chat/completions"
        return root + path


class EndpointError(TokenwattError):
    """The URL answers, but not as an OpenAI-compatible endpoint (wrong URL or server)."""


class EndpointAuthError(EndpointError):
    """The endpoint refuses the API key sent (HTTP 401 or 403), or wants one and got none."""


@dataclass(frozen=True)
class ModelInfo:
    """One model an endpoint lists at ``GET /v1/models``."""

    id: str
    """The model's name, as requests must send it."""
    max_model_len: int | None = None
    """Its context in tokens, prompt plus output (tokenwatt serve, vLLM); None: not reported."""


def _model_info(entry: Any) -> ModelInfo:
    if not isinstance(entry, Mapping) or "id" not in entry:
        raise TypeError("not a model entry")
    length = entry.get("max_model_len")
    # A bool is an int to Python, never a context length.
    valid = isinstance(length, int) and not isinstance(length, bool) and length >= 2
    return ModelInfo(str(entry["id"]), length if valid else None)


async def list_models(
    base_url: str, api_key: str | None = None, timeout_s: float = 10.0
) -> tuple[ModelInfo, ...] | None:
    """The models ``GET /v1/models`` lists, in its order; None when the endpoint refuses the
    connection or has no such route (the run then reports what happens to its requests).

    Raises:
        EndpointAuthError: the endpoint answers 401 or 403: ``api_key`` is missing or wrong, and
            every request of a run would be refused the same way.
        EndpointError: the endpoint answers, but not like an OpenAI-compatible one (HTML, not
            JSON, or no model list), or does not answer within ``timeout_s``.
    """
    root = base_url.rstrip("/").removesuffix("/v1")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        async with httpx.AsyncClient(timeout=timeout_s, verify=root.startswith("https")) as http:
            response = await http.get(root + "/v1/models", headers=headers)
    except httpx.TimeoutException:
        # Silence, unlike a refusal, would make every request of the run wait out its own
        # timeout: minutes of nothing before the first result.
        raise EndpointError(
            f"{root} did not answer GET /v1/models within {timeout_s:g} s; check --url and "
            "that the server is up (or pass --model and --max-input-tokens to skip this check)"
        ) from None
    except httpx.HTTPError as exc:
        log.info("cannot list models at %s: %r", root, exc)
        return None
    if response.status_code in (401, 403):
        given = "the API key given was refused" if api_key else "no API key was given"
        raise EndpointAuthError(
            f"{root} answered GET /v1/models with HTTP {response.status_code}: {given}; pass "
            "the server's key with --api-key or the OPENAI_API_KEY environment variable"
        )
    if response.status_code != 200:
        return None
    kind = response.headers.get("content-type", "?").split(";")[0]
    try:
        entries = response.json()["data"]
        models = tuple(_model_info(entry) for entry in entries)
        if not models:
            raise IndexError("empty model list")
    except (ValueError, KeyError, IndexError, TypeError):
        raise EndpointError(
            f"{root} is not an OpenAI-compatible endpoint: GET /v1/models answered {kind}, "
            "not a model list; check --url (the server root, e.g. http://host:8000)"
        ) from None
    return models


async def discover_model(
    base_url: str, api_key: str | None = None, timeout_s: float = 10.0
) -> str | None:
    """The first model ``GET /v1/models`` lists; None when the endpoint refuses the connection or
    has no such route. Raises ``EndpointError`` as ``list_models`` does."""
    models = await list_models(base_url, api_key, timeout_s)
    return models[0].id if models else None


async def find_model(
    base_url: str, api_key: str | None = None, model: str | None = None, timeout_s: float = 10.0
) -> tuple[ModelInfo | None, str | None]:
    """(the endpoint's entry for ``model``, or its first model when None; a note when the list
    could not be read and ``model`` was given, so the run goes on without a known context).
    The entry is None when the endpoint lists nothing or not ``model``.

    Raises:
        EndpointAuthError: the endpoint refuses ``api_key`` (with or without ``model``: its
            requests would be refused too).
        EndpointError: no ``model`` given, and the endpoint is silent or not OpenAI-compatible.
    """
    try:
        models = await list_models(base_url, api_key, timeout_s)
    except EndpointError as exc:
        if model is None or isinstance(exc, EndpointAuthError):
            raise
        return None, str(exc)
    if not models:
        return None, None
    if model is None:
        return models[0], None
    return next((m for m in models if m.id == model), None), None


_FALLBACK_PROMPTS = PromptSynthesizer()


def synthetic_prompt(request: Request) -> str:
    """A prompt for a request that carries none: ``tokenwatt.workload``'s synthesizer without a
    tokenizer (about one token per word, stated in results), sharing exactly the prefixes the
    request's ``prefix_block_ids`` say and unique after them."""
    prompt = _FALLBACK_PROMPTS.for_request(request).prompt
    assert prompt is not None
    return prompt


def _status_kind(status: int) -> ErrorKind:
    if status == 429:
        return "http_429"
    return "http_5xx" if status >= 500 else "http_4xx"


class _StreamFailed(Exception):
    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class OpenAIClient:
    """OpenAI-compatible streaming client over httpx (a sharded pool: see ``_pool``).

    ``transport`` replaces the network (``httpx.MockTransport`` in tests). The pool is opened on
    first use, so constructing one does no I/O.
    """

    def __init__(
        self, config: ClientConfig, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.config = config
        self._transport = transport
        self._pool: ShardedPool | None = None
        self._verify: ssl.SSLContext | bool | None = None
        self._headers = {"Accept": "text/event-stream"}
        if config.api_key:
            self._headers["Authorization"] = f"Bearer {config.api_key}"

    def _make_shard(self, connections: int) -> httpx.AsyncClient:
        cfg = self.config
        if self._verify is None:
            # Loading CA certificates blocks the event loop for ~0.1 s: do it once, and only
            # where TLS is used; every shard shares the context.
            tls = cfg.base_url.startswith("https://")
            self._verify = ssl.create_default_context() if tls else False
        return httpx.AsyncClient(
            transport=self._transport,
            verify=self._verify,
            timeout=httpx.Timeout(
                connect=cfg.connect_timeout_s, read=cfg.stall_timeout_s, write=30.0, pool=None
            ),
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
            headers=self._headers,
        )

    def _shards(self) -> ShardedPool:
        if self._pool is None:
            cfg = self.config
            # A given transport (a mock) is one pool already: no point sharding it.
            size = cfg.max_connections if self._transport is not None else SHARD_CONNECTIONS
            self._pool = ShardedPool(self._make_shard, cfg.max_connections, size)
        return self._pool

    async def open(self) -> None:
        """Create the pool and make one cheap request (``GET /v1/models``), so lazy imports and
        the first connection are paid before the run's clock starts, not by its first sends."""
        root = self.config.url.rsplit("/v1/", 1)[0]
        pool = self._shards()
        index, http = pool.acquire()
        try:
            await http.get(root + "/v1/models", timeout=self.config.connect_timeout_s)
        except httpx.HTTPError as exc:
            log.info("warm-up request to %s failed (the run will report it): %r", root, exc)
        finally:
            pool.release(index)

    def body(self, request: Request) -> dict[str, Any]:
        """The JSON body sent for ``request``."""
        cfg = self.config
        prompt = request.prompt if request.prompt is not None else synthetic_prompt(request)
        body: dict[str, Any] = {
            "model": cfg.model,
            "max_tokens": request.output_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if cfg.api == "completions":
            body["prompt"] = prompt
        else:
            body["messages"] = [{"role": "user", "content": prompt}]
        if cfg.ignore_eos:
            body["ignore_eos"] = True
        if request.tenant is not None:
            body["user"] = request.tenant
        body.update(cfg.extra_body)
        return body

    async def stream(self, request: Request) -> AsyncIterator[StreamEvent]:
        """Send ``request`` and yield its chunks, then exactly one ``Done`` or ``Failure``."""
        cfg = self.config
        deadline = asyncio.get_running_loop().time() + cfg.timeout_s
        status: int | None = None
        pool = self._shards()
        index, http = pool.acquire()
        try:
            async with asyncio.timeout_at(deadline):
                ctx = http.stream("POST", cfg.url, json=self.body(request))
                response = await ctx.__aenter__()
            try:
                status = response.status_code
                if status != 200:
                    async with asyncio.timeout_at(deadline):
                        text = (await response.aread())[:300].decode("utf-8", "replace")
                    yield Failure(time.perf_counter(), _status_kind(status), text, status)
                    return
                events = self._events(response, deadline)
                try:
                    async for event in events:
                        yield event
                finally:
                    # Closed here, not by the garbage collector on some later loop turn.
                    await events.aclose()
            finally:
                await ctx.__aexit__(None, None, None)
        except _StreamFailed as exc:
            yield Failure(time.perf_counter(), exc.kind, str(exc), status)
        except TimeoutError:
            yield Failure(time.perf_counter(), "timeout", f"no answer within {cfg.timeout_s}s")
        except httpx.ConnectError as exc:
            yield Failure(time.perf_counter(), "connect", f"cannot connect to {cfg.url}: {exc}")
        except httpx.ConnectTimeout:
            yield Failure(time.perf_counter(), "connect", f"connect to {cfg.url} timed out")
        except httpx.ReadTimeout:
            msg = f"no bytes for {cfg.stall_timeout_s}s"
            yield Failure(time.perf_counter(), "stall", msg, status)
        except (httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError) as exc:
            yield Failure(time.perf_counter(), "reset", f"connection lost: {exc!r}", status)
        except httpx.HTTPError as exc:
            yield Failure(time.perf_counter(), "other", repr(exc), status)
        finally:
            pool.release(index)

    async def _events(
        self, response: httpx.Response, deadline: float
    ) -> AsyncGenerator[StreamEvent, None]:
        chat = self.config.api == "chat"
        usage: Mapping[str, Any] = {}
        pending = b""
        reader = response.aiter_bytes().__aiter__()
        loop = asyncio.get_running_loop()
        stall_s = self.config.stall_timeout_s
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError
            try:
                if remaining < stall_s:
                    async with asyncio.timeout_at(deadline):
                        data = await reader.__anext__()
                else:
                    # httpx's read timeout (= the stall timeout) already bounds this wait, and
                    # the deadline is further away: a timer per read would only cost CPU.
                    data = await reader.__anext__()
            except StopAsyncIteration:
                break
            now = time.perf_counter()
            pending += data
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                line = raw.rstrip(b"\r")
                if not line.startswith(b"data:"):
                    continue  # blank separators, comments, event: and id: fields
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    await _drain(reader, deadline)
                    yield Done(now, usage, response.status_code)
                    return
                text, chunk_usage = _parse_payload(payload, chat)
                if chunk_usage:
                    usage = chunk_usage
                if text:
                    yield Chunk(now, text)
        raise _StreamFailed("truncated", "stream ended without data: [DONE]")

    async def aclose(self) -> None:
        """Close the connection pool."""
        if self._pool is not None:
            await self._pool.aclose()
            self._pool = None


async def _drain(reader: AsyncIterator[bytes], deadline: float) -> None:
    """Read the body to its end (the chunked terminator follows ``[DONE]``), so the connection
    goes back to the pool instead of being closed: reuse is what keeps high rates cheap."""
    loop = asyncio.get_running_loop()
    # The terminator arrives at once from a well-behaved server; never wait long for it.
    limit = min(deadline, loop.time() + 1.0)
    with contextlib.suppress(TimeoutError, httpx.HTTPError):
        async with asyncio.timeout_at(limit):
            async for _ in reader:
                pass


def _parse_payload(payload: bytes, chat: bool) -> tuple[str, Mapping[str, Any]]:
    """Text and usage of one SSE ``data:`` payload; raises _StreamFailed when malformed."""
    try:
        obj = json.loads(payload)
    except ValueError:
        raise _StreamFailed("malformed_sse", f"not JSON: {payload[:80]!r}") from None
    if not isinstance(obj, dict):
        raise _StreamFailed("malformed_sse", f"not a JSON object: {payload[:80]!r}")
    if "error" in obj:
        raise _StreamFailed("stream_error", f"error in stream: {str(obj['error'])[:200]}")
    usage = obj.get("usage") or {}
    choices = obj.get("choices") or []
    if not isinstance(choices, list) or not isinstance(usage, dict):
        raise _StreamFailed("malformed_sse", f"unexpected chunk shape: {payload[:80]!r}")
    if not choices:
        return "", usage
    choice = choices[0]
    if not isinstance(choice, dict):
        raise _StreamFailed("malformed_sse", f"unexpected choice: {payload[:80]!r}")
    if chat:
        delta = choice.get("delta") or {}
        text = (delta.get("content") or "") + (delta.get("reasoning_content") or "")
    else:
        text = choice.get("text") or ""
    return str(text), usage


StreamFn = Callable[[Request], AsyncIterator[StreamEvent]]


class FunctionClient:
    """A client whose stream is a user function: the fake for unit tests (no network)."""

    def __init__(self, fn: StreamFn) -> None:
        self._fn = fn
        self.sent: list[Request] = []
        """Every request sent, in order."""

    def stream(self, request: Request) -> AsyncIterator[StreamEvent]:
        """Record ``request`` and delegate to the function."""
        self.sent.append(request)
        return self._fn(request)

    async def open(self) -> None:
        """Nothing to prepare."""

    async def aclose(self) -> None:
        """Nothing to release."""

    @classmethod
    def scripted(
        cls,
        ttft_s: float = 0.0,
        itl_s: float = 0.0,
        failure: ErrorKind | None = None,
    ) -> FunctionClient:
        """A client answering each request with ``output_tokens`` chunks on a fixed schedule."""

        async def fn(request: Request) -> AsyncIterator[StreamEvent]:
            await asyncio.sleep(ttft_s)
            for i in range(request.output_tokens):
                if i:
                    await asyncio.sleep(itl_s)
                yield Chunk(time.perf_counter(), "x")
            if failure is not None:
                yield Failure(time.perf_counter(), failure, "scripted failure")
                return
            usage = {
                "prompt_tokens": request.input_tokens,
                "completion_tokens": request.output_tokens,
            }
            yield Done(time.perf_counter(), usage)

        return cls(fn)

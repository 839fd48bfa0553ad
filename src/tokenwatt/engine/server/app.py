"""The OpenAI-compatible HTTP app over an ``Engine``: completions, chat, models, health,
metrics and per-tenant totals, optionally behind API keys (see ``auth``). Every client error is
a 4xx with an OpenAI error body.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..engine import Completion, Engine, OutputStream
from ..request import EngineOverloadedError, InvalidRequestError, RequestOutput
from ..sampling import SamplingParams
from .auth import ApiKeyMiddleware, KeyRing, caller_of
from .metrics import ServerMetrics, tenant_of
from .protocol import (
    ApiError,
    ChatCompletionRequest,
    CompletionRequest,
    api_finish_reason,
    check_max_tokens,
    error_body,
    invalid,
    parse_body,
    usage_body,
)

__all__ = ["build_app"]

log = logging.getLogger(__name__)


def _error_response(err: ApiError) -> JSONResponse:
    return JSONResponse(error_body(err), status_code=err.status, headers=err.headers)


class _Call:
    """One API call: its engine request, timings for the metrics, and the final completion.

    ``observe`` runs on the engine thread (see ``Engine.open_stream``); ``outputs`` is read
    by the handler only after the final output was observed.
    """

    def __init__(self, app_state: _State, tenant: str, model: str) -> None:
        self.state = app_state
        self.tenant = tenant
        self.model = model
        self.arrival = time.monotonic()
        self.last_token_at: float | None = None
        self.outputs: list[RequestOutput] = []

    def observe(self, out: RequestOutput) -> None:
        now = time.monotonic()
        if out.token_ids:
            m = self.state.metrics
            if self.last_token_at is None:
                m.ttft.observe(now - self.arrival)
            else:
                m.itl.observe(now - self.last_token_at)
            self.last_token_at = now
        self.outputs.append(out)
        if out.finished:
            self.state.metrics.e2e.observe(now - self.arrival)
            self.state.metrics.finished(self.tenant, Completion.join(self.outputs))

    def failure(self) -> ApiError | None:
        last = self.outputs[-1] if self.outputs else None
        if last is None or last.finish_reason not in ("abort", "error"):
            return None
        if last.finish_reason == "abort":
            return ApiError(
                503,
                "the server is shutting down",
                type_="server_error",
                headers={"Retry-After": "5"},
            )
        return ApiError(500, f"generation failed: {last.error}", type_="server_error")


class _State:
    def __init__(self, engine: Engine, model_name: str) -> None:
        self.engine = engine
        self.model_name = model_name
        self.metrics = ServerMetrics(engine.stats)
        meter = engine.meter
        if meter is not None:
            self.metrics.set_components({c.name: (c.source, c.scope) for c in meter.components})
        self.created = int(time.time())
        # A provider with its own series (the warehouse) exports them on this /metrics too.
        register = getattr(engine.core.provider, "register_metrics", None)
        if callable(register):
            register(self.metrics.registry)


def build_app(
    engine: Engine,
    *,
    model_name: str | None = None,
    owns_engine: bool = True,
    on_shutdown: Sequence[Callable[[], None]] = (),
    api_keys: Sequence[str] = (),
    admin_keys: Sequence[str] = (),
) -> FastAPI:
    """The FastAPI app serving ``engine`` as model ``model_name`` (default: the model's name).

    With ``owns_engine`` the app starts the engine thread at startup and stops it at shutdown;
    then it calls each of ``on_shutdown`` (closing meters, the warehouse), errors logged.
    With ``api_keys`` or ``admin_keys``, every route but /health and /metrics needs one of them
    as a bearer token (else 401), and /v1/tenants shows a non-admin key only its own tenants.
    """
    keys = KeyRing(api_keys, admin_keys)  # validates before anything starts
    state = _State(engine, model_name or engine.loaded.name)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if owns_engine:
            engine.start()
        try:
            yield
        finally:
            if owns_engine:
                engine.stop()
            for fn in on_shutdown:
                try:
                    fn()
                except Exception:  # one failing cleanup must not skip the others
                    log.warning("shutdown hook %r failed", fn, exc_info=True)

    app = FastAPI(title="tokenwatt serve", lifespan=lifespan)
    app.state.tokenwatt = state
    if keys.enabled:
        app.add_middleware(ApiKeyMiddleware, keys=keys)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        if exc.status == 429:
            state.metrics.rejected.labels("429").inc()
        return _error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error_response(ApiError(400, str(exc)))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return _error_response(ApiError(exc.status_code, str(exc.detail), type_=kind))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error while serving a request")
        return _error_response(ApiError(500, f"internal error: {exc}", type_="server_error"))

    @app.get("/health")
    async def health() -> JSONResponse:
        ok = engine.running
        return JSONResponse({"status": "ok" if ok else "stopped"}, status_code=200 if ok else 503)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {
                    "id": state.model_name,
                    "object": "model",
                    "created": state.created,
                    "owned_by": "tokenwatt",
                    "fingerprint": engine.loaded.fingerprint,
                    "max_model_len": engine.loaded.max_context,
                }
            ],
        }

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/tenants")
    async def tenants(request: Request) -> dict[str, Any]:
        caller = caller_of(request.scope)  # None: no keys, so everyone sees every tenant
        return {
            "object": "list",
            "data": [
                {"object": "tenant", "tenant": k, **asdict(v)}
                for k, v in sorted(state.metrics.tenants().items())
                if caller is None or caller.may_read(k)
            ],
        }

    @app.post("/v1/completions", response_model=None)
    async def completions(request: Request) -> Response:
        req: CompletionRequest = parse_body(await request.body(), CompletionRequest)
        _check_model(state, req.model)
        check_max_tokens(req.max_tokens, "max_tokens")
        params = req.sampling(req.max_tokens or 16)
        prompt = req.prompt_value()
        call = _Call(state, _tenant(request, req.user), req.model)
        if req.stream:
            return _stream(call, prompt, params, req.include_usage, _completion_chunk, "prompt")
        c = await _run(call, prompt, params, "prompt", request)
        if c is None:
            return Response(status_code=_CLIENT_CLOSED)
        return JSONResponse(_completion_body(call, c))

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(request: Request) -> Response:
        req: ChatCompletionRequest = parse_body(await request.body(), ChatCompletionRequest)
        _check_model(state, req.model)
        check_max_tokens(req.max_completion_tokens, "max_completion_tokens")
        check_max_tokens(req.max_tokens, "max_tokens")
        messages = [{"role": m.role, "content": m.text()} for m in req.messages]
        ids = engine.encode_chat(messages)
        limit = req.max_completion_tokens or req.max_tokens
        if limit is None:
            # No limit given: the default, shortened so a long chat still fits the context.
            room = engine.loaded.max_context - len(ids)
            limit = max(1, min(engine.config.default_chat_max_tokens, room))
        params = req.sampling(limit)
        call = _Call(state, _tenant(request, req.user), req.model)
        if req.stream:
            return _stream(call, ids, params, req.include_usage, _chat_chunk, "messages")
        c = await _run(call, ids, params, "messages", request)
        if c is None:
            return Response(status_code=_CLIENT_CLOSED)
        return JSONResponse(_chat_body(call, c))

    return app


_CLIENT_CLOSED = 499
"""Status of a response nobody receives: the client closed the connection (nginx's code)."""


def _tenant(request: Request, user: str | None) -> str:
    """The tenant to bill: with keys, the caller's key namespace; else ``tenant_of``."""
    caller = caller_of(request.scope)
    if caller is None:
        return tenant_of(user, request.headers.get("authorization"))
    return caller.tenant_for(user)


def _check_model(state: _State, model: str) -> None:
    if model != state.model_name:
        raise ApiError(
            400,
            f"unknown model {model!r}; this server serves {state.model_name!r}",
            param="model",
            code="model_not_found",
        )


def _open(call: _Call, prompt: str | list[int], params: SamplingParams, param: str) -> OutputStream:
    """Submit now, so refusals are proper HTTP errors (never events inside a 200 stream)."""
    try:
        # The tenant billed is the tenant whose cache the request may read (see engine.kv).
        return call.state.engine.open_stream(
            prompt, params, observer=call.observe, tenant=call.tenant
        )
    except InvalidRequestError as exc:
        raise invalid(exc, param) from exc
    except EngineOverloadedError as exc:
        stopped = not call.state.engine.running
        raise ApiError(
            503 if stopped else 429,
            str(exc),
            type_="server_error" if stopped else "rate_limit_error",
            code="unavailable" if stopped else "overloaded",
            headers={"Retry-After": str(max(1, round(exc.retry_after_s)))},
        ) from exc


async def _run(
    call: _Call, prompt: str | list[int], params: SamplingParams, param: str, request: Request
) -> Completion | None:
    """The finished completion, or None when the client went away first (then it is aborted
    at once, as a closed stream is, rather than generating tokens nobody will read)."""
    stream = _open(call, prompt, params, param)

    async def drain() -> None:
        async for _ in stream:
            pass  # call.observe sees each output on the engine thread

    work = asyncio.ensure_future(drain())
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not work.done():
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work
        await stream.aclose()
    if not work.done() or work.cancelled():
        log.info("client went away; request aborted")
        return None
    work.result()
    failure = call.failure()
    if failure is not None:
        raise failure
    return Completion.join(call.outputs)


async def _disconnected(request: Request) -> None:
    """Return once the client disconnects (the body is read, so receive() waits for that)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


ChunkBuilder = Callable[[_Call, str, RequestOutput, bool], dict[str, Any]]


def _stream(
    call: _Call,
    prompt: str | list[int],
    params: SamplingParams,
    include_usage: bool,
    chunk: ChunkBuilder,
    param: str,
) -> Response:
    rid = f"cmpl-{uuid.uuid4().hex[:24]}"
    stream = _open(call, prompt, params, param)

    async def events() -> AsyncGenerator[str, None]:
        first_chunk = True
        try:
            async for out in stream:
                if out.finish_reason in ("abort", "error"):
                    err = call.failure()
                    if err is not None:
                        yield f"data: {json.dumps(error_body(err))}\n\n"
                    return
                if out.text or out.finished or first_chunk:
                    yield f"data: {json.dumps(chunk(call, rid, out, first_chunk))}\n\n"
                    first_chunk = False
            if include_usage:
                c = Completion.join(call.outputs)
                body = {**chunk(call, rid, call.outputs[-1], False), "choices": []}
                body["usage"] = usage_body(c, c.prompt_tokens, c.completion_tokens)
                yield f"data: {json.dumps(body)}\n\n"
            yield "data: [DONE]\n\n"
        finally:
            await stream.aclose()  # on client disconnect this aborts the request at once

    return StreamingResponse(events(), media_type="text/event-stream")


def _completion_chunk(call: _Call, rid: str, out: RequestOutput, first: bool) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "text_completion",
        "created": int(time.time()),
        "model": call.model,
        "choices": [
            {
                "index": 0,
                "text": out.text,
                "logprobs": None,
                "finish_reason": api_finish_reason(out.finish_reason) if out.finished else None,
            }
        ],
    }


def _chat_chunk(call: _Call, rid: str, out: RequestOutput, first: bool) -> dict[str, Any]:
    delta: dict[str, Any] = {"content": out.text}
    if first:
        delta["role"] = "assistant"
    return {
        "id": rid.replace("cmpl-", "chatcmpl-"),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": call.model,
        "choices": [
            {
                "index": 0,
                "delta": delta,
                "logprobs": None,
                "finish_reason": api_finish_reason(out.finish_reason) if out.finished else None,
            }
        ],
    }


def _completion_body(call: _Call, c: Completion) -> dict[str, Any]:
    return {
        "id": f"cmpl-{uuid.uuid4().hex[:24]}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": call.model,
        "choices": [
            {
                "index": 0,
                "text": c.text,
                "logprobs": None,
                "finish_reason": api_finish_reason(c.finish_reason),
            }
        ],
        "usage": usage_body(c, c.prompt_tokens, c.completion_tokens),
    }


def _chat_body(call: _Call, c: Completion) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": call.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": c.text},
                "logprobs": None,
                "finish_reason": api_finish_reason(c.finish_reason),
            }
        ],
        "usage": usage_body(c, c.prompt_tokens, c.completion_tokens),
    }

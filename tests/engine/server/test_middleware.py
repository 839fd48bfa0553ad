"""ApiKeyMiddleware on a small Starlette app: websockets need a key as HTTP does, lifespan
passes, and an ASGI scope type it does not know is refused."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.types import Message
from starlette.websockets import WebSocket, WebSocketDisconnect

from tokenwatt.engine.server import key_tenant
from tokenwatt.engine.server.auth import ApiKeyMiddleware, KeyRing, caller_of

KEY = "ws-key-4b1d"
started: list[str] = []


async def _echo(websocket: WebSocket) -> None:
    """Accepts, and answers with the tenant the middleware authenticated."""
    await websocket.accept()
    caller = caller_of(websocket.scope)
    await websocket.send_text(caller.tenant if caller else "none")
    await websocket.close()


async def _health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    started.append("up")
    yield


def _app() -> ApiKeyMiddleware:
    app = Starlette(
        routes=[WebSocketRoute("/ws", _echo), Route("/health", _health)], lifespan=_lifespan
    )
    return ApiKeyMiddleware(app, KeyRing(api_keys=(KEY,)))


@pytest.fixture
def client() -> Iterator[TestClient]:
    """The app behind one key; entering the client runs its lifespan through the middleware."""
    started.clear()
    with TestClient(_app()) as test_client:
        yield test_client


def test_lifespan_passes_through(client: TestClient) -> None:
    """Startup runs: lifespan events need no key."""
    assert started == ["up"]
    assert client.get("/health").text == "ok"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}],
    ids=["no-key", "wrong-key", "not-bearer"],
)
def test_websocket_without_a_valid_key_is_closed_with_1008(
    client: TestClient, headers: dict[str, str]
) -> None:
    """A websocket without a valid key is refused before it is accepted, code 1008."""
    with pytest.raises(WebSocketDisconnect) as e, client.websocket_connect("/ws", headers=headers):
        pass
    assert e.value.code == 1008


def test_websocket_with_the_key_is_served_as_its_caller(client: TestClient) -> None:
    """With the key the route runs and sees its caller (the key's tenant)."""
    headers = {"Authorization": f"Bearer {KEY}"}
    with client.websocket_connect("/ws", headers=headers) as ws:
        assert ws.receive_text() == key_tenant(KEY)


async def test_unknown_scope_types_are_refused() -> None:
    """A scope type the middleware does not know never reaches the app."""
    reached: list[str] = []

    async def app(scope: object, receive: object, send: object) -> None:
        reached.append("app")

    async def receive() -> Message:
        return {"type": "x"}

    async def send(message: Message) -> None:
        pass

    middleware = ApiKeyMiddleware(app, KeyRing(api_keys=(KEY,)))
    with pytest.raises(RuntimeError, match="unsupported ASGI scope type 'webtransport'"):
        await middleware({"type": "webtransport", "path": "/ws"}, receive, send)
    assert reached == []

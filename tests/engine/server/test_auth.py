"""API keys through HTTP with the official client: 401s in OpenAI's shape, open probes,
per-key tenants and /v1/tenants visibility for API keys and admin keys."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tokenwatt.bench.client import EndpointAuthError, discover_model
from tokenwatt.engine.config import EngineConfig
from tokenwatt.engine.engine import Engine
from tokenwatt.engine.model import LoadedModel
from tokenwatt.engine.server import RunningServer, ServeConfig, key_tenant, start_server

ALICE, BOB, ADMIN = "alice-key-1f3a", "bob-key-77c2", "admin-key-9e0d"
BODY = {"model": "tiny", "prompt": "hi", "max_tokens": 2, "ignore_eos": True}


def _start(tiny: LoadedModel) -> RunningServer:
    config = ServeConfig(port=0, api_keys=(ALICE, BOB), admin_keys=(ADMIN,))
    return start_server(Engine(tiny, EngineConfig(max_queue=64)), config)


@pytest.fixture(scope="module")
def keyed(tiny: LoadedModel) -> Iterator[RunningServer]:
    """tiny behind two API keys and one admin key."""
    server = _start(tiny)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fresh(tiny: LoadedModel) -> Iterator[RunningServer]:
    """A keyed server that has served nothing yet, for exact /v1/tenants contents."""
    server = _start(tiny)
    try:
        yield server
    finally:
        server.stop()


def _client(server: RunningServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)


def _tenants(server: RunningServer, key: str) -> dict[str, int]:
    """Tenant -> requests, as ``key`` sees /v1/tenants."""
    r = httpx.get(server.url + "/v1/tenants", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    return {t["tenant"]: t["requests"] for t in r.json()["data"]}


def test_right_key_completes_and_streams(keyed: RunningServer) -> None:
    """The official client with an API key gets a completion and a streamed chat."""
    client = _client(keyed, ALICE)
    r = client.completions.create(
        model="tiny", prompt="hi", max_tokens=3, extra_body={"ignore_eos": True}
    )
    assert r.usage is not None and r.usage.completion_tokens == 3
    chunks = list(
        client.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=2,
            stream=True,
            extra_body={"ignore_eos": True},
        )
    )
    assert chunks[-1].choices[0].finish_reason == "length"


def test_admin_key_is_an_api_key_too(keyed: RunningServer) -> None:
    """An admin key may call the API, not only read tenants."""
    assert [m.id for m in _client(keyed, ADMIN).models.list().data] == ["tiny"]


def test_wrong_key_is_an_authentication_error(keyed: RunningServer) -> None:
    """A key the server does not hold: openai.AuthenticationError, code invalid_api_key."""
    with pytest.raises(openai.AuthenticationError) as caught:
        _client(keyed, "sk-not-a-key").completions.create(model="tiny", prompt="hi", max_tokens=1)
    err = caught.value
    assert (err.status_code, err.type, err.code, err.param) == (
        401,
        "invalid_request_error",
        "invalid_api_key",
        None,
    )
    assert err.body == {
        "message": "incorrect API key; send one of this server's keys as "
        "`Authorization: Bearer <key>`",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_api_key",
    }
    assert err.response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


def test_models_needs_a_key(keyed: RunningServer) -> None:
    """/v1/models is an API route too: the client's list() fails with a wrong key."""
    with pytest.raises(openai.AuthenticationError, match="incorrect API key"):
        _client(keyed, "wrong").models.list()


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer"}, {"Authorization": f"Basic {ALICE}"}, {"X-Api-Key": ALICE}],
    ids=["none", "bearer-alone", "basic-scheme", "other-header"],
)
def test_missing_key_is_401_saying_how_to_send_one(
    keyed: RunningServer, headers: dict[str, str]
) -> None:
    """No bearer key at all: 401, OpenAI's shape with code null, and WWW-Authenticate."""
    r = httpx.post(keyed.url + "/v1/completions", json=BODY, headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.json() == {
        "error": {
            "message": "no API key: this server needs `Authorization: Bearer <key>` with one "
            "of its API keys",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }


def test_bearer_scheme_is_case_insensitive(keyed: RunningServer) -> None:
    """`bearer KEY` (lower case, as some clients send it) is accepted."""
    headers = {"authorization": f"bearer {BOB}"}
    r = httpx.post(keyed.url + "/v1/completions", json=BODY, headers=headers)
    assert r.status_code == 200, r.text


def test_health_and_metrics_stay_open(keyed: RunningServer) -> None:
    """Probes and Prometheus scrapers need no key."""
    assert httpx.get(keyed.url + "/health").json() == {"status": "ok"}
    metrics = httpx.get(keyed.url + "/metrics")
    assert metrics.status_code == 200
    assert "tokenwatt_requests_total" in metrics.text


def test_unknown_paths_need_a_key_before_they_are_found(keyed: RunningServer) -> None:
    """Without a key an unknown path is 401 (which paths exist is not revealed); with one, 404."""
    assert httpx.get(keyed.url + "/v1/nothing").status_code == 401
    assert httpx.get(keyed.url + "/docs").status_code == 401
    with_key = httpx.get(keyed.url + "/v1/nothing", headers={"Authorization": f"Bearer {ALICE}"})
    assert with_key.status_code == 404


def test_tenants_api_key_sees_only_its_own_admin_sees_all(fresh: RunningServer) -> None:
    """Each key is billed under its hash (with `user` as a sub-tenant); an API key's
    /v1/tenants lists only its own tenants, an admin key's lists every one."""
    alice, bob = _client(fresh, ALICE), _client(fresh, BOB)
    for client, user in ((alice, None), (alice, "u1"), (alice, "u1"), (bob, "u1")):
        extra: dict[str, Any] = {"ignore_eos": True} | ({"user": user} if user else {})
        client.completions.create(model="tiny", prompt="hi", max_tokens=2, extra_body=extra)
    a, b = key_tenant(ALICE), key_tenant(BOB)
    assert _tenants(fresh, ALICE) == {a: 1, f"{a}/u1": 2}
    assert _tenants(fresh, BOB) == {f"{b}/u1": 1}
    assert _tenants(fresh, ADMIN) == {a: 1, f"{a}/u1": 2, f"{b}/u1": 1}


def test_tenants_needs_a_key(keyed: RunningServer) -> None:
    """/v1/tenants without a key is a 401, not an empty list."""
    assert httpx.get(keyed.url + "/v1/tenants").status_code == 401


class _Records(logging.Handler):
    """Keeps every record it is handed, fully formatted (traceback included)."""

    def __init__(self) -> None:
        super().__init__(level=1)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.split(".")[0] not in ("httpx", "httpcore"):  # the test's own client
            self.lines.append(self.format(record))


@contextlib.contextmanager
def _every_log_line() -> Iterator[list[str]]:
    """Every log line, any level, of any logger while open: the root's and uvicorn's, whose
    loggers do not propagate to the root (where caplog listens) and are set to warnings only.
    A handler on ``uvicorn.access`` also turns the access log on for new connections, so a key
    in a request line would show too."""
    records = _Records()
    names = ("", "uvicorn", "uvicorn.error", "uvicorn.asgi", "uvicorn.access")
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    attached = [logging.getLogger(name) for name in ("", "uvicorn", "uvicorn.access")]
    for logger in loggers:
        logger.setLevel(1)
    for logger in attached:
        logger.addHandler(records)
    try:
        yield records.lines
    finally:
        for logger in attached:
            logger.removeHandler(records)
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def test_no_key_is_logged(keyed: RunningServer) -> None:
    """Neither a right nor a wrong key reaches any log line of the server or uvicorn, at any
    level (a new connection per request, so uvicorn's per-connection loggers see it)."""
    leaked = "sk-leaked-if-logged"
    with _every_log_line() as lines:
        for key in (ALICE, leaked, f"{leaked} two words"):
            headers = {"Authorization": f"Bearer {key}", "Connection": "close"}
            httpx.post(keyed.url + "/v1/completions", json=BODY, headers=headers)
    assert any(line.startswith("uvicorn") for line in lines)  # uvicorn's lines are seen
    assert not [line for line in lines if ALICE in line or leaked in line]


def test_bench_client_sends_its_key(keyed: RunningServer) -> None:
    """`tokenwatt bench`'s model discovery works with the key; a wrong or missing one stops
    it with a message naming --api-key and OPENAI_API_KEY (its requests would all be 401)."""
    assert asyncio.run(discover_model(keyed.url, api_key=ALICE)) == "tiny"
    for key in ("wrong", None):
        with pytest.raises(EndpointAuthError, match=r"HTTP 401: .* --api-key or the OPENAI_API"):
            asyncio.run(discover_model(keyed.url, api_key=key))


def test_server_without_keys_shows_every_tenant(server: RunningServer) -> None:
    """Without keys (the default) /v1/tenants is open and lists other tenants' usage."""
    for user in ("carol", "dave"):
        body = {**BODY, "user": user}
        assert httpx.post(server.url + "/v1/completions", json=body).status_code == 200
    tenants = {t["tenant"] for t in httpx.get(server.url + "/v1/tenants").json()["data"]}
    assert {"carol", "dave"} <= tenants

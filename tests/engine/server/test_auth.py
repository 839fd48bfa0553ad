"""API keys through HTTP with the official client: 401s in OpenAI's shape, open probes,
per-key tenants and /v1/tenants visibility for API keys and admin keys."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tokenwatt.bench.client import discover_model
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


def test_no_key_is_logged(keyed: RunningServer, caplog: pytest.LogCaptureFixture) -> None:
    """Neither a right nor a wrong key reaches any log record, at any level."""
    caplog.set_level(logging.DEBUG)
    for key in (ALICE, "sk-leaked-if-logged"):
        headers = {"Authorization": f"Bearer {key}"}
        httpx.post(keyed.url + "/v1/completions", json=BODY, headers=headers)
    server_side = [r.getMessage() for r in caplog.records if not r.name.startswith("http")]
    assert not [m for m in server_side if ALICE in m or "sk-leaked-if-logged" in m]


def test_bench_client_sends_its_key(keyed: RunningServer) -> None:
    """`tokenwatt bench`'s model discovery works with the key, and finds nothing without it."""
    assert asyncio.run(discover_model(keyed.url, api_key=ALICE)) == "tiny"
    assert asyncio.run(discover_model(keyed.url, api_key="wrong")) is None


def test_server_without_keys_shows_every_tenant(server: RunningServer) -> None:
    """Without keys (the default) /v1/tenants is open and lists other tenants' usage."""
    for user in ("carol", "dave"):
        body = {**BODY, "user": user}
        assert httpx.post(server.url + "/v1/completions", json=body).status_code == 200
    tenants = {t["tenant"] for t in httpx.get(server.url + "/v1/tenants").json()["data"]}
    assert {"carol", "dave"} <= tenants

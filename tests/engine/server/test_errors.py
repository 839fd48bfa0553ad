"""Bad input is a 400 with an OpenAI error body; overload is a 429; disconnects free slots."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from tokenwatt.engine.config import EngineConfig
from tokenwatt.engine.engine import Engine
from tokenwatt.engine.model import LoadedModel
from tokenwatt.engine.server import RunningServer, ServeConfig, start_server

GOOD = {"model": "tiny", "prompt": "x", "max_tokens": 2}
CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2}


def _post(server: RunningServer, path: str, content: str | bytes) -> httpx.Response:
    return httpx.post(
        server.url + path, content=content, headers={"content-type": "application/json"}
    )


def _error(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 400, r.text
    err: dict[str, Any] = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == "invalid_request_error"
    return err


def test_malformed_json(server: RunningServer) -> None:
    """A body that is not JSON is a 400 saying so."""
    assert "not valid JSON" in _error(_post(server, "/v1/completions", "{oops"))["message"]


def test_empty_body(server: RunningServer) -> None:
    """An empty body is a 400."""
    assert "empty" in _error(_post(server, "/v1/completions", b""))["message"]


def test_body_not_an_object(server: RunningServer) -> None:
    """A JSON array body is a 400 asking for an object."""
    assert "JSON object" in _error(_post(server, "/v1/completions", "[1, 2]"))["message"]


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/completions", {"model": "tiny"}, "prompt"),
        ("/v1/completions", {"prompt": "x"}, "model"),
        ("/v1/completions", {**GOOD, "max_tokens": "many"}, "max_tokens"),
        ("/v1/completions", {**GOOD, "temperature": 5}, "temperature"),
        ("/v1/completions", {**GOOD, "stream": "yes"}, "stream"),
        ("/v1/chat/completions", {"model": "tiny", "messages": []}, "messages"),
        ("/v1/chat/completions", {"model": "tiny", "messages": [{"role": "x"}]}, "messages.0.role"),
        ("/v1/completions", {**GOOD, "stop": [None]}, "stop"),
        ("/v1/completions", {**GOOD, "prompt": 5}, "prompt"),
        ("/v1/completions", {**GOOD, "seed": 2**64}, "seed"),
        ("/v1/completions", {**GOOD, "seed": -(2**63) - 1}, "seed"),
        ("/v1/completions", {**GOOD, "echo": True}, "echo"),
        ("/v1/completions", {**GOOD, "logprobs": 2}, "logprobs"),
        ("/v1/chat/completions", {**CHAT, "logprobs": True}, "logprobs"),
        ("/v1/chat/completions", {**CHAT, "top_logprobs": 3}, "top_logprobs"),
    ],
)
def test_missing_or_wrong_fields(
    server: RunningServer, path: str, body: dict[str, Any], param: str
) -> None:
    """A missing field, a wrong type, an out-of-range seed or an unsupported option (echo,
    logprobs: silently ignoring them would hand back wrong results) names the field."""
    assert _error(_post(server, path, json.dumps(body)))["param"] == param


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/completions", {**GOOD, "echo": False, "logprobs": None, "seed": 2**64 - 1}),
        ("/v1/chat/completions", {**CHAT, "logprobs": False, "top_logprobs": None}),
    ],
)
def test_unsupported_options_at_their_defaults_are_fine(
    server: RunningServer, path: str, body: dict[str, Any]
) -> None:
    """echo/logprobs at their off values, and the largest seed, are accepted."""
    r = _post(server, path, json.dumps(body))
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("max_tokens", [0, -3])
def test_max_tokens_not_positive(server: RunningServer, max_tokens: int) -> None:
    """max_tokens <= 0 is a 400 on max_tokens."""
    err = _error(_post(server, "/v1/completions", json.dumps({**GOOD, "max_tokens": max_tokens})))
    assert err["param"] == "max_tokens"


def test_prompt_longer_than_context(server: RunningServer) -> None:
    """A prompt over the 8192-token context is a 400 context_length_exceeded, stream or not."""
    for stream in (False, True):
        body = {**GOOD, "prompt": "a" * 9000, "stream": stream}
        err = _error(_post(server, "/v1/completions", json.dumps(body)))
        assert (err["param"], err["code"]) == ("prompt", "context_length_exceeded")


def test_unknown_model(server: RunningServer) -> None:
    """Asking for another model is a 400 model_not_found."""
    err = _error(_post(server, "/v1/completions", json.dumps({**GOOD, "model": "gpt-9"})))
    assert (err["param"], err["code"]) == ("model", "model_not_found")


def test_n_above_one(server: RunningServer) -> None:
    """n=2 is refused clearly."""
    assert _error(_post(server, "/v1/completions", json.dumps({**GOOD, "n": 2})))["param"] == "n"


def test_unknown_path_is_openai_404(server: RunningServer) -> None:
    """An unknown path is a 404 with an error body, not HTML."""
    r = httpx.get(server.url + "/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"


def _wait(predicate: Any, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_disconnect_mid_stream_frees_slot(server: RunningServer) -> None:
    """Closing a long stream after the first chunk aborts the request, frees its KV, and
    still counts it for its tenant."""
    body = {**GOOD, "max_tokens": 8000, "stream": True, "ignore_eos": True, "user": "quitter"}
    with (
        httpx.Client(timeout=30) as c,
        c.stream("POST", server.url + "/v1/completions", json=body) as r,
    ):
        assert r.status_code == 200
        lines = r.iter_lines()  # keep it: a discarded line iterator closes the connection
        next(lines)
        assert server.engine.stats().kv.requests == 1
    assert _wait(lambda: server.engine.stats().kv.requests == 0)
    assert server.engine.stats().running == 0

    def tenants() -> dict[str, Any]:
        data: list[dict[str, Any]] = httpx.get(server.url + "/v1/tenants").json()["data"]
        return {t["tenant"]: t for t in data}

    # The final (abort) output reaches the accounting just after the stats snapshot.
    assert _wait(lambda: "quitter" in tenants())
    assert tenants()["quitter"]["requests"] == 1
    assert tenants()["quitter"]["completion_tokens"] >= 1
    assert (
        'tokenwatt_requests_total{finish_reason="abort"} 1.0'
        in httpx.get(server.url + "/metrics").text
    )


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/chat/completions"])
def test_client_giving_up_on_a_plain_request_aborts_it(server: RunningServer, path: str) -> None:
    """A non-streaming request whose client disconnects (a client timeout) is aborted at
    once, like a stream, instead of generating thousands of tokens nobody will read."""
    body = {**(GOOD if path == "/v1/completions" else CHAT), "max_tokens": 6000}
    body |= {"ignore_eos": True, "user": f"impatient{len(path)}"}
    with pytest.raises(httpx.TimeoutException):
        httpx.post(server.url + path, json=body, timeout=0.5)
    assert _wait(lambda: server.engine.stats().kv.requests == 0, timeout_s=3.0)
    assert server.engine.stats().running == 0

    def tenant() -> dict[str, Any]:
        data: list[dict[str, Any]] = httpx.get(server.url + "/v1/tenants").json()["data"]
        return next((t for t in data if t["tenant"] == body["user"]), {})

    assert _wait(lambda: tenant().get("requests") == 1)
    assert tenant()["completion_tokens"] < 6000


def test_queue_full_is_429_with_retry_after(tiny: LoadedModel) -> None:
    """With max_batch 1 and max_queue 1, a third concurrent request gets 429 + Retry-After."""
    engine = Engine(tiny, EngineConfig(max_batch=1, max_queue=1))
    with start_server(engine, ServeConfig(port=0)) as srv, httpx.Client(timeout=30) as c:
        body = {**GOOD, "max_tokens": 8000, "stream": True, "ignore_eos": True}
        with c.stream("POST", srv.url + "/v1/completions", json=body) as first:
            lines = first.iter_lines()  # keep it: discarding it would close the connection
            next(lines)  # running
            with c.stream("POST", srv.url + "/v1/completions", json=body) as second:
                assert second.status_code == 200  # queued
                assert _wait(lambda: engine.stats().waiting == 1)
                r = c.post(srv.url + "/v1/completions", json=GOOD)
                assert r.status_code == 429
                assert r.headers["retry-after"] == "1"
                assert r.json()["error"]["type"] == "rate_limit_error"


def test_stopped_engine_is_503(tiny: LoadedModel) -> None:
    """With the engine stopped, health and completions answer 503 with Retry-After."""
    engine = Engine(tiny)
    with start_server(engine, ServeConfig(port=0)) as srv:
        engine.stop()
        assert httpx.get(srv.url + "/health").status_code == 503
        r = httpx.post(srv.url + "/v1/completions", json=GOOD)
        assert (r.status_code, r.json()["error"]["code"]) == (503, "unavailable")
        assert r.headers["retry-after"] == "5"


def test_unexpected_fault_is_json_500(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug inside a handler answers a JSON 500 body, not an HTML page or a dropped socket."""

    def broken(messages: object) -> list[int]:
        raise RuntimeError("template exploded")

    monkeypatch.setattr(server.engine, "encode_chat", broken)
    body = {"model": "tiny", "messages": [{"role": "user", "content": "x"}]}
    r = httpx.post(server.url + "/v1/chat/completions", json=body)
    assert r.status_code == 500
    assert r.json()["error"] == {
        "message": "internal error: template exploded",
        "type": "server_error",
        "param": None,
        "code": None,
    }

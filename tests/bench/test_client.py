"""OpenAIClient against the faulty server and mock transports: events, timings, error kinds."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.bench.conftest import StartServer
from tests.bench.faulty_server import silent_endpoint
from tokenwatt.bench.client import (
    ClientConfig,
    EndpointAuthError,
    EndpointError,
    FunctionClient,
    ModelInfo,
    OpenAIClient,
    discover_model,
    find_model,
    list_models,
    synthetic_prompt,
)
from tokenwatt.bench.record import Chunk, Done, Failure, StreamEvent
from tokenwatt.errors import ConfigError
from tokenwatt.workload.types import Request


async def _collect(client: OpenAIClient, request: Request) -> list[StreamEvent]:
    try:
        return [event async for event in client.stream(request)]
    finally:
        await client.aclose()


def _client(url: str, **kwargs: object) -> OpenAIClient:
    return OpenAIClient(ClientConfig(base_url=url, **kwargs))  # type: ignore[arg-type]


async def test_completion_stream_yields_one_chunk_per_token(start_server: StartServer) -> None:
    """A clean /v1/completions stream gives max_tokens chunks, then Done with the usage."""
    server = await start_server()
    events = await _collect(_client(server.url), Request("r0", output_tokens=5))
    assert [type(e) for e in events] == [Chunk] * 5 + [Done]
    done = events[-1]
    assert isinstance(done, Done)
    assert done.usage["completion_tokens"] == 5


async def test_chat_stream_reads_delta_content(start_server: StartServer) -> None:
    """The chat API's delta.content becomes the chunk text."""
    server = await start_server()
    events = await _collect(_client(server.url, api="chat"), Request("r0", output_tokens=3))
    assert [e.text for e in events if isinstance(e, Chunk)] == ["tok", "tok", "tok"]


async def test_chunk_times_follow_the_server_schedule(start_server: StartServer) -> None:
    """Chunk i arrives no earlier than its scheduled time: send + 50 ms + i x 20 ms."""
    server = await start_server(ttft_s=0.05, itl_s=0.02)
    sent = time.perf_counter()
    events = await _collect(_client(server.url), Request("r0", output_tokens=3))
    times = [e.time_s for e in events if isinstance(e, Chunk)]
    assert len(times) == 3
    assert all(t - sent >= 0.05 + i * 0.02 for i, t in enumerate(times))


@pytest.mark.parametrize(
    ("fault", "kind", "status"),
    [
        ("refuse", "connect", None),
        ("reset", "reset", 200),
        ("429", "http_429", 429),
        ("500", "http_5xx", 500),
        ("malformed", "malformed_sse", 200),
        ("truncated", "truncated", 200),
        ("stall", "stall", 200),
    ],
)
async def test_each_fault_ends_in_its_failure_kind(
    start_server: StartServer, fault: str, kind: str, status: int | None
) -> None:
    """Every injected fault ends the stream with one Failure of the matching kind, no raise."""
    server = await start_server(fault=fault)
    client = _client(server.url, stall_timeout_s=0.3, timeout_s=5.0)
    events = await _collect(client, Request("r0", output_tokens=6))
    last = events[-1]
    assert isinstance(last, Failure)
    assert (last.kind, last.status) == (kind, status)
    assert sum(isinstance(e, Failure | Done) for e in events) == 1


async def test_fault_marker_in_prompt_hits_one_request(start_server: StartServer) -> None:
    """A [fault:NAME] marker in the prompt injects the fault into that request only."""
    server = await start_server()
    bad = await _collect(_client(server.url), Request("a", prompt="x [fault:500]"))
    good = await _collect(_client(server.url), Request("b", prompt="x"))
    assert isinstance(bad[-1], Failure)
    assert isinstance(good[-1], Done)


async def test_slow_stream_hits_the_request_timeout(start_server: StartServer) -> None:
    """Tokens that keep coming, but too slowly overall, end in a 'timeout' failure."""
    server = await start_server(itl_s=0.05)
    client = _client(server.url, timeout_s=0.2, stall_timeout_s=1.0)
    events = await _collect(client, Request("r0", output_tokens=50))
    last = events[-1]
    assert isinstance(last, Failure)
    assert last.kind == "timeout"
    assert 2 <= sum(isinstance(e, Chunk) for e in events) < 50


def _mock(body: bytes, status: int = 200) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers={"content-type": "text/event-stream"})

    return httpx.MockTransport(handler)


async def test_error_object_in_stream_is_stream_error() -> None:
    """An OpenAI error object sent inside the SSE stream is a 'stream_error' failure."""
    client = OpenAIClient(ClientConfig(), _mock(b'data: {"error": {"message": "boom"}}\n\n'))
    events = await _collect(client, Request("r0"))
    assert isinstance(events[-1], Failure)
    assert events[-1].kind == "stream_error"


async def test_sse_comments_and_crlf_lines_are_accepted() -> None:
    """Comment lines, event: fields and CRLF line ends are skipped, not treated as data."""
    body = (
        b": ping\r\nevent: message\r\n"
        b'data: {"choices": [{"text": "a"}]}\r\n\r\n'
        b"data: [DONE]\r\n\r\n"
    )
    events = await _collect(OpenAIClient(ClientConfig(), _mock(body)), Request("r0"))
    assert [type(e) for e in events] == [Chunk, Done]


async def test_non_object_payload_is_malformed() -> None:
    """A data: payload that is JSON but not an object is 'malformed_sse'."""
    events = await _collect(OpenAIClient(ClientConfig(), _mock(b"data: [1, 2]\n\n")), Request("r"))
    assert isinstance(events[-1], Failure)
    assert events[-1].kind == "malformed_sse"


async def test_http_400_is_a_4xx_failure_with_the_body() -> None:
    """A 400 answer is an 'http_4xx' failure whose message starts with the error body."""
    client = OpenAIClient(ClientConfig(), _mock(b'{"error": "bad max_tokens"}', status=400))
    events = await _collect(client, Request("r0"))
    last = events[-1]
    assert isinstance(last, Failure)
    assert (last.kind, last.status, last.message) == (
        "http_4xx",
        400,
        '{"error": "bad max_tokens"}',
    )


def test_body_for_chat_carries_the_prompt_as_one_user_message() -> None:
    """The chat body has the prompt as one user message, max_tokens and streaming usage."""
    client = OpenAIClient(ClientConfig(api="chat", model="m", ignore_eos=True))
    body = client.body(Request("r0", prompt="hi", output_tokens=7, tenant="t1"))
    assert body == {
        "model": "m",
        "max_tokens": 7,
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "hi"}],
        "ignore_eos": True,
        "user": "t1",
    }


def test_synthetic_prompt_is_unique_and_sized() -> None:
    """Without a prompt, the client synthesizes one word per input token, unique per request."""
    a = synthetic_prompt(Request("abc", input_tokens=4))
    b = synthetic_prompt(Request("abd", input_tokens=4))
    assert len(a.split()) == len(b.split()) == 4
    assert a != b


def test_synthetic_prompts_share_exactly_their_prefix_blocks() -> None:
    """Two requests with the same first block id share its words and differ after it."""
    a = synthetic_prompt(Request("a", input_tokens=4, prefix_block_ids=(7, 8), block_tokens=2))
    b = synthetic_prompt(Request("b", input_tokens=4, prefix_block_ids=(7, 9), block_tokens=2))
    assert a.split()[:2] == b.split()[:2]
    assert a.split()[2:] != b.split()[2:]


def test_config_url_accepts_a_v1_suffix() -> None:
    """A base URL ending in /v1 is not doubled."""
    assert ClientConfig(base_url="http://h:1/v1/").url == "http://h:1/v1/completions"


@pytest.mark.parametrize(
    "kwargs",
    [{"base_url": "localhost:8000"}, {"api": "embeddings"}, {"timeout_s": 0}],
)
def test_config_rejects_bad_values(kwargs: dict[str, object]) -> None:
    """A URL without scheme, an unknown API or a zero timeout is a ConfigError."""
    with pytest.raises(ConfigError):
        ClientConfig(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("base_url", "message"),
    [
        ("http://127.0.0.1:99999", "port must be 1-65535"),
        ("http://h:abc", "not a valid URL"),
        ("http://[bad", "not a valid URL"),
        ("http://", "has no host"),
        ("http://:8000", "has no host"),
    ],
)
def test_config_names_a_malformed_url(base_url: str, message: str) -> None:
    """A URL with a bad port, bracket or no host is a ConfigError naming the URL and the fix."""
    with pytest.raises(ConfigError, match=message) as info:
        ClientConfig(base_url=base_url)
    assert base_url in str(info.value)


async def test_scripted_fake_client_counts_tokens() -> None:
    """FunctionClient.scripted yields output_tokens chunks then Done, and records the request."""
    client = FunctionClient.scripted()
    events = [e async for e in client.stream(Request("r0", output_tokens=3))]
    assert [type(e) for e in events] == [Chunk, Chunk, Chunk, Done]
    assert [r.request_id for r in client.sent] == ["r0"]


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A loopback port that accepts connections (kernel backlog) but never answers."""
    with silent_endpoint() as url:
        yield url


async def test_discover_model_returns_the_first_listed_model(start_server: StartServer) -> None:
    """The first id of GET /v1/models is the model."""
    server = await start_server()
    assert await discover_model(server.url + "/v1") == "faulty"


async def test_discover_model_is_none_when_refused(start_server: StartServer) -> None:
    """A refused connection gives None: the run itself reports its connect errors, fast."""
    server = await start_server(fault="refuse")
    assert await discover_model(server.url, timeout_s=1.0) is None


async def test_discover_model_names_a_silent_endpoint(silent_url: str) -> None:
    """An endpoint that never answers is an EndpointError naming the wait, not a long run of
    stalled requests."""
    with pytest.raises(EndpointError, match=r"did not answer GET /v1/models within 0\.2 s"):
        await discover_model(silent_url, timeout_s=0.2)


async def test_list_models_reads_max_model_len(start_server: StartServer) -> None:
    """The context /v1/models reports (tokenwatt serve, vLLM) comes with the model's id."""
    server = await start_server(max_model_len=8192)
    assert await list_models(server.url) == (ModelInfo("faulty", 8192),)


async def test_list_models_without_max_model_len_is_none(start_server: StartServer) -> None:
    """An endpoint that reports no context gives max_model_len None (unknown), not a guess."""
    server = await start_server()
    assert await list_models(server.url) == (ModelInfo("faulty", None),)


@pytest.fixture
def models_url() -> Iterator[tuple[str, list[bytes]]]:
    """A loopback server answering GET /v1/models with the JSON body put in the list (and
    the HTTP status put in its second item, 200 unless set)."""
    bodies: list[bytes] = [b"{}", b"200"]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(int(bodies[1]))
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(bodies[0])))
            self.end_headers()
            self.wfile.write(bodies[0])

        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", bodies
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join()


async def test_list_models_ignores_malformed_context_lengths(
    models_url: tuple[str, list[bytes]],
) -> None:
    """Every model is listed in order; a context that is not an integer >= 2 is unknown."""
    url, bodies = models_url
    data = [
        {"id": "a", "max_model_len": True},
        {"id": "b", "max_model_len": "8192"},
        {"id": "c", "max_model_len": 1},
        {"id": "d", "max_model_len": 4096},
    ]
    bodies[0] = json.dumps({"data": data}).encode()
    assert await list_models(url) == (
        ModelInfo("a"),
        ModelInfo("b"),
        ModelInfo("c"),
        ModelInfo("d", 4096),
    )


@pytest.mark.parametrize("body", [{"data": []}, {"data": "x"}, {"data": [{"name": "x"}]}, []])
async def test_list_models_names_a_body_that_is_not_a_model_list(
    models_url: tuple[str, list[bytes]], body: object
) -> None:
    """An empty or malformed model list is an EndpointError naming the URL to check."""
    url, bodies = models_url
    bodies[0] = json.dumps(body).encode()
    with pytest.raises(EndpointError, match="not an OpenAI-compatible endpoint"):
        await list_models(url)


async def test_find_model_without_a_name_is_the_first_listed(start_server: StartServer) -> None:
    """No model named: the endpoint's first model, with its context, and no note."""
    server = await start_server(max_model_len=100)
    assert await find_model(server.url) == (ModelInfo("faulty", 100), None)


async def test_find_model_by_name(start_server: StartServer) -> None:
    """A named model is its own entry; one the endpoint does not list has none."""
    server = await start_server(max_model_len=100)
    assert await find_model(server.url, model="faulty") == (ModelInfo("faulty", 100), None)
    assert await find_model(server.url, model="other") == (None, None)


async def test_find_model_when_refused_has_no_entry(start_server: StartServer) -> None:
    """A refused connection: no entry and no note (the run reports its connect errors)."""
    server = await start_server(fault="refuse")
    assert await find_model(server.url, timeout_s=1.0) == (None, None)


async def test_find_model_of_a_silent_endpoint(silent_url: str) -> None:
    """Silence is an EndpointError when no model is named; with a model it becomes a note,
    and the run goes on without a known context."""
    with pytest.raises(EndpointError, match="did not answer GET /v1/models"):
        await find_model(silent_url, timeout_s=0.2)
    info, note = await find_model(silent_url, model="m", timeout_s=0.2)
    assert info is None
    assert note is not None and "did not answer GET /v1/models within 0.2 s" in note


@pytest.mark.parametrize(
    ("status", "key", "given"),
    [(401, None, "no API key was given"), (403, "wrong", "the API key given was refused")],
)
async def test_a_refused_key_is_an_endpoint_error_naming_the_options(
    models_url: tuple[str, list[bytes]], status: int, key: str | None, given: str
) -> None:
    """401 or 403 from /v1/models stops the bench before it starts (every request would be
    refused), naming --api-key and OPENAI_API_KEY, even when a model is named."""
    url, bodies = models_url
    bodies[:] = [b'{"error": {"message": "no"}}', str(status).encode()]
    message = (
        f"answered GET /v1/models with HTTP {status}: {given}; pass the server's key with "
        "--api-key or the OPENAI_API_KEY environment variable"
    )
    with pytest.raises(EndpointAuthError) as e:
        await list_models(url, api_key=key)
    assert str(e.value) == f"{url} {message}"
    assert key is None or key not in str(e.value)
    with pytest.raises(EndpointAuthError):
        await find_model(url, api_key=key, model="m")


async def test_other_refusals_of_the_model_list_are_not_fatal(
    models_url: tuple[str, list[bytes]],
) -> None:
    """A 404 (a server without /v1/models) still gives None: the run reports its requests."""
    url, bodies = models_url
    bodies[1] = b"404"
    assert await list_models(url) is None

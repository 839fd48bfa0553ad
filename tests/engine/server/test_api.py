"""The OpenAI API with the official client against a live server on loopback."""

from __future__ import annotations

import httpx
import openai
import pytest

from tokenwatt.engine.server import RunningServer


@pytest.fixture
def client(server: RunningServer) -> openai.OpenAI:
    """The official client pointed at the live server."""
    return openai.OpenAI(base_url=server.url + "/v1", api_key="secret-key", max_retries=0)


def test_models_lists_the_served_model(client: openai.OpenAI) -> None:
    """/v1/models names the one model served."""
    assert [m.id for m in client.models.list().data] == ["tiny"]


def test_completion_usage_and_energy(client: openai.OpenAI) -> None:
    """A completion reports usage with token counts and the energy extension."""
    r = client.completions.create(
        model="tiny", prompt="hello", max_tokens=5, temperature=0, extra_body={"ignore_eos": True}
    )
    assert r.choices[0].finish_reason == "length"
    assert r.usage is not None
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (6, 5, 11)
    energy = r.model_dump()["usage"]["energy"]
    assert (energy["source"], energy["scope"], energy["estimated"]) == (
        "estimated:fixed-power",
        "cpu",
        True,
    )
    assert energy["energy_j"] > 0


def test_completion_matches_engine_greedy(client: openai.OpenAI, server: RunningServer) -> None:
    """Served greedy text equals the engine's own greedy text for the prompt."""
    from tokenwatt.engine.sampling import SamplingParams

    r = client.completions.create(
        model="tiny", prompt="same", max_tokens=6, temperature=0, extra_body={"ignore_eos": True}
    )
    direct = server.engine.generate(
        "same", SamplingParams(max_tokens=6, temperature=0, ignore_eos=True)
    )
    assert r.choices[0].text == direct.text


def test_chat_completion(client: openai.OpenAI) -> None:
    """A chat completion answers as the assistant with usage."""
    r = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=4,
        temperature=0,
        extra_body={"ignore_eos": True},
    )
    assert r.choices[0].message.role == "assistant"
    assert r.usage is not None and r.usage.completion_tokens == 4


def test_chat_stream_with_usage(client: openai.OpenAI) -> None:
    """A streamed chat sends role first, deltas, a finish reason and a final usage chunk."""
    chunks = list(
        client.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=6,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"ignore_eos": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 6


def test_completion_stream_text_equals_non_stream(client: openai.OpenAI) -> None:
    """Streamed text joined equals the non-streamed text (greedy)."""
    kw = {
        "model": "tiny",
        "prompt": "stream me",
        "max_tokens": 8,
        "temperature": 0,
        "extra_body": {"ignore_eos": True},
    }
    whole = client.completions.create(**kw).choices[0].text  # type: ignore[call-overload]
    parts = client.completions.create(stream=True, **kw)  # type: ignore[call-overload]
    assert "".join(c.choices[0].text for c in parts if c.choices) == whole


def test_tenants_by_user_and_api_key(client: openai.OpenAI, server: RunningServer) -> None:
    """Totals are kept per `user`, else per hashed API key (the key itself never appears)."""
    client.completions.create(
        model="tiny", prompt="a", max_tokens=2, user="alice", extra_body={"ignore_eos": True}
    )
    client.completions.create(
        model="tiny", prompt="b", max_tokens=3, extra_body={"ignore_eos": True}
    )
    body = httpx.get(server.url + "/v1/tenants").json()
    assert body["object"] == "list" and isinstance(body["data"], list)
    data = {t["tenant"]: t for t in body["data"]}
    assert data["alice"]["completion_tokens"] == 2
    keyed = [k for k in data if k.startswith("key:")]
    assert len(keyed) == 1 and "secret-key" not in httpx.get(server.url + "/v1/tenants").text
    assert data[keyed[0]]["energy_j"] > 0 and data[keyed[0]]["source"] == "estimated:fixed-power"


def test_metrics_exposition(client: openai.OpenAI, server: RunningServer) -> None:
    """/metrics has token, request, energy, latency, queue and KV series."""
    client.completions.create(
        model="tiny", prompt="m", max_tokens=2, extra_body={"ignore_eos": True}
    )
    text = httpx.get(server.url + "/metrics").text
    for name in (
        "tokenwatt_completion_tokens_total",
        'tokenwatt_requests_total{finish_reason="length"}',
        'tokenwatt_energy_joules_total{component="cpu",scope="cpu",source="estimated:fixed-power"}',
        "tokenwatt_time_to_first_token_seconds_bucket",
        "tokenwatt_inter_token_latency_seconds_bucket",
        "tokenwatt_queue_length",
        "tokenwatt_kv_usage_ratio",
    ):
        assert name in text


def test_health(server: RunningServer) -> None:
    """/health is 200 while the engine runs."""
    r = httpx.get(server.url + "/health")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})


def test_chat_without_max_tokens_fits_a_long_history(client: openai.OpenAI) -> None:
    """A chat near the context limit and no max_tokens is shortened, not refused."""
    long = "z" * 8150
    r = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": long}],
        temperature=0,
        extra_body={"ignore_eos": True},
    )
    assert r.usage is not None
    assert r.usage.prompt_tokens + r.usage.completion_tokens == 8192
    assert r.choices[0].finish_reason == "length"


async def test_concurrent_streams_match_sequential(server: RunningServer) -> None:
    """Eight concurrent greedy streams (batched by the engine) equal the same prompts run alone."""
    import asyncio

    client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="k", max_retries=0)
    kw = {"model": "tiny", "max_tokens": 10, "temperature": 0, "extra_body": {"ignore_eos": True}}

    async def streamed(prompt: str) -> str:
        chunks = await client.completions.create(prompt=prompt, stream=True, **kw)  # type: ignore[call-overload]
        return "".join([c.choices[0].text async for c in chunks if c.choices])

    prompts = [f"concurrent {i} " * (i + 1) for i in range(8)]
    together = await asyncio.gather(*(streamed(p) for p in prompts))
    alone = [await streamed(p) for p in prompts]
    await client.close()
    assert together == alone

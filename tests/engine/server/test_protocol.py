"""Request parsing and tenant naming, without a server."""

from __future__ import annotations

import json

import pytest

from tokenwatt.engine.server.metrics import tenant_of
from tokenwatt.engine.server.protocol import (
    ApiError,
    ChatCompletionRequest,
    CompletionRequest,
    parse_body,
)


def test_prompt_as_token_ids() -> None:
    """A list of ints is one prompt of token ids."""
    req = parse_body(b'{"model": "m", "prompt": [256, 104, 105]}', CompletionRequest)
    assert req.prompt_value() == [256, 104, 105]


def test_single_prompt_in_a_list() -> None:
    """["text"] is the prompt "text"."""
    req = parse_body(b'{"model": "m", "prompt": ["hi"]}', CompletionRequest)
    assert req.prompt_value() == "hi"


def test_batched_prompts_are_refused() -> None:
    """Two prompts in one request are a 400 on prompt."""
    req = parse_body(b'{"model": "m", "prompt": ["a", "b"]}', CompletionRequest)
    with pytest.raises(ApiError) as info:
        req.prompt_value()
    assert (info.value.status, info.value.param) == (400, "prompt")


def test_stop_string_and_list() -> None:
    """stop may be one string or a list; both become a tuple."""
    one = parse_body(b'{"model": "m", "prompt": "x", "stop": "\\n"}', CompletionRequest)
    two = parse_body(b'{"model": "m", "prompt": "x", "stop": ["a", "b"]}', CompletionRequest)
    assert one.sampling(4).stop == ("\n",)
    assert two.sampling(4).stop == ("a", "b")


def test_chat_text_parts_are_joined() -> None:
    """Content given as text parts reads as their concatenation."""
    parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": parts}]})
    req = parse_body(body.encode(), ChatCompletionRequest)
    assert req.messages[0].text() == "ab"


def test_chat_image_parts_are_refused() -> None:
    """A non-text part is a 400 on messages."""
    body = b'{"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}'
    req = parse_body(body, ChatCompletionRequest)
    with pytest.raises(ApiError, match="only text content"):
        req.messages[0].text()


def test_tenant_prefers_user_then_hashed_key() -> None:
    """`user` wins; else the bearer key, hashed; else anonymous."""
    assert tenant_of("alice", "Bearer k") == "alice"
    hashed = tenant_of(None, "Bearer k")
    assert hashed.startswith("key:") and len(hashed) == 16 and hashed[4:] != "k"
    assert tenant_of(None, None) == "anonymous"


def test_null_fields_mean_defaults() -> None:
    """null temperature/top_p/n/stream/max_tokens read as OpenAI's defaults."""
    body = (
        b'{"model": "m", "prompt": "x", "temperature": null, "top_p": null, "n": null,'
        b' "stream": null, "max_tokens": null, "stop": null, "seed": null}'
    )
    req = parse_body(body, CompletionRequest)
    params = req.sampling(16)
    assert (params.temperature, params.top_p, params.stop, req.stream) == (1.0, 1.0, (), None)

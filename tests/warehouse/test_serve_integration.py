"""The warehouse behind `tokenwatt serve`'s HTTP server: cached prompts, same text, /metrics."""

from __future__ import annotations

import httpx
import pytest

from tokenwatt.engine.config import EngineConfig
from tokenwatt.engine.engine import Engine
from tokenwatt.engine.model import LoadedModel
from tokenwatt.engine.server.run import start_server
from tokenwatt.warehouse.engine_adapter import build_prefix_provider


@pytest.mark.slow
def test_http_completions_hit_the_warehouse(tiny_model: LoadedModel) -> None:
    """Two identical greedy completions return the same text; the second reuses 112 tokens,
    and /metrics shows the warehouse series."""
    provider = build_prefix_provider("dram=64MiB", tiny_model, block_tokens=16)
    engine = Engine(tiny_model, EngineConfig(block_tokens=16), prefix_provider=provider)
    body = {
        "model": "tiny",
        "prompt": "The warehouse keeps every computed token. " * 3,
        "max_tokens": 6,
        "temperature": 0,
    }
    with start_server(engine.start()) as server, httpx.Client(base_url=server.url) as client:
        first = client.post("/v1/completions", json=body, timeout=60).json()
        assert provider.flush()
        second = client.post("/v1/completions", json=body, timeout=60).json()
        metrics = client.get("/metrics", timeout=10).text
    provider.close()
    assert first["choices"][0]["text"] == second["choices"][0]["text"]
    assert second["usage"]["prompt_tokens_details"]["cached_tokens"] == 112
    assert "tokenwatt_warehouse_tokens_served_total 112.0" in metrics
    assert 'tokenwatt_warehouse_hits_total{tier="dram"} 7.0' in metrics

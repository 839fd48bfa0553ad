"""Warehouse isolation through HTTP: a tenant (the `user` field, else the bearer key) never
sees another tenant's cached prefix in `cached_tokens`, unless the warehouse is shared."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tokenwatt.engine.config import EngineConfig
from tokenwatt.engine.engine import Engine
from tokenwatt.engine.model import LoadedModel
from tokenwatt.engine.server import RunningServer, ServeConfig, start_server
from tokenwatt.warehouse.engine_adapter import WarehousePrefixProvider, build_prefix_provider

PROMPT = "All tenants ask the same long question here. " * 2  # 90 bytes: 5 whole blocks
CACHED = 80  # every whole 16-token block of the 91-token prompt


class _Served:
    """A live server over ``tiny`` with a DRAM warehouse of the given isolation."""

    def __init__(self, tiny: LoadedModel, isolation: str, api_keys: tuple[str, ...] = ()) -> None:
        config = EngineConfig()
        self.provider: WarehousePrefixProvider = build_prefix_provider(
            f"dram=64MiB,isolation={isolation}", tiny, block_tokens=config.block_tokens
        )
        self.server: RunningServer = start_server(
            Engine(tiny, config, prefix_provider=self.provider),
            ServeConfig(port=0, api_keys=api_keys),
        )

    def ask(self, *, user: str | None = None, key: str | None = None) -> tuple[int, str]:
        """cached_tokens and text of one greedy completion of PROMPT (blocks written after)."""
        body: dict[str, Any] = {
            "model": "tiny",
            "prompt": PROMPT,
            "max_tokens": 6,
            "temperature": 0,
            "ignore_eos": True,
        }
        if user is not None:
            body["user"] = user
        headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
        r = httpx.post(self.server.url + "/v1/completions", json=body, headers=headers, timeout=60)
        assert r.status_code == 200, r.text
        assert self.provider.flush()
        data = r.json()
        return data["usage"]["prompt_tokens_details"]["cached_tokens"], data["choices"][0]["text"]

    def stop(self) -> None:
        self.server.stop()
        self.provider.close()


@pytest.fixture
def isolated(tiny: LoadedModel) -> Iterator[_Served]:
    """A server whose warehouse keeps each tenant's cache apart (the default)."""
    served = _Served(tiny, "tenant")
    try:
        yield served
    finally:
        served.stop()


def test_user_field_tenants_do_not_share_cache(isolated: _Served) -> None:
    """Bob's first request of Alice's prompt is a miss; each one's repeat hits; same text."""
    runs = [isolated.ask(user=u) for u in ("alice", "bob", "alice", "bob")]
    assert [cached for cached, _ in runs] == [0, 0, CACHED, CACHED]
    assert len({text for _, text in runs}) == 1


def test_bearer_key_tenants_do_not_share_cache(isolated: _Served) -> None:
    """Two API keys are two tenants: the second key's first request is a miss."""
    runs = [isolated.ask(key=k) for k in ("key-one", "key-two", "key-one", "key-two")]
    assert [cached for cached, _ in runs] == [0, 0, CACHED, CACHED]
    assert len({text for _, text in runs}) == 1


def test_shared_isolation_reuses_across_tenants(tiny: LoadedModel) -> None:
    """With isolation=shared, Bob (and another key) hit the prefix Alice's request stored."""
    served = _Served(tiny, "shared")
    try:
        runs = [served.ask(user="alice"), served.ask(user="bob"), served.ask(key="key-two")]
    finally:
        served.stop()
    assert [cached for cached, _ in runs] == [0, CACHED, CACHED]
    assert len({text for _, text in runs}) == 1


def test_with_keys_a_user_field_cannot_reach_another_keys_cache(tiny: LoadedModel) -> None:
    """With API keys, `user` is a sub-tenant of the key: a second key sending the same `user`
    is a miss (it would otherwise read the first key's prefixes), its own repeat a hit."""
    served = _Served(tiny, "tenant", api_keys=("key-one", "key-two"))
    try:
        runs = [served.ask(user="shared-name", key=k) for k in ("key-one", "key-two", "key-two")]
    finally:
        served.stop()
    assert [cached for cached, _ in runs] == [0, 0, CACHED]
    assert len({text for _, text in runs}) == 1

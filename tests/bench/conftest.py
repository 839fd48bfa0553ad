"""Fixtures for the bench tests: the faulty streaming server on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.bench.faulty_server import FaultyServer

StartServer = Callable[..., Awaitable[FaultyServer]]


@pytest.fixture
async def start_server() -> AsyncIterator[StartServer]:
    """Start FaultyServer instances on free loopback ports; all are stopped afterwards."""
    servers: list[FaultyServer] = []

    async def start(**kwargs: Any) -> FaultyServer:
        server = await FaultyServer(**kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()

"""A live server on 127.0.0.1 (free port) over the tiny model, stopped after each module."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from tokenwatt.energy import FixedPowerMeter
from tokenwatt.engine.config import EngineConfig
from tokenwatt.engine.engine import Engine
from tokenwatt.engine.model import LoadedModel
from tokenwatt.engine.server import RunningServer, ServeConfig, start_server


@pytest.fixture(scope="module")
def server(tiny: LoadedModel) -> Iterator[RunningServer]:
    """tiny served as "tiny" with a 10 W estimated meter whose clock ticks 1 s per read."""
    ticks = itertools.count()
    meter = FixedPowerMeter({"cpu": 10.0}, scope="cpu", clock=lambda: float(next(ticks)))
    engine = Engine(tiny, EngineConfig(max_queue=64), meter=meter)
    running = start_server(engine, ServeConfig(port=0))
    try:
        yield running
    finally:
        running.stop()

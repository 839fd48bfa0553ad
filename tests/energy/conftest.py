"""Fixtures shared by the energy tests."""

from __future__ import annotations

import pytest

from tests.energy.fakes import FakeClock, FakeGpu, FakeNvml


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock starting at 100 s."""
    return FakeClock(100.0)


@pytest.fixture
def fake_nvml() -> FakeNvml:
    """A fake pynvml with two GPUs that have energy counters."""
    return FakeNvml([FakeGpu("GPU-aaaa-0000", 5_000_000), FakeGpu("GPU-bbbb-1111", 7_000_000)])

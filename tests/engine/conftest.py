"""Engine fixtures: one tiny seeded model per test session (building it costs ~1 s)."""

from __future__ import annotations

import pytest

from tokenwatt.engine.model import LoadedModel, load_model


@pytest.fixture(scope="session")
def tiny() -> LoadedModel:
    """The `tiny` preset on CPU, fp32, seed 0."""
    return load_model("tiny", device="cpu")

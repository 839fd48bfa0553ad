"""Engine fixtures: one tiny seeded model per test session (building it costs ~1 s)."""

from __future__ import annotations

import pytest
import torch

from tokenwatt.engine.model import LoadedModel, load_model


@pytest.fixture(scope="session")
def tiny() -> LoadedModel:
    """The `tiny` preset on CPU, fp32, seed 0."""
    return load_model("tiny", device="cpu")


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> None:
    """One intra-op thread: on a shared 2-core machine spinning OpenMP workers cost 25x."""
    torch.set_num_threads(1)

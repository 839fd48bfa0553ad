"""Fixtures shared by every test package (per-area fixtures live in tests/<area>/conftest.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_TRACES = REPO_ROOT.parent / "shared" / "traces"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip GPU tests cleanly where no CUDA device exists (CI never has one)."""
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except Exception:  # torch missing or broken: no GPU tests either way
        has_gpu = False
    if has_gpu:
        return
    skip_gpu = pytest.mark.skip(reason="needs an NVIDIA GPU (none found)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture
def shared_traces() -> Path:
    """The ../shared/traces folder beside the checkout (real production traces)."""
    if not SHARED_TRACES.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{SHARED_TRACES} is missing: CI runs with ../shared beside the clone")
        pytest.skip(f"{SHARED_TRACES} not found")
    return SHARED_TRACES

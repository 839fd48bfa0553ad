"""Engine configuration validation."""

from __future__ import annotations

import pytest

from tokenwatt.engine.config import EngineConfig
from tokenwatt.errors import ConfigError


def test_defaults_are_valid() -> None:
    """The documented defaults construct."""
    assert EngineConfig().max_batch == 64


@pytest.mark.parametrize("field", ["max_batch", "max_queue", "kv_capacity_tokens", "block_tokens"])
def test_non_positive_limits_are_refused(field: str) -> None:
    """Zero for a limit fails naming the field."""
    with pytest.raises(ConfigError, match=f"EngineConfig.{field} must be an integer >= 1"):
        EngineConfig(**{field: 0})  # type: ignore[arg-type]


def test_torch_threads_must_be_positive() -> None:
    """torch_threads 0 is refused (None means torch's default)."""
    with pytest.raises(ConfigError, match="torch_threads"):
        EngineConfig(torch_threads=0)

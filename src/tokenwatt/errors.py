"""The root exception type and the specific errors every subpackage raises.

Messages say what was wrong and how to fix it; the CLI prints them without a traceback.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "MeterError",
    "ModelError",
    "TokenwattError",
    "TraceError",
    "WarehouseError",
]


class TokenwattError(Exception):
    """Root of every error tokenwatt raises on purpose (bad input, missing hardware, ...)."""


class ConfigError(TokenwattError, ValueError):
    """A configuration value is invalid (out of range, unknown choice, malformed string)."""


class MeterError(TokenwattError):
    """An energy meter cannot be opened or read (missing device, permission denied, ...)."""


class ModelError(TokenwattError):
    """A model cannot be built or loaded (missing path, malformed checkpoint, unknown preset)."""


class TraceError(TokenwattError):
    """A request trace cannot be read (missing file, unknown format, no valid rows)."""


class WarehouseError(TokenwattError):
    """A warehouse tier or store is misconfigured (bad directory, bad URL, bad budget)."""

"""Every package's ``__all__`` names real objects, and the CLI builds."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import tokenwatt


def _packages() -> list[str]:
    names = ["tokenwatt"]
    for info in pkgutil.iter_modules(tokenwatt.__path__, "tokenwatt."):
        if info.ispkg and not info.name.endswith(".cli"):
            names.append(info.name)
    return names


@pytest.mark.parametrize("name", _packages())
def test_all_names_exist(name: str) -> None:
    """Each name a package exports in __all__ is defined there, listed once."""
    module = importlib.import_module(name)
    exported = list(getattr(module, "__all__", []))
    assert len(exported) == len(set(exported))
    missing = [n for n in exported if not hasattr(module, n)]
    assert missing == []


def test_errors_share_one_root() -> None:
    """Every exported error derives from TokenwattError, so the CLI can catch them all."""
    from tokenwatt import errors

    for n in errors.__all__:
        assert issubclass(getattr(errors, n), errors.TokenwattError)

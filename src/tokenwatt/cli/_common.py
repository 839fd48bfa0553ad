"""Helpers shared by the CLI commands: error reporting without tracebacks, a rich console."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import typer
from rich.console import Console

from tokenwatt.errors import TokenwattError

__all__ = ["console", "err_console", "fail", "user_errors"]

console = Console()
err_console = Console(stderr=True)

T = TypeVar("T")


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``message`` as an error on stderr and return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a TokenwattError (bad input, missing hardware) into a clear message and exit 2."""
    try:
        yield
    except TokenwattError as exc:
        raise fail(str(exc)) from None


def run_or_fail(fn: Callable[[], T]) -> T:
    """Call ``fn`` and turn a TokenwattError into a clear message and exit 2."""
    with user_errors():
        return fn()

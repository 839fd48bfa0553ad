"""Entry point of the ``tokenwatt`` command: builds the typer app from each command module.

Each module in this package owns one command (or group) and exposes ``register(app)``.
"""

from __future__ import annotations

import importlib
import logging

import typer

from tokenwatt import __version__

# Command modules, in the order `--help` lists them. Each exposes `register(app: typer.Typer)`.
_COMMAND_MODULES = ("measure", "serve", "warehouse", "bench", "plan", "demo")

app = typer.Typer(
    name="tokenwatt",
    help="Useful output per joule for LLM inference: measure, bench, warehouse, plan.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"tokenwatt {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages to stderr."),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


def _register_all() -> None:
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(f"tokenwatt.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"tokenwatt.cli.{name}":
                continue  # command not built yet in this checkout
            raise
        module.register(app)


_register_all()


def main() -> None:
    """Run the CLI (the ``tokenwatt`` console script)."""
    app()

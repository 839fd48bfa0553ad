"""The root CLI: version, help."""

from __future__ import annotations

from typer.testing import CliRunner

from tokenwatt import __version__
from tokenwatt.cli.main import app


def test_version() -> None:
    """`tokenwatt --version` prints the package version."""
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"tokenwatt {__version__}"

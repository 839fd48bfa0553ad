"""A run's output folder: ``result.json``, ``requests.csv`` and ``report.html``, written together
so that a folder the user cannot write is one clear error."""

from __future__ import annotations

from pathlib import Path

from tokenwatt.bench.report import write_report
from tokenwatt.bench.results import BenchResult
from tokenwatt.errors import ConfigError

__all__ = ["write_run"]


def write_run(result: BenchResult, out_dir: Path) -> dict[str, Path]:
    """Write ``result`` into ``out_dir`` (created if missing); return the paths by kind:
    ``json``, ``csv`` and ``report``.

    Raises:
        ConfigError: the folder or a file in it cannot be written; the message names it.
    """
    try:
        paths = result.write(out_dir)
        paths["report"] = write_report(result, out_dir / "report.html")
    except OSError as exc:
        message = f"cannot write results to {out_dir}: {exc}; choose another --out"
        raise ConfigError(message) from None
    return paths

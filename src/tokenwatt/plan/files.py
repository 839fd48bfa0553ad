"""The planner's files: JSON inputs read and outputs written so that a missing, malformed or
unwritable file is one ConfigError naming it, and output folders checked before a long run."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tokenwatt.errors import ConfigError

if TYPE_CHECKING:  # results reads its files with read_json
    from tokenwatt.plan.results import PlanResult

__all__ = ["check_output_folders", "read_json", "write_output", "write_runs"]


def read_json(path: Path, kind: str) -> Any:
    """The JSON in ``path``; a missing, unreadable (a folder, no permission) or malformed file
    is a ConfigError that calls it a ``kind`` file (``config``, ``result``)."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{kind} file {path} not found") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {kind} file {path} ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise ConfigError(f"{kind} file {path} is not JSON ({exc})") from None


def check_output_folders(*paths: Path | None) -> None:
    """Refuse, before a simulation or a calibration starts, an output whose folder is missing
    (None: no output)."""
    for path in paths:
        if path is not None and not path.parent.is_dir():
            raise ConfigError(
                f"cannot write {path}: the folder {path.parent} does not exist; "
                "create the folder or pick another path"
            )


def write_output(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(path)``; an OSError becomes a ConfigError naming ``path``."""
    try:
        write(path)
    except OSError as exc:
        raise ConfigError(
            f"cannot write {path} ({exc.strerror or exc}); create the folder or pick another path"
        ) from None


def write_runs(results: Sequence[PlanResult], out_dir: Path) -> list[Path]:
    """Write each result as ``run-000.json``, ``run-001.json``, ... in ``out_dir`` (created if
    missing); the paths in the results' order."""
    write_output(out_dir, lambda p: p.mkdir(parents=True, exist_ok=True))
    paths = [out_dir / f"run-{i:03d}.json" for i in range(len(results))]
    for result, path in zip(results, paths, strict=True):
        write_output(path, result.to_json)
    return paths

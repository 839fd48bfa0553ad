"""A run's output folder: the three files written together, a folder that cannot be written."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenwatt.bench.output import write_run
from tokenwatt.bench.record import RequestRecord
from tokenwatt.bench.results import BenchResult, load_result
from tokenwatt.errors import ConfigError


def test_write_run_writes_json_csv_and_report(tmp_path: Path) -> None:
    """The folder is created and holds result.json, requests.csv and report.html."""
    result = BenchResult(summary={"completed": 1}, records=(RequestRecord("a"),))
    out = tmp_path / "new" / "run"
    paths = write_run(result, out)
    assert paths == {
        "json": out / "result.json",
        "csv": out / "requests.csv",
        "report": out / "report.html",
    }
    assert load_result(out).summary == {"completed": 1}
    assert (out / "requests.csv").read_text().count("\n") == 2
    assert "<html" in (out / "report.html").read_text()


def test_write_run_into_a_file_names_the_folder(tmp_path: Path) -> None:
    """A path that is a file is a ConfigError naming it and the fix, not an OSError."""
    taken = tmp_path / "taken"
    taken.write_text("")
    with pytest.raises(ConfigError, match=r"cannot write results to .*taken.*choose another"):
        write_run(BenchResult(), taken)

"""The planner's files: JSON read, output folders checked before a run, unwritable paths named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tokenwatt.errors import ConfigError
from tokenwatt.plan.files import check_output_folders, read_json, write_output, write_runs
from tokenwatt.plan.results import PlanResult


def test_missing_folder_is_refused_before_the_run(tmp_path: Path) -> None:
    """An output in a missing folder names the path and the folder; None and existing pass."""
    check_output_folders(None, tmp_path / "ok.json")
    target = tmp_path / "missing" / "r.json"
    with pytest.raises(ConfigError) as err:
        check_output_folders(tmp_path / "ok.json", target)
    assert str(err.value) == (
        f"cannot write {target}: the folder {target.parent} does not exist; "
        "create the folder or pick another path"
    )


def test_write_output_turns_oserror_into_a_named_error(tmp_path: Path) -> None:
    """A write that fails with an OSError becomes a ConfigError naming the path."""
    target = tmp_path / "missing" / "r.json"
    with pytest.raises(ConfigError) as err:
        write_output(target, lambda p: p.write_text("{}"))
    assert str(err.value) == (
        f"cannot write {target} (No such file or directory); create the folder or pick another path"
    )


def test_write_output_calls_the_writer_with_the_path(tmp_path: Path) -> None:
    """A good path is written by the writer given."""
    target = tmp_path / "r.txt"
    write_output(target, lambda p: p.write_text("done"))
    assert target.read_text() == "done"


def test_write_runs_numbers_results_in_a_new_folder(tmp_path: Path) -> None:
    """Each result goes to run-NNN.json in order, the folder created with its parents."""
    out_dir = tmp_path / "a" / "b"
    results = [PlanResult(label="first", arrived=1), PlanResult(label="second", arrived=2)]
    paths = write_runs(results, out_dir)
    assert paths == [out_dir / "run-000.json", out_dir / "run-001.json"]
    assert [json.loads(p.read_text())["label"] for p in paths] == ["first", "second"]
    assert PlanResult.from_dict(json.loads(paths[1].read_text())) == results[1]


def test_write_runs_into_a_file_is_named(tmp_path: Path) -> None:
    """An out-dir that is a file is a ConfigError naming it."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError) as err:
        write_runs([PlanResult()], blocker)
    assert str(err.value).startswith(f"cannot write {blocker} (File exists)")


def test_read_json_names_a_missing_or_malformed_file(tmp_path: Path) -> None:
    """The file is read as JSON; missing or malformed, the error names its kind and path."""
    good = tmp_path / "good.json"
    good.write_text('{"a": [1, 2]}')
    assert read_json(good, "config") == {"a": [1, 2]}
    with pytest.raises(ConfigError) as err:
        read_json(tmp_path / "none.json", "result")
    assert str(err.value) == f"result file {tmp_path / 'none.json'} not found"
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ConfigError) as err:
        read_json(bad, "config")
    assert str(err.value).startswith(f"config file {bad} is not JSON (Expecting")


def test_read_json_names_a_file_it_cannot_read(tmp_path: Path) -> None:
    """A folder, or a path under a file, is a ConfigError naming the file and the reason."""
    with pytest.raises(ConfigError) as err:
        read_json(tmp_path, "config")
    assert str(err.value) == f"cannot read config file {tmp_path} (Is a directory)"
    under_a_file = tmp_path / "plain" / "p.json"
    under_a_file.parent.write_text("")
    with pytest.raises(ConfigError) as err:
        read_json(under_a_file, "result")
    assert str(err.value) == f"cannot read result file {under_a_file} (Not a directory)"

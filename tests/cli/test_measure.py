"""`tokenwatt measure` end to end: CliRunner and a real subprocess."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tokenwatt.cli.main import app

PY = sys.executable
CPU = ["--meters", "cpu-model", "--sample-hz", "50"]


def run(*args: str) -> Any:
    return CliRunner().invoke(app, ["measure", *args])


def said(result: Any) -> str:
    """The report and errors on stderr, with rich's line wrapping undone."""
    return " ".join(result.stderr.split())


def test_measures_a_command_and_writes_json(tmp_path: Path) -> None:
    """A successful command exits 0, prints the table and writes the documented JSON."""
    out = tmp_path / "m.json"
    result = run(*CPU, "--json", str(out), "--", PY, "-c", "sum(range(10**6))")
    assert result.exit_code == 0, result.output
    assert "estimated:cpu-model" in said(result)
    assert "facility: uptime-2024-average" in said(result)
    data = json.loads(out.read_text())
    assert data["schema"] == "tokenwatt.measure/1"
    assert data["command"] == [PY, "-c", "sum(range(10**6))"]
    assert data["exit_code"] == 0
    assert data["measurement"]["components"][0]["source"] == "estimated:cpu-model"
    assert data["measurement"]["total_j"] > 0
    assert data["facility"]["facility_energy_j"] == pytest.approx(
        data["measurement"]["total_j"] * 1.56
    )
    assert set(data["meters_skipped"]) == {"nvml", "rapl"}


def test_exit_status_passes_through() -> None:
    """The command's exit status is measure's exit status."""
    result = run(*CPU, "--", PY, "-c", "import sys; sys.exit(5)")
    assert result.exit_code == 5
    assert "exit status 5" in said(result)


def test_command_that_cannot_start_exits_127() -> None:
    """A missing program gives exit 127 and a clear message, no traceback."""
    result = run(*CPU, "--", "tokenwatt-no-such-program")
    assert result.exit_code == 127
    assert "cannot start 'tokenwatt-no-such-program'" in said(result)
    assert "Traceback" not in result.output


def test_no_command_is_a_usage_error() -> None:
    """Without a command measure exits 2 and shows the usage."""
    result = run(*CPU)
    assert result.exit_code == 2
    assert "tokenwatt measure [OPTIONS] -- COMMAND" in said(result)


def test_options_after_the_command_belong_to_it(tmp_path: Path) -> None:
    """Flags after the command's name are the command's, not measure's."""
    out = tmp_path / "m.json"
    result = run(*CPU, "--json", str(out), "--", PY, "-c", "pass", "--json", "x")
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["command"][-2:] == ["--json", "x"]


def test_idle_baseline_adds_above_idle_figures(tmp_path: Path) -> None:
    """--idle-s measures a baseline and reports idle-adjusted energy."""
    out = tmp_path / "m.json"
    result = run(*CPU, "--idle-s", "0.05", "--json", str(out), "--", PY, "-c", "pass")
    assert result.exit_code == 0, result.output
    assert "idle baseline:" in said(result)
    data = json.loads(out.read_text())
    assert data["idle_baseline"]["duration_s"] >= 0.05
    assert data["measurement"]["adjusted_total_j"] is not None


def test_facility_overrides_reach_the_result(tmp_path: Path) -> None:
    """--facility and overrides set the model used for the facility figures."""
    out = tmp_path / "m.json"
    args = ["--facility", "hyperscale", "--pue", "2", "--carbon", "100", "--currency", "EUR"]
    result = run(*CPU, *args, "--json", str(out), "--", PY, "-c", "pass")
    assert result.exit_code == 0, result.output
    model = json.loads(out.read_text())["facility"]["model"]
    assert (model["name"], model["pue"], model["carbon_g_per_kwh"], model["currency"]) == (
        "hyperscale+custom",
        2.0,
        100.0,
        "EUR",
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--facility", "moon"], "unknown facility preset 'moon'"),
        (["--pue", "0.5"], "facility pue must be >= 1"),
        (["--erf", "2"], r"facility erf must be within"),
        (["--price", "-1"], "price_per_kwh must be >= 0"),
        (["--meters", "gpu"], "unknown meter(s) gpu in --meters"),
        (["--cpu-mode", "galaxy"], "unknown --cpu-mode 'galaxy'"),
        (["--idle-w-per-core", "9"], "active_w_per_core"),
        (["--sample-hz", "-1"], "sample_hz must be >= 0"),
    ],
)
def test_bad_options_give_a_clear_message_and_exit_2(args: list[str], message: str) -> None:
    """Invalid options exit 2 with a message naming the problem, before running anything."""
    result = run(*args, "--", PY, "-c", "pass")
    assert result.exit_code == 2
    assert message in said(result)


def test_no_meter_available_is_a_clear_error() -> None:
    """With every back-end unavailable or off, measure says so and suggests the CPU model."""
    result = run("--meters", "nvml", "--", PY, "-c", "pass")
    if result.exit_code == 0:
        pytest.skip("this machine has an NVIDIA GPU")
    assert result.exit_code == 2
    assert "no energy meter available" in said(result)


def test_subprocess_end_to_end(tmp_path: Path) -> None:
    """The installed entry point measures a real child and passes its status through."""
    out = tmp_path / "m.json"
    code = "from tokenwatt.cli.main import main; main()"
    proc = subprocess.run(
        [PY, "-c", code, "measure", *CPU, "--json", str(out), "--", PY, "-c", "print('ok')"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "ok\n"  # the report goes to stderr, the command's output to stdout
    assert "estimated:cpu-model" in proc.stderr
    assert json.loads(out.read_text())["exit_code"] == 0


def test_sigterm_is_passed_to_the_command(tmp_path: Path) -> None:
    """SIGTERM to measure reaches the command; measure reports and exits 128 + 15."""
    out = tmp_path / "m.json"
    code = "from tokenwatt.cli.main import main; main()"
    ready = tmp_path / "ready"
    child = f"import pathlib, time; pathlib.Path({str(ready)!r}).touch(); time.sleep(60)"
    proc = subprocess.Popen(
        [PY, "-c", code, "measure", *CPU, "--json", str(out), "--", PY, "-c", child],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 143, stderr
    assert json.loads(out.read_text())["exit_code"] == 143


def test_json_path_in_a_missing_folder_fails_before_running(tmp_path: Path) -> None:
    """A --json path whose folder is missing is refused before the command runs."""
    marker = tmp_path / "ran"
    out = tmp_path / "absent" / "m.json"
    touch = f"import pathlib; pathlib.Path({str(marker)!r}).touch()"
    result = run(*CPU, "--json", str(out), "--", PY, "-c", touch)
    assert result.exit_code == 2
    assert "does not exist" in said(result)
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["directory", "proc"])
def test_unwritable_json_path_fails_before_running(tmp_path: Path, kind: str) -> None:
    """A --json path that is a folder or cannot be created is refused before the command runs."""
    marker = tmp_path / "ran"
    out = tmp_path if kind == "directory" else Path("/proc/tokenwatt-qa.json")
    touch = f"import pathlib; pathlib.Path({str(marker)!r}).touch()"
    result = run(*CPU, "--json", str(out), "--", PY, "-c", touch)
    assert result.exit_code == 2
    assert f"cannot write {out}" in said(result)
    assert not marker.exists()


@pytest.mark.parametrize("value", ["inf", "1e12"])
def test_absurd_idle_duration_is_a_clear_error(value: str) -> None:
    """An infinite or overflowing --idle-s is refused with a message, not a traceback."""
    result = run(*CPU, "--idle-s", value, "--", PY, "-c", "pass")
    assert result.exit_code == 2
    assert "--idle-s" in said(result) or "idle baseline duration" in said(result)
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_help_shows_the_cpu_model_defaults() -> None:
    """The CPU model options' help keeps its bracketed defaults (not eaten as markup)."""
    result = CliRunner().invoke(app, ["measure", "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0
    assert "default: 3.5, CCF's AWS average" in " ".join(result.output.split())

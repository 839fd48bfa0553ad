"""`tokenwatt serve`: options, clear errors, and a live run stopped by SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from tokenwatt.cli.main import app
from tokenwatt.cli.serve import parse_meters
from tokenwatt.engine.server import free_port
from tokenwatt.errors import ConfigError


def test_help_lists_the_options() -> None:
    """`serve --help` documents model, port, batching and meters."""
    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--model", "--port", "--max-batch", "--meters", "--warehouse"):
        assert option in result.output


def test_missing_model_path_is_a_clear_error(tmp_path: Path) -> None:
    """A model path that does not exist exits 2 with a message, no traceback."""
    result = CliRunner().invoke(app, ["serve", "--model", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert "neither a preset" in " ".join(result.output.split())  # rich wraps long lines
    assert "Traceback" not in result.output


def test_bad_dtype_is_a_clear_error() -> None:
    """An unknown dtype exits 2 naming the accepted ones."""
    result = CliRunner().invoke(app, ["serve", "--dtype", "int3", "--meters", "none"])
    assert result.exit_code == 2
    assert "float32" in result.output


def test_unknown_meter_is_a_config_error() -> None:
    """--meters with an unknown back-end names the valid ones."""
    with pytest.raises(ConfigError, match="nvml, rapl, cpu-model"):
        parse_meters("geiger")


def test_meters_none_means_no_meter() -> None:
    """--meters none disables energy attribution."""
    assert parse_meters("none") is None


def test_cpu_model_meter_is_estimated() -> None:
    """--meters cpu-model gives the estimated CPU model of this process."""
    meter = parse_meters("cpu-model")
    assert meter is not None
    assert [(c.source, c.scope) for c in meter.components] == [("estimated:cpu-model", "cpu")]
    meter.close()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "status"),
    [(signal.SIGTERM, -signal.SIGTERM), (signal.SIGINT, 130)],
    ids=["sigterm", "sigint"],
)
def test_serve_answers_then_stops_on_signal(sig: signal.Signals, status: int) -> None:
    """A real `tokenwatt serve` answers, then ends cleanly (no traceback) soon after the
    signal: SIGTERM is re-raised after the graceful shutdown, Ctrl-C exits 130."""
    port = free_port()
    cmd = [
        sys.executable,
        "-c",
        "from tokenwatt.cli.main import main; main()",
        "serve",
        "--port",
        str(port),
        "--device",
        "cpu",
        "--meters",
        "cpu-model",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        body = {"model": "tiny", "prompt": "hi", "max_tokens": 3, "ignore_eos": True}
        r = httpx.post(url + "/v1/completions", json=body, timeout=30)
        assert r.json()["usage"]["energy"]["source"] == "estimated:cpu-model"
        proc.send_signal(sig)
        assert proc.wait(timeout=20) == status
        output = proc.stdout.read().decode() if proc.stdout else ""
        assert "Traceback" not in output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_broken_warehouse_tiers_are_reported_and_serving_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unusable disk folder and a dead Redis are named at start, quickly; serve still
    starts, with those tiers skipped."""
    served: list[object] = []
    monkeypatch.setattr(
        "tokenwatt.engine.server.run.serve_engine", lambda *a, **k: served.append(a)
    )
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    spec = f"dram=16MiB,disk={not_a_dir},redis=redis://127.0.0.1:1,redis-timeout=0.2"
    start = time.monotonic()
    result = CliRunner().invoke(
        app, ["serve", "--meters", "none", "--port", str(free_port()), "--warehouse", spec]
    )
    said = " ".join(result.output.split())
    assert result.exit_code == 0, said
    assert len(served) == 1
    assert f"warehouse tier disk skipped: cannot use {not_a_dir}" in said
    assert "warehouse tier redis skipped:" in said and "127.0.0.1:1" in said
    assert "serving without them; they are retried with backoff" in said
    assert f"warehouse: dram 16 MiB (lru) -> disk {not_a_dir} 10 GiB (lru) -> redis" in said
    assert time.monotonic() - start < 20


def test_cli_starts_without_importing_torch() -> None:
    """Loading the CLI (every command, `--help`) does not import torch: only `serve` needs it,
    and the import costs seconds on a small machine."""
    code = "import sys, tokenwatt.cli.main; print('torch' in sys.modules)"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert proc.stdout.strip() == "False"


def test_preset_names_in_help_match_the_engine() -> None:
    """The preset list in `--model`'s help (kept here so --help stays light) is the engine's."""
    from tokenwatt.cli.serve import PRESET_NAMES
    from tokenwatt.engine.model import PRESETS

    assert tuple(PRESETS) == PRESET_NAMES


def test_port_in_use_is_a_clear_error_before_loading() -> None:
    """A port someone listens on exits 2 naming it and the fix, and says nothing of serving."""
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(app, ["serve", "--meters", "none", "--port", str(port)])
    said = " ".join(result.output.split())
    assert result.exit_code == 2, said
    assert f"cannot listen on 127.0.0.1:{port}" in said and "--port" in said
    assert "serving" not in said


def test_port_zero_prints_the_port_actually_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """--port 0 picks a free port, and the URL printed is the one the server will use."""
    configs: list[object] = []
    monkeypatch.setattr(
        "tokenwatt.engine.server.run.serve_engine", lambda _e, c, **_k: configs.append(c)
    )
    result = CliRunner().invoke(app, ["serve", "--meters", "none", "--port", "0"])
    assert result.exit_code == 0, result.output
    port = configs[0].port  # type: ignore[attr-defined]
    assert port != 0
    assert f"http://127.0.0.1:{port}/v1" in " ".join(result.output.split())

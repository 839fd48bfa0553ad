"""`tokenwatt serve`: options, API keys, clear errors, and a live run stopped by SIGTERM."""

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
from tokenwatt.cli.serve import is_loopback, parse_meters, resolve_keys
from tokenwatt.engine.server import free_port
from tokenwatt.errors import ConfigError


@pytest.fixture(autouse=True)
def _no_key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys in the environment of whoever runs the tests must not change what serve does."""
    monkeypatch.delenv("TOKENWATT_API_KEY", raising=False)
    monkeypatch.delenv("TOKENWATT_ADMIN_KEY", raising=False)


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


def _serve_config(
    monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict[str, str] | None = None
) -> tuple[object | None, str, int]:
    """The ServeConfig `serve ARGS` would serve with (None if it exited first), its output
    with line wraps undone, and its exit code; the server itself is not started."""
    configs: list[object] = []
    monkeypatch.setattr(
        "tokenwatt.engine.server.run.serve_engine", lambda _e, c, **_k: configs.append(c)
    )
    result = CliRunner().invoke(app, ["serve", "--meters", "none", "--port", "0", *args], env=env)
    return (configs[0] if configs else None), " ".join(result.output.split()), result.exit_code


def test_help_lists_the_key_options() -> None:
    """`serve --help` documents the key options and their environment variables."""
    result = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    said = " ".join(result.output.split())
    for option in ("--api-key ", "--api-key-file", "--admin-key ", "--admin-key-file"):
        assert option in said
    assert "$TOKENWATT_API_KEY" in said and "$TOKENWATT_ADMIN_KEY" in said


def test_repeated_key_options_reach_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """--api-key twice and --admin-key once: the config holds them, the banner counts them
    and shows none of them."""
    config, said, code = _serve_config(
        monkeypatch, ["--api-key", "k-one", "--api-key", "k-two", "--admin-key", "k-boss"]
    )
    assert code == 0, said
    assert config.api_keys == ("k-one", "k-two")  # type: ignore[attr-defined]
    assert config.admin_keys == ("k-boss",)  # type: ignore[attr-defined]
    assert "auth: 2 API keys, 1 admin key (every route but /health and /metrics needs one)" in said
    assert "k-one" not in said and "k-two" not in said and "k-boss" not in said


def test_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """TOKENWATT_API_KEY and TOKENWATT_ADMIN_KEY are comma-separated lists (spaces trimmed)."""
    env = {"TOKENWATT_API_KEY": "e-one, e-two", "TOKENWATT_ADMIN_KEY": "e-boss"}
    config, said, code = _serve_config(monkeypatch, [], env)
    assert code == 0, said
    assert config.api_keys == ("e-one", "e-two")  # type: ignore[attr-defined]
    assert config.admin_keys == ("e-boss",)  # type: ignore[attr-defined]


def test_options_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """--api-key given: TOKENWATT_API_KEY is not used (as click does for its env vars)."""
    env = {"TOKENWATT_API_KEY": "from-env"}
    config, said, code = _serve_config(monkeypatch, ["--api-key", "from-flag"], env)
    assert code == 0, said
    assert config.api_keys == ("from-flag",)  # type: ignore[attr-defined]


def test_key_file_skips_blanks_and_comments(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """--api-key-file: one key per line, CRLF and blanks and # comments tolerated; it adds to
    --api-key."""
    keys = tmp_path / "keys"
    keys.write_bytes(b"# team keys\r\nf-one\r\n\r\n  f-two  \n")
    config, said, code = _serve_config(
        monkeypatch, ["--api-key", "flag", "--api-key-file", str(keys)]
    )
    assert code == 0, said
    assert config.api_keys == ("flag", "f-one", "f-two")  # type: ignore[attr-defined]


def test_key_file_without_keys_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A key file with no key must not start an open server: exit 2 naming the file."""
    empty = tmp_path / "keys"
    empty.write_text("# nothing yet\n\n")
    config, said, code = _serve_config(monkeypatch, ["--admin-key-file", str(empty)])
    assert (config, code) == (None, 2)
    assert f"--admin-key-file {empty} holds no key" in said
    assert "serving" not in said


def test_missing_key_file_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A key file that cannot be read exits 2 with the reason."""
    config, said, code = _serve_config(monkeypatch, ["--api-key-file", str(tmp_path / "no")])
    assert (config, code) == (None, 2)
    assert f"cannot read --api-key-file {tmp_path / 'no'} (No such file or directory)" in said


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--api-key", "ok", "--api-key", "bad key"], {}, "--api-key #2 contains whitespace"),
        ([], {"TOKENWATT_API_KEY": "ok,,other"}, "TOKENWATT_API_KEY item 2 is empty"),
        (["--api-key", "same", "--admin-key", "same"], {}, "given both as an API key and as"),
    ],
    ids=["whitespace", "empty-env-item", "api-and-admin"],
)
def test_bad_keys_exit_2_without_showing_them(
    monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict[str, str], message: str
) -> None:
    """A malformed key is a one-line error naming where it came from, never its value."""
    config, said, code = _serve_config(monkeypatch, args, env)
    assert (config, code) == (None, 2)
    assert message in said
    assert "bad key" not in said and "Traceback" not in said


def test_key_file_line_is_named(tmp_path: Path) -> None:
    """A bad key in a file is named by file and line."""
    keys = tmp_path / "keys"
    keys.write_text("good\nnot\tgood\n")
    with pytest.raises(ConfigError, match=f"--api-key-file {keys} line 2 contains whitespace"):
        resolve_keys((), keys, "--api-key", "TOKENWATT_API_KEY")


def test_blank_environment_means_no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty or blank TOKENWATT_API_KEY is the same as unset."""
    monkeypatch.setenv("TOKENWATT_API_KEY", "  ")
    assert resolve_keys((), None, "--api-key", "TOKENWATT_API_KEY") == ()


def test_open_non_loopback_server_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    """--host 0.0.0.0 without keys: one warning line naming the risk and the fix."""
    config, said, code = _serve_config(monkeypatch, ["--host", "0.0.0.0"])
    assert code == 0, said
    assert config is not None
    assert "auth: off (no API key: every route is open)" in said
    assert (
        "warning: 0.0.0.0 is reachable from other machines and no API key is set: anyone who "
        "reaches it can use the API and read every tenant's usage on /v1/tenants; set "
        "--api-key (or $TOKENWATT_API_KEY)"
    ) in said


@pytest.mark.parametrize(
    ("args", "env"),
    [
        ([], {}),
        (["--host", "0.0.0.0", "--api-key", "k"], {}),
        (["--host", "0.0.0.0"], {"TOKENWATT_ADMIN_KEY": "k"}),
    ],
    ids=["loopback", "api-key", "admin-key-env"],
)
def test_no_warning_on_loopback_or_with_keys(
    monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict[str, str]
) -> None:
    """Loopback, or any key set: no warning."""
    _, said, code = _serve_config(monkeypatch, args, env)
    assert code == 0, said
    assert "warning" not in said


@pytest.mark.parametrize(
    ("host", "expected"),
    [("127.0.0.1", True), ("localhost", True), ("::1", True), ("0.0.0.0", False)],
)
def test_is_loopback(host: str, expected: bool) -> None:
    """Only hosts that resolve to loopback addresses alone count as loopback."""
    assert is_loopback(host) is expected

"""`tokenwatt demo` end to end on a small configuration (real engine, HTTP, planner)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tokenwatt.cli.main import app
from tokenwatt.demo import DemoConfig, run_demo
from tokenwatt.errors import ConfigError

pytestmark = pytest.mark.slow


def _small(out: Path) -> DemoConfig:
    return DemoConfig(
        out_dir=out, sessions=1, turns=3, system_tokens=512, max_output_tokens=8, plan_requests=300
    )


def test_run_demo_tells_the_whole_story(tmp_path: Path) -> None:
    """Both bench legs complete, the warm warehouse serves tokens, outputs match, plan runs."""
    lines: list[str] = []
    result = run_demo(_small(tmp_path), lines.append)
    assert [leg.label for leg in result.bench] == ["warehouse off", "warehouse on"]
    off, on = result.bench
    assert off.summary["completed"] == on.summary["completed"] == 3
    assert off.warehouse == {}
    assert on.warehouse["tokens_served"] > 0
    assert result.outputs_identical
    assert result.identity_cached_tokens > 0
    assert [p.label for p in result.plan] == ["static x4", "Knative-like", "AIBrix-like"]
    assert all(p.result.arrived == 300 for p in result.plan)
    assert off.energy is not None and off.energy["source"] == "estimated:cpu-model"
    for path in [leg.report_path for leg in result.bench] + [p.report_path for p in result.plan]:
        assert path is not None and path.is_file()
    assert lines[0].startswith("measure:")


def test_demo_cli_prints_tables(tmp_path: Path) -> None:
    """The CLI prints every stage's table and exits 0 when outputs match."""
    out = tmp_path / "demo"
    result = CliRunner().invoke(
        app,
        ["demo", "--out", str(out), "--sessions", "1", "--turns", "2", "--plan-requests", "200"],
    )
    assert result.exit_code == 0, result.output
    for title in ("1. measure", "serve + bench", "warehouse correctness", "4. plan", "facility"):
        assert title in result.output
    assert (out / "warehouse-on" / "result.json").is_file()


def test_demo_config_rejects_bad_values() -> None:
    """Counts below one are a clear configuration error."""
    with pytest.raises(ConfigError, match="demo sessions must be >= 1"):
        DemoConfig(sessions=0)

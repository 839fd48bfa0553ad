"""`tokenwatt plan`: run, compare, search and presets through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tokenwatt.cli.main import app

runner = CliRunner()


def test_run_synthetic_writes_json_and_html(tmp_path: Path) -> None:
    """A synthetic run prints the table and writes the result and report files."""
    out, html = tmp_path / "r.json", tmp_path / "r.html"
    result = runner.invoke(
        app,
        [
            "plan",
            "run",
            "-n",
            "200",
            "--rate",
            "4",
            "--replicas",
            "2",
            "-o",
            str(out),
            "--html",
            str(html),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "SLO attainment" in result.output
    data = json.loads(out.read_text())
    assert data["arrived"] == 200
    assert data["config"]["autoscaler_params"] == {"replicas": 2.0}
    assert html.read_text().startswith("<!doctype html>")


def test_run_trace_with_config_and_set(tmp_path: Path, shared_traces: Path) -> None:
    """A trace run takes a JSON config and --set overrides."""
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"autoscaler": "concurrency", "scaling": {"max_replicas": 3}}))
    out = tmp_path / "r.json"
    result = runner.invoke(
        app,
        [
            "plan",
            "run",
            str(shared_traces / "azure_llm_2023_code.csv"),
            "--limit",
            "300",
            "--config",
            str(cfg),
            "--set",
            "scaling.cold_start_s=5",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["config"]["scaling"] == {
        **data["config"]["scaling"],
        "max_replicas": 3,
        "cold_start_s": 5,
    }
    assert data["completed"] == 300


def test_compare_prints_ratio(tmp_path: Path) -> None:
    """Compare shows both results and the energy ratio against the first."""
    paths = []
    for n in (1, 3):
        p = tmp_path / f"r{n}.json"
        runner.invoke(app, ["plan", "run", "-n", "100", "--replicas", str(n), "-o", str(p)])
        paths.append(str(p))
    result = runner.invoke(app, ["plan", "compare", *paths])
    assert result.exit_code == 0, result.output
    assert "energy x" in result.output


def test_search_finds_a_fleet_size(tmp_path: Path) -> None:
    """Search prints the best value of the parameter."""
    result = runner.invoke(
        app,
        [
            "plan",
            "search",
            "-n",
            "200",
            "--rate",
            "4",
            "--param",
            "autoscaler_params.replicas",
            "--values",
            "1,2",
            "--target",
            "0.5",
            "--backend",
            "serial",
            "--set",
            'autoscaler="static"',
        ],
    )
    assert result.exit_code == 0, result.output
    assert "best: autoscaler_params.replicas=1" in result.output


def test_bad_inputs_exit_2_with_message(tmp_path: Path) -> None:
    """Unknown presets, bad --set and missing traces exit 2 with a clear message."""
    cases = [
        (["plan", "run", "-n", "10", "--accelerator", "B300"], "unknown accelerator preset"),
        (["plan", "run", "-n", "10", "--set", "nokey"], "KEY=VALUE"),
        (["plan", "run", str(tmp_path / "none.csv")], "not found"),
        (["plan", "run", "-n", "10", "--set", "replica.kv_capacity_tokens=-1"], "must be > 0"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert message in " ".join(result.output.split()), (args, result.output)


def test_presets_lists_sources() -> None:
    """Presets name SplitwiseSim as the power source."""
    result = runner.invoke(app, ["plan", "presets"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "H200-SXM" in text and "SplitwiseSim" in text


@pytest.mark.slow
def test_calibrate_quick_writes_profile(tmp_path: Path) -> None:
    """`plan calibrate --quick` profiles the tiny engine into a file `plan run` accepts."""
    prof = tmp_path / "p.json"
    result = runner.invoke(
        app, ["plan", "calibrate", "--quick", "--device", "cpu", "--no-meter", "-o", str(prof)]
    )
    assert result.exit_code == 0, result.output
    run = runner.invoke(
        app, ["plan", "run", "-n", "20", "--set", f'profile_path="{prof}"', "--replicas", "1"]
    )
    assert run.exit_code == 0, run.output


def test_sweep_runs_the_cross_product(tmp_path: Path) -> None:
    """Two --vary axes of two values give four runs, each written as JSON."""
    result = runner.invoke(
        app,
        [
            "plan",
            "sweep",
            "-n",
            "100",
            "--backend",
            "serial",
            "--vary",
            'router="round_robin","least_outstanding"',
            "--vary",
            "autoscaler_params.replicas=1,2",
            "--out-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    runs = sorted(tmp_path.glob("run-*.json"))
    labels = [json.loads(p.read_text())["label"] for p in runs]
    assert labels == [
        "router=round_robin, autoscaler_params.replicas=1",
        "router=round_robin, autoscaler_params.replicas=2",
        "router=least_outstanding, autoscaler_params.replicas=1",
        "router=least_outstanding, autoscaler_params.replicas=2",
    ]


def test_sweep_rejects_malformed_vary() -> None:
    """--vary without values exits 2 with the expected form."""
    result = runner.invoke(app, ["plan", "sweep", "-n", "10", "--vary", "router"])
    assert result.exit_code == 2
    assert "KEY=V1,V2" in " ".join(result.output.split())

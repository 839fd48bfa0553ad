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
    """`plan calibrate --method isolated --quick` profiles the tiny engine into a file `plan
    run` accepts."""
    prof = tmp_path / "p.json"
    result = runner.invoke(
        app,
        [
            "plan",
            "calibrate",
            "--method",
            "isolated",
            "--quick",
            "--device",
            "cpu",
            "--no-meter",
            "-o",
            str(prof),
        ],
    )
    assert result.exit_code == 0, result.output
    run = runner.invoke(
        app, ["plan", "run", "-n", "20", "--set", f'profile_path="{prof}"', "--replicas", "1"]
    )
    assert run.exit_code == 0, run.output


@pytest.mark.slow
def test_calibrate_served_quick_writes_profile(tmp_path: Path) -> None:
    """`plan calibrate --quick` (served, the default) serves the tiny engine on loopback and
    writes a profile with the per-request overhead distribution, which `plan run` uses."""
    prof = tmp_path / "p.json"
    args = ["plan", "calibrate", "--quick", "--device", "cpu", "--threads", "1", "-o", str(prof)]
    result = runner.invoke(app, [*args, "--rate", "20"])
    assert result.exit_code == 0, result.output
    assert "request overhead: median" in result.output
    profile = json.loads(prof.read_text())
    assert len(profile["serving"]["request_quantiles_s"]) == 40
    assert profile["power"]["kind"] == "calibrated"
    assert profile["provenance"]["method"].startswith("served")
    run = runner.invoke(
        app, ["plan", "run", "-n", "20", "--set", f'profile_path="{prof}"', "--replicas", "1"]
    )
    assert run.exit_code == 0, run.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--method", "guess"], "--method must be served or isolated, got 'guess'"),
        (["--rate", "0"], "rate must be a finite number > 0"),
        (["--requests", "0"], "requests must be >= 1"),
        (["--max-batch", "0"], "--max-batch and --step-tokens must be >= 1"),
        (["-o", "/nonexistent-folder/p.json"], "the folder /nonexistent-folder does not exist"),
    ],
)
def test_calibrate_bad_options_are_clear_errors(extra: list[str], message: str) -> None:
    """Bad calibrate options exit 2 with a message naming them, before any engine starts."""
    result = runner.invoke(app, ["plan", "calibrate", "--no-meter", *extra])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()), result.output


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


def _run_json(tmp_path: Path, name: str, *args: str) -> dict[str, object]:
    out = tmp_path / f"{name}.json"
    result = runner.invoke(app, ["plan", "run", "--rate", "4", "-o", str(out), *args])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert isinstance(data, dict)
    return data


def test_run_accepts_bench_workload_names(tmp_path: Path) -> None:
    """prefix-share (bench's name) and prefix (the alias) are the same workload."""
    bench = _run_json(tmp_path, "bench", "-w", "prefix-share", "-n", "30")
    alias = _run_json(tmp_path, "alias", "-w", "prefix", "-n", "30")
    assert bench["arrived"] == 30
    assert bench["prefill_tokens"] == alias["prefill_tokens"]


def test_run_prefix_share_sets_the_shared_fraction(tmp_path: Path) -> None:
    """--prefix-share 0.9 shares more of each prompt than 0.1: fewer prompt tokens computed."""
    low = _run_json(tmp_path, "low", "-w", "prefix-share", "-n", "60", "--prefix-share", "0.1")
    high = _run_json(tmp_path, "high", "-w", "prefix-share", "-n", "60", "--prefix-share", "0.9")
    assert high["input_tokens"] == low["input_tokens"]
    assert isinstance(high["prefill_tokens"], int) and isinstance(low["prefill_tokens"], int)
    assert high["prefill_tokens"] < low["prefill_tokens"]


def test_run_rejects_prefix_share_for_agentic() -> None:
    """Agentic sessions share their own prefix; --prefix-share there is an error, not ignored."""
    result = runner.invoke(
        app, ["plan", "run", "-w", "agentic", "-n", "20", "--prefix-share", "0.5"]
    )
    assert result.exit_code == 2, result.output
    assert "--prefix-share applies to chat, reasoning and prefix-share" in " ".join(
        result.output.split()
    )


def test_run_labels_placeholder_and_unset_prices() -> None:
    """Unset prices are never shown as a free 0.00: placeholder energy price, accelerators
    not set, with the --set keys that fix them."""
    result = runner.invoke(app, ["plan", "run", "-n", "20", "--rate", "4"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "0.1/kWh placeholder" in text
    assert "not set" in text
    assert "--set facility.price_per_kwh=PRICE" in text
    assert "--set facility.accelerator_hour_price=PRICE" in text
    rows = {
        line.split("│")[1].strip(): line.split("│")[2].strip()
        for line in result.output.splitlines()
        if line.count("│") == 3
    }
    assert rows["accelerator cost"] == "not set"
    assert rows["energy cost"].endswith("USD (0.1/kWh placeholder)")


def test_run_small_energy_reads_in_joules() -> None:
    """A tiny-cpu profile run shows its energy in J, not 0.000 kWh."""
    result = runner.invoke(
        app,
        [
            "plan",
            "run",
            "-n",
            "20",
            "--rate",
            "2",
            "--replicas",
            "1",
            "--set",
            "profile_path=tiny-cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (
        "energy (J)" in result.output and "0.000" not in result.output.split("energy (J)")[1][:40]
    )


def test_search_reports_the_attained_value_and_the_target(tmp_path: Path) -> None:
    """The best line states the run's attainment and the target separately."""
    out = tmp_path / "best.json"
    result = runner.invoke(
        app,
        [
            "plan",
            "search",
            "-n",
            "100",
            "--rate",
            "2",
            "--param",
            "autoscaler_params.replicas",
            "--values",
            "2",
            "--target",
            "0.5",
            "--backend",
            "serial",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    attained = json.loads(out.read_text())["slo_attainment"]
    text = " ".join(result.output.split())
    assert f"attains {attained:.2%} SLO attainment (target 50.00%)" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            [
                "run",
                "-n",
                "10",
                "--autoscaler",
                "concurrency",
                "--set",
                "autoscaler_params.bogus=1",
            ],
            "unknown parameter 'bogus'; valid parameters: panic_threshold, panic_window_s, "
            "stable_window_s, target",
        ),
        (["run", "-n", "10", "--set", "seed=abc"], "seed must be an integer, got 'abc'"),
        (
            ["run", "-n", "10", "--set", "autoscaler_params.replicas=abc"],
            "autoscaler_params.replicas must be a number, got 'abc'",
        ),
        (["run", "-n", "10", "--set", "warehouse.tiers=5"], "warehouse.tiers must be a list"),
        (
            ["run", "-n", "10", "--set", "scaling.cold_start_s=abc"],
            "scaling.cold_start_s must be a number, got 'abc'",
        ),
        (["run", "-n", "10", "--set", "scaling.bogus=1"], "scaling has: cold_start_jitter_s"),
        (["run", "-n", "10", "--router", "foo"], "unknown router 'foo'; choose one of"),
        (["run", "-n", "10", "--autoscaler", "foo"], "unknown autoscaler 'foo'; choose one of"),
        (["run", "-n", "10", "--replicas", "-2"], "replicas must be >= 0, got -2"),
        (["run", "-n", "10", "-w", "nope"], "chat, reasoning, agentic, prefix-share"),
        (
            ["run", "-n", "10", "--prefix-share", "1.5"],
            "--prefix-share must be in [0, 1] (a fraction), got 1.5",
        ),
        (
            ["search", "-n", "10", "--param", "autoscaler_params.replicas", "--values", "a,b"],
            "autoscaler_params.replicas must be a number, got 'a'",
        ),
        (
            ["search", "-n", "10", "--param", "autoscaler_params.replicas", "--values", ","],
            "--values needs at least one value",
        ),
        (["sweep", "-n", "10", "--vary", "scaling.max_replicas="], "--vary expects KEY=V1,V2"),
    ],
)
def test_bad_input_is_named_with_its_fix(args: list[str], message: str) -> None:
    """Each bad input exits 2 with a message naming the problem (no traceback)."""
    result = runner.invoke(app, ["plan", *args])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert message in text, text
    assert "Traceback" not in result.output


def test_bad_trace_files_are_named(tmp_path: Path) -> None:
    """A malformed trace and a missing one exit 2 naming the file."""
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    for path, message in ((bad, "cannot tell the format"), (tmp_path / "no.csv", "not found")):
        result = runner.invoke(app, ["plan", "run", str(path)])
        assert result.exit_code == 2, result.output
        assert message in " ".join(result.output.split())


def test_compare_rejects_non_result_json(tmp_path: Path) -> None:
    """compare with a JSON that is not a plan result says how to make one."""
    a = tmp_path / "a.json"
    a.write_text('{"x": 1}')
    result = runner.invoke(app, ["plan", "compare", str(a), str(a)])
    assert result.exit_code == 2, result.output
    assert "is not a plan result (write one with `tokenwatt plan run`)" in " ".join(
        result.output.split()
    )


@pytest.mark.parametrize("flag", ["-o", "--html"])
def test_run_unwritable_output_is_named(tmp_path: Path, flag: str) -> None:
    """An output path in a missing folder exits 2 naming the path, not a traceback."""
    target = tmp_path / "missing" / "out.x"
    result = runner.invoke(app, ["plan", "run", "-n", "10", flag, str(target)])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert f"cannot write {target}" in text and "create the folder" in text


def test_sweep_and_search_reject_zero_workers() -> None:
    """--workers 0 is an error, not silently every core."""
    for args in (
        ["search", "-n", "10", "--param", "autoscaler_params.replicas", "--values", "1"],
        ["sweep", "-n", "10", "--vary", "scaling.max_replicas=1,2"],
    ):
        result = runner.invoke(app, ["plan", *args, "--workers", "0"])
        assert result.exit_code == 2, result.output
        assert "--workers must be >= 1, got 0" in " ".join(result.output.split())


@pytest.mark.parametrize(
    "args",
    [
        ["search", "-n", "10", "--param", "autoscaler_params.replicas", "--values", "1"],
        ["sweep", "-n", "10", "--vary", "scaling.max_replicas=1,2"],
    ],
)
def test_search_and_sweep_name_an_unknown_backend(args: list[str]) -> None:
    """--backend outside serial, process and ray exits 2 listing the three."""
    result = runner.invoke(app, ["plan", *args, "--backend", "gpu"])
    assert result.exit_code == 2, result.output
    assert "unknown backend 'gpu'; use serial, process or ray" in " ".join(result.output.split())


def test_compare_labels_by_file_and_writes_html(tmp_path: Path) -> None:
    """Compare heads each column with the file's stem and its label, and writes the report."""
    paths = []
    for name, n in (("one", 1), ("two", 2)):
        p = tmp_path / f"{name}.json"
        run = runner.invoke(app, ["plan", "run", "-n", "40", "--replicas", str(n), "-o", str(p)])
        assert run.exit_code == 0, run.output
        paths.append(str(p))
    html = tmp_path / "c.html"
    result = runner.invoke(app, ["plan", "compare", *paths, "--html", str(html)])
    assert result.exit_code == 0, result.output
    label = json.loads((tmp_path / "two.json").read_text())["label"]
    assert f"two: {label}: energy x" in " ".join(result.output.split())
    assert html.read_text().startswith("<!doctype html>")


def test_compare_needs_two_results(tmp_path: Path) -> None:
    """One result file is not a comparison."""
    result = runner.invoke(app, ["plan", "compare", str(tmp_path / "a.json")])
    assert result.exit_code == 2, result.output
    assert "compare needs at least two result files" in result.output


def test_presets_lists_the_model_presets() -> None:
    """The model table lists every model preset with its KV bytes per token."""
    result = runner.invoke(app, ["plan", "presets"])
    assert result.exit_code == 0, result.output
    assert "model presets" in result.output
    assert "llama-3.1-8b" in result.output and "KV bytes/token" in result.output

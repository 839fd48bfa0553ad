"""`tokenwatt bench run|compare` end to end against the faulty server, and bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.bench.faulty_server import FaultyServer, serve_in_thread
from tokenwatt.cli.main import app


@pytest.fixture
def server() -> Iterator[FaultyServer]:
    """A healthy streaming server on loopback (2 ms per token)."""
    with serve_in_thread(itl_s=0.002) as srv:
        yield srv


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["bench", *args])
    return result.exit_code, result.output


def _base(url: str, out: Path) -> list[str]:
    return [
        "run",
        "--url",
        url,
        "--out",
        str(out),
        "--max-output-tokens",
        "4",
        "--energy",
        "endpoint",
    ]


def test_run_writes_json_csv_and_report(server: FaultyServer, tmp_path: Path) -> None:
    """A closed-loop run of 6 requests writes all three files and prints the summary table."""
    code, out = _run(*_base(server.url, tmp_path), "-n", "6", "-c", "2", "--slo", "ttft<=5s")
    assert code == 0, out
    body = json.loads((tmp_path / "result.json").read_text())
    assert body["summary"]["requests"] == 6
    assert body["config"]["shape"] == {"kind": "ClosedLoop", "concurrency": 2}
    assert body["energy"]["source"] == "replay"
    assert (tmp_path / "requests.csv").read_text().count("\n") == 7
    assert "<svg" in (tmp_path / "report.html").read_text()
    assert "SLO attainment" in out


def test_server_errors_are_counted_by_kind(tmp_path: Path) -> None:
    """Against a server answering 500, the run completes and reports http_5xx per request."""
    with serve_in_thread(fault="500") as srv:
        code, out = _run(*_base(srv.url, tmp_path), "-n", "3", "--energy", "none")
    assert code == 0, out
    body = json.loads((tmp_path / "result.json").read_text())
    assert body["summary"]["errors"] == {"http_5xx": 3}


def test_trace_with_bad_rows_skips_and_counts_them(server: FaultyServer, tmp_path: Path) -> None:
    """Bad trace rows are skipped and counted in the result's workload stats."""
    trace = tmp_path / "t.csv"
    trace.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:15:46.0,10,3\nnot,a,row\n2023-11-16 18:15:46.1,12,2\n"
    )
    args = [*_base(server.url, tmp_path / "o"), "-w", "trace", "--trace", str(trace)]
    code, out = _run(*args, "--speedup", "10", "-n", "10")
    assert code == 0, out
    body = json.loads((tmp_path / "o" / "result.json").read_text())
    assert body["summary"]["requests"] == 2
    assert sum(body["workload_stats"]["skipped"].values()) == 1
    assert "trace rows skipped" in out


def test_sweep_writes_one_result_per_point(server: FaultyServer, tmp_path: Path) -> None:
    """--sweep 1,2 over concurrency writes two result directories and a sweep table."""
    code, out = _run(*_base(server.url, tmp_path), "-n", "2", "--sweep", "1,2", "-q")
    assert code == 0, out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["concurrency-1", "concurrency-2"]
    assert "sweep" in out


def test_compare_prints_ratios(server: FaultyServer, tmp_path: Path) -> None:
    """`bench compare A B` prints a row per figure with a B/A ratio."""
    for name in ("a", "b"):
        code, out = _run(*_base(server.url, tmp_path / name), "-n", "2", "-q")
        assert code == 0, out
    code, out = _run("compare", str(tmp_path / "a/result.json"), str(tmp_path / "b/result.json"))
    assert code == 0, out
    assert "requests/s" in out and "x" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-w", "poetry"], "unknown workload 'poetry'"),
        (["--slo", "ttft<1s"], "bad SLO"),
        (["-w", "trace", "--trace", "/nonexistent.csv"], "not found"),
        (["-w", "trace"], "needs --trace"),
        (["--rate", "2", "-c", "2"], "not both"),
        (["--energy", "solar"], "unknown energy source"),
        (["--api", "embeddings"], "unknown api"),
        (["--sweep", "a,b"], "comma-separated numbers"),
    ],
)
def test_bad_input_is_a_clear_message(tmp_path: Path, args: list[str], message: str) -> None:
    """Bad options exit 2 with a message naming the problem, never a traceback."""
    code, out = _run("run", "--url", "http://127.0.0.1:9", "--out", str(tmp_path), *args)
    assert code == 2, out
    assert message in out
    assert "Traceback" not in out


def test_compare_of_missing_file_is_a_clear_message(tmp_path: Path) -> None:
    """Comparing a missing result names the file."""
    code, out = _run("compare", str(tmp_path / "x.json"), str(tmp_path / "y.json"))
    assert code == 2
    assert "not found" in out


def test_search_rate_reports_the_highest_passing_rate(server: FaultyServer, tmp_path: Path) -> None:
    """With an easy SLO the highest probed rate passes at once and is the answer."""
    args = [*_base(server.url, tmp_path), "-n", "4", "-q", "--slo", "e2e<=5s"]
    code, out = _run(*args, "--search-rate", "20:40", "--arrival", "constant")
    assert code == 0, out
    assert "max goodput rate: 40 req/s" in out
    assert (tmp_path / "rate-40s_constant" / "result.json").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--search-rate", "20:40"], "needs --slo"),
        (["--search-rate", "20", "--slo", "ttft<=1s"], "LO:HI"),
    ],
)
def test_search_rate_bad_input(tmp_path: Path, args: list[str], message: str) -> None:
    """A search without SLOs or without a LO:HI bracket exits 2 naming the fix."""
    code, out = _run("run", "--url", "http://127.0.0.1:9", "--out", str(tmp_path), *args)
    assert code == 2, out
    assert message in out

"""`tokenwatt bench run|compare` end to end against the faulty server, and bad input."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner

from tests.bench.faulty_server import FaultyServer, serve_in_thread, silent_endpoint
from tokenwatt.bench.load import ClosedLoop
from tokenwatt.bench.results import BenchResult, compare
from tokenwatt.cli._bench_display import compare_table, sweep_table
from tokenwatt.cli._common import console
from tokenwatt.cli.bench import summary_table
from tokenwatt.cli.main import app


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """A console wide enough that table rows do not wrap, so a row reads as one line."""
    monkeypatch.setattr(console, "width", 160)


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
    assert code == 1, out
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
    assert (tmp_path / "rate-40rps_constant" / "result.json").is_file()


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


def test_default_model_is_the_endpoints_first_model(server: FaultyServer, tmp_path: Path) -> None:
    """Without --model the run asks /v1/models, uses its first model and says so."""
    code, out = _run(*_base(server.url, tmp_path), "-n", "2", "-q")
    assert code == 0, out
    body = json.loads((tmp_path / "result.json").read_text())
    assert body["config"]["client"]["model"] == "faulty"
    assert "using model 'faulty'" in out


def test_first_error_message_of_each_kind_is_printed(tmp_path: Path) -> None:
    """The summary names the first error message of each kind, not only the counts."""
    with serve_in_thread(fault="500") as srv:
        code, out = _run(*_base(srv.url, tmp_path), "-n", "2", "--energy", "none")
    assert code == 1, out
    assert "http_5xx: " in out and "injected 500" in out, out


def test_no_completed_request_exits_1_and_writes_results(tmp_path: Path) -> None:
    """When every request failed the exit code is 1 and the result files are still written."""
    code, out = _run(*_base("http://127.0.0.1:1", tmp_path), "-n", "3", "--energy", "none")
    assert code == 1, out
    assert "no request completed" in out
    body = json.loads((tmp_path / "result.json").read_text())
    assert body["summary"]["errors"] == {"connect": 3}


def test_compare_names_and_warns_about_different_energy_sources(
    server: FaultyServer, tmp_path: Path
) -> None:
    """Comparing results of different energy sources/scopes names each and warns."""
    code, out = _run(*_base(server.url, tmp_path / "a"), "-n", "2", "-q")
    assert code == 0, out
    b = tmp_path / "b.json"
    body = json.loads((tmp_path / "a/result.json").read_text())
    body["energy"]["source"], body["energy"]["scope"] = "estimated:cpu-model", "cpu"
    b.write_text(json.dumps(body))
    code, out = _run("compare", str(tmp_path / "a/result.json"), str(b))
    assert code == 0, out
    flat = " ".join(out.split())
    assert "A energy: replay, scope node" in flat
    assert "B energy: estimated:cpu-model, scope cpu" in flat
    assert "not like for like" in flat


def test_compare_of_same_energy_source_does_not_warn(server: FaultyServer, tmp_path: Path) -> None:
    """Two results of the same energy source and scope compare without a warning."""
    code, out = _run(*_base(server.url, tmp_path / "a"), "-n", "2", "-q")
    assert code == 0, out
    a = str(tmp_path / "a/result.json")
    code, out = _run("compare", a, a)
    assert "not like for like" not in " ".join(out.split())


def test_rate_sweep_folders_name_requests_per_second(server: FaultyServer, tmp_path: Path) -> None:
    """A rate sweep's folders say requests per second (rps), not seconds."""
    args = [*_base(server.url, tmp_path), "-n", "2", "-q", "--rate", "50", "--sweep", "50,100"]
    code, out = _run(*args)
    assert code == 0, out
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "rate-100rps_poisson",
        "rate-50rps_poisson",
    ]


def test_default_price_is_labelled_a_placeholder(server: FaultyServer, tmp_path: Path) -> None:
    """The cost row says the 0.1/kWh price is a placeholder."""
    code, out = _run(*_base(server.url, tmp_path), "-n", "2")
    assert code == 0, out
    assert "0.1/kWh placeholder" in out


class _HtmlHandler(http.server.BaseHTTPRequestHandler):
    def _html(self) -> None:
        page = b"<html><body>hello</body></html>"
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    do_GET = _html
    do_POST = _html

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def html_url() -> Iterator[str]:
    """An HTTP server on loopback that answers every path with an HTML page."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HtmlHandler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join()


def test_html_endpoint_is_named_not_openai(html_url: str, tmp_path: Path) -> None:
    """A URL serving HTML says it is not an OpenAI endpoint and exits 1, no traceback."""
    code, out = _run(*_base(html_url, tmp_path), "-n", "2", "--energy", "none", "-q")
    assert code == 1, out
    flat = " ".join(out.split())
    assert "not an OpenAI-compatible endpoint" in flat
    assert "Traceback" not in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-w", "agentic", "--rate", "2"], "--rate does not apply to --workload agentic"),
        (["--speedup", "2"], "--speedup applies only to --workload trace"),
        (["-c", "0"], "concurrency must be >= 1"),
        (["--rate", "-1"], "rate must be a positive number"),
        (["--slo", "ttft<=fast"], "bad SLO"),
    ],
)
def test_options_that_do_not_apply_are_refused(
    tmp_path: Path, args: list[str], message: str
) -> None:
    """Options that do not apply, or out-of-range loads, exit 2 naming the problem."""
    code, out = _run("run", "--url", "http://127.0.0.1:9", "--out", str(tmp_path), *args)
    assert code == 2, out
    assert message in " ".join(out.split())
    assert "Traceback" not in out


def test_out_that_is_a_file_is_refused_before_sending(server: FaultyServer, tmp_path: Path) -> None:
    """--out naming an existing file exits 2 before any request is sent."""
    target = tmp_path / "taken"
    target.write_text("")
    code, out = _run(*_base(server.url, target), "-n", "2")
    assert code == 2, out
    assert "is a file" in " ".join(out.split())
    assert server.requests_seen == 0
    assert "Traceback" not in out


def test_url_with_bad_port_is_a_clear_message(tmp_path: Path) -> None:
    """A port out of range exits 2 naming it, not an OverflowError traceback."""
    code, out = _run("run", "--url", "http://127.0.0.1:99999", "--out", str(tmp_path))
    assert code == 2, out
    assert "port must be 1-65535" in " ".join(out.split())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-n", "0"], "--num-requests must be >= 1, got 0"),
        (["-w", "agentic", "--sessions", "0"], "--sessions must be >= 1, got 0"),
        (["-w", "agentic", "--turns", "-2"], "--turns must be >= 1, got -2"),
        (["--timeout", "0"], "--timeout must be > 0 seconds, got 0"),
        (["--stall-timeout", "-1"], "--stall-timeout must be > 0 seconds, got -1"),
    ],
)
def test_out_of_range_counts_name_the_option(tmp_path: Path, args: list[str], message: str) -> None:
    """Out-of-range counts and timeouts exit 2 naming the option as typed."""
    code, out = _run("run", "--url", "http://127.0.0.1:9", "--out", str(tmp_path), *args)
    assert code == 2, out
    assert message in " ".join(out.split())


def test_sweep_where_nothing_completed_exits_1(tmp_path: Path) -> None:
    """A sweep in which no run completed a request exits 1; each run's files are written."""
    args = [*_base("http://127.0.0.1:1", tmp_path), "-n", "1", "--energy", "none", "-q"]
    code, out = _run(*args, "--sweep", "1,2")
    assert code == 1, out
    assert "no request completed" in out
    assert (tmp_path / "concurrency-2" / "result.json").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--trace", "/x.csv"], "--trace applies only to --workload trace"),
        (["--sweep", "1,2", "--search-rate", "1:2"], "either --sweep or --search-rate"),
        (["--metrics-url", "http://h/metrics"], "--metrics-url applies only to --energy endpoint"),
    ],
)
def test_options_that_would_be_ignored_are_refused(
    tmp_path: Path, args: list[str], message: str
) -> None:
    """An option the run would silently ignore exits 2 naming it."""
    code, out = _run("run", "--url", "http://127.0.0.1:9", "--out", str(tmp_path), *args)
    assert code == 2, out
    assert message in " ".join(out.split())


def _trace(tmp_path: Path, rows: list[tuple[int, int]]) -> str:
    lines = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    lines += [f"2023-11-16 18:15:46.{i},{inp},{out}" for i, (inp, out) in enumerate(rows)]
    path = tmp_path / "t.csv"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_prompts_are_clamped_to_the_reported_max_model_len(tmp_path: Path) -> None:
    """The endpoint reports max_model_len 100: a 9,000-token prompt is cut to 96 (4 output
    tokens kept), the 10-token one is not; the table and the JSON say 1 of 2."""
    with serve_in_thread(max_model_len=100) as srv:
        args = [*_base(srv.url, tmp_path / "o"), "-w", "trace"]
        code, out = _run(*args, "--trace", _trace(tmp_path, [(9000, 8), (10, 8)]))
    assert code == 0, out
    assert "prompts clamped to fit max_model_len 100 │ 1 of 2" in " ".join(out.split())
    body = json.loads((tmp_path / "o" / "result.json").read_text())
    context = body["workload_stats"]["context"]
    assert (context["limit"], context["max_model_len"], context["prompts_clamped"]) == (
        "max_model_len",
        100,
        1,
    )
    assert body["config"]["workload"]["max_model_len"] == 100
    assert sorted(r["requested_output_tokens"] for r in body["records"]) == [4, 4]


def test_explicit_max_input_tokens_wins_and_is_reported(tmp_path: Path) -> None:
    """--max-input-tokens 5 clamps both prompts whatever the endpoint reports: 2 of 2."""
    with serve_in_thread(max_model_len=100) as srv:
        args = [*_base(srv.url, tmp_path / "o"), "-w", "trace", "--max-input-tokens", "5"]
        code, out = _run(*args, "--trace", _trace(tmp_path, [(9000, 8), (10, 8)]))
    assert code == 0, out
    assert "prompts clamped to --max-input-tokens 5 │ 2 of 2" in " ".join(out.split())
    body = json.loads((tmp_path / "o" / "result.json").read_text())
    assert body["workload_stats"]["context"]["limit"] == "max_input_tokens"
    assert body["config"]["workload"]["max_model_len"] is None


def test_unknown_context_is_stated(server: FaultyServer, tmp_path: Path) -> None:
    """An endpoint that reports no max_model_len: nothing is clamped, and the result says the
    limit was unknown."""
    code, out = _run(*_base(server.url, tmp_path), "-n", "2")
    assert code == 0, out
    assert "max_model_len │ unknown: prompts not clamped" in " ".join(out.split())
    body = json.loads((tmp_path / "result.json").read_text())
    assert body["workload_stats"]["context"]["limit"] is None


def test_given_model_takes_its_own_context(tmp_path: Path) -> None:
    """--model faulty still reads faulty's max_model_len; a model the endpoint does not list
    has no known context."""
    with serve_in_thread(max_model_len=100) as srv:
        code, out = _run(*_base(srv.url, tmp_path / "a"), "-n", "1", "--model", "faulty", "-q")
        assert code == 0, out
        code, out = _run(*_base(srv.url, tmp_path / "b"), "-n", "1", "--model", "other", "-q")
        assert code == 0, out
    a = json.loads((tmp_path / "a" / "result.json").read_text())
    b = json.loads((tmp_path / "b" / "result.json").read_text())
    assert a["workload_stats"]["context"]["max_model_len"] == 100
    assert b["workload_stats"]["context"]["limit"] is None


def test_endpoint_energy_per_request_is_reported(tmp_path: Path) -> None:
    """usage.energy of 0.5 J per token x 4 tokens: J/request 2 at p50, p90 and mean, under the
    source and scope the endpoint states."""
    with serve_in_thread(labelled_energy=True) as srv:
        code, out = _run(*_base(srv.url, tmp_path), "-n", "3", "--energy", "none")
    assert code == 0, out
    flat = " ".join(out.split())
    assert "endpoint energy per request" in flat and "source replay, scope node" in flat
    assert "J / request p50 / p90 / mean │ 2 / 2 / 2 (3 requests)" in flat
    body = json.loads((tmp_path / "result.json").read_text())
    assert body["request_energy"]["j_per_request"]["p50"] == 2.0
    assert [r["endpoint_energy_source"] for r in body["records"]] == ["replay"] * 3


def test_summary_names_endpoint_energy_per_session() -> None:
    """Sessions of 3 and 5 J: the summary's session row says p50 / mean 4 / 4 (2 sessions)."""
    per_request = {"p50": 1.0, "p90": 2.0, "mean": 1.5}
    per_session = {"p50": 4.0, "mean": 4.0}
    energy = {
        "source": "nvml",
        "scope": "gpu",
        "requests": 4,
        "sessions": 2,
        "j_per_request": per_request,
        "j_per_session": per_session,
    }
    wide = Console(width=160, record=True)
    wide.print(summary_table(BenchResult(request_energy=energy)))
    text = " ".join(wide.export_text().split())
    assert "J / request p50 / p90 / mean │ 1 / 2 / 1.5 (4 requests)" in text
    assert "J / session p50 / mean │ 4 / 4 (2 sessions)" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--burstiness", "0.5", "--rate", "2"], "--burstiness applies to --arrival gamma only"),
        (["--arrival", "gamma"], "--arrival needs --rate (or --search-rate)"),
        (["--sessions", "3"], "--sessions/--turns apply to --workload agentic only"),
        (["--turns", "3"], "--sessions/--turns apply to --workload agentic only"),
        (["-w", "agentic", "-n", "5"], "--num-requests does not apply to --workload agentic"),
        (["--target", "0.5"], "--target needs --search-rate"),
        (["--facility", "hyperscale", "--energy", "none"], "--facility applies only when"),
        (["-w", "trace", "--trace", "/x.csv", "--seed", "3"], "--seed applies to synthetic"),
        (
            ["-w", "trace", "--trace", "/x.csv", "--speedup", "2", "-c", "2"],
            "--speedup applies to trace replay only",
        ),
        (
            ["--search-rate", "1:2", "--slo", "ttft<=1s", "-c", "2"],
            "--search-rate chooses the rates itself",
        ),
        (
            ["-w", "agentic", "--search-rate", "1:2", "--slo", "ttft<=1s"],
            "--search-rate does not apply to --workload agentic",
        ),
    ],
)
def test_options_passed_where_they_do_not_apply_are_refused(
    tmp_path: Path, args: list[str], message: str
) -> None:
    """An option the user passed that the chosen load or workload would ignore exits 2 naming
    the option and what it needs, before anything is sent."""
    code, out = _run("run", "--url", "http://127.0.0.1:9", "--out", str(tmp_path), *args)
    assert code == 2, out
    assert message in " ".join(out.split())


@pytest.mark.parametrize(
    "args",
    [
        ["--rate", "2", "--arrival", "gamma", "--burstiness", "0.5"],
        ["--search-rate", "20:40", "--arrival", "constant", "--target", "0.5"],
        ["-w", "agentic", "--sessions", "1", "--turns", "1"],
        ["--seed", "3"],
        ["--facility", "hyperscale"],
    ],
)
def test_options_that_apply_are_accepted(
    server: FaultyServer, tmp_path: Path, args: list[str]
) -> None:
    """The same options where they apply run normally; their defaults never trip a check."""
    extra = ["--slo", "e2e<=5s"] if "--search-rate" in args else []
    n = [] if "agentic" in args else ["-n", "2"]
    code, out = _run(*_base(server.url, tmp_path), *n, "-q", *args, *extra)
    assert code == 0, out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sweep", "a,b"], "--sweep must be comma-separated numbers"),
        (["--search-rate", "20:40"], "--search-rate needs --slo"),
        (["--energy", "solar"], "unknown energy source 'solar'"),
    ],
)
def test_bad_list_and_energy_options_do_not_wait_on_the_endpoint(
    tmp_path: Path, args: list[str], message: str
) -> None:
    """Bad --sweep, --search-rate and --energy values are refused (exit 2) before the endpoint
    is asked for its models: a silent endpoint is never waited on."""
    started = time.monotonic()
    with silent_endpoint() as url:
        code, out = _run("run", "--url", url, "--out", str(tmp_path), *args)
    assert code == 2, out
    assert message in " ".join(out.split())
    assert "did not answer" not in out
    assert time.monotonic() - started < 5.0


def _text(table: Table) -> str:
    wide = Console(width=160, record=True)
    wide.print(table)
    return " ".join(wide.export_text().split())


def test_compare_table_marks_each_ratio_by_the_figures_direction() -> None:
    """Throughput doubled is better, TTFT doubled is worse, an equal figure has no mark."""
    a = BenchResult(summary={"request_throughput_rps": 10.0, "ttft_s": {"p50": 0.2, "p99": 0.5}})
    b = BenchResult(summary={"request_throughput_rps": 20.0, "ttft_s": {"p50": 0.4, "p99": 0.5}})
    text = _text(compare_table("a vs b", compare(a, b)))
    assert "requests/s │ 10 │ 20 │ 2x better" in text
    assert "TTFT p50 (s) │ 0.2 │ 0.4 │ 2x worse" in text
    assert "TTFT p99 (s) │ 0.5 │ 0.5 │ 1x │" in text


def test_sweep_table_has_a_row_per_load() -> None:
    """Each swept load's throughput, attainment and J/token; a missing figure is '-'."""
    points = [
        (
            ClosedLoop(1),
            BenchResult(
                summary={"request_throughput_rps": 2.0, "slo_attainment": 1.0},
                energy={"whole_run": {"j_per_output_token": 0.25}},
            ),
        ),
        (ClosedLoop(2), BenchResult(summary={"request_throughput_rps": 3.5})),
    ]
    text = _text(sweep_table(points))
    assert "concurrency=1 │ 2 │ - │ 1 │ 0.25" in text
    assert "concurrency=2 │ 3.5 │ - │ - │ -" in text

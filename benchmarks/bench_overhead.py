"""Claim: tokenwatt bench drives >= 2x the request rate of an established harness (GuideLLM) with
stable timings on this machine, and adds < 1 ms of timing error at p99.

Every harness runs against the same server in the same run: tests/bench/faulty_server.py in its
own process, a no-op streaming server whose token texts are the server's clock when it wrote them
(perf_counter: one clock for every process on a Linux machine).

1. Sustainable rate (``--tokens`` tokens per request, no delays): open loop at constant rates
   doubling from --start-rate, then one bisection step. A rate is stable when every request
   succeeds, completions keep up (>= 95% of the offered rate) and the p99 send lag (actual minus
   scheduled send) is under --max-lag-ms; a rate that fails gets one more try (the machine is
   shared). Figure: the highest stable rate, median of --repeats searches.
2. Timing error: requests of --error-tokens tokens, --itl-ms apart, sent at a constant rate that
   keeps about --streams in flight; error = the harness's receive time of a token minus the
   server's send time. tokenwatt and the plain loop stamp every chunk; GuideLLM records wall-clock
   times of the first and last token only, so its error is taken on those two (with the
   wall/perf_counter offset measured in this process).

Harnesses: tokenwatt (LoadRunner + OpenAIClient); a plain httpx + asyncio loop, the floor any
Python harness pays; GuideLLM from PyPI in --guidellm-venv (created on first use, torch pinned to
the CPU wheel). If GuideLLM cannot be installed or run the script says why and the ratio uses the
plain loop instead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tokenwatt.bench.client import ClientConfig, OpenAIClient  # noqa: E402
from tokenwatt.bench.load import OpenLoop  # noqa: E402
from tokenwatt.bench.metrics import percentile  # noqa: E402
from tokenwatt.bench.record import Chunk, StreamEvent  # noqa: E402
from tokenwatt.bench.runner import LoadRunner, RunLimits  # noqa: E402
from tokenwatt.workload.types import Request  # noqa: E402

SERVER = REPO / "tests" / "bench" / "faulty_server.py"
GUIDELLM_VERSION = "0.8.1"

RatePoint = tuple[float, float, int]
"""(completed requests/s, p99 send lag s, failed requests) of one constant-rate run."""


class Server:
    """The faulty server in a child process, so it does not share the harness's core."""

    def __init__(self, port: int, itl_ms: float = 0.0) -> None:
        self.url = f"http://127.0.0.1:{port}"
        args = [sys.executable, str(SERVER), "--port", str(port), "--itl-ms", str(itl_ms)]
        self.proc = subprocess.Popen([*args, "--stamp-text"], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "listening" not in line:
            raise RuntimeError(f"server did not start: {line!r}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class _Recorder:
    """Wraps a client and keeps every chunk's (receive time, text) for the timing error."""

    def __init__(self, inner: OpenAIClient) -> None:
        self.inner = inner
        self.chunks: list[tuple[float, str]] = []

    async def stream(self, request: Request) -> AsyncIterator[StreamEvent]:
        async for event in self.inner.stream(request):
            if isinstance(event, Chunk):
                self.chunks.append((event.time_s, event.text))
            yield event

    async def open(self) -> None:
        await self.inner.open()

    async def aclose(self) -> None:
        await self.inner.aclose()


async def tokenwatt_run(
    url: str, rate: float, tokens: int, duration_s: float
) -> tuple[RatePoint, list[float]]:
    """One constant-rate run; returns its rate point and each chunk's timing error (s)."""
    client = _Recorder(OpenAIClient(ClientConfig(base_url=url, timeout_s=60)))
    reqs = (Request(f"r{i}", input_tokens=8, output_tokens=tokens) for i in range(10**9))
    limits = RunLimits(duration_s=duration_s, drain_timeout_s=30)
    runner = LoadRunner(client, reqs, OpenLoop(rate, "constant"), limits)
    try:
        records = await runner.run()
    finally:
        await client.aclose()
    ok = sum(r.ok for r in records)
    lags = [r.start_s - r.scheduled_s for r in records] or [0.0]
    span = max((r.end_s for r in records), default=0.0)
    errors = [t - float(text) for t, text in client.chunks]
    return (ok / max(span, duration_s), percentile(lags, 99), len(records) - ok), errors


async def plain_run(
    url: str, rate: float, tokens: int, duration_s: float
) -> tuple[RatePoint, list[float]]:
    """The baseline: httpx streams launched on a constant schedule, lines stamped on arrival."""
    body = {"model": "m", "prompt": "hi", "max_tokens": tokens, "stream": True}
    lags: list[float] = []
    errs: list[float] = []
    done = failed = 0
    limits = httpx.Limits(max_connections=4096, max_keepalive_connections=4096)
    async with httpx.AsyncClient(timeout=60, limits=limits, verify=False) as http:

        async def one() -> None:
            nonlocal done, failed
            try:
                async with http.stream("POST", url + "/v1/completions", json=body) as resp:
                    async for line in resp.aiter_lines():
                        now = time.perf_counter()
                        if line.startswith("data: {"):
                            choices = json.loads(line[6:])["choices"]
                            if choices:
                                errs.append(now - float(choices[0]["text"]))
                done += 1
            except httpx.HTTPError:
                failed += 1

        # Warm the pool like tokenwatt's open() does, so both start with one live connection.
        await http.get(url + "/v1/models")
        t0 = time.perf_counter()
        tasks = []
        i = 0
        while (at := i / rate) < duration_s:
            delay = at - (time.perf_counter() - t0)
            if delay > 0:
                await asyncio.sleep(delay)
            lags.append(time.perf_counter() - t0 - at)
            tasks.append(asyncio.create_task(one()))
            i += 1
        await asyncio.gather(*tasks)
        span = time.perf_counter() - t0
    return (done / max(span, duration_s), percentile(lags or [0.0], 99), failed), errs


def guidellm_run(
    exe: Path, url: str, rate: float, tokens: int, duration_s: float, workdir: Path
) -> tuple[RatePoint, list[float]]:
    """GuideLLM at a constant rate for rate x duration requests, from its JSON report."""
    out = workdir / f"gl-{rate:g}-{tokens}.json"
    count = max(int(rate * duration_s), 1)
    cmd = [
        str(exe), "run",
        "--backend", f"kind=openai_http,target={url},request_format=/v1/completions",
        "--profile", f"kind=constant,rate={rate:g}",
        "--data", f"kind=synthetic_text,prompt_tokens=8,output_tokens={tokens}",
        "--tokenizer", f"kind=huggingface_auto,model={workdir / 'tokenizer'}",
        "--constraint", f"kind=max_requests,count={count}",
        "--output", f"kind=json,path={out}",
        "--disable-console",
    ]  # fmt: skip
    wall_minus_perf = time.time() - time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"guidellm exited {proc.returncode}: {proc.stderr[-800:]}")
    bench = json.loads(out.read_text())["benchmarks"][0]
    reqs = bench["requests"]
    failed = len(reqs.get("errored", [])) + len(reqs.get("incomplete", []))
    lags, errs = [], []
    starts, ends = [], []
    for r in reqs["successful"]:
        timing = r["info"]["timings"]
        lags.append(timing["request_start"] - timing["targeted_start"])
        starts.append(timing["request_start"])
        ends.append(timing["last_request_iteration"])
        stamps = [float(s) for s in r["output"].split()]
        if stamps:
            errs.append(timing["first_token_iteration"] - (stamps[0] + wall_minus_perf))
            errs.append(timing["last_token_iteration"] - (stamps[-1] + wall_minus_perf))
    span = max(ends) - min(starts) if starts else 0.0
    done = len(reqs["successful"])
    return (done / max(span, duration_s), percentile(lags or [0.0], 99), failed), errs


def stable(point: RatePoint, rate: float, max_lag_s: float) -> bool:
    done_rps, lag_p99, failed = point
    return failed == 0 and done_rps >= 0.95 * rate and lag_p99 <= max_lag_s


def _attempt(
    run_point: Callable[[float], RatePoint], rate: float, max_lag_s: float
) -> tuple[RatePoint, bool]:
    """Run a rate point; an unstable one gets a second try (on a shared machine one scheduling
    spike is noise), and counts as unstable only when both fail."""
    point = run_point(rate)
    if not stable(point, rate, max_lag_s):
        point = run_point(rate)
    return point, stable(point, rate, max_lag_s)


def sustainable_rate(
    run_point: Callable[[float], RatePoint], start: float, max_rate: float, max_lag_s: float
) -> float:
    """Highest stable rate: double until unstable, then try the midpoint of the last bracket."""
    best = 0.0
    rate = start
    while rate <= max_rate:
        point, ok = _attempt(run_point, rate, max_lag_s)
        print(
            f"    {rate:7.0f}/s -> {point[0]:7.1f}/s done, send lag p99 {point[1] * 1e3:7.2f} ms,"
            f" failed {point[2]}: {'stable' if ok else 'UNSTABLE'}",
            flush=True,
        )
        if not ok:
            if best:
                mid = (best + rate) / 2
                mid_point, mid_ok = _attempt(run_point, mid, max_lag_s)
                if mid_ok:
                    best = mid
                print(
                    f"    {mid:7.0f}/s -> {mid_point[0]:7.1f}/s done, send lag p99 "
                    f"{mid_point[1] * 1e3:7.2f} ms, failed {mid_point[2]}: "
                    f"{'stable' if mid_ok else 'UNSTABLE'} (bisection)",
                    flush=True,
                )
            break
        best = rate
        rate *= 2
    return best


# -- GuideLLM install --------------------------------------------------------------------------


def ensure_guidellm(venv: Path) -> Path:
    """The guidellm executable in ``venv``, installing it there from PyPI on first use."""
    exe = venv / "bin" / "guidellm"
    if exe.exists():
        return exe
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    # torch first and pinned, so pip takes the CPU wheel instead of multi-GB CUDA wheels.
    subprocess.run([*pip, "torch==2.13.0"], check=True, timeout=3600)
    subprocess.run([*pip, f"guidellm=={GUIDELLM_VERSION}"], check=True, timeout=3600)
    return exe


def write_byte_tokenizer(path: Path, venv: Path) -> None:
    """A byte-level HF tokenizer directory (no hub access) for GuideLLM's synthetic prompts."""
    code = f"""
from tokenizers import Tokenizer, models, pre_tokenizers, decoders
from transformers import PreTrainedTokenizerFast
alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
tok = Tokenizer(models.BPE(vocab={{c: i for i, c in enumerate(alphabet)}}, merges=[]))
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
PreTrainedTokenizerFast(tokenizer_object=tok).save_pretrained({str(path)!r})
"""
    subprocess.run([str(venv / "bin" / "python"), "-c", code], check=True, timeout=300)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--port", type=int, default=18931)
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per rate point")
    ap.add_argument("--start-rate", type=float, default=50.0)
    ap.add_argument("--max-rate", type=float, default=6400.0)
    ap.add_argument("--max-lag-ms", type=float, default=10.0)
    ap.add_argument("--tokens", type=int, default=8, help="output tokens per request (rate test)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--streams", type=int, default=16, help="requests in flight (timing test)")
    ap.add_argument("--error-tokens", type=int, default=100)
    ap.add_argument("--itl-ms", type=float, default=5.0)
    ap.add_argument("--error-duration", type=float, default=4.0)
    ap.add_argument("--guidellm-venv", type=Path, default=Path("/tmp/tokenwatt-guidellm-venv"))
    ap.add_argument("--skip-guidellm", action="store_true")
    ap.add_argument("--skip-rate", action="store_true", help="only measure the timing error")
    args = ap.parse_args()
    max_lag = args.max_lag_ms / 1e3

    workdir = Path(tempfile.mkdtemp(prefix="tw-overhead-"))
    harnesses: dict[str, Callable[[float, int, float], tuple[RatePoint, list[float]]]] = {
        "tokenwatt": lambda r, n, d: asyncio.run(tokenwatt_run(url, r, n, d)),
        "plain": lambda r, n, d: asyncio.run(plain_run(url, r, n, d)),
    }
    why_not = "skipped (--skip-guidellm)" if args.skip_guidellm else ""
    if not args.skip_guidellm:
        try:
            exe = ensure_guidellm(args.guidellm_venv)
            write_byte_tokenizer(workdir / "tokenizer", args.guidellm_venv)
            harnesses["guidellm"] = lambda r, n, d: guidellm_run(exe, url, r, n, d, workdir)
        except (subprocess.SubprocessError, OSError) as exc:
            why_not = f"install failed: {exc}"

    server = Server(args.port)
    url = server.url
    rates: dict[str, list[float]] = {name: [] for name in harnesses}
    try:
        for rep in range(0 if args.skip_rate else args.repeats):
            for name, fn in list(harnesses.items()):
                print(f"[{rep + 1}/{args.repeats}] {name}: sustainable rate search", flush=True)
                try:
                    found = sustainable_rate(
                        lambda r, fn=fn: fn(r, args.tokens, args.duration)[0],  # type: ignore[misc]
                        args.start_rate,
                        args.max_rate,
                        max_lag,
                    )
                except (RuntimeError, subprocess.SubprocessError, KeyError, ValueError) as exc:
                    why_not = f"run failed: {str(exc)[:500]}"
                    print(f"    {name} failed: {why_not}", flush=True)
                    del harnesses[name]
                    rates.pop(name, None)
                    continue
                rates[name].append(found)
                time.sleep(2)  # let the previous harness's processes exit before the next one
    finally:
        server.stop()

    server = Server(args.port, itl_ms=args.itl_ms)
    url = server.url
    errors: dict[str, list[float]] = {name: [] for name in harnesses}
    # A constant rate keeping ~streams in flight: arrivals spread over the token grid instead
    # of all streams ticking together (a burst would measure queueing, not the clock).
    err_rate = args.streams / (args.error_tokens * args.itl_ms / 1e3)
    try:
        for _ in range(args.repeats):
            for name, fn in harnesses.items():
                errors[name].extend(fn(err_rate, args.error_tokens, args.error_duration)[1])
    finally:
        server.stop()
    shutil.rmtree(workdir, ignore_errors=True)

    print("\nmachine: 2 CPU cores (shared with other work), no GPU; server in its own process")
    if why_not:
        print(f"GuideLLM not compared: {why_not}")
    med = {name: statistics.median(v) for name, v in rates.items() if v}
    if med:
        print(f"sustainable request rate ({args.tokens} tokens/request, median of {args.repeats}):")
        for name, value in med.items():
            runs = ", ".join(f"{v:.0f}" for v in rates[name])
            print(f"  {name:10s} {value:8.0f} req/s   runs: {runs}")
        baseline = "guidellm" if "guidellm" in med else "plain"
        if med.get(baseline):
            print(f"  ratio tokenwatt / {baseline}: {med['tokenwatt'] / med[baseline]:.2f}x")
    print(
        f"timing error (receive - server send), {args.error_tokens} tokens {args.itl_ms} ms "
        f"apart, {err_rate:.3g} req/s (~{args.streams} in flight), x{args.repeats}:"
    )
    for name, errs in errors.items():
        if not errs:
            continue
        which = "first+last token" if name == "guidellm" else "every token"
        print(
            f"  {name:10s} p50 {percentile(errs, 50) * 1e3:.3f} ms  "
            f"p99 {percentile(errs, 99) * 1e3:.3f} ms  max {max(errs) * 1e3:.3f} ms  "
            f"(n={len(errs)}, {which})"
        )


if __name__ == "__main__":
    main()
